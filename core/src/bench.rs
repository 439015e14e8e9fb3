//! The `corral bench` measurement: corral's engine against a plain llama-cpp-2 decode loop on
//! the same model, threads and prompt, interleaved in one run so machine noise hits both.

use std::path::Path;
use std::time::Instant;

use llama_cpp_2::context::params::{KvCacheType, LlamaContextParams};
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;

use crate::engine::ms;
use crate::error::{Error, ErrorKind, Result};
use crate::{GenerateOptions, Model, ModelOptions};

/// Settings of one benchmark run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub threads: u32,
    pub prompt_tokens: usize,
    pub generated_tokens: u32,
    pub context_length: u32,
    pub repeats: usize,
    /// `None`: llama.cpp decides (on for CPU), as corral's default does.
    pub flash_attention: Option<bool>,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            threads: crate::default_threads(),
            prompt_tokens: 512,
            generated_tokens: 128,
            context_length: 2048,
            repeats: 3,
            flash_attention: None,
        }
    }
}

/// Medians over the repeats.
#[derive(Debug, Clone, Default)]
pub struct BenchReport {
    pub load_s: f64,
    pub prompt_tokens_per_s: f64,
    pub generation_tokens_per_s: f64,
    pub plain_prompt_tokens_per_s: f64,
    pub plain_generation_tokens_per_s: f64,
    pub threads: u32,
    pub peak_rss_mb: f64,
    /// The ggml CPU library in use (`sapphirerapids`, `haswell`, ...).
    pub cpu_variant: String,
}

/// Peak resident memory of this process so far, in MB (Linux; 0 elsewhere).
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        0.0
    } else {
        v[v.len() / 2]
    }
}

/// A deterministic prompt of exactly `n` tokens.
pub fn bench_prompt(model: &Model, n: usize) -> Result<Vec<i32>> {
    let paragraph = "The history of computing is a story of people, ideas and machines. Early calculating \
        devices gave way to programmable computers, then to personal computers and phones. ";
    let mut text = String::new();
    let mut tokens = Vec::new();
    while tokens.len() < n {
        text.push_str(paragraph);
        tokens = model.tokenize(&text, true, false)?;
    }
    tokens.truncate(n);
    Ok(tokens)
}

/// Prompt and generation speed of a plain llama-cpp-2 loop: one batch for the prompt, then
/// one token per decode, greedy.
fn plain_run(llama: &LlamaModel, prompt: &[i32], config: &BenchConfig) -> Result<(f64, f64)> {
    let backend = crate::backend::backend()?;
    let params = LlamaContextParams::default()
        .with_n_ctx(std::num::NonZeroU32::new(config.context_length))
        .with_n_batch(512)
        .with_n_ubatch(512)
        .with_n_threads(config.threads as i32)
        .with_n_threads_batch(config.threads as i32)
        .with_flash_attention_policy(crate::llama::context::flash_attention_policy(config.flash_attention));
    let mut ctx = {
        let _guard = crate::backend::CONTEXT_CREATION.lock().unwrap_or_else(|e| e.into_inner());
        llama.new_context(backend, params).map_err(|e| Error::internal(format!("plain context: {e}")))?
    };
    let mut batch = LlamaBatch::new(512, 1);
    let decode_err = |e| Error::new(ErrorKind::DecodeFailed, format!("plain decode: {e}"));
    let started = Instant::now();
    for chunk_start in (0..prompt.len()).step_by(512) {
        batch.clear();
        let end = (chunk_start + 512).min(prompt.len());
        for (p, &t) in prompt.iter().enumerate().take(end).skip(chunk_start) {
            batch.add(LlamaToken(t), p as i32, &[0], p + 1 == prompt.len()).map_err(|e| Error::internal(e.to_string()))?;
        }
        ctx.decode(&mut batch).map_err(decode_err)?;
    }
    let prompt_s = started.elapsed().as_secs_f64();
    let mut sampler = LlamaSampler::greedy();
    let mut pos = prompt.len() as i32;
    let mut index = batch.n_tokens() - 1;
    let mut first = None;
    for _ in 0..config.generated_tokens {
        let token = sampler.sample(&ctx, index);
        if first.is_none() {
            first = Some(Instant::now());
        }
        batch.clear();
        batch.add(token, pos, &[0], true).map_err(|e| Error::internal(e.to_string()))?;
        ctx.decode(&mut batch).map_err(decode_err)?;
        pos += 1;
        index = 0;
    }
    // Same definition as corral's usage: tokens after the first, over the time since it.
    let generation_s = first.map(|f| f.elapsed().as_secs_f64()).unwrap_or(0.0);
    Ok((prompt.len() as f64 / prompt_s, (config.generated_tokens.saturating_sub(1)) as f64 / generation_s.max(1e-9)))
}

