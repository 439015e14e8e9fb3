//! What loading a model takes in memory, before loading it (core's `estimate_memory`).

use std::ffi::c_char;

use crate::boundary::{fill_out, try_str};
use crate::error::{corral_status, fail};
use crate::params::{corral_model_params, model_options};

/// What a model takes in memory with given parameters (bytes). Filled by corral_estimate_memory.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct corral_memory_estimate {
    /// The context length the figures are for (CORRAL_CONTEXT_LENGTH_AUTO resolved).
    pub context_length: u32,
    /// The weights, with the copies the CPU backend repacks for its kernels.
    pub weights_bytes: u64,
    /// Of weights_bytes, what is mapped from the file (pageable: not counted as required).
    pub mapped_weights_bytes: u64,
    pub kv_cache_bytes: u64,
    /// Compute buffers and one step's logits.
    pub compute_bytes: u64,
    /// corral's and llama.cpp's own code and tables.
    pub overhead_bytes: u64,
    /// The expected resident size of the loaded model (the sum of the above).
    pub total_bytes: u64,
    /// What must fit in memory: total_bytes less mapped_weights_bytes.
    pub required_bytes: u64,
    /// Memory the process can still take (its cgroup's limit, else the machine's available
    /// memory); 0 where the system does not say.
    pub available_bytes: u64,
    /// Whether required_bytes fits in available_bytes (true where that is unknown).
    pub fits: bool,
}

/// Estimates what corral_model_load(path, params) would take in memory, without loading the
/// weights (llama.cpp sizes every buffer in a dry run). `params` may be NULL (defaults).
/// Errors: CORRAL_ERR_NULL_ARGUMENT, CORRAL_ERR_INVALID_UTF8, CORRAL_ERR_MODEL_NOT_FOUND,
/// CORRAL_ERR_INVALID_MODEL, CORRAL_ERR_INVALID_ARGUMENT. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn corral_estimate_memory(
    path: *const c_char,
    params: *const corral_model_params,
    out_estimate: *mut corral_memory_estimate,
) -> corral_status {
    fill_out!(try_str!(path), out_estimate, |path| {
        // SAFETY: NULL or valid params (this function's contract).
        let options = unsafe { model_options(params) }?;
        let e = corral::estimate_memory(path, &options).map_err(fail)?;
        Ok(corral_memory_estimate {
            context_length: e.context_length,
            weights_bytes: e.weights_bytes,
            mapped_weights_bytes: e.mapped_weights_bytes,
            kv_cache_bytes: e.kv_cache_bytes,
            compute_bytes: e.compute_bytes,
            overhead_bytes: e.overhead_bytes,
            total_bytes: e.total_bytes,
            required_bytes: e.required_bytes(),
            available_bytes: e.available_bytes.unwrap_or(0),
            fits: e.fits(),
        })
    })
}
