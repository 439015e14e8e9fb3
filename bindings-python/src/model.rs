//! `Model`: loading, metadata, tokenizer, chat template and generation.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use pyo3::exceptions::PyKeyboardInterrupt;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyDict};

use corral::{ErrorKind, ModelOptions};

use crate::chat;
use crate::error::{invalid_type, to_py_err, type_name, OrRaise};
use crate::options::{adapter_files, generate_options, model_options, path_arg, Keywords};
use crate::session::PySession;
use crate::stream::{pymethods_with_generation, start, Kind, PyStream};

/// A special token (BOS, EOS, EOT): its id and text.
#[pyclass(module = "corral", name = "SpecialToken", frozen, get_all)]
pub struct PySpecialToken {
    id: i32,
    text: String,
}

#[pymethods]
impl PySpecialToken {
    fn __repr__(&self) -> String {
        format!("SpecialToken(id={}, text={:?})", self.id, self.text)
    }
}

/// Request, token and prefix-cache totals since the model was loaded (`Model.stats()`).
#[pyclass(module = "corral", name = "EngineStats", frozen, get_all)]
pub struct PyEngineStats {
    requests: u64,
    /// Prompt tokens of all requests.
    prompt_tokens: u64,
    /// Prompt tokens reused from sessions or the prefix cache (cache hits).
    cached_tokens: u64,
    generated_tokens: u64,
    /// Generation decodes stopped part-way so that a new request's prompt went first.
    preemptions: u64,
}

#[pymethods]
impl PyEngineStats {
    fn __repr__(&self) -> String {
        format!(
            "EngineStats(requests={}, prompt_tokens={}, cached_tokens={}, generated_tokens={}, preemptions={})",
            self.requests, self.prompt_tokens, self.cached_tokens, self.generated_tokens, self.preemptions
        )
    }
}

/// What a model is, from its GGUF metadata and llama.cpp.
#[pyclass(module = "corral", name = "ModelInfo", frozen)]
pub struct PyModelInfo {
    #[pyo3(get)]
    architecture: String,
    #[pyo3(get)]
    name: String,
    #[pyo3(get)]
    parameters: u64,
    #[pyo3(get)]
    size_bytes: u64,
    #[pyo3(get)]
    quantization: String,
    #[pyo3(get)]
    context_length_trained: u32,
    #[pyo3(get)]
    context_length: u32,
    #[pyo3(get)]
    embedding_length: u32,
    #[pyo3(get)]
    layers: u32,
    #[pyo3(get)]
    vocab_size: u32,
    #[pyo3(get)]
    bos_token: Option<Py<PySpecialToken>>,
    #[pyo3(get)]
    eos_token: Option<Py<PySpecialToken>>,
    #[pyo3(get)]
    eot_token: Option<Py<PySpecialToken>>,
    #[pyo3(get)]
    add_bos_token: bool,
    #[pyo3(get)]
    chat_template: Option<String>,
    metadata: Py<PyDict>,
}

#[pymethods]
impl PyModelInfo {
    /// Every GGUF metadata key with its typed value (arrays as lists). A fresh (shallow) copy
    /// each time, so callers cannot alter what others see.
    #[getter]
    fn metadata<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.metadata.bind(py).copy()
    }

    fn __repr__(&self) -> String {
        format!(
            "ModelInfo(name={:?}, architecture={:?}, parameters={}, quantization={:?}, context_length={})",
            self.name, self.architecture, self.parameters, self.quantization, self.context_length
        )
    }
}

fn special_token(py: Python<'_>, token: &Option<corral::SpecialToken>) -> PyResult<Option<Py<PySpecialToken>>> {
    token.as_ref().map(|t| Py::new(py, PySpecialToken { id: t.id, text: t.text.clone() })).transpose()
}

fn model_info(py: Python<'_>, info: &corral::ModelInfo) -> PyResult<PyModelInfo> {
    let metadata = PyDict::new(py);
    for (key, value) in &info.metadata {
        metadata.set_item(key, crate::json::to_py(py, value)?)?;
    }
    Ok(PyModelInfo {
        architecture: info.architecture.clone(),
        name: info.name.clone(),
        parameters: info.parameters,
        size_bytes: info.size_bytes,
        quantization: info.quantization.clone(),
        context_length_trained: info.context_length_trained,
        context_length: info.context_length,
        embedding_length: info.embedding_length,
        layers: info.layers,
        vocab_size: info.vocab_size,
        bos_token: special_token(py, &info.bos_token)?,
        eos_token: special_token(py, &info.eos_token)?,
        eot_token: special_token(py, &info.eot_token)?,
        add_bos_token: info.add_bos_token,
        chat_template: info.chat_template.clone(),
        metadata: metadata.unbind(),
    })
}