/// Runs the benchmark: corral and the plain loop, interleaved, `repeats` times each.
pub fn run(path: &Path, config: &BenchConfig) -> Result<BenchReport> {
    let started = Instant::now();
    let model = Model::load(
        path,
        ModelOptions {
            context_length: Some(config.context_length),
            threads: Some(config.threads),
            flash_attention: config.flash_attention,
            ..Default::default()
        },
    )?;
    let load_s = started.elapsed().as_secs_f64();
    let prompt = bench_prompt(&model, config.prompt_tokens)?;
    let llama = LlamaModel::load_from_file(crate::backend::backend()?, path, &LlamaModelParams::default())
        .map_err(|e| Error::new(ErrorKind::InvalidModel, format!("plain load: {e}")))?;
    let options = GenerateOptions { max_tokens: Some(config.generated_tokens), temperature: 0.0, ignore_eos: true, ..Default::default() };
    let (mut pp, mut tg, mut plain_pp, mut plain_tg) = (vec![], vec![], vec![], vec![]);
    for _ in 0..config.repeats {
        // Nothing cached: the whole prompt is evaluated every round.
        model.clear_cache()?;
        let done = model.generate(&prompt, &options)?;
        pp.push(done.usage.prompt_tokens_per_s);
        tg.push(done.usage.generation_tokens_per_s);
        let (p, g) = plain_run(&llama, &prompt, config)?;
        plain_pp.push(p);
        plain_tg.push(g);
    }
    Ok(BenchReport {
        load_s,
        prompt_tokens_per_s: median(pp),
        generation_tokens_per_s: median(tg),
        plain_prompt_tokens_per_s: median(plain_pp),
        plain_generation_tokens_per_s: median(plain_tg),
        threads: config.threads,
        peak_rss_mb: peak_rss_mb(),
        cpu_variant: crate::backend::cpu_variant()?.name,
    })
}

/// Figures of the concurrency benchmark (`corral bench-concurrency`).
#[derive(Debug, Clone, Default)]
pub struct ConcurrencyReport {
    /// (concurrent streams, aggregate generated tokens per second)
    pub aggregate_tokens_per_s: Vec<(usize, f64)>,
    /// The interleaved rounds of the 8-request and cached-prefix measurements.
    pub rounds: Vec<ConcurrencyRound>,
    pub threads: u32,
    /// Seconds for two models loaded side by side to generate 128 tokens each, one after the
    /// other and at once (they take turns on the cores, so at once should take about as long).
    pub two_models_one_after_the_other_s: f64,
    pub two_models_at_once_s: f64,
}

/// One round: the same 8 requests at once, then one after another (generated tokens per
/// second); then the time to first token of a question about a 1,000-token document with
/// nothing cached (cold), with the document cached by an earlier request (median of 3
/// questions), and the same while 7 other requests generate (median of 3 questions).
#[derive(Debug, Clone, Copy, Default)]
pub struct ConcurrencyRound {
    pub concurrent_tokens_per_s: f64,
    pub sequential_tokens_per_s: f64,
    pub cold_ttft_ms: f64,
    pub cached_ttft_ms: f64,
    pub cached_busy_ttft_ms: f64,
    /// Generation decodes stopped for a joining request in the round (EngineStats::preemptions).
    pub preemptions: u64,
}

impl ConcurrencyRound {
    pub fn concurrent_vs_sequential(&self) -> f64 {
        self.concurrent_tokens_per_s / self.sequential_tokens_per_s
    }
    pub fn cached_speedup(&self) -> f64 {
        self.cold_ttft_ms / self.cached_ttft_ms
    }
    pub fn cached_busy_speedup(&self) -> f64 {
        self.cold_ttft_ms / self.cached_busy_ttft_ms
    }
}

impl ConcurrencyReport {
    /// Two models at once over one after the other (about 1 when they take turns well).
    pub fn two_models_at_once_vs_one_after_the_other(&self) -> f64 {
        self.two_models_at_once_s / self.two_models_one_after_the_other_s
    }

    /// Median over the rounds of `figure`.
    pub fn median(&self, figure: impl Fn(&ConcurrencyRound) -> f64) -> f64 {
        median(self.rounds.iter().map(figure).collect())
    }
}

