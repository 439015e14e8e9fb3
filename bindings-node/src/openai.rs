//! OpenAI-shaped results for Node: the objects corral-core writes (`corral::openai`), from the
//! results this binding hands out, so every language gives the same JSON.

use napi_derive::napi;
use serde_json::Value;

use corral::openai::{ResponseKind, ResponseMeta};
use corral::FinishReason;

use crate::stream::{Chunk, Completion, Logprob, ToolCall, ToolCallDelta, Usage};

/// The envelope of an OpenAI object.
#[napi(object, js_name = "OpenAIOptions")]
pub struct OpenAIOptions {
    /// The `model` field (e.g. `model.info.name`).
    pub model: String,
    /// The response id; generated when left out. Give every chunk of one stream the same id.
    pub id: Option<String>,
    /// Unix seconds; now when left out.
    pub created: Option<f64>,
}

fn meta(options: OpenAIOptions) -> ResponseMeta {
    let mut meta = ResponseMeta::new(ResponseKind::Chat, options.model);
    if let Some(id) = options.id {
        meta.id = id;
    }
    if let Some(created) = options.created.filter(|c| c.is_finite() && *c >= 0.0) {
        meta.created = created as u64;
    }
    meta
}

fn finish_reason(name: &str) -> Option<FinishReason> {
    [FinishReason::Stop, FinishReason::Length, FinishReason::Cancelled, FinishReason::ToolCalls].into_iter().find(|r| r.as_str() == name)
}

fn usage(u: &Usage) -> Value {
    corral::openai::usage(u.prompt_tokens, u.completion_tokens, u.cached_tokens)
}

fn logprobs(entries: &Option<Vec<Logprob>>) -> Value {
    let token = |t: &crate::stream::TokenLogprob| corral::TokenLogprob { token: t.token, text: t.text.clone(), logprob: t.logprob as f32 };
    let core: Option<Vec<corral::Logprob>> = entries
        .as_ref()
        .map(|list| list.iter().map(|l| corral::Logprob { token: token(&l.token), top: l.top.iter().map(token).collect() }).collect());
    corral::openai::logprobs(core.as_deref())
}

/// A fresh `chatcmpl-...` id, for the chunks of one stream.
#[napi(js_name = "openAIId", catch_unwind)]
pub fn openai_id() -> String {
    ResponseMeta::new(ResponseKind::Chat, "").id
}

/// A `chat.completion` object from a chat result.
#[napi(js_name = "toOpenAIChatCompletion", catch_unwind, ts_return_type = "Record<string, any>")]
pub fn to_openai_chat_completion(completion: Completion, options: OpenAIOptions) -> Value {
    let calls: Vec<corral::ToolCall> = completion
        .tool_calls
        .iter()
        .map(|c: &ToolCall| corral::ToolCall { id: c.id.clone(), name: c.name.clone(), arguments: c.arguments.clone() })
        .collect();
    let reason = finish_reason(&completion.finish_reason).unwrap_or(FinishReason::Stop);
    let output = corral::openai::Output { text: &completion.text, reasoning: &completion.reasoning, tool_calls: &calls };
    corral::openai::completion(&meta(options), output, reason, usage(&completion.usage), logprobs(&completion.logprobs))
}

/// A `chat.completion.chunk` object from a chat stream's chunk; `first` adds the role.
#[napi(js_name = "toOpenAIChatCompletionChunk", catch_unwind, ts_return_type = "Record<string, any>")]
pub fn to_openai_chat_completion_chunk(chunk: Chunk, options: OpenAIOptions, first: Option<bool>) -> Value {
    let deltas: Vec<corral::ToolCallDelta> = chunk
        .tool_calls
        .iter()
        .flatten()
        .map(|d: &ToolCallDelta| corral::ToolCallDelta {
            index: d.index,
            id: d.id.clone(),
            name: d.name.clone(),
            arguments: d.arguments.clone(),
        })
        .collect();
    let reason = chunk.finish_reason.as_deref().and_then(finish_reason);
    let usage = chunk.usage.as_ref().map_or(Value::Null, usage);
    let reasoning = chunk.reasoning.as_deref().unwrap_or("");
    corral::openai::chunk(&meta(options), &chunk.text, reasoning, first.unwrap_or(false), reason, &deltas, usage, logprobs(&chunk.logprobs))
}
