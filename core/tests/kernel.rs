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
