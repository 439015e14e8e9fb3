//! Python keyword arguments to core options. Every default comes from core's
//! `GenerateOptions::default()`: a keyword left out, or passed as `None`, keeps it.

use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use corral::{checked_u32, Constraint, GenerateOptions, ToolChoice};

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
    "grammar",
    "response_format",
    "logprobs",
    "top_logprobs",
    "tools",
    "tool_choice",
    "template",
];

/// A non-negative integer that fits in `u32`. Bools are rejected although Python treats them as ints.
pub fn u32_arg(py: Python<'_>, name: &str, value: &Bound<'_, PyAny>) -> PyResult<u32> {
    if !value.is_instance_of::<PyInt>() || value.is_instance_of::<PyBool>() {
        return Err(invalid_type(py, format!("{name} must be an int, got {}", type_name(value))));
    }
    let value: i64 = value.extract().map_err(|_| invalid_argument(py, format!("{name} is out of range, got {value}")))?;
    checked_u32(name, value).or_raise(py)
}

fn f32_arg(py: Python<'_>, name: &str, value: &Bound<'_, PyAny>) -> PyResult<f32> {
    let is_number = value.is_instance_of::<PyFloat>() || value.is_instance_of::<PyInt>();
    if !is_number || value.is_instance_of::<PyBool>() {
        return Err(invalid_type(py, format!("{name} must be a float, got {}", type_name(value))));
    }
    let value: f64 = value.extract().map_err(|_| invalid_argument(py, format!("{name} is out of range, got {value}")))?;
    // Values beyond f32 become infinite, which core rejects as not finite.
    Ok(value as f32)
}

pub fn bool_arg(py: Python<'_>, name: &str, value: &Bound<'_, PyAny>) -> PyResult<bool> {
    value.cast::<PyBool>().map(|b| b.is_true()).map_err(|_| invalid_type(py, format!("{name} must be a bool, got {}", type_name(value))))
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
    let seconds: f64 = value.extract().map_err(|_| invalid_argument(py, format!("timeout is out of range, got {value}")))?;
    Duration::try_from_secs_f64(seconds)
        .map_err(|_| invalid_argument(py, format!("timeout must be a positive number of seconds, got {seconds}")))
}

fn str_arg(py: Python<'_>, name: &str, value: &Bound<'_, PyAny>) -> PyResult<String> {
    match value.cast::<PyString>() {
        Ok(s) => Ok(s.to_cow()?.into_owned()),
        Err(_) => Err(invalid_type(py, format!("{name} must be a str, got {}", type_name(value)))),
    }
}

/// A JSON-serialisable Python value (dicts, lists, str, numbers, bools, None) as JSON.
pub fn json_arg(py: Python<'_>, name: &str, value: &Bound<'_, PyAny>) -> PyResult<serde_json::Value> {
    let text: String = py
        .import("json")?
        .call_method1("dumps", (value,))
        .map_err(|e| invalid_type(py, format!("{name} must be JSON-serialisable: {}", e.value(py))))?
        .extract()?;
    serde_json::from_str(&text).map_err(|e| invalid_argument(py, format!("{name}: {e}")))
}

/// OpenAI's `response_format`: `{"type": "text"}`, `{"type": "json_object"}` or
/// `{"type": "json_schema", "json_schema": {"name": ..., "schema": {...}}}`.
fn response_format_arg(py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<Option<Constraint>> {
    let format = json_arg(py, "response_format", value)?;
    let shape = "response_format must be {\"type\": \"text\" | \"json_object\" | \"json_schema\", ...}";
    match format.get("type").and_then(|t| t.as_str()) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(match format.get("schema") {
            // llama-cpp-python's extension: a schema inside json_object.
            Some(schema) if !schema.is_null() => Constraint::JsonSchema(schema.to_string()),
            _ => Constraint::JsonObject,
        })),
        Some("json_schema") => {
            let schema = format
                .get("json_schema")
                .and_then(|s| s.get("schema"))
                .ok_or_else(|| invalid_argument(py, "response_format json_schema needs {\"json_schema\": {\"schema\": {...}}}"))?;
            Ok(Some(Constraint::JsonSchema(schema.to_string())))
        }
        _ if format.is_object() => Err(invalid_argument(py, shape)),
        _ => Err(invalid_type(py, format!("{shape}, got {}", type_name(value)))),
    }
}

/// `"auto"`, `"none"`, `"required"` or `{"type": "function", "function": {"name": ...}}`.
fn tool_choice_arg(py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<ToolChoice> {
    if let Ok(text) = value.cast::<PyString>() {
        return ToolChoice::parse(&text.to_cow()?).or_raise(py);
    }
    let choice = json_arg(py, "tool_choice", value)?;
    match choice.get("function").and_then(|f| f.get("name")).and_then(|n| n.as_str()) {
        Some(name) => Ok(ToolChoice::Function(name.to_string())),
        None => Err(invalid_argument(
            py,
            "tool_choice must be \"auto\", \"none\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}",
        )),
    }
}

fn tools_arg(py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<Vec<serde_json::Value>> {
    match json_arg(py, "tools", value)? {
        serde_json::Value::Array(tools) => Ok(tools),
        _ => Err(invalid_type(py, format!("tools must be a list of tool dicts, got {}", type_name(value)))),
    }
}

/// Builds core options from the keyword arguments of a generation call.
pub fn generate_options(py: Python<'_>, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<GenerateOptions> {
    let mut options = GenerateOptions::default();
    let Some(kwargs) = kwargs else { return Ok(options) };
    let (mut grammar, mut response_format) = (None, None);
    let (mut logprobs, mut top_logprobs) = (false, None);
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
            "grammar" => grammar = Some(Constraint::Grammar(str_arg(py, "grammar", value)?)),
            "response_format" => response_format = response_format_arg(py, value)?,
            "logprobs" => logprobs = bool_arg(py, "logprobs", value)?,
            "top_logprobs" => top_logprobs = Some(u32_arg(py, "top_logprobs", value)?),
            "tools" => options.tools = tools_arg(py, value)?,
            "tool_choice" => options.tool_choice = tool_choice_arg(py, value)?,
            "template" => options.template = Some(str_arg(py, "template", value)?),
            other => return Err(unexpected_keyword(py, other)),
        }
    }
    options.constraint = match (grammar, response_format) {
        (Some(_), Some(_)) => return Err(invalid_argument(py, "grammar and response_format exclude each other: give one")),
        (grammar, format) => grammar.or(format),
    };
    // OpenAI's pair: `logprobs=True` turns them on, `top_logprobs=N` adds alternatives.
    if logprobs || top_logprobs.is_some() {
        options.logprobs = Some(top_logprobs.unwrap_or(0));
    }
    // Fail here, with the GIL held and nothing submitted, rather than from the engine.
    options.validate().or_raise(py)?;
    Ok(options)
}

fn unexpected_keyword(py: Python<'_>, key: &str) -> PyErr {
    invalid_type(py, format!("unexpected keyword argument {key:?}; generation accepts: {}", GENERATE_KEYWORDS.join(", ")))
}
