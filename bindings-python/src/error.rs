//! corral's error kinds as Python exceptions: `CorralError` plus one subclass per
//! [`ErrorKind`], each also subclassing the builtin a Python caller would expect
//! (`ModelNotFoundError` is a `FileNotFoundError`, bad arguments are `ValueError`s, ...).
//! The kinds are mapped here and nowhere else.

use pyo3::exceptions::{
    PyConnectionError, PyException, PyFileNotFoundError, PyMemoryError, PyRuntimeError, PyTimeoutError, PyTypeError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};

use corral::ErrorKind;

/// The Python class name of a kind and the builtin exception it also derives from.
fn python_class(py: Python<'_>, kind: ErrorKind) -> Option<(&'static str, Bound<'_, PyType>)> {
    let class = match kind {
        ErrorKind::ModelNotFound => ("ModelNotFoundError", py.get_type::<PyFileNotFoundError>()),
        ErrorKind::InvalidModel => ("InvalidModelError", py.get_type::<PyValueError>()),
        ErrorKind::UnsupportedArchitecture => ("UnsupportedArchitectureError", py.get_type::<PyValueError>()),
        ErrorKind::InvalidArgument => ("InvalidArgumentError", py.get_type::<PyValueError>()),
        ErrorKind::ContextOverflow => ("ContextOverflowError", py.get_type::<PyValueError>()),
        // Deliberately not asyncio.CancelledError: that one means "this task was cancelled".
        ErrorKind::Cancelled => ("CancelledError", py.get_type::<PyException>()),
        ErrorKind::DecodeFailed => ("DecodeFailedError", py.get_type::<PyRuntimeError>()),
        ErrorKind::NoChatTemplate => ("NoChatTemplateError", py.get_type::<PyValueError>()),
        ErrorKind::TemplateError => ("TemplateError", py.get_type::<PyValueError>()),
        ErrorKind::Closed => ("ClosedError", py.get_type::<PyRuntimeError>()),
        ErrorKind::Busy => ("BusyError", py.get_type::<PyRuntimeError>()),
        ErrorKind::DeadlineExceeded => ("DeadlineExceededError", py.get_type::<PyTimeoutError>()),
        ErrorKind::InvalidGrammar => ("InvalidGrammarError", py.get_type::<PyValueError>()),
        ErrorKind::Internal => ("InternalError", py.get_type::<PyRuntimeError>()),
        ErrorKind::Unsupported => ("UnsupportedError", py.get_type::<PyValueError>()),
        ErrorKind::InvalidState => ("InvalidStateError", py.get_type::<PyValueError>()),
        ErrorKind::InsufficientMemory => ("InsufficientMemoryError", py.get_type::<PyMemoryError>()),
        ErrorKind::WorkerUnavailable => ("WorkerUnavailableError", py.get_type::<PyConnectionError>()),
        // A kind added to core later is raised as a plain CorralError carrying its code.
        _ => return None,
    };
    Some(class)
}

struct Classes {
    base: Py<PyType>,
    by_kind: Vec<(ErrorKind, Py<PyType>)>,
    /// `InvalidArgumentTypeError`: an `InvalidArgumentError` that is also a `TypeError`.
    argument_type: Py<PyType>,
}

static CLASSES: PyOnceLock<Classes> = PyOnceLock::new();

fn new_class<'py>(py: Python<'py>, name: &str, bases: Vec<Bound<'py, PyType>>, code: &str, doc: String) -> PyResult<Py<PyType>> {
    let namespace = PyDict::new(py);
    namespace.set_item("__module__", "corral")?;
    namespace.set_item("__doc__", doc)?;
    namespace.set_item("code", code)?;
    let class = py.get_type::<PyType>().call1((name, PyTuple::new(py, bases)?, namespace))?;
    Ok(class.cast_into::<PyType>()?.unbind())
}

fn build(py: Python<'_>) -> PyResult<Classes> {
    let base = new_class(
        py,
        "CorralError",
        vec![py.get_type::<PyException>()],
        ErrorKind::Internal.code(),
        "Base class of every error corral raises; `code` is the stable machine-readable kind.".into(),
    )?;
    let mut by_kind = Vec::new();
    for kind in ErrorKind::ALL {
        if let Some((name, builtin)) = python_class(py, kind) {
            let doc = format!("corral error kind `{}`.", kind.code());
            let class = new_class(py, name, vec![base.bind(py).clone(), builtin], kind.code(), doc)?;
            by_kind.push((kind, class));
        }
    }
    let invalid_argument = by_kind
        .iter()
        .find(|(kind, _)| *kind == ErrorKind::InvalidArgument)
        .map(|(_, class)| class.bind(py).clone())
        .ok_or_else(|| PyRuntimeError::new_err("corral: no class for invalid_argument"))?;
    let argument_type = new_class(
        py,
        "InvalidArgumentTypeError",
        vec![invalid_argument, py.get_type::<PyTypeError>()],
        ErrorKind::InvalidArgument.code(),
        "An argument of the wrong Python type: both an InvalidArgumentError and a TypeError.".into(),
    )?;
    Ok(Classes { base, by_kind, argument_type })
}

fn classes(py: Python<'_>) -> PyResult<&Classes> {
    CLASSES.get_or_try_init(py, || build(py))
}

/// Adds every exception class to the module.
pub fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = module.py();
    let classes = classes(py)?;
    module.add("CorralError", classes.base.bind(py))?;
    for (_, class) in &classes.by_kind {
        module.add(class.bind(py).name()?, class.bind(py))?;
    }
    module.add("InvalidArgumentTypeError", classes.argument_type.bind(py))?;
    Ok(())
}

fn instantiate(class: &Bound<'_, PyType>, code: &str, message: String) -> PyErr {
    let raised = class.call1((message,)).and_then(|exception| {
        // Set on the instance too, so a kind unknown to this binding still reports its code.
        exception.setattr("code", code)?;
        Ok(exception)
    });
    match raised {
        Ok(exception) => PyErr::from_value(exception),
        Err(e) => e,
    }
}

/// The Python exception for a core error; its message includes the cause chain.
pub fn to_py_err(py: Python<'_>, error: corral::Error) -> PyErr {
    let mut message = error.message().to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    let classes = match classes(py) {
        Ok(classes) => classes,
        Err(e) => return e,
    };
    let kind = error.kind();
    if error.is_wrong_type() {
        return instantiate(classes.argument_type.bind(py), kind.code(), message);
    }
    let class = classes.by_kind.iter().find(|(k, _)| *k == kind).map(|(_, class)| class).unwrap_or(&classes.base);
    instantiate(class.bind(py), kind.code(), message)
}

/// `InvalidArgumentError` for a value of the right type but out of range or malformed.
pub fn invalid_argument(py: Python<'_>, message: impl Into<String>) -> PyErr {
    to_py_err(py, corral::Error::new(ErrorKind::InvalidArgument, message))
}

/// `InvalidArgumentTypeError` (also a `TypeError`) for a value of the wrong Python type.
pub fn invalid_type(py: Python<'_>, message: impl Into<String>) -> PyErr {
    to_py_err(py, corral::Error::invalid_type(message))
}

/// Converts core results into Python results once the GIL is held again.
pub trait OrRaise<T> {
    fn or_raise(self, py: Python<'_>) -> PyResult<T>;
}

impl<T> OrRaise<T> for corral::Result<T> {
    fn or_raise(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|e| to_py_err(py, e))
    }
}

/// The Python name of a value's type, for error messages.
pub fn type_name(value: &Bound<'_, PyAny>) -> String {
    value.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into())
}
