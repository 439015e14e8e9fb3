//! The `corral_session` handle: a conversation keeping its KV cache between calls.

use std::ffi::{c_char, c_void};

use corral::Session;

use crate::boundary::{fill_out, free_handle, free_slice, guard_void, into_handle, on_handle, try_arg, try_out_slice, try_slice, try_str};
use crate::conversions::corral_result;
use crate::error::{corral_status, fail};
use crate::model::corral_model;
use crate::params::{corral_chunk_callback, corral_generate_params, corral_message, corral_prompt, PromptArg};
use crate::stream::{corral_stream, generate, generate_stream};

/// A conversation keeping its KV cache between calls. Internally synchronised: calls from
/// several threads are safe (they run as separate requests).
pub struct corral_session {
    pub(crate) session: Session,
}

/// Creates a session on `model`. On CORRAL_OK `*out_session` is owned by the caller
/// (corral_session_free). Errors: CORRAL_ERR_NULL_ARGUMENT, CORRAL_ERR_CLOSED. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn corral_model_session(model: *const corral_model, out_session: *mut *mut corral_session) -> corral_status {
    fill_out!(model, out_session, |m| Ok(into_handle(corral_session { session: m.model.session().map_err(fail)? })))
}

/// Frees a session, releasing its cached KV for other requests. NULL is ignored.
#[no_mangle]
pub unsafe extern "C" fn corral_session_free(session: *mut corral_session) {
    guard_void(|| {
        // SAFETY: NULL or a session made by corral_model_session (into_handle), freed once.
        drop(unsafe { free_handle(session) });
    });
}

/// corral_model_generate on a session: the prompt's prefix this session already evaluated is
/// reused (see usage.cached_tokens), so pass the whole conversation each turn.
#[no_mangle]
pub unsafe extern "C" fn corral_session_generate(
    session: *const corral_session,
    prompt: *const corral_prompt,
    params: *const corral_generate_params,
    callback: corral_chunk_callback,
    user_data: *mut c_void,
    out_result: *mut corral_result,
) -> corral_status {
    // SAFETY: the pointers are NULL or valid (this function's contract).
    unsafe { generate(session, PromptArg::Prompt(prompt), params, callback, user_data, out_result) }
}

/// corral_model_generate_stream on a session.
#[no_mangle]
pub unsafe extern "C" fn corral_session_generate_stream(
    session: *const corral_session,
    prompt: *const corral_prompt,
    params: *const corral_generate_params,
    out_stream: *mut *mut corral_stream,
) -> corral_status {
    // SAFETY: the pointers are NULL or valid (this function's contract).
    unsafe { generate_stream(session, PromptArg::Prompt(prompt), params, out_stream) }
}

/// corral_model_complete on a session.
#[no_mangle]
pub unsafe extern "C" fn corral_session_complete(
    session: *const corral_session,
    prompt: *const c_char,
    params: *const corral_generate_params,
    callback: corral_chunk_callback,
    user_data: *mut c_void,
    out_result: *mut corral_result,
) -> corral_status {
    // SAFETY: the pointers are NULL or valid (this function's contract).
    unsafe { generate(session, PromptArg::Text(prompt), params, callback, user_data, out_result) }
}

/// corral_model_chat on a session.
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
    // SAFETY: an array of n_messages messages; the other pointers are NULL or valid (this
    // function's contract).
    unsafe { generate(session, PromptArg::Messages(messages_ptr, n_messages), params, callback, user_data, out_result) }
}

/// The session's state (its tokens and KV cache, with a fingerprint of the model and
/// configuration they fit), to restore with corral_model_session_from_state in this process or
/// another. On CORRAL_OK `*out_state` holds `*out_len` bytes owned by the caller
/// (corral_bytes_free). Errors: CORRAL_ERR_NULL_ARGUMENT, CORRAL_ERR_BUSY (the session is
/// generating), CORRAL_ERR_CLOSED. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn corral_session_state(
    session: *const corral_session,
    out_state: *mut *mut u8,
    out_len: *mut usize,
) -> corral_status {
    on_handle!(session, |s| {
        let out = try_out_slice!(out_state, out_len);
        out.set(s.session.state().map_err(fail)?)
    })
}

/// Writes the session's state to `path` (see corral_session_state). Errors:
/// CORRAL_ERR_NULL_ARGUMENT, CORRAL_ERR_INVALID_UTF8, CORRAL_ERR_INVALID_ARGUMENT (the file
/// cannot be written), CORRAL_ERR_BUSY, CORRAL_ERR_CLOSED. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn corral_session_save(session: *const corral_session, path: *const c_char) -> corral_status {
    on_handle!(session, |s| {
        let path = try_str!(path);
        s.session.save(path).map_err(fail)
    })
}

/// Frees bytes returned by corral_session_state (`len` as returned). NULL is ignored.
#[no_mangle]
pub unsafe extern "C" fn corral_bytes_free(bytes: *mut u8, len: usize) {
    guard_void(|| {
        // SAFETY: NULL or bytes from corral_session_state (owned_slice) with their length,
        // freed once.
        unsafe { free_slice(bytes, len) };
    });
}

/// A new session continuing a saved one: its next call evaluates only what follows the saved
/// tokens. On CORRAL_OK `*out_session` is owned by the caller (corral_session_free). Errors:
/// CORRAL_ERR_NULL_ARGUMENT, CORRAL_ERR_INVALID_STATE (corrupt or truncated, or saved from
/// another model, context length or configuration: the message says what differs),
/// CORRAL_ERR_CONTEXT_OVERFLOW, CORRAL_ERR_BUSY, CORRAL_ERR_CLOSED. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn corral_model_session_from_state(
    model: *const corral_model,
    state: *const u8,
    len: usize,
    out_session: *mut *mut corral_session,
) -> corral_status {
    on_handle!(model, |m| {
        let state = try_slice!(state, len, "state");
        let out_session = try_arg!(out_session);
        let session = m.model.session_from_state(state).map_err(fail)?;
        *out_session = into_handle(corral_session { session });
        Ok(())
    })
}

/// corral_model_session_from_state with the state read from `path` (corral_session_save).
/// Errors: as corral_model_session_from_state, plus CORRAL_ERR_INVALID_UTF8 and
/// CORRAL_ERR_INVALID_ARGUMENT (the file cannot be read).
#[no_mangle]
pub unsafe extern "C" fn corral_model_load_session(
    model: *const corral_model,
    path: *const c_char,
    out_session: *mut *mut corral_session,
) -> corral_status {
    on_handle!(model, |m| {
        let path = try_str!(path);
        let out_session = try_arg!(out_session);
        let session = m.model.load_session(path).map_err(fail)?;
        *out_session = into_handle(corral_session { session });
        Ok(())
    })
}
