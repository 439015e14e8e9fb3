//! OpenAI-shaped results, written once for every binding: `chat.completion`,
//! `chat.completion.chunk` and `text_completion` objects, their `usage`, `logprobs` and
//! assistant `message`, from corral's own results. Keys come in OpenAI's order.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use crate::chat::tools::ToolCallDelta;
use crate::chat::ToolCall;
use crate::stream::{FinishReason, Logprob};

/// Whether a generation answers a chat or completes raw text: decides the OpenAI object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseKind {
    Chat,
    Text,
}

/// What every object of one response shares: its kind, id, creation time and model name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseMeta {
    pub kind: ResponseKind,
    /// `chatcmpl-...` or `cmpl-...`, unique in the process.
    pub id: String,
    /// Unix seconds.
    pub created: u64,
    pub model: String,
}

impl ResponseMeta {
    /// A fresh id, created now.
    pub fn new(kind: ResponseKind, model: impl Into<String>) -> Self {
        static SERIAL: AtomicU64 = AtomicU64::new(0);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let prefix = match kind {
            ResponseKind::Chat => "chatcmpl",
            ResponseKind::Text => "cmpl",
        };
        let serial = SERIAL.fetch_add(1, Ordering::Relaxed) & 0xff_ffff;
        ResponseMeta { kind, id: format!("{prefix}-{:x}{serial:06x}", now.as_nanos()), created: now.as_secs(), model: model.into() }
    }

    fn envelope(&self, object: &str) -> Map<String, Value> {
        let mut map = Map::new();
        map.insert("id".into(), self.id.clone().into());
        map.insert("object".into(), object.into());
        map.insert("created".into(), self.created.into());
        map.insert("model".into(), self.model.clone().into());
        map
    }
}

/// OpenAI has no "cancelled": a cancelled generation stopped, as far as a client can tell.
pub fn finish_reason(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Length => "length",
        FinishReason::ToolCalls => "tool_calls",
        _ => "stop",
    }
}

/// OpenAI's `CompletionUsage`.
pub fn usage(prompt_tokens: u32, completion_tokens: u32, cached_tokens: u32) -> Value {
    json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": u64::from(prompt_tokens) + u64::from(completion_tokens),
        "prompt_tokens_details": {"cached_tokens": cached_tokens},
    })
}

/// A choice's `logprobs`: `{"content": [...]}`, or null when they were not requested.
pub fn logprobs(entries: Option<&[Logprob]>) -> Value {
    match entries {
        None => Value::Null,
        Some(entries) => json!({"content": entries.iter().map(Logprob::to_openai).collect::<Vec<_>>()}),
    }
}

/// The assistant message to append to the conversation for the next turn: content null when
/// the model only called tools; `reasoning_content` when it reasoned first (the field
/// DeepSeek's API and OpenAI-compatible servers use).
pub fn assistant_message(text: &str, tool_calls: &[ToolCall], reasoning: &str) -> Value {
    let mut message = Map::new();
    message.insert("role".into(), "assistant".into());
    let content = if !tool_calls.is_empty() && text.trim().is_empty() { Value::Null } else { text.into() };
    message.insert("content".into(), content);
    if !reasoning.is_empty() {
        message.insert("reasoning_content".into(), reasoning.into());
    }
    if !tool_calls.is_empty() {
        message.insert("tool_calls".into(), tool_calls.iter().map(ToolCall::to_openai).collect());
    }
    Value::Object(message)
}

/// A generation's output: its text, reasoning and tool calls.
#[derive(Debug, Clone, Copy)]
pub struct Output<'a> {
    pub text: &'a str,
    pub reasoning: &'a str,
    pub tool_calls: &'a [ToolCall],
}

/// A whole generation: `chat.completion` or `text_completion`.
pub fn completion(meta: &ResponseMeta, output: Output<'_>, reason: FinishReason, usage: Value, logprobs: Value) -> Value {
    let Output { text, reasoning, tool_calls } = output;
    let mut choice = Map::new();
    choice.insert("index".into(), 0.into());
    let object = match meta.kind {
        ResponseKind::Chat => {
            choice.insert("message".into(), assistant_message(text, tool_calls, reasoning));
            "chat.completion"
        }
        ResponseKind::Text => {
            choice.insert("text".into(), text.into());
            "text_completion"
        }
    };
    choice.insert("finish_reason".into(), finish_reason(reason).into());
    choice.insert("logprobs".into(), logprobs);
    let mut response = meta.envelope(object);
    response.insert("choices".into(), Value::Array(vec![Value::Object(choice)]));
    response.insert("usage".into(), usage);
    Value::Object(response)
}

/// One streamed piece: `chat.completion.chunk` (the first announces the assistant role) or a
/// streamed `text_completion`. `usage` is null until the last chunk.
pub fn chunk(
    meta: &ResponseMeta,
    text: &str,
    reasoning: &str,
    first: bool,
    reason: Option<FinishReason>,
    tool_calls: &[ToolCallDelta],
    usage: Value,
    logprobs: Value,
) -> Value {
    let mut choice = Map::new();
    choice.insert("index".into(), 0.into());
    let object = match meta.kind {
        ResponseKind::Chat => {
            let mut delta = Map::new();
            if first {
                delta.insert("role".into(), "assistant".into());
            }
            delta.insert("content".into(), text.into());
            if !reasoning.is_empty() {
                delta.insert("reasoning_content".into(), reasoning.into());
            }
            if !tool_calls.is_empty() {
                delta.insert("tool_calls".into(), tool_calls.iter().map(ToolCallDelta::to_openai).collect());
            }
            choice.insert("delta".into(), Value::Object(delta));
            "chat.completion.chunk"
        }
        ResponseKind::Text => {
            choice.insert("text".into(), text.into());
            "text_completion"
        }
    };
    choice.insert("finish_reason".into(), reason.map_or(Value::Null, |r| finish_reason(r).into()));
    choice.insert("logprobs".into(), logprobs);
    let mut response = meta.envelope(object);
    response.insert("choices".into(), Value::Array(vec![Value::Object(choice)]));
    response.insert("usage".into(), usage);
    Value::Object(response)
}
