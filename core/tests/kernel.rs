//! corral's quantized GEMM (core/kernels/quant_gemm.cpp, linked into the CPU variants that ship):
//! - in every shipped variant this CPU can run (VNNI or plain AVX2), computes exactly its
//!   documented formula for every tile shape, batch size and thread split, so its results never
//!   depend on the variant or the batch; and agrees with ggml's dot product within rounding;
//! - through the whole model, scores a prompt like the variants as ggml built them, within
//!   rounding, and generates the same greedy tokens up to a near tie.
//!
//! The backend is chosen once per process, so each model run happens in a child process of
//! this test binary.

use std::path::{Path, PathBuf};
use std::process::Command;

mod variants;
use variants::{relinked, ComputeParams};

const CHILD: &str = "CORRAL_KERNEL_TEST_CHILD";

fn model_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// One generated token: (token, log-probability) chosen, then the top alternatives.
type Step = Vec<(i32, f32)>;

/// What a model run produced: prompt scores (batches of up to 128 tokens, the last of 4k+3
/// tokens) and a greedy generation (one token per batch) with log-probabilities.
struct Fingerprint {
    variant: String,
    scores: Vec<f32>,
    generated: Vec<Step>,
}

fn fingerprint() -> String {
    let model = corral::Model::load(&model_path(), corral::ModelOptions { threads: Some(2), ..Default::default() }).unwrap();
    let text = "The history of computing is a story of people, ideas and machines. ".repeat(30);
    let mut tokens = model.tokenize(&text, true, false).unwrap();
    tokens.truncate(128 * 2 + 4 * 5 + 3 + 1);
    let scores = model.score(&tokens).unwrap();
    let options = corral::GenerateOptions { max_tokens: Some(24), temperature: 0.0, logprobs: Some(3), ..Default::default() };
    let done = model.complete("Once upon a time", &options).unwrap();
    let hex = |t: &corral::TokenLogprob| format!("{}:{:08x}", t.token, t.logprob.to_bits());
    let generated: Vec<String> =
        done.logprobs.iter().map(|l| std::iter::once(hex(&l.token)).chain(l.top.iter().map(hex)).collect::<Vec<_>>().join("|")).collect();
    let scored: Vec<String> = scores.iter().map(|s| format!("{:08x}", s.to_bits())).collect();
    format!("{}\n{}\n{}", corral::cpu_variant().unwrap().name, scored.join(","), generated.join(","))
}

/// Runs the model in a child process whose CPU variants come from `backend_dir`.
fn fingerprint_with(backend_dir: &Path) -> Fingerprint {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_fingerprint", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env("CORRAL_BACKEND_DIR", backend_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "child failed: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let start = stdout.find("<<<").expect("fingerprint start") + 3;
    let end = stdout.find(">>>").expect("fingerprint end");
    let mut lines = stdout[start..end].lines();
    let float = |hex: &str| f32::from_bits(u32::from_str_radix(hex, 16).unwrap());
    let pair = |text: &str| {
        let (token, logprob) = text.split_once(':').unwrap();
        (token.parse().unwrap(), float(logprob))
    };
    let variant = lines.next().unwrap().to_string();
    let scores = lines.next().unwrap().split(',').map(float).collect();
    let generated = lines.next().unwrap().split(',').map(|step| step.split('|').map(pair).collect()).collect();
    Fingerprint { variant, scores, generated }
}

#[test]
fn child_fingerprint() {
    if std::env::var_os(CHILD).is_some() {
        println!("<<<{}>>>", fingerprint());
    }
}

/// How far log-probabilities may drift from ggml's through 30 layers when only the order of
/// float sums differs. Measured on this prompt: mean 0.011, worst token 0.25; ggml's own AVX2
/// and AVX-512 variants differ by 0.004 and 0.15 (perplexity on 2,047 tokens of the GPL: ggml
/// 19.81 / 19.76, corral 19.84 / 19.76).
const MEAN_LOGPROB_DRIFT: f32 = 0.03;
const TOKEN_LOGPROB_DRIFT: f32 = 0.6;

