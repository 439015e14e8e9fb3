//! The exported functions. Each states its return codes, ownership and thread safety in its
//! doc comment, which cbindgen copies into `include/corral.h`.

use std::cell::RefCell;
use std::ffi::{c_char, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::types::*;
use crate::{CancelHandle, Error, GenerateOptions, Message, Model, ModelOptions, Session, Stream};

use corral_status::*;

// ---------------------------------------------------------------------------------------------
// Plumbing: per-thread error message, panic boundary, argument checks.

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_error(status: corral_status, message: &str) -> corral_status {
    let message = CString::new(message.replace('\0', "")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = message);
    status
}

fn fail(error: Error) -> corral_status {
    set_error(error.kind().into(), &format!("{} [{}]", error, error.kind().code()))
}

/// Runs an FFI body: a Rust panic becomes CORRAL_ERR_PANIC, never an abort.
fn guard(body: impl FnOnce() -> Result<(), corral_status>) -> corral_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => CORRAL_OK,
        Ok(Err(status)) => status,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_error(CORRAL_ERR_PANIC, &format!("internal error (panic): {what}"))
        }
    }
}

/// Like `guard` for functions that cannot report a status (frees, cancels): swallows panics.
fn guard_void(body: impl FnOnce()) {
    let _ = catch_unwind(AssertUnwindSafe(body));
}

fn invalid(message: String) -> corral_status {
    set_error(CORRAL_ERR_INVALID_ARGUMENT, &message)
}

fn null(name: &str) -> corral_status {
    set_error(CORRAL_ERR_NULL_ARGUMENT, &format!("argument `{name}` is NULL"))
}

unsafe fn arg<'a, T>(ptr: *const T, name: &str) -> Result<&'a T, corral_status> {
    // SAFETY: the caller guarantees a non-NULL pointer is valid for the call's duration.
    unsafe { ptr.as_ref() }.ok_or_else(|| null(name))
}

unsafe fn out<'a, T>(ptr: *mut T, name: &str) -> Result<&'a mut T, corral_status> {
    // SAFETY: as for `arg`; out-parameters are written only on success.
    unsafe { ptr.as_mut() }.ok_or_else(|| null(name))
}

unsafe fn str_arg<'a>(ptr: *const c_char, name: &str) -> Result<&'a str, corral_status> {
    if ptr.is_null() {
        return Err(null(name));
    }
    // SAFETY: non-NULL, and the caller guarantees NUL termination.
    unsafe { CStr::from_ptr(ptr) }
        .to_str()
        .map_err(|_| set_error(CORRAL_ERR_INVALID_UTF8, &format!("argument `{name}` is not valid UTF-8")))
}

/// A string argument that may be NULL.
unsafe fn opt_str<'a>(ptr: *const c_char, name: &str) -> Result<Option<&'a str>, corral_status> {
    if ptr.is_null() {
        Ok(None)
    } else {
        unsafe { str_arg(ptr, name) }.map(Some)
    }
}

/// An OpenAI-shaped conversation: a JSON array of `{"role", "content", "tool_calls",
/// "tool_call_id", "name"}` objects.
pub(crate) unsafe fn messages_json(text: *const c_char) -> Result<Vec<Message>, corral_status> {
    let text = unsafe { str_arg(text, "messages_json") }?;
    let Ok(serde_json::Value::Array(items)) = serde_json::from_str(text) else {
        return Err(invalid("messages_json must be a JSON array of message objects".into()));
    };
    items.iter().map(|item| Message::from_openai(item).map_err(fail)).collect()
}

/// Tool definitions: a JSON array in OpenAI's function format; NULL = none.
pub(crate) unsafe fn tools(text: *const c_char, name: &str) -> Result<Vec<serde_json::Value>, corral_status> {
    match unsafe { opt_str(text, name) }? {
        None => Ok(Vec::new()),
        Some(text) => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Array(tools)) => Ok(tools),
            _ => Err(invalid(format!("{name} must be a JSON array of tools"))),
        },
    }
}

/// JSON text of OpenAI-shaped values, or NULL when there are none.
fn json_array_or_null<T>(items: &[T], to_json: impl Fn(&T) -> serde_json::Value) -> Option<CString> {
    (!items.is_empty()).then(|| {
        let array = serde_json::Value::Array(items.iter().map(to_json).collect());
        CString::new(array.to_string()).unwrap_or_default()
    })
}

fn owned_string(s: &str) -> *mut c_char {
    // Interior NULs cannot be represented in a C string: they are dropped.
    CString::new(s.replace('\0', "")).unwrap_or_default().into_raw()
}

