//! `corral bench-kernel-speed MODEL`: the speed of corral's CPU kernels against ggml's own on
//! the same CPU variant: prompt (512 tokens), generation (128 tokens) and 8 streams generating
//! at once, in interleaved rounds (a slow spell on a shared machine hits every side), medians,
//! best rounds and ratios. `--baseline DIR` adds a third side: the variant library in DIR (an
//! earlier build of corral, say).
//!
//! A process loads one CPU variant, so each measurement is a child process of this program
//! (`bench-kernel-speed-side`) pointed at a folder holding just that variant.

use std::path::PathBuf;
use std::process::Command;

use clap::Args;
use corral::{Error, ErrorKind};

use crate::kernel_bench::{internal, variant_files, VariantFolder};

#[derive(Args)]
pub struct KernelSpeedArgs {
    model: PathBuf,
    /// The CPU variant to compare (default: the one this CPU uses).
    #[arg(long)]
    variant: Option<String>,
    /// A folder holding another build's libggml-cpu-<variant>.so, measured as a third side.
    #[arg(long)]
    baseline: Option<PathBuf>,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    #[arg(long)]
    threads: Option<u32>,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct SpeedSideArgs {
    model: PathBuf,
    #[arg(long)]
    threads: u32,
}

const FIGURES: [&str; 3] = ["prompt t/s", "gen t/s", "8 streams t/s"];
const STREAMS: usize = 8;

/// The child: one round of each figure on this process's variant, as a JSON array on stdout.
pub fn side(args: &SpeedSideArgs) -> corral::Result<()> {
    let config = corral::bench::BenchConfig { threads: args.threads, repeats: 1, ..Default::default() };
    let report = corral::bench::run(&args.model, &config)?;
    let streams = corral::bench::concurrent_tokens_per_s(&args.model, args.threads, STREAMS, 64)?;
    println!("{}", serde_json::json!([report.prompt_tokens_per_s, report.generation_tokens_per_s, streams]));
    Ok(())
}

fn measure(folder: &VariantFolder, args: &KernelSpeedArgs, threads: u32) -> corral::Result<[f64; 3]> {
    let exe = std::env::current_exe().map_err(|e| internal("this program", e))?;
    let output = Command::new(exe)
        .arg("bench-kernel-speed-side")
        .arg(&args.model)
        .args(["--threads", &threads.to_string()])
        .env("CORRAL_BACKEND_DIR", &folder.0)
        .output()
        .map_err(|e| internal("cannot start a side", e))?;
    if !output.status.success() {
        return Err(Error::new(ErrorKind::Internal, format!("a side failed: {}", String::from_utf8_lossy(&output.stderr).trim())));
    }
    let figures: Vec<f64> = serde_json::from_slice(&output.stdout).map_err(|e| internal("a side's figures", e))?;
    figures.try_into().map_err(|_| Error::new(ErrorKind::Internal, "a side gave the wrong number of figures"))
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

pub fn run(args: &KernelSpeedArgs) -> corral::Result<()> {
    let (variant, corral_file, ggml_file) = variant_files(args.variant.as_deref())?;
    let threads = args.threads.unwrap_or_else(corral::default_threads);
    let mut sides = vec![
        (format!("corral:{variant}"), VariantFolder::new(&format!("speed-corral-{variant}"), &corral_file)?),
        (format!("ggml:{variant}"), VariantFolder::new(&format!("speed-ggml-{variant}"), &ggml_file)?),
    ];
    if let Some(dir) = &args.baseline {
        let file = dir.join(format!("libggml-cpu-{variant}.so"));
        sides.push((format!("baseline:{variant}"), VariantFolder::new(&format!("speed-baseline-{variant}"), &file)?));
    }
    // rounds[side][figure]: one value per round.
    let mut rounds = vec![vec![Vec::new(); FIGURES.len()]; sides.len()];
    for round in 0..args.rounds.max(1) {
        for (i, (name, folder)) in sides.iter().enumerate() {
            let figures = measure(folder, args, threads)?;
            if !args.json {
                eprintln!("round {}: {name:>18} {}", round + 1, figures.map(|f| format!("{f:9.1}")).join(" "));
            }
            for (f, value) in figures.into_iter().enumerate() {
                rounds[i][f].push(value);
            }
        }
    }
    let medians: Vec<Vec<f64>> = rounds.iter().map(|side| side.iter().map(|r| median(r)).collect()).collect();
    let best: Vec<Vec<f64>> = rounds.iter().map(|side| side.iter().map(|r| r.iter().copied().fold(0.0, f64::max)).collect()).collect();
    if args.json {
        let rows: Vec<_> = sides
            .iter()
            .enumerate()
            .map(|(i, (name, _))| {
                serde_json::json!({ "kernels": name, "prompt_tokens_per_s": medians[i][0], "generation_tokens_per_s": medians[i][1],
                    "streams_tokens_per_s": medians[i][2], "vs_ggml": (0..FIGURES.len()).map(|f| medians[i][f] / medians[1][f]).collect::<Vec<_>>() })
            })
            .collect();
        println!("{}", serde_json::json!({ "model": args.model, "threads": threads, "rounds": rounds[0][0].len(), "sides": rows }));
        return Ok(());
    }
    println!("{} threads, {} interleaved rounds; median (best)", threads, rounds[0][0].len());
    println!("{:>18} {:>22} {:>22} {:>22}", "kernels", FIGURES[0], FIGURES[1], FIGURES[2]);
    for (i, (name, _)) in sides.iter().enumerate() {
        let cells: Vec<String> = (0..FIGURES.len()).map(|f| format!("{:>10.1} ({:>8.1})", medians[i][f], best[i][f])).collect();
        println!("{name:>18}  {}", cells.join("  "));
    }
    for i in (0..sides.len()).filter(|&i| i != 1) {
        let ratios: Vec<String> = (0..FIGURES.len()).map(|f| format!("{:>21.2}x", medians[i][f] / medians[1][f])).collect();
        println!("{:>18}  {}", format!("{} / ggml", sides[i].0.split(':').next().unwrap()), ratios.join(" "));
    }
    Ok(())
}
