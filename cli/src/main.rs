//! `corral`: the command-line tool over the corral core.
//!
//! Output contract: generated text only on stdout; a thinking model's reasoning, finish reason,
//! usage, progress and errors on stderr. Any error is one line naming its kind and a non-zero exit status.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use corral::{Error, ErrorKind, GenerateOptions, Message, Model, ModelOptions, Stream};
use serde_json::json;

mod embed;
mod kernel_bench;
mod kernel_speed;
mod rpc_bench;
mod soak;

#[derive(Parser)]
#[command(name = "corral", version, about = "Run GGUF language models locally")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print a model's metadata, or with --estimate what loading it takes in memory (without
    /// loading it).
    Info {
        model: PathBuf,
        /// One JSON object with every field and every GGUF key.
        #[arg(long)]
        json: bool,
        /// Weights, KV cache, compute buffers and total memory for --context-length and
        /// --sequences, and the memory available to this process.
        #[arg(long)]
        estimate: bool,
        /// Tokens of KV cache, or `auto` (the largest that fits); default: the trained
        /// context, at most 4096.
        #[arg(long)]
        context_length: Option<ContextLength>,
        /// Concurrent sequences (corral's default: 8).
        #[arg(long)]
        sequences: Option<u32>,
    },
    /// Stream a completion of PROMPT to stdout.
    Complete {
        model: PathBuf,
        prompt: String,
        #[command(flatten)]
        generation: GenerationArgs,
    },
    /// Apply the model's chat template to MESSAGE and stream the reply to stdout.
    Chat {
        model: PathBuf,
        message: String,
        /// A system prompt.
        #[arg(long)]
        system: Option<String>,
        #[command(flatten)]
        generation: GenerationArgs,
    },
    /// Perplexity of the model on the first --context-length tokens of FILE.
    Perplexity {
        model: PathBuf,
        file: PathBuf,
        #[arg(long, default_value_t = 512)]
        context_length: u32,
        #[arg(long)]
        threads: Option<u32>,
        #[command(flatten)]
        rpc: RpcArgs,
    },
    /// Serve this machine's CPU to corral processes that load models with --rpc /
    /// rpc_servers (llama.cpp's RPC backend). The protocol has no authentication: private
    /// networks only. Serves one client at a time, until stopped.
    RpcServer {
        /// The address to listen on; anything but loopback exposes this process to the network.
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        #[arg(long, default_value_t = corral::RPC_DEFAULT_PORT)]
        port: u16,
        /// Threads computing the layers it holds (default: the physical cores).
        #[arg(long)]
        threads: Option<u32>,
    },
    /// Measure load time, prompt and generation speed against a plain llama-cpp-2 loop.
    Bench {
        #[command(flatten)]
        run: BenchRun,
        /// Force flash attention on or off (default: llama.cpp decides).
        #[arg(long)]
        flash_attention: Option<bool>,
    },
    /// Generation constrained by a 20-property JSON schema vs free, and the schema's compile time
    BenchStructured(BenchRun),
    /// Aggregate throughput of 1-16 concurrent requests on one model, vs one at a time, and
    /// time to first token with a cached 1,000-token prefix.
    BenchConcurrency {
        model: PathBuf,
        #[arg(long)]
        threads: Option<u32>,
        /// Force flash attention on or off (default: llama.cpp decides).
        #[arg(long)]
        flash_attention: Option<bool>,
        /// Rounds of the 8-request and cached-prefix measurements (medians are reported).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        #[arg(long)]
        json: bool,
    },
    /// Write MODEL as a GGUF of TYPE (Q4_K_M, Q5_K_M, Q6_K, Q8_0, Q4_1, F16, F32, ...) at OUTPUT,
    /// with llama.cpp's quantizer (already quantized tensors are requantized).
    Quantize {
        model: PathBuf,
        output: PathBuf,
        #[arg(value_name = "TYPE")]
        file_type: String,
        #[arg(long)]
        threads: Option<u32>,
    },
    /// corral's CPU kernels against ggml's on the same variant (and two of ggml's variants
    /// against each other): mean KL divergence of the next-token distributions, perplexity.
    BenchKernels(kernel_bench::BenchKernelsArgs),
    #[command(hide = true)]
    BenchKernelsSide(kernel_bench::SideArgs),
    /// corral's CPU kernels against ggml's on the same variant: prompt, generation and 8
    /// streams at once, interleaved rounds, medians and ratios.
    BenchKernelSpeed(kernel_speed::KernelSpeedArgs),
    #[command(hide = true)]
    BenchKernelSpeedSide(kernel_speed::SpeedSideArgs),
    /// Prompt and generation speed locally, with one loopback RPC worker and with two.
    BenchRpc(rpc_bench::BenchRpcArgs),
    /// Embed each TEXT; one JSON vector per line on stdout.
    Embed(embed::EmbedArgs),
    /// Score each DOC against QUERY with a reranker; one JSON object per line, best first.
    Rerank(embed::RerankArgs),
    /// Texts per second embedding 256 short texts, side by side with llama-cpp-python and
    /// node-llama-cpp when given, and the cosine agreement of their vectors.
    BenchEmbed(embed::BenchEmbedArgs),
    /// Many callers create, use, cancel and free sessions and streams on one model while RSS is
    /// watched; fails on any error but `cancelled` or RSS growth past --max-growth-mb.
    Soak(soak::SoakArgs),
}

