//! `corral soak`: many callers on one model create, use and free sessions and streams, some
//! cancelled in every way the API offers, while the process's resident memory is watched.
//!
//! Callers are OS threads sharing one `Model`. They take tasks from one counter: a task is
//! either a session cycle (a session, one or two short calls on it, some streamed, then drop)
//! or a cancellation (a long stream, 1-2 chunks read, then cancelled: `Stream::cancel` and
//! drain, a `CancelHandle` fired by another thread, dropping the stream mid-way, or
//! `Stream::close`), spread evenly over the run. RSS (VmRSS) is read at start, after the
//! model loads, after warm-up (the first 10% of tasks), half-way and at the end. The run fails
//! when RSS grows by more than `--max-growth-mb` after warm-up or any error other than
//! `cancelled` occurs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use clap::Args;
use corral::{CancelHandle, Error, ErrorKind, FinishReason, GenerateOptions, Message, Model, ModelOptions, Session, Stream};

#[derive(Args)]
pub struct SoakArgs {
    model: PathBuf,
    /// Session cycles (create, one or two calls, drop).
    #[arg(long, default_value_t = 10_000)]
    cycles: u64,
    /// Streams cancelled part-way, on top of the cycles.
    #[arg(long, default_value_t = 1_000)]
    cancellations: u64,
    /// Caller threads sharing the model.
    #[arg(long, default_value_t = 8)]
    callers: u32,
    /// Engine threads (default: the number of physical cores).
    #[arg(long)]
    threads: Option<u32>,
    #[arg(long, default_value_t = 2048)]
    context_length: u32,
    /// Most RSS growth from after warm-up to the end, in MB.
    #[arg(long, default_value_t = 5.0)]
    max_growth_mb: f64,
}

/// The four ways a cancellation ends a stream.
const CANCEL_MODES: [&str; 4] = ["cancel+drain", "other thread", "drop", "close"];

/// Counts shared by the callers.
#[derive(Default)]
struct Tally {
    /// Tasks started of each kind (whether they succeeded is in `errors` and `anomalies`).
    cycles: AtomicU64,
    calls: AtomicU64,
    streamed: AtomicU64,
    cancellations: AtomicU64,
    by_mode: [AtomicU64; 4],
    /// Cancelled streams whose last chunk said `cancelled`.
    ended_cancelled: AtomicU64,
    /// Errors by kind (`cancelled` is the one allowed).
    errors: Mutex<BTreeMap<&'static str, u64>>,
    /// Anything unexpected that is not an error (a wrong finish reason, a stream that ended
    /// without its final chunk).
    anomalies: Mutex<Vec<String>>,
    done: AtomicU64,
    rss_warm: Mutex<Option<f64>>,
    rss_middle: Mutex<Option<f64>>,
}

impl Tally {
    fn error(&self, e: &Error) {
        let mut errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        let n = errors.entry(e.kind().code()).or_default();
        *n += 1;
        if e.kind() != ErrorKind::Cancelled && *n <= 3 {
            eprintln!("corral: error [{}]: {e}", e.kind().code());
        }
    }

    fn anomaly(&self, what: String) {
        let mut anomalies = self.anomalies.lock().unwrap_or_else(|p| p.into_inner());
        if anomalies.len() < 3 {
            eprintln!("corral: soak: {what}");
        }
        anomalies.push(what);
    }

    fn failures(&self) -> u64 {
        let errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        let failed_errors: u64 = errors.iter().filter(|(k, _)| **k != ErrorKind::Cancelled.code()).map(|(_, n)| n).sum();
        failed_errors + self.anomalies.lock().unwrap_or_else(|p| p.into_inner()).len() as u64
    }
}

/// Resident memory of this process in MB (VmRSS of /proc/self/status).
pub fn rss_mb() -> f64 {
    status_kb("VmRSS:") / 1024.0
}

fn status_kb(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()))
        .unwrap_or(f64::NAN)
}

/// Whether task `t` of `total` is one of the `cancellations`, spread evenly over the run.
fn is_cancellation(t: u64, total: u64, cancellations: u64) -> bool {
    (t + 1) * cancellations / total > t * cancellations / total
}

