// Which batches of K-quant weights (Q4_K, Q5_K, Q6_K) corral's kernel takes from ggml's tiled
// GEMM (ggml-cpu/tiled), which ggml tries before llamafile_sgemm for 8 columns or more.
//
// corral's K-quant kernel (quant_gemm.cpp) computes ggml's own dot product, bit for bit, and
// decodes each row once for all columns: for 2 to 8 columns (2 to 8 sequences decoding
// together; 16 for Q6_K) it runs 1.3-2.7x faster than ggml, and each sequence's results are
// those it would get alone. Wider batches (prompts) stay with the tiled GEMM, faster there.
//
// It is linked into each AVX2-capable libggml-cpu-<variant>.so by core/build.rs, ggml's
// function renamed to `ggml_compute_forward_mul_mat_tiled_ggml`.

#include "ggml.h"

struct ggml_compute_params;

extern "C" bool ggml_compute_forward_mul_mat_tiled_ggml(const struct ggml_compute_params * params, struct ggml_tensor * dst);

// The widest batch corral's K-quant kernel takes from the tiled GEMM (measured on 2048 x 2048
// weights, one thread: beyond these the tiled GEMM is faster).
static int64_t corral_max_columns(enum ggml_type type) {
    switch (type) {
        case GGML_TYPE_Q6_K: return 16;
        case GGML_TYPE_Q4_K:
        case GGML_TYPE_Q5_K: return 8;
        default: return 0;
    }
}

extern "C" bool ggml_compute_forward_mul_mat_tiled(const struct ggml_compute_params * params, struct ggml_tensor * dst) {
    if (dst->src[1]->ne[1] <= corral_max_columns(dst->src[0]->type)) {
        return false;  // ggml's stock path: llamafile_sgemm, where corral's kernel takes it
    }
    return ggml_compute_forward_mul_mat_tiled_ggml(params, dst);
}
