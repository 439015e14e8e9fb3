//! Streams and results: `Stream` (an iterator that waits with the GIL released), `Chunk`,
//! `Completion`, `Usage`, and their OpenAI-shaped dicts.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use pyo3::prelude::*;

use corral::{CancelHandle, FinishReason, Poll};

use crate::error::OrRaise;
use crate::fields::pymethods_with_fields;

/// How long `__next__` waits for the engine before checking for Ctrl-C.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Whether a generation answers a chat or completes raw text: decides the OpenAI shape.
pub use corral::openai::ResponseKind as Kind;

/// What the OpenAI shapes need besides the output (kind, id, time, model): shared by every
/// chunk of one stream.
pub type Origin = Arc<corral::openai::ResponseMeta>;

pub fn origin(kind: Kind, model: &str) -> Origin {
    Arc::new(corral::openai::ResponseMeta::new(kind, model))
}

/// Starts a generation on `target` (a model or a session) with the GIL released and wraps it in
/// a `Stream` whose OpenAI shapes name `model`.
pub fn start<T: Sync>(
    py: Python<'_>,
    target: &T,
    model: &str,
    kind: Kind,
    logprobs: bool,
    start: impl Send + FnOnce(&T) -> corral::Result<corral::Stream>,
) -> PyResult<PyStream> {
    let stream = py.detach(|| start(target)).or_raise(py)?;
    Ok(PyStream::new(stream, origin(kind, model), logprobs))
}

/// `#[pymethods] impl $ty { ... }` with the methods `Model` and `Session` share added: the
/// generation calls (blocking and streaming, on a prompt or a conversation) and the context
/// manager. One macro rather than a second `#[pymethods]` block, which PyO3 allows only with
/// its `multiple-pymethods` feature. The type provides `prompt_stream` (what a prompt may be
/// differs) and `close`; `$target` is its core model or session, `$name` the model's name.
macro_rules! pymethods_with_generation {
    (impl $ty:ident ($target:ident, $name:ident) { $($own:tt)* }) => {
        #[pymethods]
        impl $ty {
            $($own)*

            /// Completes a prompt (a str; on a Model also a list of token ids used as given).
            #[pyo3(signature = (prompt, **options), text_signature = "($self, prompt, *, max_tokens=None, temperature=None, top_k=None, top_p=None, min_p=None, repeat_penalty=None, repeat_last_n=None, frequency_penalty=None, presence_penalty=None, seed=None, stop=None, timeout=None, ignore_eos=None, parse_special=None, grammar=None, response_format=None, logprobs=None, top_logprobs=None, tools=None, tool_choice=None, template=None, reasoning_budget=None, adapters=None)")]
            fn complete(&self, py: Python<'_>, prompt: &Bound<'_, PyAny>, options: Option<&Bound<'_, PyDict>>) -> PyResult<$crate::stream::PyCompletion> {
                self.prompt_stream(py, prompt, options)?.collect_completion(py)
            }

            /// Streams the completion of a prompt: iterate the returned Stream for Chunks.
            #[pyo3(signature = (prompt, **options), text_signature = "($self, prompt, *, max_tokens=None, temperature=None, top_k=None, top_p=None, min_p=None, repeat_penalty=None, repeat_last_n=None, frequency_penalty=None, presence_penalty=None, seed=None, stop=None, timeout=None, ignore_eos=None, parse_special=None, grammar=None, response_format=None, logprobs=None, top_logprobs=None, tools=None, tool_choice=None, template=None, reasoning_budget=None, adapters=None)")]
            fn complete_stream(&self, py: Python<'_>, prompt: &Bound<'_, PyAny>, options: Option<&Bound<'_, PyDict>>) -> PyResult<$crate::stream::PyStream> {
                self.prompt_stream(py, prompt, options)
            }

            /// The assistant's reply to a conversation (`[{"role": ..., "content": ...}, ...]`).
            #[pyo3(signature = (messages, **options), text_signature = "($self, messages, *, max_tokens=None, temperature=None, top_k=None, top_p=None, min_p=None, repeat_penalty=None, repeat_last_n=None, frequency_penalty=None, presence_penalty=None, seed=None, stop=None, timeout=None, ignore_eos=None, parse_special=None, grammar=None, response_format=None, logprobs=None, top_logprobs=None, tools=None, tool_choice=None, template=None, reasoning_budget=None, adapters=None)")]
            fn chat(&self, py: Python<'_>, messages: &Bound<'_, PyAny>, options: Option<&Bound<'_, PyDict>>) -> PyResult<$crate::stream::PyCompletion> {
                self.chat_stream(py, messages, options)?.collect_completion(py)
            }

            /// Streams the assistant's reply to a conversation.
            #[pyo3(signature = (messages, **options), text_signature = "($self, messages, *, max_tokens=None, temperature=None, top_k=None, top_p=None, min_p=None, repeat_penalty=None, repeat_last_n=None, frequency_penalty=None, presence_penalty=None, seed=None, stop=None, timeout=None, ignore_eos=None, parse_special=None, grammar=None, response_format=None, logprobs=None, top_logprobs=None, tools=None, tool_choice=None, template=None, reasoning_budget=None, adapters=None)")]
            fn chat_stream(&self, py: Python<'_>, messages: &Bound<'_, PyAny>, options: Option<&Bound<'_, PyDict>>) -> PyResult<$crate::stream::PyStream> {
                let messages = $crate::chat::messages(py, messages)?;
                let options = $crate::options::generate_options(py, options)?;
                let logprobs = options.logprobs.is_some();
                $crate::stream::start(py, &self.$target, &self.$name, $crate::stream::Kind::Chat, logprobs, move |t| t.chat_stream(&messages, &options))
            }

            fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
                slf
            }

            fn __exit__(
                &self,
                py: Python<'_>,
                _exc_type: Option<Bound<'_, PyAny>>,
                _exc_value: Option<Bound<'_, PyAny>>,
                _traceback: Option<Bound<'_, PyAny>>,
            ) -> bool {
                self.close(py);
                false
            }
        }
    };
}
pub(crate) use pymethods_with_generation;

