//! Chat templates: the Jinja template stored in the GGUF (or one the caller gives), rendered
//! with minijinja the way Hugging Face's `apply_chat_template` renders it with jinja2
//! (`trim_blocks`, `lstrip_blocks`, Python string methods, `raise_exception`, `tojson`).

pub(crate) mod reasoning;
pub(crate) mod schema;
pub(crate) mod tools;

use minijinja::value::Serde;
use minijinja::{Environment, ErrorKind as JinjaErrorKind, Value};
use serde::Serialize;

use crate::error::{Error, ErrorKind, Result};

/// One chat message, in the OpenAI shape: `role` (`system`, `user`, `assistant`, `tool`), its
/// text, and for tool use the assistant's `tool_calls` and a `tool` reply's `tool_call_id`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    pub role: String,
    /// `None` renders as the template's `none` (an assistant message that only calls tools).
    pub content: Option<String>,
    /// Tool calls an assistant message made.
    pub tool_calls: Vec<ToolCall>,
    /// For a `tool` message: the id of the call it answers.
    pub tool_call_id: Option<String>,
    /// For a `tool` message: the tool's name (some templates print it).
    pub name: Option<String>,
}

impl Message {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Message { role: role.into(), content: Some(content.into()), ..Default::default() }
    }

    /// The message as templates see it (the dict Hugging Face's `apply_chat_template` gets).
    fn to_template_value(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        m.insert("role".into(), self.role.clone().into());
        m.insert("content".into(), self.content.clone().map_or(serde_json::Value::Null, Into::into));
        if !self.tool_calls.is_empty() {
            let calls = self.tool_calls.iter().map(ToolCall::to_template_value).collect();
            m.insert("tool_calls".into(), serde_json::Value::Array(calls));
        }
        if let Some(id) = &self.tool_call_id {
            m.insert("tool_call_id".into(), id.clone().into());
        }
        if let Some(name) = &self.name {
            m.insert("name".into(), name.clone().into());
        }
        serde_json::Value::Object(m)
    }
}

/// A call of one tool (function) by the model.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ToolCall {
    /// Unique within the conversation; a `tool` message answers it by this id.
    pub id: String,
    /// The function's name.
    pub name: String,
    /// The arguments as JSON text (an object).
    pub arguments: String,
}

impl ToolCall {
    /// OpenAI's shape, with the arguments parsed: templates print them with `tojson` or
    /// iterate them, as in Hugging Face's tool-use convention.
    fn to_template_value(&self) -> serde_json::Value {
        let arguments: serde_json::Value =
            serde_json::from_str(&self.arguments).unwrap_or_else(|_| serde_json::Value::String(self.arguments.clone()));
        serde_json::json!({
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": arguments},
        })
    }
}

/// A compiled chat template plus the special-token strings templates refer to.
///
/// Templates come from model files, that is from the internet: every render is bounded. Its
/// work and the memory it allocates are paid for in minijinja's fuel (one unit per instruction,
/// or per 64 bytes of strings and lists made), [`RENDER_FUEL`] plus [`FUEL_PER_INPUT_BYTE`]
/// for each byte of messages and tools; the prompt it writes is at most
/// [`ChatTemplate::with_max_prompt_bytes`]. Past either, it fails with `template_error` naming
/// the limit. minijinja's own limits (recursion depth, `range` and repeat sizes) stay.
#[derive(Clone)]
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    pub bos_token: String,
    pub eos_token: String,
    max_prompt_bytes: usize,
}

/// The fuel of any render: about a million instructions, or 64 MB of values and output made
/// in all.
/// The chat templates of well-known models spend a few thousand per message.
pub const RENDER_FUEL: u64 = 1_000_000;
/// Extra fuel per byte of input: a long conversation may be copied a few times over.
pub const FUEL_PER_INPUT_BYTE: u64 = 4;
/// The prompt size when no context length says otherwise.
const DEFAULT_MAX_PROMPT_BYTES: usize = 64 << 20;
/// The stack of the thread a template renders on (reserved, used as needed).
const RENDER_STACK_BYTES: usize = 1 << 30;
/// The longest list a template's `+` may make.
pub const MAX_TEMPLATE_LIST_ITEMS: usize = 1 << 20;
/// What a template's `+` calls instead (see `bounded_add`).
const ADD_FUNCTION: &str = "__corral_add";