unsafe fn generate_options(params: *const corral_generate_params) -> Result<GenerateOptions, corral_status> {
    let defaults = GenerateOptions::default();
    // SAFETY: NULL means defaults; otherwise the caller passes a valid struct.
    let Some(p) = (unsafe { params.as_ref() }) else { return Ok(defaults) };
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
    let mut stop = Vec::with_capacity(p.n_stop);
    if p.n_stop > 0 {
        if p.stop.is_null() {
            return Err(null("params.stop"));
        }
        for i in 0..p.n_stop {
            // SAFETY: the caller passes an array of n_stop string pointers.
            let item = unsafe { *p.stop.add(i) };
            stop.push(unsafe { str_arg(item, "params.stop[i]") }?.to_string());
        }
    }
    let constraint = match (p.grammar.is_null(), p.json_schema.is_null(), p.json_object) {
        (true, true, false) => None,
        (false, true, false) => Some(crate::Constraint::Grammar(unsafe { str_arg(p.grammar, "params.grammar") }?.to_string())),
        (true, false, false) => {
            Some(crate::Constraint::JsonSchema(unsafe { str_arg(p.json_schema, "params.json_schema") }?.to_string()))
        }
        (true, true, true) => Some(crate::Constraint::JsonObject),
        _ => return Err(invalid("set at most one of grammar, json_schema and json_object".into())),
    };
    let logprobs = match p.logprobs {
        -1 => None,
        n if (0..=crate::MAX_TOP_LOGPROBS as i32).contains(&n) => Some(n as u32),
        n => return Err(invalid(format!("logprobs must be -1 or 0..={}, got {n}", crate::MAX_TOP_LOGPROBS))),
    };
    let tools = unsafe { tools(p.tools_json, "params.tools_json") }?;
    let tool_choice = match unsafe { opt_str(p.tool_choice, "params.tool_choice") }? {
        None | Some("auto") => crate::ToolChoice::Auto,
        Some("none") => crate::ToolChoice::None,
        Some("required") => crate::ToolChoice::Required,
        Some("") => return Err(invalid("params.tool_choice is empty".into())),
        Some(name) => crate::ToolChoice::Function(name.to_string()),
    };
    let template = unsafe { opt_str(p.chat_template, "params.chat_template") }?.map(str::to_string);
    let options = GenerateOptions {
        constraint,
        logprobs,
        tools,
        tool_choice,
        template,
        max_tokens,
        temperature: p.temperature,
        top_k: p.top_k as u32,
        top_p: p.top_p,
        min_p: p.min_p,
        repeat_penalty: p.repeat_penalty,
        repeat_last_n: p.repeat_last_n as u32,
        frequency_penalty: p.frequency_penalty,
        presence_penalty: p.presence_penalty,
        seed,
        stop,
        parse_special: p.parse_special,
        ignore_eos: p.ignore_eos,
        timeout: (p.timeout_ms > 0).then(|| Duration::from_millis(p.timeout_ms as u64)),
    };
    options.validate().map_err(fail)?;
    Ok(options)
}

unsafe fn messages(ptr: *const corral_message, n: usize) -> Result<Vec<Message>, corral_status> {
    if n > 0 && ptr.is_null() {
        return Err(null("messages"));
    }
    (0..n)
        .map(|i| {
            // SAFETY: the caller passes an array of n messages.
            let m = unsafe { &*ptr.add(i) };
            let role = unsafe { str_arg(m.role, "messages[i].role") }?;
            let content = unsafe { str_arg(m.content, "messages[i].content") }?;
            Ok(Message::new(role, content))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Handles.

/// A loaded model. Thread-safe: share one `corral_model *` between threads; concurrent
/// requests are batched by its engine.
pub struct corral_model {
    model: Model,
    architecture: CString,
    name: CString,
    quantization: CString,
    chat_template: Option<CString>,
}

/// A conversation keeping its KV cache between calls. Internally synchronised: calls from
/// several threads are safe (they run as separate requests).
pub struct corral_session {
    session: Session,
}

/// A running generation pulled with corral_stream_next. corral_stream_next must not be
/// called from two threads at once; corral_stream_cancel may be called from any thread while
/// another thread is in corral_stream_next (but not concurrently with corral_stream_free).
pub struct corral_stream {
    stream: Mutex<Stream>,
    cancel: CancelHandle,
    /// The last chunk handed out (borrowed by the caller until the next call).
    current: Mutex<BorrowedChunk>,
    finished: Mutex<Option<(corral_finish_reason, corral_usage)>>,
}

/// The strings a `corral_chunk` points into.
#[derive(Default)]
struct BorrowedChunk {
    text: CString,
    tool_calls_json: Option<CString>,
    logprobs_json: Option<CString>,
}

impl BorrowedChunk {
    fn to_c(&self, finish_reason: corral_finish_reason, usage: corral_usage) -> corral_chunk {
        let ptr = |json: &Option<CString>| json.as_ref().map_or(std::ptr::null(), |j| j.as_ptr());
        corral_chunk {
            text: self.text.as_ptr(),
            text_len: self.text.as_bytes().len(),
            finish_reason,
            usage,
            tool_calls_json: ptr(&self.tool_calls_json),
            logprobs_json: ptr(&self.logprobs_json),
        }
    }
}

fn into_stream_handle(stream: Stream) -> *mut corral_stream {
    let cancel = stream.cancel_handle();
    Box::into_raw(Box::new(corral_stream {
        stream: Mutex::new(stream),
        cancel,
        current: Mutex::new(BorrowedChunk::default()),
        finished: Mutex::new(None),
    }))
}

// ---------------------------------------------------------------------------------------------
// Version, errors, logging.

/// corral's version as "MAJOR.MINOR.PATCH". Static string; never free it.
#[no_mangle]
pub extern "C" fn corral_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The message of the last failed corral call on the calling thread ("" if none). Valid until
/// the next failing corral call on this thread; never free it.
#[no_mangle]
pub extern "C" fn corral_last_error_message() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// A stable name for a status value (e.g. "model_not_found"); "unknown" for other values.
/// Static string; never free it.
#[no_mangle]
pub extern "C" fn corral_status_name(status: i32) -> *const c_char {
    let name: &'static str = match status {
        0 => "ok\0",
        1 => "model_not_found\0",
        2 => "invalid_model\0",
        3 => "unsupported_architecture\0",
        4 => "invalid_argument\0",
        5 => "context_overflow\0",
        6 => "cancelled\0",
        7 => "decode_failed\0",
        8 => "no_chat_template\0",
        9 => "template_error\0",
        10 => "closed\0",
        11 => "busy\0",
        12 => "deadline_exceeded\0",
        13 => "invalid_grammar\0",
        14 => "internal\0",
        100 => "null_argument\0",
        101 => "invalid_utf8\0",
        102 => "panic\0",
        _ => "unknown\0",
    };
    name.as_ptr().cast()
}

/// Sends llama.cpp's and corral's log lines at `min_level` (1 debug .. 4 error) and above to
/// `callback`; NULL callback restores silence. `user_data` is passed back untouched; the
/// callback may run on any thread, concurrently. Process-wide.
#[no_mangle]
pub extern "C" fn corral_set_log_callback(callback: corral_log_callback, min_level: i32, user_data: *mut c_void) {
    guard_void(|| {
        let level = match min_level {
            i32::MIN..=1 => crate::log::LogLevel::Debug,
            2 => crate::log::LogLevel::Info,
            3 => crate::log::LogLevel::Warn,
            _ => crate::log::LogLevel::Error,
        };
        let Some(callback) = callback else {
            crate::log::set_log_callback(None, level);
            return;
        };
        // The pointer is only handed back to the caller's own callback.
        let user_data = user_data as usize;
        crate::log::set_log_callback(
            Some(Arc::new(move |level, source, message| {
                let source = CString::new(source).unwrap_or_default();
                let message = CString::new(message.replace('\0', "")).unwrap_or_default();
                // SAFETY: a valid function pointer supplied by the caller.
                unsafe { callback(level as i32, source.as_ptr(), message.as_ptr(), user_data as *mut c_void) };
            })),
            level,
        );
    });
}

// ---------------------------------------------------------------------------------------------
// Models.

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
    }
}