/// A tool the model called.
#[pyclass(module = "corral", name = "ToolCall", frozen)]
#[derive(Clone)]
pub struct PyToolCall(corral::ToolCall);

impl PyToolCall {
    pub fn to_core(&self) -> corral::ToolCall {
        self.0.clone()
    }
}

pymethods_with_fields! {
impl PyToolCall {
    /// Unique id; a `tool` message answers the call with `tool_call_id` set to it.
    id: String,
    name: String,
    /// The arguments as JSON text.
    arguments: String,
}

    /// OpenAI's `{"id", "type": "function", "function": {"name", "arguments"}}` dict.
    fn to_openai<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        crate::json::to_py(py, &self.0.to_openai())
    }

    fn __repr__(&self) -> String {
        format!("ToolCall(id={:?}, name={:?}, arguments={:?})", self.0.id, self.0.name, self.0.arguments)
    }
}

/// Streamed progress of a tool call: the first delta of call `index` has its `id` and `name`,
/// later ones more `arguments` text.
#[pyclass(module = "corral", name = "ToolCallDelta", frozen)]
pub struct PyToolCallDelta(corral::ToolCallDelta);

pymethods_with_fields! {
impl PyToolCallDelta {
    index: u32,
    id: Option<String>,
    name: Option<String>,
    arguments: String,
}

    fn __repr__(&self) -> String {
        format!("ToolCallDelta(index={}, id={:?}, name={:?}, arguments={:?})", self.0.index, self.0.id, self.0.name, self.0.arguments)
    }
}

/// What a `Completion` and a `Chunk` both carry: output text, reasoning, tokens, and logprobs
/// (`None` unless they were requested).
#[derive(Default)]
struct Output {
    text: String,
    reasoning: String,
    tokens: Vec<i32>,
    logprobs: Option<Vec<corral::Logprob>>,
}

