//! `corral bench-kernels MODEL FILE`: how far corral's CPU kernels move a model's next-token
//! distributions from ggml's own kernels on the same CPU variant, next to how far two of
//! ggml's own variants are from each other: mean KL divergence over every position of the
//! first --tokens tokens of FILE, and perplexity beside it. With --exact, each side's distance
//! from exact arithmetic on the same weights as well: the model dequantized to F32 (a temporary
//! file, each weight as ggml's own dequantization computes it) with an F32 KV cache, so that
//! only the kernels' own rounding (activations quantized to 8 bits, f16 attention, summation order)
//! separates a side from it.
//!
//! A process loads one CPU variant, so each side is a child process of this program
//! (`bench-kernels-side`) pointed at a folder holding just that variant, streaming its
//! log-probabilities back through a pipe.

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use clap::Args;
use corral::{Error, ErrorKind, Model, ModelOptions};

#[derive(Args)]
pub struct BenchKernelsArgs {
    model: PathBuf,
    /// An English text (e.g. /usr/share/common-licenses/GPL-3).
    file: PathBuf,
    /// The CPU variant to compare (default: the one this CPU uses).
    #[arg(long)]
    variant: Option<String>,
    /// Another of ggml's variants: the baseline spread between ggml's own kernels.
    #[arg(long, default_value = "haswell")]
    other_variant: String,
    /// Tokens of FILE evaluated.
    #[arg(long, default_value_t = 2048)]
    tokens: usize,
    /// Tokens per window, each evaluated from an empty cache.
    #[arg(long, default_value_t = 512)]
    window: usize,
    /// One decode per token (generation's kernels) instead of one per window (prompts').
    #[arg(long)]
    one_token: bool,
    /// Also each side's KL divergence from exact arithmetic on the same weights (the model
    /// dequantized to F32 in a temporary file, an F32 KV cache, ggml's kernels).
    #[arg(long)]
    exact: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct SideArgs {
    model: PathBuf,
    file: PathBuf,
    #[arg(long)]
    tokens: usize,
    #[arg(long)]
    window: usize,
    #[arg(long)]
    one_token: bool,
    #[arg(long)]
    f32_cache: bool,
}

pub fn internal(what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Internal, format!("{what}: {e}"))
}

/// The child: this process's variant's log-probabilities, one row per position on stdout
/// (vocabulary size, the next token's log-probability, then the vocabulary's, little-endian).
pub fn side(args: &SideArgs) -> corral::Result<()> {
    let text = std::fs::read_to_string(&args.file).map_err(|e| internal("cannot read the text", e))?;
    let model = Model::load(&args.model, ModelOptions { context_length: Some(256), max_sequences: 1, ..Default::default() })?;
    let mut tokens = model.tokenize(&text, true, false)?;
    drop(model);
    tokens.truncate(args.tokens);
    let mut out = BufWriter::new(std::io::stdout().lock());
    corral::bench::next_token_logprobs(&args.model, &tokens, args.window, 1, args.one_token, args.f32_cache, |row, next| {
        let mut bytes = Vec::with_capacity(8 + row.len() * 4);
        bytes.extend_from_slice(&(row.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&next.to_le_bytes());
        for value in row {
            bytes.extend_from_slice(&value.to_le_bytes());
        }
        out.write_all(&bytes).map_err(|e| internal("pipe", e))
    })?;
    out.flush().map_err(|e| internal("pipe", e))
}

/// One side: a child process on the variant `variant` taken from `dir`.
struct Side {
    name: String,
    child: Child,
    reader: BufReader<std::process::ChildStdout>,
    _dir: VariantFolder,
}

/// A temporary folder holding one CPU variant library: a process with `CORRAL_BACKEND_DIR`
/// pointed at it runs that variant. Removed on drop.
pub struct VariantFolder(pub PathBuf);

impl VariantFolder {
    /// `name` tells the folders of one run apart (`corral:zen4`, `ggml:zen4`).
    pub fn new(name: &str, variant_file: &Path) -> corral::Result<VariantFolder> {
        if !variant_file.exists() {
            return Err(Error::new(ErrorKind::InvalidArgument, format!("{} does not exist", variant_file.display())));
        }
        let dir = std::env::temp_dir().join(format!("corral-kernels-{}-{}", std::process::id(), name.replace([':', '/'], "-")));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| internal("temporary folder", e))?;
        std::os::unix::fs::symlink(variant_file, dir.join(variant_file.file_name().unwrap())).map_err(|e| internal("symlink", e))?;
        Ok(VariantFolder(dir))
    }
}