#[test]
fn relinked_variants_agree_with_ggml() {
    let shipped = PathBuf::from(env!("CORRAL_BUILD_RUNTIME_DIR"));
    let ours = fingerprint_with(&shipped);
    let theirs = fingerprint_with(Path::new(env!("CORRAL_GGML_BACKEND_DIR")));
    assert_eq!(ours.scores.len(), 279); // one per token after the first
    assert_eq!(ours.generated.len(), 24);
    let drift: Vec<f32> = ours.scores.iter().zip(&theirs.scores).map(|(a, b)| (a - b).abs()).collect();
    let mean = drift.iter().sum::<f32>() / drift.len() as f32;
    let worst = drift.iter().copied().fold(0f32, f32::max);
    eprintln!("prompt scores drift from ggml's: mean {mean}, worst {worst}");
    assert!(mean <= MEAN_LOGPROB_DRIFT && worst <= TOKEN_LOGPROB_DRIFT, "prompt scores drift from ggml's: mean {mean}, worst {worst}");
    // The same greedy tokens until, possibly, a near tie: there ggml's choice is one of ours'
    // alternatives, almost as likely; after it the texts differ.
    for (i, (a, b)) in ours.generated.iter().zip(&theirs.generated).enumerate() {
        if a[0].0 != b[0].0 {
            let alternative = a[1..].iter().find(|alt| alt.0 == b[0].0);
            assert!(alternative.is_some_and(|alt| a[0].1 - alt.1 <= TOKEN_LOGPROB_DRIFT), "token {i}: {a:?} vs ggml's {b:?}");
            break;
        }
        assert!((a[0].1 - b[0].1).abs() <= TOKEN_LOGPROB_DRIFT, "token {i}: {a:?} vs ggml's {b:?}");
    }
    if relinked() {
        // The variant this CPU runs is one of the relinked ones, and it is not ggml's.
        let library = std::fs::read(shipped.join(format!("libggml-cpu-{}.so", ours.variant))).unwrap();
        let marker = b"ggml_llamafile_sgemm";
        assert!(library.windows(marker.len()).any(|w| w == marker), "libggml-cpu-{}.so lacks corral's GEMM", ours.variant);
        assert_ne!(ours.scores, theirs.scores, "the relinked variant computed ggml's bits");
    }
}

type Sgemm =
    unsafe extern "C" fn(*const ComputeParams, i64, i64, i64, *const u8, i64, *const u8, i64, *mut f32, i64, i32, i32, i32) -> bool;
type VecDot = unsafe extern "C" fn(i32, *mut f32, usize, *const u8, usize, *const u8, usize, i32);

const Q4_1_BLOCK: usize = 20; // f16 scale, f16 min, 16 bytes of nibbles
const Q8_1_BLOCK: usize = 36; // f16 scale, f16 scale * sum, 32 signed bytes
const Q8_0_BLOCK: usize = 34; // f16 scale, 32 signed bytes
const Q5_0_BLOCK: usize = 22; // f16 scale, 32 fifth bits, 16 bytes of nibbles
const Q4_0_BLOCK: usize = 18; // f16 scale, 16 bytes of nibbles
const Q5_1_BLOCK: usize = 24; // f16 scale, f16 min, 32 fifth bits, 16 bytes of nibbles
const GGML_TYPE_F32: i32 = 0;
const GGML_TYPE_Q4_0: i32 = 2;
const GGML_TYPE_Q4_1: i32 = 3;
const GGML_TYPE_Q5_0: i32 = 6;
const GGML_TYPE_Q5_1: i32 = 7;
const GGML_TYPE_Q8_0: i32 = 8;
const GGML_TYPE_Q8_1: i32 = 9;

/// Random blocks with finite f16 scales of either sign (for Q8_0, the second "scale" is two
/// of its 32 values).
fn random_blocks(count: usize, block: usize, seed: &mut u64) -> Vec<u8> {
    let mut next = || {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (*seed >> 33) as u32
    };
    let mut bytes = Vec::with_capacity(count * block);
    for _ in 0..count {
        for _ in 0..2 {
            let r = next();
            // sign, exponent 8..15 (2^-7 .. 1), random mantissa
            let half = ((r & 1) << 15) | ((8 + (r >> 1) % 8) << 10) | ((r >> 4) & 0x3FF);
            bytes.extend_from_slice(&(half as u16).to_le_bytes());
        }
        bytes.extend((0..block - 4).map(|_| next() as u8));
    }
    // Never -128: ggml's quantizers produce -127..127, and its Q8_0 dot product relies on it.
    for byte in &mut bytes {
        if *byte == 0x80 {
            *byte = 0x81;
        }
    }
    bytes
}

/// Weight j of a 32-weight block: its nibble (byte j: weight j low, weight j + 16 high) in the
/// 16 bytes at `qs`, plus bit j of the 32-bit word at `qh` as bit 4 (5-bit formats).
fn weight(block: &[u8], qs: usize, qh: Option<usize>, j: usize) -> i32 {
    let nibble = if j < 16 { block[qs + j] & 0x0F } else { block[qs + j - 16] >> 4 } as i32;
    let fifth = qh.map_or(0, |qh| (u32::from_le_bytes(block[qh..qh + 4].try_into().unwrap()) >> j) & 1) as i32;
    nibble | (fifth << 4)
}

/// The kernel's formula for one (row, column) of Q4_1 or Q5_1 x Q8_1, step by step in f32:
/// per block, the exact integer dot product, then two fmas.
fn reference_dot_with_min(a: &[u8], b: &[u8], k: usize, block_size: usize, qh: Option<usize>) -> f32 {
    let qs = if qh.is_some() { 8 } else { 4 };
    let mut acc = 0f32;
    for block in 0..k {
        let (wa, wb) = (&a[block * block_size..], &b[block * Q8_1_BLOCK..]);
        let isum: i32 = (0..32).map(|j| weight(wa, qs, qh, j) * wb[4 + j] as i8 as i32).sum();
        acc = (isum as f32).mul_add(half(wa) * half(wb), acc);
        acc = half(&wa[2..]).mul_add(half(&wb[2..]), acc);
    }
    acc
}