/// Questions the cycles ask. A small pool: most prompts are then found whole in some sequence's
/// cache (a KV copy between sequences and one evaluated token), which keeps the run short;
/// one task in eight gets a question of its own, evaluated from the shared prefix on.
const QUESTIONS: [&str; 13] = [
    "Name a colour.",
    "Name a fruit.",
    "Name an animal.",
    "Name a city.",
    "Name a planet.",
    "Name a metal.",
    "Name a tree.",
    "Name a river.",
    "Name a bird.",
    "Name a flower.",
    "Name a sport.",
    "Name a tool.",
    "Name a fish.",
];

fn question(base: &str, caller: u32, task: u64) -> String {
    if task % 8 == 5 {
        format!("{base} (caller {caller}, task {task})")
    } else {
        base.to_string()
    }
}

fn short(max_tokens: u32) -> GenerateOptions {
    GenerateOptions { max_tokens: Some(max_tokens), temperature: 0.0, ..Default::default() }
}

/// A long generation: ends only by being cancelled (`ignore_eos`, and far more tokens than
/// the stream buffers before the engine pauses it for its reader).
fn long() -> GenerateOptions {
    GenerateOptions { max_tokens: Some(128), temperature: 0.0, ignore_eos: true, ..Default::default() }
}

/// Reads a stream to its end; returns the finish reason of its last chunk.
fn drain(stream: Stream) -> corral::Result<Option<FinishReason>> {
    let mut reason = None;
    for chunk in stream {
        reason = chunk?.finish_reason;
    }
    Ok(reason)
}

fn expect_finished(tally: &Tally, what: &str, reason: Option<FinishReason>) {
    match reason {
        Some(FinishReason::Stop | FinishReason::Length) => {}
        other => tally.anomaly(format!("{what} ended with {:?}, not stop or length", other.map(FinishReason::as_str))),
    }
}

/// One session cycle: a session, one or two short calls (chat or completion, streamed or
/// not), then the session is dropped.
fn cycle(model: &Model, tally: &Tally, caller: u32, n: u64, task: u64) -> corral::Result<()> {
    let session: Session = model.session()?;
    let question = question(QUESTIONS[(n % QUESTIONS.len() as u64) as usize], caller, task);
    let mut messages = vec![Message::new("user", question.as_str())];
    match n % 4 {
        0 => {
            // Two chat turns: the second reuses the session's KV.
            let first = session.chat(&messages, &short(2))?;
            expect_finished(tally, "chat", Some(first.finish_reason));
            messages.push(Message::new("assistant", first.text));
            messages.push(Message::new("user", "And another?"));
            let second = session.chat(&messages, &short(2))?;
            expect_finished(tally, "chat (second turn)", Some(second.finish_reason));
            tally.calls.fetch_add(2, Ordering::Relaxed);
        }
        1 => {
            let c = session.complete(&question, &short(3))?;
            expect_finished(tally, "complete", Some(c.finish_reason));
            tally.calls.fetch_add(1, Ordering::Relaxed);
        }
        2 => {
            let reason = drain(session.chat_stream(&messages, &short(3))?)?;
            expect_finished(tally, "chat_stream", reason);
            tally.calls.fetch_add(1, Ordering::Relaxed);
            tally.streamed.fetch_add(1, Ordering::Relaxed);
        }
        _ => {
            let reason = drain(session.complete_stream(&question, &short(2))?)?;
            expect_finished(tally, "complete_stream", reason);
            let c = session.complete(&format!("{question} Red, and"), &short(1))?;
            expect_finished(tally, "complete (second call)", Some(c.finish_reason));
            tally.calls.fetch_add(2, Ordering::Relaxed);
            tally.streamed.fetch_add(1, Ordering::Relaxed);
        }
    }
    drop(session);
    Ok(())
}

