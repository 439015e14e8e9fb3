//! `estimate_memory`: what loading a model takes in memory, before loading it.

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::error::OrRaise;
use crate::fields::pymethods_with_fields;
use crate::options::{model_options, path_arg, Keywords};

/// What a model takes in memory with given load options, in bytes.
#[pyclass(name = "MemoryEstimate", module = "corral", frozen)]
pub struct PyMemoryEstimate(corral::MemoryEstimate);

pymethods_with_fields! {
impl PyMemoryEstimate {
    /// The context length the figures are for ("auto" resolved).
    context_length: u32,
    /// The weights, with the copies the CPU backend repacks for its kernels.
    weights_bytes: u64,
    /// Of weights_bytes, what is mapped from the file (pageable: not counted as required).
    mapped_weights_bytes: u64,
    kv_cache_bytes: u64,
    /// Compute buffers and one step's logits.
    compute_bytes: u64,
    /// corral's and llama.cpp's own code and tables.
    overhead_bytes: u64,
    /// The expected resident size of the loaded model (the sum of the above).
    total_bytes: u64,
    /// Memory this process can still take (its cgroup's limit, else the machine's available
    /// memory); None where the system does not say.
    available_bytes: Option<u64>,
}

    /// What must fit in memory: total_bytes less mapped_weights_bytes.
    #[getter]
    fn required_bytes(&self) -> u64 {
        self.0.required_bytes()
    }

    /// Whether required_bytes fits in available_bytes (True where that is unknown).
    #[getter]
    fn fits(&self) -> bool {
        self.0.fits()
    }

    fn __repr__(&self) -> String {
        let mib = |bytes: u64| bytes as f64 / f64::from(1 << 20);
        format!(
            "MemoryEstimate(context_length={}, total={:.1} MiB, weights={:.1} MiB, kv_cache={:.1} MiB, compute={:.1} MiB, fits={})",
            self.0.context_length,
            mib(self.0.total_bytes),
            mib(self.0.weights_bytes),
            mib(self.0.kv_cache_bytes),
            mib(self.0.compute_bytes),
            if self.0.fits() { "True" } else { "False" }
        )
    }
}

/// What loading `path` with these options (the keywords of `Model`) takes in memory, without
/// loading the weights: llama.cpp sizes every buffer in a dry run. `context_length="auto"` is
/// resolved as a load would resolve it now.
#[pyfunction]
#[pyo3(
    signature = (path, **options),
    text_signature = "(path, *, context_length=None, threads=None, gpu_layers=None, use_mmap=None, use_mlock=None, max_sequences=None, batch_size=None, flash_attention=None, rpc_servers=None, rpc_split=None)"
)]
pub fn estimate_memory(py: Python<'_>, path: &Bound<'_, PyAny>, options: Option<Bound<'_, PyDict>>) -> PyResult<PyMemoryEstimate> {
    let keywords = Keywords::new("estimate_memory()", options, &[])?;
    let path = path_arg(py, path)?;
    let options = model_options(py, &keywords)?;
    py.detach(move || corral::estimate_memory(path, &options)).or_raise(py).map(PyMemoryEstimate)
}
