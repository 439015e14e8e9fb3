//! Many requests on one model at once: continuous batching, prefix cache, cancellation,
//! deadlines, queue limits, KV pressure and memory stability; and two models at once.

#[path = "support/models.rs"]
mod models;

use models::{greedy, load};

use std::time::Duration;

use corral::{ErrorKind, FinishReason, GenerateOptions, KvFullPolicy, ModelOptions};

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

/// A streaming request that joins while others generate holds its first token as soon as its
/// prompt is decoded, not one generation decode of the others later: the time its client waits
/// for it is the time to first token the engine reports, plus delivery.
#[test]
fn a_request_joining_busy_generation_gets_its_first_token_without_waiting_for_the_others() {
    let model = load(ModelOptions { context_length: Some(4096), max_sequences: 8, threads: Some(2), ..Default::default() });
    let running = GenerateOptions { ignore_eos: true, ..greedy(3000) };
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let busy: Vec<_> = (0..6)
        .map(|i| {
            let mut stream = model.complete_stream(&format!("Write a long story about {} dragons.", i + 2), &running).unwrap();
            let cancel = stream.cancel_handle();
            let started = started_tx.clone();
            let consumer = std::thread::spawn(move || {
                let first = stream.next().unwrap().unwrap();
                started.send(()).unwrap();
                let rest = stream.collect_completion().unwrap();
                (first.tokens.len() + rest.tokens.len(), rest.usage.generation_tokens_per_s)
            });
            (cancel, consumer)
        })
        .collect();
    // Every other request is generating from here on (3,000 tokens each: until cancelled).
    for _ in 0..6 {
        started_rx.recv().unwrap();
    }
    let mut gaps = vec![];
    for question in ["Why?", "When?", "Where?", "Who?", "How?"] {
        std::thread::sleep(Duration::from_millis(20));
        let started = std::time::Instant::now();
        let mut stream = model.complete_stream(question, &GenerateOptions { ignore_eos: true, ..greedy(1) }).unwrap();
        let chunk = stream.next().unwrap().unwrap();
        let waited = started.elapsed().as_secs_f64() * 1000.0;
        assert_eq!(chunk.tokens.len(), 1);
        let usage = chunk.usage.or_else(|| stream.collect_completion().ok().map(|c| c.usage)).expect("usage");
        gaps.push(waited - usage.time_to_first_token_ms);
    }
    let mut token_ms = vec![];
    for (cancel, consumer) in busy {
        cancel.cancel();
        let (generated, tokens_per_s) = consumer.join().unwrap();
        assert!(generated > 1 && generated < 3000);
        token_ms.push(1000.0 / tokens_per_s);
    }
    // Without the early hand-out a first token waits one generation decode: about one of the
    // others' token intervals. The best of five, so that one late wake-up does not decide.
    let best = gaps.iter().cloned().fold(f64::INFINITY, f64::min);
    let interval = token_ms.iter().cloned().fold(f64::INFINITY, f64::min);
    assert!(
        best < interval / 2.0,
        "first tokens reached the client {gaps:?} ms after the engine sampled them; the others took {interval:.1} ms a token"
    );
}