impl Output {
    /// The output of one core chunk, taken out of it (its logprobs only if `logprobs`).
    fn take(chunk: &mut corral::Chunk, logprobs: bool) -> Output {
        Output {
            text: std::mem::take(&mut chunk.text),
            reasoning: std::mem::take(&mut chunk.reasoning),
            tokens: std::mem::take(&mut chunk.tokens),
            logprobs: logprobs.then(|| std::mem::take(&mut chunk.logprobs)),
        }
    }

    /// Appends the output of a later chunk.
    fn extend(&mut self, more: Output) {
        self.text.push_str(&more.text);
        self.reasoning.push_str(&more.reasoning);
        self.tokens.extend(more.tokens);
        if let (Some(logprobs), Some(more)) = (&mut self.logprobs, more.logprobs) {
            logprobs.extend(more);
        }
    }
}

/// `#[pymethods] impl $ty { ... }` with the getters of its `output: Output` (the attributes
/// `Completion` and `Chunk` share), then the type's own methods. One macro rather than a
/// second `#[pymethods]` block, which PyO3 allows only with its `multiple-pymethods` feature.
macro_rules! pymethods_with_output {
    (impl $ty:ident { $($own:tt)* }) => {
        #[pymethods]
        impl $ty {
            #[getter]
            fn text(&self) -> &str {
                &self.output.text
            }

            /// The model's reasoning before its answer (`<think>...</think>`), apart from `text`; "" when
            /// none.
            #[getter]
            fn reasoning(&self) -> &str {
                &self.output.reasoning
            }

            #[getter]
            fn tokens(&self) -> &[i32] {
                &self.output.tokens
            }

            /// With `logprobs=True`: one OpenAI entry per generated token (of this chunk, on a
            /// Chunk), `{"token", "logprob", "bytes", "top_logprobs": [...]}`; else `None`.
            #[getter]
            fn logprobs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
                match &self.output.logprobs {
                    None => Ok(py.None().into_bound(py)),
                    Some(entries) => {
                        crate::json::to_py(py, &serde_json::Value::Array(entries.iter().map(corral::Logprob::to_openai).collect()))
                    }
                }
            }

            $($own)*
        }
    };
}

/// Token counts and timings of one request.
#[pyclass(module = "corral", name = "Usage", frozen)]
pub struct PyUsage(corral::Usage);

impl From<corral::Usage> for PyUsage {
    fn from(usage: corral::Usage) -> Self {
        PyUsage(usage)
    }
}

pymethods_with_fields! {
impl PyUsage, to_dict {
    prompt_tokens: u32,
    completion_tokens: u32,
    cached_tokens: u32,
    queue_ms: f64,
    time_to_first_token_ms: f64,
    prompt_ms: f64,
    generation_ms: f64,
    prompt_tokens_per_s: f64,
    generation_tokens_per_s: f64,
}

    fn __repr__(&self) -> String {
        format!(
            "Usage(prompt_tokens={}, completion_tokens={}, cached_tokens={}, time_to_first_token_ms={:.1}, \
             prompt_tokens_per_s={:.1}, generation_tokens_per_s={:.1})",
            self.0.prompt_tokens,
            self.0.completion_tokens,
            self.0.cached_tokens,
            self.0.time_to_first_token_ms,
            self.0.prompt_tokens_per_s,
            self.0.generation_tokens_per_s
        )
    }
}

impl PyUsage {
    fn to_openai(&self) -> serde_json::Value {
        corral::openai::usage(self.0.prompt_tokens, self.0.completion_tokens, self.0.cached_tokens)
    }
}

/// A whole generation.
#[pyclass(module = "corral", name = "Completion", frozen)]
pub struct PyCompletion {
    output: Output,
    reason: FinishReason,
    #[pyo3(get)]
    usage: Py<PyUsage>,
    origin: Origin,
    tool_calls: Vec<PyToolCall>,
}

