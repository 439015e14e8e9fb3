//! The `corral_session` handle: a conversation keeping its KV cache between calls.

use std::ffi::{c_char, c_void};

use corral::Session;

use crate::boundary::{free_handle, guard, guard_void, into_handle, try_mut, try_ref, try_str};
use crate::conversions::corral_result;
use crate::error::{corral_status, fail};
use crate::model::corral_model;
use crate::params::{
    corral_chunk_callback, corral_generate_params, corral_message, corral_prompt, messages, prompt as read_prompt, PromptInput,
};
use crate::stream::{corral_stream, generate, generate_stream, Target};

/// A conversation keeping its KV cache between calls. Internally synchronised: calls from
/// several threads are safe (they run as separate requests).
pub struct corral_session {
    session: Session,
}

/// Creates a session on `model`. On CORRAL_OK `*out_session` is owned by the caller
/// (corral_session_free). Errors: CORRAL_ERR_NULL_ARGUMENT, CORRAL_ERR_CLOSED. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn corral_model_session(model: *const corral_model, out_session: *mut *mut corral_session) -> corral_status {
    guard(|| {
        let m = try_ref!(model);
        let out_session = try_mut!(out_session);
        let session = m.model.session().map_err(fail)?;
        *out_session = into_handle(corral_session { session });
        Ok(())
    })
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
    guard(|| {
        let s = try_ref!(session);
        // SAFETY: NULL or a valid corral_prompt (this function's contract).
        let prompt = unsafe { read_prompt(prompt) }?;
        // SAFETY: params and out_result are NULL or valid (this function's contract).
        unsafe { generate(Target::Session(&s.session), prompt, params, callback, user_data, out_result) }
    })
}

/// corral_model_generate_stream on a session.
#[no_mangle]
pub unsafe extern "C" fn corral_session_generate_stream(
    session: *const corral_session,
    prompt: *const corral_prompt,
    params: *const corral_generate_params,
    out_stream: *mut *mut corral_stream,
) -> corral_status {
    guard(|| {
        let s = try_ref!(session);
        // SAFETY: NULL or a valid corral_prompt (this function's contract).
        let prompt = unsafe { read_prompt(prompt) }?;
        // SAFETY: params and out_stream are NULL or valid (this function's contract).
        unsafe { generate_stream(Target::Session(&s.session), prompt, params, out_stream) }
    })
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
    guard(|| {
        let s = try_ref!(session);
        let prompt = try_str!(prompt);
        // SAFETY: params and out_result are NULL or valid (this function's contract).
        unsafe { generate(Target::Session(&s.session), PromptInput::Text(prompt), params, callback, user_data, out_result) }
    })
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
    guard(|| {
        let s = try_ref!(session);
        // SAFETY: an array of n_messages messages (this function's contract).
        let msgs = unsafe { messages(messages_ptr, n_messages) }?;
        // SAFETY: params and out_result are NULL or valid (this function's contract).
        unsafe { generate(Target::Session(&s.session), PromptInput::Messages(msgs), params, callback, user_data, out_result) }
    })
}
