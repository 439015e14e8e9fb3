//! What comes in from C: load and generation params, messages, tools, callbacks, and their
//! conversion to core's options.

use std::ffi::{c_char, c_void};
use std::sync::Arc;
use std::time::Duration;

use corral::{Constraint, GenerateOptions, KvFullPolicy, Message, ModelOptions, ProgressCallback, ToolChoice, MAX_TOP_LOGPROBS};

use crate::boundary::{str_array_arg, try_arg, try_opt_arg, try_opt_str, try_slice, try_str};
use crate::error::corral_status::*;
use crate::error::{corral_status, fail, invalid, set_error};

/// Load progress in [0, 1]. Return false to cancel loading (load then fails with
/// CORRAL_ERR_CANCELLED). Called on the loading thread.
pub type corral_progress_callback = Option<unsafe extern "C" fn(progress: f32, user_data: *mut c_void) -> bool>;

/// Receives streamed text (UTF-8, not NUL-terminated, `len` bytes, valid only during the call).
/// Return false to stop generation (the result's finish reason is then CORRAL_FINISH_CANCELLED).
pub type corral_chunk_callback = Option<unsafe extern "C" fn(text: *const c_char, len: usize, user_data: *mut c_void) -> bool>;

/// corral_model_params.context_length: pick the largest context that fits in memory.
pub const CORRAL_CONTEXT_LENGTH_AUTO: u32 = u32::MAX;

/// Options for corral_model_load. Start from corral_model_default_params().
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct corral_model_params {
    /// KV cache size in tokens shared by all requests; 0 = model default (trained, max 4096);
    /// CORRAL_CONTEXT_LENGTH_AUTO = the largest that fits in the memory available (up to the
    /// trained length).
    pub context_length: u32,
    /// 0 = number of physical cores.
    pub threads: u32,
    /// Layers offloaded to a GPU (0 = CPU only).
    pub gpu_layers: u32,
    pub use_mmap: bool,
    pub use_mlock: bool,
    /// Concurrent sequences of the engine (1..256).
    pub max_sequences: u32,
    /// Most prompt tokens per engine step.
    pub batch_size: u32,
    /// -1 = auto, 0 = off, 1 = on.
    pub flash_attention: i32,
    /// A Jinja chat template replacing the model's; NULL = use the GGUF's. Copied.
    pub chat_template: *const c_char,
    pub on_progress: corral_progress_callback,
    pub progress_user_data: *mut c_void,
    /// Requests that may wait for a free sequence before new ones fail with CORRAL_ERR_BUSY.
    pub max_queued: u32,
    /// When a prompt does not fit in the free KV cache: 0 = wait for running requests,
    /// 1 = fail at once with CORRAL_ERR_CONTEXT_OVERFLOW.
    pub on_kv_full: i32,
    /// RPC workers (`corral rpc-server`) holding part of the layers, as
    /// "host:port,host:port"; NULL or "" = none. Private networks only. Copied.
    pub rpc_servers: *const c_char,
    /// Layer shares as "w,w,...": one weight per RPC worker, then this process's; NULL or "" =
    /// equal shares. Copied.
    pub rpc_split: *const c_char,
}