impl Drop for VariantFolder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The shipped variant library `variant` (corral's kernels linked in) and ggml's as built.
pub fn variant_files(variant: Option<&str>) -> corral::Result<(String, PathBuf, PathBuf)> {
    let variant = match variant {
        Some(v) => v.to_string(),
        None => corral::cpu_variant()?.name,
    };
    let corral_dir = corral::cpu_variant()?.path.parent().map(Path::to_path_buf).unwrap_or_default();
    let file_name = format!("libggml-cpu-{variant}.so");
    Ok((variant, corral_dir.join(&file_name), PathBuf::from(corral::bench::GGML_BACKEND_DIR).join(file_name)))
}

/// A file removed on drop.
struct TemporaryFile(PathBuf);

impl Drop for TemporaryFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Side {
    /// `exact_copy`: the exact side's F32 copy of args.model, run with an F32 cache.
    fn start(name: &str, variant_file: &Path, exact_copy: Option<&Path>, args: &BenchKernelsArgs) -> corral::Result<Side> {
        let dir = VariantFolder::new(name, variant_file)?;
        let exe = std::env::current_exe().map_err(|e| internal("this program", e))?;
        let mut command = Command::new(exe);
        command
            .arg("bench-kernels-side")
            .arg(exact_copy.unwrap_or(&args.model))
            .arg(&args.file)
            .args(["--tokens", &args.tokens.to_string(), "--window", &args.window.to_string()])
            .env("CORRAL_BACKEND_DIR", &dir.0)
            .stdout(Stdio::piped());
        if args.one_token {
            command.arg("--one-token");
        }
        if exact_copy.is_some() {
            command.arg("--f32-cache");
        }
        let mut child = command.spawn().map_err(|e| internal("cannot start a side", e))?;
        let reader = BufReader::new(child.stdout.take().expect("piped"));
        Ok(Side { name: name.to_string(), child, reader, _dir: dir })
    }

    /// The next row (next token's log-probability, the vocabulary's), or `None` at the end.
    fn next(&mut self, row: &mut Vec<f32>) -> corral::Result<Option<f32>> {
        let mut header = [0u8; 8];
        match self.reader.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(internal(&self.name, e)),
        }
        let n = u32::from_le_bytes(header[..4].try_into().unwrap()) as usize;
        let next = f32::from_le_bytes(header[4..].try_into().unwrap());
        let mut bytes = vec![0u8; n * 4];
        self.reader.read_exact(&mut bytes).map_err(|e| internal(&self.name, e))?;
        row.clear();
        row.extend(bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())));
        Ok(Some(next))
    }
}

