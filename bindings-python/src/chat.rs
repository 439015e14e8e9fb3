//! Python chat messages and prompts to owned Rust values. Messages are read by corral-core
//! (`corral::openai::messages`): here they only become JSON.

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyInt, PyList, PySequence, PyString, PyTuple};

use corral::openai::Dialect;
use corral::Message;

use crate::error::{invalid_argument, invalid_type, type_name, OrRaise};

/// `[{"role": ..., "content": ...}, ...]` in OpenAI's shape (any sequence of mappings; tool
/// calls may be `ToolCall` objects from an earlier result).
pub fn messages(py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<Vec<Message>> {
    let is_text = value.is_instance_of::<PyString>() || value.is_instance_of::<PyBytes>();
    let json = match value.cast::<PySequence>() {
        Ok(sequence) if !is_text => serde_json::Value::Array(
            sequence
                .try_iter()?
                .enumerate()
                .map(|(i, item)| crate::json::from_py(py, &item?, &format!("messages[{i}]")))
                .collect::<PyResult<_>>()?,
        ),
        // Not a list: core names what it is instead.
        _ => crate::json::from_py(py, value, "messages")?,
    };
    corral::openai::messages(&json, Dialect::Python).or_raise(py)
}

/// OpenAI's `tools` (function definitions), for `apply_chat_template`.
pub fn tools(py: Python<'_>, value: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<serde_json::Value>> {
    match value {
        Some(tools) if !tools.is_none() => {
            corral::openai::tools(&crate::json::from_py(py, tools, "tools")?, Dialect::Python, "tools").or_raise(py)
        }
        _ => Ok(Vec::new()),
    }
}

/// A completion prompt: text, or token ids (used as given: no BOS is added).
pub enum Prompt {
    Text(String),
    Tokens(Vec<i32>),
}

impl Prompt {
    pub fn as_core(&self) -> corral::Prompt<'_> {
        match self {
            Prompt::Text(text) => corral::Prompt::Text(text),
            Prompt::Tokens(tokens) => corral::Prompt::Tokens(tokens),
        }
    }
}

pub fn prompt(py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<Prompt> {
    if let Ok(text) = value.cast::<PyString>() {
        return Ok(Prompt::Text(text.to_cow()?.into_owned()));
    }
    if value.is_instance_of::<PyList>() || value.is_instance_of::<PyTuple>() {
        return Ok(Prompt::Tokens(token_ids(py, value, "prompt")?));
    }
    Err(invalid_type(py, format!("prompt must be a str or a list of token ids, got {}", type_name(value))))
}

/// A list of token ids. Ids outside the vocabulary are left to core, which names the bad one.
pub fn token_ids(py: Python<'_>, value: &Bound<'_, PyAny>, name: &str) -> PyResult<Vec<i32>> {
    if value.is_instance_of::<PyString>() || !(value.is_instance_of::<PyList>() || value.is_instance_of::<PyTuple>()) {
        return Err(invalid_type(py, format!("{name} must be a list of int token ids, got {}", type_name(value))));
    }
    value
        .try_iter()?
        .enumerate()
        .map(|(i, id)| {
            let id = id?;
            if !id.is_instance_of::<PyInt>() || id.is_instance_of::<PyBool>() {
                return Err(invalid_type(py, format!("{name}[{i}] must be an int, got {}", type_name(&id))));
            }
            id.extract::<i32>().map_err(|_| invalid_argument(py, format!("{name}[{i}] = {id} is not a valid token id")))
        })
        .collect()
}
