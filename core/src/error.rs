//! The one error type of corral. Every binding maps [`ErrorKind`] once, in its own `error.rs`.

use std::fmt;

/// Stable error categories. Their [`ErrorKind::code`] strings are part of the public API of
/// every binding (C status codes, Python exception classes, JS `err.code`): never rename or
/// reuse one; add new ones at the end.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The model path does not exist (or is not a regular file).
    ModelNotFound,
    /// The file is not a usable GGUF model: bad magic, unsupported version, truncated, corrupt.
    InvalidModel,
    /// A well-formed GGUF whose architecture this build of llama.cpp cannot run.
    UnsupportedArchitecture,
    /// A caller-supplied value is out of range or malformed.
    InvalidArgument,
    /// The prompt (or prompt plus requested output) does not fit in the context window,
    /// or the shared KV cache has no room left.
    ContextOverflow,
    /// The operation was cancelled by the caller (cancel flag, progress callback, abort signal).
    Cancelled,
    /// llama.cpp failed to evaluate a batch.
    DecodeFailed,
    /// Chat was requested but the model has no chat template and none was given.
    NoChatTemplate,
    /// The chat template failed to parse or render, or called `raise_exception`.
    TemplateError,
    /// The model (or session) was closed and can no longer be used.
    Closed,
    /// The request queue is full.
    Busy,
    /// The request ran past its deadline.
    DeadlineExceeded,
    /// A grammar or JSON schema could not be compiled.
    InvalidGrammar,
    /// A bug or an unexpected failure inside corral or llama.cpp.
    Internal,
    /// The model cannot do what was asked: `rerank` on a model without a rank head,
    /// generation on an embedding-only model.
    Unsupported,
    /// A saved session state is corrupt or truncated, or was saved from another model or
    /// configuration (the message says what differs).
    InvalidState,
    /// Loading with these options needs more memory than this process has available (its
    /// cgroup's limit, else the machine's available memory): refused before allocating.
    InsufficientMemory,
    /// An RPC worker of the model cannot be used: unreachable or refusing at load, speaking
    /// another protocol version, or lost while the model runs (then every request on that
    /// model fails with this kind until it is closed and loaded again).
    WorkerUnavailable,
}

impl ErrorKind {
    /// The stable machine-readable code, e.g. `"model_not_found"`.
    pub const fn code(self) -> &'static str {
        match self {
            ErrorKind::ModelNotFound => "model_not_found",
            ErrorKind::InvalidModel => "invalid_model",
            ErrorKind::UnsupportedArchitecture => "unsupported_architecture",
            ErrorKind::InvalidArgument => "invalid_argument",
            ErrorKind::ContextOverflow => "context_overflow",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::DecodeFailed => "decode_failed",
            ErrorKind::NoChatTemplate => "no_chat_template",
            ErrorKind::TemplateError => "template_error",
            ErrorKind::Closed => "closed",
            ErrorKind::Busy => "busy",
            ErrorKind::DeadlineExceeded => "deadline_exceeded",
            ErrorKind::InvalidGrammar => "invalid_grammar",
            ErrorKind::Internal => "internal",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::InvalidState => "invalid_state",
            ErrorKind::InsufficientMemory => "insufficient_memory",
            ErrorKind::WorkerUnavailable => "worker_unavailable",
        }
    }

    /// Every kind, in declaration order (bindings use this to build their tables).
    pub const ALL: [ErrorKind; 18] = [
        ErrorKind::ModelNotFound,
        ErrorKind::InvalidModel,
        ErrorKind::UnsupportedArchitecture,
        ErrorKind::InvalidArgument,
        ErrorKind::ContextOverflow,
        ErrorKind::Cancelled,
        ErrorKind::DecodeFailed,
        ErrorKind::NoChatTemplate,
        ErrorKind::TemplateError,
        ErrorKind::Closed,
        ErrorKind::Busy,
        ErrorKind::DeadlineExceeded,
        ErrorKind::InvalidGrammar,
        ErrorKind::Internal,
        ErrorKind::Unsupported,
        ErrorKind::InvalidState,
        ErrorKind::InsufficientMemory,
        ErrorKind::WorkerUnavailable,
    ];
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A corral error: a stable [`ErrorKind`], a human-readable message and an optional cause.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    kind: ErrorKind,
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    /// An `InvalidArgument` whose value has the wrong type (not a bad value of the right one):
    /// Python raises those as `TypeError`s too.
    wrong_type: bool,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into(), source: None, wrong_type: false }
    }

    pub fn with_source(kind: ErrorKind, message: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Error { kind, message: message.into(), source: Some(Box::new(source)), wrong_type: false }
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// An `InvalidArgument` error for a value of the wrong type: text where a number belongs,
    /// a list where an object does. Its kind and code stay `invalid_argument`.
    pub fn invalid_type(message: impl Into<String>) -> Self {
        Error { wrong_type: true, ..Error::new(ErrorKind::InvalidArgument, message) }
    }

    /// Whether this is an [`Error::invalid_type`] error (a binding may raise its type error).
    pub fn is_wrong_type(&self) -> bool {
        self.wrong_type
    }

    pub(crate) fn invalid_argument(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidArgument, message)
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Internal, message)
    }

    pub(crate) fn closed() -> Self {
        Error::new(ErrorKind::Closed, "the model has been closed")
    }
}

impl Clone for Error {
    /// Clones kind and message; the cause chain is flattened into the message.
    fn clone(&self) -> Self {
        let mut message = self.message.clone();
        if let Some(source) = &self.source {
            message = format!("{message}: {source}");
        }
        Error { kind: self.kind, message, source: None, wrong_type: self.wrong_type }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