fn distinct_prompt(i: usize) -> String {
    const TOPICS: [&str; 16] = [
        "the ocean",
        "a mountain village",
        "the first computer",
        "a lost cat",
        "the history of bread",
        "a journey to Mars",
        "an old lighthouse",
        "the city at night",
        "a chess tournament",
        "a rainy day",
        "the last library",
        "a desert caravan",
        "a robot gardener",
        "the northern lights",
        "a jazz band",
        "a winter market",
    ];
    format!("Write a long story about {}.", TOPICS[i % TOPICS.len()])
}

/// Runs `n` requests at once and returns the aggregate generation speed.
fn concurrent_round(model: &Model, n: usize, tokens: u32) -> Result<f64> {
    let options = GenerateOptions { max_tokens: Some(tokens), temperature: 0.0, ignore_eos: true, ..Default::default() };
    let started = Instant::now();
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let model = model.clone();
            let options = options.clone();
            std::thread::spawn(move || model.complete(&distinct_prompt(i), &options))
        })
        .collect();
    let mut generated = 0u64;
    for h in handles {
        let done = h.join().map_err(|_| Error::internal("bench thread panicked"))??;
        generated += done.usage.completion_tokens as u64;
    }
    Ok(generated as f64 / started.elapsed().as_secs_f64())
}

/// Loads `path` for `streams` sequences and returns the aggregate generation speed of
/// `streams` requests of `tokens` tokens at once (`corral bench-kernel-speed`).
pub fn concurrent_tokens_per_s(path: &Path, threads: u32, streams: usize, tokens: u32) -> Result<f64> {
    let model = Model::load(
        path,
        ModelOptions { context_length: Some(4096), threads: Some(threads), max_sequences: streams as u32, ..Default::default() },
    )?;
    concurrent_round(&model, streams, tokens)
}

/// The concurrency benchmark: aggregate throughput at 1..16 streams, then `rounds` rounds of
/// 8 requests concurrent vs sequential and of cached-prefix time to first token. Rounds
/// interleave the two sides of each ratio, so that a slow spell on a shared machine hits both.
pub fn concurrency(path: &Path, threads: u32, flash_attention: Option<bool>, rounds: usize) -> Result<ConcurrencyReport> {
    let model = Model::load(
        path,
        ModelOptions { context_length: Some(8192), threads: Some(threads), max_sequences: 16, flash_attention, ..Default::default() },
    )?;
    let tokens = 128;
    let mut report = ConcurrencyReport { threads, ..Default::default() };
    for n in [1, 2, 4, 8, 16] {
        model.clear_cache()?;
        report.aggregate_tokens_per_s.push((n, concurrent_round(&model, n, tokens)?));
    }
    let options = GenerateOptions { max_tokens: Some(tokens), temperature: 0.0, ignore_eos: true, ..Default::default() };
    (report.two_models_one_after_the_other_s, report.two_models_at_once_s) = two_models(&model, path, threads, &options)?;
    let document = bench_prompt(&model, 1000)?;
    for _ in 0..rounds.max(1) {
        let preemptions_before = model.stats().preemptions;
        model.clear_cache()?;
        let concurrent_tokens_per_s = concurrent_round(&model, 8, tokens)?;
        // The same 8 requests one after another.
        model.clear_cache()?;
        let started = Instant::now();
        let mut generated = 0u64;
        for i in 0..8 {
            generated += model.complete(&distinct_prompt(i), &options)?.usage.completion_tokens as u64;
        }
        let sequential_tokens_per_s = generated as f64 / started.elapsed().as_secs_f64();
        model.clear_cache()?;
        let (cold_ttft_ms, cached_ttft_ms, cached_busy_ttft_ms) = prefix_ttft(&model, &document, &options)?;
        report.rounds.push(ConcurrencyRound {
            concurrent_tokens_per_s,
            sequential_tokens_per_s,
            cold_ttft_ms,
            cached_ttft_ms,
            cached_busy_ttft_ms,
            preemptions: model.stats().preemptions - preemptions_before,
        });
    }
    Ok(report)
}

