//! `estimateMemory`: what loading a model takes in memory, before loading it.

use napi_derive::napi;

use crate::blocking;
use crate::options::LoadOptions;

/// What a model takes in memory with given load options, in bytes.
#[napi(object)]
pub struct MemoryEstimate {
    /// The context length the figures are for (`'auto'` resolved).
    pub context_length: u32,
    /// The weights, with the copies the CPU backend repacks for its kernels.
    pub weights_bytes: f64,
    /// Of `weightsBytes`, what is mapped from the file (pageable: not counted as required).
    pub mapped_weights_bytes: f64,
    pub kv_cache_bytes: f64,
    /// Compute buffers and one step's logits.
    pub compute_bytes: f64,
    /// corral's and llama.cpp's own code and tables.
    pub overhead_bytes: f64,
    /// The expected resident size of the loaded model (the sum of the above).
    pub total_bytes: f64,
    /// What must fit in memory: `totalBytes` less `mappedWeightsBytes`.
    pub required_bytes: f64,
    /// Memory the process can still take (its cgroup's limit, else the machine's available
    /// memory); `null` where the system does not say.
    pub available_bytes: Option<f64>,
    /// Whether `requiredBytes` fits in `availableBytes` (true where that is unknown).
    pub fits: bool,
}

/// Estimates what `Model.load(path, options)` takes in memory without loading the weights
/// (llama.cpp sizes every buffer in a dry run), on a blocking-pool thread.
#[napi(catch_unwind)]
pub async fn estimate_memory(path: String, options: Option<LoadOptions>) -> napi::Result<MemoryEstimate> {
    let options = options.unwrap_or_default().to_core()?;
    let e = blocking(move || corral::estimate_memory(&path, &options)).await?;
    Ok(MemoryEstimate {
        context_length: e.context_length,
        weights_bytes: e.weights_bytes as f64,
        mapped_weights_bytes: e.mapped_weights_bytes as f64,
        kv_cache_bytes: e.kv_cache_bytes as f64,
        compute_bytes: e.compute_bytes as f64,
        overhead_bytes: e.overhead_bytes as f64,
        total_bytes: e.total_bytes as f64,
        required_bytes: e.required_bytes() as f64,
        available_bytes: e.available_bytes.map(|b| b as f64),
        fits: e.fits(),
    })
}
