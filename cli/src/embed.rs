//! `corral embed`, `corral rerank` and `corral bench-embed`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use clap::Args;
use corral::{EmbedOptions, Error, ErrorKind, Model, ModelOptions, Pooling, RerankOptions};
use serde_json::{json, Value};

#[derive(Args)]
pub struct EmbedArgs {
    model: PathBuf,
    #[arg(required = true)]
    texts: Vec<String>,
    /// mean, cls, last (default: the model's own).
    #[arg(long)]
    pooling: Option<String>,
    /// Leave vectors as the model gives them, not scaled to unit length.
    #[arg(long)]
    no_normalize: bool,
    /// Cut texts longer than the model takes.
    #[arg(long)]
    truncate: bool,
    #[arg(long)]
    threads: Option<u32>,
}

#[derive(Args)]
pub struct RerankArgs {
    model: PathBuf,
    query: String,
    #[arg(required = true)]
    documents: Vec<String>,
    #[arg(long)]
    top_n: Option<usize>,
    #[arg(long)]
    truncate: bool,
    #[arg(long)]
    threads: Option<u32>,
}

#[derive(Args)]
pub struct BenchEmbedArgs {
    model: PathBuf,
    #[arg(long)]
    threads: Option<u32>,
    /// Interleaved rounds per side (medians and best round are reported).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Texts per round (about 20 tokens each).
    #[arg(long, default_value_t = 256)]
    texts: usize,
    /// A Python with llama-cpp-python installed: its `Llama.embed` runs side by side, in its
    /// own process (scripts/bench/embed_llama_cpp_python.py).
    #[arg(long)]
    llama_cpp_python: Option<PathBuf>,
    /// A folder with node-llama-cpp installed: its embedding context runs side by side
    /// (scripts/bench/embed_node_llama_cpp.mjs).
    #[arg(long)]
    node_llama_cpp: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

fn load(path: &Path, threads: Option<u32>) -> corral::Result<Model> {
    Model::load(path, ModelOptions { threads, max_sequences: 1, ..Default::default() })
}

pub fn embed(args: &EmbedArgs) -> corral::Result<()> {
    let model = load(&args.model, args.threads)?;
    let pooling = args.pooling.as_deref().map(Pooling::from_name).transpose()?;
    let options = EmbedOptions { normalize: !args.no_normalize, truncate: args.truncate, pooling, ..Default::default() };
    let embeddings = model.embed(&args.texts, &options)?;
    let mut out = std::io::stdout().lock();
    for vector in &embeddings.vectors {
        let _ = writeln!(out, "{}", json!(vector));
    }
    eprintln!(
        "texts: {}  dimensions: {}  prompt_tokens: {}",
        embeddings.vectors.len(),
        embeddings.vectors[0].len(),
        embeddings.prompt_tokens
    );
    Ok(())
}

pub fn rerank(args: &RerankArgs) -> corral::Result<()> {
    let model = load(&args.model, args.threads)?;
    let options = RerankOptions { top_n: args.top_n, truncate: args.truncate, ..Default::default() };
    let mut out = std::io::stdout().lock();
    for r in model.rerank(&args.query, &args.documents, &options)? {
        let _ = writeln!(out, "{}", json!({"index": r.index, "score": r.score, "document": r.document}));
    }
    Ok(())
}

/// Short, varied sentences of about 20 tokens, the same every run (and for every peer).
pub fn bench_texts(n: usize) -> Vec<String> {
    const SUBJECTS: [&str; 8] = [
        "The old lighthouse keeper",
        "A small research team",
        "Every morning the baker",
        "Our new neighbour",
        "The river near the village",
        "A tired software engineer",
        "The orchestra's first violinist",
        "Nobody in the museum",
    ];
    const VERBS: [&str; 8] = [
        "carefully explained",
        "quietly rebuilt",
        "never forgot",
        "wrote a long letter about",
        "kept asking questions about",
        "slowly walked past",
        "painted a picture of",
        "argued for hours about",
    ];
    const OBJECTS: [&str; 8] = [
        "the broken weather station",
        "a recipe for rye bread",
        "the last train to the coast",
        "an unusual chess opening",
        "the history of the harbour",
        "a forgotten jazz record",
        "the price of winter apples",
        "the stars above the desert",
    ];
    (0..n).map(|i| format!("{} {} {} on day {}.", SUBJECTS[i % 8], VERBS[(i / 8) % 8], OBJECTS[(i / 64 + i) % 8], i + 1)).collect()
}

struct PeerRun {
    texts_per_s: f64,
    vectors: Vec<Vec<f32>>,
}

/// Runs a peer's embedding script once: texts on stdin, `{"seconds", "vectors"}` on stdout.
fn run_peer(program: &Path, script_args: &[&str], texts: &[String], threads: u32) -> corral::Result<PeerRun> {
    let failed = |what: String| Error::new(ErrorKind::Internal, what);
    let mut child = Command::new(program)
        .args(script_args)
        .arg(threads.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| failed(format!("cannot start {}: {e}", program.display())))?;
    let input = json!({ "texts": texts }).to_string();
    child.stdin.take().expect("piped").write_all(input.as_bytes()).map_err(|e| failed(format!("peer stdin: {e}")))?;
    let output = child.wait_with_output().map_err(|e| failed(format!("peer: {e}")))?;
    if !output.status.success() {
        return Err(failed(format!("{} {:?} failed ({})", program.display(), script_args, output.status)));
    }
    let report: Value = serde_json::from_slice(&output.stdout).map_err(|e| failed(format!("peer output: {e}")))?;
    let seconds = report["seconds"].as_f64().ok_or_else(|| failed("peer output has no seconds".into()))?;
    let vectors: Vec<Vec<f32>> = serde_json::from_value(report["vectors"].clone()).map_err(|e| failed(format!("peer vectors: {e}")))?;
    Ok(PeerRun { texts_per_s: texts.len() as f64 / seconds, vectors })
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn bench(args: &BenchEmbedArgs) -> corral::Result<()> {
    if args.rounds == 0 || args.texts == 0 {
        return Err(Error::new(ErrorKind::InvalidArgument, "--rounds and --texts must be at least 1"));
    }
    let threads = args.threads.unwrap_or_else(corral::default_threads);
    let texts = bench_texts(args.texts);
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/bench");
    let python_script = scripts.join("embed_llama_cpp_python.py").to_string_lossy().into_owned();
    let node_script = scripts.join("embed_node_llama_cpp.mjs").to_string_lossy().into_owned();
    let model_path = args.model.to_string_lossy().into_owned();
    let mut peers: Vec<(&str, PathBuf, Vec<String>)> = Vec::new();
    if let Some(python) = &args.llama_cpp_python {
        peers.push(("llama-cpp-python", python.clone(), vec![python_script, model_path.clone()]));
    }
    if let Some(folder) = &args.node_llama_cpp {
        peers.push(("node-llama-cpp", PathBuf::from("node"), vec![node_script, folder.to_string_lossy().into_owned(), model_path.clone()]));
    }

    let model = Model::load(&args.model, ModelOptions { threads: Some(threads), max_sequences: 1, ..Default::default() })?;
    let options = EmbedOptions::default();
    // Warm-up: starts the embedding engine and touches the weights.
    model.embed(&texts[..texts.len().min(8)], &options)?;
    let mut corral_rates = Vec::new();
    let mut peer_rates: Vec<Vec<f64>> = vec![Vec::new(); peers.len()];
    let mut agreement: Vec<f64> = vec![1.0; peers.len()];
    for _ in 0..args.rounds {
        let start = Instant::now();
        let corral_vectors = model.embed(&texts, &options)?.vectors;
        corral_rates.push(texts.len() as f64 / start.elapsed().as_secs_f64());
        for (p, (_, program, script_args)) in peers.iter().enumerate() {
            let script_args: Vec<&str> = script_args.iter().map(String::as_str).collect();
            let run = run_peer(program, &script_args, &texts, threads)?;
            peer_rates[p].push(run.texts_per_s);
            let worst = corral_vectors.iter().zip(&run.vectors).map(|(a, b)| cosine(a, b)).fold(1.0, f64::min);
            agreement[p] = agreement[p].min(worst);
        }
    }
    let best = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    let corral_median = median(corral_rates.clone());
    if args.json {
        let peers_json: Vec<Value> = peers
            .iter()
            .enumerate()
            .map(|(p, (name, _, _))| {
                json!({
                    "name": name,
                    "texts_per_s_median": median(peer_rates[p].clone()),
                    "texts_per_s_best": best(&peer_rates[p]),
                    "corral_vs_peer": corral_median / median(peer_rates[p].clone()),
                    "min_cosine_vs_corral": agreement[p],
                })
            })
            .collect();
        println!(
            "{}",
            json!({"threads": threads, "texts": texts.len(), "rounds": args.rounds, "corral_texts_per_s_median": corral_median, "corral_texts_per_s_best": best(&corral_rates), "peers": peers_json})
        );
    } else {
        println!("{} texts of about 20 tokens, {} threads, {} interleaved rounds", texts.len(), threads, args.rounds);
        println!("{:<18} {:>14} {:>12} {:>10} {:>12}", "", "median t/s", "best t/s", "corral x", "min cosine");
        println!("{:<18} {:>14.1} {:>12.1} {:>10} {:>12}", "corral", corral_median, best(&corral_rates), "1.00", "");
        for (p, (name, _, _)) in peers.iter().enumerate() {
            let m = median(peer_rates[p].clone());
            println!("{:<18} {:>14.1} {:>12.1} {:>10.2} {:>12.5}", name, m, best(&peer_rates[p]), corral_median / m, agreement[p]);
        }
    }
    Ok(())
}
