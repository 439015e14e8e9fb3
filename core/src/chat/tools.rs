//! Tool (function) calling: how a model is asked to call tools, the grammar that forces a call
//! when the caller requires one, and the parser that turns the model's output back into
//! structured calls, incrementally, so streams carry argument deltas.
//!
//! Models print tool calls in their own format, which the chat template reveals:
//! - [`ToolFormat::Hermes`]: `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` (Qwen 2.5+,
//!   Hermes 2/3, SmolLM3 and most recent fine-tunes);
//! - [`ToolFormat::Llama3`]: a bare `{"name": ..., "parameters": {...}}` object (Llama 3.1+);
//! - [`ToolFormat::Mistral`]: `[TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]`;
//! - [`ToolFormat::Generic`]: any other template, including templates that ignore `tools`.
//!   corral then describes the tools in a system message and constrains the output with a
//!   grammar to either plain text or one `{"name": ..., "arguments": {...}}` object, so even a
//!   model never trained for tools produces calls that parse.

use serde_json::{json, Value};

use crate::chat::{Message, ToolCall};
use crate::error::{Error, ErrorKind, Result};

/// Whether and which tool the model may call (OpenAI's `tool_choice`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ToolChoice {
    /// The model decides between answering and calling tools.
    #[default]
    Auto,
    /// Tools are described but never called.
    None,
    /// The model must call at least one tool.
    Required,
    /// The model must call this tool.
    Function(String),
}

impl ToolChoice {
    /// Parses `"auto"`, `"none"`, `"required"` or a function name given as `{"name": ...}` elsewhere.
    pub fn parse(text: &str) -> Result<ToolChoice> {
        crate::openai::tool_choice(&Value::String(text.to_string()), crate::openai::Dialect::Python, "tool_choice")
    }
}

/// One tool the model may call.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ToolSpec {
    pub name: String,
    /// JSON schema of the arguments object.
    pub parameters: Value,
}

/// Checks tool definitions (OpenAI's `{"type": "function", "function": {"name", "description",
/// "parameters"}}`, or the bare function object) and extracts what corral needs.
pub(crate) fn tool_specs(tools: &[Value]) -> Result<Vec<ToolSpec>> {
    let mut specs: Vec<ToolSpec> = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        let function = match tool.get("type").and_then(Value::as_str) {
            Some("function") => tool.get("function"),
            Some(other) => return Err(Error::invalid_argument(format!("tools[{i}].type must be \"function\", got {other:?}"))),
            None => Some(tool),
        }
        .filter(|f| f.is_object())
        .ok_or_else(|| Error::invalid_argument(format!("tools[{i}].function must be an object")))?;
        let name = function
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| Error::invalid_argument(format!("tools[{i}].function.name must be a non-empty string")))?;
        if specs.iter().any(|s| s.name == name) {
            return Err(Error::invalid_argument(format!("tools[{i}]: two tools are named {name:?}")));
        }
        let parameters = match function.get("parameters") {
            None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
            Some(p) if p.is_object() => p.clone(),
            Some(_) => return Err(Error::invalid_argument(format!("tools[{i}].function.parameters must be a JSON schema object"))),
        };
        specs.push(ToolSpec { name: name.to_string(), parameters });
    }
    Ok(specs)
}

/// How a model writes tool calls (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolFormat {
    Hermes,
    Llama3,
    Mistral,
    Generic,
}

impl ToolFormat {
    /// Recognises the format from the chat template's source.
    pub fn detect(template: &str) -> ToolFormat {
        if template.contains("<tool_call>") {
            ToolFormat::Hermes
        } else if template.contains("[TOOL_CALLS]") {
            ToolFormat::Mistral
        } else if template.contains("<|python_tag|>") || template.contains("Environment: ipython") {
            ToolFormat::Llama3
        } else {
            ToolFormat::Generic
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ToolFormat::Hermes => "hermes",
            ToolFormat::Llama3 => "llama3",
            ToolFormat::Mistral => "mistral",
            ToolFormat::Generic => "generic",
        }
    }
}

