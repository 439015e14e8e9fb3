//! Many requests on one model at once: continuous batching, prefix cache, cancellation,
//! deadlines, queue limits, KV pressure and memory stability.

use std::path::PathBuf;
use std::time::Duration;

use corral::{ErrorKind, FinishReason, GenerateOptions, KvFullPolicy, Model, ModelOptions};


fn model_path() -> PathBuf {
    std::env::var_os("CORRAL_TEST_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/SmolLM2-135M-Instruct.Q4_1.gguf"))
}

fn load(options: ModelOptions) -> Model {
    Model::load(model_path(), options).expect("model loads")
}

fn greedy(max_tokens: u32) -> GenerateOptions {
    GenerateOptions { max_tokens: Some(max_tokens), temperature: 0.0, ..Default::default() }
}

fn prompt(i: usize) -> String {
    // Mixed lengths: 1 to ~200 words.
    let words = ["alpha", "river", "stone", "cloud", "ember", "maple", "quartz", "harbor"];
    let body: Vec<&str> = (0..(i * 37) % 200 + 1).map(|k| words[(k + i) % words.len()]).collect();
    format!("Story {i}: {}. Then", body.join(" "))
}

#[test]
fn mixed_concurrent_requests_with_cancels_and_deadlines() {
    let model = load(ModelOptions { context_length: Some(8192), max_sequences: 16, threads: Some(2), ..Default::default() });
    let n = 12;
    let with_logprobs = GenerateOptions { logprobs: Some(3), ..greedy(24) };
    // Reference: each prompt alone.
    let expected: Vec<corral::Completion> = (0..n).map(|i| model.complete(&prompt(i), &with_logprobs).unwrap()).collect();
    model.clear_cache().unwrap();
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let model = model.clone();
            std::thread::spawn(move || match i % 4 {
                // Cancelled midway.
                1 => {
                    let mut stream = model.complete_stream(&prompt(i), &GenerateOptions { ignore_eos: true, ..greedy(500) }).unwrap();
                    let _ = stream.next();
                    stream.cancel();
                    let rest: Vec<_> = stream.collect::<Result<Vec<_>, _>>().unwrap();
                    assert_eq!(rest.last().and_then(|c| c.finish_reason), Some(FinishReason::Cancelled));
                    None
                }
                // Deadline far shorter than the generation.
                2 => {
                    let options = GenerateOptions { timeout: Some(Duration::from_millis(200)), ignore_eos: true, ..greedy(2000) };
                    let err = model.complete(&prompt(i), &options).unwrap_err();
                    assert_eq!(err.kind(), ErrorKind::DeadlineExceeded);
                    None
                }
                _ => Some((i, model.complete(&prompt(i), &GenerateOptions { logprobs: Some(3), ..greedy(24) }).unwrap())),
            })
        })
        .collect();
    for h in handles {
        if let Some((i, done)) = h.join().unwrap() {
            // Batching changes llama.cpp's floating-point summation order (attention runs over
            // the shared KV cache), so greedy texts may diverge where two tokens are nearly tied.
            // The logits themselves agree within a small tolerance.
            let alone = &expected[i].logprobs[0];
            let batched = &done.logprobs[0];
            for top in &alone.top {
                let other = batched.top.iter().find(|t| t.token == top.token);
                if let Some(other) = other {
                    assert!((top.logprob - other.logprob).abs() < 0.2, "request {i}: {top:?} vs {other:?}");
                }
            }
            if alone.top[0].logprob - alone.top[1].logprob > 0.4 {
                assert_eq!(batched.token.token, alone.token.token, "request {i}");
            }
            assert_eq!(done.usage.completion_tokens, 24);
            assert!(done.usage.queue_ms >= 0.0 && done.usage.time_to_first_token_ms > 0.0);
        }
    }
    // The model still serves requests normally afterwards (alone and uncached: bit-identical).
    model.clear_cache().unwrap();
    assert_eq!(model.complete(&prompt(0), &greedy(24)).unwrap().text, expected[0].text);
}

#[test]
fn shared_prefix_is_reused_across_requests() {
    let model = load(ModelOptions { context_length: Some(4096), max_sequences: 4, ..Default::default() });
    let document = "The committee met on Tuesday to review the annual budget. ".repeat(40);
    let first = model.complete(&format!("{document}\nQuestion: when did they meet?"), &greedy(4)).unwrap();
    let second = model.complete(&format!("{document}\nQuestion: what did they review?"), &greedy(4)).unwrap();
    assert_eq!(first.usage.cached_tokens, 0);
    assert!(second.usage.cached_tokens as f64 > 0.9 * first.usage.prompt_tokens as f64 - 20.0, "{:?}", second.usage);
    let stats = model.stats();
    assert_eq!(stats.requests, 2);
    assert_eq!(stats.cached_tokens, second.usage.cached_tokens as u64);
    assert_eq!(stats.generated_tokens, 8);
}

#[test]
fn full_queue_is_busy() {
    let model = load(ModelOptions { context_length: Some(1024), max_sequences: 1, max_queued: 1, ..Default::default() });
    let long = GenerateOptions { ignore_eos: true, ..greedy(200) };
    let running = model.complete_stream("One", &long).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let queued = model.complete_stream("Two", &greedy(2)).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let err = model.complete("Three", &greedy(2)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Busy);
    running.cancel();
    drop(running);
    assert_eq!(queued.collect_completion().unwrap().usage.completion_tokens, 2);
}

#[test]
fn kv_full_waits_or_fails_as_configured() {
    let long = GenerateOptions { ignore_eos: true, ..greedy(150) };
    for policy in [KvFullPolicy::Wait, KvFullPolicy::Error] {
        let model = load(ModelOptions { context_length: Some(512), max_sequences: 4, on_kv_full: policy, ..Default::default() });
        let mut first = model.complete_stream(&"stone ".repeat(300), &long).unwrap();
        let _ = first.next(); // the first request holds 300+ cells of 512 from here on
        let first = std::thread::spawn(move || first.collect_completion());
        // Needs 250 more cells.
        let second = model.complete(&"river ".repeat(250), &greedy(4));
        match policy {
            KvFullPolicy::Wait => assert_eq!(second.unwrap().usage.completion_tokens, 4),
            KvFullPolicy::Error => assert_eq!(second.unwrap_err().kind(), ErrorKind::ContextOverflow),
        }
        // The first chunk was taken above.
        assert_eq!(first.join().unwrap().unwrap().usage.completion_tokens, 150);
    }
}