fn reference_dot(a: &[u8], b: &[u8], k: usize) -> f32 {
    reference_dot_with_min(a, b, k, Q4_1_BLOCK, None)
}

fn reference_dot_q5_1(a: &[u8], b: &[u8], k: usize) -> f32 {
    reference_dot_with_min(a, b, k, Q5_1_BLOCK, Some(4))
}

/// Q5_0 x Q8_0: per block, the exact integer dot product of (q - 16) and the activations, then one fma.
fn reference_dot_q5_0(a: &[u8], b: &[u8], k: usize) -> f32 {
    let mut acc = 0f32;
    for block in 0..k {
        let (wa, wb) = (&a[block * Q5_0_BLOCK..], &b[block * Q8_0_BLOCK..]);
        let isum: i32 = (0..32).map(|j| (weight(wa, 6, Some(2), j) - 16) * wb[2 + j] as i8 as i32).sum();
        acc = (isum as f32).mul_add(half(wa) * half(wb), acc);
    }
    acc
}

fn rounding_bound_q5_0(a: &[u8], b: &[u8], k: usize) -> f32 {
    let scales = |block: usize| half(&a[block * Q5_0_BLOCK..]) as f64 * half(&b[block * Q8_0_BLOCK..]) as f64;
    rounding_bound_of((0..k).map(|block| scales(block).abs() * 32.0 * 16.0 * 128.0).sum(), k)
}

/// Q4_0 x Q8_0: per block, the exact integer dot product of (q - 8) and the activations, then one fma.
fn reference_dot_q4_0(a: &[u8], b: &[u8], k: usize) -> f32 {
    let mut acc = 0f32;
    for block in 0..k {
        let (wa, wb) = (&a[block * Q4_0_BLOCK..], &b[block * Q8_0_BLOCK..]);
        let isum: i32 = (0..32).map(|j| (weight(wa, 2, None, j) - 8) * wb[2 + j] as i8 as i32).sum();
        acc = (isum as f32).mul_add(half(wa) * half(wb), acc);
    }
    acc
}

fn rounding_bound_q4_0(a: &[u8], b: &[u8], k: usize) -> f32 {
    let scales = |block: usize| half(&a[block * Q4_0_BLOCK..]) as f64 * half(&b[block * Q8_0_BLOCK..]) as f64;
    rounding_bound_of((0..k).map(|block| scales(block).abs() * 32.0 * 8.0 * 128.0).sum(), k)
}

fn rounding_bound_q5_1(a: &[u8], b: &[u8], k: usize) -> f32 {
    rounding_bound_with_min(a, b, k, Q5_1_BLOCK, 31.0)
}

/// Q8_0 x Q8_0: per block, the exact integer dot product, then one fma.
fn reference_dot_q8_0(a: &[u8], b: &[u8], k: usize) -> f32 {
    let mut acc = 0f32;
    for block in 0..k {
        let (wa, wb) = (&a[block * Q8_0_BLOCK..], &b[block * Q8_0_BLOCK..]);
        let isum: i32 = (0..32).map(|j| wa[2 + j] as i8 as i32 * wb[2 + j] as i8 as i32).sum();
        acc = (isum as f32).mul_add(half(wa) * half(wb), acc);
    }
    acc
}

fn rounding_bound_q8_0(a: &[u8], b: &[u8], k: usize) -> f32 {
    let scales = |block: usize| half(&a[block * Q8_0_BLOCK..]) as f64 * half(&b[block * Q8_0_BLOCK..]) as f64;
    rounding_bound_of((0..k).map(|block| scales(block).abs() * 32.0 * 128.0 * 128.0).sum(), k)
}

/// A weight x activation format the kernel takes.
struct Format {
    name: &'static str,
    weight_type: i32,
    activation_type: i32,
    weight_block: usize,
    activation_block: usize,
    /// ggml's dot product for the pair
    vec_dot: &'static str,
    /// The kernel's own formula, and how far ggml's summation order may take ggml from it.
    formula: Formula,
    /// Weights per block: 32, or 256 for the K-quants' super-blocks.
    block_values: usize,
    /// How test blocks are made (None: random bytes with leading finite f16 scales).
    random_weights: Option<fn(usize, &mut u64) -> Vec<u8>>,
    random_activations: Option<fn(usize, &mut u64) -> Vec<u8>>,
}

struct Formula {
    reference: fn(&[u8], &[u8], usize) -> f32,
    rounding_bound: fn(&[u8], &[u8], usize) -> f32,
}

/// A format of 32-weight blocks, checked against the kernel's own formula.
const fn with_formula(
    name: &'static str,
    (weight_type, weight_block): (i32, usize),
    (activation_type, activation_block): (i32, usize),
    vec_dot: &'static str,
    reference: fn(&[u8], &[u8], usize) -> f32,
    rounding_bound: fn(&[u8], &[u8], usize) -> f32,
) -> Format {
    Format {
        name,
        weight_type,
        activation_type,
        weight_block,
        activation_block,
        vec_dot,
        formula: Formula { reference, rounding_bound },
        block_values: 32,
        random_weights: None,
        random_activations: None,
    }
}

