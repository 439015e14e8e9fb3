//! Model files are untrusted input. Hostile variants of real models, generated here on the fly
//! (every scalar metadata value set to each hostile value, broken arrays, tensor tables and
//! templates), must load and run or fail with a typed error: never abort, hang or exhaust the
//! process. If any variant aborted, this whole test binary would die: the log's last
//! `variant:` line names it.

#[path = "support/models.rs"]
mod models;

#[path = "support/tiny_gguf.rs"]
mod tiny_gguf;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use corral::{EmbedOptions, ErrorKind, GenerateOptions, Message, Model, ModelOptions, RerankOptions};
use tiny_gguf::{tiny_model, Gguf, Meta, Tensor, ARCHITECTURES};

/// A fresh path for each file: a model keeps its file mapped, and rewriting a mapped file
/// (another test's, or the last variant's while its engine shuts down) would fault.
fn scratch(name: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!("corral-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{}-{name}", NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)))
}

fn options() -> ModelOptions {
    ModelOptions { context_length: Some(256), threads: Some(1), max_sequences: 2, ..Default::default() }
}

fn greedy(max_tokens: u32) -> GenerateOptions {
    GenerateOptions { max_tokens: Some(max_tokens), temperature: 0.0, ..Default::default() }
}

/// Loads the file and, when that works, generates from it and chats with it.
fn exercise(path: &Path) -> corral::Result<()> {
    // llama.cpp's quantizer reads every tensor, on worker threads: a refusal must be an error.
    let quantized = scratch("quantized.gguf");
    if let Err(e) = corral::quantize(path, &quantized, "Q8_0", 2) {
        assert!(EXPECTED.contains(&e.kind()), "quantize: unexpected error kind {:?}: {e}", e.kind());
    }
    let _ = std::fs::remove_file(&quantized);
    let model = Model::load(path, options())?;
    // Embedding builds another context and pools: it reads more of the file.
    model.embed(&["Hello the cat sat on", "a mat"], &EmbedOptions::default())?;
    match model.rerank("cat", &["a mat"], &RerankOptions::default()) {
        Err(e) if e.kind() != ErrorKind::Unsupported => return Err(e),
        _ => {}
    }
    model.complete("Hello the cat sat on", &greedy(4))?;
    model.chat(&[Message::new("user", "Hello")], &greedy(2))?;
    Ok(())
}

/// The kinds a hostile file may produce: it is refused, or fails when used.
const EXPECTED: &[ErrorKind] = &[
    ErrorKind::InvalidModel,
    ErrorKind::UnsupportedArchitecture,
    ErrorKind::TemplateError,
    ErrorKind::NoChatTemplate,
    ErrorKind::ContextOverflow,
    // A file that declares non-causal attention is an encoder: it embeds, it does not generate.
    ErrorKind::Unsupported,
    ErrorKind::DecodeFailed,
];

struct Tally {
    worked: usize,
    refused: std::collections::BTreeMap<String, usize>,
}

impl Tally {
    fn new() -> Self {
        Tally { worked: 0, refused: Default::default() }
    }

    fn run(&mut self, label: &str, gguf: &Gguf) -> corral::Result<()> {
        let path = scratch("variant.gguf");
        gguf.write(&path);
        eprintln!("variant: {label}");
        let started = Instant::now();
        let result = exercise(&path);
        let _ = std::fs::remove_file(&path);
        assert!(started.elapsed() < Duration::from_secs(20), "{label}: took {:?}", started.elapsed());
        match &result {
            Ok(()) => self.worked += 1,
            Err(e) => {
                eprintln!("  -> {:?}: {}", e.kind(), e.message().chars().take(160).collect::<String>());
                assert!(EXPECTED.contains(&e.kind()), "{label}: unexpected error kind {:?}: {e}", e.kind());
                *self.refused.entry(format!("{:?}", e.kind())).or_default() += 1;
            }
        }
        result
    }
}

