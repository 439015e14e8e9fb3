//! Fit before loading: `estimate_memory` against the peak RSS of a process that loads the
//! model and generates, and loads in a memory cgroup too small for the options
//! (`insufficient_memory`, not the OOM killer; `auto_context_length` fits).
//!
//! The measurements run in child processes (this test binary again, running only
//! `child_process`), so that no other test's model is in the figures.

#[path = "support/models.rs"]
mod models;

use std::process::Command;

use corral::{ErrorKind, ModelOptions};
use models::{default_model, greedy};

const CHILD: &str = "CORRAL_FIT_CHILD";

/// Runs `child_process` in a new process with `CORRAL_FIT_CHILD=task` (and `extra` env), and
/// returns its stdout.
fn run_child(task: &str, extra: &[(&str, String)]) -> String {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.args(["--exact", "child_process", "--nocapture", "--test-threads=1"]).env(CHILD, task);
    for (key, value) in extra {
        command.env(key, value);
    }
    let output = command.output().expect("the test binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "child {task} failed: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    stdout
}

/// The value of `key=` in the child's output.
fn reported(stdout: &str, key: &str) -> String {
    stdout
        .lines()
        // libtest may print "test child_process ... " before the first line.
        .find_map(|line| line.split_once(&format!("{key}=")).map(|(_, value)| value))
        .unwrap_or_else(|| panic!("the child did not report {key}: {stdout}"))
        .to_string()
}

fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// What the parent asks of a child process.
#[test]
fn child_process() {
    let Ok(task) = std::env::var(CHILD) else { return };
    if let Ok(procs) = std::env::var("CORRAL_FIT_CGROUP_PROCS") {
        std::fs::write(procs, std::process::id().to_string()).expect("joins the cgroup");
    }
    let model = default_model();
    match task.as_str() {
        "peak" => {
            let context_length: u32 = std::env::var("CORRAL_FIT_CONTEXT").unwrap().parse().unwrap();
            let loaded = corral::Model::load(&model, ModelOptions { context_length: Some(context_length), ..Default::default() }).unwrap();
            // A prompt of a full micro-batch and a reply: what a chat server does.
            let prompt = "The history of the city is long and varied. ".repeat(60);
            loaded.complete(&prompt, &greedy(32)).unwrap();
            println!("peak={}", peak_rss_bytes());
        }
        "cgroup" => {
            let error = corral::Model::load(&model, ModelOptions { context_length: Some(32768), ..Default::default() }).unwrap_err();
            println!("too_large={}", error.kind().code());
            println!("message={error}");
            let loaded = corral::Model::load(&model, ModelOptions { auto_context_length: true, ..Default::default() }).unwrap();
            println!("auto_context={}", loaded.info().context_length);
            let reply = loaded.complete("The capital of France is", &greedy(8)).unwrap();
            println!("generated={}", reply.usage.completion_tokens);
        }
        other => panic!("unknown child task {other}"),
    }
}

#[test]
fn the_estimate_is_within_ten_percent_of_the_peak_rss() {
    for context_length in [2048u32, 32768] {
        let options = ModelOptions { context_length: Some(context_length), ..Default::default() };
        let estimate = corral::estimate_memory(default_model(), &options).unwrap();
        assert_eq!(estimate.context_length, context_length);
        // SmolLM2-135M: 30 layers x 3 KV heads x 64 x (K + V) x f16 per token.
        assert_eq!(estimate.kv_cache_bytes, 30 * 3 * 64 * 2 * 2 * u64::from(context_length));
        assert!(estimate.weights_bytes >= std::fs::metadata(default_model()).unwrap().len() * 9 / 10, "{estimate:?}");
        let sum = estimate.weights_bytes + estimate.kv_cache_bytes + estimate.compute_bytes + estimate.overhead_bytes;
        assert_eq!(estimate.total_bytes, sum);
        let peak: u64 = reported(&run_child("peak", &[("CORRAL_FIT_CONTEXT", context_length.to_string())]), "peak").parse().unwrap();
        let error = (estimate.total_bytes as f64 - peak as f64).abs() / peak as f64;
        eprintln!("context {context_length}: estimate {} MiB, peak RSS {} MiB", estimate.total_bytes >> 20, peak >> 20);
        assert!(
            error <= 0.10,
            "context {context_length}: estimate {} vs peak RSS {peak} ({:.1}% off)",
            estimate.total_bytes,
            error * 100.0
        );
    }
}

#[test]
fn estimates_follow_the_options_and_check_the_file() {
    let small = corral::estimate_memory(default_model(), &ModelOptions { context_length: Some(1024), ..Default::default() }).unwrap();
    let more = ModelOptions { context_length: Some(1024), max_sequences: 16, ..Default::default() };
    assert!(corral::estimate_memory(default_model(), &more).unwrap().compute_bytes > small.compute_bytes);
    let unmapped = ModelOptions { context_length: Some(1024), use_mmap: false, ..Default::default() };
    assert_eq!(corral::estimate_memory(default_model(), &unmapped).unwrap().mapped_weights_bytes, 0);
    // Auto with room to spare: the trained context.
    let auto = corral::estimate_memory(default_model(), &ModelOptions { auto_context_length: true, ..Default::default() }).unwrap();
    assert_eq!(auto.context_length, 8192);

    let missing = corral::estimate_memory("/nonexistent/model.gguf", &ModelOptions::default()).unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::ModelNotFound);
    let random = std::env::temp_dir().join(format!("corral-fit-random-{}.gguf", std::process::id()));
    std::fs::write(&random, b"GGUF\x03\x00\x00\x00garbage").unwrap();
    assert_eq!(corral::estimate_memory(&random, &ModelOptions::default()).unwrap_err().kind(), ErrorKind::InvalidModel);
    std::fs::remove_file(&random).unwrap();
    let absurd = ModelOptions { context_length: Some(1 << 30), ..Default::default() };
    assert_eq!(corral::estimate_memory(default_model(), &absurd).unwrap_err().kind(), ErrorKind::InvalidArgument);
    // Ten million tokens: 230 GB of KV cache, refused before anything is allocated.
    let huge = ModelOptions { context_length: Some(10_000_000), ..Default::default() };
    assert!(!corral::estimate_memory(default_model(), &huge).unwrap().fits());
    assert_eq!(corral::Model::load(default_model(), huge).unwrap_err().kind(), ErrorKind::InsufficientMemory);
    let both = ModelOptions { context_length: Some(512), auto_context_length: true, ..Default::default() };
    assert_eq!(corral::estimate_memory(default_model(), &both).unwrap_err().kind(), ErrorKind::InvalidArgument);
}