/// What `bench` and `bench-structured` take.
#[derive(Args)]
struct BenchRun {
    model: PathBuf,
    #[arg(long)]
    threads: Option<u32>,
    /// Rounds per side (medians are reported).
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct GenerationArgs {
    #[arg(long)]
    max_tokens: Option<u32>,
    #[arg(long)]
    temperature: Option<f32>,
    #[arg(long)]
    top_k: Option<u32>,
    #[arg(long)]
    top_p: Option<f32>,
    #[arg(long)]
    min_p: Option<f32>,
    #[arg(long)]
    repeat_penalty: Option<f32>,
    #[arg(long)]
    seed: Option<u32>,
    /// A stop string (repeatable).
    #[arg(long)]
    stop: Vec<String>,
    #[arg(long)]
    threads: Option<u32>,
    /// Tokens of KV cache, or `auto` (the largest that fits in memory).
    #[arg(long)]
    context_length: Option<ContextLength>,
    /// A LoRA adapter to apply, as PATH or PATH:SCALE (repeatable).
    #[arg(long, value_name = "PATH[:SCALE]")]
    lora: Vec<String>,
    #[command(flatten)]
    rpc: RpcArgs,
}

/// Spreading the model's layers over RPC workers (`corral rpc-server`).
#[derive(Args)]
struct RpcArgs {
    /// RPC workers holding part of the layers, as host:port,host:port,...
    #[arg(long, value_name = "HOST:PORT,...", value_delimiter = ',')]
    rpc: Vec<String>,
    /// Layer shares: one weight per --rpc worker, then this process's (default: equal).
    #[arg(long, value_name = "W,W,...", value_delimiter = ',')]
    rpc_split: Vec<f32>,
}

impl RpcArgs {
    fn apply(&self, options: &mut ModelOptions) {
        options.rpc_servers = self.rpc.clone();
        options.rpc_split = self.rpc_split.clone();
    }
}

/// `--context-length`: a number of tokens or `auto`.
#[derive(Clone, Copy)]
enum ContextLength {
    Tokens(u32),
    Auto,
}

impl std::str::FromStr for ContextLength {
    type Err = String;
    fn from_str(text: &str) -> std::result::Result<Self, String> {
        if text == "auto" {
            return Ok(ContextLength::Auto);
        }
        text.parse().map(ContextLength::Tokens).map_err(|_| format!("expected a number of tokens or `auto`, got {text:?}"))
    }
}

impl ContextLength {
    fn apply(context_length: Option<ContextLength>, options: &mut ModelOptions) {
        match context_length {
            Some(ContextLength::Tokens(tokens)) => options.context_length = Some(tokens),
            Some(ContextLength::Auto) => options.auto_context_length = true,
            None => {}
        }
    }
}

impl GenerationArgs {
    /// The --lora adapters, named `lora1`, `lora2`, ... in the order given.
    fn adapters(&self) -> Vec<(corral::AdapterFile, f32)> {
        self.lora
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let (path, scale) = match spec.rsplit_once(':').and_then(|(path, scale)| Some((path, scale.parse().ok()?))) {
                    Some((path, scale)) => (path, scale),
                    None => (spec.as_str(), 1.0),
                };
                (corral::AdapterFile { name: format!("lora{}", i + 1), path: path.into() }, scale)
            })
            .collect()
    }

    /// How to load the model: threads, adapters and RPC workers.
    fn model_options(&self) -> ModelOptions {
        let mut options = ModelOptions { threads: self.threads, max_sequences: 1, ..Default::default() };
        options.adapters = self.adapters().into_iter().map(|(file, _)| file).collect();
        self.rpc.apply(&mut options);
        options
    }

    fn options(&self) -> GenerateOptions {
        let d = GenerateOptions::default();
        let adapters = self.adapters().into_iter().map(|(file, scale)| corral::AdapterChoice { name: file.name, scale }).collect();
        GenerateOptions {
            adapters,
            max_tokens: self.max_tokens,
            temperature: self.temperature.unwrap_or(d.temperature),
            top_k: self.top_k.unwrap_or(d.top_k),
            top_p: self.top_p.unwrap_or(d.top_p),
            min_p: self.min_p.unwrap_or(d.min_p),
            repeat_penalty: self.repeat_penalty.unwrap_or(d.repeat_penalty),
            seed: self.seed,
            stop: self.stop.clone(),
            ..d
        }
    }
}

