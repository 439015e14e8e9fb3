//! What the integration tests share: where the test models are, and the process's memory.
#![allow(dead_code)] // each test file uses part of it

use std::path::PathBuf;

/// A test model: the file `$variable` names, else `models/<file>` in the repository. Fails
/// naming the script that fetches it when it is missing.
pub fn test_model(variable: &str, file: &str, fetch: &str) -> PathBuf {
    let path = std::env::var_os(variable)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models").join(file));
    assert!(path.exists(), "test model missing at {}: run {fetch} (or set {variable})", path.display());
    path
}

/// The default model, SmolLM2-135M-Instruct Q4_1.
pub fn default_model() -> PathBuf {
    test_model("CORRAL_TEST_MODEL", "SmolLM2-135M-Instruct.Q4_1.gguf", "scripts/fetch-model.sh")
}

/// all-MiniLM-L6-v2 (f16), built by scripts/fetch-embedding-models.sh.
pub fn embedding_model() -> PathBuf {
    test_model("CORRAL_EMBED_MODEL", "all-MiniLM-L6-v2.f16.gguf", "scripts/fetch-embedding-models.sh")
}

/// The test-only reranker (MiniLM with a seeded random rank head).
pub fn reranker_model() -> PathBuf {
    test_model("CORRAL_RERANK_MODEL", "minilm-rank-test.gguf", "scripts/fetch-embedding-models.sh")
}

/// The default model with `options`.
pub fn load(options: corral::ModelOptions) -> corral::Model {
    corral::Model::load(default_model(), options).expect("the default model loads")
}

/// Greedy sampling (deterministic) of at most `max_tokens`.
pub fn greedy(max_tokens: u32) -> corral::GenerateOptions {
    corral::GenerateOptions { max_tokens: Some(max_tokens), temperature: 0.0, ..Default::default() }
}

/// The test-only LoRA adapters of the default model (`which` = 'a' or 'b'), built by
/// scripts/fetch-embedding-models.sh.
pub fn test_adapter(which: char) -> PathBuf {
    test_model(
        &format!("CORRAL_TEST_ADAPTER_{}", which.to_ascii_uppercase()),
        &format!("smollm2-lora-test-{which}.gguf"),
        "scripts/fetch-embedding-models.sh",
    )
}

/// A figure of this process's `/proc/self/status` in kB: `"VmRSS"` (resident now) or `"VmHWM"`
/// (the peak).
pub fn proc_status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}
