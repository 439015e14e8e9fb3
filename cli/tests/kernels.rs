//! corral's CPU kernels stay as close to ggml's kernels on the same variant as two of ggml's own
//! variants are to each other (`corral bench-kernels`: mean KL divergence of next-token
//! distributions over a text, perplexity beside it), for prompts and for generation.

use std::path::PathBuf;
use std::process::Command;

fn model() -> PathBuf {
    std::env::var_os("CORRAL_TEST_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/SmolLM2-135M-Instruct.Q4_1.gguf"))
}

fn compare(variant: &str, other: &str, one_token: bool) -> serde_json::Value {
    // English text in every checkout.
    let text = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let mut command = Command::new(env!("CARGO_BIN_EXE_corral"));
    command.arg("bench-kernels").arg(model()).arg(text);
    command.args(["--variant", variant, "--other-variant", other, "--tokens", "768", "--window", "384", "--json"]);
    if one_token {
        command.arg("--one-token");
    }
    let output = command.output().expect("corral runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("JSON")
}

#[test]
fn corral_kernels_are_as_close_to_ggml_as_ggml_variants_are_to_each_other() {
    // haswell: AVX2 only; zen4: AVX-512 with VNNI. Both run on this project's x86-64 machines
    // (a variant this CPU cannot run is skipped).
    for (variant, other, one_token) in [("haswell", "skylakex", false), ("zen4", "haswell", false), ("zen4", "haswell", true)] {
        if variant == "zen4" && !std::arch::is_x86_feature_detected!("avx512vnni") {
            continue;
        }
        if other == "skylakex" && !std::arch::is_x86_feature_detected!("avx512f") {
            continue;
        }
        let report = compare(variant, other, one_token);
        let sides = report["sides"].as_array().unwrap();
        let (corral, ggml_other) = (&sides[1], &sides[2]);
        let (corral_kl, spread) = (corral["mean_kl"].as_f64().unwrap(), ggml_other["mean_kl"].as_f64().unwrap());
        // Within 1.5x of ggml's own spread (measured 1.07-1.09x), and within 1% perplexity.
        assert!(corral_kl <= 1.5 * spread, "{variant} one_token={one_token}: corral {corral_kl:.3e} vs ggml's spread {spread:.3e}");
        assert!(corral["perplexity_vs_ggml"].as_f64().unwrap().abs() < 0.01, "{report}");
    }
}
