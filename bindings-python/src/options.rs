//! Python keyword arguments to core options. Generation keywords are read by corral-core
//! (`corral::openai::generate_options`, where their defaults, checks and OpenAI shapes live):
//! here they only become JSON. Model options are read here (`u32_arg`, `bool_arg`).

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyInt};

use corral::openai::Dialect;
use corral::{checked_u32, GenerateOptions};

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

/// Builds core options from the keyword arguments of a generation call; fails here, with the
/// GIL held and nothing submitted, rather than from the engine.
pub fn generate_options(py: Python<'_>, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<GenerateOptions> {
    match kwargs {
        None => Ok(GenerateOptions::default()),
        Some(kwargs) => corral::openai::generate_options(&crate::json::from_py(py, kwargs.as_any(), "")?, Dialect::Python).or_raise(py),
    }
}
