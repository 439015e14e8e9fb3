//! Writes small but real GGUF models (random weights, a byte-level vocabulary) of several
//! architectures, so that tests can make hostile variants of each on the fly: every file a
//! test needs is generated, none is committed.

#![allow(dead_code)]

use std::io::Write;
use std::path::Path;

/// A metadata value with its GGUF type.
#[derive(Debug, Clone, PartialEq)]
pub enum Meta {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    Str(String),
    U64(u64),
    I64(i64),
    F64(f64),
    Strings(Vec<String>),
    F32s(Vec<f32>),
    I32s(Vec<i32>),
    U32s(Vec<u32>),
}

impl Meta {
    fn type_id(&self) -> u32 {
        match self {
            Meta::U8(_) => 0,
            Meta::I8(_) => 1,
            Meta::U16(_) => 2,
            Meta::I16(_) => 3,
            Meta::U32(_) => 4,
            Meta::I32(_) => 5,
            Meta::F32(_) => 6,
            Meta::Bool(_) => 7,
            Meta::Str(_) => 8,
            Meta::Strings(_) | Meta::F32s(_) | Meta::I32s(_) | Meta::U32s(_) => 9,
            Meta::U64(_) => 10,
            Meta::I64(_) => 11,
            Meta::F64(_) => 12,
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        fn string(out: &mut Vec<u8>, s: &str) {
            out.extend((s.len() as u64).to_le_bytes());
            out.extend(s.as_bytes());
        }
        match self {
            Meta::U8(v) => out.push(*v),
            Meta::I8(v) => out.push(*v as u8),
            Meta::U16(v) => out.extend(v.to_le_bytes()),
            Meta::I16(v) => out.extend(v.to_le_bytes()),
            Meta::U32(v) => out.extend(v.to_le_bytes()),
            Meta::I32(v) => out.extend(v.to_le_bytes()),
            Meta::F32(v) => out.extend(v.to_le_bytes()),
            Meta::Bool(v) => out.push(*v as u8),
            Meta::Str(s) => string(out, s),
            Meta::U64(v) => out.extend(v.to_le_bytes()),
            Meta::I64(v) => out.extend(v.to_le_bytes()),
            Meta::F64(v) => out.extend(v.to_le_bytes()),
            Meta::Strings(items) => {
                out.extend(8u32.to_le_bytes());
                out.extend((items.len() as u64).to_le_bytes());
                items.iter().for_each(|s| string(out, s));
            }
            Meta::F32s(items) => {
                out.extend(6u32.to_le_bytes());
                out.extend((items.len() as u64).to_le_bytes());
                items.iter().for_each(|v| out.extend(v.to_le_bytes()));
            }
            Meta::I32s(items) => {
                out.extend(5u32.to_le_bytes());
                out.extend((items.len() as u64).to_le_bytes());
                items.iter().for_each(|v| out.extend(v.to_le_bytes()));
            }
            Meta::U32s(items) => {
                out.extend(4u32.to_le_bytes());
                out.extend((items.len() as u64).to_le_bytes());
                items.iter().for_each(|v| out.extend(v.to_le_bytes()));
            }
        }
    }

    /// The values a hostile file puts in place of this one (scalars only): zero, one, the
    /// type's extremes, -1, NaN and the infinities.
    pub fn hostile_values(&self) -> Vec<Meta> {
        match self {
            Meta::U8(_) => vec![Meta::U8(0), Meta::U8(1), Meta::U8(u8::MAX)],
            Meta::I8(_) => vec![Meta::I8(0), Meta::I8(1), Meta::I8(-1), Meta::I8(i8::MIN), Meta::I8(i8::MAX)],
            Meta::U16(_) => vec![Meta::U16(0), Meta::U16(1), Meta::U16(u16::MAX)],
            Meta::I16(_) => vec![Meta::I16(0), Meta::I16(1), Meta::I16(-1), Meta::I16(i16::MIN), Meta::I16(i16::MAX)],
            Meta::U32(_) => vec![Meta::U32(0), Meta::U32(1), Meta::U32(u32::MAX), Meta::U32(u32::MAX / 2 + 1)],
            Meta::I32(_) => vec![Meta::I32(0), Meta::I32(1), Meta::I32(-1), Meta::I32(i32::MIN), Meta::I32(i32::MAX)],
            Meta::U64(_) => vec![Meta::U64(0), Meta::U64(1), Meta::U64(u64::MAX)],
            Meta::I64(_) => vec![Meta::I64(0), Meta::I64(1), Meta::I64(-1), Meta::I64(i64::MIN), Meta::I64(i64::MAX)],
            Meta::F32(_) => [0.0, 1.0, -1.0, f32::NAN, f32::INFINITY, f32::NEG_INFINITY, f32::MAX, f32::MIN, f32::MIN_POSITIVE]
                .into_iter()
                .map(Meta::F32)
                .collect(),
            Meta::F64(_) => {
                [0.0, 1.0, -1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, f64::MAX, f64::MIN].into_iter().map(Meta::F64).collect()
            }
            Meta::Bool(b) => vec![Meta::Bool(!b)],
            _ => Vec::new(),
        }
    }
}

/// A tensor: its name, its shape (GGUF order: the row length first) and its ggml type.
#[derive(Debug, Clone)]
pub struct Tensor {
    pub name: String,
    pub dims: Vec<u64>,
    pub ggml_type: u32,
    pub data: Vec<u8>,
}

/// A whole model: metadata in file order, then tensors.
#[derive(Debug, Clone)]
pub struct Gguf {
    pub metadata: Vec<(String, Meta)>,
    pub tensors: Vec<Tensor>,
}

const ALIGNMENT: usize = 32;

impl Gguf {
    pub fn set(&mut self, key: &str, value: Meta) {
        match self.metadata.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value,
            None => self.metadata.push((key.to_string(), value)),
        }
    }