fn syntax() -> Result<minijinja::syntax::SyntaxConfig> {
    minijinja::syntax::SyntaxConfig::builder().trim_blocks(true).lstrip_blocks(true).build().map_err(template_error)
}

/// Compiles `source` with its `+` routed through [`bounded_add`].
fn compile(source: &str) -> Result<minijinja::machinery::CompiledTemplate<'_>> {
    let config = minijinja::machinery::TemplateConfig {
        syntax_config: syntax()?,
        default_auto_escape: std::sync::Arc::new(|_: &str| minijinja::AutoEscape::None),
    };
    let mut compiled = minijinja::machinery::CompiledTemplate::new(TEMPLATE_NAME, source, &config).map_err(template_error)?;
    route_add(&mut compiled.instructions);
    for block in compiled.blocks.values_mut() {
        route_add(block);
    }
    Ok(compiled)
}

/// Replaces each `+` with a call of [`bounded_add`]: one instruction for one, so every jump
/// keeps its target; both take the two operands from the stack and leave the result.
fn route_add(instructions: &mut minijinja::machinery::Instructions<'_>) {
    use minijinja::machinery::Instruction;
    let mut index = 0;
    while let Some(instruction) = instructions.get_mut(index) {
        if matches!(instruction, Instruction::Add) {
            *instruction = Instruction::CallFunction(ADD_FUNCTION, Some(2));
        }
        index += 1;
    }
}

/// A template's `+`. minijinja joins lists lazily, but once 32 joins are chained it copies
/// the whole list without weighing it against the fuel: a list doubled 40 times would take
/// 2^33 items of memory before any limit applied. So lists longer than
/// [`MAX_TEMPLATE_LIST_ITEMS`] are refused here; strings (the common case) are joined here,
/// paid for before they are made; anything else is minijinja's own `+`.
fn bounded_add(state: &minijinja::State, a: Value, b: Value) -> std::result::Result<Value, minijinja::Error> {
    if let (Some(x), Some(y)) = (a.as_str(), b.as_str()) {
        state.consume_fuel((x.len() + y.len()) as u64 / 64)?;
        let joined = [x, y].concat();
        return Ok(if a.is_safe() && b.is_safe() { Value::from_safe_string(joined) } else { Value::from(joined) });
    }
    let is_list = |v: &Value| matches!(v.kind(), minijinja::value::ValueKind::Seq | minijinja::value::ValueKind::Iterable);
    if is_list(&a) && is_list(&b) {
        let items = a.len().unwrap_or(0).saturating_add(b.len().unwrap_or(0));
        if items > MAX_TEMPLATE_LIST_ITEMS {
            return Err(minijinja::Error::new(
                JinjaErrorKind::InvalidOperation,
                format!("a list of {items} items: more than a chat template may make ({MAX_TEMPLATE_LIST_ITEMS})"),
            ));
        }
    }
    state.env().compile_expression("a + b")?.eval(minijinja::context! { a => a, b => b })
}

const TEMPLATE_NAME: &str = "chat";

fn template_error(e: minijinja::Error) -> Error {
    // `raise_exception(...)` surfaces as InvalidOperation carrying the template's message.
    let message = match e.kind() {
        JinjaErrorKind::InvalidOperation => e.detail().unwrap_or("template raised an exception").to_string(),
        _ => {
            let mut m = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                m.push_str(&format!(": {s}"));
                source = s.source();
            }
            m
        }
    };
    Error::new(ErrorKind::TemplateError, format!("chat template error: {message}"))
}

/// Python's `json.dumps(value, ensure_ascii=False)` as Hugging Face's `tojson` does it:
/// `", "` and `": "` separators, no HTML escaping; with `indent`, newlines and that indent.
fn tojson(value: Value, kwargs: minijinja::value::Kwargs) -> std::result::Result<Value, minijinja::Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let _: Option<bool> = kwargs.get("ensure_ascii")?;
    let _: Option<bool> = kwargs.get("sort_keys")?;
    kwargs.assert_all_used()?;
    let json: serde_json::Value =
        serde_json::to_value(&value).map_err(|e| minijinja::Error::new(JinjaErrorKind::InvalidOperation, format!("tojson: {e}")))?;
    let mut out = CappedWriter::new(MAX_FILTER_OUTPUT_BYTES);
    let formatter = PyJsonFormatter { indent, level: 0, has_value: false };
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    json.serialize(&mut ser).map_err(|e| {
        let detail = if out.over { too_long("tojson") } else { e.to_string() };
        minijinja::Error::new(JinjaErrorKind::InvalidOperation, format!("tojson: {detail}"))
    })?;
    Ok(Value::from_safe_string(out.into_string()))
}

