//! Streams and results: `Stream` (an iterator that waits with the GIL released), `Chunk`,
//! `Completion`, `Usage`, and their OpenAI-shaped dicts.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use corral::{CancelHandle, FinishReason, Poll};

use crate::error::OrRaise;

/// How long `__next__` waits for the engine before checking for Ctrl-C.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Whether a generation answers a chat or completes raw text: decides the OpenAI shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Chat,
}

/// What the OpenAI shapes need besides the output: shared by every chunk of one stream.
#[derive(Debug, Clone)]
pub struct Origin {
    kind: Kind,
    model: Arc<str>,
    id: Arc<str>,
    created: u64,
}

impl Origin {
    pub fn new(kind: Kind, model: Arc<str>) -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let prefix = match kind {
            Kind::Text => "cmpl",
            Kind::Chat => "chatcmpl",
        };
        let serial = COUNTER.fetch_add(1, Ordering::Relaxed);
        let id = format!("{prefix}-{:x}{:06x}", now.as_nanos(), serial & 0xff_ffff);
        Origin { kind, model, id: id.into(), created: now.as_secs() }
    }
}

/// OpenAI has no "cancelled": a cancelled generation stopped, as far as a client can tell.
fn openai_finish_reason(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Length => "length",
        FinishReason::ToolCalls => "tool_calls",
        _ => "stop",
    }
}

/// A tool the model called.
#[pyclass(module = "corral", name = "ToolCall", frozen, get_all)]
#[derive(Clone)]
pub struct PyToolCall {
    /// Unique id; a `tool` message answers the call with `tool_call_id` set to it.
    pub id: String,
    pub name: String,
    /// The arguments as JSON text.
    pub arguments: String,
}

impl PyToolCall {
    pub fn to_core(&self) -> corral::ToolCall {
        corral::ToolCall { id: self.id.clone(), name: self.name.clone(), arguments: self.arguments.clone() }
    }
}

#[pymethods]
impl PyToolCall {
    /// OpenAI's `{"id", "type": "function", "function": {"name", "arguments"}}` dict.
    fn to_openai<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        crate::json::to_py(py, &self.to_core().to_openai())
    }

    fn __repr__(&self) -> String {
        format!("ToolCall(id={:?}, name={:?}, arguments={:?})", self.id, self.name, self.arguments)
    }
}

/// Streamed progress of a tool call: the first delta of call `index` has its `id` and `name`,
/// later ones more `arguments` text.
#[pyclass(module = "corral", name = "ToolCallDelta", frozen, get_all)]
#[derive(Clone)]
pub struct PyToolCallDelta {
    pub index: u32,
    pub id: Option<String>,
    pub name: Option<String>,
    pub arguments: String,
}

#[pymethods]
impl PyToolCallDelta {
    fn __repr__(&self) -> String {
        format!("ToolCallDelta(index={}, id={:?}, name={:?}, arguments={:?})", self.index, self.id, self.name, self.arguments)
    }
}

fn to_openai_deltas<'py>(py: Python<'py>, deltas: &[corral::ToolCallDelta]) -> PyResult<Bound<'py, PyAny>> {
    crate::json::to_py(py, &serde_json::Value::Array(deltas.iter().map(corral::ToolCallDelta::to_openai).collect()))
}

/// OpenAI `logprobs.content` entries, or None when not requested.
fn logprob_entries<'py>(py: Python<'py>, logprobs: &Option<Vec<corral::Logprob>>) -> PyResult<Bound<'py, PyAny>> {
    match logprobs {
        None => Ok(py.None().into_bound(py)),
        Some(entries) => crate::json::to_py(py, &serde_json::Value::Array(entries.iter().map(corral::Logprob::to_openai).collect())),
    }
}

/// OpenAI's `logprobs` of a choice: `{"content": [...]}`, or None when not requested.
fn to_openai_logprobs<'py>(py: Python<'py>, logprobs: &Option<Vec<corral::Logprob>>) -> PyResult<Bound<'py, PyAny>> {
    match logprobs {
        None => Ok(py.None().into_bound(py)),
        Some(entries) => {
            let content = serde_json::Value::Array(entries.iter().map(corral::Logprob::to_openai).collect());
            crate::json::to_py(py, &serde_json::json!({ "content": content }))
        }
    }
}

