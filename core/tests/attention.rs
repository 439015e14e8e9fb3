//! corral's attention kernel (core/kernels/flash_attention.cpp, linked into the AVX2 CPU
//! variants that ship), called directly on ggml tensors in every shipped variant this CPU can run:
//! - it computes attention over the visible cells within f32 rounding of an exact (f64)
//!   reference, for grouped-query and plain heads, head sizes 64 to 256 (also K wider than V),
//!   1 to 63 query tokens (and prompts of 64 and 130 for heads of 256 shared 4 to a K/V head),
//!   finite and -inf mask values, and a token that sees no cell at all;
//! - a row's result depends only on its own visible cells: decoded alone from a contiguous cache
//!   or among 7 other sequences whose cells interleave with its own, on one thread or two, the
//!   bits are the same;
//! - prompts (16 query tokens or more; causal, after cached cells, one sequence or two, a sliding
//!   window, heads of 64 to 256, 1 to 7 query heads per K/V head) match exact attention, and each of their rows has
//!   the bits of that token decoded alone.

use llama_cpp_sys_2 as ggml;

mod variants;
use variants::{relinked, ForwardOp};

/// The attention op of every shipped variant that carries corral's kernel and runs here.
fn variants() -> Vec<(String, ForwardOp)> {
    variants::forward_ops("corral_flash_attention", "ggml_compute_forward_flash_attn_ext")
}

struct Random(u64);

impl Random {
    /// Uniform in [-1, 1).
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

fn to_f16(x: f32) -> u16 {
    // SAFETY: a pure conversion.
    unsafe { ggml::ggml_fp32_to_fp16(x) }
}

fn from_f16(h: u16) -> f32 {
    // SAFETY: a pure conversion.
    unsafe { ggml::ggml_fp16_to_fp32(h) }
}

const HIDDEN: f32 = f32::NEG_INFINITY;

/// One attention problem laid out as llama.cpp lays out its cache: each cell holds the K (and V)
/// rows of every K/V head, and the mask has one row per query token.
struct Problem {
    head_dim_k: usize,
    head_dim_v: usize,
    heads: usize,
    kv_heads: usize,
    tokens: usize,
    cells: usize,
    q: Vec<f32>,    // [token][head][d]
    k: Vec<u16>,    // [cell][kv head][d]
    v: Vec<u16>,    // [cell][kv head][d]
    mask: Vec<f32>, // [token][cell]
    scale: f32,
}

impl Problem {
    fn random(head_dim_k: usize, head_dim_v: usize, heads: usize, kv_heads: usize, tokens: usize, cells: usize, seed: u64) -> Problem {
        let mut random = Random(seed * 0x9E37_79B9_7F4A_7C15 + 1);
        let q = (0..tokens * heads * head_dim_k).map(|_| 2.0 * random.next()).collect();
        let k = (0..cells * kv_heads * head_dim_k).map(|_| to_f16(random.next())).collect();
        let v = (0..cells * kv_heads * head_dim_v).map(|_| to_f16(random.next())).collect();
        // Mostly visible with value 0; some hidden; some finite biases; token 1 sees nothing.
        let mask = (0..tokens * cells)
            .map(|i| {
                let r = random.next();
                if tokens > 1 && i / cells == 1 {
                    HIDDEN
                } else if r < -0.5 {
                    HIDDEN
                } else if r > 0.8 {
                    -2.0 * r
                } else {
                    0.0
                }
            })
            .collect();
        Problem { head_dim_k, head_dim_v, heads, kv_heads, tokens, cells, q, k, v, mask, scale: 1.0 / (head_dim_k as f32).sqrt() }
    }

    /// Exact attention of one (token, head) row.
    fn reference(&self, token: usize, head: usize) -> Vec<f64> {
        let kv_head = head / (self.heads / self.kv_heads);
        let q = &self.q[(token * self.heads + head) * self.head_dim_k..][..self.head_dim_k];
        let mut scores = vec![];
        for cell in 0..self.cells {
            let m = self.mask[token * self.cells + cell];
            if m == HIDDEN {
                continue;
            }
            let k = &self.k[(cell * self.kv_heads + kv_head) * self.head_dim_k..][..self.head_dim_k];
            let dot: f64 = q.iter().zip(k).map(|(&a, &b)| a as f64 * from_f16(b) as f64).sum();
            scores.push((cell, dot * self.scale as f64 + from_f16(to_f16(m)) as f64));
        }
        let mut out = vec![0f64; self.head_dim_v];
        let max = scores.iter().map(|s| s.1).fold(f64::NEG_INFINITY, f64::max);
        let total: f64 = scores.iter().map(|s| (s.1 - max).exp()).sum();
        for &(cell, score) in &scores {
            let weight = (score - max).exp() / total;
            let v = &self.v[(cell * self.kv_heads + kv_head) * self.head_dim_v..][..self.head_dim_v];
            for (o, &x) in out.iter_mut().zip(v) {
                *o += weight * from_f16(x) as f64;
            }
        }
        out
    }

