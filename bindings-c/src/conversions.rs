//! What goes out to C: finish reasons, usage, results, chunks and stats, converted from core's
//! types, and the functions that release what the caller owns.

use std::ffi::{c_char, CString};

use corral::{EngineStats, FinishReason, Usage};

use crate::boundary::{free_string, guard_void, try_opt_arg};

/// Why a generation ended.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum corral_finish_reason {
    CORRAL_FINISH_NONE = 0,
    CORRAL_FINISH_STOP = 1,
    CORRAL_FINISH_LENGTH = 2,
    CORRAL_FINISH_CANCELLED = 3,
    /// The model called tools: see `tool_calls_json`.
    CORRAL_FINISH_TOOL_CALLS = 4,
}

impl From<FinishReason> for corral_finish_reason {
    fn from(r: FinishReason) -> Self {
        match r {
            FinishReason::Stop => corral_finish_reason::CORRAL_FINISH_STOP,
            FinishReason::Length => corral_finish_reason::CORRAL_FINISH_LENGTH,
            FinishReason::Cancelled => corral_finish_reason::CORRAL_FINISH_CANCELLED,
            FinishReason::ToolCalls => corral_finish_reason::CORRAL_FINISH_TOOL_CALLS,
        }
    }
}

/// Token counts and timings of one request.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct corral_usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub cached_tokens: u32,
    pub queue_ms: f64,
    pub time_to_first_token_ms: f64,
    pub prompt_ms: f64,
    pub generation_ms: f64,
    pub prompt_tokens_per_s: f64,
    pub generation_tokens_per_s: f64,
}

impl From<&Usage> for corral_usage {
    fn from(u: &Usage) -> Self {
        corral_usage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            cached_tokens: u.cached_tokens,
            queue_ms: u.queue_ms,
            time_to_first_token_ms: u.time_to_first_token_ms,
            prompt_ms: u.prompt_ms,
            generation_ms: u.generation_ms,
            prompt_tokens_per_s: u.prompt_tokens_per_s,
            generation_tokens_per_s: u.generation_tokens_per_s,
        }
    }
}

/// A finished generation. `text` is owned by the caller: release with corral_result_free.
#[repr(C)]
#[derive(Debug)]
pub struct corral_result {
    /// NUL-terminated UTF-8.
    pub text: *mut c_char,
    pub text_len: usize,
    pub finish_reason: corral_finish_reason,
    pub usage: corral_usage,
    /// The tools called, as a JSON array in OpenAI's shape; NULL when none. Owned like `text`.
    pub tool_calls_json: *mut c_char,
    /// With `logprobs` requested: a JSON array of OpenAI `logprobs.content` entries
    /// (`{"token", "logprob", "bytes", "top_logprobs"}`); NULL otherwise. Owned like `text`.
    pub logprobs_json: *mut c_char,
    /// Chat: the model's reasoning before its answer (`<think>...</think>`), apart from
    /// `text`; NULL when it gave none. Owned like `text`.
    pub reasoning: *mut c_char,
}

/// One pulled chunk. `text` is borrowed from the stream: valid until the next
/// corral_stream_next or corral_stream_free on that stream.
#[repr(C)]
#[derive(Debug)]
pub struct corral_chunk {
    /// NUL-terminated UTF-8 (may be empty).
    pub text: *const c_char,
    pub text_len: usize,
    /// CORRAL_FINISH_NONE until the last chunk.
    pub finish_reason: corral_finish_reason,
    /// Valid when finish_reason is not CORRAL_FINISH_NONE.
    pub usage: corral_usage,
    /// Tool-call deltas of this chunk as a JSON array in OpenAI's streaming shape
    /// (`[{"index", "id", "type", "function": {"name", "arguments"}}]`); NULL when none.
    /// Borrowed like `text`.
    pub tool_calls_json: *const c_char,
    /// With `logprobs` requested: this chunk's tokens as in corral_result; NULL otherwise.
    pub logprobs_json: *const c_char,
    /// Reasoning in this chunk (see corral_result), NULL when none. Borrowed like `text`.
    pub reasoning: *const c_char,
}

/// Request, token and prefix-cache totals since the model was loaded (corral_model_stats).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct corral_engine_stats {
    pub requests: u64,
    /// Prompt tokens of all requests.
    pub prompt_tokens: u64,
    /// Prompt tokens reused from sessions or the prefix cache (cache hits).
    pub cached_tokens: u64,
    pub generated_tokens: u64,
    /// Generation decodes stopped part-way so that a new request's prompt went first (their
    /// tokens were decoded again right after).
    pub preemptions: u64,
}

impl From<EngineStats> for corral_engine_stats {
    fn from(s: EngineStats) -> Self {
        corral_engine_stats {
            requests: s.requests,
            prompt_tokens: s.prompt_tokens,
            cached_tokens: s.cached_tokens,
            generated_tokens: s.generated_tokens,
            preemptions: s.preemptions,
        }
    }
}

/// A C string of `text` (interior NULs dropped) with its length in bytes.
pub(crate) fn c_string(text: &str) -> CString {
    CString::new(text.replace('\0', "")).unwrap_or_default()
}

/// JSON text of OpenAI-shaped values, or NULL when there are none.
pub(crate) fn json_array_or_null<T>(items: &[T], to_json: impl Fn(&T) -> serde_json::Value) -> Option<CString> {
    (!items.is_empty()).then(|| {
        let array = serde_json::Value::Array(items.iter().map(to_json).collect());
        CString::new(array.to_string()).unwrap_or_default()
    })
}

/// A result owned by the caller (corral_result_free).
pub(crate) fn owned_result(
    text: &str,
    finish_reason: FinishReason,
    usage: corral_usage,
    tool_calls_json: Option<CString>,
    logprobs_json: Option<CString>,
    reasoning: &str,
) -> corral_result {
    let text = c_string(text);
    let into_raw = |json: Option<CString>| json.map_or(std::ptr::null_mut(), CString::into_raw);
    corral_result {
        text_len: text.as_bytes().len(),
        text: text.into_raw(),
        finish_reason: finish_reason.into(),
        usage,
        tool_calls_json: into_raw(tool_calls_json),
        logprobs_json: into_raw(logprobs_json),
        reasoning: into_raw((!reasoning.is_empty()).then(|| c_string(reasoning))),
    }
}

/// Frees a string returned by corral (NULL is ignored).
#[no_mangle]
pub unsafe extern "C" fn corral_string_free(string: *mut c_char) {
    guard_void(|| {
        // SAFETY: NULL or a string corral returned (CString::into_raw), freed once (corral.h).
        unsafe { free_string(string) };
    });
}

/// Frees the text of a result filled by a completion call and resets it (NULL is ignored).
#[no_mangle]
pub unsafe extern "C" fn corral_result_free(result: *mut corral_result) {
    guard_void(|| {
        // A result filled by corral (or zeroed by the caller).
        if let Some(r) = try_opt_arg!(result) {
            for owned in [&mut r.text, &mut r.tool_calls_json, &mut r.logprobs_json, &mut r.reasoning] {
                // SAFETY: NULL or a string of this result, allocated by CString::into_raw;
                // reset to NULL right after, so it is never freed twice.
                unsafe { free_string(*owned) };
                *owned = std::ptr::null_mut();
            }
            r.text_len = 0;
        }
    });
}