/// Sampling and stopping options. Start from corral_generate_default_params().
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct corral_generate_params {
    /// Most tokens to generate; -1 = until end of generation or a full context.
    pub max_tokens: i32,
    /// 0 = greedy.
    pub temperature: f32,
    /// 0 = disabled.
    pub top_k: i32,
    pub top_p: f32,
    pub min_p: f32,
    pub repeat_penalty: f32,
    pub repeat_last_n: i32,
    pub frequency_penalty: f32,
    pub presence_penalty: f32,
    /// -1 = random; otherwise 0..=4294967294.
    pub seed: i64,
    /// `n_stop` NUL-terminated UTF-8 stop strings (may be NULL when n_stop is 0). Copied.
    pub stop: *const *const c_char,
    pub n_stop: usize,
    /// Parse special-token text in the prompt as control tokens.
    pub parse_special: bool,
    /// Keep generating past end-of-generation tokens.
    pub ignore_eos: bool,
    /// 0 = no time limit.
    pub timeout_ms: u32,
    /// Constrain the output with a GBNF grammar (root rule `root`); NULL = none. Copied.
    pub grammar: *const c_char,
    /// Constrain the output to JSON valid against this JSON schema (JSON text); NULL = none.
    pub json_schema: *const c_char,
    /// Constrain the output to any JSON object.
    pub json_object: bool,
    /// Report log-probabilities: -1 = off, 0..20 = with that many most likely alternatives
    /// (in `logprobs_json` of results and chunks).
    pub logprobs: i32,
    /// Chat only: tools the model may call, as a JSON array in OpenAI's function format
    /// (`[{"type": "function", "function": {"name", "description", "parameters"}}]`); NULL = none.
    pub tools_json: *const c_char,
    /// Chat only: "auto" (NULL), "none", "required", or the name of the one function to call.
    pub tool_choice: *const c_char,
    /// Chat only: one of the model's named templates (e.g. "tool_use") or Jinja source for
    /// this call; NULL = the model's template.
    pub chat_template: *const c_char,
    /// Chat only: most tokens of reasoning (`<think>...</think>`) before the answer, then the
    /// block is closed; 0 turns thinking off where the template can; -1 = no limit.
    pub reasoning_budget: i32,
    /// LoRA adapters (loaded with corral_model_load_adapter) and their scales, as a JSON array
    /// `[{"name": "style", "scale": 0.8}, ...]` (scale defaults to 1); NULL = the base model.
    pub adapters_json: *const c_char,
}

/// One chat message (UTF-8, NUL-terminated; copied by the call). Conversations with tool calls
/// and tool results are given as JSON instead (CORRAL_PROMPT_MESSAGES_JSON).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct corral_message {
    pub role: *const c_char,
    pub content: *const c_char,
}

/// Default load options (the same defaults as every corral binding).
#[no_mangle]
pub extern "C" fn corral_model_default_params() -> corral_model_params {
    let d = ModelOptions::default();
    corral_model_params {
        context_length: 0,
        threads: 0,
        gpu_layers: d.gpu_layers,
        use_mmap: d.use_mmap,
        use_mlock: d.use_mlock,
        max_sequences: d.max_sequences,
        batch_size: d.batch_size,
        flash_attention: -1,
        chat_template: std::ptr::null(),
        on_progress: None,
        progress_user_data: std::ptr::null_mut(),
        max_queued: d.max_queued,
        on_kv_full: 0,
        rpc_servers: std::ptr::null(),
        rpc_split: std::ptr::null(),
    }
}

/// A `$ty` struct literal with the sampling fields that `corral_generate_params` and
/// `GenerateOptions` hold alike (same name, type and meaning) copied from `$from`, and the other
/// fields as given: both directions (the defaults out, the params in) share the one list.
macro_rules! with_shared_sampling_fields {
    ($from:expr, $ty:ident { $($field:ident $(: $value:expr)?),* $(,)? }) => {{
        let from = &$from;
        $ty {
            temperature: from.temperature,
            top_p: from.top_p,
            min_p: from.min_p,
            repeat_penalty: from.repeat_penalty,
            frequency_penalty: from.frequency_penalty,
            presence_penalty: from.presence_penalty,
            parse_special: from.parse_special,
            ignore_eos: from.ignore_eos,
            $($field $(: $value)?),*
        }
    }};
}

/// Default sampling options (llama.cpp's defaults; unlimited max_tokens; random seed).
#[no_mangle]
pub extern "C" fn corral_generate_default_params() -> corral_generate_params {
    let d = GenerateOptions::default();
    with_shared_sampling_fields!(
        d,
        corral_generate_params {
            max_tokens: -1,
            top_k: d.top_k as i32,
            repeat_last_n: d.repeat_last_n as i32,
            seed: -1,
            stop: std::ptr::null(),
            n_stop: 0,
            timeout_ms: 0,
            grammar: std::ptr::null(),
            json_schema: std::ptr::null(),
            json_object: false,
            logprobs: -1,
            reasoning_budget: -1,
            adapters_json: std::ptr::null(),
            tools_json: std::ptr::null(),
            tool_choice: std::ptr::null(),
            chat_template: std::ptr::null(),
        }
    )
}

