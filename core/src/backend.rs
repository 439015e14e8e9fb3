//! The process-wide llama.cpp backend. llama-cpp-2's `LlamaBackend::init` succeeds only once
//! per process, so corral owns the single instance here and no caller ever sees it.

use std::sync::{Mutex, OnceLock};

use llama_cpp_2::llama_backend::LlamaBackend;

use crate::error::{Error, Result};

static BACKEND: OnceLock<std::result::Result<LlamaBackend, String>> = OnceLock::new();
static LOGGING: OnceLock<()> = OnceLock::new();

/// Creating llama contexts concurrently is unsound (llama.cpp mutates the model while doing
/// it), so every context creation takes this lock.
pub(crate) static CONTEXT_CREATION: Mutex<()> = Mutex::new(());

/// Routes llama.cpp's log into corral's log before anything can print to stderr.
pub(crate) fn ensure_logging() {
    LOGGING.get_or_init(|| {
        crate::log::install_env_logger();
        // SAFETY: the callback is a plain function that never unwinds; null user data.
        unsafe {
            llama_cpp_sys_2::llama_log_set(Some(crate::log::llama_log_callback), std::ptr::null_mut());
            llama_cpp_sys_2::ggml_log_set(Some(crate::log::llama_log_callback), std::ptr::null_mut());
        }
    });
}

/// The backend, initialised on first use.
pub(crate) fn backend() -> Result<&'static LlamaBackend> {
    ensure_logging();
    BACKEND
        .get_or_init(|| LlamaBackend::init().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| Error::internal(format!("llama.cpp backend failed to initialise: {e}")))
}

/// Whether this build can offload layers to a GPU.
pub fn supports_gpu_offload() -> bool {
    backend().map(|b| b.supports_gpu_offload()).unwrap_or(false)
}
