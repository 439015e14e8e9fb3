//! Python chat messages and prompts to owned Rust values, validated with clear errors.

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyInt, PyList, PyMapping, PySequence, PyString, PyTuple};

use corral::Message;

use crate::error::{invalid_argument, invalid_type, type_name};

const MESSAGES_SHAPE: &str = "messages must be a list of {\"role\": str, \"content\": str} dicts";

/// `[{"role": ..., "content": ...}, ...]` in OpenAI's shape. `content` may also be a list of
/// text parts (`[{"type": "text", "text": ...}]`), or `None` in an assistant message with
/// `tool_calls`; a `tool` message may carry `tool_call_id` and `name`. Other keys are ignored.
pub fn messages(py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<Vec<Message>> {
    let is_text = value.is_instance_of::<PyString>() || value.is_instance_of::<PyBytes>();
    let sequence = match value.cast::<PySequence>() {
        Ok(sequence) if !is_text => sequence,
        _ => return Err(invalid_type(py, format!("{MESSAGES_SHAPE}, got {}", type_name(value)))),
    };
    let mut out = Vec::new();
    for (i, item) in sequence.try_iter()?.enumerate() {
        let item = item?;
        let message = as_dict(&item).map_err(|_| invalid_type(py, format!("messages[{i}] must be a dict, got {}", type_name(&item))))?;
        let role = field(py, &message, i, "role")?;
        let tool_calls = match message.get_item("tool_calls")? {
            Some(calls) if !calls.is_none() => tool_calls(py, &calls, i)?,
            _ => Vec::new(),
        };
        let content = match message.get_item("content")? {
            Some(content) if !content.is_none() => Some(content_text(py, &content, i)?),
            _ if !tool_calls.is_empty() => None,
            _ => return Err(invalid_argument(py, format!("messages[{i}] has no \"content\""))),
        };
        let optional = |key: &str| -> PyResult<Option<String>> {
            match message.get_item(key)? {
                Some(v) if !v.is_none() => field(py, &message, i, key).map(Some),
                _ => Ok(None),
            }
        };
        out.push(Message { role, content, tool_calls, tool_call_id: optional("tool_call_id")?, name: optional("name")? });
    }
    Ok(out)
}

/// An assistant message's `tool_calls`: OpenAI dicts (`arguments` as JSON text or a dict), or
/// `ToolCall` objects from an earlier result.
fn tool_calls(py: Python<'_>, value: &Bound<'_, PyAny>, i: usize) -> PyResult<Vec<corral::ToolCall>> {
    if !(value.is_instance_of::<PyList>() || value.is_instance_of::<PyTuple>()) {
        return Err(invalid_type(py, format!("messages[{i}][\"tool_calls\"] must be a list, got {}", type_name(value))));
    }
    value
        .try_iter()?
        .map(|call| {
            let call = call?;
            if let Ok(call) = call.cast::<crate::stream::PyToolCall>() {
                return Ok(call.get().to_core());
            }
            let json = crate::options::json_arg(py, "tool_calls", &call)?;
            corral::ToolCall::from_openai(&json).map_err(|e| invalid_argument(py, format!("messages[{i}]: {}", e.message())))
        })
        .collect()
}

/// A dict as is; any other mapping copied into one.
fn as_dict<'py>(item: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyDict>> {
    if let Ok(dict) = item.cast::<PyDict>() {
        return Ok(dict.clone());
    }
    let mapping = item.cast::<PyMapping>()?;
    let dict = PyDict::new(item.py());
    dict.update(mapping)?;
    Ok(dict)
}

fn field(py: Python<'_>, message: &Bound<'_, PyDict>, i: usize, key: &str) -> PyResult<String> {
    let value = message.get_item(key)?.ok_or_else(|| invalid_argument(py, format!("messages[{i}] has no {key:?}")))?;
    let text = value
        .cast::<PyString>()
        .map_err(|_| invalid_type(py, format!("messages[{i}][{key:?}] must be a str, got {}", type_name(&value))))?;
    Ok(text.to_cow()?.into_owned())
}

fn content_text(py: Python<'_>, content: &Bound<'_, PyAny>, i: usize) -> PyResult<String> {
    if let Ok(text) = content.cast::<PyString>() {
        return Ok(text.to_cow()?.into_owned());
    }
    if !content.is_instance_of::<PyList>() {
        return Err(invalid_type(
            py,
            format!("messages[{i}][\"content\"] must be a str or a list of text parts, got {}", type_name(content)),
        ));
    }
    let mut text = String::new();
    for part in content.try_iter()? {
        let part = part?;
        let part = part
            .cast::<PyDict>()
            .map_err(|_| invalid_type(py, format!("messages[{i}][\"content\"] parts must be dicts, got {}", type_name(&part))))?;
        let kind = part.get_item("type")?;
        let is_text = kind.as_ref().and_then(|k| k.cast::<PyString>().ok()).is_some_and(|k| k == "text");
        if !is_text {
            return Err(invalid_argument(py, format!("messages[{i}][\"content\"]: only {{\"type\": \"text\"}} parts are supported")));
        }
        let part_text = part
            .get_item("text")?
            .ok_or_else(|| invalid_argument(py, format!("messages[{i}][\"content\"]: a text part has no \"text\"")))?;
        let part_text = part_text
            .cast::<PyString>()
            .map_err(|_| invalid_type(py, format!("messages[{i}][\"content\"]: \"text\" must be a str, got {}", type_name(&part_text))))?;
        text.push_str(&part_text.to_cow()?);
    }
    Ok(text)
}

/// A completion prompt: text, or token ids (used as given: no BOS is added).
pub enum Prompt {
    Text(String),
    Tokens(Vec<i32>),
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