struct PyJsonFormatter {
    indent: Option<usize>,
    level: usize,
    has_value: bool,
}

impl PyJsonFormatter {
    fn newline<W: ?Sized + std::io::Write>(&self, w: &mut W) -> std::io::Result<()> {
        if let Some(indent) = self.indent {
            w.write_all(b"\n")?;
            for _ in 0..indent * self.level {
                w.write_all(b" ")?;
            }
        }
        Ok(())
    }

    fn open<W: ?Sized + std::io::Write>(&mut self, w: &mut W, bracket: &[u8]) -> std::io::Result<()> {
        self.level += 1;
        self.has_value = false;
        w.write_all(bracket)
    }
    fn close<W: ?Sized + std::io::Write>(&mut self, w: &mut W, bracket: &[u8]) -> std::io::Result<()> {
        self.level -= 1;
        if self.has_value {
            self.newline(w)?;
        }
        w.write_all(bracket)
    }
    /// Before an array value or an object key: Python's separator, then the indent.
    fn separate<W: ?Sized + std::io::Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
        if !first {
            w.write_all(if self.indent.is_some() { b"," } else { b", " })?;
        }
        self.newline(w)
    }
}

/// serde's hooks for one kind of container (arrays, objects): Python's `json.dumps` writes
/// both the same way but for the brackets.
macro_rules! container_hooks {
    ($begin:ident, $end:ident, $begin_item:ident, $end_item:ident, $open:literal, $close:literal) => {
        fn $begin<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
            self.open(w, $open)
        }
        fn $end<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
            self.close(w, $close)
        }
        fn $begin_item<W: ?Sized + std::io::Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
            self.separate(w, first)
        }
        fn $end_item<W: ?Sized + std::io::Write>(&mut self, _w: &mut W) -> std::io::Result<()> {
            self.has_value = true;
            Ok(())
        }
    };
}

impl serde_json::ser::Formatter for PyJsonFormatter {
    container_hooks!(begin_array, end_array, begin_array_value, end_array_value, b"[", b"]");
    container_hooks!(begin_object, end_object, begin_object_key, end_object_value, b"{", b"}");
    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }
    fn write_string_fragment<W: ?Sized + std::io::Write>(&mut self, w: &mut W, fragment: &str) -> std::io::Result<()> {
        w.write_all(fragment.as_bytes())
    }
}

impl ChatTemplate {
    /// Compiles a template; `bos_token`/`eos_token` are the strings templates print for them.
    pub fn new(source: &str, bos_token: String, eos_token: String) -> Result<Self> {
        let mut env = Environment::new();
        env.set_syntax(syntax()?);
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_filter("tojson", tojson);
        env.add_filter("indent", py_indent);
        env.add_function(ADD_FUNCTION, bounded_add);
        env.add_function("raise_exception", |message: String| -> std::result::Result<Value, minijinja::Error> {
            Err(minijinja::Error::new(JinjaErrorKind::InvalidOperation, message))
        });
        env.add_function("strftime_now", |format: String| -> String {
            // Templates use this for "today's date" in system prompts.
            let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
            format_date(secs, &format)
        });
        compile(source)?; // Syntax errors surface here, at load.
        Ok(ChatTemplate { env, source: source.to_string(), bos_token, eos_token, max_prompt_bytes: DEFAULT_MAX_PROMPT_BYTES })
    }

    /// Caps the rendered prompt (a model passes what its context can hold: no token is shorter
    /// than a byte, so more bytes than that can only be refused later anyway).
    pub fn with_max_prompt_bytes(mut self, bytes: usize) -> Self {
        self.max_prompt_bytes = bytes;
        self
    }