/// A second model next to `model`: both generate one request, one after the other, then at once
/// (seconds, best of three each).
fn two_models(model: &Model, path: &Path, threads: u32, options: &GenerateOptions) -> Result<(f64, f64)> {
    let other = Model::load(path, ModelOptions { context_length: Some(1024), threads: Some(threads), ..Default::default() })?;
    let models = [model, &other];
    let (mut one_after_the_other, mut at_once) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..3 {
        let started = Instant::now();
        for (i, m) in models.iter().enumerate() {
            m.complete(&distinct_prompt(i), options)?;
        }
        one_after_the_other = one_after_the_other.min(started.elapsed().as_secs_f64());
        let started = Instant::now();
        std::thread::scope(|scope| -> Result<()> {
            let runs: Vec<_> =
                models.iter().enumerate().map(|(i, m)| scope.spawn(move || m.complete(&distinct_prompt(i), options))).collect();
            for run in runs {
                run.join().map_err(|_| Error::internal("bench thread panicked"))??;
            }
            Ok(())
        })?;
        at_once = at_once.min(started.elapsed().as_secs_f64());
    }
    Ok((one_after_the_other, at_once))
}

/// Questions about a 1,000-token shared document: time to first token cold, cached, and
/// cached while 7 other requests generate (milliseconds), as a streaming client sees it: from
/// the call until the first token is in its hands. Cached and busy are medians of 3 questions
/// each (a single one is at the mercy of one slow spell on a shared machine).
fn prefix_ttft(model: &Model, document: &[i32], busy_options: &GenerateOptions) -> Result<(f64, f64, f64)> {
    let one = GenerateOptions { max_tokens: Some(1), temperature: 0.0, ..Default::default() };
    let ask = |question: &str| -> Result<f64> {
        let prompt = [document, model.tokenize(question, false, false)?.as_slice()].concat();
        let started = Instant::now();
        let mut stream = model.generate_stream(&prompt, &one)?;
        while let Some(chunk) = stream.next_chunk() {
            if !chunk?.tokens.is_empty() {
                return Ok(ms(started.elapsed()));
            }
        }
        Err(Error::internal("the request ended without a token"))
    };
    let cold = ask(" Question: what is this text about? Answer:")?;
    // Each question shares only the document and " Question:" with the ones before it.
    let cached = median(
        [" Question: who wrote it? Answer:", " Question: how long is it? Answer:", " Question: is it true? Answer:"]
            .into_iter()
            .map(&ask)
            .collect::<Result<Vec<_>>>()?,
    );
    let busy: Vec<_> = (0..7)
        .map(|i| {
            let model = model.clone();
            let options = busy_options.clone();
            std::thread::spawn(move || model.complete(&distinct_prompt(i + 3), &options))
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let mut busy_ttfts = vec![];
    for question in
        [" Question: when was it written? Answer:", " Question: where is it set? Answer:", " Question: why does it matter? Answer:"]
    {
        busy_ttfts.push(ask(question)?);
        // Each question joins a different generation decode.
        std::thread::sleep(std::time::Duration::from_millis(60));
    }
    let cached_busy = median(busy_ttfts);
    for h in busy {
        h.join().map_err(|_| Error::internal("bench thread panicked"))??;
    }
    Ok((cold, cached, cached_busy))
}

/// Figures of the structured-output benchmark (`corral bench-structured`).
#[derive(Debug, Clone, Default)]
pub struct StructuredReport {
    /// Generation speed of the same chat request, free and constrained by a JSON schema.
    pub free_tokens_per_s: f64,
    pub constrained_tokens_per_s: f64,
    /// One-time cost of turning a 20-property schema into a grammar llama.cpp has checked.
    pub compile_20_properties_ms: f64,
    pub threads: u32,
}

/// A 20-property object schema with every common kind of field.
pub fn twenty_property_schema() -> serde_json::Value {
    let mut properties = serde_json::Map::new();
    for i in 0..20 {
        let field = match i % 5 {
            0 => serde_json::json!({"type": "string", "maxLength": 24}),
            1 => serde_json::json!({"type": "integer", "minimum": 0, "maximum": 1000}),
            2 => serde_json::json!({"enum": ["red", "green", "blue"]}),
            3 => serde_json::json!({"type": "boolean"}),
            _ => serde_json::json!({"type": "number", "minimum": -10, "maximum": 10}),
        };
        properties.insert(format!("field_{i:02}"), field);
    }
    let required: Vec<&String> = properties.keys().collect();
    serde_json::json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false})
}