/// Token counts and timings of one request.
#[pyclass(module = "corral", name = "Usage", frozen, get_all)]
#[derive(Clone)]
pub struct PyUsage {
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

impl From<corral::Usage> for PyUsage {
    fn from(u: corral::Usage) -> Self {
        PyUsage {
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

#[pymethods]
impl PyUsage {
    /// Every field as a dict.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("prompt_tokens", self.prompt_tokens)?;
        d.set_item("completion_tokens", self.completion_tokens)?;
        d.set_item("cached_tokens", self.cached_tokens)?;
        d.set_item("queue_ms", self.queue_ms)?;
        d.set_item("time_to_first_token_ms", self.time_to_first_token_ms)?;
        d.set_item("prompt_ms", self.prompt_ms)?;
        d.set_item("generation_ms", self.generation_ms)?;
        d.set_item("prompt_tokens_per_s", self.prompt_tokens_per_s)?;
        d.set_item("generation_tokens_per_s", self.generation_tokens_per_s)?;
        Ok(d)
    }

    fn __repr__(&self) -> String {
        format!(
            "Usage(prompt_tokens={}, completion_tokens={}, cached_tokens={}, time_to_first_token_ms={:.1}, \
             prompt_tokens_per_s={:.1}, generation_tokens_per_s={:.1})",
            self.prompt_tokens,
            self.completion_tokens,
            self.cached_tokens,
            self.time_to_first_token_ms,
            self.prompt_tokens_per_s,
            self.generation_tokens_per_s
        )
    }
}

impl PyUsage {
    /// OpenAI's `CompletionUsage`.
    fn to_openai<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("prompt_tokens", self.prompt_tokens)?;
        d.set_item("completion_tokens", self.completion_tokens)?;
        d.set_item("total_tokens", u64::from(self.prompt_tokens) + u64::from(self.completion_tokens))?;
        let details = PyDict::new(py);
        details.set_item("cached_tokens", self.cached_tokens)?;
        d.set_item("prompt_tokens_details", details)?;
        Ok(d)
    }
}

fn openai_envelope<'py>(py: Python<'py>, origin: &Origin, object: &str) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("id", &*origin.id)?;
    d.set_item("object", object)?;
    d.set_item("created", origin.created)?;
    d.set_item("model", &*origin.model)?;
    Ok(d)
}

/// A whole generation.
#[pyclass(module = "corral", name = "Completion", frozen)]
pub struct PyCompletion {
    #[pyo3(get)]
    text: String,
    tokens: Vec<i32>,
    reason: FinishReason,
    #[pyo3(get)]
    usage: Py<PyUsage>,
    origin: Origin,
    tool_calls: Vec<PyToolCall>,
    /// `None` unless logprobs were requested.
    logprobs: Option<Vec<corral::Logprob>>,
}

#[pymethods]
impl PyCompletion {
    #[getter]
    fn tokens<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(py, &self.tokens)
    }

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

    /// With `logprobs=True`: one OpenAI entry per generated token,
    /// `{"token", "logprob", "bytes", "top_logprobs": [...]}`; else `None`.
    #[getter]
    fn logprobs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        logprob_entries(py, &self.logprobs)
    }

    /// The assistant message to append to the conversation for the next turn (OpenAI shape).
    fn message<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let message = PyDict::new(py);
        message.set_item("role", "assistant")?;
        if self.tool_calls.is_empty() {
            message.set_item("content", &self.text)?;
        } else {
            message.set_item("content", if self.text.trim().is_empty() { None } else { Some(&self.text) })?;
            let calls = self.tool_calls.iter().map(|c| c.to_openai(py)).collect::<PyResult<Vec<_>>>()?;
            message.set_item("tool_calls", PyList::new(py, calls)?)?;
        }
        Ok(message)
    }

    /// An OpenAI `ChatCompletion` dict (from chat calls) or `Completion` dict (from complete calls).
    fn to_openai<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let choice = PyDict::new(py);
        choice.set_item("index", 0)?;
        choice.set_item("finish_reason", openai_finish_reason(self.reason))?;
        choice.set_item("logprobs", to_openai_logprobs(py, &self.logprobs)?)?;
        let object = match self.origin.kind {
            Kind::Chat => {
                choice.set_item("message", self.message(py)?)?;
                "chat.completion"
            }
            Kind::Text => {
                choice.set_item("text", &self.text)?;
                "text_completion"
            }
        };
        let d = openai_envelope(py, &self.origin, object)?;
        d.set_item("choices", PyList::new(py, [choice])?)?;
        d.set_item("usage", self.usage.get().to_openai(py)?)?;
        Ok(d)
    }

    fn __repr__(&self) -> String {
        format!("Completion(text={:?}, finish_reason={:?}, usage={})", self.text, self.reason.as_str(), self.usage.get().__repr__())
    }
}

