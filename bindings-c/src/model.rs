//! The `corral_model` handle: loading, information, tokens, templates, scoring and generation
//! on a model; the library-wide version and CPU variant.

use std::ffi::{c_char, c_void, CString};

use corral::{Message, Model};

use crate::boundary::{
    fill_out, free_handle, free_slice, guard, guard_void, into_handle, on_handle, owned_string, try_arg, try_opt_str, try_out_slice,
    try_slice, try_str,
};
use crate::conversions::{c_string, corral_engine_stats, corral_result};
use crate::error::corral_status::*;
use crate::error::{corral_status, fail, null, set_error};
use crate::params::{
    corral_chunk_callback, corral_generate_params, corral_message, corral_model_params, corral_prompt, messages, messages_json,
    model_options, tools, PromptArg,
};
use crate::stream::{corral_stream, generate, generate_stream};

/// A loaded model. Thread-safe: share one `corral_model *` between threads; concurrent
/// requests are batched by its engine.
pub struct corral_model {
    pub(crate) model: Model,
    architecture: CString,
    name: CString,
    quantization: CString,
    chat_template: Option<CString>,
}

/// What a model is. Strings are borrowed from the model: valid until corral_model_free.
#[repr(C)]
#[derive(Debug)]
pub struct corral_model_info {
    pub architecture: *const c_char,
    pub name: *const c_char,
    pub quantization: *const c_char,
    /// NULL when the model has no chat template.
    pub chat_template: *const c_char,
    pub parameters: u64,
    pub size_bytes: u64,
    pub context_length_trained: u32,
    pub context_length: u32,
    pub embedding_length: u32,
    pub layers: u32,
    pub vocab_size: u32,
    /// -1 when the model has none.
    pub bos_token: i32,
    pub eos_token: i32,
    pub metadata_count: usize,
}

/// corral's version as "MAJOR.MINOR.PATCH". Static string; never free it.
#[no_mangle]
pub extern "C" fn corral_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The ggml CPU library this process uses ("sapphirerapids", "zen4", "haswell", "x64", ...),
/// loading it if needed. Static string; NULL when no CPU backend can be loaded (see
/// corral_last_error_message).
#[no_mangle]
pub extern "C" fn corral_cpu_variant() -> *const c_char {
    static NAME: std::sync::OnceLock<CString> = std::sync::OnceLock::new();
    let mut name = std::ptr::null();
    guard(|| {
        let variant = corral::cpu_variant().map_err(fail)?;
        name = NAME.get_or_init(|| CString::new(variant.name).unwrap_or_default()).as_ptr();
        Ok(())
    });
    name
}

/// Loads a GGUF model. `params` may be NULL (defaults). On CORRAL_OK, `*out_model` owns the
/// model: release it with corral_model_free. Errors: CORRAL_ERR_NULL_ARGUMENT,
/// CORRAL_ERR_INVALID_UTF8, CORRAL_ERR_MODEL_NOT_FOUND, CORRAL_ERR_INVALID_MODEL,
/// CORRAL_ERR_UNSUPPORTED_ARCHITECTURE, CORRAL_ERR_INVALID_ARGUMENT, CORRAL_ERR_CANCELLED
/// (progress callback returned false), CORRAL_ERR_INSUFFICIENT_MEMORY (the parameters need
/// more memory than the process has: see corral_estimate_memory). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn corral_model_load(
    path: *const c_char,
    params: *const corral_model_params,
    out_model: *mut *mut corral_model,
) -> corral_status {
    fill_out!(try_str!(path), out_model, |path| {
        // SAFETY: NULL or valid params (this function's contract).
        let options = unsafe { model_options(params) }?;
        let model = Model::load(path, options).map_err(fail)?;
        let info = model.info();
        let handle = corral_model {
            architecture: c_string(&info.architecture),
            name: c_string(&info.name),
            quantization: c_string(&info.quantization),
            chat_template: info.chat_template.as_deref().map(c_string),
            model,
        };
        Ok(into_handle(handle))
    })
}

/// Frees a model (NULL is ignored). Requests still running on it end with CORRAL_ERR_CLOSED;
/// streams and sessions made from it stay valid to free. Do not use the pointer afterwards.
#[no_mangle]
pub unsafe extern "C" fn corral_model_free(model: *mut corral_model) {
    guard_void(|| {
        // SAFETY: NULL or a model made by corral_model_load (into_handle), freed once.
        if let Some(handle) = unsafe { free_handle(model) } {
            handle.model.close();
        }
    });
}