#[test]
fn every_tiny_architecture_loads_and_generates() {
    for arch in ARCHITECTURES {
        let path = scratch(&format!("{arch}.gguf"));
        tiny_model(arch).write(&path);
        let model = Model::load(&path, options()).unwrap_or_else(|e| panic!("{arch}: {e}"));
        assert_eq!(model.info().architecture, *arch);
        let out = model.complete("Hello the cat", &greedy(8)).unwrap_or_else(|e| panic!("{arch}: {e}"));
        assert_eq!(out.usage.completion_tokens, 8, "{arch}");
    }
}

/// Every scalar of three architectures, set to 0, 1, -1, the type's extremes, NaN and the
/// infinities, one at a time.
#[test]
fn every_hostile_scalar_is_refused_or_works() {
    let mut tally = Tally::new();
    for arch in ARCHITECTURES {
        let base = tiny_model(arch);
        for (key, value) in &base.metadata {
            for bad in value.hostile_values() {
                let mut variant = base.clone();
                variant.set(key, bad.clone());
                let _ = tally.run(&format!("{arch}: {key} = {bad:?}"), &variant);
            }
        }
    }
    eprintln!("worked: {}, refused: {:?}", tally.worked, tally.refused);
    assert!(tally.worked > 0 && !tally.refused.is_empty());
}

/// The values that aborted the process before corral checked them are refused by name.
#[test]
fn values_llama_cpp_asserts_on_are_named() {
    for arch in ARCHITECTURES {
        for (key, bad) in [
            ("block_count", Meta::U32(0)),
            ("block_count", Meta::U32(600)),
            ("attention.layer_norm_rms_epsilon", Meta::F32(-1.0)),
            ("attention.layer_norm_rms_epsilon", Meta::F32(f32::NAN)),
            ("attention.head_count_kv", Meta::U32(3)),
            ("attention.head_count", Meta::U32(0)),
            ("embedding_length", Meta::U32(0)),
        ] {
            let mut variant = tiny_model(arch);
            let key = format!("{arch}.{key}");
            variant.set(&key, bad.clone());
            let path = scratch("named.gguf");
            variant.write(&path);
            let err = Model::load(&path, options()).expect_err(&format!("{key} = {bad:?}"));
            let _ = std::fs::remove_file(&path);
            assert_eq!(err.kind(), ErrorKind::InvalidModel, "{key} = {bad:?}: {err}");
            assert!(err.message().contains(&key), "{key} = {bad:?}: {err}");
        }
    }
}

