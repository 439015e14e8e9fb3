// corral's Q8_K activation quantizer for ggml's x86 CPU backends.
//
// K-quant weights multiply activations quantized to Q8_K (per 256 values: a float scale, 256
// signed bytes and the sums of each 16). ggml's x86 build quantizes them with its scalar
// reference code (quantize_row_q8_K calls quantize_row_q8_K_ref), which takes several percent
// of a K-quant model's prompt time. This is the same computation vectorized, bit for bit: the
// first value of largest magnitude sets the scale (-127 / it), every value is rounded to the
// nearest integer, ties to even (ggml's nearest_int; NaN to 0), and capped at 127 (core/tests/kernel.rs
// compares it with ggml's reference in every variant).
//
// It is linked into each AVX2-capable libggml-cpu-<variant>.so by core/build.rs, ggml's
// function renamed to `ggml_quantize_row_q8_K`.

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#define GGML_COMMON_DECL_C
#include "ggml-common.h"

void quantize_row_q8_K(const float * restrict x, void * restrict vy, int64_t k);

static int32_t sum_of_8(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

#if defined(__AVX512F__) && defined(__AVX512BW__)
// 16 values a vector: each vector's bytes are one of the block's sums of 16, which the bytes
// give by one sum of absolute differences per 64 (rather than a horizontal sum per 8 values).
// About twice the speed of the AVX2 code below.
void quantize_row_q8_K(const float * restrict x, void * restrict vy, int64_t k) {
    block_q8_K * restrict y = (block_q8_K *) vy;
    const __m512 sign_bit = _mm512_set1_ps(-0.0f);
    for (int64_t i = 0; i < k / QK_K; ++i, x += QK_K) {
        // The largest magnitude; NaN lanes keep the running maximum (ggml's `>` skips them).
        __m512 amax16 = _mm512_setzero_ps();
        for (int j = 0; j < QK_K; j += 16) {
            amax16 = _mm512_max_ps(_mm512_andnot_ps(sign_bit, _mm512_loadu_ps(x + j)), amax16);
        }
        const float amax = _mm512_reduce_max_ps(amax16);
        if (amax == 0.0f) {
            memset(&y[i], 0, sizeof(y[i]));
            continue;
        }
        // The first value of that magnitude: its sign is the scale's.
        float max = amax;
        for (int j = 0; j < QK_K; j += 16) {
            const __m512 abs = _mm512_andnot_ps(sign_bit, _mm512_loadu_ps(x + j));
            const __mmask16 hits = _mm512_cmp_ps_mask(abs, _mm512_set1_ps(amax), _CMP_EQ_OQ);
            if (hits != 0) {
                max = x[j + __builtin_ctz(hits)];
                break;
            }
        }
        const float iscale = -127.f / max;
        const __m512 scale = _mm512_set1_ps(iscale);
        const __m512i cap = _mm512_set1_epi32(127);
        __m512i group_sums[4];  // the sums of groups 4q .. 4q + 3 of 16, in dwords 0, 4, 8, 12
        for (int q = 0; q < 4; ++q) {
            __m128i bytes[4];
            for (int g = 0; g < 4; ++g) {
                const __m512 scaled = _mm512_mul_ps(scale, _mm512_loadu_ps(x + 64 * q + 16 * g));
                // NaN becomes 0, as ggml's float-to-int trick makes it; the saturating narrowing
                // caps the values as ggml's MIN(127, ...) and the AVX2 code's packs do.
                const __mmask16 ordered = _mm512_cmp_ps_mask(scaled, scaled, _CMP_ORD_Q);
                bytes[g] = _mm512_cvtsepi32_epi8(_mm512_min_epi32(_mm512_maskz_cvtps_epi32(ordered, scaled), cap));
            }
            __m512i all = _mm512_castsi128_si512(bytes[0]);
            all = _mm512_inserti32x4(all, bytes[1], 1);
            all = _mm512_inserti32x4(all, bytes[2], 2);
            all = _mm512_inserti32x4(all, bytes[3], 3);
            _mm512_storeu_si512((void *) (y[i].qs + 64 * q), all);
            // Biased to unsigned (+128 a byte), each 8 bytes summed, then each 16.
            const __m512i sums_of_8 = _mm512_sad_epu8(_mm512_xor_si512(all, _mm512_set1_epi8((char) 0x80)), _mm512_setzero_si512());
            group_sums[q] = _mm512_add_epi64(sums_of_8, _mm512_shuffle_epi32(sums_of_8, _MM_PERM_BADC));
        }
        const __m512i firsts = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 0, 0, 0, 0, 0, 0, 0);
        const __m512i low = _mm512_permutex2var_epi32(group_sums[0], firsts, group_sums[1]);
        const __m512i high = _mm512_permutex2var_epi32(group_sums[2], firsts, group_sums[3]);
        const __m512i sums = _mm512_permutex2var_epi32(low, _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23), high);
        _mm256_storeu_si256((__m256i *) y[i].bsums, _mm512_cvtepi32_epi16(_mm512_sub_epi32(sums, _mm512_set1_epi32(16 * 128))));
        y[i].d = 1 / iscale;
    }
}
#else
void quantize_row_q8_K(const float * restrict x, void * restrict vy, int64_t k) {
    block_q8_K * restrict y = (block_q8_K *) vy;
    const __m256 sign_bit = _mm256_set1_ps(-0.0f);
    for (int64_t i = 0; i < k / QK_K; ++i, x += QK_K) {
        // The largest magnitude; NaN lanes keep the running maximum (ggml's `>` skips them).
        __m256 amax8 = _mm256_setzero_ps();
        for (int j = 0; j < QK_K; j += 8) {
            amax8 = _mm256_max_ps(_mm256_andnot_ps(sign_bit, _mm256_loadu_ps(x + j)), amax8);
        }
        __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax8), _mm256_extractf128_ps(amax8, 1));
        m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        m = _mm_max_ss(m, _mm_movehdup_ps(m));
        const float amax = _mm_cvtss_f32(m);
        if (amax == 0.0f) {
            memset(&y[i], 0, sizeof(y[i]));
            continue;
        }
        // The first value of that magnitude: its sign is the scale's.
        float max = amax;
        for (int j = 0; j < QK_K; j += 8) {
            const __m256 abs = _mm256_andnot_ps(sign_bit, _mm256_loadu_ps(x + j));
            const int hits = _mm256_movemask_ps(_mm256_cmp_ps(abs, _mm256_set1_ps(amax), _CMP_EQ_OQ));
            if (hits != 0) {
                max = x[j + __builtin_ctz(hits)];
                break;
            }
        }
        const float iscale = -127.f / max;
        const __m256 scale = _mm256_set1_ps(iscale);
        const __m256i cap = _mm256_set1_epi32(127);
        for (int j = 0; j < QK_K; j += 32) {
            __m256i v[4];
            for (int q = 0; q < 4; ++q) {
                const __m256 scaled = _mm256_mul_ps(scale, _mm256_loadu_ps(x + j + 8 * q));
                // NaN becomes 0, as ggml's float-to-int trick makes it.
                const __m256i ordered = _mm256_castps_si256(_mm256_cmp_ps(scaled, scaled, _CMP_ORD_Q));
                v[q] = _mm256_and_si256(_mm256_min_epi32(_mm256_cvtps_epi32(scaled), cap), ordered);
            }
            y[i].bsums[j / 16] = (int16_t) sum_of_8(_mm256_add_epi32(v[0], v[1]));
            y[i].bsums[j / 16 + 1] = (int16_t) sum_of_8(_mm256_add_epi32(v[2], v[3]));
            // packs work within 128-bit lanes: put the 32-bit groups back in order.
            const __m256i bytes = _mm256_packs_epi16(_mm256_packs_epi32(v[0], v[1]), _mm256_packs_epi32(v[2], v[3]));
            _mm256_storeu_si256((__m256i *) (y[i].qs + j), _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
        }
        y[i].d = 1 / iscale;
    }
}
#endif