impl PyCompletion {
    fn core_tool_calls(&self) -> Vec<corral::ToolCall> {
        self.tool_calls.iter().map(PyToolCall::to_core).collect()
    }
}

pymethods_with_output! {
impl PyCompletion {
    /// `"stop"` (end of generation or a stop string), `"length"`, `"tool_calls"` or `"cancelled"`.
    #[getter]
    fn finish_reason(&self) -> &'static str {
        self.reason.as_str()
    }

    /// The tools the model called (empty unless the request offered `tools`).
    #[getter]
    fn tool_calls(&self) -> Vec<PyToolCall> {
        self.tool_calls.clone()
    }

    /// The assistant message to append to the conversation for the next turn (OpenAI shape).
    fn message<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        crate::json::to_py(py, &corral::openai::assistant_message(&self.output.text, &self.core_tool_calls(), &self.output.reasoning))
    }

    /// An OpenAI `ChatCompletion` dict (from chat calls) or `Completion` dict (from complete calls).
    fn to_openai<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let usage = self.usage.get().to_openai();
        let logprobs = corral::openai::logprobs(self.output.logprobs.as_deref());
        let calls = self.core_tool_calls();
        let output = corral::openai::Output { text: &self.output.text, reasoning: &self.output.reasoning, tool_calls: &calls };
        let response = corral::openai::completion(&self.origin, output, self.reason, usage, logprobs);
        crate::json::to_py(py, &response)
    }

    fn __repr__(&self) -> String {
        format!("Completion(text={:?}, finish_reason={:?}, usage={})", self.output.text, self.reason.as_str(), self.usage.get().__repr__())
    }
}
}

/// One piece of streamed output. The last chunk of a stream carries `finish_reason` and `usage`.
#[pyclass(module = "corral", name = "Chunk", frozen)]
pub struct PyChunk {
    output: Output,
    reason: Option<FinishReason>,
    #[pyo3(get)]
    usage: Option<Py<PyUsage>>,
    origin: Origin,
    /// The first chunk of a chat stream announces the assistant role (OpenAI's delta).
    first: bool,
    tool_calls: Vec<corral::ToolCallDelta>,
}

pymethods_with_output! {
impl PyChunk {
    /// `None` until the last chunk, then `"stop"`, `"length"`, `"tool_calls"` or `"cancelled"`.
    #[getter]
    fn finish_reason(&self) -> Option<&'static str> {
        self.reason.map(FinishReason::as_str)
    }

    /// Tool-call progress in this chunk (the call's text is not in `text`).
    #[getter]
    fn tool_calls(&self) -> Vec<PyToolCallDelta> {
        self.tool_calls.iter().cloned().map(PyToolCallDelta).collect()
    }

    /// An OpenAI `ChatCompletionChunk` dict (chat streams) or streamed `Completion` dict.
    fn to_openai<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let usage = self.usage.as_ref().map_or(serde_json::Value::Null, |u| u.get().to_openai());
        let logprobs = corral::openai::logprobs(self.output.logprobs.as_deref());
        let (text, reasoning) = (&self.output.text, &self.output.reasoning);
        let response = corral::openai::chunk(&self.origin, text, reasoning, self.first, self.reason, &self.tool_calls, usage, logprobs);
        crate::json::to_py(py, &response)
    }
}
}

/// A running generation: iterate it for `Chunk`s. `cancel()` (or leaving a `with` block) stops
/// it; Ctrl-C while waiting raises `KeyboardInterrupt` and cancels it.
#[pyclass(module = "corral", name = "Stream", frozen)]
pub struct PyStream {
    // A Mutex because `corral::Stream` is Send but not Sync; it is only locked with the GIL released.
    stream: Mutex<corral::Stream>,
    cancel: CancelHandle,
    origin: Origin,
    started: AtomicBool,
    /// Whether the request asked for logprobs (`None` vs a list in results).
    logprobs: bool,
}

