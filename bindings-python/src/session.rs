//! `Session`: a conversation that keeps its KV cache between calls.

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::chat;
use crate::error::{invalid_type, type_name, OrRaise};
use crate::model::PyModel;
use crate::options::generate_options;
use crate::stream::{origin, Kind, PyCompletion, PyStream};

/// A conversation bound to one engine sequence. Each call passes the whole prompt or message
/// list; what it shares with the previous call is reused from the KV cache
/// (`usage.cached_tokens`), so a multi-turn chat only evaluates the new turn.
#[pyclass(module = "corral", name = "Session", frozen, subclass)]
pub struct PySession {
    session: corral::Session,
    model_name: Arc<str>,
}

impl PySession {
    /// A new session, or one continuing a saved `state` (`Session.state()`).
    pub(crate) fn open(py: Python<'_>, model: &PyModel, state: Option<&[u8]>) -> PyResult<Self> {
        model.check_open(py)?;
        let core = &model.model;
        let session = match state {
            None => core.session().or_raise(py)?,
            Some(state) => py.detach(|| core.session_from_state(state)).or_raise(py)?,
        };
        Ok(PySession { session, model_name: model.name.clone() })
    }

    fn stream(
        &self,
        py: Python<'_>,
        kind: Kind,
        logprobs: bool,
        start: impl Send + FnOnce(&corral::Session) -> corral::Result<corral::Stream>,
    ) -> PyResult<PyStream> {
        let session = &self.session;
        let stream = py.detach(|| start(session)).or_raise(py)?;
        Ok(PyStream::new(stream, origin(kind, &self.model_name), logprobs))
    }

    fn prompt_stream(&self, py: Python<'_>, prompt: &Bound<'_, PyAny>, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<PyStream> {
        let prompt: String = prompt.extract().map_err(|_| invalid_type(py, format!("prompt must be a str, got {}", type_name(prompt))))?;
        let options = generate_options(py, kwargs)?;
        self.stream(py, Kind::Text, options.logprobs.is_some(), move |session| session.complete_stream(&prompt, &options))
    }

    fn chat_stream_inner(&self, py: Python<'_>, messages: &Bound<'_, PyAny>, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<PyStream> {
        let messages = chat::messages(py, messages)?;
        let options = generate_options(py, kwargs)?;
        self.stream(py, Kind::Chat, options.logprobs.is_some(), move |session| session.chat_stream(&messages, &options))
    }
}

#[pymethods]
impl PySession {
    /// Opens a session on `model` (same as `model.session()`); with `state` (bytes from
    /// `Session.state()`), one that continues the saved session: its next call evaluates only
    /// what is new. A state from another model or configuration, or a damaged one, raises
    /// `InvalidStateError`.
    #[new]
    #[pyo3(signature = (model, state=None))]
    fn new(py: Python<'_>, model: &Bound<'_, PyModel>, state: Option<&[u8]>) -> PyResult<Self> {
        PySession::open(py, model.get(), state)
    }

    /// The session's tokens and KV cache, with a fingerprint of the model and configuration
    /// they fit: pass it to `model.session(state=...)`, in this process or another. Raises
    /// `BusyError` while the session is generating.
    fn state<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyBytes>> {
        let session = &self.session;
        let state = py.detach(|| session.state()).or_raise(py)?;
        Ok(pyo3::types::PyBytes::new(py, &state))
    }

    /// Writes `state()` to a file (`model.load_session(path)` reads it back).
    fn save(&self, py: Python<'_>, path: std::path::PathBuf) -> PyResult<()> {
        let session = &self.session;
        py.detach(|| session.save(&path)).or_raise(py)
    }

    #[getter]
    fn closed(&self) -> bool {
        self.session.is_closed()
    }

    #[pyo3(signature = (prompt, **options), text_signature = "($self, prompt, *, max_tokens=None, temperature=None, top_k=None, top_p=None, min_p=None, repeat_penalty=None, repeat_last_n=None, frequency_penalty=None, presence_penalty=None, seed=None, stop=None, timeout=None, ignore_eos=None, parse_special=None, grammar=None, response_format=None, logprobs=None, top_logprobs=None, tools=None, tool_choice=None, template=None, reasoning_budget=None, adapters=None)")]
    fn complete(&self, py: Python<'_>, prompt: &Bound<'_, PyAny>, options: Option<&Bound<'_, PyDict>>) -> PyResult<PyCompletion> {
        self.prompt_stream(py, prompt, options)?.collect_completion(py)
    }

    #[pyo3(signature = (prompt, **options), text_signature = "($self, prompt, *, max_tokens=None, temperature=None, top_k=None, top_p=None, min_p=None, repeat_penalty=None, repeat_last_n=None, frequency_penalty=None, presence_penalty=None, seed=None, stop=None, timeout=None, ignore_eos=None, parse_special=None, grammar=None, response_format=None, logprobs=None, top_logprobs=None, tools=None, tool_choice=None, template=None, reasoning_budget=None, adapters=None)")]
    fn complete_stream(&self, py: Python<'_>, prompt: &Bound<'_, PyAny>, options: Option<&Bound<'_, PyDict>>) -> PyResult<PyStream> {
        self.prompt_stream(py, prompt, options)
    }

    #[pyo3(signature = (messages, **options), text_signature = "($self, messages, *, max_tokens=None, temperature=None, top_k=None, top_p=None, min_p=None, repeat_penalty=None, repeat_last_n=None, frequency_penalty=None, presence_penalty=None, seed=None, stop=None, timeout=None, ignore_eos=None, parse_special=None, grammar=None, response_format=None, logprobs=None, top_logprobs=None, tools=None, tool_choice=None, template=None, reasoning_budget=None, adapters=None)")]
    fn chat(&self, py: Python<'_>, messages: &Bound<'_, PyAny>, options: Option<&Bound<'_, PyDict>>) -> PyResult<PyCompletion> {
        self.chat_stream_inner(py, messages, options)?.collect_completion(py)
    }

    #[pyo3(signature = (messages, **options), text_signature = "($self, messages, *, max_tokens=None, temperature=None, top_k=None, top_p=None, min_p=None, repeat_penalty=None, repeat_last_n=None, frequency_penalty=None, presence_penalty=None, seed=None, stop=None, timeout=None, ignore_eos=None, parse_special=None, grammar=None, response_format=None, logprobs=None, top_logprobs=None, tools=None, tool_choice=None, template=None, reasoning_budget=None, adapters=None)")]
    fn chat_stream(&self, py: Python<'_>, messages: &Bound<'_, PyAny>, options: Option<&Bound<'_, PyDict>>) -> PyResult<PyStream> {
        self.chat_stream_inner(py, messages, options)
    }

    /// Frees the session's sequence for other requests; later calls raise ClosedError. Idempotent.
    fn close(&self, py: Python<'_>) {
        let session = &self.session;
        py.detach(|| session.close());
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

    fn __repr__(&self) -> String {
        let state = if self.session.is_closed() { " closed" } else { "" };
        format!("<corral.Session of {:?}{state}>", self.model_name)
    }
}