impl Drop for Side {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// KL(p || q) of two log-probability rows, in nats.
fn kl(p: &[f32], q: &[f32]) -> f64 {
    p.iter().zip(q).map(|(&lp, &lq)| (lp as f64).exp() * (lp as f64 - lq as f64)).sum::<f64>().max(0.0)
}

pub fn run(args: &BenchKernelsArgs) -> corral::Result<()> {
    let (variant, corral_file, ggml_file) = variant_files(args.variant.as_deref())?;
    let (_, _, other_file) = variant_files(Some(&args.other_variant))?;
    // The reference (ggml's kernels on the variant), corral's kernels on it, another ggml variant.
    let mut sides = vec![
        Side::start(&format!("ggml:{variant}"), &ggml_file, None, args)?,
        Side::start(&format!("corral:{variant}"), &corral_file, None, args)?,
        Side::start(&format!("ggml:{}", args.other_variant), &other_file, None, args)?,
    ];
    // The exact side, last: the same weights in F32, on ggml's kernels (whose F32 paths corral's
    // variants leave to ggml anyway).
    let exact_file = if args.exact {
        let file = TemporaryFile(std::env::temp_dir().join(format!("corral-kernels-{}-exact.gguf", std::process::id())));
        corral::quantize(&args.model, &file.0, "F32", 0)?;
        sides.push(Side::start("exact:f32", &ggml_file, Some(&file.0), args)?);
        Some(file)
    } else {
        None
    };
    let mut rows = vec![Vec::new(); sides.len()];
    let (mut nll, mut kl_sum, mut kl_max) = (vec![0f64; sides.len()], vec![0f64; sides.len()], vec![0f64; sides.len()]);
    let mut exact_kl_sum = vec![0f64; sides.len()];
    let mut positions = 0usize;
    loop {
        let mut nexts = Vec::new();
        for (side, row) in sides.iter_mut().zip(rows.iter_mut()) {
            nexts.push(side.next(row)?);
        }
        if nexts.iter().all(Option::is_none) {
            break;
        }
        if nexts.iter().any(Option::is_none) {
            return Err(Error::new(ErrorKind::Internal, "the sides gave different numbers of positions"));
        }
        positions += 1;
        for i in 0..sides.len() {
            nll[i] -= nexts[i].unwrap() as f64;
            let divergence = kl(&rows[0], &rows[i]);
            kl_sum[i] += divergence;
            kl_max[i] = kl_max[i].max(divergence);
            if exact_file.is_some() {
                exact_kl_sum[i] += kl(&rows[sides.len() - 1], &rows[i]);
            }
        }
    }
    drop(exact_file);
    if positions == 0 {
        return Err(Error::new(ErrorKind::InvalidArgument, "the text gave no positions to evaluate"));
    }
    let reference = (nll[0] / positions as f64).exp();
    let exact = args.exact;
    let results: Vec<(f64, f64, f64, f64)> = (0..sides.len())
        .map(|i| {
            let perplexity = (nll[i] / positions as f64).exp();
            (perplexity, kl_sum[i] / positions as f64, kl_max[i], exact_kl_sum[i] / positions as f64)
        })
        .collect();
    if args.json {
        let rows: Vec<_> = sides
            .iter()
            .zip(&results)
            .map(|(side, &(perplexity, mean_kl, max_kl, from_exact))| {
                serde_json::json!({ "kernels": side.name, "perplexity": perplexity,
                    "perplexity_vs_ggml": perplexity / reference - 1.0, "mean_kl": mean_kl, "max_kl": max_kl,
                    "mean_kl_from_exact": exact.then_some(from_exact) })
            })
            .collect();
        println!("{}", serde_json::json!({ "positions": positions, "one_token": args.one_token, "sides": rows }));
        return Ok(());
    }
    let mode = if args.one_token { "one token per decode (generation kernels)" } else { "a window per decode (prompt kernels)" };
    println!("{positions} positions of {}, windows of {} tokens, {mode}, 1 thread", args.file.display(), args.window);
    let exact_header = if exact { format!(" {:>16}", "KL from exact") } else { String::new() };
    println!("{:>22} {:>12} {:>10} {:>16} {:>14}{exact_header}", "kernels", "perplexity", "vs ggml", "mean KL (nats)", "max KL");
    for (side, (perplexity, mean_kl, max_kl, from_exact)) in sides.iter().zip(results) {
        let exact_column = if exact { format!(" {from_exact:>16.3e}") } else { String::new() };
        println!(
            "{:>22} {:>12.4} {:>+9.3}% {:>16.3e} {:>14.3e}{exact_column}",
            side.name,
            perplexity,
            (perplexity / reference - 1.0) * 100.0,
            mean_kl,
            max_kl
        );
    }
    Ok(())
}
