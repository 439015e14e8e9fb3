//! The process-wide llama.cpp backend. llama-cpp-2's `LlamaBackend::init` succeeds only once
//! per process, so corral owns the single instance here and no caller ever sees it.
//!
//! llama.cpp is built with `dynamic-backends`: ggml's CPU code exists once per x86-64 feature
//! level as `libggml-cpu-<variant>.so` (x64, haswell, skylakex, sapphirerapids with AMX, ...).
//! Before the backend is initialised, corral finds the folder holding those libraries, asks
//! each variant how well it suits this CPU (`ggml_backend_score`) and loads the best one.
//! The folder is the first of, in order:
//! 1. `CORRAL_BACKEND_DIR`, when set (then only that folder);
//! 2. the folder of the loaded `libllama` (packages ship the variants beside it);
//! 3. the folder of the library or program that contains corral;
//! 4. the folder the build staged them in, as packages ship them (a `cargo` build or test on the
//!    build machine).

pub(crate) mod rpc;

use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use llama_cpp_2::llama_backend::LlamaBackend;

use crate::error::{Error, Result};

static BACKEND: OnceLock<std::result::Result<LlamaBackend, String>> = OnceLock::new();
static CPU_VARIANT: OnceLock<CpuVariant> = OnceLock::new();

/// Creating llama contexts concurrently is unsound (llama.cpp mutates the model while doing
/// it), so every context creation takes this lock.
pub(crate) static CONTEXT_CREATION: Mutex<()> = Mutex::new(());

/// The ggml CPU library loaded for this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuVariant {
    /// The variant's name: `sapphirerapids`, `icelake`, `haswell`, `x64`, ...
    pub name: String,
    /// The file it was loaded from.
    pub path: PathBuf,
}

/// The backend, initialised on first use (after the CPU variant is loaded).
pub(crate) fn backend() -> Result<&'static LlamaBackend> {
    crate::log::ensure_logging();
    BACKEND
        .get_or_init(|| {
            let variant = load_backend_libraries()?;
            tracing::info!(variant = %variant.name, path = %variant.path.display(), "loaded the ggml CPU backend");
            let _ = CPU_VARIANT.set(variant);
            LlamaBackend::init().map_err(|e| format!("llama.cpp backend failed to initialise: {e}"))
        })
        .as_ref()
        .map_err(|message| Error::internal(message.clone()))
}

/// The CPU variant this process uses, loading it if needed.
pub fn cpu_variant() -> Result<CpuVariant> {
    backend()?;
    CPU_VARIANT.get().cloned().ok_or_else(|| Error::internal("no ggml CPU backend is loaded"))
}

/// The entry point `name` that the loaded backend `reg` exports (ggml's get_proc_address), if
/// it has one.
pub(crate) fn proc_address(reg: llama_cpp_sys_2::ggml_backend_reg_t, name: &CStr) -> Option<*mut std::ffi::c_void> {
    if reg.is_null() {
        return None;
    }
    // SAFETY: a registered backend and a NUL-terminated name; null when there is no such entry.
    let address = unsafe { llama_cpp_sys_2::ggml_backend_reg_get_proc_address(reg, name.as_ptr()) };
    (!address.is_null()).then_some(address)
}

/// The loaded CPU variant's backend registration (null where no CPU device is registered).
pub(crate) fn cpu_registration() -> llama_cpp_sys_2::ggml_backend_reg_t {
    // SAFETY: plain queries of ggml's registries, filled when the backends were loaded.
    unsafe {
        let device = llama_cpp_sys_2::ggml_backend_dev_by_type(llama_cpp_sys_2::GGML_BACKEND_DEVICE_TYPE_CPU);
        if device.is_null() {
            return std::ptr::null_mut();
        }
        llama_cpp_sys_2::ggml_backend_dev_backend_reg(device)
    }
}

/// Whether this build can offload layers to a GPU.
pub fn supports_gpu_offload() -> bool {
    backend().map(|b| b.supports_gpu_offload()).unwrap_or(false)
}

const CPU_PREFIX: &str = "libggml-cpu-";
const LIB_SUFFIX: &str = ".so";

fn load_backend_libraries() -> std::result::Result<CpuVariant, String> {
    let dirs = backend_dir_candidates();
    let Some(dir) = dirs.iter().find(|dir| !cpu_variant_files(dir).is_empty()) else {
        let searched: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        return Err(format!(
            "no llama.cpp CPU backend found: no {CPU_PREFIX}*{LIB_SUFFIX} in {}; \
             install corral with its libraries, or set CORRAL_BACKEND_DIR to their folder",
            if searched.is_empty() { "any folder".to_string() } else { searched.join(", ") }
        ));
    };
    let variant = best_cpu_variant(dir)?;
    load_library(&variant.path)?;
    // GPU backends built alongside (libggml-cuda.so, libggml-vulkan.so, ...) register too.
    for path in accelerator_files(dir) {
        if let Err(message) = load_library(&path) {
            tracing::warn!("{message}");
        }
    }
    Ok(variant)
}

fn backend_dir_candidates() -> Vec<PathBuf> {
    if let Some(dir) = std::env::var_os("CORRAL_BACKEND_DIR").filter(|d| !d.is_empty()) {
        return vec![PathBuf::from(dir)];
    }
    let mut dirs = Vec::new();
    dirs.extend(object_dir_of(llama_cpp_sys_2::llama_backend_init as *const libc::c_void));
    dirs.extend(object_dir_of(load_backend_libraries as *const libc::c_void));
    if let Some(dir) = option_env!("CORRAL_BUILD_RUNTIME_DIR") {
        dirs.push(PathBuf::from(dir));
    }
    dirs.dedup();
    dirs
}