/// Fills `*out_info`. Its strings are borrowed from the model (valid until corral_model_free).
/// Errors: CORRAL_ERR_NULL_ARGUMENT. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn corral_model_info_get(model: *const corral_model, out_info: *mut corral_model_info) -> corral_status {
    fill_out!(model, out_info, |m| {
        let info = m.model.info();
        Ok(corral_model_info {
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
        })
    })
}

/// Fills `*out_stats` with the model's totals. Errors: CORRAL_ERR_NULL_ARGUMENT. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn corral_model_stats(model: *const corral_model, out_stats: *mut corral_engine_stats) -> corral_status {
    fill_out!(model, out_stats, |m| Ok(m.model.stats().into()))
}

/// Drops the cached KV of idle sequences (the prefix cache and idle sessions' history); running
/// requests keep theirs. Errors: CORRAL_ERR_NULL_ARGUMENT, CORRAL_ERR_CLOSED. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn corral_model_clear_cache(model: *const corral_model) -> corral_status {
    on_handle!(model, |m| m.model.clear_cache().map_err(fail))
}

/// Loads a LoRA adapter for this model under `name`; requests choose it through
/// corral_generate_params.adapters_json. Errors: CORRAL_ERR_NULL_ARGUMENT, CORRAL_ERR_INVALID_UTF8,
/// CORRAL_ERR_MODEL_NOT_FOUND (no such file), CORRAL_ERR_INVALID_MODEL (not a LoRA adapter of
/// this model), CORRAL_ERR_INVALID_ARGUMENT (a bad or taken name), CORRAL_ERR_CLOSED. The model
/// keeps serving either way. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn corral_model_load_adapter(model: *const corral_model, name: *const c_char, path: *const c_char) -> corral_status {
    on_handle!(model, |m| m.model.load_adapter(try_str!(name), try_str!(path)).map_err(fail))
}

/// Unloads an adapter: new requests can no longer choose it; running ones finish with it.
/// Errors: CORRAL_ERR_NULL_ARGUMENT, CORRAL_ERR_INVALID_UTF8, CORRAL_ERR_INVALID_ARGUMENT (no
/// adapter of that name). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn corral_model_remove_adapter(model: *const corral_model, name: *const c_char) -> corral_status {
    on_handle!(model, |m| m.model.remove_adapter(try_str!(name)).map_err(fail))
}

/// The names of the loaded adapters as a JSON array of strings, sorted. On CORRAL_OK
/// `*out_json` is owned by the caller: release it with corral_string_free. Errors:
/// CORRAL_ERR_NULL_ARGUMENT. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn corral_model_adapters_json(model: *const corral_model, out_json: *mut *mut c_char) -> corral_status {
    fill_out!(model, out_json, |m| Ok(owned_string(&serde_json::Value::from(m.model.adapters()).to_string())))
}

