//! The CPU variant libraries corral ships, loaded one by one so that tests can call corral's
//! kernels in each of them directly (shared by kernel.rs and attention.rs).

use std::path::PathBuf;

/// ggml's `struct ggml_compute_params` (ggml-cpu-impl.h): corral's kernels read ith, nth, use_ref.
#[repr(C)]
pub struct ComputeParams {
    pub ith: i32,
    pub nth: i32,
    pub wsize: usize,
    pub wdata: *mut libc::c_void,
    pub threadpool: *mut libc::c_void,
    pub use_ref: bool,
}

impl ComputeParams {
    /// Thread `ith` of `nth`, without ggml's thread pool or work buffer (corral's kernels use neither).
    pub fn thread(ith: i32, nth: i32) -> ComputeParams {
        ComputeParams { ith, nth, wsize: 0, wdata: std::ptr::null_mut(), threadpool: std::ptr::null_mut(), use_ref: false }
    }
}

/// Whether the shipped variants for this CPU carry corral's kernels (the AVX2 ones do).
pub fn relinked() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("avx2");
    #[cfg(not(target_arch = "x86_64"))]
    return false;
}

pub struct Variant {
    pub name: String,
    handle: *mut libc::c_void,
}

impl Variant {
    /// The address of `name` in this variant, null when it has none.
    pub fn symbol(&self, name: &str) -> *mut libc::c_void {
        let name = std::ffi::CString::new(name).unwrap();
        // SAFETY: a symbol lookup in a loaded library.
        unsafe { libc::dlsym(self.handle, name.as_ptr()) }
    }
}

/// Every shipped variant that defines `marker` and that this CPU can run, initialised.
pub fn with_symbol(marker: &str) -> Vec<Variant> {
    let runtime = PathBuf::from(env!("CORRAL_BUILD_RUNTIME_DIR"));
    let mut found = vec![];
    for entry in std::fs::read_dir(&runtime).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_str().unwrap().to_string();
        let Some(name) = file.strip_prefix("libggml-cpu-").and_then(|n| n.strip_suffix(".so")) else {
            continue;
        };
        let c_path = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: a CPU variant of ggml: loading it registers nothing until its backend is initialised.
        let handle = unsafe { libc::dlopen(c_path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        assert!(!handle.is_null(), "{file} does not load");
        let variant = Variant { name: name.to_string(), handle };
        // SAFETY: ggml's backend score function, `int ggml_backend_score(void)`: 0 when this CPU lacks the variant's features.
        let score: unsafe extern "C" fn() -> i32 = unsafe { std::mem::transmute(variant.symbol("ggml_backend_score")) };
        if variant.symbol(marker).is_null() || unsafe { score() } == 0 {
            continue;
        }
        // SAFETY: `void ggml_cpu_init(void)` fills the fp16 tables ggml's conversions read.
        let cpu_init: unsafe extern "C" fn() = unsafe { std::mem::transmute(variant.symbol("ggml_cpu_init")) };
        unsafe { cpu_init() };
        found.push(variant);
    }
    found
}

/// A ggml forward op as the variants export it: `void ggml_compute_forward_*(const struct
/// ggml_compute_params *, struct ggml_tensor *)`.
#[allow(dead_code)] // kernel.rs calls its kernels through their own signatures
pub type ForwardOp = unsafe extern "C" fn(*const ComputeParams, *mut llama_cpp_sys_2::ggml_tensor);

/// Runs `op` on `dst` as `threads` threads (each called in turn, as ggml's would run it
/// in parallel) after filling its first `len` f32 values with NaN, so that every element must
/// be written; returns them and frees `ctx`, the context holding the tensors.
///
/// # Safety
/// `dst` is an f32 tensor of at least `len` elements in `ctx` whose sources `op` can read.
#[allow(dead_code)]
pub unsafe fn run_f32(
    ctx: *mut llama_cpp_sys_2::ggml_context,
    op: ForwardOp,
    dst: *mut llama_cpp_sys_2::ggml_tensor,
    len: usize,
    threads: i32,
) -> Vec<f32> {
    std::ptr::write_bytes((*dst).data as *mut f32, 0xFF, len);
    for ith in 0..threads {
        let params = ComputeParams::thread(ith, threads);
        op(&params, dst);
    }
    let out = std::slice::from_raw_parts((*dst).data as *const f32, len).to_vec();
    llama_cpp_sys_2::ggml_free(ctx);
    out
}

/// The forward op `symbol` of every shipped variant that carries `marker` and runs here; the
/// variant this CPU runs must be among them.
#[allow(dead_code)]
pub fn forward_ops(marker: &str, symbol: &str) -> Vec<(String, ForwardOp)> {
    let ops: Vec<(String, ForwardOp)> = with_symbol(marker)
        .into_iter()
        // SAFETY: every `ggml_compute_forward_*` has ForwardOp's signature (ops.h).
        .map(|v| (v.name.clone(), unsafe { std::mem::transmute::<*mut libc::c_void, ForwardOp>(v.symbol(symbol)) }))
        .collect();
    let running = corral::cpu_variant().unwrap().name;
    assert!(ops.iter().any(|(name, _)| *name == running), "the variant running here ({running}) lacks {marker}");
    ops
}
