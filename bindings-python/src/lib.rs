//! `corral._native`: the compiled half of the `corral` Python package. The public API is the
//! pure-Python facade in `python/corral/__init__.py`; this module is private.
//!
//! Every call into llama.cpp runs with the GIL released on owned Rust values, so Python
//! threads can share one model; the classes are frozen (interior state is behind locks or
//! atomics), so no call ever fails with "already borrowed".

mod chat;
mod embed;
mod error;
mod fields;
mod fit;
mod json;
mod log;
mod model;
mod options;
mod rpc;
mod session;
mod stream;

use pyo3::prelude::*;

/// Whether this build can offload layers to a GPU.
#[pyfunction]
fn supports_gpu_offload(py: Python<'_>) -> bool {
    py.detach(corral::supports_gpu_offload)
}

/// The ggml CPU library in use (`"sapphirerapids"`, `"zen4"`, `"haswell"`, ...): the best of
/// those shipped in the package for this CPU.
#[pyfunction]
fn cpu_variant(py: Python<'_>) -> PyResult<String> {
    use crate::error::OrRaise;
    py.detach(corral::cpu_variant).or_raise(py).map(|v| v.name)
}

/// Number of physical cores: the default of `Model(threads=...)`.
#[pyfunction]
fn default_threads() -> u32 {
    corral::default_threads()
}

#[pymodule(gil_used = false)]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", corral::VERSION)?;
    m.add_class::<model::PyModel>()?;
    m.add_class::<model::PyModelInfo>()?;
    m.add_class::<model::PyEngineStats>()?;
    m.add_class::<model::PySpecialToken>()?;
    m.add_class::<session::PySession>()?;
    m.add_class::<embed::PyEmbeddings>()?;
    m.add_class::<embed::PyCancelToken>()?;
    m.add_class::<fit::PyMemoryEstimate>()?;
    m.add_class::<stream::PyStream>()?;
    m.add_class::<stream::PyChunk>()?;
    m.add_class::<stream::PyCompletion>()?;
    m.add_class::<stream::PyUsage>()?;
    m.add_class::<stream::PyToolCall>()?;
    m.add_class::<stream::PyToolCallDelta>()?;
    m.add_function(wrap_pyfunction!(log::set_log_handler, m)?)?;
    m.add_function(wrap_pyfunction!(supports_gpu_offload, m)?)?;
    m.add_function(wrap_pyfunction!(cpu_variant, m)?)?;
    m.add_function(wrap_pyfunction!(default_threads, m)?)?;
    m.add_function(wrap_pyfunction!(fit::estimate_memory, m)?)?;
    m.add_function(wrap_pyfunction!(rpc::serve_rpc, m)?)?;
    error::register(m)?;
    Ok(())
}