/// The folder of the shared object (or program) whose code contains `address`.
fn object_dir_of(address: *const libc::c_void) -> Option<PathBuf> {
    // SAFETY: dladdr only reads the loader's tables; `info` is plain data it fills in.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    if unsafe { libc::dladdr(address, &mut info) } == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dli_fname is a NUL-terminated string owned by the loader.
    let file = PathBuf::from(unsafe { CStr::from_ptr(info.dli_fname) }.to_string_lossy().into_owned());
    // The main program may be reported by a bare or relative name.
    let file = std::fs::canonicalize(&file).or_else(|_| std::env::current_exe()).ok()?;
    file.parent().map(Path::to_path_buf)
}

fn cpu_variant_files(dir: &Path) -> Vec<PathBuf> {
    library_files(dir, |name| name.starts_with(CPU_PREFIX))
}

fn accelerator_files(dir: &Path) -> Vec<PathBuf> {
    library_files(dir, |name| name.starts_with("libggml-") && !name.starts_with(CPU_PREFIX) && !name.starts_with("libggml-base"))
}

fn library_files(dir: &Path, keep: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with(LIB_SUFFIX) && keep(n)))
        .collect();
    files.sort();
    files
}

/// Scores every CPU variant in `dir` the way ggml does, keeping the reasons of those that
/// failed to load (a missing dependency shows up here, not as a silent fallback).
fn best_cpu_variant(dir: &Path) -> std::result::Result<CpuVariant, String> {
    let mut best: Option<(i32, PathBuf)> = None;
    let mut failures = Vec::new();
    for path in cpu_variant_files(dir) {
        match variant_score(&path) {
            Ok(score) if score > best.as_ref().map_or(0, |(s, _)| *s) => best = Some((score, path)),
            Ok(_) => {}
            Err(message) => failures.push(message),
        }
    }
    match best {
        Some((_, path)) => {
            let file = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let name = file.trim_start_matches(CPU_PREFIX).trim_end_matches(LIB_SUFFIX).to_string();
            Ok(CpuVariant { name, path })
        }
        None if failures.is_empty() => {
            Err(format!("no llama.cpp CPU backend in {} supports this CPU (x86-64 with at least SSE4.2/AVX2 is needed)", dir.display()))
        }
        None => Err(format!("no llama.cpp CPU backend in {} could be loaded: {}", dir.display(), failures.join("; "))),
    }
}

fn variant_score(path: &Path) -> std::result::Result<i32, String> {
    let handle = Library::open(path)?;
    // SAFETY: `ggml_backend_score` has this signature in every ggml backend library.
    let score: Option<unsafe extern "C" fn() -> i32> = unsafe { handle.symbol(c"ggml_backend_score") };
    match score {
        // SAFETY: the function takes no arguments and only inspects CPU features.
        Some(score) => Ok(unsafe { score() }),
        None => Err(format!("{} has no ggml_backend_score", path.display())),
    }
}

fn load_library(path: &Path) -> std::result::Result<(), String> {
    let c_path = CString::new(path.to_string_lossy().as_bytes()).map_err(|_| format!("bad path {}", path.display()))?;
    // SAFETY: a valid C string; ggml keeps the library loaded for the life of the process.
    let registered = unsafe { llama_cpp_sys_2::ggml_backend_load(c_path.as_ptr()) };
    if registered.is_null() {
        return Err(format!("llama.cpp could not load the backend {}", path.display()));
    }
    Ok(())
}

/// A `dlopen` handle, closed on drop.
struct Library(*mut libc::c_void);

impl Library {
    fn open(path: &Path) -> std::result::Result<Library, String> {
        let c_path = CString::new(path.to_string_lossy().as_bytes()).map_err(|_| format!("bad path {}", path.display()))?;
        // SAFETY: a valid C string; RTLD_LOCAL keeps the probe's symbols out of the process.
        let handle = unsafe { libc::dlopen(c_path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if handle.is_null() {
            // SAFETY: dlerror returns the thread's last loader error, or null.
            let reason = unsafe { libc::dlerror() };
            let reason = if reason.is_null() {
                "unknown error".to_string()
            } else {
                unsafe { CStr::from_ptr(reason) }.to_string_lossy().into_owned()
            };
            // The loader's message names the file.
            return Err(reason);
        }
        Ok(Library(handle))
    }

    /// # Safety
    /// `F` must be the symbol's real (function pointer) type.
    unsafe fn symbol<F: Copy>(&self, name: &CStr) -> Option<F> {
        let address = libc::dlsym(self.0, name.as_ptr());
        (!address.is_null()).then(|| std::mem::transmute_copy(&address))
    }
}

impl Drop for Library {
    fn drop(&mut self) {
        // SAFETY: the handle came from dlopen and is closed once.
        unsafe { libc::dlclose(self.0) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_variant_that_cannot_load_is_reported_with_the_loader_error() {
        let dir = std::env::temp_dir().join(format!("corral-broken-backend-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("libggml-cpu-broken.so"), b"not a library").unwrap();
        let message = best_cpu_variant(&dir).unwrap_err();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(message.contains("libggml-cpu-broken.so") && message.contains("could be loaded"), "{message}");
    }
}