impl PyStream {
    pub fn new(stream: corral::Stream, origin: Origin, logprobs: bool) -> Self {
        let cancel = stream.cancel_handle();
        PyStream { stream: Mutex::new(stream), cancel, origin, started: AtomicBool::new(false), logprobs }
    }

    /// Waits for the next core chunk, GIL released, staying responsive to signals.
    fn next_core_chunk(&self, py: Python<'_>) -> PyResult<Option<corral::Chunk>> {
        loop {
            let polled = py.detach(|| self.stream.lock().unwrap_or_else(PoisonError::into_inner).poll(POLL_INTERVAL));
            // Checked after every wait, chunk or not, so a Ctrl-C that arrived meanwhile is
            // seen here (and cancels) rather than later in Python code.
            if let Err(interrupt) = py.check_signals() {
                self.cancel.cancel();
                return Err(interrupt);
            }
            match polled.or_raise(py)? {
                Poll::Chunk(chunk) => return Ok(Some(chunk)),
                Poll::Finished => return Ok(None),
                Poll::Pending => {}
            }
        }
    }

    fn to_py_chunk(&self, py: Python<'_>, mut chunk: corral::Chunk) -> PyResult<PyChunk> {
        let first = !self.started.swap(true, Ordering::Relaxed);
        let usage = chunk.usage.take().map(|u| Py::new(py, PyUsage::from(u))).transpose()?;
        Ok(PyChunk {
            output: Output::take(&mut chunk, self.logprobs),
            reason: chunk.finish_reason,
            usage,
            origin: self.origin.clone(),
            first,
            tool_calls: chunk.tool_calls,
        })
    }

    /// Consumes the rest of the stream into one result.
    pub fn collect_completion(&self, py: Python<'_>) -> PyResult<PyCompletion> {
        let mut output = Output { logprobs: self.logprobs.then(Vec::new), ..Output::default() };
        while let Some(mut chunk) = self.next_core_chunk(py)? {
            output.extend(Output::take(&mut chunk, self.logprobs));
            if let Some(reason) = chunk.finish_reason {
                let usage = Py::new(py, PyUsage::from(chunk.usage.unwrap_or_default()))?;
                let stream = self.stream.lock().unwrap_or_else(PoisonError::into_inner);
                let tool_calls = stream.tool_calls().iter().cloned().map(PyToolCall).collect();
                return Ok(PyCompletion { output, reason, usage, origin: self.origin.clone(), tool_calls });
            }
        }
        Err(crate::error::to_py_err(py, corral::Error::new(corral::ErrorKind::Internal, "the stream ended without a final chunk")))
    }
}

#[pymethods]
impl PyStream {
    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<PyChunk>> {
        match self.next_core_chunk(py)? {
            Some(chunk) => Ok(Some(self.to_py_chunk(py, chunk)?)),
            None => Ok(None),
        }
    }

    /// Waits for the whole (remaining) output and returns it as one `Completion`.
    fn collect(&self, py: Python<'_>) -> PyResult<PyCompletion> {
        self.collect_completion(py)
    }

    /// Asks the engine to stop; the stream then ends with finish_reason `"cancelled"`.
    /// Safe from any thread, idempotent, and a no-op once the stream has finished.
    fn cancel(&self) {
        self.cancel.cancel();
    }

    #[getter]
    fn cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    /// Leaving the `with` block cancels whatever is still running.
    fn __exit__(
        &self,
        _exc_type: Option<Bound<'_, PyAny>>,
        _exc_value: Option<Bound<'_, PyAny>>,
        _traceback: Option<Bound<'_, PyAny>>,
    ) -> bool {
        self.cancel.cancel();
        false
    }

    fn __repr__(&self) -> String {
        let kind = match self.origin.kind {
            Kind::Text => "completion",
            Kind::Chat => "chat",
        };
        format!("<corral.Stream {kind} {}>", self.origin.id)
    }
}
