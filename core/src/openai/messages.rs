//! Chat messages and tools in OpenAI's shape: `{"role", "content", "tool_calls",
//! "tool_call_id", "name"}` (`toolCalls`, `toolCallId` in Node), tool calls as `{"id",
//! "type": "function", "function": {"name", "arguments"}}`.

use serde_json::Value;

use super::Dialect;
use crate::chat::{Message, ToolCall};
use crate::error::{Error, Result};

/// A conversation: a list of messages.
pub fn messages(value: &Value, dialect: Dialect) -> Result<Vec<Message>> {
    let Value::Array(items) = value else {
        let shape = match dialect {
            Dialect::Python => "a list of {\"role\": str, \"content\": str} dicts",
            Dialect::Node => "an array of { role, content } objects",
        };
        return Err(dialect.wrong_type("messages", shape, value));
    };
    items.iter().enumerate().map(|(i, item)| message(item, dialect, &format!("messages[{i}]"))).collect()
}

/// Tool definitions (OpenAI's function format): a list of them, checked when used.
pub fn tools(value: &Value, dialect: Dialect, name: &str) -> Result<Vec<Value>> {
    match value {
        Value::Array(tools) => Ok(tools.clone()),
        other => Err(dialect.wrong_type(name, &format!("{} of tool {}s", dialect.words().list, object_noun(dialect)), other)),
    }
}

fn object_noun(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Python => "dict",
        Dialect::Node => "object",
    }
}

/// One message; `at` names it in errors (`messages[2]`). `content` is text, a list of
/// `{"type": "text", "text": ...}` parts, or null in an assistant message that calls tools;
/// other keys are ignored.
fn message(value: &Value, dialect: Dialect, at: &str) -> Result<Message> {
    if !value.is_object() {
        return Err(dialect.wrong_type(at, dialect.words().object, value));
    }
    let optional = |key: &str| -> Result<Option<String>> {
        match value.get(dialect.name(key)) {
            None | Some(Value::Null) => Ok(None),
            Some(text) => dialect.text(&dialect.field(at, key), text).map(Some),
        }
    };
    let role = optional("role")?.ok_or_else(|| Error::invalid_argument(format!("{at} has no \"role\"")))?;
    let tool_calls = match value.get(dialect.name("tool_calls")) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(calls)) => calls.iter().map(|call| tool_call(call, dialect, at)).collect::<Result<_>>()?,
        Some(other) => return Err(dialect.wrong_type(&dialect.field(at, "tool_calls"), dialect.words().list, other)),
    };
    let content = match value.get("content") {
        None | Some(Value::Null) if !tool_calls.is_empty() => None,
        None | Some(Value::Null) => return Err(Error::invalid_argument(format!("{at} has no \"content\""))),
        Some(Value::String(text)) => Some(text.clone()),
        Some(Value::Array(parts)) => Some(parts.iter().map(|part| text_part(part, dialect, at)).collect::<Result<String>>()?),
        Some(other) => {
            let expected = format!("{} or {} of text parts", dialect.words().text, dialect.words().list);
            return Err(dialect.wrong_type(&dialect.field(at, "content"), &expected, other));
        }
    };
    Ok(Message { role, content, tool_calls, tool_call_id: optional("tool_call_id")?, name: optional("name")? })
}

/// `{"type": "text", "text": ...}`: the only content part a text model takes.
fn text_part<'a>(part: &'a Value, dialect: Dialect, at: &str) -> Result<&'a str> {
    let content = dialect.field(at, "content");
    if !part.is_object() {
        return Err(dialect.wrong_type(&format!("{content} parts"), &format!("{}s", object_noun(dialect)), part));
    }
    if part.get("type").and_then(Value::as_str) != Some("text") {
        return Err(Error::invalid_argument(format!("{content}: only {{\"type\": \"text\", \"text\": ...}} parts are supported")));
    }
    match part.get("text") {
        None | Some(Value::Null) => Err(Error::invalid_argument(format!("{content}: a text part has no \"text\""))),
        Some(Value::String(text)) => Ok(text),
        Some(other) => Err(dialect.wrong_type(&format!("{content}: \"text\""), dialect.words().text, other)),
    }
}

/// A tool call in an assistant message: OpenAI's shape, or (Node) a result's flat
/// `{id, name, arguments}`.
fn tool_call(value: &Value, dialect: Dialect, at: &str) -> Result<ToolCall> {
    let flat = dialect == Dialect::Node && value.is_object() && value.get("function").is_none();
    let call = if flat {
        let function = serde_json::json!({"name": value.get("name"), "arguments": value.get("arguments")});
        ToolCall::from_openai(&serde_json::json!({"id": value.get("id"), "function": function}))
    } else {
        ToolCall::from_openai(value)
    };
    call.map_err(|e| Error::invalid_argument(format!("{at}: {}", e.message())))
}

impl Message {
    /// Reads OpenAI's shape: `{"role", "content", "tool_calls", "tool_call_id", "name"}`, where
    /// `content` is text, a list of `{"type": "text", "text": ...}` parts, or null in an
    /// assistant message that calls tools.
    pub fn from_openai(value: &Value) -> Result<Message> {
        message(value, Dialect::Python, "message")
    }
}

impl ToolCall {
    /// Reads OpenAI's shape (`{"id", "type": "function", "function": {"name", "arguments"}}`);
    /// `arguments` may be JSON text or a JSON object.
    pub fn from_openai(value: &Value) -> Result<ToolCall> {
        let bad = || Error::invalid_argument("a tool call must look like {\"id\": ..., \"function\": {\"name\": ..., \"arguments\": ...}}");
        let function = value.get("function").filter(|f| f.is_object()).ok_or_else(bad)?;
        let name = function.get("name").and_then(|n| n.as_str()).ok_or_else(bad)?;
        let arguments = match function.get("arguments") {
            Some(Value::String(text)) => text.clone(),
            None | Some(Value::Null) => "{}".to_string(),
            Some(other) => other.to_string(),
        };
        let id = value.get("id").and_then(|i| i.as_str()).unwrap_or_default();
        Ok(ToolCall { id: id.to_string(), name: name.to_string(), arguments })
    }

    /// OpenAI's shape: `{"id", "type": "function", "function": {"name", "arguments"}}` with
    /// the arguments as JSON text.
    pub fn to_openai(&self) -> Value {
        serde_json::json!({
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        })
    }
}
