//! `Model.embed` and `Model.rerank`: texts to vectors, documents scored against a query.
//! corral-core reads the options (`corral::openai::embed_options`) and shapes the OpenAI
//! response; this file turns Python values into core's and back.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};

use corral::openai::Dialect;

use crate::error::{invalid_type, type_name, OrRaise};

/// Cancels the calls it is passed to (`cancel=`) from any thread; the async wrappers use one.
#[pyclass(module = "corral", name = "CancelToken", frozen)]
#[derive(Default)]
pub struct PyCancelToken(corral::CancelHandle);

#[pymethods]
impl PyCancelToken {
    #[new]
    fn new() -> Self {
        PyCancelToken::default()
    }

    /// Cancels every call given this token: each fails with `CancelledError`. Idempotent.
    fn cancel(&self) {
        self.0.cancel();
    }

    #[getter]
    fn cancelled(&self) -> bool {
        self.0.is_cancelled()
    }
}

/// The vectors of one `embed` call (the public `corral.Embeddings` wraps it).
#[pyclass(module = "corral", name = "NativeEmbeddings", frozen)]
pub struct PyEmbeddings {
    inner: corral::Embeddings,
    model: String,
}

#[pymethods]
impl PyEmbeddings {
    /// Tokens evaluated, special tokens included.
    #[getter]
    fn prompt_tokens(&self) -> u32 {
        self.inner.prompt_tokens
    }

    /// One list of floats per text.
    fn vectors(&self) -> Vec<Vec<f32>> {
        self.inner.vectors.clone()
    }

    /// Every vector's float32 values, row after row, in native byte order (for numpy).
    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let bytes: Vec<u8> = self.inner.vectors.iter().flatten().flat_map(|x| x.to_ne_bytes()).collect();
        PyBytes::new(py, &bytes)
    }

    /// Length of each vector (0 when there are none).
    #[getter]
    fn dimensions(&self) -> usize {
        self.inner.vectors.first().map_or(0, Vec::len)
    }

    /// OpenAI's embeddings response: `{"object": "list", "data": [{"object": "embedding",
    /// "index", "embedding"}], "model", "usage"}`.
    fn to_openai<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        crate::json::to_py(py, &corral::openai::embeddings_response(&self.inner, &self.model))
    }
}

/// A str, or a list (or tuple) of str.
fn texts(py: Python<'_>, value: &Bound<'_, PyAny>, name: &str) -> PyResult<Vec<String>> {
    if let Ok(one) = value.cast::<PyString>() {
        return Ok(vec![one.to_cow()?.into_owned()]);
    }
    let Ok(items) = value.try_iter() else {
        return Err(invalid_type(py, format!("{name} must be a str or a list of str, got {}", type_name(value))));
    };
    items
        .enumerate()
        .map(|(i, item)| {
            let item = item?;
            match item.cast::<PyString>() {
                Ok(text) => Ok(text.to_cow()?.into_owned()),
                Err(_) => Err(invalid_type(py, format!("{name}[{i}] must be a str, got {}", type_name(&item)))),
            }
        })
        .collect()
}

fn options_value(py: Python<'_>, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<serde_json::Value> {
    kwargs.map_or(Ok(serde_json::Value::Null), |k| crate::json::from_py(py, k.as_any(), ""))
}

pub fn embed(
    py: Python<'_>,
    model: &corral::Model,
    value: &Bound<'_, PyAny>,
    cancel: Option<&PyCancelToken>,
    kwargs: Option<&Bound<'_, PyDict>>,
) -> PyResult<PyEmbeddings> {
    let texts = texts(py, value, "texts")?;
    let mut options = corral::openai::embed_options(&options_value(py, kwargs)?, Dialect::Python).or_raise(py)?;
    options.cancel = cancel.map(|c| c.0.clone());
    let inner = py.detach(|| model.embed(&texts, &options)).or_raise(py)?;
    Ok(PyEmbeddings { inner, model: model.info().name.clone() })
}

pub fn rerank<'py>(
    py: Python<'py>,
    model: &corral::Model,
    query: &str,
    documents: &Bound<'py, PyAny>,
    cancel: Option<&PyCancelToken>,
    kwargs: Option<&Bound<'py, PyDict>>,
) -> PyResult<Vec<Bound<'py, PyAny>>> {
    let documents = texts(py, documents, "documents")?;
    let mut options = corral::openai::rerank_options(&options_value(py, kwargs)?, Dialect::Python).or_raise(py)?;
    options.cancel = cancel.map(|c| c.0.clone());
    let results = py.detach(|| model.rerank(query, &documents, &options)).or_raise(py)?;
    results.iter().map(|r| crate::json::to_py(py, &corral::openai::rerank_result(r))).collect()
}
