//! Status codes, the per-thread message of the last error, and status names.

use std::cell::RefCell;
use std::ffi::{c_char, CString};

use corral::{Error, ErrorKind};

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
    /// The model cannot do this: rerank without a rank head, generation on an encoder.
    CORRAL_ERR_UNSUPPORTED = 15,
    /// A saved session state is corrupt, truncated, or from another model or configuration.
    CORRAL_ERR_INVALID_STATE = 16,
    /// Loading with these parameters needs more memory than the process has available.
    CORRAL_ERR_INSUFFICIENT_MEMORY = 17,
    /// An RPC worker is down, refused, speaks another protocol version, or was lost while
    /// the model ran (then the model fails every request until it is freed).
    CORRAL_ERR_WORKER_UNAVAILABLE = 18,
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
            ErrorKind::Unsupported => CORRAL_ERR_UNSUPPORTED,
            ErrorKind::InvalidState => CORRAL_ERR_INVALID_STATE,
            ErrorKind::InsufficientMemory => CORRAL_ERR_INSUFFICIENT_MEMORY,
            ErrorKind::WorkerUnavailable => CORRAL_ERR_WORKER_UNAVAILABLE,
            // ErrorKind is non-exhaustive outside core; a kind added there without a status
            // here fails every_error_kind_has_its_own_status_named_by_its_code (below).
            _ => CORRAL_ERR_INTERNAL,
        }
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Keeps `message` as the calling thread's last error and returns `status`.
pub(crate) fn set_error(status: corral_status, message: &str) -> corral_status {
    let message = CString::new(message.replace('\0', "")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = message);
    status
}

/// The status and message of a core error.
pub(crate) fn fail(error: Error) -> corral_status {
    set_error(error.kind().into(), &format!("{} [{}]", error, error.kind().code()))
}

pub(crate) fn invalid(message: String) -> corral_status {
    set_error(corral_status::CORRAL_ERR_INVALID_ARGUMENT, &message)
}

pub(crate) fn null(name: &str) -> corral_status {
    set_error(corral_status::CORRAL_ERR_NULL_ARGUMENT, &format!("argument `{name}` is NULL"))
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
        15 => "unsupported\0",
        16 => "invalid_state\0",
        17 => "insufficient_memory\0",
        18 => "worker_unavailable\0",
        100 => "null_argument\0",
        101 => "invalid_utf8\0",
        102 => "panic\0",
        _ => "unknown\0",
    };
    name.as_ptr().cast()
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
            let name = corral_status_name(status);
            // SAFETY: a static NUL-terminated string.
            let name = unsafe { std::ffi::CStr::from_ptr(name) }.to_str().unwrap();
            assert_eq!(name, kind.code(), "{kind:?}");
        }
    }
}
