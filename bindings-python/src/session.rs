//! `Session`: a conversation that keeps its KV cache between calls.

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::error::{invalid_type, type_name, OrRaise};
use crate::model::PyModel;
use crate::options::generate_options;
use crate::stream::{pymethods_with_generation, start, Kind, PyStream};

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

    /// A session's prompt is a str only (see `pymethods_with_generation`).
    fn prompt_stream(&self, py: Python<'_>, prompt: &Bound<'_, PyAny>, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<PyStream> {
        let prompt: String = prompt.extract().map_err(|_| invalid_type(py, format!("prompt must be a str, got {}", type_name(prompt))))?;
        let options = generate_options(py, kwargs)?;
        let logprobs = options.logprobs.is_some();
        start(py, &self.session, &self.model_name, Kind::Text, logprobs, move |session| session.complete_stream(&prompt, &options))
    }
}

pymethods_with_generation! {
impl PySession (session, model_name) {
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

    /// Frees the session's sequence for other requests; later calls raise ClosedError. Idempotent.
    fn close(&self, py: Python<'_>) {
        let session = &self.session;
        py.detach(|| session.close());
    }

    fn __repr__(&self) -> String {
        let state = if self.session.is_closed() { " closed" } else { "" };
        format!("<corral.Session of {:?}{state}>", self.model_name)
    }
}
}
