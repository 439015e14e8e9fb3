// corral's Q4_1 matrix multiplication for ggml's x86 CPU backends.
//
// ggml multiplies a Q4_1 weight matrix by a batch of activations one (row, column) dot
// product at a time (ggml_vec_dot_q4_1_q8_1): every 4-bit row is unpacked again for every
// token of the batch. That is most of the time of batched decoding and prompt processing on
// Q4_1 models, for which ggml has no GEMM (llamafile's tinyBLAS and the CPU repack cover
// Q4_0, Q8_0, IQ4_NL and K-quants). This kernel computes 4 rows x up to 4 columns per tile,
// unpacking each weight block once per tile and reusing each activation block for 4 rows.
//
// Per (row, column) it performs exactly ggml_vec_dot_q4_1_q8_1's arithmetic in the same order
// (8-lane float accumulator, scales multiplied as floats, the min term summed as a scalar, one
// horizontal sum at the end), so results are bit-identical to ggml's, batched or not.
//
// It is linked into each AVX2-capable libggml-cpu-<variant>.so by core/build.rs: ggml's own
// `llamafile_sgemm` is renamed to `ggml_llamafile_sgemm` in that variant's object file, and the
// `llamafile_sgemm` below takes Q4_1 x Q8_1 and hands every other case to it.

#include <immintrin.h>
#include <stdint.h>

#define GGML_COMMON_DECL_CPP
#include "ggml-common.h"
#include "ggml-cpu-impl.h"

extern "C" bool ggml_llamafile_sgemm(const struct ggml_compute_params * params, int64_t m, int64_t n, int64_t k,
                                     const void * A, int64_t lda, const void * B, int64_t ldb, void * C,
                                     int64_t ldc, int Atype, int Btype, int Ctype);

namespace {

constexpr int TILE_ROWS = 4;
constexpr int TILE_COLS = 4;

inline float fp16_to_fp32(ggml_half h) {
    return _cvtsh_ss(h);
}

// 16 bytes of nibbles -> 32 bytes: low nibbles first, then high (ggml's bytes_from_nibbles_32).
inline __m256i unpack_nibbles(const uint8_t * qs) {
    const __m128i packed = _mm_loadu_si128((const __m128i *) qs);
    const __m256i bytes = _mm256_set_m128i(_mm_srli_epi16(packed, 4), packed);
    return _mm256_and_si256(_mm256_set1_epi8(0x0F), bytes);
}

// Unsigned x signed bytes, summed in groups of 4 into 8 floats (ggml's mul_sum_us8_pairs_float).
inline __m256 dot_groups(__m256i unsigned_bytes, __m256i signed_bytes) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
    return _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(_mm256_setzero_si256(), unsigned_bytes, signed_bytes));
#elif defined(__AVXVNNI__)
    return _mm256_cvtepi32_ps(_mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), unsigned_bytes, signed_bytes));
#else
    const __m256i pairs = _mm256_maddubs_epi16(unsigned_bytes, signed_bytes);
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_set1_epi16(1), pairs));
#endif
}

