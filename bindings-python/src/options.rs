//! Python keyword arguments to core options. Every default comes from core's
//! `GenerateOptions::default()`: a keyword left out, or passed as `None`, keeps it.

use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use corral::{checked_u32, GenerateOptions};

use crate::error::{invalid_argument, invalid_type, type_name, OrRaise};

/// The keywords every generation method accepts (also listed in the `.pyi` stubs).
pub const GENERATE_KEYWORDS: &[&str] = &[
    "max_tokens",
    "temperature",
    "top_k",
    "top_p",
    "min_p",
    "repeat_penalty",
    "repeat_last_n",
    "frequency_penalty",
    "presence_penalty",
    "seed",
    "stop",
    "timeout",
    "ignore_eos",
    "parse_special",
];

/// A non-negative integer that fits in `u32`. Bools are rejected although Python treats them as ints.
pub fn u32_arg(py: Python<'_>, name: &str, value: &Bound<'_, PyAny>) -> PyResult<u32> {
    if !value.is_instance_of::<PyInt>() || value.is_instance_of::<PyBool>() {
        return Err(invalid_type(py, format!("{name} must be an int, got {}", type_name(value))));
    }
    let value: i64 =
        value.extract().map_err(|_| invalid_argument(py, format!("{name} is out of range, got {value}")))?;
    checked_u32(name, value).or_raise(py)
}

fn f32_arg(py: Python<'_>, name: &str, value: &Bound<'_, PyAny>) -> PyResult<f32> {
    let is_number = value.is_instance_of::<PyFloat>() || value.is_instance_of::<PyInt>();
    if !is_number || value.is_instance_of::<PyBool>() {
        return Err(invalid_type(py, format!("{name} must be a float, got {}", type_name(value))));
    }
    let value: f64 =
        value.extract().map_err(|_| invalid_argument(py, format!("{name} is out of range, got {value}")))?;
    // Values beyond f32 become infinite, which core rejects as not finite.
    Ok(value as f32)
}

pub fn bool_arg(py: Python<'_>, name: &str, value: &Bound<'_, PyAny>) -> PyResult<bool> {
    value
        .cast::<PyBool>()
        .map(|b| b.is_true())
        .map_err(|_| invalid_type(py, format!("{name} must be a bool, got {}", type_name(value))))
}

fn stop_arg(py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
    if let Ok(single) = value.cast::<PyString>() {
        return Ok(vec![single.to_cow()?.into_owned()]);
    }
    if !(value.is_instance_of::<PyList>() || value.is_instance_of::<PyTuple>()) {
        return Err(invalid_type(py, format!("stop must be a str or a list of str, got {}", type_name(value))));
    }
    value
        .try_iter()?
        .enumerate()
        .map(|(i, item)| {
            let item = item?;
            match item.cast::<PyString>() {
                Ok(s) => Ok(s.to_cow()?.into_owned()),
                Err(_) => Err(invalid_type(py, format!("stop[{i}] must be a str, got {}", type_name(&item)))),
            }
        })
        .collect()
}

fn timeout_arg(py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<Duration> {
    let is_number = value.is_instance_of::<PyFloat>() || value.is_instance_of::<PyInt>();
    if !is_number || value.is_instance_of::<PyBool>() {
        return Err(invalid_type(py, format!("timeout must be a number of seconds, got {}", type_name(value))));
    }
    let seconds: f64 =
        value.extract().map_err(|_| invalid_argument(py, format!("timeout is out of range, got {value}")))?;
    Duration::try_from_secs_f64(seconds)
        .map_err(|_| invalid_argument(py, format!("timeout must be a positive number of seconds, got {seconds}")))
}

/// Builds core options from the keyword arguments of a generation call.
pub fn generate_options(py: Python<'_>, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<GenerateOptions> {
    let mut options = GenerateOptions::default();
    let Some(kwargs) = kwargs else { return Ok(options) };
    for (key, value) in kwargs.iter() {
        let key = key.cast::<PyString>()?.to_cow()?.into_owned();
        if value.is_none() {
            if !GENERATE_KEYWORDS.contains(&key.as_str()) {
                return Err(unexpected_keyword(py, &key));
            }
            continue;
        }
        let value = &value;
        match key.as_str() {
            "max_tokens" => options.max_tokens = Some(u32_arg(py, "max_tokens", value)?),
            "temperature" => options.temperature = f32_arg(py, "temperature", value)?,
            "top_k" => options.top_k = u32_arg(py, "top_k", value)?,
            "top_p" => options.top_p = f32_arg(py, "top_p", value)?,
            "min_p" => options.min_p = f32_arg(py, "min_p", value)?,
            "repeat_penalty" => options.repeat_penalty = f32_arg(py, "repeat_penalty", value)?,
            "repeat_last_n" => options.repeat_last_n = u32_arg(py, "repeat_last_n", value)?,
            "frequency_penalty" => options.frequency_penalty = f32_arg(py, "frequency_penalty", value)?,
            "presence_penalty" => options.presence_penalty = f32_arg(py, "presence_penalty", value)?,
            "seed" => options.seed = Some(u32_arg(py, "seed", value)?),
            "stop" => options.stop = stop_arg(py, value)?,
            "timeout" => options.timeout = Some(timeout_arg(py, value)?),
            "ignore_eos" => options.ignore_eos = bool_arg(py, "ignore_eos", value)?,
            "parse_special" => options.parse_special = bool_arg(py, "parse_special", value)?,
            other => return Err(unexpected_keyword(py, other)),
        }
    }
    // Fail here, with the GIL held and nothing submitted, rather than from the engine.
    options.validate().or_raise(py)?;
    Ok(options)
}

fn unexpected_keyword(py: Python<'_>, key: &str) -> PyErr {
    invalid_type(
        py,
        format!("unexpected keyword argument {key:?}; generation accepts: {}", GENERATE_KEYWORDS.join(", ")),
    )
}