    /// The template's Jinja source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders `messages` (and `tools`: OpenAI function definitions, `None` for the template
    /// when empty, as Hugging Face passes them).
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool, tools: &[serde_json::Value]) -> Result<String> {
        self.render_with_thinking(messages, add_generation_prompt, tools, None)
    }

    /// `render`, with `enable_thinking` given to the template (Qwen3's switch; `None` leaves
    /// it undefined).
    pub(crate) fn render_with_thinking(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
        tools: &[serde_json::Value],
        enable_thinking: Option<bool>,
    ) -> Result<String> {
        let messages: Vec<serde_json::Value> = messages.iter().map(Message::to_template_value).collect();
        let input_bytes =
            serde_json::to_string(&messages).map(|s| s.len()).unwrap_or(0) + tools.iter().map(|t| t.to_string().len()).sum::<usize>();
        let fuel = RENDER_FUEL.saturating_add(FUEL_PER_INPUT_BYTE.saturating_mul(input_bytes as u64));
        let tools = (!tools.is_empty()).then_some(tools);
        let root = minijinja::context! {
            messages => Serde(messages),
            tools => Serde(tools),
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token.as_str(),
            eos_token => self.eos_token.as_str(),
            enable_thinking => enable_thinking,
        };
        // Fuel is set per render: the environment is shared by clones and threads.
        let mut env = self.env.clone();
        env.set_fuel(Some(fuel));
        let compiled = compile(&self.source)?;
        // Its own thread, with a deep stack: values a template nests deeply (a map in a map,
        // a few hundred thousand times within the fuel) are dropped and printed recursively.
        let rendered = std::thread::scope(|scope| {
            let render = || {
                let mut prompt = String::new();
                let mut out = minijinja::machinery::make_string_output(&mut prompt);
                let result = minijinja::machinery::eval(
                    &env,
                    &compiled.instructions,
                    root,
                    &compiled.blocks,
                    &mut out,
                    compiled.initial_auto_escape,
                );
                result.map(|_| ()).map(|()| prompt)
            };
            std::thread::Builder::new()
                .name("corral-template".into())
                .stack_size(RENDER_STACK_BYTES)
                .spawn_scoped(scope, render)
                .map_err(|e| Error::with_source(ErrorKind::Internal, "cannot start a template thread", e))?
                .join()
                .map_err(|_| Error::internal("the chat template renderer panicked"))
        })?;
        match rendered {
            Ok(prompt) if prompt.len() > self.max_prompt_bytes => Err(Error::new(
                ErrorKind::TemplateError,
                format!("chat template error: the rendered prompt passed {} bytes, the most this model's context can hold", self.max_prompt_bytes),
            )),
            Ok(prompt) => Ok(prompt),
            Err(e) if e.kind() == JinjaErrorKind::OutOfFuel => Err(Error::new(
                ErrorKind::TemplateError,
                format!("chat template error: the template ran out of its budget ({fuel} fuel: instructions and 64-byte units of values made); a template that loops or grows values without bound"),
            )),
            Err(e) => Err(template_error(e)),
        }
    }
}

/// The most a filter of corral's (`tojson`, `indent`) may make of one value.
const MAX_FILTER_OUTPUT_BYTES: usize = 64 << 20;

fn too_long(filter: &str) -> String {
    format!("the result of {filter} would pass {MAX_FILTER_OUTPUT_BYTES} bytes")
}

/// Text being written (the prompt, a filter's result) that refuses to grow past `max` bytes.
struct CappedWriter {
    bytes: Vec<u8>,
    max: usize,
    over: bool,
}

impl CappedWriter {
    fn new(max: usize) -> Self {
        CappedWriter { bytes: Vec::new(), max, over: false }
    }