/// The system message that describes tools to a model whose template cannot.
pub(crate) fn generic_tool_prompt(tools: &[Value], choice: &ToolChoice) -> String {
    let list: Vec<String> = tools.iter().map(|t| serde_json::to_string(t).unwrap_or_default()).collect();
    let rule = match choice {
        ToolChoice::Required => "You must call one of these functions.".to_string(),
        ToolChoice::Function(name) => format!("You must call the function {name:?}."),
        _ => "Call a function only when it helps to answer; otherwise answer normally.".to_string(),
    };
    format!(
        "You can call these functions:\n{}\n{rule} To call a function, reply with only a JSON object \
         of the form {{\"name\": <function name>, \"arguments\": <arguments object>}}.",
        list.join("\n")
    )
}

/// Rewrites tool use for a template that knows nothing of it: an assistant's calls become its
/// text, in the JSON form the generic format asks the model for, so the template sees plain
/// messages and the model sees its earlier calls the way it is asked to write them.
pub(crate) fn without_tool_calls(messages: &[Message]) -> Vec<Message> {
    messages
        .iter()
        .map(|m| {
            if m.tool_calls.is_empty() {
                return Message { content: Some(m.content.clone().unwrap_or_default()), ..m.clone() };
            }
            let calls: Vec<String> = m
                .tool_calls
                .iter()
                .map(|c| {
                    let arguments: Value = serde_json::from_str(&c.arguments).unwrap_or_else(|_| Value::String(c.arguments.clone()));
                    json!({"name": c.name, "arguments": arguments}).to_string()
                })
                .collect();
            let mut content = m.content.clone().unwrap_or_default();
            if !content.is_empty() {
                content.push('\n');
            }
            content.push_str(&calls.join("\n"));
            Message { role: m.role.clone(), content: Some(content), ..Default::default() }
        })
        .collect()
}

/// Puts the generic tool description into the conversation: appended to the first system
/// message, or as a new first system message.
pub(crate) fn with_generic_tool_prompt(messages: &[Message], prompt: &str) -> Vec<Message> {
    let mut out = messages.to_vec();
    match out.first_mut() {
        Some(first) if first.role == "system" => {
            let content = first.content.get_or_insert_with(String::new);
            if !content.is_empty() {
                content.push_str("\n\n");
            }
            content.push_str(prompt);
        }
        _ => out.insert(0, Message::new("system", prompt)),
    }
    out
}

/// A GBNF grammar for the model's output under `choice`, or `None` when generation is free.
/// `required`/a named function: exactly one call in the model's own format. `auto` with the
/// generic format: one call or plain text that does not start with `{`.
///
/// A call is `{"name": "<tool>", "arguments": <object valid against the tool's parameters>}`,
/// name first so that streams can announce the call before its arguments arrive (a grammar
/// compiled from one schema for the whole object would order the keys alphabetically).
pub(crate) fn tool_grammar(format: ToolFormat, tools: &[ToolSpec], choice: &ToolChoice) -> Result<Option<String>> {
    let allowed: Vec<&ToolSpec> = match choice {
        ToolChoice::None => return Ok(None),
        ToolChoice::Auto if format != ToolFormat::Generic => return Ok(None),
        ToolChoice::Function(name) => {
            let tool = tools
                .iter()
                .find(|t| &t.name == name)
                .ok_or_else(|| Error::invalid_argument(format!("tool_choice names {name:?}, which is not in tools")))?;
            vec![tool]
        }
        ToolChoice::Auto | ToolChoice::Required => tools.iter().collect(),
    };
    let arguments_key = if format == ToolFormat::Llama3 { "parameters" } else { "arguments" };
    let mut rules = Vec::new();
    let mut alternatives = Vec::new();
    for (i, tool) in allowed.iter().enumerate() {
        let prefix = format!("tool{i}-");
        let arguments = crate::chat::schema::json_schema_grammar(&tool.parameters.to_string()).map_err(|e| {
            Error::new(
                ErrorKind::InvalidArgument,
                format!("the parameters of tool {:?} are not a usable JSON schema: {}", tool.name, e.message()),
            )
        })?;
        rules.push(prefix_rule_names(&arguments, &prefix));
        let opening = format!("{{\"name\": {}, \"{arguments_key}\": ", json_string(&tool.name));
        alternatives.push(format!("{} {prefix}root \"}}\"", gbnf_literal(&opening)));
    }
    let root = match (format, choice) {
        (ToolFormat::Hermes, _) => r#"root ::= "<tool_call>\n" call "\n</tool_call>""#.to_string(),
        (ToolFormat::Mistral, _) => r#"root ::= "[TOOL_CALLS]"? "[" call "]""#.to_string(),
        (ToolFormat::Generic, ToolChoice::Auto) => "root ::= call | free-text\nfree-text ::= [^{ \\t\\n] [^\\x00]*".to_string(),
        _ => "root ::= call".to_string(),
    };
    Ok(Some(format!("{root}\ncall ::= {}\n{}", alternatives.join(" | "), rules.join("\n"))))
}

