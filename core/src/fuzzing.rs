//! Entry points for the cargo-fuzz targets in `fuzz/` (feature `fuzzing`; not part of the API).
//!
//! Each takes the fuzzer's raw bytes, decodes them as the target's input format says, and runs
//! one of corral's parsers of untrusted input. None panics on any input itself: a panic or an
//! abort under one of them is a bug in the code it calls. (The C ABI's JSON parsing is fuzzed
//! through corral-c's public functions: fuzz/fuzz_targets/c_json.rs.)

use serde_json::Value;

use crate::chat::tools::{ToolCallParser, ToolChoice, ToolFormat};
use crate::chat::{ChatTemplate, Message};

/// Separates the parts of a multi-part input (a template and its messages, messages and tools).
pub const SEPARATOR: u8 = 0;

fn split(data: &[u8]) -> (&[u8], Option<&[u8]>) {
    match data.iter().position(|&b| b == SEPARATOR) {
        Some(at) => (&data[..at], Some(&data[at + 1..])),
        None => (data, None),
    }
}

/// A GGUF file's bytes: `crate::model::gguf::parse` as `read_header` runs it on a file, then
/// `crate::model::hparams::check` on the header.
pub fn gguf_header(data: &[u8]) -> Result<(), String> {
    if data.is_empty() {
        return Err("the file is empty".into()); // read_header refuses it before parsing.
    }
    let mut reader = crate::model::gguf::Reader { inner: data, pos: 0, size: data.len() as u64 };
    let header = crate::model::gguf::parse(&mut reader)?;
    crate::model::hparams::check(&header)
}

/// The conversation a template renders when the input brings none (or an unreadable one).
const DEFAULT_CONVERSATION: &str = r#"{"messages": [
  {"role": "system", "content": "You are helpful."},
  {"role": "user", "content": "What is the weather in Paris?"},
  {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
    "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
  {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": "18 C"},
  {"role": "user", "content": "Thanks!"}],
 "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
   "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
 "add_generation_prompt": true}"#;

/// A chat template and what it renders: `TEMPLATE [NUL CONVERSATION]`, where CONVERSATION is
/// a JSON object `{"messages": [...OpenAI messages], "tools": [...], "add_generation_prompt":
/// bool, "bos_token": "...", "eos_token": "..."}` (every field optional; an unreadable one or
/// none at all renders a default conversation with tools). Messages that do not read are left
/// out. Compiles with `ChatTemplate::new`, then renders.
pub fn chat_template(data: &[u8]) -> Result<String, crate::Error> {
    let (source, conversation) = split(data);
    let Ok(source) = std::str::from_utf8(source) else {
        return Err(crate::Error::invalid_argument("the template is not UTF-8"));
    };
    let conversation: Value = conversation
        .and_then(|c| serde_json::from_slice(c).ok())
        .filter(Value::is_object)
        .unwrap_or_else(|| serde_json::from_str(DEFAULT_CONVERSATION).unwrap_or_default());
    let messages: Vec<Message> = match conversation.get("messages") {
        Some(Value::Array(items)) => items.iter().filter_map(|m| Message::from_openai(m).ok()).collect(),
        _ => Vec::new(),
    };
    let tools: Vec<Value> = match conversation.get("tools") {
        Some(Value::Array(tools)) => tools.clone(),
        _ => Vec::new(),
    };
    let add_generation_prompt = conversation.get("add_generation_prompt").and_then(Value::as_bool).unwrap_or(true);
    let token = |key: &str, default: &str| conversation.get(key).and_then(Value::as_str).unwrap_or(default).to_string();
    let template = ChatTemplate::new(source, token("bos_token", "<s>"), token("eos_token", "</s>"))?;
    template.render(&messages, add_generation_prompt, &tools)
}

/// A JSON schema (text) to GBNF: `crate::chat::schema::json_schema_grammar`, which runs llama.cpp's
/// json-schema-to-grammar.
pub fn json_schema(data: &[u8]) -> Result<String, crate::Error> {
    let Ok(schema) = std::str::from_utf8(data) else {
        return Err(crate::Error::invalid_argument("the schema is not UTF-8"));
    };
    crate::chat::schema::json_schema_grammar(schema)
}

/// Model output to the tool-call parser: `SELECTOR TEXT`. The selector's low two bits pick the
/// format (Hermes, Llama 3, Mistral, generic); the rest, plus one, is how many bytes each
/// `push` gets (moved to the next character boundary), so streaming splits are exercised. The
/// text (lossy UTF-8) also goes through `ToolChoice::parse`, and when it is a JSON array,
/// through `tool_specs`.
pub fn tool_calls(data: &[u8]) -> Result<(), String> {
    let Some((&selector, text)) = data.split_first() else { return Ok(()) };
    let format = [ToolFormat::Hermes, ToolFormat::Llama3, ToolFormat::Mistral, ToolFormat::Generic][(selector & 3) as usize];
    let chunk = (selector >> 2) as usize + 1;
    let text = String::from_utf8_lossy(text);
    let mut parser = ToolCallParser::new(format);
    let mut rest: &str = &text;
    while !rest.is_empty() {
        let mut at = chunk.min(rest.len());
        while !rest.is_char_boundary(at) {
            at += 1;
        }
        let (piece, tail) = rest.split_at(at);
        let _ = parser.push(piece);
        rest = tail;
    }
    let _ = parser.finish();
    let _ = ToolChoice::parse(&text);
    if let Ok(Value::Array(tools)) = serde_json::from_str::<Value>(&text) {
        crate::chat::tools::tool_specs(&tools).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// JSON text, read the way the bindings' values are (core/src/openai): as generation options,
/// messages, tools and `tool_choice`, in both dialects. Any outcome but a panic is fine.
pub fn openai_vocabulary(data: &[u8]) -> Result<(), String> {
    let Ok(value) = serde_json::from_slice::<Value>(data) else { return Ok(()) };
    for dialect in [crate::openai::Dialect::Python, crate::openai::Dialect::Node] {
        let _ = crate::openai::generate_options(&value, dialect);
        let _ = crate::openai::messages(&value, dialect);
        let _ = crate::openai::tools(&value, dialect, "tools");
        let _ = crate::openai::tool_choice(&value, dialect, "tool_choice");
    }
    Ok(())
}

/// A saved session state (`Model::session_from_state`'s input), decoded and checked; a state
/// that decodes is encoded again and must decode to the same. Any error is fine; a panic or a
/// difference is a bug.
pub fn session_state(data: &[u8]) -> Result<(), String> {
    let Ok(state) = crate::state::decode(data) else { return Ok(()) };
    let again = crate::state::decode(&crate::state::encode(&state)).map_err(|e| e.to_string())?;
    if again != state {
        return Err("a decoded state does not survive encoding".into());
    }
    Ok(())
}