/// Default sampling options (llama.cpp's defaults; unlimited max_tokens; random seed).
#[no_mangle]
pub extern "C" fn corral_generate_default_params() -> corral_generate_params {
    let d = GenerateOptions::default();
    corral_generate_params {
        max_tokens: -1,
        temperature: d.temperature,
        top_k: d.top_k as i32,
        top_p: d.top_p,
        min_p: d.min_p,
        repeat_penalty: d.repeat_penalty,
        repeat_last_n: d.repeat_last_n as i32,
        frequency_penalty: d.frequency_penalty,
        presence_penalty: d.presence_penalty,
        seed: -1,
        stop: std::ptr::null(),
        n_stop: 0,
        parse_special: d.parse_special,
        ignore_eos: d.ignore_eos,
        timeout_ms: 0,
        grammar: std::ptr::null(),
        json_schema: std::ptr::null(),
        json_object: false,
        logprobs: -1,
        tools_json: std::ptr::null(),
        tool_choice: std::ptr::null(),
        chat_template: std::ptr::null(),
    }
}

/// The ggml CPU library this process uses ("sapphirerapids", "zen4", "haswell", "x64", ...),
/// loading it if needed. Static string; NULL when no CPU backend can be loaded (see
/// corral_last_error_message).
#[no_mangle]
pub extern "C" fn corral_cpu_variant() -> *const c_char {
    static NAME: std::sync::OnceLock<CString> = std::sync::OnceLock::new();
    let mut name = std::ptr::null();
    guard(|| {
        let variant = crate::cpu_variant().map_err(fail)?;
        name = NAME.get_or_init(|| CString::new(variant.name).unwrap_or_default()).as_ptr();
        Ok(())
    });
    name
}

/// Loads a GGUF model. `params` may be NULL (defaults). On CORRAL_OK, `*out_model` owns the
/// model: release it with corral_model_free. Errors: CORRAL_ERR_NULL_ARGUMENT,
/// CORRAL_ERR_INVALID_UTF8, CORRAL_ERR_MODEL_NOT_FOUND, CORRAL_ERR_INVALID_MODEL,
/// CORRAL_ERR_UNSUPPORTED_ARCHITECTURE, CORRAL_ERR_INVALID_ARGUMENT, CORRAL_ERR_CANCELLED
/// (progress callback returned false). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn corral_model_load(
    path: *const c_char,
    params: *const corral_model_params,
    out_model: *mut *mut corral_model,
) -> corral_status {
    guard(|| {
        let path = unsafe { str_arg(path, "path") }?;
        let out_model = unsafe { out(out_model, "out_model") }?;
        let defaults = corral_model_default_params();
        // SAFETY: NULL means defaults.
        let p = unsafe { params.as_ref() }.unwrap_or(&defaults);
        let chat_template = if p.chat_template.is_null() {
            None
        } else {
            Some(unsafe { str_arg(p.chat_template, "params.chat_template") }?.to_string())
        };
        let flash_attention = match p.flash_attention {
            -1 => None,
            0 => Some(false),
            1 => Some(true),
            v => return Err(set_error(CORRAL_ERR_INVALID_ARGUMENT, &format!("flash_attention must be -1, 0 or 1, got {v}"))),
        };
        let on_kv_full = match p.on_kv_full {
            0 => crate::KvFullPolicy::Wait,
            1 => crate::KvFullPolicy::Error,
            v => return Err(set_error(CORRAL_ERR_INVALID_ARGUMENT, &format!("on_kv_full must be 0 or 1, got {v}"))),
        };
        let on_progress: Option<crate::ProgressCallback> = p.on_progress.map(|callback| {
            let user_data = p.progress_user_data as usize;
            let f: crate::ProgressCallback =
                // SAFETY: a valid function pointer supplied by the caller.
                Arc::new(move |progress| unsafe { callback(progress, user_data as *mut c_void) });
            f
        });
        let options = ModelOptions {
            context_length: (p.context_length > 0).then_some(p.context_length),
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
        };
        let model = Model::load(path, options).map_err(fail)?;
        let info = model.info();
        let c = |s: &str| CString::new(s.replace('\0', "")).unwrap_or_default();
        let handle = corral_model {
            architecture: c(&info.architecture),
            name: c(&info.name),
            quantization: c(&info.quantization),
            chat_template: info.chat_template.as_deref().map(c),
            model,
        };
        *out_model = Box::into_raw(Box::new(handle));
        Ok(())
    })
}