const Q4_1_X_Q8_1: Format = with_formula(
    "Q4_1 x Q8_1",
    (GGML_TYPE_Q4_1, Q4_1_BLOCK),
    (GGML_TYPE_Q8_1, Q8_1_BLOCK),
    "ggml_vec_dot_q4_1_q8_1",
    reference_dot,
    rounding_bound,
);
const Q8_0_X_Q8_0: Format = with_formula(
    "Q8_0 x Q8_0",
    (GGML_TYPE_Q8_0, Q8_0_BLOCK),
    (GGML_TYPE_Q8_0, Q8_0_BLOCK),
    "ggml_vec_dot_q8_0_q8_0",
    reference_dot_q8_0,
    rounding_bound_q8_0,
);
const Q5_0_X_Q8_0: Format = with_formula(
    "Q5_0 x Q8_0",
    (GGML_TYPE_Q5_0, Q5_0_BLOCK),
    (GGML_TYPE_Q8_0, Q8_0_BLOCK),
    "ggml_vec_dot_q5_0_q8_0",
    reference_dot_q5_0,
    rounding_bound_q5_0,
);
const Q4_0_X_Q8_0: Format = with_formula(
    "Q4_0 x Q8_0",
    (GGML_TYPE_Q4_0, Q4_0_BLOCK),
    (GGML_TYPE_Q8_0, Q8_0_BLOCK),
    "ggml_vec_dot_q4_0_q8_0",
    reference_dot_q4_0,
    rounding_bound_q4_0,
);
const Q5_1_X_Q8_1: Format = with_formula(
    "Q5_1 x Q8_1",
    (GGML_TYPE_Q5_1, Q5_1_BLOCK),
    (GGML_TYPE_Q8_1, Q8_1_BLOCK),
    "ggml_vec_dot_q5_1_q8_1",
    reference_dot_q5_1,
    rounding_bound_q5_1,
);

const Q4_K_BLOCK: usize = 144; // f16 scale, f16 min scale, 12 bytes of 6-bit scales and mins, 128 bytes of nibbles
const Q5_K_BLOCK: usize = 176; // as Q4_K, then 32 bytes of fifth bits before the nibbles
const Q6_K_BLOCK: usize = 210; // 128 bytes of nibbles, 64 of 2-bit pairs, 16 int8 scales, f16 scale
const Q8_K_BLOCK: usize = 292; // f32 scale, 256 signed bytes, 16 int16 sums of 16
const GGML_TYPE_Q4_K: i32 = 12;
const GGML_TYPE_Q5_K: i32 = 13;
const GGML_TYPE_Q6_K: i32 = 14;
const GGML_TYPE_Q8_K: i32 = 15;

/// Random K-quant super-blocks: random bytes, with finite f16 scales at `halves`.
fn random_k_blocks(count: usize, block: usize, halves: &[usize], seed: &mut u64) -> Vec<u8> {
    let mut bytes = random_blocks(count, block, seed);
    let finite = random_blocks(count * halves.len(), 4, seed);
    for (i, chunk) in bytes.chunks_mut(block).enumerate() {
        if i % 4 == 3 {
            chunk.fill(0xFF); // every weight at its largest: the kernels' 16-bit partial sums at their bounds
        }
        for (h, &offset) in halves.iter().enumerate() {
            chunk[offset..offset + 2].copy_from_slice(&finite[(i * halves.len() + h) * 4..][..2]);
        }
    }
    bytes
}

/// Random Q8_K activations, the sums of each 16 stored beside them: random values (-128..127,
/// one more than ggml's quantizer makes), and every third block at an extreme (all -128 or all
/// 127, against blocks of weights at their largest: the kernels' 16-bit partial sums).
fn random_q8_k(count: usize, seed: &mut u64) -> Vec<u8> {
    let mut bytes = random_blocks(count, Q8_K_BLOCK, seed);
    let scales = random_blocks(count, 4, seed);
    for (i, block) in bytes.chunks_mut(Q8_K_BLOCK).enumerate() {
        match i % 6 {
            2 => block[4..260].fill(0x80),
            5 => block[4..260].fill(0x7F),
            _ => {}
        }
        block[..4].copy_from_slice(&half(&scales[i * 4..]).to_le_bytes());
        for group in 0..16 {
            let sum: i32 = block[4 + 16 * group..4 + 16 * (group + 1)].iter().map(|&q| q as i8 as i32).sum();
            block[260 + 2 * group..262 + 2 * group].copy_from_slice(&(sum as i16).to_le_bytes());
        }
    }
    bytes
}