/// Load options from `params` (NULL = defaults).
///
/// # Safety
/// `params` is NULL or valid, its strings NUL-terminated (the entry point's contract).
pub(crate) unsafe fn model_options(params: *const corral_model_params) -> Result<ModelOptions, corral_status> {
    let defaults = corral_model_default_params();
    let p = try_opt_arg!(params).unwrap_or(&defaults);
    let chat_template = try_opt_str!(p.chat_template, "params.chat_template").map(str::to_string);
    let flash_attention = match p.flash_attention {
        -1 => None,
        0 => Some(false),
        1 => Some(true),
        v => return Err(set_error(CORRAL_ERR_INVALID_ARGUMENT, &format!("flash_attention must be -1, 0 or 1, got {v}"))),
    };
    let on_kv_full = match p.on_kv_full {
        0 => KvFullPolicy::Wait,
        1 => KvFullPolicy::Error,
        v => return Err(set_error(CORRAL_ERR_INVALID_ARGUMENT, &format!("on_kv_full must be 0 or 1, got {v}"))),
    };
    let on_progress: Option<ProgressCallback> = p.on_progress.map(|callback| {
        let user_data = p.progress_user_data as usize;
        let f: ProgressCallback =
            // SAFETY: a valid function pointer supplied by the caller, called as
            // corral_progress_callback documents.
            Arc::new(move |progress| unsafe { callback(progress, user_data as *mut c_void) });
        f
    });
    let list = |text: Option<&str>| -> Vec<String> {
        text.unwrap_or("").split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
    };
    let rpc_servers = list(try_opt_str!(p.rpc_servers, "params.rpc_servers"));
    let mut rpc_split = Vec::new();
    for weight in list(try_opt_str!(p.rpc_split, "params.rpc_split")) {
        match weight.parse::<f32>() {
            Ok(w) => rpc_split.push(w),
            Err(_) => return Err(set_error(CORRAL_ERR_INVALID_ARGUMENT, &format!("params.rpc_split: {weight:?} is not a number"))),
        }
    }
    Ok(ModelOptions {
        rpc_servers,
        rpc_split,
        context_length: (p.context_length > 0 && p.context_length != CORRAL_CONTEXT_LENGTH_AUTO).then_some(p.context_length),
        auto_context_length: p.context_length == CORRAL_CONTEXT_LENGTH_AUTO,
        threads: (p.threads > 0).then_some(p.threads),
        gpu_layers: p.gpu_layers,
        use_mmap: p.use_mmap,
        use_mlock: p.use_mlock,
        max_sequences: p.max_sequences,
        batch_size: p.batch_size,
        flash_attention,
        chat_template,
        on_progress,
        max_queued: p.max_queued,
        on_kv_full,
        // Adapters are loaded with corral_model_load_adapter.
        adapters: Vec::new(),
    })
}