// ggml's hsum_float_8.
inline float horizontal_sum(__m256 x) {
    __m128 r = _mm_add_ps(_mm256_extractf128_ps(x, 1), _mm256_castps256_ps128(x));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

// C[col * ldc + row] for rows row0..row0+ROWS and columns col0..col0+COLS, over k blocks.
template <int ROWS, int COLS>
void tile(int64_t k, const block_q4_1 * A, int64_t lda, const block_q8_1 * B, int64_t ldb, float * C, int64_t ldc,
          int64_t row0, int64_t col0) {
    __m256 acc[ROWS][COLS];
    float mins[ROWS][COLS];
    for (int i = 0; i < ROWS; ++i) {
        for (int j = 0; j < COLS; ++j) {
            acc[i][j] = _mm256_setzero_ps();
            mins[i][j] = 0.0f;
        }
    }
    for (int64_t l = 0; l < k; ++l) {
        __m256i weights[ROWS];
        float weight_scale[ROWS];
        float weight_min[ROWS];
        for (int i = 0; i < ROWS; ++i) {
            const block_q4_1 & block = A[(row0 + i) * lda + l];
            weights[i] = unpack_nibbles(block.qs);
            weight_scale[i] = fp16_to_fp32(block.GGML_COMMON_AGGR_U.GGML_COMMON_AGGR_S.d);
            weight_min[i] = fp16_to_fp32(block.GGML_COMMON_AGGR_U.GGML_COMMON_AGGR_S.m);
        }
        for (int j = 0; j < COLS; ++j) {
            const block_q8_1 & block = B[(col0 + j) * ldb + l];
            const __m256i activations = _mm256_loadu_si256((const __m256i *) block.qs);
            const float activation_scale = fp16_to_fp32(block.GGML_COMMON_AGGR_U.GGML_COMMON_AGGR_S.d);
            const float activation_sum = fp16_to_fp32(block.GGML_COMMON_AGGR_U.GGML_COMMON_AGGR_S.s);
            for (int i = 0; i < ROWS; ++i) {
                const __m256 scale = _mm256_set1_ps(weight_scale[i] * activation_scale);
                acc[i][j] = _mm256_fmadd_ps(scale, dot_groups(weights[i], activations), acc[i][j]);
                mins[i][j] += weight_min[i] * activation_sum;
            }
        }
    }
    for (int i = 0; i < ROWS; ++i) {
        for (int j = 0; j < COLS; ++j) {
            C[(col0 + j) * ldc + row0 + i] = horizontal_sum(acc[i][j]) + mins[i][j];
        }
    }
}

template <int ROWS>
void row_tile(int64_t k, const block_q4_1 * A, int64_t lda, const block_q8_1 * B, int64_t ldb, float * C, int64_t ldc,
              int64_t row0, int64_t n) {
    int64_t col = 0;
    for (; col + TILE_COLS <= n; col += TILE_COLS) {
        tile<ROWS, TILE_COLS>(k, A, lda, B, ldb, C, ldc, row0, col);
    }
    switch (n - col) {
        case 3: tile<ROWS, 3>(k, A, lda, B, ldb, C, ldc, row0, col); break;
        case 2: tile<ROWS, 2>(k, A, lda, B, ldb, C, ldc, row0, col); break;
        case 1: tile<ROWS, 1>(k, A, lda, B, ldb, C, ldc, row0, col); break;
        default: break;
    }
}

// This thread's share of the rows, in whole tiles; every thread sees every column.
void gemm_q4_1(const ggml_compute_params * params, int64_t m, int64_t n, int64_t k, const block_q4_1 * A, int64_t lda,
               const block_q8_1 * B, int64_t ldb, float * C, int64_t ldc) {
    const int64_t tiles = (m + TILE_ROWS - 1) / TILE_ROWS;
    const int64_t per_thread = (tiles + params->nth - 1) / params->nth;
    const int64_t first = per_thread * params->ith;
    const int64_t last = first + per_thread < tiles ? first + per_thread : tiles;
    for (int64_t t = first; t < last; ++t) {
        const int64_t row0 = t * TILE_ROWS;
        switch (m - row0 < TILE_ROWS ? m - row0 : TILE_ROWS) {
            case 4: row_tile<4>(k, A, lda, B, ldb, C, ldc, row0, n); break;
            case 3: row_tile<3>(k, A, lda, B, ldb, C, ldc, row0, n); break;
            case 2: row_tile<2>(k, A, lda, B, ldb, C, ldc, row0, n); break;
            case 1: row_tile<1>(k, A, lda, B, ldb, C, ldc, row0, n); break;
            default: break;
        }
    }
}

}  // namespace

extern "C" bool llamafile_sgemm(const struct ggml_compute_params * params, int64_t m, int64_t n, int64_t k,
                                const void * A, int64_t lda, const void * B, int64_t ldb, void * C, int64_t ldc,
                                int Atype, int Btype, int Ctype) {
    if (Atype == GGML_TYPE_Q4_1 && Btype == GGML_TYPE_Q8_1 && Ctype == GGML_TYPE_F32 && !params->use_ref) {
        gemm_q4_1(params, m, n, k, (const block_q4_1 *) A, lda, (const block_q8_1 *) B, ldb, (float *) C, ldc);
        return true;
    }
    return ggml_llamafile_sgemm(params, m, n, k, A, lda, B, ldb, C, ldc, Atype, Btype, Ctype);
}