fn k_quant(
    name: &'static str,
    (weight_type, weight_block): (i32, usize),
    vec_dot: &'static str,
    random_weights: fn(usize, &mut u64) -> Vec<u8>,
    (reference, rounding_bound): (fn(&[u8], &[u8], usize) -> f32, fn(&[u8], &[u8], usize) -> f32),
) -> Format {
    Format {
        name,
        weight_type,
        activation_type: GGML_TYPE_Q8_K,
        weight_block,
        activation_block: Q8_K_BLOCK,
        vec_dot,
        formula: Formula { reference, rounding_bound },
        block_values: 256,
        random_weights: Some(random_weights),
        random_activations: Some(random_q8_k),
    }
}

fn k_quants() -> [Format; 3] {
    [
        k_quant(
            "Q4_K x Q8_K",
            (GGML_TYPE_Q4_K, Q4_K_BLOCK),
            "ggml_vec_dot_q4_K_q8_K",
            |n, seed| random_k_blocks(n, Q4_K_BLOCK, &[0, 2], seed),
            (|a, b, k| k_nibble_terms(a, b, k, Q4_K_BLOCK, 16, None).0, |a, b, k| k_nibble_terms(a, b, k, Q4_K_BLOCK, 16, None).1),
        ),
        k_quant(
            "Q5_K x Q8_K",
            (GGML_TYPE_Q5_K, Q5_K_BLOCK),
            "ggml_vec_dot_q5_K_q8_K",
            |n, seed| random_k_blocks(n, Q5_K_BLOCK, &[0, 2], seed),
            (|a, b, k| k_nibble_terms(a, b, k, Q5_K_BLOCK, 48, Some(16)).0, |a, b, k| k_nibble_terms(a, b, k, Q5_K_BLOCK, 48, Some(16)).1),
        ),
        k_quant(
            "Q6_K x Q8_K",
            (GGML_TYPE_Q6_K, Q6_K_BLOCK),
            "ggml_vec_dot_q6_K_q8_K",
            |n, seed| random_k_blocks(n, Q6_K_BLOCK, &[208], seed),
            (|a, b, k| q6_k_terms(a, b, k).0, |a, b, k| q6_k_terms(a, b, k).1),
        ),
    ]
}

/// Q8_K block `block` of a column: its scale and its 256 values.
fn q8_k(b: &[u8], block: usize) -> (f32, impl Fn(usize) -> i32 + '_) {
    let wb = &b[block * Q8_K_BLOCK..];
    (f32::from_le_bytes(wb[..4].try_into().unwrap()), move |i: usize| wb[4 + i] as i8 as i32)
}

/// Q4_K, Q5_K: the 6-bit scale and min of sub-block s (of 32) from the 12 packed bytes.
fn k_scale_min(packed: &[u8], s: usize) -> (i32, i32) {
    if s < 4 {
        ((packed[s] & 63) as i32, (packed[s + 4] & 63) as i32)
    } else {
        (((packed[s + 4] & 0xF) | ((packed[s - 4] >> 6) << 4)) as i32, ((packed[s + 4] >> 4) | ((packed[s] >> 6) << 4)) as i32)
    }
}

/// The kernel's formula for Q4_K or Q5_K x Q8_K (nibbles at `qs`, fifth bits at `qh`), and a
/// rounding bound for ggml's own order: per super-block, isum = sum of scale x exact sub-block
/// dot product, msum = sum of min x sub-block activation sum, then two fmas.
fn k_nibble_terms(a: &[u8], b: &[u8], k: usize, block_size: usize, qs: usize, qh: Option<usize>) -> (f32, f32) {
    let (mut acc, mut magnitude) = (0f32, 0f64);
    for block in 0..k {
        let wa = &a[block * block_size..];
        let (ad, act) = q8_k(b, block);
        let weight = |i: usize| {
            let (chunk, byte) = (i / 32, wa[qs + 32 * (i / 64) + i % 32]);
            let nibble = if chunk % 2 == 0 { byte & 0x0F } else { byte >> 4 } as i32;
            nibble | qh.map_or(0, |qh| (((wa[qh + i % 32] >> chunk) & 1) as i32) << 4)
        };
        let (mut isum, mut msum, mut terms, mut min_terms) = (0i32, 0i32, 0f64, 0f64);
        for s in 0..8 {
            let (scale, min) = k_scale_min(&wa[4..16], s);
            let sub = 32 * s..32 * (s + 1);
            isum += scale * sub.clone().map(|i| weight(i) * act(i)).sum::<i32>();
            msum += min * sub.clone().map(&act).sum::<i32>();
            terms += (scale * sub.clone().map(|i| (weight(i) * act(i)).abs()).sum::<i32>()) as f64;
            min_terms += (min * sub.map(|i| act(i).abs()).sum::<i32>()) as f64;
        }
        let (d, dmin) = (half(wa) * ad, half(&wa[2..]) * ad);
        acc = (isum as f32).mul_add(d, acc);
        acc = (-(msum as f32)).mul_add(dmin, acc);
        magnitude += (d as f64).abs() * terms + (dmin as f64).abs() * min_terms;
    }
    (acc, rounding_bound_of(magnitude, k))
}