/// A request joining while others generate stops the generation decode in flight (crate
/// preempt.rs) and goes first; the stopped tokens are decoded again (preempt.rs tests that this
/// is bit for bit a decode never stopped). The joining requests give their tokens alone; the
/// running ones agree with their runs alone as far as batching allows (README, "Concurrency and
/// numerics"). llama.cpp's report of the abort does not reach the log as an error.
#[test]
fn a_joining_request_preempts_the_running_decode_without_changing_any_result() {
    let model = load(ModelOptions { context_length: Some(4096), max_sequences: 8, threads: Some(2), ..Default::default() });
    let running = GenerateOptions { ignore_eos: true, logprobs: Some(2), ..greedy(160) };
    let joining = GenerateOptions { ignore_eos: true, ..greedy(3) };
    let questions = ["Why?", "When?", "Where?", "Who?", "How?", "What for?"];
    let running_prompts: Vec<String> = (0..4).map(|i| format!("Write a long story about {} dragons.", i + 2)).collect();
    let alone: Vec<_> = running_prompts.iter().map(|p| model.complete(p, &running).unwrap().logprobs).collect();
    let expected_joining: Vec<_> = questions.iter().map(|q| model.complete(q, &joining).unwrap().tokens).collect();
    model.clear_cache().unwrap();

    let logged = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = logged.clone();
    corral::log::set_log_callback(
        Some(std::sync::Arc::new(move |_, source, message| {
            if source == "llama.cpp" {
                sink.lock().unwrap().push(message.to_string());
            }
        })),
        corral::log::LogLevel::Warn,
    );
    let before = model.stats().preemptions;
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let consumers: Vec<_> = running_prompts
        .iter()
        .map(|p| {
            let mut stream = model.complete_stream(p, &running).unwrap();
            let started = started_tx.clone();
            std::thread::spawn(move || {
                let mut logprobs = stream.next().unwrap().unwrap().logprobs;
                started.send(()).unwrap();
                logprobs.extend(stream.collect_completion().unwrap().logprobs);
                logprobs
            })
        })
        .collect();
    for _ in 0..consumers.len() {
        started_rx.recv().unwrap();
    }
    // Joins 7 ms apart: most land inside a generation decode, which is then stopped.
    for (question, expected) in questions.iter().zip(&expected_joining) {
        std::thread::sleep(Duration::from_millis(7));
        assert_eq!(&model.complete(question, &joining).unwrap().tokens, expected, "{question}");
    }
    let preemptions = model.stats().preemptions - before;
    for (consumer, alone) in consumers.into_iter().zip(&alone) {
        let batched = consumer.join().unwrap();
        assert_eq!(batched.len(), alone.len());
        // Batching alone moves a sequence's logits by up to a few tenths over 100 tokens here
        // (its cells sit elsewhere in the shared cache), so texts part where two tokens are
        // close; a token decoded twice or lost would change confident choices too.
        if let Some(i) = batched.iter().zip(alone).position(|(b, a)| b.token.token != a.token.token) {
            let margin = alone[i].top[0].logprob - alone[i].top[1].logprob;
            assert!(margin < 0.6, "token {i} changed with a margin of {margin}: {:?} alone {:?}", batched[i], alone[i]);
        }
    }
    corral::log::set_log_callback(None, corral::log::LogLevel::Warn);
    assert!(preemptions >= 1, "no join stopped a generation decode");
    let logged = logged.lock().unwrap();
    assert!(
        !logged.iter().any(|line| line.contains("failed to compute graph") || line.contains("removing memory module")),
        "the abort reached the log: {logged:?}"
    );
}

/// Two models generating at once in one process, each with a thread per core, take turns on the
/// cores decode by decode (see `cores.rs`, whose unit tests check the turns): both finish, with
/// the tokens each gives alone. How long it takes is a figure of `corral bench-concurrency`.
#[test]
fn two_models_generating_at_once_take_turns_on_the_cores() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    let options = ModelOptions { context_length: Some(1024), threads: Some(cores), ..Default::default() };
    let models = [load(options.clone()), load(options)];
    let generate = GenerateOptions { ignore_eos: true, ..greedy(48) };
    // Nothing cached before each run: greedy tokens are only reproducible from the same prompt decode.
    let begin = |i: usize| {
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let (model, generate) = (models[i].clone(), generate.clone());
        model.clear_cache().unwrap();
        std::thread::spawn(move || done_tx.send(model.complete(&format!("Write a long story about {i} dragons."), &generate)));
        done_rx
    };
    // A model that kept the cores while idle would stall the other for good: fail, do not hang.
    let finish = |done: std::sync::mpsc::Receiver<corral::Result<corral::Completion>>| {
        let completion = done.recv_timeout(Duration::from_secs(120)).expect("the model finishes").unwrap();
        assert_eq!(completion.usage.completion_tokens, 48);
        completion
    };
    let alone: Vec<_> = (0..models.len()).map(|i| finish(begin(i)).tokens).collect();
    for _ in 0..3 {
        let at_once: Vec<_> = (0..models.len()).map(begin).collect();
        for (i, done) in at_once.into_iter().enumerate() {
            assert_eq!(finish(done).tokens, alone[i], "model {i} at once gave other tokens than alone");
        }
    }
}