/// One cancellation: a long stream (on a session or on the model), 1-2 chunks read, then
/// cancelled in one of four ways.
fn cancellation(model: &Model, tally: &Tally, canceller: &Sender<CancelHandle>, caller: u32, n: u64, task: u64) -> corral::Result<()> {
    let mode = (n % 4) as usize;
    let on_session = n % 8 < 4;
    let session = if on_session { Some(model.session()?) } else { None };
    let prompt = question("Tell a long story about a lighthouse.", caller, task);
    let messages = [Message::new("user", prompt.as_str())];
    let mut stream = match (&session, (n / 8) % 2) {
        (Some(s), 0) => s.chat_stream(&messages, &long())?,
        (Some(s), _) => s.complete_stream(&prompt, &long())?,
        (None, 0) => model.chat_stream(&messages, &long())?,
        (None, _) => model.complete_stream(&prompt, &long())?,
    };
    let to_read = 1 + (n / 16) % 2;
    for _ in 0..to_read {
        match stream.next_chunk() {
            Some(Ok(chunk)) if chunk.finish_reason.is_some() => {
                tally.anomaly(format!(
                    "a long stream ended with {:?} before it was cancelled",
                    chunk.finish_reason.map(FinishReason::as_str)
                ));
                return Ok(());
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e),
            None => {
                tally.anomaly("a long stream ended without a final chunk".into());
                return Ok(());
            }
        }
    }
    let check_cancelled = |reason: Option<FinishReason>| {
        if reason == Some(FinishReason::Cancelled) {
            tally.ended_cancelled.fetch_add(1, Ordering::Relaxed);
        } else {
            tally.anomaly(format!("a cancelled stream ended with {:?}, not cancelled", reason.map(FinishReason::as_str)));
        }
    };
    match mode {
        0 => {
            stream.cancel();
            check_cancelled(drain(stream)?);
        }
        1 => {
            let _ = canceller.send(stream.cancel_handle());
            check_cancelled(drain(stream)?);
        }
        2 => drop(stream),
        _ => stream.close(),
    }
    tally.by_mode[mode].fetch_add(1, Ordering::Relaxed);
    drop(session);
    Ok(())
}

