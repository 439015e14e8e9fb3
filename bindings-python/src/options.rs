//! Python keyword arguments to core options. Generation keywords are read by corral-core
//! (`corral::openai::generate_options`, where their defaults, checks and OpenAI shapes live):
//! here they only become JSON. Model options are read here (`model_options`).

use std::path::PathBuf;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyInt, PyMapping, PySequence, PyString};

use corral::openai::Dialect;
use corral::{checked_u32, AdapterFile, GenerateOptions, ModelOptions};

use crate::error::{invalid_argument, invalid_type, type_name, OrRaise};

/// A non-negative integer that fits in `u32`. Bools are rejected although Python treats them as ints.
pub fn u32_arg(py: Python<'_>, name: &str, value: &Bound<'_, PyAny>) -> PyResult<u32> {
    if !value.is_instance_of::<PyInt>() || value.is_instance_of::<PyBool>() {
        return Err(invalid_type(py, format!("{name} must be an int, got {}", type_name(value))));
    }
    let value: i64 = value.extract().map_err(|_| invalid_argument(py, format!("{name} is out of range, got {value}")))?;
    checked_u32(name, value).or_raise(py)
}

pub fn bool_arg(py: Python<'_>, name: &str, value: &Bound<'_, PyAny>) -> PyResult<bool> {
    value.cast::<PyBool>().map(|b| b.is_true()).map_err(|_| invalid_type(py, format!("{name} must be a bool, got {}", type_name(value))))
}

/// A `path` argument: a str or an os.PathLike.
pub fn path_arg(py: Python<'_>, path: &Bound<'_, PyAny>) -> PyResult<PathBuf> {
    path.extract().map_err(|_| invalid_type(py, format!("path must be a str or os.PathLike, got {}", type_name(path))))
}

/// The load keywords `Model(...)` and `estimate_memory(...)` share (`model_options` reads them).
const LOAD_KEYWORDS: [&str; 10] = [
    "context_length",
    "threads",
    "gpu_layers",
    "use_mmap",
    "use_mlock",
    "max_sequences",
    "batch_size",
    "flash_attention",
    "rpc_servers",
    "rpc_split",
];

/// The keyword arguments of a function that takes the load keywords as `**options` (its
/// `text_signature` spells them out), read by name; None counts as not given.
pub struct Keywords<'py>(Option<Bound<'py, PyDict>>);

impl<'py> Keywords<'py> {
    /// Refuses, before anything is read, a keyword that is neither a load keyword nor one of
    /// `own`, as PyO3 refuses an unknown keyword (`function`: as PyO3 names it, e.g. `"f()"`).
    pub fn new(function: &str, options: Option<Bound<'py, PyDict>>, own: &[&str]) -> PyResult<Self> {
        for key in options.iter().flat_map(|options| options.keys()) {
            let name = key.cast::<PyString>()?.to_cow()?;
            if !LOAD_KEYWORDS.contains(&name.as_ref()) && !own.contains(&name.as_ref()) {
                return Err(PyTypeError::new_err(format!("{function} got an unexpected keyword argument '{name}'")));
            }
        }
        Ok(Keywords(options))
    }

    /// The keyword `name`, unless absent or None.
    pub fn get(&self, name: &str) -> PyResult<Option<Bound<'py, PyAny>>> {
        let Some(options) = &self.0 else { return Ok(None) };
        Ok(options.get_item(name)?.filter(|value| !value.is_none()))
    }
}