fn json_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}

/// `text` as a GBNF string literal.
fn gbnf_literal(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Renames every rule of a GBNF grammar with `prefix`, so that grammars compiled separately
/// can live in one. Rule names are words starting with a letter outside string literals,
/// character classes, repetition braces and comments.
fn prefix_rule_names(grammar: &str, prefix: &str) -> String {
    let mut out = String::with_capacity(grammar.len() * 2);
    let mut chars = grammar.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' | '[' => {
                let close = if c == '"' { '"' } else { ']' };
                out.push(c);
                while let Some(d) = chars.next() {
                    out.push(d);
                    if d == '\\' {
                        if let Some(escaped) = chars.next() {
                            out.push(escaped);
                        }
                    } else if d == close {
                        break;
                    }
                }
            }
            '{' | '#' => {
                let close = if c == '{' { '}' } else { '\n' };
                out.push(c);
                for d in chars.by_ref() {
                    out.push(d);
                    if d == close {
                        break;
                    }
                }
            }
            c if c.is_ascii_alphabetic() => {
                out.push_str(prefix);
                out.push(c);
                while let Some(&d) = chars.peek() {
                    if d.is_ascii_alphanumeric() || d == '-' || d == '_' {
                        out.push(d);
                        chars.next();
                    } else {
                        break;
                    }
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// One step of a streamed tool call: the first delta of a call carries its `id` and `name`;
/// later ones carry more `arguments` text (concatenated, they are the arguments JSON).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ToolCallDelta {
    /// Which call of this reply (0, 1, ...).
    pub index: u32,
    pub id: Option<String>,
    pub name: Option<String>,
    pub arguments: String,
}

impl ToolCallDelta {
    /// OpenAI's streaming shape (`choices[].delta.tool_calls[]`).
    pub fn to_openai(&self) -> Value {
        let mut function = serde_json::Map::new();
        if let Some(name) = &self.name {
            function.insert("name".into(), name.clone().into());
        }
        function.insert("arguments".into(), self.arguments.clone().into());
        let mut delta = serde_json::Map::new();
        delta.insert("index".into(), self.index.into());
        if let Some(id) = &self.id {
            delta.insert("id".into(), id.clone().into());
            delta.insert("type".into(), "function".into());
        }
        delta.insert("function".into(), Value::Object(function));
        Value::Object(delta)
    }
}

/// Splits model output into visible text and tool calls, as it arrives.
#[derive(Debug)]
pub(crate) struct ToolCallParser {
    format: ToolFormat,
    /// Output not yet classified or consumed.
    buffer: String,
    /// Calls seen so far (complete or in progress).
    calls: Vec<ToolCall>,
    state: ParseState,
    /// Once visible text has been emitted, a bare JSON object is text, not a call.
    emitted_text: bool,
    id_seed: u64,
}

#[derive(Debug, Clone, PartialEq)]
enum ParseState {
    /// Plain text (or the start of the reply, before anything is decided).
    Text,
    /// Inside one call's JSON object: `text` is the object so far.
    InCall { text: String, name_sent: bool, arguments_sent: usize },
    /// After a Hermes call's JSON, waiting for `</tool_call>`.
    AfterCall,
}

const HERMES_OPEN: &str = "<tool_call>";
const HERMES_CLOSE: &str = "</tool_call>";
const MISTRAL_OPEN: &str = "[TOOL_CALLS]";
const LLAMA_TAG: &str = "<|python_tag|>";

impl ToolCallParser {
    pub fn new(format: ToolFormat) -> Self {
        let id_seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
            ^ (std::process::id() as u64).rotate_left(32);
        ToolCallParser { format, buffer: String::new(), calls: Vec::new(), state: ParseState::Text, emitted_text: false, id_seed }
    }

    /// Feeds output; returns the visible text and the tool-call deltas it completes.
    pub fn push(&mut self, text: &str) -> (String, Vec<ToolCallDelta>) {
        self.buffer.push_str(text);
        let mut visible = String::new();
        let mut deltas = Vec::new();
        while self.step(&mut visible, &mut deltas, false) {}
        (visible, deltas)
    }

    /// The end of output: whatever is still held back, and every complete call.
    pub fn finish(&mut self) -> (String, Vec<ToolCallDelta>, Vec<ToolCall>) {
        let mut visible = String::new();
        let mut deltas = Vec::new();
        while self.step(&mut visible, &mut deltas, true) {}
        if let ParseState::InCall { text, name_sent, .. } = std::mem::replace(&mut self.state, ParseState::Text) {
            // A call cut off mid-way (max_tokens): its text is all the caller gets.
            if name_sent {
                self.calls.pop();
            }
            visible.push_str(&text);
        }
        for call in &mut self.calls {
            if call.arguments.is_empty() {
                call.arguments = "{}".to_string();
            }
        }
        visible.push_str(&std::mem::take(&mut self.buffer));
        (visible, deltas, std::mem::take(&mut self.calls))
    }

    /// Makes progress on the buffer; `false` when it needs more input.
    fn step(&mut self, visible: &mut String, deltas: &mut Vec<ToolCallDelta>, at_end: bool) -> bool {
        match self.state {
            ParseState::Text => self.step_text(visible, at_end),
            ParseState::InCall { .. } => self.step_call(deltas),
            ParseState::AfterCall => {
                let trimmed = self.buffer.trim_start();
                if let Some(rest) = trimmed.strip_prefix(HERMES_CLOSE) {
                    self.buffer = rest.to_string();
                    self.state = ParseState::Text;
                    true
                } else if HERMES_CLOSE.starts_with(trimmed) && !at_end {
                    false
                } else {
                    // No closing tag: carry on as text.
                    self.state = ParseState::Text;
                    !self.buffer.is_empty()
                }
            }
        }
    }

    /// Inside a call's JSON object: takes what belongs to it and reports the progress.
    fn step_call(&mut self, deltas: &mut Vec<ToolCallDelta>) -> bool {
        let ParseState::InCall { mut text, mut name_sent, mut arguments_sent } = std::mem::replace(&mut self.state, ParseState::Text)
        else {
            return false;
        };
        let Some(c) = self.buffer.chars().next() else {
            self.state = ParseState::InCall { text, name_sent, arguments_sent };
            return false;
        };
        if text.is_empty() && c != '{' {
            // Calls are separated by `,` inside Mistral's list and by `;` after Llama's;
            // anything else ends the calls (the state stays Text).
            if c.is_whitespace() || matches!(c, ',' | ';' | '[' | ']') {
                self.buffer.drain(..c.len_utf8());
                self.state = ParseState::InCall { text, name_sent, arguments_sent };
            }
            return true;
        }
        let end = json_value_end(&(text.clone() + &self.buffer));
        let take = end.map_or(self.buffer.len(), |end| end - text.len());
        text.extend(self.buffer.drain(..take));
        self.emit_call_progress(&text, &mut name_sent, &mut arguments_sent, deltas);
        self.state = match end {
            // Hermes closes each call with a tag; the others may list more calls.
            Some(_) if self.format == ToolFormat::Hermes => ParseState::AfterCall,
            Some(_) => ParseState::InCall { text: String::new(), name_sent: false, arguments_sent: 0 },
            None => ParseState::InCall { text, name_sent, arguments_sent },
        };
        end.is_some()
    }

    fn step_text(&mut self, visible: &mut String, at_end: bool) -> bool {
        if self.buffer.is_empty() {
            return false;
        }
        let opener = match self.format {
            ToolFormat::Hermes => Some(HERMES_OPEN),
            ToolFormat::Mistral => Some(MISTRAL_OPEN),
            ToolFormat::Llama3 => Some(LLAMA_TAG),
            ToolFormat::Generic => None,
        };
        if let Some(opener) = opener {
            if let Some(at) = self.buffer.find(opener) {
                self.emit_text(visible, at);
                self.buffer.drain(..opener.len());
                self.start_call();
                return true;
            }
        }
        // A reply that opens with a JSON object (or Mistral's list) is a call in every format
        // but Hermes, which always tags its calls.
        if !self.emitted_text && self.format != ToolFormat::Hermes {
            let trimmed = self.buffer.trim_start();
            if trimmed.is_empty() && !at_end {
                return false;
            }
            if trimmed.starts_with('{') || (self.format == ToolFormat::Mistral && trimmed.starts_with('[')) {
                let skip = self.buffer.len() - trimmed.len();
                self.buffer.drain(..skip);
                self.start_call();
                return true;
            }
        }
        // Hold back what could be the start of the opener.
        let keep = match opener {
            Some(opener) if !at_end => partial_suffix_len(&self.buffer, opener),
            _ => 0,
        };
        let emit = self.buffer.len() - keep;
        if emit == 0 {
            return false;
        }
        self.emit_text(visible, emit);
        keep > 0 && at_end
    }

    fn emit_text(&mut self, visible: &mut String, len: usize) {
        let text: String = self.buffer.drain(..len).collect();
        if !text.trim().is_empty() {
            self.emitted_text = true;
        }
        visible.push_str(&text);
    }

    fn start_call(&mut self) {
        self.state = ParseState::InCall { text: String::new(), name_sent: false, arguments_sent: 0 };
    }

    /// Emits the name once it is complete, then argument text as it grows.
    fn emit_call_progress(&mut self, text: &str, name_sent: &mut bool, arguments_sent: &mut usize, deltas: &mut Vec<ToolCallDelta>) {
        if !*name_sent {
            let Some(name) = string_field(text, "name") else { return };
            *name_sent = true;
            let index = self.calls.len() as u32;
            let id = self.next_id();
            self.calls.push(ToolCall { id: id.clone(), name: name.clone(), arguments: String::new() });
            deltas.push(ToolCallDelta { index, id: Some(id), name: Some(name), arguments: String::new() });
        }
        let Some(start) = field_value_start(text, "arguments").or_else(|| field_value_start(text, "parameters")) else {
            return;
        };
        let arguments = &text[start..];
        let arguments = match json_value_end(arguments) {
            Some(end) => &arguments[..end],
            None => arguments,
        };
        if arguments.len() > *arguments_sent {
            let delta = arguments[*arguments_sent..].to_string();
            *arguments_sent = arguments.len();
            let index = self.calls.len() as u32 - 1;
            if let Some(call) = self.calls.last_mut() {
                call.arguments.push_str(&delta);
            }
            deltas.push(ToolCallDelta { index, id: None, name: None, arguments: delta });
        }
    }

    fn next_id(&mut self) -> String {
        // splitmix64: unique-looking ids without a random-number dependency.
        self.id_seed = self.id_seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.id_seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        format!("call_{:016x}", z ^ (z >> 31))
    }
}

/// The length of the longest suffix of `text` that is a proper prefix of `pattern`.
fn partial_suffix_len(text: &str, pattern: &str) -> usize {
    (1..pattern.len().min(text.len() + 1))
        .rev()
        .find(|&n| text.is_char_boundary(text.len() - n) && pattern.starts_with(&text[text.len() - n..]))
        .unwrap_or(0)
}

/// The end (byte offset just past it) of the JSON value that starts `text` (after optional
/// whitespace), or `None` while it is incomplete.
fn json_value_end(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut started = false;
    for (i, c) in text.char_indices() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            continue;
        }
        match c {
            c if c.is_whitespace() && !started => {}
            '"' => {
                in_string = true;
                started = true;
            }
            '{' | '[' => {
                depth += 1;
                started = true;
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            c if depth == 0 && started && (c.is_whitespace() || c == ',' || c == '}' || c == ']') => return Some(i),
            _ => started = true,
        }
    }
    None
}

/// Where the value of `"key":` starts in a (possibly partial) top-level JSON object.
fn field_value_start(object: &str, key: &str) -> Option<usize> {
    let pattern = format!("\"{key}\"");
    let mut from = 0;
    while let Some(at) = object[from..].find(&pattern) {
        let after = from + at + pattern.len();
        let rest = &object[after..];
        let trimmed = rest.trim_start();
        if let Some(value) = trimmed.strip_prefix(':') {
            let value_trimmed = value.trim_start();
            if value_trimmed.is_empty() {
                return None;
            }
            return Some(object.len() - value_trimmed.len());
        }
        if trimmed.is_empty() {
            return None;
        }
        from = after;
    }
    None
}

/// The complete string value of `"key": "..."`, if it has arrived.
fn string_field(object: &str, key: &str) -> Option<String> {
    let start = field_value_start(object, key)?;
    let value = &object[start..];
    let end = json_value_end(value)?;
    serde_json::from_str::<String>(&value[..end]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(format: ToolFormat, pieces: &[&str]) -> (String, Vec<ToolCallDelta>, Vec<ToolCall>) {
        let mut parser = ToolCallParser::new(format);
        let mut text = String::new();
        let mut deltas = Vec::new();
        for piece in pieces {
            let (t, d) = parser.push(piece);
            text.push_str(&t);
            deltas.extend(d);
        }
        let (t, d, calls) = parser.finish();
        text.push_str(&t);
        deltas.extend(d);
        (text, deltas, calls)
    }

    #[test]
    fn hermes_call_streamed_in_small_pieces() {
        let out = "Let me check.<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
        let pieces: Vec<String> = out.chars().map(|c| c.to_string()).collect();
        let pieces: Vec<&str> = pieces.iter().map(String::as_str).collect();
        let (text, deltas, calls) = run(ToolFormat::Hermes, &pieces);
        assert_eq!(text, "Let me check.");
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].name, "get_weather");
        assert_eq!(calls[0].arguments, "{\"city\": \"Paris\"}");
        let streamed: String = deltas.iter().map(|d| d.arguments.as_str()).collect();
        assert_eq!(streamed, calls[0].arguments);
        assert_eq!(deltas[0].name.as_deref(), Some("get_weather"));
        assert!(deltas.len() > 3, "arguments arrive in several deltas");
    }

    #[test]
    fn compact_generic_call_streams_arguments() {
        let out = r#"{"name":"get_weather","arguments":{"city":"Paris","unit":"celsius"}}"#;
        let pieces: Vec<String> = out.chars().map(|c| c.to_string()).collect();
        let pieces: Vec<&str> = pieces.iter().map(String::as_str).collect();
        let (_, deltas, calls) = run(ToolFormat::Generic, &pieces);
        assert_eq!(calls[0].arguments, r#"{"city":"Paris","unit":"celsius"}"#);
        assert!(deltas.len() > 5, "{deltas:?}");
    }

    #[test]
    fn two_hermes_calls() {
        let out = "<tool_call>{\"name\": \"a\", \"arguments\": {}}</tool_call>\n<tool_call>{\"name\": \"b\", \"arguments\": {\"x\": [1, \"}\"]}}</tool_call>";
        let (text, _, calls) = run(ToolFormat::Hermes, &[out]);
        assert_eq!(text.trim(), "");
        assert_eq!(calls.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(calls[1].arguments, "{\"x\": [1, \"}\"]}");
    }

    #[test]
    fn plain_text_passes_through() {
        let (text, deltas, calls) = run(ToolFormat::Hermes, &["Hello <tool", " world"]);
        assert_eq!(text, "Hello <tool world");
        assert!(deltas.is_empty() && calls.is_empty());
        let (text, _, calls) = run(ToolFormat::Generic, &["The answer is {x}."]);
        assert_eq!(text, "The answer is {x}.");
        assert!(calls.is_empty());
    }

    #[test]
    fn llama_and_generic_bare_objects() {
        let (text, _, calls) = run(ToolFormat::Llama3, &["{\"name\": \"f\", \"param", "eters\": {\"a\": 1}}"]);
        assert_eq!(text, "");
        assert_eq!(calls[0].arguments, "{\"a\": 1}");
        let (_, _, calls) = run(ToolFormat::Generic, &[" {\"name\": \"f\", \"arguments\": {\"s\": \"é\"}}"]);
        assert_eq!(calls[0].name, "f");
        assert_eq!(calls[0].arguments, "{\"s\": \"é\"}");
    }

    #[test]
    fn mistral_list() {
        let (_, _, calls) = run(
            ToolFormat::Mistral,
            &["[TOOL_CALLS][{\"name\": \"a\", \"arguments\": {}}, {\"name\": \"b\", \"arguments\": {\"k\": true}}]"],
        );
        assert_eq!(calls.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn cut_off_call_becomes_text() {
        let (text, _, calls) = run(ToolFormat::Hermes, &["<tool_call>{\"name\": \"a\", \"argu"]);
        assert!(calls.is_empty());
        assert!(text.contains("\"name\""));
    }

    #[test]
    fn formats_detected_from_templates() {
        assert_eq!(ToolFormat::detect("{{ '<tool_call>' }}"), ToolFormat::Hermes);
        assert_eq!(ToolFormat::detect("[TOOL_CALLS]"), ToolFormat::Mistral);
        assert_eq!(ToolFormat::detect("Environment: ipython"), ToolFormat::Llama3);
        assert_eq!(ToolFormat::detect("<|im_start|>"), ToolFormat::Generic);
    }

    #[test]
    fn rule_names_get_a_prefix_outside_literals() {
        let grammar = "root ::= \"a b\" [a-z]{1,3} item # note root\nitem ::= \"\\\"x\" | [\\]y]";
        assert_eq!(prefix_rule_names(grammar, "t-"), "t-root ::= \"a b\" [a-z]{1,3} t-item # note root\nt-item ::= \"\\\"x\" | [\\]y]");
    }

    #[test]
    fn tool_definitions_are_checked() {
        assert!(tool_specs(&[json!({"type": "function", "function": {"name": "f"}})]).is_ok());
        assert!(tool_specs(&[json!({"type": "function"})]).is_err());
        assert!(tool_specs(&[json!({"type": "retrieval"})]).is_err());
        assert!(tool_specs(&[json!({"name": "f"}), json!({"name": "f"})]).is_err());
    }
}