    pub fn get(&self, key: &str) -> Option<&Meta> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn remove(&mut self, key: &str) {
        self.metadata.retain(|(k, _)| k != key);
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(b"GGUF");
        out.extend(3u32.to_le_bytes());
        out.extend((self.tensors.len() as u64).to_le_bytes());
        out.extend((self.metadata.len() as u64).to_le_bytes());
        for (key, value) in &self.metadata {
            Meta::Str(key.clone()).write(&mut out);
            out.extend(value.type_id().to_le_bytes());
            value.write(&mut out);
        }
        let mut offset = 0usize;
        for t in &self.tensors {
            Meta::Str(t.name.clone()).write(&mut out);
            out.extend((t.dims.len() as u32).to_le_bytes());
            t.dims.iter().for_each(|d| out.extend(d.to_le_bytes()));
            out.extend(t.ggml_type.to_le_bytes());
            out.extend((offset as u64).to_le_bytes());
            offset += t.data.len().div_ceil(ALIGNMENT) * ALIGNMENT;
        }
        out.resize(out.len().div_ceil(ALIGNMENT) * ALIGNMENT, 0);
        for t in &self.tensors {
            out.extend(&t.data);
            out.resize(out.len().div_ceil(ALIGNMENT) * ALIGNMENT, 0);
        }
        out
    }

    pub fn write(&self, path: &Path) {
        std::fs::File::create(path).and_then(|mut f| f.write_all(&self.bytes())).expect("write a test model");
    }
}

/// Seeded small weights (a linear congruential generator: the same file every run).
fn weights(n: usize, seed: u64, scale: f32) -> Vec<u8> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut out = Vec::with_capacity(n * 4);
    for _ in 0..n {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let unit = ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0;
        out.extend((unit * scale).to_le_bytes());
    }
    out
}

fn ones(n: usize) -> Vec<u8> {
    (0..n).flat_map(|_| 1.0f32.to_le_bytes()).collect()
}

/// The architectures `tiny_model` can write.
pub const ARCHITECTURES: &[&str] = &["llama", "qwen2", "gemma2"];

