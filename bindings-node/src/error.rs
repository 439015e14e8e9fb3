//! The one mapping from corral errors to JavaScript errors.
//!
//! napi-rs sets a JS error's `code` from its `Status`, and Promise rejections of async
//! functions can only carry napi's own statuses, so the stable core code travels as a message
//! prefix instead: `[model_not_found] model file not found: ...`. The TS layer
//! (src-ts/errors.ts) strips it, sets `err.code` and picks the error class. Every error this
//! module throws or rejects with goes through `to_napi`.

use corral::ErrorKind;
use napi::Status;

/// A corral error as a JS error: `[code] message: cause: cause...`.
pub(crate) fn to_napi(error: corral::Error) -> napi::Error {
    let mut message = error.message().to_string();
    // Keep the cause chain (e.g. the io::Error behind a missing file) in the message.
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    let status = match error.kind() {
        ErrorKind::InvalidArgument => Status::InvalidArg,
        ErrorKind::Cancelled => Status::Cancelled,
        _ => Status::GenericFailure,
    };
    napi::Error::new(status, format!("[{}] {message}", error.kind().code()))
}

pub(crate) fn invalid_argument(message: impl Into<String>) -> napi::Error {
    to_napi(corral::Error::new(ErrorKind::InvalidArgument, message))
}

pub(crate) fn internal(message: impl Into<String>) -> napi::Error {
    to_napi(corral::Error::new(ErrorKind::Internal, message))
}

/// `corral::Result` into `napi::Result`.
pub(crate) trait OrThrow<T> {
    fn or_throw(self) -> napi::Result<T>;
}

impl<T> OrThrow<T> for corral::Result<T> {
    fn or_throw(self) -> napi::Result<T> {
        self.map_err(to_napi)
    }
}

/// Every stable error code, in declaration order (the TS layer builds its classes from it).
#[napi_derive::napi(catch_unwind)]
pub fn error_codes() -> Vec<String> {
    ErrorKind::ALL.iter().map(|kind| kind.code().to_string()).collect()
}