/// Arrays, the tensor table and the template, broken in the ways files are.
#[test]
fn broken_structures_are_refused_or_work() {
    let mut tally = Tally::new();
    for arch in ARCHITECTURES {
        let base = tiny_model(arch);
        let vocab = match base.get("tokenizer.ggml.tokens") {
            Some(Meta::Strings(t)) => t.len() as u64,
            _ => unreachable!(),
        };
        let mut variants: Vec<(String, Gguf)> = Vec::new();
        let mut edit = |label: &str, change: &dyn Fn(&mut Gguf)| {
            let mut g = base.clone();
            change(&mut g);
            variants.push((format!("{arch}: {label}"), g));
        };
        edit("scores one short", &|g| {
            if let Some(Meta::F32s(s)) = g.get("tokenizer.ggml.scores").cloned() {
                g.set("tokenizer.ggml.scores", Meta::F32s(s[1..].to_vec()));
            }
        });
        edit("token types one short", &|g| {
            if let Some(Meta::I32s(s)) = g.get("tokenizer.ggml.token_type").cloned() {
                g.set("tokenizer.ggml.token_type", Meta::I32s(s[1..].to_vec()));
            }
        });
        edit("token types out of range", &|g| g.set("tokenizer.ggml.token_type", Meta::I32s(vec![-7; vocab as usize])));
        edit("no tokens", &|g| g.set("tokenizer.ggml.tokens", Meta::Strings(Vec::new())));
        edit("tokens of another type", &|g| g.set("tokenizer.ggml.tokens", Meta::F32s(vec![1.0; vocab as usize])));
        edit("empty token strings", &|g| g.set("tokenizer.ggml.tokens", Meta::Strings(vec![String::new(); vocab as usize])));
        edit("BOS out of range", &|g| g.set("tokenizer.ggml.bos_token_id", Meta::U32(vocab as u32 + 5)));
        edit("EOS out of range", &|g| g.set("tokenizer.ggml.eos_token_id", Meta::U32(u32::MAX)));
        edit("unknown tokenizer", &|g| g.set("tokenizer.ggml.model", Meta::Str("nonsense".into())));
        edit("bpe without merges", &|g| g.set("tokenizer.ggml.model", Meta::Str("gpt2".into())));
        edit("bert tokenizer", &|g| g.set("tokenizer.ggml.model", Meta::Str("bert".into())));
        edit("unknown architecture", &|g| g.set("general.architecture", Meta::Str("nonsense".into())));
        edit("architecture of another type", &|g| g.set("general.architecture", Meta::U32(1)));
        edit("block count as a string", &|g| g.set(&format!("{arch}.block_count"), Meta::Str("2".into())));
        edit("head counts per layer, too few", &|g| g.set(&format!("{arch}.attention.head_count"), Meta::U32s(vec![4])));
        edit("head counts per layer, too many", &|g| g.set(&format!("{arch}.attention.head_count"), Meta::U32s(vec![4; 600])));
        edit("head counts per layer, zeros", &|g| g.set(&format!("{arch}.attention.head_count"), Meta::U32s(vec![0, 0])));
        edit("kv heads per layer, not dividing", &|g| g.set(&format!("{arch}.attention.head_count_kv"), Meta::U32s(vec![2, 3])));
        edit("rope dimension odd", &|g| g.set(&format!("{arch}.rope.dimension_count"), Meta::U32(15)));
        edit("rope dimension too large", &|g| g.set(&format!("{arch}.rope.dimension_count"), Meta::U32(1 << 20)));
        edit("key length huge", &|g| g.set(&format!("{arch}.attention.key_length"), Meta::U32(u32::MAX)));
        edit("experts without experts used", &|g| g.set(&format!("{arch}.expert_count"), Meta::U32(8)));
        edit("sliding window zero", &|g| g.set(&format!("{arch}.attention.sliding_window"), Meta::U32(0)));
        edit("sliding window pattern zero", &|g| g.set(&format!("{arch}.attention.sliding_window_pattern"), Meta::U32(0)));
        edit("rope scaling unknown", &|g| g.set(&format!("{arch}.rope.scaling.type"), Meta::Str("nonsense".into())));
        edit("rope scaling factor NaN", &|g| g.set(&format!("{arch}.rope.scaling.factor"), Meta::F32(f32::NAN)));
        edit("pooling type huge", &|g| g.set(&format!("{arch}.pooling_type"), Meta::U32(u32::MAX)));
        edit("causal attention off", &|g| g.set(&format!("{arch}.attention.causal"), Meta::Bool(false)));
        edit("rank pooling without a head", &|g| g.set(&format!("{arch}.pooling_type"), Meta::U32(4)));
        edit("rank head with 100k labels", &|g| {
            g.set(&format!("{arch}.pooling_type"), Meta::U32(4));
            g.set(&format!("{arch}.classifier.output_labels"), Meta::Strings(vec!["x".into(); 100_000]));
        });
        edit("alignment not a power of two", &|g| g.set("general.alignment", Meta::U32(48)));
        edit("no output norm", &|g| g.tensors.retain(|t| t.name != "output_norm.weight"));
        edit("embedding rows short", &|g| {
            let t = g.tensors.iter_mut().find(|t| t.name == "token_embd.weight").unwrap();
            t.dims = vec![t.dims[0], vocab - 1];
        });
        edit("key projection transposed", &|g| {
            let t = g.tensors.iter_mut().find(|t| t.name == "blk.0.attn_k.weight").unwrap();
            t.dims.reverse();
        });
        edit("a tensor of an unknown type", &|g| g.tensors[1].ggml_type = 99);
        edit("a removed tensor type", &|g| g.tensors[1].ggml_type = 4);
        edit("f32 data declared f16", &|g| g.tensors.iter_mut().for_each(|t| t.ggml_type = 1));
        edit("f32 data declared q8_0", &|g| g.tensors.iter_mut().for_each(|t| t.ggml_type = 8));
        edit("a zero dimension", &|g| g.tensors[2].dims[0] = 0);
        edit("a huge dimension", &|g| g.tensors[2].dims[0] = 1 << 40);
        edit("five dimensions", &|g| g.tensors[2].dims = vec![EMBD_ROWS, 1, 1, 1, 1]);
        edit("duplicate tensor", &|g| {
            let t = g.tensors[2].clone();
            g.tensors.push(Tensor { ..t });
        });
        edit("NaN weights", &|g| {
            let t = g.tensors.iter_mut().find(|t| t.name == "output_norm.weight").unwrap();
            t.data = f32::NAN.to_le_bytes().repeat(t.data.len() / 4);
        });
        edit("hostile chat template", &|g| {
            g.set(
                "tokenizer.chat_template",
                Meta::Str("{% set ns = namespace(l=[1]) %}{% for i in range(40) %}{% set ns.l = ns.l + ns.l %}{% endfor %}".into()),
            )
        });
        edit("chat template that does not parse", &|g| g.set("tokenizer.chat_template", Meta::Str("{% for %}".into())));
        for (label, gguf) in &variants {
            let _ = tally.run(label, gguf);
        }
    }
    eprintln!("worked: {}, refused: {:?}", tally.worked, tally.refused);
}

