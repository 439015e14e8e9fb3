//! `estimate_memory`: what loading a model takes in memory, before loading it.

use std::path::PathBuf;

use pyo3::prelude::*;

use crate::error::{invalid_type, type_name, OrRaise};
use crate::options::{model_options, LoadArgs};

/// What a model takes in memory with given load options, in bytes.
#[pyclass(name = "MemoryEstimate", module = "corral", frozen, get_all)]
pub struct PyMemoryEstimate {
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
    /// What must fit in memory: total_bytes less mapped_weights_bytes.
    required_bytes: u64,
    /// Memory this process can still take (its cgroup's limit, else the machine's available
    /// memory); None where the system does not say.
    available_bytes: Option<u64>,
    /// Whether required_bytes fits in available_bytes (True where that is unknown).
    fits: bool,
}

#[pymethods]
impl PyMemoryEstimate {
    fn __repr__(&self) -> String {
        let mib = |bytes: u64| bytes as f64 / f64::from(1 << 20);
        format!(
            "MemoryEstimate(context_length={}, total={:.1} MiB, weights={:.1} MiB, kv_cache={:.1} MiB, compute={:.1} MiB, fits={})",
            self.context_length,
            mib(self.total_bytes),
            mib(self.weights_bytes),
            mib(self.kv_cache_bytes),
            mib(self.compute_bytes),
            if self.fits { "True" } else { "False" }
        )
    }
}

/// What loading `path` with these options (the keywords of `Model`) takes in memory, without
/// loading the weights: llama.cpp sizes every buffer in a dry run. `context_length="auto"` is
/// resolved as a load would resolve it now.
#[pyfunction]
#[pyo3(signature = (path, *, context_length=None, threads=None, gpu_layers=None, use_mmap=None, use_mlock=None, max_sequences=None, batch_size=None, flash_attention=None, rpc_servers=None, rpc_split=None))]
#[allow(clippy::too_many_arguments)]
pub fn estimate_memory(
    py: Python<'_>,
    path: &Bound<'_, PyAny>,
    context_length: Option<Bound<'_, PyAny>>,
    threads: Option<Bound<'_, PyAny>>,
    gpu_layers: Option<Bound<'_, PyAny>>,
    use_mmap: Option<Bound<'_, PyAny>>,
    use_mlock: Option<Bound<'_, PyAny>>,
    max_sequences: Option<Bound<'_, PyAny>>,
    batch_size: Option<Bound<'_, PyAny>>,
    flash_attention: Option<Bound<'_, PyAny>>,
    rpc_servers: Option<Bound<'_, PyAny>>,
    rpc_split: Option<Bound<'_, PyAny>>,
) -> PyResult<PyMemoryEstimate> {
    let path: PathBuf =
        path.extract().map_err(|_| invalid_type(py, format!("path must be a str or os.PathLike, got {}", type_name(path))))?;
    let args = LoadArgs {
        context_length,
        threads,
        gpu_layers,
        use_mmap,
        use_mlock,
        max_sequences,
        batch_size,
        flash_attention,
        rpc_servers,
        rpc_split,
    };
    let options = model_options(py, args)?;
    let e = py.detach(move || corral::estimate_memory(path, &options)).or_raise(py)?;
    Ok(PyMemoryEstimate {
        context_length: e.context_length,
        weights_bytes: e.weights_bytes,
        mapped_weights_bytes: e.mapped_weights_bytes,
        kv_cache_bytes: e.kv_cache_bytes,
        compute_bytes: e.compute_bytes,
        overhead_bytes: e.overhead_bytes,
        total_bytes: e.total_bytes,
        required_bytes: e.required_bytes(),
        available_bytes: e.available_bytes,
        fits: e.fits(),
    })
}