/// A loaded GGUF model. Thread-safe: share one between threads; their requests are batched.
#[pyclass(module = "corral", name = "Model", frozen, subclass)]
pub struct PyModel {
    pub(crate) model: corral::Model,
    pub(crate) name: Arc<str>,
    info: PyOnceLock<Py<PyModelInfo>>,
}

impl PyModel {
    pub(crate) fn check_open(&self, py: Python<'_>) -> PyResult<()> {
        if self.model.is_closed() {
            return Err(to_py_err(py, corral::Error::new(ErrorKind::Closed, "the model has been closed")));
        }
        Ok(())
    }

    /// A prompt is a str or a list of token ids (see `pymethods_with_generation`).
    fn prompt_stream(&self, py: Python<'_>, prompt: &Bound<'_, PyAny>, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<PyStream> {
        let prompt = chat::prompt(py, prompt)?;
        let options = generate_options(py, kwargs)?;
        let logprobs = options.logprobs.is_some();
        start(py, &self.model, &self.name, Kind::Text, logprobs, move |model| model.generate_stream(prompt.as_core(), &options))
    }
}

/// Loads a model, routing llama.cpp's progress to the Python callback. The callback runs on
/// this (loading) thread with the GIL re-acquired; Ctrl-C is checked there too.
fn load(py: Python<'_>, path: PathBuf, mut options: ModelOptions, on_progress: Option<Py<PyAny>>) -> PyResult<corral::Model> {
    let failure: Arc<Mutex<Option<PyErr>>> = Arc::default();
    let callback_failure = failure.clone();
    options.on_progress = Some(Arc::new(move |progress: f32| -> bool {
        Python::attach(|py| {
            let outcome = py.check_signals().and_then(|()| match &on_progress {
                // Only an explicit False cancels: `bar.update` style callbacks return None.
                Some(callback) => callback.call1(py, (f64::from(progress),)).map(|r| !r.bind(py).is(PyBool::new(py, false))),
                None => Ok(true),
            });
            outcome.unwrap_or_else(|e| {
                *callback_failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(e);
                false
            })
        })
    }));
    let loaded = py.detach(move || corral::Model::load(path, options));
    let callback_error = failure.lock().unwrap_or_else(PoisonError::into_inner).take();
    match (loaded, callback_error) {
        (Ok(model), _) => Ok(model),
        // Ctrl-C during loading stays a KeyboardInterrupt.
        (Err(_), Some(e)) if e.is_instance_of::<PyKeyboardInterrupt>(py) => Err(e),
        (Err(e), Some(cause)) if e.kind() == ErrorKind::Cancelled => {
            let message = format!("model loading was cancelled: the progress callback raised {}", cause.value(py));
            let error = to_py_err(py, corral::Error::new(ErrorKind::Cancelled, message));
            error.set_cause(py, Some(cause));
            Err(error)
        }
        (Err(e), _) => Err(to_py_err(py, e)),
    }
}

pymethods_with_generation! {
impl PyModel (model, name) {
    /// Loads a GGUF model. Options left as None take corral's defaults: context_length = the
    /// trained context capped at 4096 ("auto": the largest that fits in memory), threads = physical cores, gpu_layers = 0, use_mmap = True,
    /// use_mlock = False, max_sequences = 8, batch_size = 512, flash_attention = auto.
    /// `adapters` maps names to LoRA adapter files loaded with the model (requests choose them
    /// with the `adapters` generation keyword).
    /// `rpc_servers` ("host:port" of `corral rpc-server` workers) hold part of the layers,
    /// shared out by the `rpc_split` weights (one per worker, then this process's; default equal).
    /// `on_progress(fraction)` is called while loading; returning False cancels (CancelledError).
    #[new]
    #[pyo3(
        signature = (path, **options),
        text_signature = "(path, *, context_length=None, threads=None, gpu_layers=None, use_mmap=None, use_mlock=None, max_sequences=None, batch_size=None, flash_attention=None, rpc_servers=None, rpc_split=None, chat_template=None, adapters=None, on_progress=None)"
    )]
    fn new(py: Python<'_>, path: &Bound<'_, PyAny>, options: Option<Bound<'_, PyDict>>) -> PyResult<Self> {
        let keywords = Keywords::new("Model.__new__()", options, &["chat_template", "adapters", "on_progress"])?;
        let path = path_arg(py, path)?;
        let chat_template = keywords
            .get("chat_template")?
            .map(|t| t.extract::<String>().map_err(|_| invalid_type(py, format!("chat_template must be a str, got {}", type_name(&t)))))
            .transpose()?;
        let adapters = adapter_files(py, keywords.get("adapters")?.as_ref())?;
        let options = ModelOptions { chat_template, adapters, ..model_options(py, &keywords)? };
        let on_progress = match keywords.get("on_progress")? {
            Some(callback) if !callback.is_callable() => {
                return Err(invalid_type(py, format!("on_progress must be callable, got {}", type_name(&callback))));
            }
            callback => callback.map(Bound::unbind),
        };
        let model = load(py, path, options, on_progress)?;
        let name: Arc<str> = model.info().name.as_str().into();
        Ok(PyModel { model, name, info: PyOnceLock::new() })
    }