/// Constrained vs free generation on the same prompt (interleaved, medians), and the schema
/// compile time.
pub fn structured(path: &Path, threads: u32, repeats: usize) -> Result<StructuredReport> {
    let model = Model::load(path, ModelOptions { context_length: Some(2048), threads: Some(threads), ..Default::default() })?;
    let schema = twenty_property_schema().to_string();
    let messages = [crate::Message::new("user", "Describe a fictional product as JSON with twenty fields.")];
    let free = GenerateOptions { max_tokens: Some(160), temperature: 0.0, ignore_eos: true, ..Default::default() };
    let constrained = GenerateOptions {
        max_tokens: Some(160),
        temperature: 0.0,
        constraint: Some(crate::Constraint::JsonSchema(schema)),
        ..Default::default()
    };
    let mut compile_ms = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        model.compile_constraint(&constrained)?;
        compile_ms.push(ms(started.elapsed()));
    }
    let (mut free_tg, mut constrained_tg) = (Vec::new(), Vec::new());
    model.chat(&messages, &free)?; // warm-up
    for _ in 0..repeats {
        free_tg.push(model.chat(&messages, &free)?.usage.generation_tokens_per_s);
        constrained_tg.push(model.chat(&messages, &constrained)?.usage.generation_tokens_per_s);
    }
    Ok(StructuredReport {
        free_tokens_per_s: median(free_tg),
        constrained_tokens_per_s: median(constrained_tg),
        compile_20_properties_ms: median(compile_ms),
        threads,
    })
}

/// ggml's CPU variant libraries as llama.cpp built them, before corral relinked its kernels into
/// them (`corral bench-kernels` compares the two); `None` outside the build tree.
pub const GGML_BACKEND_DIR: &str = env!("CORRAL_GGML_BACKEND_DIR");

/// The next-token log-probabilities at each of the first `tokens.len() - 1` positions of
/// `tokens`, in windows of `window` tokens each evaluated from an empty cache (as llama.cpp's
/// perplexity tool does), with this process's CPU variant. `one_token`: one decode per token
/// (the kernels of generation) instead of one per window (the kernels of prompts). Calls `row`
/// with each position's log-softmax over the vocabulary and the log-probability of the token
/// that follows. `f32_cache`: an F32 KV cache instead of F16 (with F32 weights, the exact
/// reference of `corral bench-kernels --exact`).
pub fn next_token_logprobs(
    path: &Path,
    tokens: &[i32],
    window: usize,
    threads: u32,
    one_token: bool,
    f32_cache: bool,
    mut row: impl FnMut(&[f32], f32) -> Result<()>,
) -> Result<()> {
    let backend = crate::backend::backend()?;
    let llama = LlamaModel::load_from_file(backend, path, &LlamaModelParams::default())
        .map_err(|e| Error::new(ErrorKind::InvalidModel, format!("{}: {e}", path.display())))?;
    let window = window.clamp(2, 1 << 16);
    let params = LlamaContextParams::default()
        .with_n_ctx(std::num::NonZeroU32::new(window as u32))
        .with_n_batch(window as u32)
        .with_n_ubatch(512.min(window as u32))
        .with_n_threads(threads as i32)
        .with_n_threads_batch(threads as i32);
    let params = if f32_cache { params.with_type_k(KvCacheType::F32).with_type_v(KvCacheType::F32) } else { params };
    let mut ctx = {
        let _guard = crate::backend::CONTEXT_CREATION.lock().unwrap_or_else(|e| e.into_inner());
        llama.new_context(backend, params).map_err(|e| Error::internal(format!("context: {e}")))?
    };
    let mut batch = LlamaBatch::new(window, 1);
    let decode_err = |e| Error::new(ErrorKind::DecodeFailed, format!("decode: {e}"));
    let mut logprobs = Vec::new();
    for start in (0..tokens.len().saturating_sub(1)).step_by(window) {
        let end = (start + window).min(tokens.len());
        ctx.clear_kv_cache();
        let steps: Vec<(usize, usize)> = if one_token { (start..end).map(|p| (p, p + 1)).collect() } else { vec![(start, end)] };
        for (from, to) in steps {
            batch.clear();
            for p in from..to {
                batch.add(LlamaToken(tokens[p]), (p - start) as i32, &[0], true).map_err(|e| Error::internal(e.to_string()))?;
            }
            ctx.decode(&mut batch).map_err(decode_err)?;
            for p in from..to {
                if p + 1 >= end {
                    break;
                }
                let logits = ctx.get_logits_ith((p - from) as i32);
                let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let log_sum = (logits.iter().map(|&x| ((x - max) as f64).exp()).sum::<f64>()).ln() as f32 + max;
                logprobs.clear();
                logprobs.extend(logits.iter().map(|&x| x - log_sum));
                row(&logprobs, logprobs[tokens[p + 1] as usize])?;
            }
        }
    }
    Ok(())
}
