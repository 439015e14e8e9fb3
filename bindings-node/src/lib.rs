//! Node.js binding of corral (napi-rs): a thin layer over corral-core. Options and results are
//! converted here and everything slow runs on napi's blocking thread pool, never on the event
//! loop. The TypeScript layer in `src-ts/` wraps this module (`native/`) with async iterators,
//! error classes and `AbortSignal` support. Each file mirrors the core module it wraps.

mod chat;
mod embed;
mod error;
mod fit;
mod log;
mod model;
mod openai;
mod options;
mod rpc;
mod session;
mod stream;

use napi_derive::napi;

/// Runs `f` on a blocking-pool thread and maps its error. A panic inside becomes an
/// `internal` error instead of unwinding into Node.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> corral::Result<T> + Send + 'static) -> napi::Result<T> {
    match napi::bindgen_prelude::spawn_blocking(f).await {
        Ok(result) => result.map_err(error::to_napi),
        Err(e) => Err(error::internal(format!("a corral worker thread failed: {e}"))),
    }
}

/// corral's version.
#[napi(catch_unwind)]
pub fn version() -> String {
    corral::VERSION.to_string()
}

/// Whether this build can offload layers to a GPU.
#[napi(catch_unwind)]
pub fn supports_gpu_offload() -> bool {
    corral::supports_gpu_offload()
}

/// The ggml CPU library in use (`sapphirerapids`, `zen4`, `haswell`, ...): the best of those
/// shipped in the package for this CPU.
#[napi(catch_unwind)]
pub fn cpu_variant() -> napi::Result<String> {
    use crate::error::OrThrow;
    corral::cpu_variant().map(|v| v.name).or_throw()
}

/// The default thread count (physical cores).
#[napi(catch_unwind)]
pub fn default_threads() -> u32 {
    corral::default_threads()
}