fn load(path: &PathBuf, context_length: Option<ContextLength>, threads: Option<u32>) -> corral::Result<Model> {
    load_with(path, context_length, ModelOptions { threads, max_sequences: 1, ..Default::default() })
}

/// Loads with `options` and a progress bar on a terminal.
fn load_with(path: &PathBuf, context_length: Option<ContextLength>, mut options: ModelOptions) -> corral::Result<Model> {
    ContextLength::apply(context_length, &mut options);
    if std::io::stderr().is_terminal() {
        options.on_progress = Some(Arc::new(|p: f32| {
            let width = 30;
            let filled = ((p.clamp(0.0, 1.0) * width as f32) as usize).min(width);
            eprint!("\rloading [{}{}] {:3.0}%", "#".repeat(filled), " ".repeat(width - filled), p * 100.0);
            if p >= 1.0 {
                eprint!("\r{}\r", " ".repeat(width + 20));
            }
            true
        }));
    }
    Model::load(path, options)
}

/// Writes a stream to stdout; returns the final chunk's summary.
fn print_stream(stream: Stream) -> corral::Result<()> {
    let mut out = std::io::stdout().lock();
    for chunk in stream {
        let chunk = chunk?;
        // A thinking model's reasoning goes to stderr: stdout carries the answer only.
        if !chunk.reasoning.is_empty() {
            eprint!("{}", chunk.reasoning);
        }
        if out.write_all(chunk.text.as_bytes()).and_then(|_| out.flush()).is_err() {
            // stdout closed (e.g. piped into `head`): stop generating, not an error.
            return Ok(());
        }
        if let (Some(reason), Some(u)) = (chunk.finish_reason, chunk.usage) {
            let _ = writeln!(out);
            eprintln!(
                "finish_reason: {}  prompt_tokens: {}  completion_tokens: {}  cached_tokens: {}  ttft_ms: {:.1}  prompt_tok/s: {:.1}  gen_tok/s: {:.1}",
                reason.as_str(),
                u.prompt_tokens,
                u.completion_tokens,
                u.cached_tokens,
                u.time_to_first_token_ms,
                u.prompt_tokens_per_s,
                u.generation_tokens_per_s
            );
        }
    }
    Ok(())
}