/// Frees a model (NULL is ignored). Requests still running on it end with CORRAL_ERR_CLOSED;
/// streams and sessions made from it stay valid to free. Do not use the pointer afterwards.
#[no_mangle]
pub unsafe extern "C" fn corral_model_free(model: *mut corral_model) {
    guard_void(|| {
        if !model.is_null() {
            // SAFETY: created by corral_model_load via Box::into_raw.
            let handle = unsafe { Box::from_raw(model) };
            handle.model.close();
        }
    });
}

/// Fills `*out_info`. Its strings are borrowed from the model (valid until corral_model_free).
/// Errors: CORRAL_ERR_NULL_ARGUMENT. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn corral_model_info_get(model: *const corral_model, out_info: *mut corral_model_info) -> corral_status {
    guard(|| {
        let m = unsafe { arg(model, "model") }?;
        let out_info = unsafe { out(out_info, "out_info") }?;
        let info = m.model.info();
        *out_info = corral_model_info {
            architecture: m.architecture.as_ptr(),
            name: m.name.as_ptr(),
            quantization: m.quantization.as_ptr(),
            chat_template: m.chat_template.as_ref().map_or(std::ptr::null(), |t| t.as_ptr()),
            parameters: info.parameters,
            size_bytes: info.size_bytes,
            context_length_trained: info.context_length_trained,
            context_length: info.context_length,
            embedding_length: info.embedding_length,
            layers: info.layers,
            vocab_size: info.vocab_size,
            bos_token: info.bos_token.as_ref().map_or(-1, |t| t.id),
            eos_token: info.eos_token.as_ref().map_or(-1, |t| t.id),
            metadata_count: info.metadata.len(),
        };
        Ok(())
    })
}

/// Fills `*out_stats` with the model's totals. Errors: CORRAL_ERR_NULL_ARGUMENT. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn corral_model_stats(model: *const corral_model, out_stats: *mut corral_engine_stats) -> corral_status {
    guard(|| {
        let m = unsafe { arg(model, "model") }?;
        let out_stats = unsafe { out(out_stats, "out_stats") }?;
        *out_stats = m.model.stats().into();
        Ok(())
    })
}

/// Drops the cached KV of idle sequences (the prefix cache and idle sessions' history); running
/// requests keep theirs. Errors: CORRAL_ERR_NULL_ARGUMENT, CORRAL_ERR_CLOSED. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn corral_model_clear_cache(model: *const corral_model) -> corral_status {
    guard(|| {
        let m = unsafe { arg(model, "model") }?;
        m.model.clear_cache().map_err(fail)
    })
}

/// Every GGUF metadata key/value as one JSON object. On CORRAL_OK `*out_json` is owned by the
/// caller: release it with corral_string_free. Errors: CORRAL_ERR_NULL_ARGUMENT. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn corral_model_metadata_json(model: *const corral_model, out_json: *mut *mut c_char) -> corral_status {
    guard(|| {
        let m = unsafe { arg(model, "model") }?;
        let out_json = unsafe { out(out_json, "out_json") }?;
        let json = serde_json::to_string(&m.model.info().metadata).map_err(|e| set_error(CORRAL_ERR_INTERNAL, &e.to_string()))?;
        *out_json = owned_string(&json);
        Ok(())
    })
}

/// One GGUF metadata value as JSON (e.g. `"llama"`, `30`, `[...]`). On CORRAL_OK `*out_json`
/// is owned by the caller (corral_string_free). Errors: CORRAL_ERR_NULL_ARGUMENT,
/// CORRAL_ERR_INVALID_UTF8, CORRAL_ERR_INVALID_ARGUMENT (no such key). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn corral_model_metadata_get(
    model: *const corral_model,
    key: *const c_char,
    out_json: *mut *mut c_char,
) -> corral_status {
    guard(|| {
        let m = unsafe { arg(model, "model") }?;
        let key = unsafe { str_arg(key, "key") }?;
        let out_json = unsafe { out(out_json, "out_json") }?;
        let value = m
            .model
            .info()
            .metadata
            .get(key)
            .ok_or_else(|| set_error(CORRAL_ERR_INVALID_ARGUMENT, &format!("no metadata key {key:?}")))?;
        *out_json = owned_string(&value.to_string());
        Ok(())
    })
}

/// Tokenizes UTF-8 text. `add_special` adds BOS/EOS as the model's metadata asks;
/// `parse_special` turns special-token text into control tokens. On CORRAL_OK `*out_tokens`
/// (`*out_len` ids) is owned by the caller: release it with corral_tokens_free. Errors:
/// CORRAL_ERR_NULL_ARGUMENT, CORRAL_ERR_INVALID_UTF8, CORRAL_ERR_CLOSED. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn corral_model_tokenize(
    model: *const corral_model,
    text: *const c_char,
    add_special: bool,
    parse_special: bool,
    out_tokens: *mut *mut i32,
    out_len: *mut usize,
) -> corral_status {
    guard(|| {
        let m = unsafe { arg(model, "model") }?;
        let text = unsafe { str_arg(text, "text") }?;
        let out_tokens = unsafe { out(out_tokens, "out_tokens") }?;
        let out_len = unsafe { out(out_len, "out_len") }?;
        let tokens = m.model.tokenize(text, add_special, parse_special).map_err(fail)?;
        let boxed = tokens.into_boxed_slice();
        *out_len = boxed.len();
        *out_tokens = Box::into_raw(boxed).cast();
        Ok(())
    })
}

/// Frees tokens returned by corral_model_tokenize (`len` as returned). NULL is ignored.
#[no_mangle]
pub unsafe extern "C" fn corral_tokens_free(tokens: *mut i32, len: usize) {
    guard_void(|| {
        if !tokens.is_null() {
            // SAFETY: allocated by corral_model_tokenize as a boxed slice of `len` ids.
            drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(tokens, len)) });
        }
    });
}