    /// Token `token` alone: one query token whose cache holds only the cells it sees, in order.
    fn alone(&self, token: usize) -> Problem {
        let visible: Vec<usize> = (0..self.cells).filter(|&cell| self.mask[token * self.cells + cell] != HIDDEN).collect();
        let (k_row, v_row) = (self.kv_heads * self.head_dim_k, self.kv_heads * self.head_dim_v);
        let q_row = self.heads * self.head_dim_k;
        Problem {
            tokens: 1,
            cells: visible.len(),
            q: self.q[token * q_row..][..q_row].to_vec(),
            k: visible.iter().flat_map(|&cell| self.k[cell * k_row..][..k_row].iter().copied()).collect(),
            v: visible.iter().flat_map(|&cell| self.v[cell * v_row..][..v_row].iter().copied()).collect(),
            mask: visible.iter().map(|&cell| self.mask[token * self.cells + cell]).collect(),
            ..*self
        }
    }

    /// Runs the attention op on `threads` threads; the result as [token][head][d].
    fn run(&self, op: ForwardOp, threads: i32) -> Vec<f32> {
        let params = ggml::ggml_init_params { mem_size: 64 << 20, mem_buffer: std::ptr::null_mut(), no_alloc: false };
        // SAFETY: a fresh ggml context; every tensor below is allocated in it and filled within
        // its size before the op reads it; the context is freed after the result is copied out.
        unsafe {
            let ctx = ggml::ggml_init(params);
            assert!(!ctx.is_null());
            let (dk, dv, h, hkv, n, cells) = (
                self.head_dim_k as i64,
                self.head_dim_v as i64,
                self.heads as i64,
                self.kv_heads as i64,
                self.tokens as i64,
                self.cells as i64,
            );
            let q = ggml::ggml_new_tensor_4d(ctx, ggml::GGML_TYPE_F32, dk, h, n, 1);
            let k = ggml::ggml_new_tensor_4d(ctx, ggml::GGML_TYPE_F16, dk, hkv, cells, 1);
            let v = ggml::ggml_new_tensor_4d(ctx, ggml::GGML_TYPE_F16, dv, hkv, cells, 1);
            let mask = ggml::ggml_new_tensor_4d(ctx, ggml::GGML_TYPE_F16, cells, n, 1, 1);
            std::ptr::copy_nonoverlapping(self.q.as_ptr(), (*q).data as *mut f32, self.q.len());
            std::ptr::copy_nonoverlapping(self.k.as_ptr(), (*k).data as *mut u16, self.k.len());
            std::ptr::copy_nonoverlapping(self.v.as_ptr(), (*v).data as *mut u16, self.v.len());
            let mask_f16: Vec<u16> = self.mask.iter().map(|&m| to_f16(m)).collect();
            std::ptr::copy_nonoverlapping(mask_f16.as_ptr(), (*mask).data as *mut u16, mask_f16.len());
            // As llama.cpp's graph: heads become the third dimension, tokens and cells the second.
            let q = ggml::ggml_permute(ctx, q, 0, 2, 1, 3);
            let k = ggml::ggml_permute(ctx, k, 0, 2, 1, 3);
            let v = ggml::ggml_permute(ctx, v, 0, 2, 1, 3);
            let dst = ggml::ggml_flash_attn_ext(ctx, q, k, v, mask, self.scale, 0.0, 0.0);
            variants::run_f32(ctx, op, dst, (dv * h * n) as usize, threads)
        }
    }
}

#[test]
fn attention_matches_exact_attention_in_every_variant() {
    if !relinked() {
        return; // only AVX2 variants carry corral's kernel
    }
    let variants = variants();
    for (variant, op) in &variants {
        let mut seed = 0;
        // (head size K, head size V, query heads, K/V heads): SmolLM2 and Llama-style grouped
        // queries, more query heads per K/V head than one unit takes, plain multi-head, K wider than V.
        // Gemma-style heads (256, 4 per K/V head) also for prompts of 64 tokens or more.
        let shapes =
            [(64, 64, 9, 3), (128, 128, 8, 2), (64, 64, 10, 2), (96, 96, 4, 4), (256, 256, 2, 1), (192, 128, 4, 2), (256, 256, 8, 2)];
        for (dk, dv, heads, kv_heads) in shapes {
            let prompts: &[usize] = if dk == 256 && heads / kv_heads >= 4 { &[64, 130] } else { &[] };
            for &tokens in [1, 2, 5, 8, 63].iter().chain(prompts) {
                for cells in [1, 7, 33, 100, 600] {
                    seed += 1;
                    let problem = Problem::random(dk, dv, heads, kv_heads, tokens, cells, seed);
                    for threads in [1, 2] {
                        let out = problem.run(*op, threads);
                        for token in 0..tokens {
                            for head in 0..heads {
                                let expected = problem.reference(token, head);
                                let got = &out[(token * heads + head) * dv..][..dv];
                                for (d, (&g, &e)) in got.iter().zip(&expected).enumerate() {
                                    // Values are below 1: f32 rounding over 600 cells stays far below this.
                                    assert!(
                                        (g as f64 - e).abs() <= 5e-5,
                                        "{variant} dk={dk} dv={dv} heads={heads}/{kv_heads} tokens={tokens} cells={cells} threads={threads}: \
                                         token {token} head {head} [{d}] = {g}, exact {e}"
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    eprintln!("attention checked in {:?}", variants.iter().map(|v| &v.0).collect::<Vec<_>>());
}

#[test]
fn a_rows_result_does_not_depend_on_the_other_sequences_in_the_batch() {
    if !relinked() {
        return;
    }
    let (sequences, length) = (8, 150);
    for (variant, op) in variants() {
        // Eight sequences decoding together: one token each, their cells interleaved in the cache
        // (cell i belongs to sequence i % 8), as a unified cache fills when they advance in step.
        let batch = Problem::random(64, 64, 9, 3, sequences, sequences * length, 99);
        let mut batch = batch;
        for token in 0..sequences {
            for cell in 0..sequences * length {
                let own = cell % sequences == token;
                batch.mask[token * batch.cells + cell] = if own { 0.0 } else { HIDDEN };
            }
        }
        let together = batch.run(op, 2);
        for token in 0..sequences {
            // The same sequence decoded alone: its cells contiguous, nobody else's in the cache.
            let mut alone = Problem::random(64, 64, 9, 3, 1, length, 1);
            alone.q = batch.q[token * 9 * 64..][..9 * 64].to_vec();
            for i in 0..length {
                let cell = i * sequences + token;
                alone.k[i * 3 * 64..][..3 * 64].copy_from_slice(&batch.k[cell * 3 * 64..][..3 * 64]);
                alone.v[i * 3 * 64..][..3 * 64].copy_from_slice(&batch.v[cell * 3 * 64..][..3 * 64]);
            }
            alone.mask = vec![0.0; length];
            for threads in [1, 2] {
                let out = alone.run(op, threads);
                let same = out.iter().zip(&together[token * 9 * 64..][..9 * 64]).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{variant}: sequence {token} differs between the batch and decoding alone on {threads} thread(s)");
            }
        }
    }
}

#[test]
fn prompts_match_exact_attention_and_decoding_one_token_at_a_time() {
    if !relinked() {
        return;
    }
    for (variant, op) in variants() {
        let mut seed = 1000;
        // (head size K, head size V, query heads, K/V heads): SmolLM2, Qwen3, Qwen2.5 (7 query
        // heads a K/V head), Gemma 3, plain multi-head, K wider than V.
        let shapes = [(64, 64, 9, 3), (128, 128, 16, 8), (64, 64, 14, 2), (256, 256, 4, 1), (96, 96, 4, 4), (192, 128, 4, 2)];
        for (dk, dv, heads, kv_heads) in shapes {
            // (query tokens, cells already cached, sequences in the batch, sliding window)
            let all = usize::MAX;
            for (tokens, cached, sequences, window) in
                [(16, 0, 1, all), (37, 5, 1, all), (100, 30, 1, all), (130, 0, 1, all), (64, 0, 2, all), (90, 12, 2, all), (120, 10, 1, 50)]
            {
                seed += 1;
                let mut problem = Problem::random(dk, dv, heads, kv_heads, tokens, cached + tokens, seed);
                // Causal: token t of sequence s sees the sequence's cached cells (every s-th) and its
                // own tokens up to t (within the window); visible cells keep their random 0 or
                // finite values.
                let per_sequence = tokens.div_ceil(sequences);
                for token in 0..tokens {
                    let sequence = token / per_sequence;
                    for cell in 0..problem.cells {
                        let own = if cell < cached { cell % sequences == sequence } else { (cell - cached) / per_sequence == sequence };
                        let visible = own && cell <= cached + token && cached + token - cell < window;
                        let m = &mut problem.mask[token * problem.cells + cell];
                        if !visible {
                            *m = HIDDEN;
                        } else if *m == HIDDEN {
                            *m = 0.0;
                        }
                    }
                }
                let label =
                    format!("{variant} dk={dk} dv={dv} heads={heads}/{kv_heads} tokens={tokens} cached={cached} sequences={sequences}");
                let together = problem.run(op, 2);
                assert!(
                    together.iter().zip(problem.run(op, 1)).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{label}: 1 and 2 threads differ"
                );
                for token in 0..tokens {
                    let got = &together[token * heads * dv..][..heads * dv];
                    for head in 0..heads {
                        let expected = problem.reference(token, head);
                        for (d, (&g, &e)) in got[head * dv..][..dv].iter().zip(&expected).enumerate() {
                            assert!((g as f64 - e).abs() <= 5e-5, "{label}: token {token} head {head} [{d}] = {g}, exact {e}");
                        }
                    }
                    let alone = problem.alone(token).run(op, 1);
                    assert!(
                        got.iter().zip(&alone).all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{label}: token {token} differs between the prompt and decoding it alone"
                    );
                }
            }
        }
    }
}