/// One piece of streamed output. The last chunk of a stream carries `finish_reason` and `usage`.
#[pyclass(module = "corral", name = "Chunk", frozen)]
pub struct PyChunk {
    #[pyo3(get)]
    text: String,
    tokens: Vec<i32>,
    reason: Option<FinishReason>,
    #[pyo3(get)]
    usage: Option<Py<PyUsage>>,
    origin: Origin,
    /// The first chunk of a chat stream announces the assistant role (OpenAI's delta).
    first: bool,
    tool_calls: Vec<corral::ToolCallDelta>,
    logprobs: Option<Vec<corral::Logprob>>,
}

#[pymethods]
impl PyChunk {
    #[getter]
    fn tokens<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(py, &self.tokens)
    }

    /// `None` until the last chunk, then `"stop"`, `"length"`, `"tool_calls"` or `"cancelled"`.
    #[getter]
    fn finish_reason(&self) -> Option<&'static str> {
        self.reason.map(FinishReason::as_str)
    }

    /// Tool-call progress in this chunk (the call's text is not in `text`).
    #[getter]
    fn tool_calls(&self) -> Vec<PyToolCallDelta> {
        self.tool_calls
            .iter()
            .map(|d| PyToolCallDelta { index: d.index, id: d.id.clone(), name: d.name.clone(), arguments: d.arguments.clone() })
            .collect()
    }

    /// With `logprobs=True`: this chunk's tokens as in `Completion.logprobs`; else `None`.
    #[getter]
    fn logprobs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        logprob_entries(py, &self.logprobs)
    }

    /// An OpenAI `ChatCompletionChunk` dict (chat streams) or streamed `Completion` dict.
    fn to_openai<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let choice = PyDict::new(py);
        choice.set_item("index", 0)?;
        choice.set_item("finish_reason", self.reason.map(openai_finish_reason))?;
        choice.set_item("logprobs", to_openai_logprobs(py, &self.logprobs)?)?;
        let object = match self.origin.kind {
            Kind::Chat => {
                let delta = PyDict::new(py);
                if self.first {
                    delta.set_item("role", "assistant")?;
                }
                if !self.tool_calls.is_empty() {
                    delta.set_item("tool_calls", to_openai_deltas(py, &self.tool_calls)?)?;
                }
                delta.set_item("content", &self.text)?;
                choice.set_item("delta", delta)?;
                "chat.completion.chunk"
            }
            Kind::Text => {
                choice.set_item("text", &self.text)?;
                "text_completion"
            }
        };
        let d = openai_envelope(py, &self.origin, object)?;
        d.set_item("choices", PyList::new(py, [choice])?)?;
        match &self.usage {
            Some(usage) => d.set_item("usage", usage.get().to_openai(py)?)?,
            None => d.set_item("usage", py.None())?,
        }
        Ok(d)
    }

    fn __repr__(&self) -> String {
        match self.reason {
            None => format!("Chunk(text={:?})", self.text),
            Some(reason) => format!("Chunk(text={:?}, finish_reason={:?})", self.text, reason.as_str()),
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

    fn to_py_chunk(&self, py: Python<'_>, chunk: corral::Chunk) -> PyResult<PyChunk> {
        let first = !self.started.swap(true, Ordering::Relaxed);
        let usage = chunk.usage.map(|u| Py::new(py, PyUsage::from(u))).transpose()?;
        Ok(PyChunk {
            text: chunk.text,
            tokens: chunk.tokens,
            reason: chunk.finish_reason,
            usage,
            origin: self.origin.clone(),
            first,
            tool_calls: chunk.tool_calls,
            logprobs: self.logprobs.then_some(chunk.logprobs),
        })
    }

    /// Consumes the rest of the stream into one result.
    pub fn collect_completion(&self, py: Python<'_>) -> PyResult<PyCompletion> {
        let mut text = String::new();
        let mut tokens = Vec::new();
        let mut logprobs = Vec::new();
        while let Some(chunk) = self.next_core_chunk(py)? {
            text.push_str(&chunk.text);
            tokens.extend_from_slice(&chunk.tokens);
            logprobs.extend(chunk.logprobs);
            if let Some(reason) = chunk.finish_reason {
                let usage = Py::new(py, PyUsage::from(chunk.usage.unwrap_or_default()))?;
                let stream = self.stream.lock().unwrap_or_else(PoisonError::into_inner);
                let tool_calls = stream
                    .tool_calls()
                    .iter()
                    .map(|c| PyToolCall { id: c.id.clone(), name: c.name.clone(), arguments: c.arguments.clone() })
                    .collect();
                return Ok(PyCompletion {
                    text,
                    tokens,
                    reason,
                    usage,
                    origin: self.origin.clone(),
                    tool_calls,
                    logprobs: self.logprobs.then_some(logprobs),
                });
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
