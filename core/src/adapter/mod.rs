//! LoRA adapters: loaded once per model (`ModelOptions::adapters`, `Model::load_adapter`),
//! chosen per request (`GenerateOptions::adapters`), added and removed while the model serves.
//!
//! A request's adapters and their scales form its adapter set. The engine never mixes sets in
//! one decode: it runs one set per step and switches between steps (engine/mod.rs), and a
//! sequence's cached tokens are reused only by requests with the same set (`AdapterSet::key`),
//! so a prefix computed with one adapter never serves another. A scale of 0 drops the adapter
//! from the set: such a request is the base model's, bit for bit, and shares its cache.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::Arc;

use llama_cpp_2::model::LlamaModel;
use llama_cpp_sys_2 as sys;

use crate::error::{Error, ErrorKind, Result};
use crate::llama::context::raw_model;

/// An adapter file to load with the model, under a name requests choose it by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterFile {
    pub name: String,
    pub path: PathBuf,
}

/// A request's use of a loaded adapter.
#[derive(Debug, Clone, PartialEq)]
pub struct AdapterChoice {
    pub name: String,
    /// How strongly it applies: 1 = as trained, 0 = not at all.
    pub scale: f32,
}

/// The longest adapter name.
const MAX_NAME: usize = 256;
/// Scales beyond this are surely a mistake (and overflow activations).
const MAX_SCALE: f32 = 100.0;

/// A loaded LoRA adapter. Freed when the last request or engine step using it lets go.
pub(crate) struct Adapter {
    pub name: String,
    /// Identifies the file (size and metadata) in adapter-set keys and saved states.
    pub identity: u64,
    raw: NonNull<sys::llama_adapter_lora>,
    /// llama.cpp frees an adapter through its model: the model must outlive it.
    _model: Arc<LlamaModel>,
}

// SAFETY: llama.cpp only reads an adapter's tensors once loaded (contexts apply them in their
// graphs); freeing it is serialised with context creation below.
unsafe impl Send for Adapter {}
// SAFETY: as above.
unsafe impl Sync for Adapter {}

impl Drop for Adapter {
    fn drop(&mut self) {
        // llama.cpp removes the adapter from its model's set: not concurrently with a context
        // being made (which reads that set).
        let _guard = crate::backend::CONTEXT_CREATION.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: loaded by llama_adapter_lora_init on a model that is still alive, freed once.
        unsafe { sys::llama_adapter_lora_free(self.raw.as_ptr()) }
    }
}

impl Adapter {
    pub(crate) fn raw(&self) -> *mut sys::llama_adapter_lora {
        self.raw.as_ptr()
    }
}

fn invalid(name: &str, path: &Path, what: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::InvalidModel, format!("adapter {name:?} ({}): {what}", path.display()))
}

pub(crate) fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(Error::invalid_argument(format!("an adapter name is 1 to {MAX_NAME} printable characters, got {name:?}")));
    }
    Ok(())
}