fn print_estimate(e: &corral::MemoryEstimate, json: bool) {
    if json {
        let figures = json!({
            "context_length": e.context_length,
            "weights_bytes": e.weights_bytes,
            "mapped_weights_bytes": e.mapped_weights_bytes,
            "kv_cache_bytes": e.kv_cache_bytes,
            "compute_bytes": e.compute_bytes,
            "overhead_bytes": e.overhead_bytes,
            "total_bytes": e.total_bytes,
            "required_bytes": e.required_bytes(),
            "available_bytes": e.available_bytes,
            "fits": e.fits(),
        });
        println!("{figures}");
        return;
    }
    let mib = |bytes: u64| format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64);
    println!("context length:  {}", e.context_length);
    println!("weights:         {} ({} mapped from the file)", mib(e.weights_bytes), mib(e.mapped_weights_bytes));
    println!("KV cache:        {}", mib(e.kv_cache_bytes));
    println!("compute:         {}", mib(e.compute_bytes));
    println!("overhead:        {}", mib(e.overhead_bytes));
    println!("total:           {}", mib(e.total_bytes));
    println!("required:        {} (total less the mapped weights)", mib(e.required_bytes()));
    match e.available_bytes {
        Some(available) => println!("available:       {} ({})", mib(available), if e.fits() { "fits" } else { "does not fit" }),
        None => println!("available:       unknown"),
    }
}

fn info_json(model: &Model) -> serde_json::Value {
    let i = model.info();
    json!({
        "architecture": i.architecture,
        "name": i.name,
        "parameters": i.parameters,
        "size_bytes": i.size_bytes,
        "quantization": i.quantization,
        "context_length_trained": i.context_length_trained,
        "embedding_length": i.embedding_length,
        "layers": i.layers,
        "vocab_size": i.vocab_size,
        "bos_token": i.bos_token.as_ref().map(|t| json!({"id": t.id, "text": t.text})),
        "eos_token": i.eos_token.as_ref().map(|t| json!({"id": t.id, "text": t.text})),
        "chat_template": i.chat_template,
        "metadata": i.metadata,
        "cpu_variant": corral::cpu_variant().ok().map(|v| v.name),
    })
}