pub const EMBD: u64 = 64;
pub const HEADS: u64 = 4;
pub const KV_HEADS: u64 = 2;
pub const HEAD_DIM: u64 = EMBD / HEADS;
pub const FF: u64 = 128;
pub const LAYERS: u64 = 2;

/// A SentencePiece-style vocabulary: unknown, BOS, EOS, the 256 byte tokens, a few words.
fn vocabulary() -> (Vec<String>, Vec<f32>, Vec<i32>) {
    let mut tokens = vec!["<unk>".to_string(), "<s>".to_string(), "</s>".to_string()];
    let mut types = vec![2, 3, 3];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
    }
    for word in ["▁the", "▁a", "▁cat", "▁sat", "▁on", "▁mat", "▁Hello", "▁world", "▁is", "▁of"] {
        tokens.push(word.to_string());
        types.push(1);
    }
    let scores = (0..tokens.len()).map(|i| -(i as f32)).collect();
    (tokens, scores, types)
}

/// A model of `arch` with random weights, small enough to write hundreds of variants.
pub fn tiny_model(arch: &str) -> Gguf {
    let (tokens, scores, types) = vocabulary();
    let vocab = tokens.len() as u64;
    let key = |k: &str| format!("{arch}.{k}");
    let mut metadata = vec![
        ("general.architecture".to_string(), Meta::Str(arch.to_string())),
        ("general.name".to_string(), Meta::Str(format!("tiny {arch}"))),
        ("general.alignment".to_string(), Meta::U32(ALIGNMENT as u32)),
        ("general.file_type".to_string(), Meta::U32(0)),
        (key("context_length"), Meta::U32(512)),
        (key("embedding_length"), Meta::U32(EMBD as u32)),
        (key("block_count"), Meta::U32(LAYERS as u32)),
        (key("feed_forward_length"), Meta::U32(FF as u32)),
        (key("attention.head_count"), Meta::U32(HEADS as u32)),
        (key("attention.head_count_kv"), Meta::U32(KV_HEADS as u32)),
        (key("rope.freq_base"), Meta::F32(10000.0)),
        (key("attention.layer_norm_rms_epsilon"), Meta::F32(1e-6)),
    ];
    match arch {
        "llama" => {
            metadata.push((key("rope.dimension_count"), Meta::U32(HEAD_DIM as u32)));
            metadata.push((key("vocab_size"), Meta::U32(vocab as u32)));
        }
        "gemma2" => {
            metadata.push((key("attention.key_length"), Meta::U32(HEAD_DIM as u32)));
            metadata.push((key("attention.value_length"), Meta::U32(HEAD_DIM as u32)));
            metadata.push((key("attention.sliding_window"), Meta::U32(64)));
            metadata.push((key("attn_logit_softcapping"), Meta::F32(50.0)));
            metadata.push((key("final_logit_softcapping"), Meta::F32(30.0)));
        }
        _ => {}
    }
    metadata.extend([
        ("tokenizer.ggml.model".to_string(), Meta::Str("llama".into())),
        ("tokenizer.ggml.tokens".to_string(), Meta::Strings(tokens)),
        ("tokenizer.ggml.scores".to_string(), Meta::F32s(scores)),
        ("tokenizer.ggml.token_type".to_string(), Meta::I32s(types)),
        ("tokenizer.ggml.unknown_token_id".to_string(), Meta::U32(0)),
        ("tokenizer.ggml.bos_token_id".to_string(), Meta::U32(1)),
        ("tokenizer.ggml.eos_token_id".to_string(), Meta::U32(2)),
        ("tokenizer.ggml.add_bos_token".to_string(), Meta::Bool(true)),
        ("tokenizer.chat_template".to_string(), Meta::Str(
            "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}".into(),
        )),
    ]);

    let mut seed = 0;
    let mut tensors = Vec::new();
    let mut add = |name: String, dims: Vec<u64>, norm: bool| {
        let n: u64 = dims.iter().product();
        seed += 1;
        let data = if norm { ones(n as usize) } else { weights(n as usize, seed, 0.05) };
        tensors.push(Tensor { name, dims, ggml_type: 0, data });
    };
    let kv = KV_HEADS * HEAD_DIM;
    add("token_embd.weight".into(), vec![EMBD, vocab], false);
    add("output_norm.weight".into(), vec![EMBD], true);
    if arch != "gemma2" {
        add("output.weight".into(), vec![EMBD, vocab], false);
    }
    for i in 0..LAYERS {
        add(format!("blk.{i}.attn_norm.weight"), vec![EMBD], true);
        add(format!("blk.{i}.attn_q.weight"), vec![EMBD, EMBD], false);
        add(format!("blk.{i}.attn_k.weight"), vec![EMBD, kv], false);
        add(format!("blk.{i}.attn_v.weight"), vec![EMBD, kv], false);
        add(format!("blk.{i}.attn_output.weight"), vec![EMBD, EMBD], false);
        if arch == "qwen2" {
            add(format!("blk.{i}.attn_q.bias"), vec![EMBD], false);
            add(format!("blk.{i}.attn_k.bias"), vec![kv], false);
            add(format!("blk.{i}.attn_v.bias"), vec![kv], false);
        }
        if arch == "gemma2" {
            add(format!("blk.{i}.post_attention_norm.weight"), vec![EMBD], true);
            add(format!("blk.{i}.post_ffw_norm.weight"), vec![EMBD], true);
        }
        add(format!("blk.{i}.ffn_norm.weight"), vec![EMBD], true);
        add(format!("blk.{i}.ffn_gate.weight"), vec![EMBD, FF], false);
        add(format!("blk.{i}.ffn_up.weight"), vec![EMBD, FF], false);
        add(format!("blk.{i}.ffn_down.weight"), vec![FF, EMBD], false);
    }
    Gguf { metadata, tensors }
}