/// Turns token ids back into UTF-8 text. On CORRAL_OK `*out_text` is owned by the caller
/// (corral_string_free). Errors: CORRAL_ERR_NULL_ARGUMENT (tokens NULL with len > 0),
/// CORRAL_ERR_INVALID_ARGUMENT (id out of range), CORRAL_ERR_CLOSED. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn corral_model_detokenize(
    model: *const corral_model,
    tokens: *const i32,
    len: usize,
    render_special: bool,
    out_text: *mut *mut c_char,
) -> corral_status {
    guard(|| {
        let m = unsafe { arg(model, "model") }?;
        let out_text = unsafe { out(out_text, "out_text") }?;
        let ids: &[i32] = if len == 0 {
            &[]
        } else {
            if tokens.is_null() {
                return Err(null("tokens"));
            }
            // SAFETY: the caller passes `len` ids.
            unsafe { std::slice::from_raw_parts(tokens, len) }
        };
        let text = m.model.detokenize(ids, render_special).map_err(fail)?;
        *out_text = owned_string(&text);
        Ok(())
    })
}

/// Renders `n_messages` messages with the model's chat template. On CORRAL_OK `*out_prompt` is
/// owned by the caller (corral_string_free). Errors: CORRAL_ERR_NULL_ARGUMENT,
/// CORRAL_ERR_INVALID_UTF8, CORRAL_ERR_NO_CHAT_TEMPLATE, CORRAL_ERR_TEMPLATE. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn corral_model_apply_chat_template(
    model: *const corral_model,
    messages_ptr: *const corral_message,
    n_messages: usize,
    add_generation_prompt: bool,
    out_prompt: *mut *mut c_char,
) -> corral_status {
    guard(|| {
        let m = unsafe { arg(model, "model") }?;
        let msgs = unsafe { messages(messages_ptr, n_messages) }?;
        unsafe { render_chat(m, &msgs, add_generation_prompt, std::ptr::null(), std::ptr::null(), out_prompt) }
    })
}

/// The body of both template functions.
unsafe fn render_chat(
    m: &corral_model,
    messages: &[Message],
    add_generation_prompt: bool,
    tools_json: *const c_char,
    chat_template: *const c_char,
    out_prompt: *mut *mut c_char,
) -> Result<(), corral_status> {
    let out_prompt = unsafe { out(out_prompt, "out_prompt") }?;
    let tools = unsafe { tools(tools_json, "tools_json") }?;
    let template = unsafe { opt_str(chat_template, "chat_template") }?;
    let text = m.model.apply_chat_template(messages, add_generation_prompt, &tools, template).map_err(fail)?;
    *out_prompt = owned_string(&text);
    Ok(())
}

/// corral_model_apply_chat_template for an OpenAI-shaped conversation (`messages_json`: a JSON
/// array of `{"role", "content", "tool_calls", "tool_call_id", "name"}`), with tools and a
/// template choice: `tools_json` (NULL = none) is a JSON array of tools in OpenAI's function
/// format, given to the template; `chat_template` (NULL = the model's) is one of the model's
/// named templates (e.g. "tool_use") or Jinja source. Errors: those of
/// corral_model_apply_chat_template, and CORRAL_ERR_INVALID_ARGUMENT for malformed JSON.
/// Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn corral_model_apply_chat_template_json(
    model: *const corral_model,
    messages_json: *const c_char,
    add_generation_prompt: bool,
    tools_json: *const c_char,
    chat_template: *const c_char,
    out_prompt: *mut *mut c_char,
) -> corral_status {
    guard(|| {
        let m = unsafe { arg(model, "model") }?;
        let msgs = unsafe { self::messages_json(messages_json) }?;
        unsafe { render_chat(m, &msgs, add_generation_prompt, tools_json, chat_template, out_prompt) }
    })
}

/// Log-probability of each token given the ones before it: `*out_len = len - 1` floats, owned
/// by the caller (corral_floats_free). Errors: CORRAL_ERR_NULL_ARGUMENT,
/// CORRAL_ERR_INVALID_ARGUMENT (fewer than 2 tokens, id out of range),
/// CORRAL_ERR_CONTEXT_OVERFLOW. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn corral_model_score(
    model: *const corral_model,
    tokens: *const i32,
    len: usize,
    out_logprobs: *mut *mut f32,
    out_len: *mut usize,
) -> corral_status {
    guard(|| {
        let m = unsafe { arg(model, "model") }?;
        if tokens.is_null() {
            return Err(null("tokens"));
        }
        let out_logprobs = unsafe { out(out_logprobs, "out_logprobs") }?;
        let out_len = unsafe { out(out_len, "out_len") }?;
        // SAFETY: the caller passes `len` ids.
        let ids = unsafe { std::slice::from_raw_parts(tokens, len) };
        let logprobs = m.model.score(ids).map_err(fail)?.into_boxed_slice();
        *out_len = logprobs.len();
        *out_logprobs = Box::into_raw(logprobs).cast();
        Ok(())
    })
}

/// Frees floats returned by corral_model_score (`len` as returned). NULL is ignored.
#[no_mangle]
pub unsafe extern "C" fn corral_floats_free(values: *mut f32, len: usize) {
    guard_void(|| {
        if !values.is_null() {
            // SAFETY: allocated by corral_model_score as a boxed slice of `len` floats.
            drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(values, len)) });
        }
    });
}

/// Frees a string returned by corral (NULL is ignored).
#[no_mangle]
pub unsafe extern "C" fn corral_string_free(string: *mut c_char) {
    guard_void(|| {
        if !string.is_null() {
            // SAFETY: allocated by CString::into_raw in this library.
            drop(unsafe { CString::from_raw(string) });
        }
    });
}