/// llama.cpp's embedding width: the row length of the first tensors.
const EMBD_ROWS: u64 = tiny_gguf::EMBD;

/// The default model itself, with the two values that used to abort the process.
#[test]
fn the_default_model_with_hostile_values_is_refused() {
    let path = models::default_model();
    let original = std::fs::read(&path).unwrap();
    let good = Model::load(&path, options()).unwrap();
    for (key, value) in [
        ("llama.block_count", Meta::U32(0)),
        ("llama.block_count", Meta::U32(513)),
        ("llama.attention.layer_norm_rms_epsilon", Meta::F32(-1.0)),
        ("llama.attention.layer_norm_rms_epsilon", Meta::F32(f32::NAN)),
    ] {
        let bytes = tiny_gguf::patch_scalar(&original, key, &value).unwrap_or_else(|| panic!("{key} is a scalar of that type"));
        let hostile = scratch("default-hostile.gguf");
        std::fs::write(&hostile, bytes).unwrap();
        let err = Model::load(&hostile, options()).expect_err(key);
        let _ = std::fs::remove_file(&hostile);
        assert_eq!(err.kind(), ErrorKind::InvalidModel, "{key}: {err}");
        // The model loaded before keeps working.
        good.complete("The capital of France is", &greedy(2)).unwrap();
    }
}

/// A hostile template passed for one call fails on the caller's thread within a second; the
/// model and a session on it keep working, the session's cache intact.
#[test]
fn a_hostile_template_leaves_the_model_and_its_sessions_working() {
    let path = models::default_model();
    let model = Model::load(&path, ModelOptions { context_length: Some(1024), ..Default::default() }).unwrap();
    let session = model.session().unwrap();
    let mut conversation = vec![Message::new("user", "Say hi.")];
    let reply = session.chat(&conversation, &greedy(3)).unwrap();
    let started = Instant::now();
    let hostile = "{% set ns = namespace(l=[1]) %}{% for i in range(40) %}{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l|length }}";
    let err = model.apply_chat_template(&conversation, true, &[], Some(hostile)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TemplateError);
    assert!(started.elapsed() < Duration::from_secs(1));
    conversation.push(Message::new("assistant", reply.text));
    conversation.push(Message::new("user", "Again."));
    let again = session.chat(&conversation, &greedy(3)).unwrap();
    assert!(again.usage.cached_tokens > 0);
}
