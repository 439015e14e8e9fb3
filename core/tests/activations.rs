//! corral's gated activations (core/kernels/activations.cpp, linked into the AVX2 CPU variants
//! that ship), called directly on ggml tensors in every shipped variant this CPU can run:
//! - GEGLU in its three layouts (both halves in one tensor, swapped, two tensors) is within f32
//!   rounding of the exact (f64) tanh GELU times the gate, 0 at and below -10 and x times the
//!   gate at and above 10, exactly, as ggml's, for rows whose width is not a multiple of 8;
//! - its bits are the same in every variant and on one thread or two;
//! - the gated units it leaves to ggml (SwiGLU here) still come out right.

use llama_cpp_sys_2 as ggml;

mod variants;
use variants::{relinked, ForwardOp};

/// The gated-unit op of every shipped variant that carries corral's kernel and runs here.
fn variants() -> Vec<(String, ForwardOp)> {
    variants::forward_ops("corral_activations", "ggml_compute_forward_glu")
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Layout {
    Halves,
    SwappedHalves,
    Split,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Unit {
    Geglu,
    Swiglu,
}

const COLUMNS: usize = 37; // not a multiple of 8: the vector tail
const ROWS: usize = 5;

/// Inputs x and gates g, [row][column]: values over [-12, 12), with ggml's bounds and edge
/// values at the start of the first row.
fn inputs() -> (Vec<f32>, Vec<f32>) {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32
    };
    let mut x: Vec<f32> = (0..COLUMNS * ROWS).map(|_| next() * 24.0 - 12.0).collect();
    let g: Vec<f32> = (0..COLUMNS * ROWS).map(|_| next() * 4.0 - 2.0).collect();
    x[..10].copy_from_slice(&[-10.0, 10.0, -10.000001, 9.999999, 0.0, -0.0, 1e-20, -3.0, 3.0, f32::NEG_INFINITY]);
    (x, g)
}

fn exact(unit: Unit, x: f32, g: f32) -> f64 {
    let (x, g) = (x as f64, g as f64);
    match unit {
        Unit::Geglu if x <= -10.0 => 0.0,
        Unit::Geglu if x >= 10.0 => x * g,
        Unit::Geglu => 0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * x * (1.0 + 0.044715 * x * x)).tanh()) * g,
        Unit::Swiglu => x / (1.0 + (-x).exp()) * g,
    }
}

/// Runs the op on `threads` threads; the result as [row][column].
fn run(op: ForwardOp, unit: Unit, layout: Layout, x: &[f32], g: &[f32], threads: i32) -> Vec<f32> {
    let params = ggml::ggml_init_params { mem_size: 1 << 20, mem_buffer: std::ptr::null_mut(), no_alloc: false };
    // SAFETY: a fresh ggml context; every tensor below is allocated in it and filled within its
    // size before the op reads it; the context is freed after the result is copied out.
    unsafe {
        let ctx = ggml::ggml_init(params);
        assert!(!ctx.is_null());
        let (columns, rows) = (COLUMNS as i64, ROWS as i64);
        let dst = if layout == Layout::Split {
            let a = ggml::ggml_new_tensor_2d(ctx, ggml::GGML_TYPE_F32, columns, rows);
            let b = ggml::ggml_new_tensor_2d(ctx, ggml::GGML_TYPE_F32, columns, rows);
            std::ptr::copy_nonoverlapping(x.as_ptr(), (*a).data as *mut f32, x.len());
            std::ptr::copy_nonoverlapping(g.as_ptr(), (*b).data as *mut f32, g.len());
            match unit {
                Unit::Geglu => ggml::ggml_geglu_split(ctx, a, b),
                Unit::Swiglu => ggml::ggml_swiglu_split(ctx, a, b),
            }
        } else {
            // One row holds both halves: x first, or g first when swapped.
            let both = ggml::ggml_new_tensor_2d(ctx, ggml::GGML_TYPE_F32, 2 * columns, rows);
            let data = (*both).data as *mut f32;
            let swapped = layout == Layout::SwappedHalves;
            for r in 0..ROWS {
                let (first, second) = if swapped { (g, x) } else { (x, g) };
                std::ptr::copy_nonoverlapping(first[r * COLUMNS..].as_ptr(), data.add(2 * r * COLUMNS), COLUMNS);
                std::ptr::copy_nonoverlapping(second[r * COLUMNS..].as_ptr(), data.add(2 * r * COLUMNS + COLUMNS), COLUMNS);
            }
            match (unit, swapped) {
                (Unit::Geglu, false) => ggml::ggml_geglu(ctx, both),
                (Unit::Geglu, true) => ggml::ggml_geglu_swapped(ctx, both),
                (Unit::Swiglu, false) => ggml::ggml_swiglu(ctx, both),
                (Unit::Swiglu, true) => ggml::ggml_swiglu_swapped(ctx, both),
            }
        };
        variants::run_f32(ctx, op, dst, COLUMNS * ROWS, threads)
    }
}

#[test]
fn geglu_matches_exact_gelu_and_ggmls_bounds_with_the_same_bits_everywhere() {
    if !relinked() {
        return; // only AVX2 variants carry corral's kernel
    }
    let variants = variants();
    let (x, g) = inputs();
    let mut first: Option<(String, Vec<f32>)> = None;
    for (variant, op) in &variants {
        for layout in [Layout::Halves, Layout::SwappedHalves, Layout::Split] {
            for threads in [1, 2] {
                let out = run(*op, Unit::Geglu, layout, &x, &g, threads);
                for (i, &got) in out.iter().enumerate() {
                    let (xi, gi) = (x[i], g[i]);
                    let expected = exact(Unit::Geglu, xi, gi);
                    if xi <= -10.0 {
                        assert_eq!(got, 0.0, "{variant} {layout:?}: gelu({xi}) x {gi} must be 0, as ggml's");
                    } else if xi >= 10.0 {
                        assert_eq!(got, xi * gi, "{variant} {layout:?}: gelu({xi}) x {gi} must be x times the gate, as ggml's");
                    } else {
                        // A few f32 roundings of values up to 20.
                        let bound = 4e-6 * (xi as f64 * gi as f64).abs().max(1e-3);
                        assert!(
                            (got as f64 - expected).abs() <= bound,
                            "{variant} {layout:?} threads={threads}: gelu({xi}) x {gi} = {got}, exact {expected}"
                        );
                    }
                }
                match &first {
                    None => first = Some((variant.clone(), out)),
                    Some((reference, bits)) => {
                        let same = out.iter().zip(bits).all(|(a, b)| a.to_bits() == b.to_bits());
                        assert!(same, "{variant} {layout:?} on {threads} thread(s) differs from {reference}");
                    }
                }
            }
        }
    }
    eprintln!("GEGLU checked in {:?}", variants.iter().map(|v| &v.0).collect::<Vec<_>>());
}

#[test]
fn the_gated_units_left_to_ggml_still_come_out_right() {
    if !relinked() {
        return;
    }
    let (x, g) = inputs();
    for (variant, op) in variants() {
        for layout in [Layout::Halves, Layout::SwappedHalves, Layout::Split] {
            let out = run(op, Unit::Swiglu, layout, &x, &g, 2);
            for (i, &got) in out.iter().enumerate().filter(|&(i, _)| x[i].is_finite()) {
                let expected = exact(Unit::Swiglu, x[i], g[i]);
                assert!(
                    (got as f64 - expected).abs() <= 1e-5 * expected.abs().max(1.0),
                    "{variant} {layout:?}: silu({}) x {} = {got}, exact {expected}",
                    x[i],
                    g[i]
                );
            }
        }
    }
}