/// A copy of a GGUF file with the scalar `key` set to `value` (of the same type, so nothing
/// moves); `None` when the key is missing or of another type.
pub fn patch_scalar(file: &[u8], key: &str, value: &Meta) -> Option<Vec<u8>> {
    let mut pos = 4 + 4 + 8; // magic, version, tensor count
    let read_u64 = |pos: &mut usize| -> Option<u64> {
        let v = u64::from_le_bytes(file.get(*pos..*pos + 8)?.try_into().ok()?);
        *pos += 8;
        Some(v)
    };
    let read_u32 = |pos: &mut usize| -> Option<u32> {
        let v = u32::from_le_bytes(file.get(*pos..*pos + 4)?.try_into().ok()?);
        *pos += 4;
        Some(v)
    };
    let kv_count = read_u64(&mut pos)?;
    // Sizes of the fixed-size GGUF types, by type id.
    let size = |t: u32| -> Option<usize> { [1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8].get(t as usize).copied().filter(|&s| s > 0) };
    for _ in 0..kv_count {
        let len = read_u64(&mut pos)? as usize;
        let name = std::str::from_utf8(file.get(pos..pos + len)?).ok()?.to_string();
        pos += len;
        let value_type = read_u32(&mut pos)?;
        if name == key {
            if value_type != value.type_id() {
                return None;
            }
            let mut bytes = Vec::new();
            value.write(&mut bytes);
            let mut out = file.to_vec();
            out[pos..pos + bytes.len()].copy_from_slice(&bytes);
            return Some(out);
        }
        // Skip the value.
        let skip_one = |pos: &mut usize, t: u32| -> Option<()> {
            match t {
                8 => {
                    let n = read_u64(pos)? as usize;
                    *pos += n;
                }
                t => *pos += size(t)?,
            }
            Some(())
        };
        if value_type == 9 {
            let item_type = read_u32(&mut pos)?;
            let count = read_u64(&mut pos)?;
            for _ in 0..count {
                skip_one(&mut pos, item_type)?;
            }
        } else {
            skip_one(&mut pos, value_type)?;
        }
    }
    None
}
