//! `corral bench-rpc MODEL`: prompt and generation speed of one model run locally, with its
//! layers shared with one loopback RPC worker, and with two; interleaved rounds, medians.
//! The workers are child processes of this program (`corral rpc-server`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Args;
use corral::{Error, ErrorKind, GenerateOptions, Model, ModelOptions};
use serde_json::json;

#[derive(Args)]
pub struct BenchRpcArgs {
    model: PathBuf,
    /// Threads of this process and of each worker (default: the physical cores).
    #[arg(long)]
    threads: Option<u32>,
    /// Interleaved rounds (medians are reported).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    #[arg(long, default_value_t = 512)]
    prompt_tokens: usize,
    #[arg(long, default_value_t = 128)]
    generated_tokens: u32,
    /// The first of three loopback ports the workers listen on.
    #[arg(long, default_value_t = 50152)]
    port: u16,
    #[arg(long)]
    json: bool,
}

/// Worker processes, killed when dropped.
struct Workers(Vec<Child>);

impl Drop for Workers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn start_worker(port: u16, threads: u32) -> corral::Result<Child> {
    let exe = std::env::current_exe().map_err(|e| Error::with_source(ErrorKind::Internal, "cannot find this program", e))?;
    let child = Command::new(exe)
        .args(["rpc-server", "--port", &port.to_string(), "--threads", &threads.to_string()])
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| Error::with_source(ErrorKind::Internal, "cannot start an RPC worker", e))?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err(Error::new(ErrorKind::WorkerUnavailable, format!("the RPC worker on port {port} did not start")));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(child)
}

/// Concurrent streams of the batched measurement: one graph per step serves them all, so each
/// round trip to a worker is shared by as many tokens.
const STREAMS: usize = 8;

/// Aggregate generation tokens/s of STREAMS greedy streams at once on `model`.
fn batched_generation(model: &Model, prompt: &[i32], options: &GenerateOptions) -> corral::Result<f64> {
    let start = Instant::now();
    let generated = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..STREAMS)
            .map(|i| {
                // A different first token per stream: no prefix is shared.
                let mut tokens = prompt.to_vec();
                tokens[0] = tokens[0].wrapping_add(i as i32).rem_euclid(1000);
                scope.spawn(move || model.generate(&tokens[..], options).map(|c| c.usage.completion_tokens))
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("a stream panicked")).sum::<corral::Result<u32>>()
    })?;
    Ok(f64::from(generated) / start.elapsed().as_secs_f64())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

pub fn run(args: &BenchRpcArgs) -> corral::Result<()> {
    let threads = args.threads.unwrap_or_else(corral::default_threads);
    let ports = [args.port, args.port + 1, args.port + 2];
    let _workers = Workers(ports.iter().map(|&port| start_worker(port, threads)).collect::<corral::Result<_>>()?);
    let endpoint = |port: u16| format!("127.0.0.1:{port}");
    let setups: [(&str, Vec<String>); 3] =
        [("local", Vec::new()), ("1 worker", vec![endpoint(ports[0])]), ("2 workers", vec![endpoint(ports[1]), endpoint(ports[2])])];
    let context_length = (args.prompt_tokens as u32 + args.generated_tokens + 16).max(256);
    let models = setups
        .iter()
        .map(|(_, servers)| {
            let options = ModelOptions {
                threads: Some(threads),
                max_sequences: STREAMS as u32,
                context_length: Some(context_length * STREAMS as u32),
                rpc_servers: servers.clone(),
                ..Default::default()
            };
            Model::load(&args.model, options)
        })
        .collect::<corral::Result<Vec<_>>>()?;
    // A prompt of exactly `prompt_tokens` tokens; no cached prefix between runs.
    let text = "The quick brown fox jumps over the lazy dog while the river runs to the sea. ".repeat(args.prompt_tokens / 8 + 8);
    let mut prompt = models[0].tokenize(&text, true, false)?;
    prompt.truncate(args.prompt_tokens);
    let options = GenerateOptions { max_tokens: Some(args.generated_tokens), temperature: 0.0, ignore_eos: true, ..Default::default() };
    let mut prompt_speed = vec![Vec::new(); models.len()];
    let mut generation_speed = vec![Vec::new(); models.len()];
    let mut batched_speed = vec![Vec::new(); models.len()];
    let short_prompt = &prompt[..prompt.len().min(32)];
    for round in 0..=args.rounds {
        for (i, model) in models.iter().enumerate() {
            model.clear_cache()?;
            let usage = model.generate(&prompt[..], &options)?.usage;
            // Round 0 warms every model up (the first decode maps and repacks weights).
            model.clear_cache()?;
            let batched = batched_generation(model, short_prompt, &options)?;
            if round > 0 {
                prompt_speed[i].push(usage.prompt_tokens_per_s);
                generation_speed[i].push(usage.generation_tokens_per_s);
                batched_speed[i].push(batched);
            }
        }
    }
    let prompt_speed: Vec<f64> = prompt_speed.iter_mut().map(|v| median(v)).collect();
    let generation_speed: Vec<f64> = generation_speed.iter_mut().map(|v| median(v)).collect();
    let batched_speed: Vec<f64> = batched_speed.iter_mut().map(|v| median(v)).collect();
    // What each worker adds to a generated token, in ms: every token's graph crosses to each
    // worker and back.
    let per_hop_ms = |i: usize, hops: f64| (1000.0 / generation_speed[i] - 1000.0 / generation_speed[0]) / hops;
    if args.json {
        let rows: Vec<_> = setups
            .iter()
            .enumerate()
            .map(|(i, (name, _))| {
                json!({
                    "setup": name,
                    "prompt_tokens_per_s": prompt_speed[i],
                    "generation_tokens_per_s": generation_speed[i],
                    "prompt_vs_local": prompt_speed[i] / prompt_speed[0],
                    "generation_vs_local": generation_speed[i] / generation_speed[0],
                    "batched_generation_tokens_per_s": batched_speed[i],
                    "batched_generation_vs_local": batched_speed[i] / batched_speed[0],
                })
            })
            .collect();
        println!(
            "{}",
            json!({ "threads": threads, "rounds": args.rounds, "prompt_tokens": prompt.len(), "setups": rows,
                    "generation_ms_per_worker_1": per_hop_ms(1, 1.0), "generation_ms_per_worker_2": per_hop_ms(2, 2.0) })
        );
        return Ok(());
    }
    println!(
        "{} prompt tokens, {} generated, {threads} threads each, medians of {} interleaved rounds",
        prompt.len(),
        args.generated_tokens,
        args.rounds
    );
    println!(
        "{:>10} {:>14} {:>10} {:>12} {:>10} {:>18} {:>10}",
        "setup", "prompt tok/s", "vs local", "gen tok/s", "vs local", "8 streams tok/s", "vs local"
    );
    for (i, (name, _)) in setups.iter().enumerate() {
        println!(
            "{name:>10} {:>14.1} {:>9.2}x {:>12.1} {:>9.2}x {:>18.1} {:>9.2}x",
            prompt_speed[i],
            prompt_speed[i] / prompt_speed[0],
            generation_speed[i],
            generation_speed[i] / generation_speed[0],
            batched_speed[i],
            batched_speed[i] / batched_speed[0]
        );
    }
    println!("each worker adds {:.2} ms per generated token with one worker, {:.2} ms with two", per_hop_ms(1, 1.0), per_hop_ms(2, 2.0));
    Ok(())
}