/// The kernel's formula for Q6_K x Q8_K, and a rounding bound for ggml's own order: per
/// super-block, isum = sum of scale x exact sub-block dot product of (q - 32), then one fma.
fn q6_k_terms(a: &[u8], b: &[u8], k: usize) -> (f32, f32) {
    let (mut acc, mut magnitude) = (0f32, 0f64);
    for block in 0..k {
        let wa = &a[block * Q6_K_BLOCK..];
        let (ad, act) = q8_k(b, block);
        let weight = |i: usize| {
            let (half_j, quarter, byte) = (i / 128, (i % 128) / 32, i % 32);
            let low = wa[64 * half_j + 32 * (quarter % 2) + byte];
            let nibble = if quarter < 2 { low & 0x0F } else { low >> 4 } as i32;
            let top = ((wa[128 + 32 * half_j + byte] >> (2 * quarter)) & 3) as i32;
            (nibble | (top << 4)) - 32
        };
        let (mut isum, mut terms) = (0i32, 0f64);
        for s in 0..16 {
            let scale = wa[192 + s] as i8 as i32;
            isum += scale * (16 * s..16 * (s + 1)).map(|i| weight(i) * act(i)).sum::<i32>();
            terms += (scale.abs() * (16 * s..16 * (s + 1)).map(|i| (weight(i) * act(i)).abs()).sum::<i32>()) as f64;
        }
        let d = half(&wa[208..]) * ad;
        acc = (isum as f32).mul_add(d, acc);
        magnitude += (d as f64).abs() * terms;
    }
    (acc, rounding_bound_of(magnitude, k))
}

/// Bound on the rounding of either summation order: a few ulps of the largest partial sum.
fn rounding_bound(a: &[u8], b: &[u8], k: usize) -> f32 {
    rounding_bound_with_min(a, b, k, Q4_1_BLOCK, 15.0)
}

/// Q4_1, Q5_1 (weights up to `max_weight`) x Q8_1.
fn rounding_bound_with_min(a: &[u8], b: &[u8], k: usize, block_size: usize, max_weight: f64) -> f32 {
    let magnitude = (0..k)
        .map(|block| {
            let (wa, wb) = (&a[block * block_size..], &b[block * Q8_1_BLOCK..]);
            let (scales, mins) = (half(wa) as f64 * half(wb) as f64, half(&wa[2..]) as f64 * half(&wb[2..]) as f64);
            scales.abs() * 32.0 * max_weight * 128.0 + mins.abs()
        })
        .sum();
    rounding_bound_of(magnitude, k)
}

/// `magnitude`: the sum of the absolute values of every term of a k-block dot product.
fn rounding_bound_of(magnitude: f64, k: usize) -> f32 {
    (magnitude * (2 * k + 8) as f64 * f32::EPSILON as f64) as f32
}

/// The little-endian f16 at the start of `bytes`.
fn half(bytes: &[u8]) -> f32 {
    half_to_f32(u16::from_le_bytes([bytes[0], bytes[1]]))
}

fn half_to_f32(h: u16) -> f32 {
    let sign = if h >> 15 == 1 { -1.0 } else { 1.0 };
    let exponent = ((h >> 10) & 0x1F) as i32;
    let mantissa = (h & 0x3FF) as f32;
    match exponent {
        0 => sign * mantissa * 2f32.powi(-24),
        31 => panic!("random_blocks makes finite halves only"),
        e => sign * (1.0 + mantissa / 1024.0) * 2f32.powi(e - 15),
    }
}

/// Every tile shape (rows left over after whole 8-row panels, columns after 4-column tiles,
/// blocks after 64-block chunks, columns after each batch), split over two threads:
/// exactly the kernel's formula, within rounding of ggml's own dot product, and nothing
/// written outside the result.
#[test]
fn gemm_computes_its_formula_for_every_tile_shape() {
    if std::env::var_os(CHILD).is_some() || !relinked() {
        return; // only AVX2 variants carry corral's GEMM
    }
    let (mut tested, mut with_q8_0) = (vec![], vec![]);
    for variant in variants::with_symbol("ggml_llamafile_sgemm") {
        let name = variant.name.as_str();
        let symbol = |s: &str| variant.symbol(s);
        // SAFETY: these symbols have these C signatures (ggml-cpu's sgemm.h and quants.h).
        let sgemm: Sgemm = unsafe { std::mem::transmute(symbol("llamafile_sgemm")) };
        for format in [&Q4_0_X_Q8_0, &Q4_1_X_Q8_1, &Q5_0_X_Q8_0, &Q5_1_X_Q8_1].into_iter().chain(&k_quants()) {
            check_every_tile_shape(name, format, sgemm, unsafe { std::mem::transmute(symbol(format.vec_dot)) });
        }
        // Q8_0 only where the variant has VNNI (the kernel marks it so).
        if !symbol("corral_gemm_q8_0").is_null() {
            check_every_tile_shape(name, &Q8_0_X_Q8_0, sgemm, unsafe { std::mem::transmute(symbol(Q8_0_X_Q8_0.vec_dot)) });
            with_q8_0.push(name.to_string());
        }
        tested.push(name.to_string());
    }
    eprintln!("formula checked in {tested:?}, Q8_0 in {with_q8_0:?}");
    // The variant corral runs here is among them, and so is the plain AVX2 one (no VNNI).
    let running = corral::cpu_variant().unwrap().name;
    assert!(tested.contains(&running) && tested.contains(&"haswell".to_string()), "tested {tested:?}, running {running}");
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512vnni") && std::arch::is_x86_feature_detected!("avx512vl") {
        assert!(with_q8_0.contains(&running), "{running} lacks the Q8_0 GEMM");
    }
}