/// Frees the text of a result filled by a completion call and resets it (NULL is ignored).
#[no_mangle]
pub unsafe extern "C" fn corral_result_free(result: *mut corral_result) {
    guard_void(|| {
        // SAFETY: a result filled by corral (or zeroed by the caller).
        if let Some(r) = unsafe { result.as_mut() } {
            for owned in [&mut r.text, &mut r.tool_calls_json, &mut r.logprobs_json] {
                if !owned.is_null() {
                    drop(unsafe { CString::from_raw(*owned) });
                }
                *owned = std::ptr::null_mut();
            }
            r.text_len = 0;
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Generation.

enum Prompt<'a> {
    Text(&'a str),
    Chat(Vec<Message>),
}

enum Target<'a> {
    Model(&'a Model),
    Session(&'a Session),
}

fn start(target: Target<'_>, prompt: Prompt<'_>, options: &GenerateOptions) -> crate::Result<Stream> {
    match (target, prompt) {
        (Target::Model(m), Prompt::Text(p)) => m.complete_stream(p, options),
        (Target::Model(m), Prompt::Chat(msgs)) => m.chat_stream(&msgs, options),
        (Target::Session(s), Prompt::Text(p)) => s.complete_stream(p, options),
        (Target::Session(s), Prompt::Chat(msgs)) => s.chat_stream(&msgs, options),
    }
}

/// The body of every blocking generation function: the options, the request, the run.
unsafe fn generate(
    target: Target<'_>,
    prompt: Prompt<'_>,
    params: *const corral_generate_params,
    callback: corral_chunk_callback,
    user_data: *mut c_void,
    out_result: *mut corral_result,
) -> Result<(), corral_status> {
    let options = unsafe { generate_options(params) }?;
    let stream = start(target, prompt, &options).map_err(fail)?;
    run_blocking(stream, callback, user_data, unsafe { out_result.as_mut() })
}

/// The body of every function that starts a stream to pull.
unsafe fn generate_stream(
    target: Target<'_>,
    prompt: Prompt<'_>,
    params: *const corral_generate_params,
    out_stream: *mut *mut corral_stream,
) -> Result<(), corral_status> {
    let out_stream = unsafe { out(out_stream, "out_stream") }?;
    let options = unsafe { generate_options(params) }?;
    let stream = start(target, prompt, &options).map_err(fail)?;
    *out_stream = into_stream_handle(stream);
    Ok(())
}

/// Runs a generation on the calling thread, feeding `callback` and filling `out`.
fn run_blocking(
    stream: Stream,
    callback: corral_chunk_callback,
    user_data: *mut c_void,
    out_result: Option<&mut corral_result>,
) -> Result<(), corral_status> {
    let mut stream = stream;
    let mut text = String::new();
    let mut logprobs = Vec::new();
    while let Some(chunk) = stream.next_chunk() {
        let chunk = chunk.map_err(fail)?;
        if let Some(callback) = callback {
            if !chunk.text.is_empty() && !stream_cancelled(&stream) {
                // SAFETY: a valid function pointer; text valid for the call.
                let go_on = unsafe { callback(chunk.text.as_ptr().cast(), chunk.text.len(), user_data) };
                if !go_on {
                    stream.cancel();
                }
            }
        }
        text.push_str(&chunk.text);
        logprobs.extend(chunk.logprobs);
        if let Some(reason) = chunk.finish_reason {
            if let Some(out) = out_result {
                let usage = chunk.usage.as_ref().map(corral_usage::from).unwrap_or_default();
                let owned = owned_string(&text);
                // SAFETY: just allocated, NUL-terminated.
                let len = unsafe { CStr::from_ptr(owned) }.to_bytes().len();
                let into_raw = |json: Option<CString>| json.map_or(std::ptr::null_mut(), CString::into_raw);
                *out = corral_result {
                    text: owned,
                    text_len: len,
                    finish_reason: reason.into(),
                    usage,
                    tool_calls_json: into_raw(json_array_or_null(stream.tool_calls(), crate::ToolCall::to_openai)),
                    logprobs_json: into_raw(json_array_or_null(&logprobs, crate::Logprob::to_openai)),
                };
            }
            return Ok(());
        }
    }
    Err(set_error(CORRAL_ERR_INTERNAL, "the stream ended without a final chunk"))
}

fn stream_cancelled(stream: &Stream) -> bool {
    stream.cancel_handle().is_cancelled()
}

/// Completes `prompt` (tokenized with BOS as the model asks), blocking. `params` may be NULL.
/// `callback` (may be NULL) receives text as it is generated; returning false stops generation.
/// `out_result` (may be NULL) receives the whole text, finish reason and usage; release its
/// text with corral_result_free. Errors: CORRAL_ERR_NULL_ARGUMENT, CORRAL_ERR_INVALID_UTF8,
/// CORRAL_ERR_INVALID_ARGUMENT, CORRAL_ERR_CONTEXT_OVERFLOW, CORRAL_ERR_CLOSED,
/// CORRAL_ERR_DEADLINE_EXCEEDED, CORRAL_ERR_DECODE_FAILED. Thread-safe: many threads may
/// generate on one model at once.
#[no_mangle]
pub unsafe extern "C" fn corral_model_complete(
    model: *const corral_model,
    prompt: *const c_char,
    params: *const corral_generate_params,
    callback: corral_chunk_callback,
    user_data: *mut c_void,
    out_result: *mut corral_result,
) -> corral_status {
    guard(|| {
        let m = unsafe { arg(model, "model") }?;
        let prompt = unsafe { str_arg(prompt, "prompt") }?;
        unsafe { generate(Target::Model(&m.model), Prompt::Text(prompt), params, callback, user_data, out_result) }
    })
}

/// Like corral_model_complete, for a conversation rendered with the model's chat template.
/// Additional errors: CORRAL_ERR_NO_CHAT_TEMPLATE, CORRAL_ERR_TEMPLATE.
#[no_mangle]
pub unsafe extern "C" fn corral_model_chat(
    model: *const corral_model,
    messages_ptr: *const corral_message,
    n_messages: usize,
    params: *const corral_generate_params,
    callback: corral_chunk_callback,
    user_data: *mut c_void,
    out_result: *mut corral_result,
) -> corral_status {
    guard(|| {
        let m = unsafe { arg(model, "model") }?;
        let msgs = unsafe { messages(messages_ptr, n_messages) }?;
        unsafe { generate(Target::Model(&m.model), Prompt::Chat(msgs), params, callback, user_data, out_result) }
    })
}

/// Starts a completion to pull with corral_stream_next. On CORRAL_OK `*out_stream` is owned by
/// the caller (corral_stream_free). Errors as corral_model_complete. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn corral_model_complete_stream(
    model: *const corral_model,
    prompt: *const c_char,
    params: *const corral_generate_params,
    out_stream: *mut *mut corral_stream,
) -> corral_status {
    guard(|| {
        let m = unsafe { arg(model, "model") }?;
        let prompt = unsafe { str_arg(prompt, "prompt") }?;
        unsafe { generate_stream(Target::Model(&m.model), Prompt::Text(prompt), params, out_stream) }
    })
}

/// Starts a chat reply to pull with corral_stream_next. Errors as corral_model_chat.
#[no_mangle]
pub unsafe extern "C" fn corral_model_chat_stream(
    model: *const corral_model,
    messages_ptr: *const corral_message,
    n_messages: usize,
    params: *const corral_generate_params,
    out_stream: *mut *mut corral_stream,
) -> corral_status {
    guard(|| {
        let m = unsafe { arg(model, "model") }?;
        let msgs = unsafe { messages(messages_ptr, n_messages) }?;
        unsafe { generate_stream(Target::Model(&m.model), Prompt::Chat(msgs), params, out_stream) }
    })
}

/// corral_model_chat for an OpenAI-shaped conversation: `messages_json` is a JSON array of
/// `{"role", "content", "tool_calls", "tool_call_id", "name"}` objects, so an assistant's tool
/// calls and the `tool` messages answering them can be sent back. Errors as corral_model_chat,
/// and CORRAL_ERR_INVALID_ARGUMENT for malformed JSON. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn corral_model_chat_json(
    model: *const corral_model,
    messages_json: *const c_char,
    params: *const corral_generate_params,
    callback: corral_chunk_callback,
    user_data: *mut c_void,
    out_result: *mut corral_result,
) -> corral_status {
    guard(|| {
        let m = unsafe { arg(model, "model") }?;
        let msgs = unsafe { self::messages_json(messages_json) }?;
        unsafe { generate(Target::Model(&m.model), Prompt::Chat(msgs), params, callback, user_data, out_result) }
    })
}

/// corral_model_chat_stream for an OpenAI-shaped conversation (see corral_model_chat_json).
#[no_mangle]
pub unsafe extern "C" fn corral_model_chat_stream_json(
    model: *const corral_model,
    messages_json: *const c_char,
    params: *const corral_generate_params,
    out_stream: *mut *mut corral_stream,
) -> corral_status {
    guard(|| {
        let m = unsafe { arg(model, "model") }?;
        let msgs = unsafe { self::messages_json(messages_json) }?;
        unsafe { generate_stream(Target::Model(&m.model), Prompt::Chat(msgs), params, out_stream) }
    })
}

/// Waits for the next chunk. On CORRAL_OK `*out_chunk` is filled; its text is borrowed until
/// the next call on this stream. The last chunk has finish_reason != CORRAL_FINISH_NONE and
/// carries usage; calls after it return that final state again with empty text. Errors:
/// CORRAL_ERR_NULL_ARGUMENT, generation errors (CORRAL_ERR_CLOSED, CORRAL_ERR_DEADLINE_EXCEEDED,
/// CORRAL_ERR_CONTEXT_OVERFLOW, CORRAL_ERR_DECODE_FAILED). One thread at a time per stream.
#[no_mangle]
pub unsafe extern "C" fn corral_stream_next(stream: *const corral_stream, out_chunk: *mut corral_chunk) -> corral_status {
    guard(|| {
        let s = unsafe { arg(stream, "stream") }?;
        let out_chunk = unsafe { out(out_chunk, "out_chunk") }?;
        let mut current = s.current.lock().unwrap_or_else(|e| e.into_inner());
        let mut finished = s.finished.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((finish_reason, usage)) = *finished {
            *current = BorrowedChunk::default();
            *out_chunk = current.to_c(finish_reason, usage);
            return Ok(());
        }
        let next = s.stream.lock().unwrap_or_else(|e| e.into_inner()).next_chunk();
        let chunk = match next {
            Some(chunk) => chunk.map_err(fail)?,
            None => return Err(set_error(CORRAL_ERR_CLOSED, "the stream has ended")),
        };
        let finish_reason = chunk.finish_reason.map_or(corral_finish_reason::CORRAL_FINISH_NONE, Into::into);
        let usage = chunk.usage.as_ref().map(corral_usage::from).unwrap_or_default();
        if chunk.finish_reason.is_some() {
            *finished = Some((finish_reason, usage));
        }
        *current = BorrowedChunk {
            text: CString::new(chunk.text.replace('\0', "")).unwrap_or_default(),
            tool_calls_json: json_array_or_null(&chunk.tool_calls, crate::ToolCallDelta::to_openai),
            logprobs_json: json_array_or_null(&chunk.logprobs, crate::Logprob::to_openai),
        };
        *out_chunk = current.to_c(finish_reason, usage);
        Ok(())
    })
}

/// Asks the generation to stop; the stream then ends with CORRAL_FINISH_CANCELLED. Safe from
/// any thread, also while another thread waits in corral_stream_next; idempotent; NULL ignored.
#[no_mangle]
pub unsafe extern "C" fn corral_stream_cancel(stream: *const corral_stream) {
    guard_void(|| {
        // SAFETY: NULL or a live stream.
        if let Some(s) = unsafe { stream.as_ref() } {
            s.cancel.cancel();
        }
    });
}

/// Frees a stream, cancelling its generation if still running, and returns once the engine has
/// let go of it (within one token or one prompt chunk): its tokens are then in
/// corral_model_stats and its sequence is free. NULL is ignored.
#[no_mangle]
pub unsafe extern "C" fn corral_stream_free(stream: *mut corral_stream) {
    guard_void(|| {
        if !stream.is_null() {
            // SAFETY: created by a *_stream function via Box::into_raw.
            let stream = unsafe { Box::from_raw(stream) };
            // Waits for the engine to let go of the request, so that what follows (stats, the
            // next request on a session) never sees it still running.
            let stream = stream.stream.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner());
            stream.close();
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Sessions.

/// Creates a session on `model`. On CORRAL_OK `*out_session` is owned by the caller
/// (corral_session_free). Errors: CORRAL_ERR_NULL_ARGUMENT, CORRAL_ERR_CLOSED. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn corral_model_session(model: *const corral_model, out_session: *mut *mut corral_session) -> corral_status {
    guard(|| {
        let m = unsafe { arg(model, "model") }?;
        let out_session = unsafe { out(out_session, "out_session") }?;
        let session = m.model.session().map_err(fail)?;
        *out_session = Box::into_raw(Box::new(corral_session { session }));
        Ok(())
    })
}

/// Frees a session, releasing its cached KV for other requests. NULL is ignored.
#[no_mangle]
pub unsafe extern "C" fn corral_session_free(session: *mut corral_session) {
    guard_void(|| {
        if !session.is_null() {
            // SAFETY: created by corral_model_session via Box::into_raw.
            drop(unsafe { Box::from_raw(session) });
        }
    });
}

/// corral_model_complete on a session: the prompt's prefix already evaluated by this session
/// is reused (see usage.cached_tokens).
#[no_mangle]
pub unsafe extern "C" fn corral_session_complete(
    session: *const corral_session,
    prompt: *const c_char,
    params: *const corral_generate_params,
    callback: corral_chunk_callback,
    user_data: *mut c_void,
    out_result: *mut corral_result,
) -> corral_status {
    guard(|| {
        let s = unsafe { arg(session, "session") }?;
        let prompt = unsafe { str_arg(prompt, "prompt") }?;
        unsafe { generate(Target::Session(&s.session), Prompt::Text(prompt), params, callback, user_data, out_result) }
    })
}

/// corral_model_chat on a session: pass the whole conversation each turn; earlier turns are
/// reused from the session's KV cache.
#[no_mangle]
pub unsafe extern "C" fn corral_session_chat(
    session: *const corral_session,
    messages_ptr: *const corral_message,
    n_messages: usize,
    params: *const corral_generate_params,
    callback: corral_chunk_callback,
    user_data: *mut c_void,
    out_result: *mut corral_result,
) -> corral_status {
    guard(|| {
        let s = unsafe { arg(session, "session") }?;
        let msgs = unsafe { messages(messages_ptr, n_messages) }?;
        unsafe { generate(Target::Session(&s.session), Prompt::Chat(msgs), params, callback, user_data, out_result) }
    })
}

/// corral_model_complete_stream on a session.
#[no_mangle]
pub unsafe extern "C" fn corral_session_complete_stream(
    session: *const corral_session,
    prompt: *const c_char,
    params: *const corral_generate_params,
    out_stream: *mut *mut corral_stream,
) -> corral_status {
    guard(|| {
        let s = unsafe { arg(session, "session") }?;
        let prompt = unsafe { str_arg(prompt, "prompt") }?;
        unsafe { generate_stream(Target::Session(&s.session), Prompt::Text(prompt), params, out_stream) }
    })
}

/// corral_model_chat_stream on a session.
#[no_mangle]
pub unsafe extern "C" fn corral_session_chat_stream(
    session: *const corral_session,
    messages_ptr: *const corral_message,
    n_messages: usize,
    params: *const corral_generate_params,
    out_stream: *mut *mut corral_stream,
) -> corral_status {
    guard(|| {
        let s = unsafe { arg(session, "session") }?;
        let msgs = unsafe { messages(messages_ptr, n_messages) }?;
        unsafe { generate_stream(Target::Session(&s.session), Prompt::Chat(msgs), params, out_stream) }
    })
}

/// corral_model_chat_json on a session.
#[no_mangle]
pub unsafe extern "C" fn corral_session_chat_json(
    session: *const corral_session,
    messages_json: *const c_char,
    params: *const corral_generate_params,
    callback: corral_chunk_callback,
    user_data: *mut c_void,
    out_result: *mut corral_result,
) -> corral_status {
    guard(|| {
        let s = unsafe { arg(session, "session") }?;
        let msgs = unsafe { self::messages_json(messages_json) }?;
        unsafe { generate(Target::Session(&s.session), Prompt::Chat(msgs), params, callback, user_data, out_result) }
    })
}

/// corral_model_chat_stream_json on a session.
#[no_mangle]
pub unsafe extern "C" fn corral_session_chat_stream_json(
    session: *const corral_session,
    messages_json: *const c_char,
    params: *const corral_generate_params,
    out_stream: *mut *mut corral_stream,
) -> corral_status {
    guard(|| {
        let s = unsafe { arg(session, "session") }?;
        let msgs = unsafe { self::messages_json(messages_json) }?;
        unsafe { generate_stream(Target::Session(&s.session), Prompt::Chat(msgs), params, out_stream) }
    })
}