    /// Metadata: architecture, parameters, quantization, context sizes, special tokens, and
    /// `metadata`, a dict of every GGUF key.
    #[getter]
    fn info(&self, py: Python<'_>) -> PyResult<Py<PyModelInfo>> {
        self.check_open(py)?;
        let info = self.info.get_or_try_init(py, || Py::new(py, model_info(py, self.model.info())?))?;
        Ok(info.clone_ref(py))
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.model.is_closed()
    }

    /// Text to token ids. `add_special` adds BOS/EOS as the model asks; `parse_special` reads
    /// special-token text such as `<|im_start|>` as control tokens.
    #[pyo3(signature = (text, *, add_special=true, parse_special=false))]
    fn tokenize(&self, py: Python<'_>, text: &Bound<'_, PyAny>, add_special: bool, parse_special: bool) -> PyResult<Vec<i32>> {
        let text: String = text.extract().map_err(|_| invalid_type(py, format!("text must be a str, got {}", type_name(text))))?;
        let model = &self.model;
        py.detach(|| model.tokenize(&text, add_special, parse_special)).or_raise(py)
    }

    /// Token ids to text. Control tokens render as nothing unless `render_special`.
    #[pyo3(signature = (ids, *, render_special=false))]
    fn detokenize(&self, py: Python<'_>, ids: &Bound<'_, PyAny>, render_special: bool) -> PyResult<String> {
        let ids = chat::token_ids(py, ids, "ids")?;
        let model = &self.model;
        py.detach(|| model.detokenize(&ids, render_special)).or_raise(py)
    }

    /// Renders messages with the chat template into a prompt string. `tools` (OpenAI function
    /// definitions) are given to the template; `template` is one of the model's named templates
    /// (e.g. `"tool_use"`) or Jinja source used instead of the model's.
    #[pyo3(signature = (messages, add_generation_prompt=true, tools=None, template=None))]
    fn apply_chat_template(
        &self,
        py: Python<'_>,
        messages: &Bound<'_, PyAny>,
        add_generation_prompt: bool,
        tools: Option<&Bound<'_, PyAny>>,
        template: Option<String>,
    ) -> PyResult<String> {
        let messages = chat::messages(py, messages)?;
        let tools = chat::tools(py, tools)?;
        let model = &self.model;
        py.detach(|| model.apply_chat_template(&messages, add_generation_prompt, &tools, template.as_deref())).or_raise(py)
    }

    /// One vector per text (a str or a list of str): `normalize=True` (unit length),
    /// `truncate=False` (cut texts longer than the model takes instead of raising
    /// `ContextOverflowError`), `pooling=None` (`"mean"`, `"cls"`, `"last"`; default the
    /// model's own), `timeout=None` (seconds); `cancel`, a `CancelToken`.
    #[pyo3(signature = (texts, *, cancel=None, **options), text_signature = "($self, texts, *, normalize=True, truncate=False, pooling=None, timeout=None, cancel=None)")]
    fn embed(
        &self,
        py: Python<'_>,
        texts: &Bound<'_, PyAny>,
        cancel: Option<&Bound<'_, crate::embed::PyCancelToken>>,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<crate::embed::PyEmbeddings> {
        crate::embed::embed(py, &self.model, texts, cancel.map(|c| c.get()), options)
    }

