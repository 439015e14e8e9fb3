//! corral's CPU kernels stay as close to ggml's kernels on the same variant as two of ggml's own
//! variants are to each other (`corral bench-kernels`: mean KL divergence of next-token
//! distributions over a text, perplexity beside it), for prompts and for generation, on the
//! default model (Q4_1) and on Q4_K_M (mostly Q5_0, with Q8_0, Q4_K, Q6_K) and Q4_0 files made
//! from it; and they are no further than ggml's from exact arithmetic on the same weights
//! (`--exact`: the file dequantized to F32, an F32 KV cache).

use std::path::PathBuf;
use std::process::Command;

fn model() -> PathBuf {
    std::env::var_os("CORRAL_TEST_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/SmolLM2-135M-Instruct.Q4_1.gguf"))
}

fn compare(model: &std::path::Path, variant: &str, other: &str, one_token: bool) -> serde_json::Value {
    // English text in every checkout.
    let text = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let mut command = Command::new(env!("CARGO_BIN_EXE_corral"));
    command.arg("bench-kernels").arg(model).arg(text);
    command.args(["--variant", variant, "--other-variant", other, "--tokens", "768", "--window", "384", "--exact", "--json"]);
    if one_token {
        command.arg("--one-token");
    }
    let output = command.output().expect("corral runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("JSON")
}

/// A `kind` (Q4_K_M, Q4_0, ...) file made from the default model with `corral quantize`, in `dir`.
fn quantized_model(dir: &std::path::Path, kind: &str) -> PathBuf {
    let out = dir.join(format!("smollm2-{kind}.gguf"));
    let status = Command::new(env!("CARGO_BIN_EXE_corral")).arg("quantize").arg(model()).arg(&out).arg(kind).status().unwrap();
    assert!(status.success());
    out
}

#[test]
fn corral_kernels_are_as_close_to_ggml_as_ggml_variants_are_to_each_other() {
    let dir = std::env::temp_dir().join(format!("corral-kernels-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (k_quants, q4_0) = (quantized_model(&dir, "Q4_K_M"), quantized_model(&dir, "Q4_0"));
    // haswell: AVX2 only; zen4: AVX-512 with VNNI. Both run on this project's x86-64 machines
    // (a variant this CPU cannot run is skipped).
    let cases = [
        (model(), "haswell", "skylakex", false),
        (model(), "zen4", "haswell", false),
        (model(), "zen4", "haswell", true),
        (k_quants.clone(), "zen4", "haswell", false),
        (q4_0.clone(), "zen4", "haswell", false),
    ];
    for (model, variant, other, one_token) in cases {
        if variant == "zen4" && !std::arch::is_x86_feature_detected!("avx512vnni") {
            continue;
        }
        if other == "skylakex" && !std::arch::is_x86_feature_detected!("avx512f") {
            continue;
        }
        let report = compare(&model, variant, other, one_token);
        let sides = report["sides"].as_array().unwrap();
        let (ggml, corral, ggml_other) = (&sides[0], &sides[1], &sides[2]);
        let (corral_kl, spread) = (corral["mean_kl"].as_f64().unwrap(), ggml_other["mean_kl"].as_f64().unwrap());
        let case = format!("{} {variant} one_token={one_token}", model.display());
        // Within 1.5x of ggml's own spread (measured 1.01-1.09x), and within 1% perplexity.
        assert!(corral_kl <= 1.5 * spread, "{case}: corral {corral_kl:.3e} vs ggml's spread {spread:.3e}");
        assert!(corral["perplexity_vs_ggml"].as_f64().unwrap().abs() < 0.01, "{case}: {report}");
        // No further from exact arithmetic than the further of ggml's two variants, with a 10%
        // margin for a short text (measured over 2,048 tokens: 0.97-1.02x the nearer one).
        let from_exact = |side: &serde_json::Value| side["mean_kl_from_exact"].as_f64().unwrap();
        let ggml_from_exact = from_exact(ggml).max(from_exact(ggml_other));
        assert!(
            from_exact(corral) <= 1.1 * ggml_from_exact,
            "{case}: corral {:.3e} from exact, ggml {ggml_from_exact:.3e}",
            from_exact(corral)
        );
        assert!(from_exact(&sides[3]) == 0.0 && from_exact(corral) > 0.0, "{case}: {report}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `corral bench-kernel-speed` measures each side in a process of its own and reports every
/// figure with its ratio to ggml's (speed itself is not asserted: these machines are shared).
#[test]
fn bench_kernel_speed_reports_every_side() {
    let output = Command::new(env!("CARGO_BIN_EXE_corral"))
        .arg("bench-kernel-speed")
        .arg(model())
        .args(["--rounds", "1", "--threads", "1", "--json"])
        .output()
        .expect("corral runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let sides = report["sides"].as_array().unwrap();
    assert_eq!(sides.len(), 2, "{report}");
    assert!(sides[0]["kernels"].as_str().unwrap().starts_with("corral:") && sides[1]["kernels"].as_str().unwrap().starts_with("ggml:"));
    for side in sides {
        for figure in ["prompt_tokens_per_s", "generation_tokens_per_s", "streams_tokens_per_s"] {
            assert!(side[figure].as_f64().unwrap() > 0.0, "{report}");
        }
        assert_eq!(side["vs_ggml"].as_array().unwrap().len(), 3);
    }
    // ggml against itself: exactly 1.
    assert!(sides[1]["vs_ggml"].as_array().unwrap().iter().all(|r| r.as_f64() == Some(1.0)), "{report}");
    // A baseline folder without the variant is a clear error, not a crash.
    let missing = Command::new(env!("CARGO_BIN_EXE_corral"))
        .arg("bench-kernel-speed")
        .arg(model())
        .args(["--rounds", "1", "--baseline", "/nonexistent"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(!missing.status.success() && stderr.contains("[invalid_argument]") && stderr.contains("does not exist"), "{stderr}");
}

/// A K-quant file (Q6_K, with Q8_0 where rows are too short) made from the default model:
/// - its K-quant weights stay with corral's kernels at load. On AMX CPUs (the sapphirerapids
///   variant) ggml's AMX buffer would otherwise take them, repacked for its own code, which
///   ran K-quant prompts and generation slower; its Q8_0 weights still go there.
/// - its next-token distributions are the same, bit for bit, whether its tokens are decoded one
///   at a time (generation's kernels) or as one prompt.
#[test]
fn k_quant_weights_reach_corrals_kernels_and_give_the_same_results_at_every_batch_size() {
    let dir = std::env::temp_dir().join(format!("corral-kernels-batch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("smollm2-Q6_K.gguf");
    corral::quantize(model(), &file, "Q6_K", 2).unwrap();

    // llama.cpp logs each tensor its AMX buffer repacks: "... amx repack tensor NAME of type TYPE".
    let output = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["complete", "--max-tokens", "1", "--threads", "2"])
        .arg(&file)
        .arg("Hello")
        .env("CORRAL_LOG", "debug")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let log = String::from_utf8_lossy(&output.stderr);
    let repacked: Vec<&str> = log.lines().filter(|l| l.contains("amx repack tensor")).collect();
    let k_quants: Vec<&&str> =
        repacked.iter().filter(|l| ["q4_K", "q5_K", "q6_K"].iter().any(|t| l.ends_with(&format!("of type {t}")))).collect();
    assert!(k_quants.is_empty(), "ggml's AMX buffer took K-quant weights: {k_quants:?}");
    if corral::cpu_variant().unwrap().name == "sapphirerapids" {
        assert!(!repacked.is_empty(), "no AMX repacking logged: the check above saw nothing\n{log}");
    }

    let model =
        corral::Model::load(&file, corral::ModelOptions { context_length: Some(256), max_sequences: 1, ..Default::default() }).unwrap();
    let tokens = model.tokenize("The capital of France is Paris, and the capital of Italy is Rome. Both cities", true, false).unwrap();
    drop(model);
    let rows = |one_token: bool| {
        let mut rows = Vec::new();
        corral::bench::next_token_logprobs(&file, &tokens, tokens.len(), 2, one_token, false, |row, _| {
            rows.push(row.to_vec());
            Ok(())
        })
        .unwrap();
        rows
    };
    let (prompt, one_by_one) = (rows(false), rows(true));
    assert_eq!((prompt.len(), one_by_one.len()), (tokens.len() - 1, tokens.len() - 1));
    for (position, (a, b)) in prompt.iter().zip(&one_by_one).enumerate() {
        let differing = a.iter().zip(b).filter(|(x, y)| x.to_bits() != y.to_bits()).count();
        assert_eq!(differing, 0, "position {position}: {differing} of {} log-probabilities differ", a.len());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Q4_0 weights stay out of ggml's CPU repack, which would otherwise take them at load on every
/// AVX2 CPU for its own GEMM, and so reach corral's kernel (core/build.rs edits the repack).
#[test]
fn q4_0_weights_stay_out_of_ggmls_repack() {
    let dir = std::env::temp_dir().join(format!("corral-kernels-q4_0-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = quantized_model(&dir, "Q4_0");
    // llama.cpp logs each tensor its CPU repack takes: "... repack tensor NAME with q4_0_8x8".
    // The haswell variant (AVX2, no AMX buffer before the repack), corral's and ggml's own.
    let shipped = corral::cpu_variant().unwrap().path.parent().unwrap().join("libggml-cpu-haswell.so");
    let ggml = PathBuf::from(corral::bench::GGML_BACKEND_DIR).join("libggml-cpu-haswell.so");
    let repacked = |library: &std::path::Path, name: &str| {
        let folder = dir.join(name);
        std::fs::create_dir_all(&folder).unwrap();
        std::os::unix::fs::symlink(library, folder.join("libggml-cpu-haswell.so")).unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_corral"))
            .args(["complete", "--max-tokens", "1", "--threads", "2"])
            .arg(&file)
            .arg("Hello")
            .env("CORRAL_LOG", "debug")
            .env("CORRAL_BACKEND_DIR", &folder)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stderr).lines().filter(|l| l.contains("repack tensor")).count()
    };
    assert_eq!(repacked(&shipped, "corral"), 0, "ggml's repack took Q4_0 weights in corral's variant");
    assert!(repacked(&ggml, "ggml") > 0, "ggml's own variant logged no repacking: the check above saw nothing");
    std::fs::remove_dir_all(&dir).unwrap();
}