fn random_or_plain(random: Option<fn(usize, &mut u64) -> Vec<u8>>, count: usize, block: usize, seed: &mut u64) -> Vec<u8> {
    match random {
        Some(random) => random(count, seed),
        None => random_blocks(count, block, seed),
    }
}

fn check_every_tile_shape(variant: &str, format: &Format, sgemm: Sgemm, vec_dot: VecDot) {
    let (name, wb, ab) = (format.name, format.weight_block, format.activation_block);
    let mut seed = 7;
    // Past one chunk of blocks (32 or 64; 8 super-blocks), and within one; past one batch of
    // columns (32, 64, 128 or 256), panels of 8 and 16 rows, and less; AMX tiles of 32 and 16
    // columns with AVX-512 ones after them.
    let depths: &[usize] = if format.block_values == 256 { &[1, 2, 5, 9, 17] } else { &[1, 3, 18, 70] };
    let widths: &[usize] = if format.block_values == 256 { &[33, 38, 50, 70, 262] } else { &[33, 38, 70] };
    // K-quant batches take two 16-row panels at a time where a thread has two: 57 and 70 rows
    // end a thread's pair with a short panel (9, 6 rows), 70 after a panel on its own.
    let paired: &[usize] = if format.block_values == 256 { &[57, 70] } else { &[] };
    for &k in depths {
        for m in [1usize, 2, 3, 5, 7, 8, 9, 13, 16, 17, 24, 31, 33].into_iter().chain(paired.iter().copied()) {
            for n in (1usize..=9).chain(widths.iter().copied()) {
                let a = random_or_plain(format.random_weights, m * k, wb, &mut seed);
                let b = random_or_plain(format.random_activations, n * k, ab, &mut seed);
                // One spare float after each column and at the end must stay untouched.
                let ldc = m + 1;
                let mut c = vec![f32::NAN; ldc * n + 8];
                for ith in 0..2 {
                    let params = ComputeParams::thread(ith, 2);
                    let (k, m, n) = (k as i64, m as i64, n as i64);
                    // SAFETY: a is m x k weight blocks, b is n x k activation blocks, c holds n columns of ldc floats.
                    let handled = unsafe {
                        sgemm(
                            &params,
                            m,
                            n,
                            k,
                            a.as_ptr(),
                            k,
                            b.as_ptr(),
                            k,
                            c.as_mut_ptr(),
                            ldc as i64,
                            format.weight_type,
                            format.activation_type,
                            GGML_TYPE_F32,
                        )
                    };
                    assert!(handled, "{variant}: {name} n={n} not taken by corral's GEMM");
                }
                for col in 0..n {
                    let (row_a, col_b) = (|row: usize| &a[row * k * wb..], &b[col * k * ab..]);
                    for row in 0..m {
                        let got = c[col * ldc + row];
                        let mut ggml = 0f32;
                        // SAFETY: one row of k weight blocks and one column of k activation blocks.
                        unsafe { vec_dot((k * format.block_values) as i32, &mut ggml, 0, row_a(row).as_ptr(), 0, col_b.as_ptr(), 0, 1) };
                        let formula = &format.formula;
                        let expected = (formula.reference)(row_a(row), col_b, k);
                        assert_eq!(
                            got.to_bits(),
                            expected.to_bits(),
                            "{variant} {name} k={k} m={m} n={n} row={row} col={col}: {got} vs {expected}"
                        );
                        let bound = (formula.rounding_bound)(row_a(row), col_b, k);
                        assert!(
                            (got - ggml).abs() <= bound,
                            "{variant} {name} k={k} m={m} n={n} row={row} col={col}: {got} vs ggml's {ggml} (bound {bound})"
                        );
                    }
                    assert!(c[col * ldc + m].is_nan(), "{variant} {name} k={k} m={m} n={n}: written past column {col}");
                }
                assert!(c[ldc * n..].iter().all(|x| x.is_nan()), "{variant} {name} k={k} m={m} n={n}: written past the result");
            }
        }
    }
}