    /// Scores each document against the query with a reranker, best first:
    /// `[{"index", "score", "document"}]`, scores in [0, 1]. `top_n=None`, `truncate=False`,
    /// `timeout=None` (seconds); `cancel`, a `CancelToken`.
    #[pyo3(signature = (query, documents, *, cancel=None, **options), text_signature = "($self, query, documents, *, top_n=None, truncate=False, timeout=None, cancel=None)")]
    fn rerank<'py>(
        &self,
        py: Python<'py>,
        query: &str,
        documents: &Bound<'py, PyAny>,
        cancel: Option<&Bound<'py, crate::embed::PyCancelToken>>,
        options: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Vec<Bound<'py, PyAny>>> {
        crate::embed::rerank(py, &self.model, query, documents, cancel.map(|c| c.get()), options)
    }

    /// Log-probability of each token given the ones before it (`len(tokens) - 1` values).
    fn score(&self, py: Python<'_>, tokens: &Bound<'_, PyAny>) -> PyResult<Vec<f32>> {
        let tokens = chat::token_ids(py, tokens, "tokens")?;
        let model = &self.model;
        py.detach(|| model.score(&tokens)).or_raise(py)
    }

    /// A conversation that keeps its KV cache between calls.
    fn session(slf: &Bound<'_, Self>) -> PyResult<PySession> {
        PySession::open(slf.py(), slf.get(), None)
    }

    /// Loads a LoRA adapter file (str or os.PathLike) under `name`, for requests to choose with
    /// the `adapters` generation keyword. A name already loaded raises InvalidArgumentError, a
    /// file that is not an adapter of this model InvalidModelError.
    fn load_adapter(&self, py: Python<'_>, name: &Bound<'_, PyAny>, path: &Bound<'_, PyAny>) -> PyResult<()> {
        let name: String = name.extract().map_err(|_| invalid_type(py, format!("name must be a str, got {}", type_name(name))))?;
        let path = path_arg(py, path)?;
        let model = &self.model;
        py.detach(|| model.load_adapter(&name, &path)).or_raise(py)
    }

    /// Unloads an adapter; requests already running with it finish with it. An unknown name
    /// raises InvalidArgumentError.
    fn remove_adapter(&self, py: Python<'_>, name: &Bound<'_, PyAny>) -> PyResult<()> {
        let name: String = name.extract().map_err(|_| invalid_type(py, format!("name must be a str, got {}", type_name(name))))?;
        let model = &self.model;
        py.detach(|| model.remove_adapter(&name)).or_raise(py)
    }

    /// The names of the loaded adapters, sorted.
    fn adapters(&self, py: Python<'_>) -> Vec<String> {
        let model = &self.model;
        py.detach(|| model.adapters())
    }

    /// Request, token and prefix-cache totals since the model was loaded.
    fn stats(&self) -> PyEngineStats {
        let s = self.model.stats();
        PyEngineStats {
            requests: s.requests,
            prompt_tokens: s.prompt_tokens,
            cached_tokens: s.cached_tokens,
            generated_tokens: s.generated_tokens,
            preemptions: s.preemptions,
        }
    }

    /// Drops the cached KV of idle sequences (prefix cache and idle sessions' history).
    fn clear_cache(&self, py: Python<'_>) -> PyResult<()> {
        let model = &self.model;
        py.detach(|| model.clear_cache()).or_raise(py)
    }

    /// Stops the engine and frees the model. Running requests end with ClosedError; later
    /// calls raise ClosedError. Idempotent.
    fn close(&self, py: Python<'_>) {
        let model = &self.model;
        py.detach(|| model.close());
    }

    fn __repr__(&self) -> String {
        let info = self.model.info();
        let state = if self.model.is_closed() { " closed" } else { "" };
        format!("<corral.Model {:?} ({}, {}){state}>", info.name, info.architecture, info.quantization)
    }
}
}