/// Every GGUF metadata key/value as one JSON object. On CORRAL_OK `*out_json` is owned by the
/// caller: release it with corral_string_free. Errors: CORRAL_ERR_NULL_ARGUMENT. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn corral_model_metadata_json(model: *const corral_model, out_json: *mut *mut c_char) -> corral_status {
    fill_out!(model, out_json, |m| {
        let json = serde_json::to_string(&m.model.info().metadata).map_err(|e| set_error(CORRAL_ERR_INTERNAL, &e.to_string()))?;
        Ok(owned_string(&json))
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
    on_handle!(model, |m| {
        let key = try_str!(key);
        let out_json = try_arg!(out_json);
        let value =
            m.model.info().metadata.get(key).ok_or_else(|| set_error(CORRAL_ERR_INVALID_ARGUMENT, &format!("no metadata key {key:?}")))?;
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
    on_handle!(model, |m| {
        let text = try_str!(text);
        let out = try_out_slice!(out_tokens, out_len);
        out.set(m.model.tokenize(text, add_special, parse_special).map_err(fail)?)
    })
}

/// Frees tokens returned by corral_model_tokenize (`len` as returned). NULL is ignored.
#[no_mangle]
pub unsafe extern "C" fn corral_tokens_free(tokens: *mut i32, len: usize) {
    guard_void(|| {
        // SAFETY: NULL or tokens from corral_model_tokenize (owned_slice) with their length,
        // freed once.
        unsafe { free_slice(tokens, len) };
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
    fill_out!(model, out_text, |m| {
        let ids = try_slice!(tokens, len, "tokens");
        Ok(owned_string(&m.model.detokenize(ids, render_special).map_err(fail)?))
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
    on_handle!(model, |m| {
        // SAFETY: an array of n_messages messages (this function's contract).
        let msgs = unsafe { messages(messages_ptr, n_messages) }?;
        // SAFETY: out_prompt is NULL or valid (this function's contract).
        unsafe { render_chat(m, &msgs, add_generation_prompt, std::ptr::null(), std::ptr::null(), out_prompt) }
    })
}

/// The body of both template functions.
///
/// # Safety
/// The pointers are NULL or valid, the strings NUL-terminated (the entry point's contract).
unsafe fn render_chat(
    m: &corral_model,
    messages: &[Message],
    add_generation_prompt: bool,
    tools_json: *const c_char,
    chat_template: *const c_char,
    out_prompt: *mut *mut c_char,
) -> Result<(), corral_status> {
    let out_prompt = try_arg!(out_prompt);
    // SAFETY: the caller's guarantee, passed on.
    let tools = unsafe { tools(tools_json, "tools_json") }?;
    let template = try_opt_str!(chat_template, "chat_template");
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
    on_handle!(model, |m| {
        // SAFETY: NULL or a NUL-terminated string (this function's contract).
        let msgs = unsafe { self::messages_json(messages_json) }?;
        // SAFETY: the remaining pointers are NULL or valid (this function's contract).
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
    on_handle!(model, |m| {
        if tokens.is_null() {
            return Err(null("tokens"));
        }
        let out = try_out_slice!(out_logprobs, out_len);
        let ids = try_slice!(tokens, len, "tokens");
        out.set(m.model.score(ids).map_err(fail)?)
    })
}

/// Frees floats returned by corral_model_score (`len` as returned). NULL is ignored.
#[no_mangle]
pub unsafe extern "C" fn corral_floats_free(values: *mut f32, len: usize) {
    guard_void(|| {
        // SAFETY: NULL or floats from corral_model_score (owned_slice) with their length, freed
        // once.
        unsafe { free_slice(values, len) };
    });
}

/// Generates from `prompt` (text, token ids, messages or OpenAI-shaped JSON messages: see
/// corral_prompt), blocking. `params` may be NULL (defaults). `callback` (may be NULL)
/// receives text as it is generated; returning false stops generation. `out_result` (may be
/// NULL) receives the whole text, finish reason, usage, tool calls and log-probabilities;
/// release it with corral_result_free. Errors: CORRAL_ERR_NULL_ARGUMENT,
/// CORRAL_ERR_INVALID_UTF8, CORRAL_ERR_INVALID_ARGUMENT (also a bad prompt kind, token id or
/// JSON), CORRAL_ERR_CONTEXT_OVERFLOW, CORRAL_ERR_BUSY, CORRAL_ERR_CLOSED,
/// CORRAL_ERR_DEADLINE_EXCEEDED, CORRAL_ERR_DECODE_FAILED, CORRAL_ERR_INVALID_GRAMMAR; for
/// conversations CORRAL_ERR_NO_CHAT_TEMPLATE and CORRAL_ERR_TEMPLATE. Thread-safe: many
/// threads may generate on one model at once.
#[no_mangle]
pub unsafe extern "C" fn corral_model_generate(
    model: *const corral_model,
    prompt: *const corral_prompt,
    params: *const corral_generate_params,
    callback: corral_chunk_callback,
    user_data: *mut c_void,
    out_result: *mut corral_result,
) -> corral_status {
    // SAFETY: the pointers are NULL or valid (this function's contract).
    unsafe { generate(model, PromptArg::Prompt(prompt), params, callback, user_data, out_result) }
}

/// Starts a generation from `prompt` to pull with corral_stream_next. On CORRAL_OK
/// `*out_stream` is owned by the caller (corral_stream_free). Errors as
/// corral_model_generate. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn corral_model_generate_stream(
    model: *const corral_model,
    prompt: *const corral_prompt,
    params: *const corral_generate_params,
    out_stream: *mut *mut corral_stream,
) -> corral_status {
    // SAFETY: the pointers are NULL or valid (this function's contract).
    unsafe { generate_stream(model, PromptArg::Prompt(prompt), params, out_stream) }
}

/// Completes raw text, blocking: corral_model_generate with a CORRAL_PROMPT_TEXT prompt.
#[no_mangle]
pub unsafe extern "C" fn corral_model_complete(
    model: *const corral_model,
    prompt: *const c_char,
    params: *const corral_generate_params,
    callback: corral_chunk_callback,
    user_data: *mut c_void,
    out_result: *mut corral_result,
) -> corral_status {
    // SAFETY: the pointers are NULL or valid (this function's contract).
    unsafe { generate(model, PromptArg::Text(prompt), params, callback, user_data, out_result) }
}

/// Replies to a conversation, blocking: corral_model_generate with a CORRAL_PROMPT_MESSAGES
/// prompt of `n_messages` messages.
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
    // SAFETY: an array of n_messages messages; the other pointers are NULL or valid (this
    // function's contract).
    unsafe { generate(model, PromptArg::Messages(messages_ptr, n_messages), params, callback, user_data, out_result) }
}
