//! Generation: the shared bodies of the blocking and streaming entry points, and the
//! `corral_stream` handle pulled with corral_stream_next.

use std::ffi::{c_void, CString};
use std::sync::Mutex;

use corral::{CancelHandle, GenerateOptions, Logprob, Stream, ToolCall, ToolCallDelta};

use crate::boundary::{fill_out, free_handle, guard_void, into_handle, on_handle, try_arg, try_opt_arg};
use crate::conversions::{c_string, corral_chunk, corral_finish_reason, corral_result, corral_usage, json_array_or_null, owned_result};
use crate::error::corral_status::*;
use crate::error::{corral_status, fail, set_error};
use crate::model::corral_model;
use crate::params::{corral_chunk_callback, corral_generate_params, generate_options, PromptArg, PromptInput};
use crate::session::corral_session;

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
    reasoning: Option<CString>,
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
            reasoning: ptr(&self.reasoning),
        }
    }
}

fn into_stream_handle(stream: Stream) -> *mut corral_stream {
    let cancel = stream.cancel_handle();
    into_handle(corral_stream {
        stream: Mutex::new(stream),
        cancel,
        current: Mutex::new(BorrowedChunk::default()),
        finished: Mutex::new(None),
    })
}

/// What the generation entry points run on: a model or a session (`corral_model_generate` and
/// `corral_session_generate` share one body, `generate`).
pub(crate) trait Generator {
    /// The handle argument's name, for errors.
    const ARG: &'static str;
    fn start(&self, prompt: corral::Prompt<'_>, options: &GenerateOptions) -> corral::Result<Stream>;
}

impl Generator for corral_model {
    const ARG: &'static str = "model";
    fn start(&self, prompt: corral::Prompt<'_>, options: &GenerateOptions) -> corral::Result<Stream> {
        self.model.generate_stream(prompt, options)
    }
}

impl Generator for corral_session {
    const ARG: &'static str = "session";
    fn start(&self, prompt: corral::Prompt<'_>, options: &GenerateOptions) -> corral::Result<Stream> {
        self.session.generate_stream(prompt, options)
    }
}

/// The options from `params`, and the request started on `handle`.
///
/// # Safety
/// `params` is NULL or valid (the entry point's contract).
unsafe fn start<H: Generator>(
    handle: &H,
    prompt: &PromptInput<'_>,
    params: *const corral_generate_params,
) -> Result<Stream, corral_status> {
    // SAFETY: the caller's guarantee, passed on.
    let options = unsafe { generate_options(params) }?;
    handle.start(prompt.as_core(), &options).map_err(fail)
}

/// The body of every blocking generation function, on a model or a session: the handle, the
/// prompt, the options, the request, the run.
///
/// # Safety
/// `handle`, `prompt`'s pointers, `params` and `out_result` are NULL or valid (the entry point's
/// contract).
pub(crate) unsafe fn generate<H: Generator>(
    handle: *const H,
    prompt: PromptArg,
    params: *const corral_generate_params,
    callback: corral_chunk_callback,
    user_data: *mut c_void,
    out_result: *mut corral_result,
) -> corral_status {
    on_handle!(handle, H::ARG, |handle| {
        // SAFETY: the caller's guarantee, passed on.
        let prompt = unsafe { prompt.read() }?;
        // SAFETY: the caller's guarantee, passed on.
        let stream = unsafe { start(handle, &prompt, params) }?;
        run_blocking(stream, callback, user_data, try_opt_arg!(out_result))
    })
}

/// The body of every function that starts a stream to pull, on a model or a session.
///
/// # Safety
/// `handle`, `prompt`'s pointers, `params` and `out_stream` are NULL or valid (the entry point's
/// contract).
pub(crate) unsafe fn generate_stream<H: Generator>(
    handle: *const H,
    prompt: PromptArg,
    params: *const corral_generate_params,
    out_stream: *mut *mut corral_stream,
) -> corral_status {
    on_handle!(handle, H::ARG, |handle| {
        // SAFETY: the caller's guarantee, passed on.
        let prompt = unsafe { prompt.read() }?;
        let out_stream = try_arg!(out_stream);
        // SAFETY: the caller's guarantee, passed on.
        *out_stream = into_stream_handle(unsafe { start(handle, &prompt, params) }?);
        Ok(())
    })
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
    let mut reasoning = String::new();
    let mut logprobs = Vec::new();
    while let Some(chunk) = stream.next_chunk() {
        let chunk = chunk.map_err(fail)?;
        if let Some(callback) = callback {
            if !chunk.text.is_empty() && !stream_cancelled(&stream) {
                // SAFETY: a valid function pointer supplied by the caller; the text is valid for
                // the call, as corral_chunk_callback documents.
                let go_on = unsafe { callback(chunk.text.as_ptr().cast(), chunk.text.len(), user_data) };
                if !go_on {
                    stream.cancel();
                }
            }
        }
        text.push_str(&chunk.text);
        reasoning.push_str(&chunk.reasoning);
        logprobs.extend(chunk.logprobs);
        if let Some(reason) = chunk.finish_reason {
            if let Some(out) = out_result {
                let usage = chunk.usage.as_ref().map(corral_usage::from).unwrap_or_default();
                *out = owned_result(
                    &text,
                    reason,
                    usage,
                    json_array_or_null(stream.tool_calls(), ToolCall::to_openai),
                    json_array_or_null(&logprobs, Logprob::to_openai),
                    &reasoning,
                );
            }
            return Ok(());
        }
    }
    Err(set_error(CORRAL_ERR_INTERNAL, "the stream ended without a final chunk"))
}

fn stream_cancelled(stream: &Stream) -> bool {
    stream.cancel_handle().is_cancelled()
}

/// Waits for the next chunk. On CORRAL_OK `*out_chunk` is filled; its text is borrowed until
/// the next call on this stream. The last chunk has finish_reason != CORRAL_FINISH_NONE and
/// carries usage; calls after it return that final state again with empty text. Errors:
/// CORRAL_ERR_NULL_ARGUMENT, generation errors (CORRAL_ERR_CLOSED, CORRAL_ERR_DEADLINE_EXCEEDED,
/// CORRAL_ERR_CONTEXT_OVERFLOW, CORRAL_ERR_DECODE_FAILED). One thread at a time per stream.
#[no_mangle]
pub unsafe extern "C" fn corral_stream_next(stream: *const corral_stream, out_chunk: *mut corral_chunk) -> corral_status {
    fill_out!(stream, out_chunk, |s| {
        let mut current = s.current.lock().unwrap_or_else(|e| e.into_inner());
        let mut finished = s.finished.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((finish_reason, usage)) = *finished {
            *current = BorrowedChunk::default();
            return Ok(current.to_c(finish_reason, usage));
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
            text: c_string(&chunk.text),
            tool_calls_json: json_array_or_null(&chunk.tool_calls, ToolCallDelta::to_openai),
            logprobs_json: json_array_or_null(&chunk.logprobs, Logprob::to_openai),
            reasoning: (!chunk.reasoning.is_empty()).then(|| c_string(&chunk.reasoning)),
        };
        Ok(current.to_c(finish_reason, usage))
    })
}

/// Asks the generation to stop; the stream then ends with CORRAL_FINISH_CANCELLED. Safe from
/// any thread, also while another thread waits in corral_stream_next; idempotent; NULL ignored.
#[no_mangle]
pub unsafe extern "C" fn corral_stream_cancel(stream: *const corral_stream) {
    guard_void(|| {
        // NULL or a live stream.
        if let Some(s) = try_opt_arg!(stream) {
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
        // SAFETY: NULL or a stream made by a *_stream function (into_handle), freed once.
        if let Some(stream) = unsafe { free_handle(stream) } {
            // Waits for the engine to let go of the request, so that what follows (stats, the
            // next request on a session) never sees it still running.
            let stream = stream.stream.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner());
            stream.close();
        }
    });
}