/// Core model options from the load keywords; what is not given keeps core's defaults.
/// `context_length` is an int or `"auto"` (the largest context that fits in memory).
pub fn model_options(py: Python<'_>, keywords: &Keywords<'_>) -> PyResult<ModelOptions> {
    let int = |name: &str| keywords.get(name)?.map(|v| u32_arg(py, name, &v)).transpose();
    let flag = |name: &str| keywords.get(name)?.map(|v| bool_arg(py, name, &v)).transpose();
    let defaults = ModelOptions::default();
    let context_length = keywords.get("context_length")?;
    let auto_context_length = context_length.as_ref().is_some_and(|v| v.extract::<String>().is_ok_and(|s| s == "auto"));
    if let Some(text) = context_length.as_ref().and_then(|v| v.extract::<String>().ok()).filter(|_| !auto_context_length) {
        return Err(invalid_argument(py, format!("context_length must be an int or \"auto\", got {text:?}")));
    }
    let context_length = if auto_context_length { None } else { int("context_length")? };
    Ok(ModelOptions {
        context_length: context_length.or(defaults.context_length),
        auto_context_length,
        threads: int("threads")?.or(defaults.threads),
        gpu_layers: int("gpu_layers")?.unwrap_or(defaults.gpu_layers),
        use_mmap: flag("use_mmap")?.unwrap_or(defaults.use_mmap),
        use_mlock: flag("use_mlock")?.unwrap_or(defaults.use_mlock),
        max_sequences: int("max_sequences")?.unwrap_or(defaults.max_sequences),
        batch_size: int("batch_size")?.unwrap_or(defaults.batch_size),
        flash_attention: flag("flash_attention")?.or(defaults.flash_attention),
        rpc_servers: keywords
            .get("rpc_servers")?
            .map(|v| list_arg(py, "rpc_servers", &v, "str", str_item))
            .transpose()?
            .unwrap_or_default(),
        rpc_split: keywords
            .get("rpc_split")?
            .map(|v| list_arg(py, "rpc_split", &v, "number", number_item))
            .transpose()?
            .unwrap_or_default(),
        // Options this binding does not expose keep core's defaults.
        ..defaults
    })
}

/// A list (any sequence but str or bytes) whose items `item` reads; addresses and weights are
/// checked by core, which knows how many of each a model needs.
fn list_arg<T>(
    py: Python<'_>,
    name: &str,
    value: &Bound<'_, PyAny>,
    item_type: &str,
    item: fn(&Bound<'_, PyAny>) -> Option<T>,
) -> PyResult<Vec<T>> {
    let not_a_list = || invalid_type(py, format!("{name} must be a list, got {}", type_name(value)));
    // A str is a sequence of str: "host:port" alone would read as one-letter addresses.
    if value.is_instance_of::<PyString>() || value.is_instance_of::<PyBytes>() {
        return Err(not_a_list());
    }
    let sequence = value.cast::<PySequence>().map_err(|_| not_a_list())?;
    let mut items = Vec::new();
    for (index, element) in sequence.try_iter()?.enumerate() {
        let element = element?;
        let read = item(&element)
            .ok_or_else(|| invalid_type(py, format!("{name}[{index}] must be a {item_type}, got {}", type_name(&element))))?;
        items.push(read);
    }
    Ok(items)
}

fn str_item(value: &Bound<'_, PyAny>) -> Option<String> {
    value.extract().ok()
}

/// An int or float (anything with `__float__`), but not a bool.
fn number_item(value: &Bound<'_, PyAny>) -> Option<f32> {
    if value.is_instance_of::<PyBool>() {
        return None;
    }
    // Out-of-range weights become infinite, which core refuses with the others.
    value.extract::<f64>().ok().map(|w| w as f32)
}

/// The `adapters` load keyword of `Model(...)`: a mapping `{name: path}` (str or os.PathLike
/// paths), in the mapping's order. Names and files are checked by core when loading.
pub fn adapter_files(py: Python<'_>, value: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<AdapterFile>> {
    let Some(value) = value else { return Ok(Vec::new()) };
    let mapping = value
        .cast::<PyMapping>()
        .map_err(|_| invalid_type(py, format!("adapters must be a mapping of names to paths, got {}", type_name(value))))?;
    let mut files = Vec::new();
    for item in mapping.items()?.iter() {
        let (name, path): (Bound<'_, PyAny>, Bound<'_, PyAny>) = item.extract()?;
        let name: String = name.extract().map_err(|_| invalid_type(py, format!("adapter names must be str, got {}", type_name(&name))))?;
        let path: PathBuf = path
            .extract()
            .map_err(|_| invalid_type(py, format!("adapters[{name:?}] must be a str or os.PathLike, got {}", type_name(&path))))?;
        files.push(AdapterFile { name, path });
    }
    Ok(files)
}

/// Builds core options from the keyword arguments of a generation call; fails here, with the
/// GIL held and nothing submitted, rather than from the engine.
pub fn generate_options(py: Python<'_>, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<GenerateOptions> {
    match kwargs {
        None => Ok(GenerateOptions::default()),
        Some(kwargs) => corral::openai::generate_options(&crate::json::from_py(py, kwargs.as_any(), "")?, Dialect::Python).or_raise(py),
    }
}
