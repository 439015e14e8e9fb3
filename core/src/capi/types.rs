//! Plain C types of the ABI: status codes, params and result structs.

use std::ffi::{c_char, c_void};

use crate::ErrorKind;

/// Status of every fallible corral function. Values are stable and never reused.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum corral_status {
    CORRAL_OK = 0,
    CORRAL_ERR_MODEL_NOT_FOUND = 1,
    CORRAL_ERR_INVALID_MODEL = 2,
    CORRAL_ERR_UNSUPPORTED_ARCHITECTURE = 3,
    CORRAL_ERR_INVALID_ARGUMENT = 4,
    CORRAL_ERR_CONTEXT_OVERFLOW = 5,
    CORRAL_ERR_CANCELLED = 6,
    CORRAL_ERR_DECODE_FAILED = 7,
    CORRAL_ERR_NO_CHAT_TEMPLATE = 8,
    CORRAL_ERR_TEMPLATE = 9,
    CORRAL_ERR_CLOSED = 10,
    CORRAL_ERR_BUSY = 11,
    CORRAL_ERR_DEADLINE_EXCEEDED = 12,
    CORRAL_ERR_INVALID_GRAMMAR = 13,
    CORRAL_ERR_INTERNAL = 14,
    /// A required pointer argument was NULL.
    CORRAL_ERR_NULL_ARGUMENT = 100,
    /// A string argument was not valid UTF-8.
    CORRAL_ERR_INVALID_UTF8 = 101,
    /// corral hit a bug (a Rust panic); the process is intact.
    CORRAL_ERR_PANIC = 102,
}

impl From<ErrorKind> for corral_status {
    fn from(kind: ErrorKind) -> Self {
        use corral_status::*;
        match kind {
            ErrorKind::ModelNotFound => CORRAL_ERR_MODEL_NOT_FOUND,
            ErrorKind::InvalidModel => CORRAL_ERR_INVALID_MODEL,
            ErrorKind::UnsupportedArchitecture => CORRAL_ERR_UNSUPPORTED_ARCHITECTURE,
            ErrorKind::InvalidArgument => CORRAL_ERR_INVALID_ARGUMENT,
            ErrorKind::ContextOverflow => CORRAL_ERR_CONTEXT_OVERFLOW,
            ErrorKind::Cancelled => CORRAL_ERR_CANCELLED,
            ErrorKind::DecodeFailed => CORRAL_ERR_DECODE_FAILED,
            ErrorKind::NoChatTemplate => CORRAL_ERR_NO_CHAT_TEMPLATE,
            ErrorKind::TemplateError => CORRAL_ERR_TEMPLATE,
            ErrorKind::Closed => CORRAL_ERR_CLOSED,
            ErrorKind::Busy => CORRAL_ERR_BUSY,
            ErrorKind::DeadlineExceeded => CORRAL_ERR_DEADLINE_EXCEEDED,
            ErrorKind::InvalidGrammar => CORRAL_ERR_INVALID_GRAMMAR,
            ErrorKind::Internal => CORRAL_ERR_INTERNAL,
        }
    }
}

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

impl From<crate::FinishReason> for corral_finish_reason {
    fn from(r: crate::FinishReason) -> Self {
        match r {
            crate::FinishReason::Stop => corral_finish_reason::CORRAL_FINISH_STOP,
            crate::FinishReason::Length => corral_finish_reason::CORRAL_FINISH_LENGTH,
            crate::FinishReason::Cancelled => corral_finish_reason::CORRAL_FINISH_CANCELLED,
            crate::FinishReason::ToolCalls => corral_finish_reason::CORRAL_FINISH_TOOL_CALLS,
        }
    }
}

/// Load progress in [0, 1]. Return false to cancel loading (load then fails with
/// CORRAL_ERR_CANCELLED). Called on the loading thread.
pub type corral_progress_callback = Option<unsafe extern "C" fn(progress: f32, user_data: *mut c_void) -> bool>;

/// Receives streamed text (UTF-8, not NUL-terminated, `len` bytes, valid only during the call).
/// Return false to stop generation (the result's finish reason is then CORRAL_FINISH_CANCELLED).
pub type corral_chunk_callback =
    Option<unsafe extern "C" fn(text: *const c_char, len: usize, user_data: *mut c_void) -> bool>;

/// A log line: level 1 = debug, 2 = info, 3 = warn, 4 = error; `source` is "llama.cpp" or
/// "corral". May be called from any thread; strings valid only during the call.
pub type corral_log_callback =
    Option<unsafe extern "C" fn(level: i32, source: *const c_char, message: *const c_char, user_data: *mut c_void)>;

/// Options for corral_model_load. Start from corral_model_default_params().
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct corral_model_params {
    /// KV cache size in tokens shared by all requests; 0 = model default (trained, max 4096).
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
}

/// One chat message (UTF-8, NUL-terminated; copied by the call). Conversations with tool calls
/// and tool results go through the `_json` functions (OpenAI-shaped messages as JSON text).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct corral_message {
    pub role: *const c_char,
    pub content: *const c_char,
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

impl From<&crate::Usage> for corral_usage {
    fn from(u: &crate::Usage) -> Self {
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

impl From<crate::EngineStats> for corral_engine_stats {
    fn from(s: crate::EngineStats) -> Self {
        corral_engine_stats {
            requests: s.requests,
            prompt_tokens: s.prompt_tokens,
            cached_tokens: s.cached_tokens,
            generated_tokens: s.generated_tokens,
            preemptions: s.preemptions,
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The C status of every error kind is distinct, and `corral_status_name` gives the kind's
    /// code: the C table cannot drift from core's list.
    #[test]
    fn every_error_kind_has_its_own_status_named_by_its_code() {
        let mut seen = std::collections::HashSet::new();
        for kind in ErrorKind::ALL {
            let status = corral_status::from(kind) as i32;
            assert!(seen.insert(status), "{kind:?} shares status {status}");
            let name = crate::capi::ffi::corral_status_name(status);
            // SAFETY: a static NUL-terminated string.
            let name = unsafe { std::ffi::CStr::from_ptr(name) }.to_str().unwrap();
            assert_eq!(name, kind.code(), "{kind:?}");
        }
    }
}
