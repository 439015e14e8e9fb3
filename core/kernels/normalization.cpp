// corral's RMS normalization for ggml's x86 CPU backends (AVX2 variants): RMS_NORM followed by
// MUL by a weight row, which ggml fuses into one pass (every normalization of Llama-style
// models: before attention and the feed-forward, Gemma's after them and on queries and keys).
//
// ggml sums the squares of each row in double, one value after another (a chain of dependent
// additions that the compiler may not reorder): with Gemma 3 270M's six normalizations a layer
// that was about 3.5% of a prompt. Here 16 values at a time into 4 double accumulators:
//     sum   = the sum of float(x_i * x_i) in double (4 chains of 4 lanes, then summed in a
//             fixed order)
//     scale = 1 / sqrt(float(sum / n) + eps)            (f32, as ggml)
//     y_i   = x_i * scale * w_i                         (f32, as ggml)
// the same bits in every variant and thread split; the sum differs from ggml's sequential one
// only in the rounding of double additions.
//
// Linked into each AVX2-capable libggml-cpu-<variant>.so by core/build.rs, like the attention
// kernel: ggml's `ggml_compute_forward_rms_norm_mul_fused` is renamed with a `_ggml` suffix in
// the variant's ops.cpp object, and every case this kernel does not take (ggml's reference
// mode, rows not packed, shapes ggml rejects) goes to it unchanged.

#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "common.h"
#include "ops.h"

extern "C" void ggml_compute_forward_rms_norm_mul_fused_ggml(const struct ggml_compute_params * params, struct ggml_tensor * dst_rms_norm,
                                                             struct ggml_tensor * dst_mul);

// Lets tests find the variants that carry this kernel.
extern "C" const int corral_normalization = 1;

namespace {

// The values at x[i, i + 8) with lanes past n zero.
inline __m256 load_up_to(const float * x, int64_t i, int64_t n) {
    if (i + 8 <= n) {
        return _mm256_loadu_ps(x + i);
    }
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((int) (n - i)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    return _mm256_maskload_ps(x + i, mask);
}

inline __m256d add_squares(__m256d acc, __m128 x) {
    return _mm256_add_pd(acc, _mm256_cvtps_pd(x));
}

double sum_of_squares(const float * x, int64_t n) {
    __m256d acc[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd()};
    for (int64_t i = 0; i < n; i += 16) {
        const __m256 a = load_up_to(x, i, n), b = load_up_to(x, i + 8, n);
        const __m256 a2 = _mm256_mul_ps(a, a), b2 = _mm256_mul_ps(b, b);
        acc[0] = add_squares(acc[0], _mm256_castps256_ps128(a2));
        acc[1] = add_squares(acc[1], _mm256_extractf128_ps(a2, 1));
        acc[2] = add_squares(acc[2], _mm256_castps256_ps128(b2));
        acc[3] = add_squares(acc[3], _mm256_extractf128_ps(b2, 1));
    }
    const __m256d total = _mm256_add_pd(_mm256_add_pd(acc[0], acc[1]), _mm256_add_pd(acc[2], acc[3]));
    const __m128d pair = _mm_add_pd(_mm256_castpd256_pd128(total), _mm256_extractf128_pd(total, 1));
    return _mm_cvtsd_f64(_mm_add_sd(pair, _mm_unpackhi_pd(pair, pair)));
}

void scale_and_weigh(float * y, const float * x, const float * w, float scale, int64_t n) {
    const __m256 s = _mm256_set1_ps(scale);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), s), _mm256_loadu_ps(w + i)));
    }
    for (; i < n; ++i) {
        y[i] = x[i] * scale * w[i];
    }
}

bool same_shape(const ggml_tensor * a, const ggml_tensor * b) {
    return a->ne[0] == b->ne[0] && a->ne[1] == b->ne[1] && a->ne[2] == b->ne[2] && a->ne[3] == b->ne[3];
}

// The weight operand of `mul` when this kernel takes the pair, else null.
const ggml_tensor * take(const ggml_tensor * norm, const ggml_tensor * mul) {
    if (mul->src[0] != norm && mul->src[1] != norm) {
        return nullptr;
    }
    const ggml_tensor * x = norm->src[0];
    const ggml_tensor * w = mul->src[0] == norm ? mul->src[1] : mul->src[0];
    float eps;
    memcpy(&eps, norm->op_params, sizeof(float));
    if (x->type != GGML_TYPE_F32 || w->type != GGML_TYPE_F32 || mul->type != GGML_TYPE_F32 || !(eps >= 0.0f)) {
        return nullptr;
    }
    if (!same_shape(x, mul) || w->ne[0] != x->ne[0] || x->nb[0] != sizeof(float) || w->nb[0] != sizeof(float) ||
        mul->nb[0] != sizeof(float)) {
        return nullptr;
    }
    for (int d = 1; d < 4; ++d) {
        if (w->ne[d] <= 0 || x->ne[d] % w->ne[d] != 0) {
            return nullptr;  // not a broadcast ggml_mul accepts
        }
    }
    return w;
}

}  // namespace

extern "C" void ggml_compute_forward_rms_norm_mul_fused(const struct ggml_compute_params * params, struct ggml_tensor * dst_rms_norm,
                                                        struct ggml_tensor * dst_mul) {
    const ggml_tensor * w = params->use_ref ? nullptr : take(dst_rms_norm, dst_mul);
    if (!w) {
        ggml_compute_forward_rms_norm_mul_fused_ggml(params, dst_rms_norm, dst_mul);
        return;
    }
    const ggml_tensor * x = dst_rms_norm->src[0];
    float eps;
    memcpy(&eps, dst_rms_norm->op_params, sizeof(float));
    const int64_t n = x->ne[0];
    // ggml's split: thread ith takes rows ith, ith + nth, ... of each matrix.
    for (int64_t i3 = 0; i3 < x->ne[3]; ++i3) {
        for (int64_t i2 = 0; i2 < x->ne[2]; ++i2) {
            for (int64_t i1 = params->ith; i1 < x->ne[1]; i1 += params->nth) {
                const float * row = (const float *) ((const char *) x->data + i1 * x->nb[1] + i2 * x->nb[2] + i3 * x->nb[3]);
                const float mean = (float) (sum_of_squares(row, n) / n);
                const float scale = 1.0f / sqrtf(mean + eps);
                const float * weights = (const float *) ((const char *) w->data + (i1 % w->ne[1]) * w->nb[1] +
                                                         (i2 % w->ne[2]) * w->nb[2] + (i3 % w->ne[3]) * w->nb[3]);
                float * out = (float *) ((char *) dst_mul->data + i1 * dst_mul->nb[1] + i2 * dst_mul->nb[2] + i3 * dst_mul->nb[3]);
                scale_and_weigh(out, row, weights, scale, n);
            }
        }
    }
}