    /// Everything written was whole UTF-8 strings (minijinja's output, serde_json's).
    fn into_string(self) -> String {
        String::from_utf8(self.bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }
}

impl std::io::Write for CappedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > self.max {
            self.over = true;
            return Err(std::io::Error::other("too long"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Python's `str.splitlines()`.
fn py_splitlines(s: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let end = match c {
            '\r' => {
                if let Some(&(_, '\n')) = chars.peek() {
                    chars.next();
                    i + 2
                } else {
                    i + 1
                }
            }
            '\n' | '\x0b' | '\x0c' | '\x1c' | '\x1d' | '\x1e' | '\u{85}' | '\u{2028}' | '\u{2029}' => i + c.len_utf8(),
            _ => continue,
        };
        lines.push(&s[start..i]);
        start = end;
    }
    if start < s.len() {
        lines.push(&s[start..]);
    }
    lines
}

/// jinja2's `indent(s, width=4, first=False, blank=False)`: unlike minijinja's, it keeps a
/// trailing newline (`"{\n"|indent(4, first=true)` is `"    {\n"`).
fn py_indent(
    value: Value,
    width: Option<Value>,
    first: Option<bool>,
    blank: Option<bool>,
    kwargs: minijinja::value::Kwargs,
) -> std::result::Result<Value, minijinja::Error> {
    let width = match width {
        Some(w) => Some(w),
        None => kwargs.get::<Option<Value>>("width")?,
    };
    let first = match first {
        Some(f) => f,
        None => kwargs.get::<Option<bool>>("first")?.unwrap_or(false),
    };
    let blank = match blank {
        Some(b) => b,
        None => kwargs.get::<Option<bool>>("blank")?.unwrap_or(false),
    };
    kwargs.assert_all_used()?;
    let too_long = || minijinja::Error::new(JinjaErrorKind::InvalidOperation, format!("indent: {}", too_long("indent")));
    let indention = match &width {
        None => "    ".to_string(),
        Some(w) => match w.as_str() {
            Some(s) => s.to_string(),
            None => {
                let n = usize::try_from(w.clone())
                    .map_err(|_| minijinja::Error::new(JinjaErrorKind::InvalidOperation, "indent: width must be a number or a string"))?;
                if n > MAX_FILTER_OUTPUT_BYTES {
                    return Err(too_long());
                }
                " ".repeat(n)
            }
        },
    };
    let s = format!("{}\n", value);
    let lines = py_splitlines(&s);
    if s.len().saturating_add(lines.len().saturating_add(1).saturating_mul(indention.len())) > MAX_FILTER_OUTPUT_BYTES {
        return Err(too_long());
    }
    let mut rv = String::new();
    if blank {
        rv = lines.join(&format!("\n{indention}"));
    } else if let Some((head, rest)) = lines.split_first() {
        rv.push_str(head);
        if !rest.is_empty() {
            rv.push('\n');
            let body: Vec<String> = rest.iter().map(|l| if l.is_empty() { String::new() } else { format!("{indention}{l}") }).collect();
            rv.push_str(&body.join("\n"));
        }
    }
    if first {
        rv.insert_str(0, &indention);
    }
    Ok(if value.is_safe() { Value::from_safe_string(rv) } else { Value::from(rv) })
}

/// `strftime` for the few directives chat templates use (%d %m %Y %b %B %y %H %M %S %%).
fn format_date(unix_secs: u64, format: &str) -> String {
    let days = (unix_secs / 86_400) as i64;
    let secs_of_day = unix_secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const MONTHS: [&str; 12] =
        ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];
    let name = MONTHS[(month - 1) as usize];
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&format!("{day:02}")),
            Some('m') => out.push_str(&format!("{month:02}")),
            Some('Y') => out.push_str(&year.to_string()),
            Some('y') => out.push_str(&format!("{:02}", year % 100)),
            Some('b') => out.push_str(&name[..3]),
            Some('B') => out.push_str(name),
            Some('H') => out.push_str(&format!("{:02}", secs_of_day / 3600)),
            Some('M') => out.push_str(&format!("{:02}", secs_of_day / 60 % 60)),
            Some('S') => out.push_str(&format!("{:02}", secs_of_day % 60)),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_chatml_like_jinja2() {
        let t = ChatTemplate::new(
            "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content | trim }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
            String::new(),
            String::new(),
        )
        .unwrap();
        let out = t.render(&[Message::new("user", " hi ")], true, &[]).unwrap();
        assert_eq!(out, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
    }

    #[test]
    fn raise_exception_is_a_template_error_with_its_message() {
        let t = ChatTemplate::new("{{ raise_exception('roles must alternate') }}", String::new(), String::new()).unwrap();
        let e = t.render(&[], true, &[]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TemplateError);
        assert!(e.message().contains("roles must alternate"), "{}", e.message());
    }

    #[test]
    fn tojson_matches_python_json_dumps() {
        let t = ChatTemplate::new("{{ x | tojson }}|{{ x | tojson(indent=2) }}", String::new(), String::new()).unwrap();
        let mut env_ctx = minijinja::Environment::new();
        env_ctx.add_filter("tojson", tojson);
        let tmpl = env_ctx.template_from_str("{{ x | tojson }}").unwrap();
        let out = tmpl.render(minijinja::context! { x => Serde(serde_json::json!({"a": [1, "é<"], "b": {}})) }).unwrap();
        assert_eq!(out, r#"{"a": [1, "é<"], "b": {}}"#);
        drop(t);
    }

    #[test]
    fn date_formatting() {
        assert_eq!(format_date(1_700_000_000, "%d %b %Y"), "14 Nov 2023");
    }
}
