//! corral's RMS normalization (core/kernels/normalization.cpp, linked into the AVX2 CPU
//! variants that ship), called directly on ggml tensors in every shipped variant this CPU can
//! run, as ggml calls it: RMS_NORM fused with the MUL by a weight row that follows it.
//! - Rows of 1 to 700 values (full vectors, the 16-value steps' tails) and a weight row
//!   broadcast over rows and matrices, or one weight row per row, are within f32 rounding of
//!   the exact (f64) x / sqrt(mean(x^2) + eps) * w;
//! - the bits are the same in every variant and on one thread or two.

use llama_cpp_sys_2 as ggml;

mod variants;
use variants::{relinked, ComputeParams};

/// `void ggml_compute_forward_rms_norm_mul_fused(const struct ggml_compute_params *,
/// struct ggml_tensor * dst_rms_norm, struct ggml_tensor * dst_mul)` (ops.h).
type FusedOp = unsafe extern "C" fn(*const ComputeParams, *mut ggml::ggml_tensor, *mut ggml::ggml_tensor);

fn variants() -> Vec<(String, FusedOp)> {
    let variants = variants::with_symbol("corral_normalization");
    let running = corral::cpu_variant().unwrap().name;
    assert!(variants.iter().any(|v| v.name == running), "the variant running here ({running}) lacks corral's normalization");
    variants
        .into_iter()
        // SAFETY: FusedOp is the function's signature (ops.h).
        .map(|v| (v.name.clone(), unsafe { std::mem::transmute::<_, FusedOp>(v.symbol("ggml_compute_forward_rms_norm_mul_fused")) }))
        .collect()
}

struct Problem {
    width: usize,
    rows: usize,
    matrices: usize,
    weight_rows: usize, // 1: one weight row for every row; rows: one each
    eps: f32,
    x: Vec<f32>,
    w: Vec<f32>,
}

impl Problem {
    fn random(width: usize, rows: usize, matrices: usize, weight_rows: usize, seed: u64) -> Problem {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        };
        // Activations of varied size (the residual stream reaches hundreds).
        let x = (0..width * rows * matrices).map(|i| next() * if i % 7 == 0 { 300.0 } else { 3.0 }).collect();
        let w = (0..width * weight_rows).map(|_| next() * 2.0).collect();
        Problem { width, rows, matrices, weight_rows, eps: 1e-6, x, w }
    }

    fn exact(&self, matrix: usize, row: usize) -> Vec<f64> {
        let x = &self.x[(matrix * self.rows + row) * self.width..][..self.width];
        let w = &self.w[(row % self.weight_rows) * self.width..][..self.width];
        let mean = x.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / self.width as f64;
        let scale = 1.0 / (mean + self.eps as f64).sqrt();
        x.iter().zip(w).map(|(&v, &w)| v as f64 * scale * w as f64).collect()
    }

    /// Runs the fused op on `threads` threads (each called in turn); the result as [matrix][row][i].
    fn run(&self, op: FusedOp, threads: i32) -> Vec<f32> {
        let params = ggml::ggml_init_params { mem_size: 16 << 20, mem_buffer: std::ptr::null_mut(), no_alloc: false };
        // SAFETY: a fresh ggml context; every tensor below is allocated in it and filled within
        // its size before the op reads it; the context is freed after the result is copied out.
        unsafe {
            let ctx = ggml::ggml_init(params);
            assert!(!ctx.is_null());
            let x = ggml::ggml_new_tensor_3d(ctx, ggml::GGML_TYPE_F32, self.width as i64, self.rows as i64, self.matrices as i64);
            let w = ggml::ggml_new_tensor_2d(ctx, ggml::GGML_TYPE_F32, self.width as i64, self.weight_rows as i64);
            std::ptr::copy_nonoverlapping(self.x.as_ptr(), (*x).data as *mut f32, self.x.len());
            std::ptr::copy_nonoverlapping(self.w.as_ptr(), (*w).data as *mut f32, self.w.len());
            let norm = ggml::ggml_rms_norm(ctx, x, self.eps);
            let mul = ggml::ggml_mul(ctx, norm, w);
            let len = self.x.len();
            std::ptr::write_bytes((*mul).data as *mut f32, 0xFF, len); // NaN: every element must be written
            for ith in 0..threads {
                op(&ComputeParams::thread(ith, threads), norm, mul);
            }
            let out = std::slice::from_raw_parts((*mul).data as *const f32, len).to_vec();
            ggml::ggml_free(ctx);
            out
        }
    }
}

#[test]
fn rms_norm_times_weights_matches_the_exact_result_with_the_same_bits_everywhere() {
    if !relinked() {
        return; // only AVX2 variants carry corral's kernel
    }
    let variants = variants();
    let mut seed = 0;
    for (width, rows, matrices, weight_rows) in
        [(1, 3, 1, 1), (7, 2, 1, 1), (16, 3, 2, 1), (23, 4, 1, 4), (256, 5, 3, 1), (576, 3, 1, 1), (640, 4, 1, 4), (700, 3, 2, 1)]
    {
        seed += 1;
        let problem = Problem::random(width, rows, matrices, weight_rows, seed);
        let mut first: Option<(&str, Vec<f32>)> = None;
        for (variant, op) in &variants {
            for threads in [1, 2] {
                let out = problem.run(*op, threads);
                for matrix in 0..matrices {
                    for row in 0..rows {
                        let expected = problem.exact(matrix, row);
                        let got = &out[(matrix * rows + row) * width..][..width];
                        for (i, (&g, &e)) in got.iter().zip(&expected).enumerate() {
                            assert!(
                                (g as f64 - e).abs() <= 1e-6 * e.abs().max(1e-3),
                                "{variant} width={width} threads={threads}: matrix {matrix} row {row} [{i}] = {g}, exact {e}"
                            );
                        }
                    }
                }
                match &first {
                    None => first = Some((variant, out)),
                    Some((reference, bits)) => {
                        let same = out.iter().zip(bits).all(|(a, b)| a.to_bits() == b.to_bits());
                        assert!(same, "{variant} width={width} on {threads} thread(s) differs from {reference}");
                    }
                }
            }
        }
    }
}