fn run(cli: Cli) -> corral::Result<()> {
    match cli.command {
        Command::Info { model, json, estimate: true, context_length, sequences } => {
            let mut options = ModelOptions::default();
            ContextLength::apply(context_length, &mut options);
            options.max_sequences = sequences.unwrap_or(options.max_sequences);
            print_estimate(&corral::estimate_memory(&model, &options)?, json);
            Ok(())
        }
        Command::Info { model, json, .. } => {
            let model = load(&model, Some(ContextLength::Tokens(256)), None)?;
            if json {
                println!("{}", info_json(&model));
            } else {
                let i = model.info();
                println!("name:            {}", i.name);
                println!("architecture:    {}", i.architecture);
                println!("parameters:      {}", i.parameters);
                println!("size_bytes:      {}", i.size_bytes);
                println!("quantization:    {}", i.quantization);
                println!("context (train): {}", i.context_length_trained);
                println!("embedding:       {}", i.embedding_length);
                println!("layers:          {}", i.layers);
                println!("vocab_size:      {}", i.vocab_size);
                println!("chat_template:   {}", if i.chat_template.is_some() { "yes" } else { "none" });
                println!("metadata keys:   {}", i.metadata.len());
                println!("CPU variant:     {}", corral::cpu_variant()?.name);
            }
            Ok(())
        }
        Command::Complete { model, prompt, generation } => {
            let options = generation.options();
            let model = load_with(&model, generation.context_length, generation.model_options())?;
            print_stream(model.complete_stream(&prompt, &options)?)
        }
        Command::Chat { model, message, system, generation } => {
            let options = generation.options();
            let model = load_with(&model, generation.context_length, generation.model_options())?;
            let mut messages = Vec::new();
            if let Some(system) = system {
                messages.push(Message::new("system", system));
            }
            messages.push(Message::new("user", message));
            print_stream(model.chat_stream(&messages, &options)?)
        }
        Command::Perplexity { model, file, context_length, threads, rpc } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| Error::with_source(ErrorKind::InvalidArgument, format!("cannot read {}", file.display()), e))?;
            let mut options = ModelOptions { threads, max_sequences: 1, ..Default::default() };
            rpc.apply(&mut options);
            let model = load_with(&model, Some(ContextLength::Tokens(context_length)), options)?;
            let mut tokens = model.tokenize(&text, true, false)?;
            tokens.truncate(context_length as usize - 1);
            let logprobs = model.score(&tokens)?;
            let mean_nll = -logprobs.iter().map(|&l| l as f64).sum::<f64>() / logprobs.len() as f64;
            println!("perplexity: {:.4}", mean_nll.exp());
            eprintln!("tokens: {}", tokens.len());
            Ok(())
        }
        Command::Bench { run: BenchRun { model, threads, repeats, json }, flash_attention } => {
            if repeats == 0 {
                return Err(Error::new(ErrorKind::InvalidArgument, "--repeats must be at least 1"));
            }
            let config = corral::bench::BenchConfig {
                threads: threads.unwrap_or_else(corral::default_threads),
                repeats,
                flash_attention,
                ..Default::default()
            };
            let r = corral::bench::run(&model, &config)?;
            if json {
                println!(
                    "{}",
                    json!({
                        "load_s": r.load_s,
                        "prompt_tokens_per_s": r.prompt_tokens_per_s,
                        "generation_tokens_per_s": r.generation_tokens_per_s,
                        "plain_prompt_tokens_per_s": r.plain_prompt_tokens_per_s,
                        "plain_generation_tokens_per_s": r.plain_generation_tokens_per_s,
                        "prompt_ratio": r.prompt_tokens_per_s / r.plain_prompt_tokens_per_s,
                        "generation_ratio": r.generation_tokens_per_s / r.plain_generation_tokens_per_s,
                        "threads": r.threads,
                        "cpu_variant": r.cpu_variant,
                        "peak_rss_mb": r.peak_rss_mb,
                    })
                );
            } else {
                println!(
                    "threads: {}   CPU variant: {}   load: {:.2} s   peak RSS: {:.0} MB",
                    r.threads, r.cpu_variant, r.load_s, r.peak_rss_mb
                );
                println!("{:<12} {:>14} {:>14} {:>8}", "", "corral", "plain", "ratio");
                println!(
                    "{:<12} {:>14.1} {:>14.1} {:>8.3}",
                    "prompt t/s",
                    r.prompt_tokens_per_s,
                    r.plain_prompt_tokens_per_s,
                    r.prompt_tokens_per_s / r.plain_prompt_tokens_per_s
                );
                println!(
                    "{:<12} {:>14.1} {:>14.1} {:>8.3}",
                    "gen t/s",
                    r.generation_tokens_per_s,
                    r.plain_generation_tokens_per_s,
                    r.generation_tokens_per_s / r.plain_generation_tokens_per_s
                );
            }
            Ok(())
        }
        Command::BenchStructured(BenchRun { model, threads, repeats, json }) => {
            let r = corral::bench::structured(&model, threads.unwrap_or_else(corral::default_threads), repeats.max(1))?;
            let ratio = r.constrained_tokens_per_s / r.free_tokens_per_s;
            if json {
                println!(
                    "{}",
                    json!({
                        "threads": r.threads,
                        "free_tokens_per_s": r.free_tokens_per_s,
                        "constrained_tokens_per_s": r.constrained_tokens_per_s,
                        "constrained_vs_free": ratio,
                        "compile_20_properties_ms": r.compile_20_properties_ms,
                    })
                );
            } else {
                println!("threads: {}", r.threads);
                println!("gen t/s free:                {:8.1}", r.free_tokens_per_s);
                println!("gen t/s JSON schema:         {:8.1}   ratio {ratio:.3}", r.constrained_tokens_per_s);
                println!("compile 20-property schema:  {:8.1} ms", r.compile_20_properties_ms);
            }
            Ok(())
        }
        Command::BenchConcurrency { model, threads, flash_attention, rounds, json } => {
            let r = corral::bench::concurrency(&model, threads.unwrap_or_else(corral::default_threads), flash_attention, rounds)?;
            let concurrent = r.median(|round| round.concurrent_tokens_per_s);
            let sequential = r.median(|round| round.sequential_tokens_per_s);
            let ratio = r.median(|round| round.concurrent_vs_sequential());
            let best_ratio = r.rounds.iter().map(|round| round.concurrent_vs_sequential()).fold(0.0, f64::max);
            let (cold, cached, busy) =
                (r.median(|round| round.cold_ttft_ms), r.median(|round| round.cached_ttft_ms), r.median(|round| round.cached_busy_ttft_ms));
            let (speedup, busy_speedup) = (r.median(|round| round.cached_speedup()), r.median(|round| round.cached_busy_speedup()));
            if json {
                let aggregate: serde_json::Map<String, serde_json::Value> =
                    r.aggregate_tokens_per_s.iter().map(|(n, v)| (n.to_string(), json!(v))).collect();
                println!(
                    "{}",
                    json!({
                        "threads": r.threads,
                        "rounds": r.rounds.len(),
                        "aggregate_tokens_per_s": aggregate,
                        "concurrent_8_tokens_per_s": concurrent,
                        "sequential_8_tokens_per_s": sequential,
                        "concurrent_8_vs_sequential": ratio,
                        "concurrent_8_vs_sequential_best": best_ratio,
                        "cold_ttft_ms": cold,
                        "cached_ttft_ms": cached,
                        "cached_ttft_busy_ms": busy,
                        "cached_speedup": speedup,
                        "cached_busy_speedup": busy_speedup,
                        "two_models_one_after_the_other_s": r.two_models_one_after_the_other_s,
                        "two_models_at_once_s": r.two_models_at_once_s,
                        "two_models_at_once_vs_one_after_the_other": r.two_models_at_once_vs_one_after_the_other(),
                    })
                );
            } else {
                println!("threads: {}", r.threads);
                println!("{:>8} {:>16}", "streams", "aggregate t/s");
                for (n, v) in &r.aggregate_tokens_per_s {
                    println!("{n:>8} {v:>16.1}");
                }
                println!(
                    "two models, 128 tokens each: one after the other {:.2} s, at once {:.2} s ({:.2}x)",
                    r.two_models_one_after_the_other_s,
                    r.two_models_at_once_s,
                    r.two_models_at_once_vs_one_after_the_other()
                );
                println!("medians of {} interleaved rounds:", r.rounds.len());
                for (i, round) in r.rounds.iter().enumerate() {
                    println!(
                        "  round {}: 8 concurrent {:.1} / sequential {:.1} t/s = {:.2}x; TTFT cold {:.1} ms, cached {:.1} ms ({:.0}x), busy {:.1} ms ({:.0}x); {} pre-emptions",
                        i + 1,
                        round.concurrent_tokens_per_s,
                        round.sequential_tokens_per_s,
                        round.concurrent_vs_sequential(),
                        round.cold_ttft_ms,
                        round.cached_ttft_ms,
                        round.cached_speedup(),
                        round.cached_busy_ttft_ms,
                        round.cached_busy_speedup(),
                        round.preemptions
                    );
                }
                println!("8 concurrent: {concurrent:.1} t/s   8 sequential: {sequential:.1} t/s   concurrent / sequential: {ratio:.2}x (best round {best_ratio:.2}x)");
                println!(
                    "TTFT 1000-token prefix: cold {cold:.1} ms, cached {cached:.1} ms ({speedup:.0}x), cached while 7 others run {busy:.1} ms ({busy_speedup:.0}x)"
                );
            }
            Ok(())
        }
        Command::Quantize { model, output, file_type, threads } => {
            corral::quantize(&model, &output, &file_type, threads.unwrap_or_else(corral::default_threads))?;
            eprintln!("wrote {} ({file_type})", output.display());
            Ok(())
        }
        Command::RpcServer { host, port, threads } => corral::serve_rpc(&host, port, threads.unwrap_or_else(corral::default_threads)),
        Command::BenchRpc(args) => rpc_bench::run(&args),
        Command::BenchKernels(args) => kernel_bench::run(&args),
        Command::BenchKernelsSide(args) => kernel_bench::side(&args),
        Command::BenchKernelSpeed(args) => kernel_speed::run(&args),
        Command::BenchKernelSpeedSide(args) => kernel_speed::side(&args),
        Command::Embed(args) => embed::embed(&args),
        Command::Rerank(args) => embed::rerank(&args),
        Command::BenchEmbed(args) => embed::bench(&args),
        Command::Soak(args) => {
            if !soak::run(&args)? {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    // A bug must still be one line on stderr, not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("corral: error [internal]: {info}");
    }));
    let cli = Cli::parse();
    match std::panic::catch_unwind(|| run(cli)) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("corral: error [{}]: {e}", e.kind().code());
            ExitCode::from(1)
        }
        Err(_) => ExitCode::from(70),
    }
}