/// ggml's tiled K-quant GEMM, which ggml tries first for 8 columns or more, leaves every
/// batch of K-quant weights to corral's kernel: a sequence gets the same results alone,
/// batched with others or within a prompt.
#[test]
fn k_quant_batches_bypass_ggmls_tiled_gemm() {
    if std::env::var_os(CHILD).is_some() || !relinked() {
        return;
    }
    let mut gated = vec![];
    for variant in variants::with_symbol("ggml_compute_forward_mul_mat_tiled_ggml") {
        type Gate = unsafe extern "C" fn(*const ComputeParams, *mut llama_cpp_sys_2::ggml_tensor) -> bool;
        // SAFETY: ggml-cpu's tiled.h signature; for these types the gate reads only the type.
        let gate: Gate = unsafe { std::mem::transmute(variant.symbol("ggml_compute_forward_mul_mat_tiled")) };
        for weight_type in [GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K] {
            for columns in [1, 2, 8, 16, 64, 512] {
                // SAFETY: plain C structs, all-zero is a valid (empty) tensor.
                let mut weights: llama_cpp_sys_2::ggml_tensor = unsafe { std::mem::zeroed() };
                weights.type_ = weight_type as llama_cpp_sys_2::ggml_type;
                weights.ne = [256, 64, 1, 1];
                let mut activations: llama_cpp_sys_2::ggml_tensor = unsafe { std::mem::zeroed() };
                activations.ne = [256, columns, 1, 1];
                let mut result: llama_cpp_sys_2::ggml_tensor = unsafe { std::mem::zeroed() };
                result.src[0] = &mut weights;
                result.src[1] = &mut activations;
                // SAFETY: the tensors outlive the call.
                let taken = unsafe { gate(&ComputeParams::thread(0, 1), &mut result) };
                assert!(!taken, "{}: ggml's tiled GEMM took type {weight_type} x {columns} columns", variant.name);
            }
        }
        gated.push(variant.name.clone());
    }
    let running = corral::cpu_variant().unwrap().name;
    assert!(gated.contains(&running) && gated.contains(&"haswell".to_string()), "gated {gated:?}, running {running}");
}

/// corral's Q8_K activation quantizer (core/kernels/quantize_q8_k.c) writes exactly the bytes
/// of ggml's reference quantizer, in every variant that carries it: random rows, rows whose
/// largest magnitude appears with both signs, all-zero and NaN-holding blocks, and values that
/// scale to exact halves (rounded to even).
#[test]
fn q8_k_quantizer_writes_ggmls_bytes() {
    if std::env::var_os(CHILD).is_some() || !relinked() {
        return;
    }
    type Quantize = unsafe extern "C" fn(*const f32, *mut u8, i64);
    let mut seed = 11u64;
    let mut next = move || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((seed >> 33) as u32 as f32 / u32::MAX as f32) * 2.0 - 1.0
    };
    let mut blocks: Vec<Vec<f32>> = (0..20).map(|i| (0..256).map(|_| next() * 10f32.powi(i % 5 - 2)).collect()).collect();
    let mut ties: Vec<f32> = (0..256).map(|_| (next() * 120.0).round() + 0.5).collect();
    ties[3] = -127.0; // the scale is then exactly 1: every value is a tie
    blocks.push(ties);
    let mut both_signs: Vec<f32> = (0..256).map(|_| next()).collect();
    (both_signs[7], both_signs[200]) = (-4.0, 4.0);
    blocks.push(both_signs.iter().map(|x| -x).collect());
    blocks.push(both_signs);
    blocks.push(vec![0.0; 256]);
    let mut with_nan: Vec<f32> = (0..256).map(|_| next()).collect();
    with_nan[9] = f32::NAN;
    blocks.push(with_nan);
    let mut with_infinities: Vec<f32> = (0..256).map(|_| next()).collect();
    (with_infinities[5], with_infinities[100]) = (f32::INFINITY, f32::NEG_INFINITY);
    blocks.push(with_infinities);
    let row: Vec<f32> = blocks.concat();
    let mut tested = vec![];
    for variant in variants::with_symbol("ggml_quantize_row_q8_K") {
        let (ours, reference) = (variant.symbol("quantize_row_q8_K"), variant.symbol("quantize_row_q8_K_ref"));
        assert!(!ours.is_null() && !reference.is_null(), "{}: quantizer symbols missing", variant.name);
        // SAFETY: ggml's quantizer signature; each writes row.len() / 256 blocks of Q8_K.
        let (ours, reference): (Quantize, Quantize) = unsafe { (std::mem::transmute(ours), std::mem::transmute(reference)) };
        let blocks = row.len() / 256;
        let (mut got, mut expected) = (vec![0u8; blocks * Q8_K_BLOCK], vec![0u8; blocks * Q8_K_BLOCK]);
        // SAFETY: as above.
        unsafe {
            ours(row.as_ptr(), got.as_mut_ptr(), row.len() as i64);
            reference(row.as_ptr(), expected.as_mut_ptr(), row.len() as i64);
        }
        for (block, (got, expected)) in got.chunks(Q8_K_BLOCK).zip(expected.chunks(Q8_K_BLOCK)).enumerate() {
            // ggml leaves the sums of an all-zero block as they were: compare scale and values there.
            let compared = if expected[..4] == [0; 4] { 260 } else { Q8_K_BLOCK };
            assert_eq!(got[..compared], expected[..compared], "{}: block {block} differs from ggml's reference", variant.name);
        }
        tested.push(variant.name.clone());
    }
    let running = corral::cpu_variant().unwrap().name;
    assert!(tested.contains(&running) && tested.contains(&"haswell".to_string()), "tested {tested:?}, running {running}");
}