/// Generation options from `params` (NULL = defaults), validated.
///
/// # Safety
/// `params` is NULL or valid, its strings NUL-terminated and `stop` an array of `n_stop`
/// strings (the entry point's contract).
pub(crate) unsafe fn generate_options(params: *const corral_generate_params) -> Result<GenerateOptions, corral_status> {
    let defaults = GenerateOptions::default();
    // NULL means defaults.
    let Some(p) = try_opt_arg!(params) else { return Ok(defaults) };
    let max_tokens = match p.max_tokens {
        -1 => None,
        n if n >= 0 => Some(n as u32),
        n => return Err(invalid(format!("max_tokens must be >= 0 or -1 (unlimited), got {n}"))),
    };
    if p.top_k < 0 {
        return Err(invalid(format!("top_k must be >= 0, got {}", p.top_k)));
    }
    if p.repeat_last_n < 0 {
        return Err(invalid(format!("repeat_last_n must be >= 0, got {}", p.repeat_last_n)));
    }
    let seed = match p.seed {
        -1 => None,
        s if (0..u32::MAX as i64).contains(&s) => Some(s as u32),
        s => return Err(invalid(format!("seed must be -1 or in 0..4294967294, got {s}"))),
    };
    // SAFETY: the caller's guarantee covers `stop` and its `n_stop` strings.
    let stop = unsafe { str_array_arg(p.stop, p.n_stop, "params.stop") }?.into_iter().map(str::to_string).collect();
    let constraint = match (p.grammar.is_null(), p.json_schema.is_null(), p.json_object) {
        (true, true, false) => None,
        (false, true, false) => Some(Constraint::Grammar(try_str!(p.grammar, "params.grammar").to_string())),
        (true, false, false) => Some(Constraint::JsonSchema(try_str!(p.json_schema, "params.json_schema").to_string())),
        (true, true, true) => Some(Constraint::JsonObject),
        _ => return Err(invalid("set at most one of grammar, json_schema and json_object".into())),
    };
    let logprobs = match p.logprobs {
        -1 => None,
        n if (0..=MAX_TOP_LOGPROBS as i32).contains(&n) => Some(n as u32),
        n => return Err(invalid(format!("logprobs must be -1 or 0..={}, got {n}", MAX_TOP_LOGPROBS))),
    };
    // SAFETY: the caller's guarantee covers the params' strings.
    let tools = unsafe { tools(p.tools_json, "params.tools_json") }?;
    let tool_choice = match try_opt_str!(p.tool_choice, "params.tool_choice") {
        None | Some("auto") => ToolChoice::Auto,
        Some("none") => ToolChoice::None,
        Some("required") => ToolChoice::Required,
        Some("") => return Err(invalid("params.tool_choice is empty".into())),
        Some(name) => ToolChoice::Function(name.to_string()),
    };
    let template = try_opt_str!(p.chat_template, "params.chat_template").map(str::to_string);
    let reasoning_budget = match p.reasoning_budget {
        -1 => None,
        n if n >= 0 => Some(n as u32),
        n => return Err(invalid(format!("reasoning_budget must be -1 or >= 0, got {n}"))),
    };
    let adapters = match try_opt_str!(p.adapters_json, "params.adapters_json") {
        None => Vec::new(),
        Some(text) => {
            let value: serde_json::Value =
                serde_json::from_str(text).map_err(|e| invalid(format!("params.adapters_json is not JSON: {e}")))?;
            corral::openai::adapters(corral::openai::Dialect::Node, "params.adapters_json", &value).map_err(fail)?
        }
    };
    let options = with_shared_sampling_fields!(
        p,
        GenerateOptions {
            adapters,
            reasoning_budget,
            constraint,
            logprobs,
            tools,
            tool_choice,
            template,
            max_tokens,
            top_k: p.top_k as u32,
            repeat_last_n: p.repeat_last_n as u32,
            seed,
            stop,
            timeout: (p.timeout_ms > 0).then(|| Duration::from_millis(p.timeout_ms as u64)),
        }
    );
    options.validate().map_err(fail)?;
    Ok(options)
}

/// The kinds of `corral_prompt`.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum corral_prompt_kind {
    /// `text`: raw text (BOS added as the model asks; see parse_special).
    CORRAL_PROMPT_TEXT = 0,
    /// `tokens`, `n_tokens`: token ids, used as given (no BOS is added).
    CORRAL_PROMPT_TOKENS = 1,
    /// `messages`, `n_messages`: a conversation rendered with the chat template.
    CORRAL_PROMPT_MESSAGES = 2,
    /// `text`: an OpenAI-shaped conversation as a JSON array of `{"role", "content",
    /// "tool_calls", "tool_call_id", "name"}` objects, so an assistant's tool calls and the
    /// `tool` messages answering them can be sent back.
    CORRAL_PROMPT_MESSAGES_JSON = 3,
}

/// What to generate from, for corral_model_generate and its kin. Set `kind` (a
/// corral_prompt_kind value) and the fields that kind reads; the others are ignored. Every
/// pointer is borrowed for the call only (the data is copied).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct corral_prompt {
    /// A corral_prompt_kind value.
    pub kind: i32,
    /// CORRAL_PROMPT_TEXT and CORRAL_PROMPT_MESSAGES_JSON: NUL-terminated UTF-8.
    pub text: *const c_char,
    /// CORRAL_PROMPT_TOKENS: `n_tokens` token ids.
    pub tokens: *const i32,
    pub n_tokens: usize,
    /// CORRAL_PROMPT_MESSAGES: `n_messages` messages.
    pub messages: *const corral_message,
    pub n_messages: usize,
}

/// A C prompt read into Rust values (text and tokens still borrowed from the caller).
pub(crate) enum PromptInput<'a> {
    Text(&'a str),
    Tokens(&'a [i32]),
    Messages(Vec<Message>),
}

impl PromptInput<'_> {
    pub(crate) fn as_core(&self) -> corral::Prompt<'_> {
        match self {
            PromptInput::Text(text) => corral::Prompt::Text(text),
            PromptInput::Tokens(tokens) => corral::Prompt::Tokens(tokens),
            PromptInput::Messages(messages) => corral::Prompt::Messages(messages),
        }
    }
}