/// Loads the LoRA adapter at `path` for `model` (of `architecture`). The file is untrusted:
/// corral reads its header first; llama.cpp then checks every tensor against the model.
pub(crate) fn load(model: &Arc<LlamaModel>, architecture: &str, name: &str, path: &Path) -> Result<Adapter> {
    check_name(name)?;
    let header = crate::model::gguf::read_header(path).map_err(|e| match e.kind() {
        ErrorKind::ModelNotFound => Error::new(ErrorKind::ModelNotFound, format!("adapter {name:?}: file not found: {}", path.display())),
        _ => invalid(name, path, e),
    })?;
    if header.get_str("general.type") != Some("adapter") || header.get_str("adapter.type") != Some("lora") {
        return Err(invalid(name, path, "not a LoRA adapter (general.type must be \"adapter\" and adapter.type \"lora\")"));
    }
    match header.get_str("general.architecture") {
        Some(arch) if arch == architecture => {}
        other => {
            return Err(invalid(name, path, format!("made for architecture {:?}, the model is {architecture:?}", other.unwrap_or("none"))))
        }
    }
    if let Some(alpha) = header.metadata.get("adapter.lora.alpha") {
        if !alpha.as_f64().is_some_and(|a| a.is_finite()) {
            return Err(invalid(name, path, format!("adapter.lora.alpha is {alpha}")));
        }
    }
    let metadata = serde_json::to_vec(&header.metadata).unwrap_or_default();
    let identity = crate::state::fnv1a(&metadata, crate::state::fnv1a(&header.file_size.to_le_bytes(), crate::state::FNV_OFFSET));
    let c_path =
        CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| Error::invalid_argument("the adapter path contains a NUL byte"))?;
    let raw = {
        let _guard = crate::backend::CONTEXT_CREATION.lock().unwrap_or_else(|e| e.into_inner());
        crate::log::clear_last_llama_error();
        // SAFETY: a live model and a NUL-terminated path. llama.cpp catches its own exceptions
        // (a tensor missing from the model, a wrong shape) and returns null; asserts become
        // exceptions inside this call.
        crate::llama::guard::catching_asserts(|| unsafe { sys::llama_adapter_lora_init(raw_model(model), c_path.as_ptr()) })
    };
    let Some(raw) = NonNull::new(raw) else {
        let detail = crate::llama::guard::take_assert_message()
            .or_else(crate::log::take_last_llama_error)
            .unwrap_or_else(|| "llama.cpp cannot load it".into());
        return Err(invalid(name, path, format!("does not fit this model: {detail}")));
    };
    Ok(Adapter { name: name.to_string(), identity, raw, _model: model.clone() })
}

/// The adapters a request runs with, and their scales (none: the base model).
#[derive(Clone, Default)]
pub(crate) struct AdapterSet {
    /// By name; no zero scales.
    pub entries: Vec<(Arc<Adapter>, f32)>,
    /// Equal for sets that compute the same KV cells: names, file identities and scales.
    pub key: String,
}

impl std::fmt::Debug for AdapterSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.key)
    }
}

impl AdapterSet {
    /// The set `choices` name, from the model's loaded adapters (`find`).
    pub(crate) fn resolve(choices: &[AdapterChoice], find: impl Fn(&str) -> Option<Arc<Adapter>>) -> Result<AdapterSet> {
        let mut entries: Vec<(Arc<Adapter>, f32)> = Vec::with_capacity(choices.len());
        for choice in choices {
            if !choice.scale.is_finite() || choice.scale.abs() > MAX_SCALE {
                return Err(Error::invalid_argument(format!(
                    "the scale of adapter {:?} must be a number from -{MAX_SCALE} to {MAX_SCALE}, got {}",
                    choice.name, choice.scale
                )));
            }
            let adapter =
                find(&choice.name).ok_or_else(|| Error::invalid_argument(format!("no adapter named {:?} is loaded", choice.name)))?;
            if choices.iter().filter(|c| c.name == choice.name).count() > 1 {
                return Err(Error::invalid_argument(format!("adapter {:?} is chosen twice", choice.name)));
            }
            if choice.scale != 0.0 {
                entries.push((adapter, choice.scale));
            }
        }
        entries.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        let key = entries
            .iter()
            .map(|(adapter, scale)| format!("{}#{:016x}*{:08x}", adapter.name, adapter.identity, scale.to_bits()))
            .collect::<Vec<_>>()
            .join(",");
        Ok(AdapterSet { entries, key })
    }

    /// Makes this set the one `ctx` applies (llama.cpp re-plans its graphs on a change).
    pub(crate) fn apply(&self, ctx: *mut sys::llama_context) {
        let mut adapters: Vec<*mut sys::llama_adapter_lora> = self.entries.iter().map(|(a, _)| a.raw()).collect();
        let mut scales: Vec<f32> = self.entries.iter().map(|(_, s)| *s).collect();
        let (adapters_ptr, scales_ptr) =
            if adapters.is_empty() { (std::ptr::null_mut(), std::ptr::null_mut()) } else { (adapters.as_mut_ptr(), scales.as_mut_ptr()) };
        // SAFETY: a live context of the adapters' model; `n` adapters and scales (null when
        // none, as llama.cpp asks). The caller keeps the adapters alive while they are set.
        unsafe { sys::llama_set_adapters_lora(ctx, adapters_ptr, adapters.len(), scales_ptr) };
    }
}
