//! Streams, results and cancellation.
//!
//! `TokenStream.next()` resolves with the next chunk, or `null` at the end. The core's
//! `Stream::next_chunk` blocks, so each `next()` waits on a blocking-pool thread, never on the
//! event loop. Only one chunk is requested at a time, and the core engine pauses a sequence
//! whose consumer is behind, so nothing is buffered without bound.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use napi_derive::napi;

/// Token counts and timings of one request.
#[napi(object)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    /// Prompt tokens reused from a session or the prefix cache.
    pub cached_tokens: u32,
    pub queue_ms: f64,
    pub time_to_first_token_ms: f64,
    pub prompt_ms: f64,
    pub generation_ms: f64,
    pub prompt_tokens_per_s: f64,
    pub generation_tokens_per_s: f64,
}

impl From<corral::Usage> for Usage {
    fn from(u: corral::Usage) -> Self {
        Usage {
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

/// A token's log-probability under the model (before sampling filters).
#[napi(object)]
pub struct TokenLogprob {
    pub token: i32,
    pub text: String,
    pub logprob: f64,
}

impl From<corral::TokenLogprob> for TokenLogprob {
    fn from(t: corral::TokenLogprob) -> Self {
        TokenLogprob { token: t.token, text: t.text, logprob: f64::from(t.logprob) }
    }
}

/// A generated token with its log-probability and the most likely alternatives.
#[napi(object)]
pub struct Logprob {
    pub token: TokenLogprob,
    pub top: Vec<TokenLogprob>,
}

/// `None` when not requested (the core then reports none).
fn logprobs(list: Vec<corral::Logprob>) -> Option<Vec<Logprob>> {
    (!list.is_empty()).then(|| {
        list.into_iter().map(|l| Logprob { token: l.token.into(), top: l.top.into_iter().map(TokenLogprob::from).collect() }).collect()
    })
}

/// A tool the model called.
#[napi(object)]
pub struct ToolCall {
    /// Unique id; a `tool` message answers the call with `toolCallId` set to it.
    pub id: String,
    pub name: String,
    /// The arguments as JSON text.
    pub arguments: String,
}

/// Streamed progress of a tool call: the first delta of call `index` has its `id` and `name`,
/// later ones more `arguments` text.
#[napi(object)]
pub struct ToolCallDelta {
    pub index: u32,
    pub id: Option<String>,
    pub name: Option<String>,
    pub arguments: String,
}

/// One piece of streamed output; the last one carries `finishReason` and `usage`.
#[napi(object)]
pub struct Chunk {
    pub text: String,
    pub tokens: Vec<i32>,
    /// `stop`, `length`, `tool_calls` or `cancelled`, on the last chunk only.
    pub finish_reason: Option<String>,
    pub usage: Option<Usage>,
    /// One entry per token when the `logprobs` option was set.
    pub logprobs: Option<Vec<Logprob>>,
    /// Tool-call progress in this chunk (the call's text is not in `text`).
    pub tool_calls: Option<Vec<ToolCallDelta>>,
    /// Reasoning in this chunk (`<think>...</think>`), apart from `text`; absent when none.
    pub reasoning: Option<String>,
}

impl From<corral::Chunk> for Chunk {
    fn from(c: corral::Chunk) -> Self {
        let tool_calls = (!c.tool_calls.is_empty()).then(|| {
            c.tool_calls.into_iter().map(|d| ToolCallDelta { index: d.index, id: d.id, name: d.name, arguments: d.arguments }).collect()
        });
        Chunk {
            text: c.text,
            tokens: c.tokens,
            finish_reason: c.finish_reason.map(|r| r.as_str().to_string()),
            usage: c.usage.map(Usage::from),
            logprobs: logprobs(c.logprobs),
            tool_calls,
            reasoning: (!c.reasoning.is_empty()).then_some(c.reasoning),
        }
    }
}

/// A whole generation.
#[napi(object)]
pub struct Completion {
    pub text: String,
    pub tokens: Vec<i32>,
    /// `stop`, `length`, `tool_calls` or `cancelled`.
    pub finish_reason: String,
    pub usage: Usage,
    /// One entry per token when the `logprobs` option was set.
    pub logprobs: Option<Vec<Logprob>>,
    /// The tools the model called (then `finishReason` is `tool_calls`).
    pub tool_calls: Vec<ToolCall>,
    /// The model's reasoning before its answer (`<think>...</think>`); '' when none.
    pub reasoning: String,
}

impl From<corral::Completion> for Completion {
    fn from(c: corral::Completion) -> Self {
        Completion {
            text: c.text,
            tokens: c.tokens,
            finish_reason: c.finish_reason.as_str().to_string(),
            usage: c.usage.into(),
            logprobs: logprobs(c.logprobs),
            tool_calls: c.tool_calls.into_iter().map(|t| ToolCall { id: t.id, name: t.name, arguments: t.arguments }).collect(),
            reasoning: c.reasoning,
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Default)]
struct CancelState {
    cancelled: bool,
    /// Core handles of the work started under this token.
    handles: Vec<corral::CancelHandle>,
}

/// Cancels work started with it (an `AbortSignal` in the TS layer calls `cancel()`).
#[napi]
#[derive(Clone, Default)]
pub struct CancelToken {
    state: Arc<Mutex<CancelState>>,
}

#[napi]
impl CancelToken {
    #[napi(constructor, catch_unwind)]
    pub fn new() -> Self {
        CancelToken::default()
    }

    /// Cancels everything started with this token, now and later. Idempotent.
    #[napi(catch_unwind)]
    pub fn cancel(&self) {
        let mut state = lock(&self.state);
        state.cancelled = true;
        for handle in state.handles.drain(..) {
            handle.cancel();
        }
    }

    #[napi(getter, catch_unwind)]
    pub fn cancelled(&self) -> bool {
        lock(&self.state).cancelled
    }
}

impl CancelToken {
    /// Ties a running generation to this token (cancelling it at once if the token already is).
    pub(crate) fn register(&self, handle: corral::CancelHandle) {
        let mut state = lock(&self.state);
        if state.cancelled {
            handle.cancel();
        } else {
            state.handles.retain(|h| !h.is_cancelled());
            state.handles.push(handle);
        }
    }
}

/// The body of `complete` and `chat` on a model or a session (`target`), with `input` a prompt
/// or messages: `stream` and `whole` are the target's streaming and blocking calls, run on the
/// blocking pool by `complete_blocking`.
pub(crate) async fn completion<T: Send + 'static, I: Send + 'static>(
    target: T,
    input: I,
    options: corral::GenerateOptions,
    cancel: Option<CancelToken>,
    stream: fn(&T, &I, &corral::GenerateOptions) -> corral::Result<corral::Stream>,
    whole: fn(&T, &I, &corral::GenerateOptions) -> corral::Result<corral::Completion>,
) -> napi::Result<Completion> {
    let run = move || complete_blocking(cancel, || stream(&target, &input, &options), || whole(&target, &input, &options));
    crate::blocking(run).await.map(Completion::from)
}

/// Runs a request to completion on the calling (blocking-pool) thread. Without a token the
/// core's non-streaming path is used (one wake-up per request instead of one per token).
fn complete_blocking(
    cancel: Option<CancelToken>,
    stream: impl FnOnce() -> corral::Result<corral::Stream>,
    whole: impl FnOnce() -> corral::Result<corral::Completion>,
) -> corral::Result<corral::Completion> {
    match cancel {
        None => whole(),
        Some(token) => {
            let stream = stream()?;
            token.register(stream.cancel_handle());
            stream.collect_completion()
        }
    }
}

/// The generation methods of `NativeModel` and `NativeSession` (`$class`, over the core model or
/// session in its `inner`): `complete` and `chat`, and their streams `completeStream` and
/// `chatStream`. Chat is alike on both; a prompt (`$prompt`, typed `$prompt_ts` for TypeScript)
/// is completed by `$complete_stream` and `$complete`, the target's streaming and blocking calls.
macro_rules! generation_methods {
    ($class:ident, $prompt:ty, $prompt_ts:tt, $complete_stream:expr, $complete:expr) => {
        #[napi_derive::napi]
        impl $class {
            /// Completes a prompt: text, or with a model token ids used as they are (no BOS added).
            #[napi(catch_unwind)]
            pub async fn complete(
                &self,
                #[napi(ts_arg_type = $prompt_ts)] prompt: $prompt,
                #[napi(ts_arg_type = "object | undefined | null")] options: Option<serde_json::Value>,
                cancel: Option<&$crate::stream::CancelToken>,
            ) -> napi::Result<$crate::stream::Completion> {
                let options = $crate::options::generate_options(options.as_ref())?;
                $crate::stream::completion(self.inner.clone(), prompt, options, cancel.cloned(), $complete_stream, $complete).await
            }

            #[napi(catch_unwind)]
            pub async fn chat(
                &self,
                #[napi(ts_arg_type = "Array<object>")] messages: serde_json::Value,
                #[napi(ts_arg_type = "object | undefined | null")] options: Option<serde_json::Value>,
                cancel: Option<&$crate::stream::CancelToken>,
            ) -> napi::Result<$crate::stream::Completion> {
                let options = $crate::options::generate_options(options.as_ref())?;
                let messages = $crate::chat::messages(&messages)?;
                $crate::stream::completion(
                    self.inner.clone(),
                    messages,
                    options,
                    cancel.cloned(),
                    |t, ms, o| t.chat_stream(ms, o),
                    |t, ms, o| t.chat(ms, o),
                )
                .await
            }

            /// A stream of a prompt's completion; options are checked now, the request starts on
            /// the first `next()`.
            #[napi(catch_unwind)]
            pub fn complete_stream(
                &self,
                #[napi(ts_arg_type = $prompt_ts)] prompt: $prompt,
                #[napi(ts_arg_type = "object | undefined | null")] options: Option<serde_json::Value>,
            ) -> napi::Result<$crate::stream::TokenStream> {
                let options = $crate::options::generate_options(options.as_ref())?;
                Ok($crate::stream::TokenStream::start(self.inner.clone(), prompt, options, $complete_stream))
            }

            #[napi(catch_unwind)]
            pub fn chat_stream(
                &self,
                #[napi(ts_arg_type = "Array<object>")] messages: serde_json::Value,
                #[napi(ts_arg_type = "object | undefined | null")] options: Option<serde_json::Value>,
            ) -> napi::Result<$crate::stream::TokenStream> {
                let options = $crate::options::generate_options(options.as_ref())?;
                let messages = $crate::chat::messages(&messages)?;
                Ok($crate::stream::TokenStream::start(self.inner.clone(), messages, options, |t, ms, o| t.chat_stream(ms, o)))
            }
        }
    };
}
pub(crate) use generation_methods;

type Submit = Box<dyn FnOnce() -> corral::Result<corral::Stream> + Send>;

enum State {
    /// Submitted on the first `next()`, off the event loop (tokenizing and templating a long
    /// prompt is not free).
    NotStarted(Submit),
    Running(corral::Stream),
    Finished,
}

/// A running generation (wrapped by `CompletionStream` in the TS layer).
#[napi]
pub struct TokenStream {
    state: Arc<Mutex<State>>,
    cancel: CancelToken,
    /// Set by `close()`: drop the core stream as soon as no `next()` holds it.
    closed: Arc<std::sync::atomic::AtomicBool>,
}

impl TokenStream {
    /// The body of `completeStream` and `chatStream` on a model or a session (`target`): a stream
    /// that runs `start(target, input, options)` on its first `next()`.
    pub(crate) fn start<T: Send + 'static, I: Send + 'static>(
        target: T,
        input: I,
        options: corral::GenerateOptions,
        start: fn(&T, &I, &corral::GenerateOptions) -> corral::Result<corral::Stream>,
    ) -> Self {
        let submit: Submit = Box::new(move || start(&target, &input, &options));
        TokenStream { state: Arc::new(Mutex::new(State::NotStarted(submit))), cancel: CancelToken::default(), closed: Arc::default() }
    }
}

fn cancelled_before_start() -> Chunk {
    Chunk {
        text: String::new(),
        tokens: Vec::new(),
        finish_reason: Some(corral::FinishReason::Cancelled.as_str().to_string()),
        usage: Some(corral::Usage::default().into()),
        logprobs: None,
        tool_calls: None,
        reasoning: None,
    }
}

/// One step of a stream, on a blocking-pool thread.
fn next_blocking(state: &Mutex<State>, cancel: &CancelToken) -> corral::Result<Option<Chunk>> {
    let mut state = lock(state);
    loop {
        match std::mem::replace(&mut *state, State::Finished) {
            State::NotStarted(submit) => {
                if cancel.cancelled() {
                    return Ok(Some(cancelled_before_start()));
                }
                let stream = submit()?;
                cancel.register(stream.cancel_handle());
                *state = State::Running(stream);
            }
            State::Running(mut stream) => {
                return match stream.next_chunk() {
                    Some(Ok(chunk)) => {
                        if chunk.finish_reason.is_none() {
                            *state = State::Running(stream);
                        }
                        Ok(Some(chunk.into()))
                    }
                    Some(Err(e)) => Err(e),
                    None => Ok(None),
                };
            }
            State::Finished => return Ok(None),
        }
    }
}

#[napi]
impl TokenStream {
    /// The next chunk, or `null` once the stream has ended.
    #[napi(catch_unwind)]
    pub async fn next(&self) -> napi::Result<Option<Chunk>> {
        let state = self.state.clone();
        let cancel = self.cancel.clone();
        let closed = self.closed.clone();
        crate::blocking(move || {
            if closed.load(std::sync::atomic::Ordering::Acquire) {
                *lock(&state) = State::Finished;
                return Ok(None);
            }
            let chunk = next_blocking(&state, &cancel);
            if closed.load(std::sync::atomic::Ordering::Acquire) {
                // Closed while this call waited: release the engine sequence now.
                *lock(&state) = State::Finished;
            }
            chunk
        })
        .await
    }

    /// Stops generating; the stream then ends with a `cancelled` chunk.
    #[napi(catch_unwind)]
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Cancels and releases the generation; later `next()` calls return `null`.
    #[napi(catch_unwind)]
    pub fn close(&self) {
        self.cancel.cancel();
        self.closed.store(true, std::sync::atomic::Ordering::Release);
        // Drop the core stream now unless a `next()` is using it (that call drops it).
        match self.state.try_lock() {
            Ok(mut state) => *state = State::Finished,
            Err(std::sync::TryLockError::Poisoned(state)) => *state.into_inner() = State::Finished,
            Err(std::sync::TryLockError::WouldBlock) => {}
        }
    }
}