/// A generation's prompt as its entry point takes it: a `corral_prompt` (the `_generate`
/// functions), raw text (`_complete`) or a message array (`_chat`); read by `read`, so a model's
/// and a session's entry points share one reading.
pub(crate) enum PromptArg {
    Prompt(*const corral_prompt),
    Text(*const c_char),
    Messages(*const corral_message, usize),
}

impl PromptArg {
    /// # Safety
    /// The pointers are NULL or valid for their kind (the entry point's contract).
    pub(crate) unsafe fn read<'a>(self) -> Result<PromptInput<'a>, corral_status> {
        match self {
            // SAFETY: the caller's guarantee, passed on.
            PromptArg::Prompt(p) => unsafe { prompt(p) },
            PromptArg::Text(text) => Ok(PromptInput::Text(try_str!(text, "prompt"))),
            // SAFETY: an array of `n` messages (the caller's guarantee).
            PromptArg::Messages(ptr, n) => unsafe { messages(ptr, n) }.map(PromptInput::Messages),
        }
    }
}

/// Reads a `corral_prompt`.
///
/// # Safety
/// `prompt` is NULL or points to a corral_prompt whose pointers are valid for its kind.
pub(crate) unsafe fn prompt<'a>(prompt: *const corral_prompt) -> Result<PromptInput<'a>, corral_status> {
    let p: &corral_prompt = try_arg!(prompt);
    let kind = p.kind;
    match kind {
        k if k == corral_prompt_kind::CORRAL_PROMPT_TEXT as i32 => Ok(PromptInput::Text(try_str!(p.text, "prompt.text"))),
        k if k == corral_prompt_kind::CORRAL_PROMPT_TOKENS as i32 => {
            Ok(PromptInput::Tokens(try_slice!(p.tokens, p.n_tokens, "prompt.tokens")))
        }
        // SAFETY: an array of n_messages messages (the caller's guarantee).
        k if k == corral_prompt_kind::CORRAL_PROMPT_MESSAGES as i32 => {
            unsafe { messages(p.messages, p.n_messages) }.map(PromptInput::Messages)
        }
        // SAFETY: NULL or a NUL-terminated string (the caller's guarantee).
        k if k == corral_prompt_kind::CORRAL_PROMPT_MESSAGES_JSON as i32 => unsafe { messages_json(p.text) }.map(PromptInput::Messages),
        other => Err(invalid(format!("prompt.kind must be a corral_prompt_kind (0-3), got {other}"))),
    }
}

/// `n` messages.
///
/// # Safety
/// `ptr` is NULL or an array of `n` messages with NUL-terminated strings.
pub(crate) unsafe fn messages(ptr: *const corral_message, n: usize) -> Result<Vec<Message>, corral_status> {
    try_slice!(ptr, n, "messages")
        .iter()
        .map(|m| {
            let role = try_str!(m.role, "messages[i].role");
            let content = try_str!(m.content, "messages[i].content");
            Ok(Message::new(role, content))
        })
        .collect()
}

/// An OpenAI-shaped conversation: a JSON array of `{"role", "content", "tool_calls",
/// "tool_call_id", "name"}` objects.
///
/// # Safety
/// `text` is NULL or a NUL-terminated string.
pub(crate) unsafe fn messages_json(text: *const c_char) -> Result<Vec<Message>, corral_status> {
    let text = try_str!(text, "messages_json");
    parse_messages_json(text)
}

/// The JSON part of `messages_json`.
pub(crate) fn parse_messages_json(text: &str) -> Result<Vec<Message>, corral_status> {
    let Ok(serde_json::Value::Array(items)) = serde_json::from_str(text) else {
        return Err(invalid("messages_json must be a JSON array of message objects".into()));
    };
    items.iter().map(|item| Message::from_openai(item).map_err(fail)).collect()
}

/// Tool definitions: a JSON array in OpenAI's function format; NULL = none.
///
/// # Safety
/// `text` is NULL or a NUL-terminated string.
pub(crate) unsafe fn tools(text: *const c_char, name: &str) -> Result<Vec<serde_json::Value>, corral_status> {
    match try_opt_str!(text, name) {
        None => Ok(Vec::new()),
        Some(text) => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Array(tools)) => Ok(tools),
            _ => Err(invalid(format!("{name} must be a JSON array of tools"))),
        },
    }
}
