// corral's gated activations for ggml's x86 CPU backends (AVX2 variants): GELU-gated linear
// units (GGML_GLU_OP_GEGLU: Gemma's feed-forward) on f32.
//
// ggml computes GELU one value at a time through a 64K-entry table indexed by the input
// rounded to f16 (ggml_vec_geglu_f32): scalar code, about 5% of a Gemma 3 270M prompt, and the
// input's rounding to f16 costs it accuracy. Here 8 values at a time, in f32:
//     gelu(x) = 0.5 x (1 + tanh(u)) = x / (1 + exp(-2u)),  u = sqrt(2/pi) x (1 + 0.044715 x^2)
//     out     = gelu(x) * g
// with ggml's vectorised exp (simd_math.h): the same bits in every variant and thread split.
// As in ggml, x <= -10 gives 0 and x >= 10 gives x.
//
// Linked into each AVX2-capable libggml-cpu-<variant>.so by core/build.rs, like the attention
// kernel: ggml's `ggml_compute_forward_glu` is renamed with a `_ggml` suffix in the variant's
// ops.cpp object, and every other gated unit (SwiGLU, which ggml already vectorises, ReGLU,
// the erf and quick GELUs, f16) goes to it unchanged.

#include <immintrin.h>
#include <stdint.h>

#include <algorithm>

#include "common.h"
#include "ops.h"
#include "simd_math.h"

extern "C" void ggml_compute_forward_glu_ggml(const struct ggml_compute_params * params, struct ggml_tensor * dst);

// Lets tests find the variants that carry this kernel.
extern "C" const int corral_activations = 1;

namespace {

using corral_simd::exp_ps;

constexpr float SQRT_2_OVER_PI = 0.79788456080286535587989211986876f;
constexpr float GELU_COEF_A = 0.044715f;

inline __m256 geglu(__m256 x, __m256 g) {
    const __m256 x2 = _mm256_mul_ps(x, x);
    const __m256 u = _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(SQRT_2_OVER_PI), x), _mm256_fmadd_ps(_mm256_set1_ps(GELU_COEF_A), x2, _mm256_set1_ps(1.0f)));
    const __m256 e = exp_ps(_mm256_mul_ps(_mm256_set1_ps(-2.0f), u));
    __m256 gelu = _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
    // ggml's bounds, exactly (and no inf / inf at -inf).
    gelu = _mm256_blendv_ps(gelu, x, _mm256_cmp_ps(x, _mm256_set1_ps(10.0f), _CMP_GE_OQ));
    gelu = _mm256_andnot_ps(_mm256_cmp_ps(x, _mm256_set1_ps(-10.0f), _CMP_LE_OQ), gelu);
    return _mm256_mul_ps(gelu, g);
}

void geglu_row(int n, float * out, const float * x, const float * g) {
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        _mm256_storeu_ps(out + i, geglu(_mm256_loadu_ps(x + i), _mm256_loadu_ps(g + i)));
    }
    if (i < n) {
        // The tail through the same vector code, so that every element gets the same bits.
        const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(n - i), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        const __m256 y = geglu(_mm256_maskload_ps(x + i, mask), _mm256_maskload_ps(g + i, mask));
        _mm256_maskstore_ps(out + i, mask, y);
    }
}

// Rows whose elements lie together (ggml's contiguous_1: the first dimension packed).
bool rows_packed(const ggml_tensor * t) {
    return t->nb[0] == sizeof(float);
}

bool take(const ggml_tensor * dst) {
    const ggml_tensor * src0 = dst->src[0], * src1 = dst->src[1];
    if (ggml_get_glu_op(dst) != GGML_GLU_OP_GEGLU || src0->type != GGML_TYPE_F32 || dst->type != GGML_TYPE_F32) {
        return false;
    }
    if (!ggml_is_contiguous_1(src0) || !ggml_is_contiguous_1(dst) || !rows_packed(src0) || !rows_packed(dst)) {
        return false;
    }
    if (src1 && (src1->type != GGML_TYPE_F32 || !ggml_is_contiguous_1(src1) || !rows_packed(src1) || src1->ne[0] != src0->ne[0])) {
        return false;
    }
    const int64_t columns = src1 ? src0->ne[0] : src0->ne[0] / 2;
    return dst->ne[0] == columns && ggml_nrows(dst) == ggml_nrows(src0) && (!src1 || ggml_nrows(src1) == ggml_nrows(src0));
}

// ggml's row layout: one tensor holding both halves (src1 absent; `swapped` says which half
// is x), or x in src0 and g in src1. Rows are addressed through nb[1], as ggml does for
// contiguous_1 tensors.
void run(const ggml_compute_params * params, ggml_tensor * dst) {
    const ggml_tensor * src0 = dst->src[0], * src1 = dst->src[1];
    const char * src0_data = (const char *) src0->data;
    const char * src1_data = (const char *) (src1 ? src1->data : src0->data);
    const size_t src0_stride = src0->nb[1];
    const size_t src1_stride = src1 ? src1->nb[1] : src0->nb[1];
    const int columns = (int) (src1 ? src0->ne[0] : src0->ne[0] / 2);
    const int64_t rows = ggml_nrows(src0);
    const bool swapped = ggml_get_op_params_i32(dst, 1) != 0;
    const int64_t per_thread = (rows + params->nth - 1) / params->nth;
    const int64_t first = per_thread * params->ith;
    const int64_t last = std::min(first + per_thread, rows);
    for (int64_t r = first; r < last; ++r) {
        const float * x = (const float *) (src0_data + r * src0_stride);
        const float * g = (const float *) (src1_data + r * src1_stride);
        if (!src1) {
            x += swapped ? columns : 0;
            g += swapped ? 0 : columns;
        }
        geglu_row(columns, (float *) ((char *) dst->data + r * dst->nb[1]), x, g);
    }
}

}  // namespace

extern "C" void ggml_compute_forward_glu(const struct ggml_compute_params * params, struct ggml_tensor * dst) {
    if (params->use_ref || !take(dst)) {
        ggml_compute_forward_glu_ggml(params, dst);
        return;
    }
    run(params, dst);
}
