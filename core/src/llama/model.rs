//! Loading a model with llama.cpp's own parameters. llama-cpp-2's `LlamaModelParams` names
//! devices by their index among ggml's registered devices and cannot set how layers are split
//! between them; a model spread over RPC workers needs both (their devices are not registered
//! globally, so that no other model uses them). The loaded model is still llama-cpp-2's
//! `LlamaModel`.

use std::ffi::{c_void, CString};
use std::path::Path;
use std::ptr::NonNull;

use llama_cpp_2::model::LlamaModel;
use llama_cpp_sys_2 as sys;

/// How to load a model.
pub(crate) struct LoadParams<'a> {
    /// Layers placed on `devices` (the last ones; the rest stay on the CPU).
    pub gpu_layers: u32,
    pub use_mmap: bool,
    pub use_mlock: bool,
    /// The devices besides the CPU, in order; empty: every GPU ggml has registered.
    pub devices: &'a [sys::ggml_backend_dev_t],
    /// The share of the offloaded layers each of `devices` takes (empty: by free memory).
    pub tensor_split: &'a [f32],
    /// Called with the progress in [0, 1]; `false` cancels the load. It must not panic.
    pub progress: Option<&'a mut dyn FnMut(f32) -> bool>,
}

unsafe extern "C" fn progress_trampoline(progress: f32, data: *mut c_void) -> bool {
    // SAFETY: `data` is the `&mut dyn FnMut` of `load` below, alive during the load.
    let callback = unsafe { &mut *data.cast::<&mut dyn FnMut(f32) -> bool>() };
    callback(progress)
}

/// Loads `path`; `Err` carries nothing: the caller reads llama.cpp's reason from the assert
/// guard or the log. Asserts while loading are caught (src/llama/guard.rs).
pub(crate) fn load(path: &Path, mut params: LoadParams<'_>) -> Result<LlamaModel, ()> {
    let c_path = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| ())?;
    // SAFETY: plain data.
    let mut raw_params = unsafe { sys::llama_model_default_params() };
    raw_params.n_gpu_layers = params.gpu_layers.min(i32::MAX as u32) as i32;
    raw_params.load_mode = match (params.use_mmap, params.use_mlock) {
        (false, false) => sys::LLAMA_LOAD_MODE_NONE,
        (true, false) => sys::LLAMA_LOAD_MODE_MMAP,
        (false, true) => sys::LLAMA_LOAD_MODE_MLOCK,
        (true, true) => sys::LLAMA_LOAD_MODE_MMAP_MLOCK,
    };
    // llama.cpp reads a NULL-terminated device list and one split entry per device.
    let mut devices: Vec<sys::ggml_backend_dev_t> = params.devices.to_vec();
    devices.push(std::ptr::null_mut());
    if !params.devices.is_empty() {
        raw_params.devices = devices.as_mut_ptr();
        raw_params.split_mode = sys::LLAMA_SPLIT_MODE_LAYER;
    }
    // SAFETY: plain query.
    let max_devices = unsafe { sys::llama_max_devices() }.max(params.devices.len());
    let mut split = vec![0.0f32; max_devices];
    if !params.tensor_split.is_empty() {
        split[..params.tensor_split.len()].copy_from_slice(params.tensor_split);
        raw_params.tensor_split = split.as_ptr();
    }
    let mut progress = params.progress.take();
    if let Some(callback) = progress.as_mut() {
        raw_params.progress_callback = Some(progress_trampoline);
        raw_params.progress_callback_user_data = std::ptr::from_mut(callback).cast::<c_void>();
    }
    // SAFETY: a NUL-terminated path and parameters whose pointers (devices, split, callback)
    // outlive the call; llama.cpp copies what it keeps.
    let raw = crate::llama::guard::catching_asserts(|| unsafe { sys::llama_model_load_from_file(c_path.as_ptr(), raw_params) });
    let raw = NonNull::new(raw).ok_or(())?;
    // SAFETY: llama-cpp-2 (pinned) declares `LlamaModel` as `#[repr(transparent)]` over its
    // non-null model pointer (see context::raw_model); it frees the model on drop.
    Ok(unsafe { std::mem::transmute::<NonNull<sys::llama_model>, LlamaModel>(raw) })
}