/// A cgroup v1 memory group of `limit` bytes for one child, removed on drop; `None` where this
/// process cannot make one (not root, or no v1 memory controller).
struct MemoryGroup(std::path::PathBuf);

impl MemoryGroup {
    fn new(limit: u64) -> Option<MemoryGroup> {
        let path = std::path::PathBuf::from(format!("/sys/fs/cgroup/memory/corral-fit-{}", std::process::id()));
        std::fs::create_dir(&path).ok()?;
        let group = MemoryGroup(path);
        std::fs::write(group.0.join("memory.limit_in_bytes"), limit.to_string()).ok()?;
        // Swap would let the process outgrow the limit slowly instead of being killed.
        let _ = std::fs::write(group.0.join("memory.memsw.limit_in_bytes"), limit.to_string());
        Some(group)
    }
}

impl Drop for MemoryGroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn a_load_that_cannot_fit_is_refused_and_auto_fits() {
    // Below the default model's estimate at its full trained context (8,192 tokens: about 322
    // MiB), so that `auto` has to shrink it: with 400 MiB and a lean test process the whole
    // context fitted.
    const LIMIT: u64 = 300 << 20;
    let Some(group) = MemoryGroup::new(LIMIT) else {
        eprintln!("skipped: cannot make a memory cgroup here (needs root and cgroup v1's memory controller)");
        return;
    };
    let procs = group.0.join("cgroup.procs").display().to_string();
    let stdout = run_child("cgroup", &[("CORRAL_FIT_CGROUP_PROCS", procs)]);
    eprintln!("in a {} MiB cgroup: {stdout}", LIMIT >> 20);
    assert_eq!(reported(&stdout, "too_large"), "insufficient_memory", "{stdout}");
    assert!(reported(&stdout, "message").contains("MiB available"), "{stdout}");
    let auto: u32 = reported(&stdout, "auto_context").parse().unwrap();
    assert!((256..8192).contains(&auto) && auto % 256 == 0, "auto picked {auto}");
    assert_eq!(reported(&stdout, "generated"), "8");
    // The group saw no OOM kill.
    let oom = std::fs::read_to_string(group.0.join("memory.oom_control")).unwrap_or_default();
    assert!(!oom.contains("oom_kill 1"), "{oom}");
}
