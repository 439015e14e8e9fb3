//! Chat messages and tools in OpenAI's shape (camelCase keys: `toolCalls`, `toolCallId`). napi
//! hands them over as JSON (its `serde-json` support, which refuses NaN, functions and
//! `undefined` array items); corral-core reads them (`corral::openai`).

use corral::openai::Dialect;

use crate::error::OrThrow;

/// `[{ role, content, toolCalls, toolCallId, name }, ...]`; tool calls in OpenAI's shape or as
/// a result's `{ id, name, arguments }`.
pub(crate) fn messages(value: &serde_json::Value) -> napi::Result<Vec<corral::Message>> {
    corral::openai::messages(value, Dialect::Node).or_throw()
}

/// OpenAI's `tools` array (absent or null: none).
pub(crate) fn tools(value: Option<&serde_json::Value>) -> napi::Result<Vec<serde_json::Value>> {
    match value {
        None | Some(serde_json::Value::Null) => Ok(Vec::new()),
        Some(tools) => corral::openai::tools(tools, Dialect::Node, "tools").or_throw(),
    }
}

/// A completion prompt as JS gives it: text or token ids.
pub(crate) fn prompt(prompt: &napi::bindgen_prelude::Either<String, Vec<i32>>) -> corral::Prompt<'_> {
    match prompt {
        napi::bindgen_prelude::Either::A(text) => corral::Prompt::Text(text),
        napi::bindgen_prelude::Either::B(tokens) => corral::Prompt::Tokens(tokens),
    }
}
