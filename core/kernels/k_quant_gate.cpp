// Keeps K-quant weights (Q4_K, Q5_K, Q6_K) away from ggml's tiled GEMM (ggml-cpu/tiled), which
// ggml tries before llamafile_sgemm for 8 columns or more: corral's panel kernel
// (quant_gemm.cpp) takes every batch width of them, so a sequence's results are the same
// whether its tokens are computed alone, batched with other sequences or as part of a prompt,
// and prompts run faster than on the tiled GEMM.
//
// It is linked into each AVX2-capable libggml-cpu-<variant>.so by core/build.rs, ggml's
// function renamed to `ggml_compute_forward_mul_mat_tiled_ggml`.

#include "ggml.h"

struct ggml_compute_params;

extern "C" bool ggml_compute_forward_mul_mat_tiled_ggml(const struct ggml_compute_params * params, struct ggml_tensor * dst);

static bool corral_takes(enum ggml_type type) {
    return type == GGML_TYPE_Q4_K || type == GGML_TYPE_Q5_K || type == GGML_TYPE_Q6_K;
}

extern "C" bool ggml_compute_forward_mul_mat_tiled(const struct ggml_compute_params * params, struct ggml_tensor * dst) {
    if (corral_takes(dst->src[0]->type)) {
        return false;  // ggml's stock path: llamafile_sgemm, where corral's kernel takes it
    }
    return ggml_compute_forward_mul_mat_tiled_ggml(params, dst);
}
