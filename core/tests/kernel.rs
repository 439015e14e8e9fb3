//! corral's Q4_1 GEMM (core/kernels/q4_1_gemm.cpp, linked into the CPU variants that ship)
//! gives bit-identical results to the ggml library it replaces: the same prompt scores and the
//! same greedy tokens with the same log-probabilities, through the variants as ggml built them
//! and as corral relinked them. The backend is chosen once per process, so each side runs in a
//! child process of this test binary.

use std::path::{Path, PathBuf};
use std::process::Command;

const CHILD: &str = "CORRAL_KERNEL_TEST_CHILD";

fn model_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// Prompt scores (batches of up to 128 tokens, the last of 4k+3 tokens) and a greedy generation
/// (one token per batch) with log-probabilities, as exact bit patterns.
fn fingerprint() -> String {
    let model = corral::Model::load(&model_path(), corral::ModelOptions { threads: Some(2), ..Default::default() }).unwrap();
    let text = "The history of computing is a story of people, ideas and machines. ".repeat(30);
    let mut tokens = model.tokenize(&text, true, false).unwrap();
    tokens.truncate(128 * 2 + 4 * 5 + 3 + 1);
    let scores = model.score(&tokens).unwrap();
    let options = corral::GenerateOptions { max_tokens: Some(24), temperature: 0.0, logprobs: Some(2), ..Default::default() };
    let done = model.complete("Once upon a time", &options).unwrap();
    let generated: Vec<String> = done.logprobs.iter().map(|l| format!("{}:{:08x}", l.token.token, l.token.logprob.to_bits())).collect();
    let scored: Vec<String> = scores.iter().map(|s| format!("{:08x}", s.to_bits())).collect();
    format!("variant={}\nscores={}\ngenerated={}", corral::cpu_variant().unwrap().name, scored.join(","), generated.join(","))
}

fn fingerprint_with(backend_dir: &Path) -> String {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_fingerprint", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env("CORRAL_BACKEND_DIR", backend_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "child failed: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let start = stdout.find("<<<").expect("fingerprint start") + 3;
    let end = stdout.find(">>>").expect("fingerprint end");
    stdout[start..end].to_string()
}

#[test]
fn child_fingerprint() {
    if std::env::var_os(CHILD).is_some() {
        println!("<<<{}>>>", fingerprint());
    }
}

#[test]
fn relinked_variants_match_ggml_bit_for_bit() {
    let shipped = PathBuf::from(env!("CORRAL_BUILD_RUNTIME_DIR"));
    let as_ggml_built = PathBuf::from(env!("CORRAL_BUILD_BACKEND_DIR"));
    let ours = fingerprint_with(&shipped);
    let theirs = fingerprint_with(&as_ggml_built);
    assert!(ours.contains("scores=") && ours.len() > 2000, "{ours}");
    assert_eq!(ours, theirs);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // The variant this CPU runs is one of the relinked ones.
        let variant = ours.lines().next().unwrap().trim_start_matches("variant=");
        let library = std::fs::read(shipped.join(format!("libggml-cpu-{variant}.so"))).unwrap();
        let marker = b"ggml_llamafile_sgemm";
        assert!(library.windows(marker.len()).any(|w| w == marker), "libggml-cpu-{variant}.so lacks corral's Q4_1 GEMM");
    }
}

/// ggml's `struct ggml_compute_params` (ggml-cpu-impl.h): the kernel reads ith, nth, use_ref.
#[repr(C)]
struct ComputeParams {
    ith: i32,
    nth: i32,
    wsize: usize,
    wdata: *mut libc::c_void,
    threadpool: *mut libc::c_void,
    use_ref: bool,
}

type Sgemm = unsafe extern "C" fn(
    *const ComputeParams, i64, i64, i64, *const u8, i64, *const u8, i64, *mut f32, i64, i32, i32, i32,
) -> bool;
type VecDot = unsafe extern "C" fn(i32, *mut f32, usize, *const u8, usize, *const u8, usize, i32);

const Q4_1_BLOCK: usize = 20; // f16 scale, f16 min, 16 bytes of nibbles
const Q8_1_BLOCK: usize = 36; // f16 scale, f16 scale * sum, 32 signed bytes
const GGML_TYPE_F32: i32 = 0;
const GGML_TYPE_Q4_1: i32 = 3;
const GGML_TYPE_Q8_1: i32 = 9;