/// Runs the soak and prints its report; `Ok(false)` when it failed its bar.
pub fn run(args: &SoakArgs) -> corral::Result<bool> {
    if args.callers == 0 {
        return Err(Error::new(ErrorKind::InvalidArgument, "--callers must be at least 1"));
    }
    let total = args.cycles + args.cancellations;
    if total == 0 {
        return Err(Error::new(ErrorKind::InvalidArgument, "nothing to do: --cycles and --cancellations are both 0"));
    }
    let rss_start = rss_mb();
    let options = ModelOptions {
        context_length: Some(args.context_length),
        threads: args.threads,
        max_sequences: args.callers.max(1),
        ..Default::default()
    };
    let model = Model::load(&args.model, options)?;
    let rss_loaded = rss_mb();
    let info = model.info();
    println!(
        "corral soak (Rust API): {} {} | {} callers, {} engine threads, context {} | {} cycles, {} cancellations",
        info.name,
        info.quantization,
        args.callers,
        args.threads.unwrap_or_else(corral::default_threads),
        info.context_length,
        args.cycles,
        args.cancellations
    );

    let tally = Arc::new(Tally::default());
    let warmup = (total / 10).max(1);
    let middle = warmup + (total - warmup) / 2;
    let tenth = warmup;
    let next_task = Arc::new(AtomicU64::new(0));
    // Cancels what the callers send it: the "from another thread" way.
    let (cancel_tx, cancel_rx) = channel::<CancelHandle>();
    let canceller = std::thread::Builder::new()
        .name("soak-canceller".into())
        .spawn(move || {
            for handle in cancel_rx {
                handle.cancel();
            }
        })
        .map_err(|e| Error::with_source(ErrorKind::Internal, "cannot start the canceller thread", e))?;

    let started = Instant::now();
    let callers: Vec<_> = (0..args.callers)
        .map(|caller| {
            let (model, tally, next_task, cancel_tx) = (model.clone(), tally.clone(), next_task.clone(), cancel_tx.clone());
            let cancellations = args.cancellations;
            std::thread::Builder::new()
                .name(format!("soak-caller-{caller}"))
                .spawn(move || loop {
                    let t = next_task.fetch_add(1, Ordering::Relaxed);
                    if t >= total {
                        break;
                    }
                    // Which cancellation or which cycle this task is: what it does cycles with that.
                    let cancellations_before = t * cancellations / total;
                    let result = if is_cancellation(t, total, cancellations) {
                        tally.cancellations.fetch_add(1, Ordering::Relaxed);
                        cancellation(&model, &tally, &cancel_tx, caller, cancellations_before, t)
                    } else {
                        tally.cycles.fetch_add(1, Ordering::Relaxed);
                        cycle(&model, &tally, caller, t - cancellations_before, t)
                    };
                    if let Err(e) = result {
                        tally.error(&e);
                    }
                    let done = tally.done.fetch_add(1, Ordering::AcqRel) + 1;
                    if done == warmup {
                        *tally.rss_warm.lock().unwrap_or_else(|p| p.into_inner()) = Some(rss_mb());
                    }
                    if done == middle {
                        *tally.rss_middle.lock().unwrap_or_else(|p| p.into_inner()) = Some(rss_mb());
                    }
                    if done % tenth == 0 {
                        eprintln!(
                            "soak: {:3}% ({done} tasks)  RSS {:.1} MB  {:.0} s",
                            done * 100 / total,
                            rss_mb(),
                            started.elapsed().as_secs_f64()
                        );
                    }
                })
                .map_err(|e| Error::with_source(ErrorKind::Internal, "cannot start a caller thread", e))
        })
        .collect::<corral::Result<_>>()?;
    drop(cancel_tx);
    let mut panicked = 0;
    for caller in callers {
        if caller.join().is_err() {
            panicked += 1;
        }
    }
    let _ = canceller.join();
    let elapsed = started.elapsed().as_secs_f64();
    let rss_end = rss_mb();
    let stats = model.stats();
    drop(model);

    let rss_warm = tally.rss_warm.lock().unwrap_or_else(|p| p.into_inner()).unwrap_or(f64::NAN);
    let rss_middle = tally.rss_middle.lock().unwrap_or_else(|p| p.into_inner()).unwrap_or(f64::NAN);
    let growth = rss_end - rss_warm;
    let errors = tally.errors.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let failures = tally.failures() + panicked;
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let cycles = load(&tally.cycles);
    let cancellations = load(&tally.cancellations);

    println!("cycles:         {cycles} of {} ({} calls, {} streamed)", args.cycles, load(&tally.calls), load(&tally.streamed));
    println!(
        "cancellations:  {cancellations} of {} ({}; {} ended with finish reason cancelled, the rest were dropped or closed)",
        args.cancellations,
        CANCEL_MODES.iter().zip(&tally.by_mode).map(|(m, n)| format!("{m} {}", load(n))).collect::<Vec<_>>().join(", "),
        load(&tally.ended_cancelled)
    );
    let errors_line =
        if errors.is_empty() { "none".to_string() } else { errors.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ") };
    println!("errors:         {errors_line}");
    let anomalies = tally.anomalies.lock().unwrap_or_else(|p| p.into_inner()).len();
    if anomalies > 0 || panicked > 0 {
        println!("anomalies:      {anomalies}   panicked callers: {panicked}");
    }
    println!(
        "engine:         {} requests, {} prompt tokens ({} cached), {} generated",
        stats.requests, stats.prompt_tokens, stats.cached_tokens, stats.generated_tokens
    );
    println!(
        "RSS MB:         start {rss_start:.1}   loaded {rss_loaded:.1}   after warm-up ({warmup} tasks) {rss_warm:.1}   middle {rss_middle:.1}   end {rss_end:.1}   peak {:.1}",
        status_kb("VmHWM:") / 1024.0
    );
    println!("growth:         {growth:+.2} MB after warm-up (limit {:.1} MB)", args.max_growth_mb);
    println!("elapsed:        {elapsed:.1} s   ({:.1} cycles/s)", (cycles + cancellations) as f64 / elapsed);

    let mut problems = Vec::new();
    if failures > 0 {
        problems.push(format!("{failures} failures other than cancelled"));
    }
    if cycles != args.cycles || cancellations != args.cancellations {
        problems.push("not every task ran".to_string());
    }
    if growth.is_nan() || growth > args.max_growth_mb {
        problems.push(format!("RSS grew {growth:.2} MB after warm-up (limit {:.1})", args.max_growth_mb));
    }
    if problems.is_empty() {
        println!("result:         PASS");
        Ok(true)
    } else {
        println!("result:         FAIL ({})", problems.join("; "));
        Ok(false)
    }
}