/// Random blocks with finite f16 scales of either sign.
fn random_blocks(count: usize, block: usize, seed: &mut u64) -> Vec<u8> {
    let mut next = || {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (*seed >> 33) as u32
    };
    let mut bytes = Vec::with_capacity(count * block);
    for _ in 0..count {
        for _ in 0..2 {
            let r = next();
            // sign, exponent 8..15 (2^-7 .. 1), random mantissa
            let half = ((r & 1) << 15) | ((8 + (r >> 1) % 8) << 10) | ((r >> 4) & 0x3FF);
            bytes.extend_from_slice(&(half as u16).to_le_bytes());
        }
        bytes.extend((0..block - 4).map(|_| next() as u8));
    }
    bytes
}

/// Every tile shape (rows and columns left over after whole 4 x 4 tiles), split over two
/// threads, against ggml's own dot product for each (row, column), bit for bit.
#[test]
fn gemm_matches_ggml_dot_products_for_every_tile_shape() {
    if std::env::var_os(CHILD).is_some() {
        return;
    }
    // The libraries as shipped (a test binary would otherwise find ggml's, beside libllama).
    std::env::set_var("CORRAL_BACKEND_DIR", env!("CORRAL_BUILD_RUNTIME_DIR"));
    let variant = corral::cpu_variant().unwrap();
    let path = std::ffi::CString::new(variant.path.to_str().unwrap()).unwrap();
    // SAFETY: the library is already loaded by the backend; dlopen only takes a reference.
    let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD) };
    assert!(!handle.is_null(), "{} is not loaded", variant.path.display());
    let symbol = |name: &str| {
        let name = std::ffi::CString::new(name).unwrap();
        // SAFETY: a symbol lookup in a loaded library.
        unsafe { libc::dlsym(handle, name.as_ptr()) }
    };
    #[cfg(target_arch = "x86_64")]
    let relinked = std::arch::is_x86_feature_detected!("avx2");
    #[cfg(not(target_arch = "x86_64"))]
    let relinked = false;
    if !relinked {
        return; // only AVX2 variants carry corral's GEMM
    }
    assert!(!symbol("ggml_llamafile_sgemm").is_null(), "{} lacks corral's Q4_1 GEMM", variant.path.display());
    // SAFETY: both symbols have these C signatures (ggml-cpu's sgemm.h and quants.h).
    let sgemm: Sgemm = unsafe { std::mem::transmute(symbol("llamafile_sgemm")) };
    let vec_dot: VecDot = unsafe { std::mem::transmute(symbol("ggml_vec_dot_q4_1_q8_1")) };
    let mut seed = 7;
    for k in [1usize, 3, 18] {
        for m in [1usize, 2, 3, 4, 5, 7, 13] {
            for n in 1usize..=9 {
                let a = random_blocks(m * k, Q4_1_BLOCK, &mut seed);
                let b = random_blocks(n * k, Q8_1_BLOCK, &mut seed);
                let mut c = vec![f32::NAN; m * n];
                for ith in 0..2 {
                    let params = ComputeParams {
                        ith,
                        nth: 2,
                        wsize: 0,
                        wdata: std::ptr::null_mut(),
                        threadpool: std::ptr::null_mut(),
                        use_ref: false,
                    };
                    let (k, m, n) = (k as i64, m as i64, n as i64);
                    // SAFETY: a is m x k Q4_1 blocks, b is n x k Q8_1 blocks, c holds m x n floats.
                    let handled = unsafe {
                        sgemm(&params, m, n, k, a.as_ptr(), k, b.as_ptr(), k, c.as_mut_ptr(), m, GGML_TYPE_Q4_1, GGML_TYPE_Q8_1, GGML_TYPE_F32)
                    };
                    assert!(handled, "Q4_1 x Q8_1 must be taken by corral's GEMM");
                }
                for row in 0..m {
                    for col in 0..n {
                        let mut expected = 0f32;
                        // SAFETY: one row of k Q4_1 blocks and one column of k Q8_1 blocks.
                        unsafe {
                            vec_dot((k * 32) as i32, &mut expected, 0, a[row * k * Q4_1_BLOCK..].as_ptr(), 0, b[col * k * Q8_1_BLOCK..].as_ptr(), 0, 1)
                        };
                        let got = c[col * m + row];
                        assert_eq!(got.to_bits(), expected.to_bits(), "k={k} m={m} n={n} row={row} col={col}: {got} vs {expected}");
                    }
                }
            }
        }
    }
}
