// corral's quantized matrix multiplication for ggml's x86 CPU backends: Q4_0, Q4_1, Q5_0, Q5_1
// and the K-quants Q4_K, Q5_K, Q6_K (any AVX2 variant), and Q8_0 (VNNI variants).
//
// ggml multiplies Q4_1 weights by activations one (row, column) dot product at a time
// (ggml_vec_dot_q4_1_q8_1), and each of those converts and scales 8 partial sums per block;
// it has no GEMM for Q4_1 on x86 (llamafile's tinyBLAS and the CPU repack cover Q4_0, Q8_0,
// IQ4_NL and K-quants). tinyBLAS's Q8_0 tiles, used for the output layer of many models, also
// convert and scale per (row, column, block). On Q4_1 models that is most of the time of
// generation, batched decoding and prompts alike. (core/build.rs keeps Q4_0 and Q4_K weights
// out of the CPU repack, so that they reach this kernel.)
//
// This kernel works on panels of 8 rows. Each weight block of the panel is unpacked once and
// transposed so that one 256-bit lane holds one row: a single VNNI dot product (or maddubs on
// plain AVX2) then advances 8 rows at once against 4 broadcast activation bytes, and each block
// ends in one integer sum per (row, column), converted and scaled for 8 rows with 2-3 vector
// operations. The unpacked panel stays in L1 and serves every column of the batch; the next
// panel is prefetched meanwhile. Decoding (up to 4 columns) shares the rows between threads in
// chunks taken as they finish; its K-quants skip the panels and go row by row (row_by_row), and
// its Q5_0, Q5_1 and Q8_0 read each row's block in its own order (rows_in_order). On AVX-512
// VNNI, batches take panels of 16 rows in 512-bit registers (Lanes16); with AMX, K-quant
// batches take their dot products from AMX tiles (amx_tile).
//
// Arithmetic, per (row, column), in block order (bit for bit the same in every variant, for
// every batch size and tile: batching never changes a result):
//     isum = sum of the block's 32 products of weights and activations (exact, integer)
//     acc  = fma(float(isum), weight_scale * activation_scale, acc)
//     acc  = fma(weight_min, activation_scale_x_sum, acc)          (Q4_1, Q5_1)
// (the K-quants' super-blocks have their own, further down).
// ggml sums the same terms in another order, so results differ from ggml's in the last bits
// (core/tests/kernel.rs checks both: this formula exactly, ggml's within rounding).
//
// It is linked into each AVX2-capable libggml-cpu-<variant>.so by core/build.rs: ggml's own
// `llamafile_sgemm` is renamed to `ggml_llamafile_sgemm` in that variant's object file, and the
// `llamafile_sgemm` below takes the formats above and hands every other case to it.

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <algorithm>
#include <optional>
#include <type_traits>
#include <utility>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif
#include <vector>

#define GGML_COMMON_DECL_CPP
#include "ggml-common.h"
#include "ggml-cpu-impl.h"

extern "C" bool ggml_llamafile_sgemm(const struct ggml_compute_params * params, int64_t m, int64_t n, int64_t k,
                                     const void * A, int64_t lda, const void * B, int64_t ldb, void * C,
                                     int64_t ldc, int Atype, int Btype, int Ctype);

namespace {

// The 32-weight formats' unpacking belongs inside the tile loop that uses it: as a call (which
// compilers chose once decoding got its own loop) Q5_0 decoding took 60% longer.
#define ALWAYS_INLINE __attribute__((always_inline))

// The fp16 pairs read together below: (scale, min) and (scale, scale x sum).
static_assert(offsetof(block_q4_1, qs) == 4 && sizeof(ggml_half) == 2, "block_q4_1 starts with d, m");
static_assert(offsetof(block_q5_1, qh) == 4 && offsetof(block_q5_0, qh) == 2, "fifth bits follow the scales");
static_assert(offsetof(block_q8_1, qs) == 4, "block_q8_1 starts with d, s");

constexpr int PANEL_ROWS = 8;          // one 32-bit lane of a 256-bit register per row

// The 8 (or `rows`) floats of one column of the panel in C.
inline __m256 load_rows(const float * c, int rows) {
    if (rows == PANEL_ROWS) {
        return _mm256_loadu_ps(c);
    }
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(rows), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    return _mm256_maskload_ps(c, mask);
}

inline void store_rows(float * c, int rows, __m256 values) {
    if (rows == PANEL_ROWS) {
        _mm256_storeu_ps(c, values);
        return;
    }
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(rows), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    _mm256_maskstore_ps(c, mask, values);
}

// The lanes of a panel: 8 rows in 256-bit registers (every variant; decoding everywhere), or 16
// rows in 512-bit ones (batches on AVX-512 VNNI: half the instructions and loads per product; a
// 16-row tile of Q4_K ran at 88% of the dot products' peak against 74% for 8 rows, in L1, and
// the 32-weight formats, whose float steps come every 32 weights, gained 25-35%). Each lane
// gets the same integers and float steps either way: the width of a panel never changes a
// result. (Lanes8 and Lanes16 are the same operations at two widths, as in ggml's SIMD mappings.)
struct Lanes8 {
    static constexpr int ROWS = 8;
    using Int = __m256i;
    using Float = __m256;
    static Int zero() { return _mm256_setzero_si256(); }
    static Int add(Int a, Int b) { return _mm256_add_epi32(a, b); }
    // a - 32 x b
    static Int minus_32_times(Int a, Int b) { return _mm256_sub_epi32(a, _mm256_slli_epi32(b, 5)); }
    // Per lane: the int16 pair of a times `pair` (two int16), summed.
    static Int multiply_pairs(Int a, int32_t pair) { return _mm256_madd_epi16(a, _mm256_set1_epi32(pair)); }
    static Float to_float(Int a) { return _mm256_cvtepi32_ps(a); }
    static Float times(Float a, float b) { return _mm256_mul_ps(a, splat(b)); }
    static Float fma(Float a, Float b, Float c) { return _mm256_fmadd_ps(a, b, c); }
    static Float fnma(Float a, Float b, Float c) { return _mm256_fnmadd_ps(a, b, c); }
    static Float zero_floats() { return _mm256_setzero_ps(); }
    static Float splat(float x) { return _mm256_set1_ps(x); }
    static Int splat_int(int32_t x) { return _mm256_set1_epi32(x); }
    // Per lane: the low int16 of a in both halves (a scale for int16 multiply-adds).
    static Int low_word_twice(Int a) {
        return _mm256_shuffle_epi8(a, _mm256_setr_epi8(0, 1, 0, 1, 4, 5, 4, 5, 8, 9, 8, 9, 12, 13, 12, 13, 0, 1, 0, 1, 4, 5, 4, 5, 8, 9, 8, 9, 12, 13, 12, 13));
    }
    static Float load(const float * c, int rows) { return load_rows(c, rows); }
    static void store(float * c, int rows, Float values) { store_rows(c, rows, values); }
};

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
#define CORRAL_WIDE_PANELS
struct Lanes16 {
    static constexpr int ROWS = 16;
    using Int = __m512i;
    using Float = __m512;
    static Int zero() { return _mm512_setzero_si512(); }
    static Int add(Int a, Int b) { return _mm512_add_epi32(a, b); }
    static Int minus_32_times(Int a, Int b) { return _mm512_sub_epi32(a, _mm512_slli_epi32(b, 5)); }
    static Int multiply_pairs(Int a, int32_t pair) { return _mm512_madd_epi16(a, _mm512_set1_epi32(pair)); }
    static Float to_float(Int a) { return _mm512_cvtepi32_ps(a); }
    static Float times(Float a, float b) { return _mm512_mul_ps(a, splat(b)); }
    static Float fma(Float a, Float b, Float c) { return _mm512_fmadd_ps(a, b, c); }
    static Float fnma(Float a, Float b, Float c) { return _mm512_fnmadd_ps(a, b, c); }
    static Float zero_floats() { return _mm512_setzero_ps(); }
    static Float splat(float x) { return _mm512_set1_ps(x); }
    static Int splat_int(int32_t x) { return _mm512_set1_epi32(x); }
    static __mmask16 first(int rows) { return (__mmask16) ((1u << rows) - 1); }
    static Float load(const float * c, int rows) { return _mm512_maskz_loadu_ps(first(rows), c); }
    static void store(float * c, int rows, Float values) { _mm512_mask_storeu_ps(c, first(rows), values); }
    // Rows 0-7 from low, 8-15 from high.
    static Int join(__m256i low, __m256i high) { return _mm512_inserti64x4(_mm512_castsi256_si512(low), high, 1); }
    static Float join(__m256 low, __m256 high) {
        return _mm512_castsi512_ps(join(_mm256_castps_si256(low), _mm256_castps_si256(high)));
    }
};
using WideLanes = Lanes16;  // the panels of batches (more than TILE_COLS columns)
#else
using WideLanes = Lanes8;
#endif

// One 32-weight block of 8 (Lanes8) or 16 (Lanes16) rows, ready for the dot products.
template <typename Lanes>
struct PanelBlockOf {
    typename Lanes::Int quants[8];  // [g]: weights 4g..4g+3 of the block, unsigned; lane = row
    typename Lanes::Float scales;   // lane = row
    typename Lanes::Float mins;     // Q4_1, Q5_1: the offset added to every weight of the row's block
};
using PanelBlock = PanelBlockOf<Lanes8>;

// What the dot products need of one activation block.
struct ActivationScales {
    float scale;
    float scale_x_sum;   // Q8_1: ggml's precomputed scale x sum of the block's values
    int32_t sum;         // Q8_0: the sum of the block's values (see accumulate_centered)
};

// Block l of rows row0..row0 + rows (rows <= 8); missing rows point at a zero block.
template <typename Block>
inline void block_rows(const Block * A, int64_t lda, int64_t row0, int rows, int64_t l, const Block * (&row)[PANEL_ROWS]) {
    static const Block zero_block = {};
    for (int r = 0; r < PANEL_ROWS; ++r) {
        row[r] = r < rows ? &A[(row0 + r) * lda + l] : &zero_block;
    }
}

inline int32_t load_word(const void * bytes) {
    int32_t word;
    memcpy(&word, bytes, sizeof(word));
    return word;
}

inline __m256i broadcast_word(const int8_t * bytes) {
    return _mm256_set1_epi32(load_word(bytes));
}

// The 8 fp16 values at `offset` bytes into each row's block, as floats (lane = row).
template <typename Block>
inline __m256 halves_of(const Block * const (&row)[PANEL_ROWS], size_t offset) {
    uint16_t h[PANEL_ROWS];
    for (int r = 0; r < PANEL_ROWS; ++r) {
        memcpy(&h[r], (const char *) row[r] + offset, sizeof(uint16_t));
    }
    return _mm256_cvtph_ps(_mm_setr_epi16(h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]));
}

// 16 bytes of nibbles per row (byte j: weight j in the low nibble, weight j + 16 in the high)
// into quants[g] = weights 4g..4g+3 of every row.
template <typename Block>
inline void unpack_nibbles(const Block * const (&row)[PANEL_ROWS], size_t offset, __m256i (&quants)[8]) {
    // y[r] = the 16 bytes of row r | of row r + 4, then a 4x4 transpose of 32-bit words in
    // each 128-bit lane: word c of the result is bytes 4c..4c+3 of every row.
    __m256i y[4];
    for (int r = 0; r < 4; ++r) {
        y[r] = _mm256_inserti128_si256(
            _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *) ((const char *) row[r] + offset))),
            _mm_loadu_si128((const __m128i *) ((const char *) row[r + 4] + offset)), 1);
    }
    const __m256i t0 = _mm256_unpacklo_epi32(y[0], y[1]);
    const __m256i t1 = _mm256_unpackhi_epi32(y[0], y[1]);
    const __m256i t2 = _mm256_unpacklo_epi32(y[2], y[3]);
    const __m256i t3 = _mm256_unpackhi_epi32(y[2], y[3]);
    const __m256i words[4] = {_mm256_unpacklo_epi64(t0, t2), _mm256_unpackhi_epi64(t0, t2),
                              _mm256_unpacklo_epi64(t1, t3), _mm256_unpackhi_epi64(t1, t3)};
    const __m256i low_nibbles = _mm256_set1_epi8(0x0F);
    for (int c = 0; c < 4; ++c) {
        quants[c] = _mm256_and_si256(words[c], low_nibbles);
        quants[c + 4] = _mm256_and_si256(_mm256_srli_epi16(words[c], 4), low_nibbles);
    }
}

// The 32 bytes at `offset` of each row's block, transposed as 8 x 8 32-bit words: words[w] =
// bytes 4w..4w+3 of every row (lane = row).
template <typename Block>
inline void transpose_words(const Block * const (&row)[PANEL_ROWS], size_t offset, __m256i (&words)[8]) {
    __m256i r[8];
    for (int i = 0; i < 8; ++i) {
        r[i] = _mm256_loadu_si256((const __m256i *) ((const char *) row[i] + offset));
    }
    __m256i t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm256_unpacklo_epi64(t[i], t[i + 2]);          // words 0, 4 of rows i..i+3
        u[i + 1] = _mm256_unpackhi_epi64(t[i], t[i + 2]);      // words 1, 5
        u[i + 2] = _mm256_unpacklo_epi64(t[i + 1], t[i + 3]);  // words 2, 6
        u[i + 3] = _mm256_unpackhi_epi64(t[i + 1], t[i + 3]);  // words 3, 7
    }
    for (int w = 0; w < 4; ++w) {
        words[w] = _mm256_permute2x128_si256(u[w], u[w + 4], 0x20);
        words[w + 4] = _mm256_permute2x128_si256(u[w], u[w + 4], 0x31);
    }
}

// Q5_0, Q5_1: bit j of the row's 32-bit `qh` (at `offset`) is bit 4 of weight j.
template <typename Block>
inline void add_fifth_bits(const Block * const (&row)[PANEL_ROWS], size_t offset, __m256i (&quants)[8]) {
    const __m256i qh = _mm256_setr_epi32(load_word((const char *) row[0] + offset), load_word((const char *) row[1] + offset),
                                         load_word((const char *) row[2] + offset), load_word((const char *) row[3] + offset),
                                         load_word((const char *) row[4] + offset), load_word((const char *) row[5] + offset),
                                         load_word((const char *) row[6] + offset), load_word((const char *) row[7] + offset));
    const __m256i fifth_bit = _mm256_set1_epi8(0x10);
    for (int g = 0; g < 8; ++g) {
        // Weights 4g..4g+3 take bits 4(g & 1)..+3 of byte g / 2 of the row's word: copy that
        // byte into the 4 bytes of its lane, keep one bit per byte, widen it to 0x10.
        const char b = (char) (g / 2);
        const __m256i byte_g = _mm256_shuffle_epi8(qh, _mm256_setr_epi8(b, b, b, b, b + 4, b + 4, b + 4, b + 4, b + 8, b + 8, b + 8, b + 8, b + 12, b + 12, b + 12, b + 12,
                                                                            b, b, b, b, b + 4, b + 4, b + 4, b + 4, b + 8, b + 8, b + 8, b + 8, b + 12, b + 12, b + 12, b + 12));
        const __m256i bit = _mm256_set1_epi32(g % 2 == 0 ? 0x08040201 : (int32_t) 0x80402010);
#if defined(__AVX512BW__) && defined(__AVX512VL__)
        quants[g] = _mm256_mask_add_epi8(quants[g], _mm256_test_epi8_mask(byte_g, bit), quants[g], fifth_bit);
#else
        const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(byte_g, bit), bit);
        quants[g] = _mm256_or_si256(quants[g], _mm256_and_si256(set, fifth_bit));
#endif
    }
}

#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
#define CORRAL_DPBUSD _mm256_dpbusd_epi32
#define CORRAL_DPWSSD _mm256_dpwssd_epi32
#elif defined(__AVXVNNI__)
#define CORRAL_DPBUSD _mm256_dpbusd_avx_epi32
#define CORRAL_DPWSSD _mm256_dpwssd_avx_epi32
#endif

#ifdef CORRAL_DPBUSD
// Per lane (row): low = init + the dot product of weights 0-15 with their activations, high =
// that of weights 16-31: two chains of 4, so that consecutive dot products do not wait on each
// other.
inline void half_dots(const __m256i * quants, const int8_t * activations, __m256i init, __m256i & low, __m256i & high) {
    low = init;
    high = _mm256_setzero_si256();
    for (int g = 0; g < 4; ++g) {
        low = CORRAL_DPBUSD(low, quants[g], broadcast_word(activations + 4 * g));
        high = CORRAL_DPBUSD(high, quants[g + 4], broadcast_word(activations + 4 * (g + 4)));
    }
}
#else
// Without VNNI: low and high = the pair sums (int16, exact for weights below 32: |weight x
// activation pair| <= 2 x 31 x 128) of weights 0-15 and 16-31 with their activations, summed in
// 16 bits per lane.
inline void half_pair_sums(const __m256i * quants, const int8_t * activations, __m256i & low, __m256i & high) {
    __m256i pairs[8];
    for (int g = 0; g < 8; ++g) {
        pairs[g] = _mm256_maddubs_epi16(quants[g], broadcast_word(activations + 4 * g));
    }
    low = _mm256_add_epi16(_mm256_add_epi16(pairs[0], pairs[1]), _mm256_add_epi16(pairs[2], pairs[3]));
    high = _mm256_add_epi16(_mm256_add_epi16(pairs[4], pairs[5]), _mm256_add_epi16(pairs[6], pairs[7]));
}
#endif

// Per lane (row): init + the exact integer dot product of 32 unsigned weights (at most 31
// without VNNI) with 32 signed activations; weight group g pairs with activation bytes 4g..4g+3.
// (init starts a chain of dot products: a correction added there costs no instruction.)
inline __m256i block_dot(const __m256i * quants, const int8_t * activations, __m256i init = _mm256_setzero_si256()) {
    __m256i low, high;
#ifdef CORRAL_DPBUSD
    half_dots(quants, activations, init, low, high);
    return _mm256_add_epi32(low, high);
#else
    half_pair_sums(quants, activations, low, high);
    const __m256i ones = _mm256_set1_epi16(1);
    return _mm256_add_epi32(_mm256_add_epi32(init, _mm256_madd_epi16(low, ones)), _mm256_madd_epi16(high, ones));
#endif
}

// A scale (-128..127) as add_scaled takes it: the int16 pair (scale, 256 x scale). The K-quant
// panels store their scales so when they unpack, rather than add_scaled shuffling them for
// every (chunk, column): that shuffle shares a port with the dot products on Intel, and without
// it Q6_K's 16-row tiles ran 3-9% faster (one thread, Sapphire Rapids).
inline int32_t split_scale(int32_t scale) {
    return (int32_t) ((uint32_t) (uint16_t) scale | (uint32_t) (uint8_t) scale << 24);
}

// Per lane: isum + dot x scale, exactly, for |dot| below 2^23, without a 32-bit multiply (two
// passes through the port that the dot products use, on Intel): dot's low byte (0..255) and the
// rest (dot >> 8, which fits 16 bits) side by side in the lane's two int16 halves, times
// scale_split (split_scale), by one int16 multiply-add. (The byte shuffle: bytes 0 and 1-2.)
#ifdef CORRAL_DPWSSD
inline __m256i add_scaled(__m256i isum, __m256i dot, __m256i scale_split) {
    const __m256i split = _mm256_shuffle_epi8(dot, _mm256_broadcastsi128_si256(_mm_setr_epi8(0, -1, 1, 2, 4, -1, 5, 6, 8, -1, 9, 10, 12, -1, 13, 14)));
    return CORRAL_DPWSSD(isum, split, scale_split);
}
#endif

#ifdef CORRAL_WIDE_PANELS
inline __m512i add_scaled(__m512i isum, __m512i dot, __m512i scale_split) {
    const __m512i split = _mm512_shuffle_epi8(dot, _mm512_broadcast_i32x4(_mm_setr_epi8(0, -1, 1, 2, 4, -1, 5, 6, 8, -1, 9, 10, 12, -1, 13, 14)));
    return _mm512_dpwssd_epi32(isum, split, scale_split);
}

// half_dots, block_dot and the K-quants' add_scaled_* (further down) for 16 rows.
inline void half_dots(const __m512i * quants, const int8_t * activations, __m512i init, __m512i & low, __m512i & high) {
    low = init;
    high = _mm512_setzero_si512();
    for (int g = 0; g < 4; ++g) {
        low = _mm512_dpbusd_epi32(low, quants[g], _mm512_set1_epi32(load_word(activations + 4 * g)));
        high = _mm512_dpbusd_epi32(high, quants[g + 4], _mm512_set1_epi32(load_word(activations + 4 * (g + 4))));
    }
}

inline __m512i block_dot(const __m512i * quants, const int8_t * activations, __m512i init = _mm512_setzero_si512()) {
    __m512i low, high;
    half_dots(quants, activations, init, low, high);
    return _mm512_add_epi32(low, high);
}

inline __m512i add_scaled_half_block_dot(__m512i isum, const __m512i * quants, const int8_t * activations, __m512i scale_split) {
    __m512i sum = _mm512_setzero_si512();
    for (int g = 0; g < 4; ++g) {
        sum = _mm512_dpbusd_epi32(sum, quants[g], _mm512_set1_epi32(load_word(activations + 4 * g)));
    }
    return add_scaled(isum, sum, scale_split);  // |sum| <= 16 x 63 x 128
}
#endif

// Decoding: the exact dot products of 32 unsigned weights (at most 63) with 32 signed
// activations, as 8 int32 partial sums (lane i: bytes 4i..4i + 3). Q8_0's weights (up to 255)
// need VNNI.
inline __m256i dot32(__m256i weights, const int8_t * activations) {
    const __m256i a = _mm256_loadu_si256((const __m256i *) activations);
#ifdef CORRAL_DPBUSD
    return CORRAL_DPBUSD(_mm256_setzero_si256(), weights, a);
#else
    return _mm256_madd_epi16(_mm256_maddubs_epi16(weights, a), _mm256_set1_epi16(1));  // pairs <= 2 x 63 x 128
#endif
}

// The sums of the low and high halves of 4 vectors of partial sums:
// [v0 low, v1 low, v2 low, v3 low, v0 high, v1 high, v2 high, v3 high].
inline __m256i half_sums(const __m256i * v) {
    return _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
}

// Lane r: the sum of the 8 lanes of v[r].
inline __m256i lane_sums(const __m256i (&v)[PANEL_ROWS]) {
    const __m256i low = half_sums(v), high = half_sums(v + 4);
    return _mm256_add_epi32(_mm256_permute2x128_si256(low, high, 0x20), _mm256_permute2x128_si256(low, high, 0x31));
}

// acc = fma(float(isum), weight scale x activation scale, acc): the float steps of every
// 32-weight block, in panels and in decoding alike.
template <typename Lanes = Lanes8>
inline typename Lanes::Float add_scaled(typename Lanes::Int isum, typename Lanes::Float weight_scales, float activation_scale,
                                        typename Lanes::Float acc) {
    return Lanes::fma(Lanes::to_float(isum), Lanes::times(weight_scales, activation_scale), acc);
}

// Weights with an offset (Q4_1, Q5_1), against Q8_1:
// acc = fma(isum, weight scale x activation scale, acc); acc = fma(weight min, scale x sum, acc)
template <typename Lanes = Lanes8>
inline typename Lanes::Float add_with_min(typename Lanes::Int isum, typename Lanes::Float weight_scales, typename Lanes::Float mins,
                                          const ActivationScales & s, typename Lanes::Float acc) {
    return Lanes::fma(mins, Lanes::splat(s.scale_x_sum), add_scaled<Lanes>(isum, weight_scales, s.scale, acc));
}

template <typename Lanes>
inline typename Lanes::Float accumulate_with_min(const PanelBlockOf<Lanes> & block, const block_q8_1 & activations,
                                                 const ActivationScales & s, typename Lanes::Float acc) {
    return add_with_min<Lanes>(block_dot(block.quants, activations.qs), block.scales, block.mins, s, acc);
}

// Weights stored as unsigned q = w + CENTER (Q4_0: 8, Q5_0: 16, Q8_0: 128), against Q8_0: the
// unsigned dot product exceeds the signed one by exactly CENTER x the sum of the activations.
// acc = fma(isum - CENTER x sum, weight scale x activation scale, acc)
template <int CENTER, typename Lanes>
inline typename Lanes::Float accumulate_centered(const PanelBlockOf<Lanes> & block, const block_q8_0 & activations,
                                                 const ActivationScales & s, typename Lanes::Float acc) {
    return add_scaled<Lanes>(block_dot(block.quants, activations.qs, Lanes::splat_int(-CENTER * s.sum)), block.scales, s.scale, acc);
}

// A panel block of 16 rows from two of 8 (unpacked by the code every variant runs).
template <typename Lanes>
inline PanelBlockOf<Lanes> joined(const PanelBlock & low, const PanelBlock & high) {
    PanelBlockOf<Lanes> out;
    for (int g = 0; g < 8; ++g) {
        out.quants[g] = Lanes::join(low.quants[g], high.quants[g]);
    }
    out.scales = Lanes::join(low.scales, high.scales);
    out.mins = Lanes::join(low.mins, high.mins);
    return out;
}

inline ActivationScales q8_1_scales(const block_q8_1 & block) {
    return {_cvtsh_ss(block.GGML_COMMON_AGGR_U.GGML_COMMON_AGGR_S.d), _cvtsh_ss(block.GGML_COMMON_AGGR_U.GGML_COMMON_AGGR_S.s), 0};
}

inline ActivationScales q8_0_scales(const block_q8_0 & block) {
    int32_t sum = 0;
    for (int i = 0; i < 32; ++i) {
        sum += block.qs[i];
    }
    return {_cvtsh_ss(block.d), 0.0f, sum};
}

// The formats of 32-weight blocks: how a panel block is unpacked, and which activations and
// accumulation go with it.

// A tile's columns one after another: a 32-weight panel block fits in registers, and the
// compiler keeps it there for every column of the tile.
template <typename Format, typename L>
struct ColumnByColumn {
    static constexpr bool ROW_BY_ROW = false;   // decoding takes the panels or rows_in_order (see row_by_row)
    static constexpr bool PANEL_IN_REGISTERS = true;
    static constexpr bool PANEL_PAIRS = false;  // see paired_tile
    static constexpr bool AMX_TILES = false;    // see amx_tile
    static constexpr int AMX_PARTS = 1;
    using Lanes = L;
    static constexpr int TILE_COLS = 4;         // columns sharing each loaded panel block
    // Columns whose scales are converted at once (and that share an unpacked panel), and the
    // panel's depth in blocks: 20 KB of panel and 12-24 KB of scales. Panels of 16 rows cost
    // twice the unpacking of 8, shared by twice the columns.
    static constexpr int64_t BATCH_COLS = L::ROWS == PANEL_ROWS ? 32 : 64;
    static constexpr int64_t CHUNK = L::ROWS == PANEL_ROWS ? 64 : 32;
    // (Parameter types deduced: Format is incomplete where this is declared.)
    // Format::unpack_rows unpacks 8 rows; a panel of 16 joins two of them.
    template <typename Weights, typename Panel>
    ALWAYS_INLINE static void unpack(const Weights * A, int64_t lda, int64_t row0, int rows, int64_t l, Panel & out) {
        if constexpr (L::ROWS == PANEL_ROWS) {
            Format::unpack_rows(A, lda, row0, rows, l, out);
        } else {
            PanelBlock low, high;
            Format::unpack_rows(A, lda, row0, std::min(rows, PANEL_ROWS), l, low);
            Format::unpack_rows(A, lda, row0 + PANEL_ROWS, std::max(rows - PANEL_ROWS, 0), l, high);
            out = joined<L>(low, high);
        }
    }
    template <int COLS, typename Panel, typename Activations, typename Scales, typename Acc>
    static void accumulate_tile(const Panel & block, const Activations * b, int64_t ldb, const Scales * s, int64_t s_stride,
                                Acc (&acc)[COLS]) {
        for (int j = 0; j < COLS; ++j) {
            acc[j] = Format::accumulate(block, b[j * ldb], s[j * s_stride], acc[j]);
        }
    }
};

// Decoding: 8 rows' weight scales, and mins (Q4_1, Q5_1), of one block (lane = row).
struct WeightScales {
    __m256 scales;
    __m256 mins;
};

// Decoding Q5_0, Q5_1: bit i of the 32-bit qh is bit 4 of weight i (byte i of quants).
inline __m256i add_fifth_bits_in_order(const uint8_t * qh, __m256i quants) {
    const uint32_t bits = (uint32_t) load_word(qh);
#if defined(__AVX512BW__) && defined(__AVX512VL__)
    return _mm256_mask_add_epi8(quants, (__mmask32) bits, quants, _mm256_set1_epi8(0x10));
#else
    // ggml's bytes_from_bits_32: byte i takes byte i / 8 of the bits, all of whose bits but
    // i % 8 are then set; it is all ones exactly when bit i is.
    const __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32((int32_t) bits),
                                               _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0));
    const __m256i set = _mm256_cmpeq_epi8(_mm256_or_si256(spread, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe)), _mm256_set1_epi64x(-1));
    return _mm256_or_si256(quants, _mm256_and_si256(set, _mm256_set1_epi8(0x10)));
#endif
}

// Nibble formats: 16 bytes of 4-bit weights, FIFTH_BITS: 32 more bits (Q5_*), and either a
// min (Q4_1, Q5_1: weight = scale x q + min, against Q8_1) or a center (Q4_0: weight = scale x
// (q - 8), Q5_0: scale x (q - 16), against Q8_0).
template <typename Block, bool FIFTH_BITS, bool MINS, typename L = WideLanes>
struct NibbleFormat : ColumnByColumn<NibbleFormat<Block, FIFTH_BITS, MINS, L>, L> {
    using Weights = Block;
    using Decoding = NibbleFormat<Block, FIFTH_BITS, MINS, Lanes8>;  // at most 4 columns: panels of 8 rows
    // Decoding: with fifth bits, rows_in_order (where they cost 2 operations a row, not a
    // transposition of 8 rows' bits); Q4_1 is as fast in the panels.
    static constexpr bool IN_ORDER = FIFTH_BITS;
    using Activations = typename std::conditional<MINS, block_q8_1, block_q8_0>::type;
    static constexpr int CENTER = FIFTH_BITS ? 16 : 8;  // without MINS
    using Panel = PanelBlockOf<L>;
    using Scales = ActivationScales;
    ALWAYS_INLINE static void unpack_rows(const Weights * A, int64_t lda, int64_t row0, int rows, int64_t l, PanelBlock & out) {
        const Weights * row[PANEL_ROWS];
        block_rows(A, lda, row0, rows, l, row);
        unpack_nibbles(row, offsetof(Weights, qs), out.quants);
        if constexpr (FIFTH_BITS) {
            add_fifth_bits(row, offsetof(Weights, qh), out.quants);
        }
        out.scales = halves_of(row, 0);
        out.mins = MINS ? halves_of(row, sizeof(ggml_half)) : _mm256_setzero_ps();
    }
    static ActivationScales activation_scales(const Activations & block) {
        if constexpr (MINS) {
            return q8_1_scales(block);
        } else {
            return q8_0_scales(block);
        }
    }
    static typename L::Float accumulate(const Panel & block, const Activations & a, const ActivationScales & s, typename L::Float acc) {
        if constexpr (MINS) {
            return accumulate_with_min(block, a, s, acc);
        } else {
            return accumulate_centered<CENTER>(block, a, s, acc);
        }
    }
    // Decoding (rows_in_order): one row's block, byte i = weight i, unsigned.
    ALWAYS_INLINE static __m256i in_order(const Weights & block) {
        // The 16 bytes in both halves, the high half shifted by 4 (no shuffle needed).
        const __m256i packed = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *) block.qs));
        const __m256i quants = _mm256_and_si256(_mm256_srlv_epi32(packed, _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4)), _mm256_set1_epi8(0x0F));
        if constexpr (FIFTH_BITS) {
            return add_fifth_bits_in_order(block.qh, quants);
        } else {
            return quants;
        }
    }
    ALWAYS_INLINE static WeightScales weight_scales(const Weights * const (&row)[PANEL_ROWS]) {
        return {halves_of(row, 0), MINS ? halves_of(row, sizeof(ggml_half)) : _mm256_setzero_ps()};
    }
    // accumulate's float steps for the exact dot products of the rows' unsigned weights.
    static __m256 add_dot(__m256i dot, const WeightScales & w, const ActivationScales & s, __m256 acc) {
        if constexpr (MINS) {
            return add_with_min(dot, w.scales, w.mins, s, acc);
        } else {
            return add_scaled(_mm256_add_epi32(dot, _mm256_set1_epi32(-CENTER * s.sum)), w.scales, s.scale, acc);
        }
    }
};

using Q4_1 = NibbleFormat<block_q4_1, false, true>;
using Q5_1 = NibbleFormat<block_q5_1, true, true>;
using Q5_0 = NibbleFormat<block_q5_0, true, false>;
using Q4_0 = NibbleFormat<block_q4_0, false, false>;

#ifdef CORRAL_DPBUSD
// Q8_0 weights (scale, 32 x 8 bits) against Q8_0 activations, on VNNI only: without it the
// signed x signed products need ggml's sign trick, and tinyBLAS already does that well.
// VNNI multiplies unsigned by signed bytes: the weights are stored + 128 (as unsigned).
template <typename L = WideLanes>
struct Q8_0Format : ColumnByColumn<Q8_0Format<L>, L> {
    using Weights = block_q8_0;
    using Decoding = Q8_0Format<Lanes8>;
    static constexpr bool IN_ORDER = true;  // decoding: rows_in_order, no transposition of 8 rows
    using Activations = block_q8_0;
    using Panel = PanelBlockOf<L>;
    using Scales = ActivationScales;
    ALWAYS_INLINE static void unpack_rows(const Weights * A, int64_t lda, int64_t row0, int rows, int64_t l, PanelBlock & out);
    static ActivationScales activation_scales(const Activations & block) { return q8_0_scales(block); }
    static typename L::Float accumulate(const Panel & block, const Activations & a, const ActivationScales & s, typename L::Float acc) {
        return accumulate_centered<128>(block, a, s, acc);
    }
    ALWAYS_INLINE static __m256i in_order(const Weights & block) {
        return _mm256_xor_si256(_mm256_loadu_si256((const __m256i *) block.qs), _mm256_set1_epi8((char) 0x80));
    }
    ALWAYS_INLINE static WeightScales weight_scales(const Weights * const (&row)[PANEL_ROWS]) {
        return {halves_of(row, 0), _mm256_setzero_ps()};
    }
    static __m256 add_dot(__m256i dot, const WeightScales & w, const ActivationScales & s, __m256 acc) {
        return add_scaled(_mm256_add_epi32(dot, _mm256_set1_epi32(-128 * s.sum)), w.scales, s.scale, acc);
    }
};

template <typename L>
ALWAYS_INLINE inline void Q8_0Format<L>::unpack_rows(const block_q8_0 * A, int64_t lda, int64_t row0, int rows, int64_t l, PanelBlock & out) {
    const block_q8_0 * row[PANEL_ROWS];
    block_rows(A, lda, row0, rows, l, row);
    __m256i words[8];
    transpose_words(row, offsetof(block_q8_0, qs), words);
    const __m256i to_unsigned = _mm256_set1_epi8((char) 0x80);
    for (int w = 0; w < 8; ++w) {
        out.quants[w] = _mm256_xor_si256(words[w], to_unsigned);
    }
    out.scales = halves_of(row, 0);
    out.mins = _mm256_setzero_ps();
}

using Q8_0 = Q8_0Format<>;
#endif

// The 8 rows of a panel are 8 interleaved streams, too many for the hardware prefetchers: while
// block l0 + l of the panel at row0 is read, fetch the same share of the panel AHEAD panels on
// (by default the next) into HINT's cache (by default L1). Whole rows (count == lda) lie
// together, one stream; a chunk of them is 8 pieces, one per row.
template <typename Weights, int AHEAD = 1, int HINT = _MM_HINT_T0>
inline void prefetch_next_panel(const Weights * A, int64_t lda, int64_t row0, int64_t l0, int64_t l, int64_t count) {
    constexpr size_t size = sizeof(Weights);
    if (count == lda) {
        constexpr int lines = (PANEL_ROWS * size + 63) / 64 + 1;
        const char * next = (const char *) &A[(row0 + AHEAD * PANEL_ROWS) * lda] + l * PANEL_ROWS * size;
        for (int line = 0; line < lines; ++line) {
            _mm_prefetch(next + 64 * line, HINT);
        }
    } else {
        for (int r = 0; r < PANEL_ROWS; ++r) {
            const char * next = (const char *) &A[(row0 + AHEAD * PANEL_ROWS + r) * lda + l0 + l];
            for (size_t offset = 0; offset < size; offset += 64) {
                _mm_prefetch(next + offset, HINT);
            }
            _mm_prefetch(next + size - 1, HINT);
        }
    }
}

// prefetch_next_panel for a panel of Lanes::ROWS rows (16 rows: the next one's two halves of 8).
template <typename Lanes, typename Weights>
inline void prefetch_next_panels(const Weights * A, int64_t lda, int64_t row0, int64_t l0, int64_t l, int64_t count) {
    for (int64_t next = row0 + Lanes::ROWS - PANEL_ROWS; next < row0 + 2 * Lanes::ROWS - PANEL_ROWS; next += PANEL_ROWS) {
        prefetch_next_panel(A, lda, next, l0, l, count);
    }
}

// Columns col0..col0 + COLS of rows row0..row0 + rows over blocks [l0, l0 + count),
// accumulating onto C unless this is the first chunk. UNPACK: the weight blocks are unpacked
// here (and kept in `panel` when STORE, for the next tiles); otherwise they are read from it.
template <typename Format, int COLS, bool UNPACK, bool STORE>
void tile(const typename Format::Weights * A, int64_t lda, typename Format::Panel * panel, int64_t l0, int64_t count,
          const typename Format::Activations * B, int64_t ldb, const typename Format::Scales * scales, int64_t s_stride, float * C,
          int64_t ldc, int64_t row0, int rows, int64_t col0) {
    using Lanes = typename Format::Lanes;
    typename Lanes::Float acc[COLS];
    for (int j = 0; j < COLS; ++j) {
        acc[j] = l0 == 0 ? Lanes::zero_floats() : Lanes::load(C + (col0 + j) * ldc + row0, rows);
    }
    for (int64_t l = 0; l < count; ++l) {
        // Panels that live in memory anyway (a K-quant super-block: 3 KB) are unpacked straight
        // into the stored panel; a 32-weight block stays in registers for this tile.
        constexpr bool IN_PLACE = STORE && !Format::PANEL_IN_REGISTERS;
        typename Format::Panel unpacked;
        if (UNPACK) {
            prefetch_next_panels<Lanes>(A, lda, row0, l0, l, count);
            Format::unpack(A, lda, row0, rows, l0 + l, IN_PLACE ? panel[l] : unpacked);
            if (STORE && !IN_PLACE) {
                panel[l] = unpacked;
            }
        }
        const typename Format::Panel & block = UNPACK && !IN_PLACE ? unpacked : panel[l];
        Format::template accumulate_tile<COLS>(block, &B[col0 * ldb + l0 + l], ldb, &scales[l], s_stride, acc);
    }
    for (int j = 0; j < COLS; ++j) {
        Lanes::store(C + (col0 + j) * ldc + row0, rows, acc[j]);
    }
}

template <typename Format, bool UNPACK, bool STORE>
void tile_any(int cols, const typename Format::Weights * A, int64_t lda, typename Format::Panel * panel, int64_t l0, int64_t count,
              const typename Format::Activations * B, int64_t ldb, const typename Format::Scales * scales, int64_t s_stride,
              float * C, int64_t ldc, int64_t row0, int rows, int64_t col0) {
    switch (cols) {
        case 4: tile<Format, 4, UNPACK, STORE>(A, lda, panel, l0, count, B, ldb, scales, s_stride, C, ldc, row0, rows, col0); break;
        case 3: tile<Format, 3, UNPACK, STORE>(A, lda, panel, l0, count, B, ldb, scales, s_stride, C, ldc, row0, rows, col0); break;
        case 2: tile<Format, 2, UNPACK, STORE>(A, lda, panel, l0, count, B, ldb, scales, s_stride, C, ldc, row0, rows, col0); break;
        case 1: tile<Format, 1, UNPACK, STORE>(A, lda, panel, l0, count, B, ldb, scales, s_stride, C, ldc, row0, rows, col0); break;
        default: break;
    }
}

// Decoding (at most TILE_COLS columns) of the 32-weight formats: a panel's 8 rows block by
// block, each row's block taken in its own byte order and its dot product summed across lanes,
// so that a lane holds a row again for the panels' float steps (bit for bit the same). With one
// column there is no batch to share a transposed panel block: transposing cost more than the
// dot products (Q5_0 matrix-vector products ran at 15 GB/s on one thread from L2).
template <typename Format, int COLS>
void rows_in_order(const typename Format::Weights * A, int64_t lda, int64_t k, const typename Format::Activations * B,
                   int64_t ldb, const typename Format::Scales * scales, float * C, int64_t ldc, int64_t row0, int rows) {
    __m256 acc[COLS];
    for (int j = 0; j < COLS; ++j) {
        acc[j] = _mm256_setzero_ps();
    }
    for (int64_t l = 0; l < k; ++l) {
        // The next panel into L1 and the one after into L2: with the next panel alone, the
        // Gemma 3 270M shape's Q8_0 output layer (262,144 rows) waited on memory; two panels
        // ahead made its generation 20% faster.
        prefetch_next_panel(A, lda, row0, 0, l, k);
        prefetch_next_panel<typename Format::Weights, 2, _MM_HINT_T1>(A, lda, row0, 0, l, k);
        const typename Format::Weights * row[PANEL_ROWS];
        block_rows(A, lda, row0, rows, l, row);
        __m256i quants[PANEL_ROWS];
        for (int r = 0; r < PANEL_ROWS; ++r) {
            quants[r] = Format::in_order(*row[r]);
        }
        const WeightScales weights = Format::weight_scales(row);
        for (int j = 0; j < COLS; ++j) {
            __m256i dots[PANEL_ROWS];
            for (int r = 0; r < PANEL_ROWS; ++r) {
                dots[r] = dot32(quants[r], B[j * ldb + l].qs);
            }
            acc[j] = Format::add_dot(lane_sums(dots), weights, scales[j * k + l], acc[j]);
        }
    }
    for (int j = 0; j < COLS; ++j) {
        store_rows(C + j * ldc + row0, rows, acc[j]);
    }
}

template <typename Format>
void rows_in_order_any(int cols, const typename Format::Weights * A, int64_t lda, int64_t k, const typename Format::Activations * B,
                       int64_t ldb, const typename Format::Scales * scales, float * C, int64_t ldc, int64_t row0, int rows) {
    switch (cols) {
        case 4: rows_in_order<Format, 4>(A, lda, k, B, ldb, scales, C, ldc, row0, rows); break;
        case 3: rows_in_order<Format, 3>(A, lda, k, B, ldb, scales, C, ldc, row0, rows); break;
        case 2: rows_in_order<Format, 2>(A, lda, k, B, ldb, scales, C, ldc, row0, rows); break;
        case 1: rows_in_order<Format, 1>(A, lda, k, B, ldb, scales, C, ldc, row0, rows); break;
        default: break;
    }
}

// Decoding (at most TILE_COLS columns) of the K-quants: row by row, straight from ggml's layout.
// With no batch to share an unpacked panel, unpacking (transposing 8 rows, widening their
// scales) cost more than the dot products: matrix-vector products ran at about 14 GB/s, half
// the memory bandwidth. Here a thread reads its rows in order, one stream, and each super-block
// is decoded once for the (at most 4) columns. Each (row, column) gets the same integers and the
// same float steps in the same order as in the panels, so decoding and batches agree bit for bit.
template <typename Format, int COLS>
void row_by_row(const typename Format::Weights * A, int64_t lda, int64_t k, const block_q8_K * B, int64_t ldb, float * C,
                int64_t ldc, int64_t row_begin, int64_t row_end) {
    // Prefetches ahead of the hardware prefetcher, which restarts at each page: into L2 4 KB ahead
    // (enough to cover the memory's latency at this loop's pace; L2 has more requests in flight
    // than L1), into L1 1 KB ahead. With only 4 blocks (about 600 bytes) into L1, 2 threads read
    // 13 GB/s of the 24 they can: the Qwen3 0.6B and Llama 3.2 1B shapes now generate 25% faster.
    constexpr int64_t L2_BLOCKS = 4096 / sizeof(typename Format::Weights);
    constexpr int64_t L1_BLOCKS = 1024 / sizeof(typename Format::Weights);
    for (int64_t r = row_begin; r < row_end; ++r) {
        const typename Format::Weights * row = &A[r * lda];
        __m128 acc[COLS];
        for (int j = 0; j < COLS; ++j) {
            acc[j] = _mm_setzero_ps();
        }
        for (int64_t l = 0; l < k; ++l) {  // k blocks a row; lda is the stride between rows
            for (size_t offset = 0; offset < sizeof(typename Format::Weights); offset += 64) {
                _mm_prefetch((const char *) &row[l + L2_BLOCKS] + offset, _MM_HINT_T1);
                _mm_prefetch((const char *) &row[l + L1_BLOCKS] + offset, _MM_HINT_T0);
            }
            Format::template row_block<COLS>(row[l], &B[l], ldb, acc);
        }
        for (int j = 0; j < COLS; ++j) {
            C[j * ldc + r] = _mm_cvtss_f32(acc[j]);
        }
    }
}

template <typename Format>
void row_by_row_any(int cols, const typename Format::Weights * A, int64_t lda, int64_t k, const block_q8_K * B, int64_t ldb,
                    float * C, int64_t ldc, int64_t row_begin, int64_t row_end) {
    switch (cols) {
        case 4: row_by_row<Format, 4>(A, lda, k, B, ldb, C, ldc, row_begin, row_end); break;
        case 3: row_by_row<Format, 3>(A, lda, k, B, ldb, C, ldc, row_begin, row_end); break;
        case 2: row_by_row<Format, 2>(A, lda, k, B, ldb, C, ldc, row_begin, row_end); break;
        case 1: row_by_row<Format, 1>(A, lda, k, B, ldb, C, ldc, row_begin, row_end); break;
        default: break;
    }
}

// Decoding (at most TILE_COLS columns): memory-bound, so the rows go in chunks that the threads
// take as they finish. With a fixed half each, one thread often finished a product well before
// the other and spun at ggml's barrier (10% of generation time on 2 threads). Up to 8 equal
// chunks a thread, of at least 16 panels (each chunk's first panel comes without a prefetch:
// chunks of 4 panels made Q5_0 decoding slower than the fixed halves).
template <typename Format>
void decode(const ggml_compute_params * params, int64_t m, int64_t n, int64_t k, const typename Format::Weights * A, int64_t lda,
            const typename Format::Activations * B, int64_t ldb, float * C, int64_t ldc) {
    // ggml's mul_mat sets the thread pool's chunk counter to nth before the barrier that precedes
    // its first call here, whose activations start its work buffer: that call shares chunks with
    // no barrier of its own (one per product cost more than the sharing saved on small
    // products). Its later calls (3-D weights, one per matrix) would find the counter spent:
    // they, and callers outside a graph (the tests call each thread in turn), take every nth chunk.
    ggml_threadpool * pool = params->threadpool;
    const bool shared = pool && (const void *) B == params->wdata;
    const int64_t panels = (m + PANEL_ROWS - 1) / PANEL_ROWS;
    const int64_t chunks_per_thread = std::clamp<int64_t>(panels / (16 * params->nth), 1, 8);
    const int64_t chunk_panels = (panels + params->nth * chunks_per_thread - 1) / (params->nth * chunks_per_thread);
    const int64_t chunk_rows = chunk_panels * PANEL_ROWS;
    const int64_t chunks = (panels + chunk_panels - 1) / chunk_panels;
    // The 32-weight formats' activation scales, for whole rows (every thread converts all).
    static thread_local std::vector<typename Format::Scales> row_scales;
    if constexpr (!Format::ROW_BY_ROW) {
        if (row_scales.size() < (size_t) (n * k)) {
            row_scales.resize(n * k);
        }
        for (int64_t j = 0; j < n; ++j) {
            for (int64_t l = 0; l < k; ++l) {
                row_scales[j * k + l] = Format::activation_scales(B[j * ldb + l]);
            }
        }
    }
    for (int64_t c = params->ith; c < chunks; c = shared ? ggml_threadpool_chunk_add(pool, 1) : c + params->nth) {
        const int64_t row_begin = c * chunk_rows;
        const int64_t row_end = std::min(m, row_begin + chunk_rows);
        if constexpr (Format::ROW_BY_ROW) {
            row_by_row_any<Format>((int) n, A, lda, k, B, ldb, C, ldc, row_begin, row_end);
        } else {
            // Whole rows in one pass: a panel's rows lie together, and the next panel is
            // prefetched as one stream.
            for (int64_t row0 = row_begin; row0 < row_end; row0 += PANEL_ROWS) {
                const int rows = (int) std::min<int64_t>(PANEL_ROWS, row_end - row0);
                if constexpr (Format::IN_ORDER) {
                    rows_in_order_any<Format>((int) n, A, lda, k, B, ldb, row_scales.data(), C, ldc, row0, rows);
                } else {
                    tile_any<Format, true, false>((int) n, A, lda, nullptr, 0, k, B, ldb, row_scales.data(), k, C, ldc, row0, rows, 0);
                }
            }
        }
    }
}

#if defined(CORRAL_WIDE_PANELS) && defined(__AMX_INT8__) && defined(__AMX_TILE__) && defined(__linux__)
#define CORRAL_AMX
// AMX tiles (the sapphirerapids variant) for K-quant batches. A K-quant's sub-blocks (of 32
// weights in Q4_K and Q5_K, 16 in Q6_K) each have their own scale per row, and isum (below) is
// the sum over sub-blocks of scale x (exact dot product). AMX multiplies bytes, and a weight
// times its scale is no byte, but a weight times a few bits of its scale is: with the scale
// split into digits (scale = sum of digit_i x base^i; Q4_K and Q5_K two 3-bit halves, weights
// below 32, unsigned; Q6_K four base-4 digits, the top one -2..1, times the weights less 32,
// signed, which takes the offset of Q6_K's isum into the parts),
//     isum = sum over i of base^i x (sum over k of (q_k x digit_ik) x a_k)
// So each unpacked panel's weights are multiplied by each digit of their scales once
// (Format::amx_scale: the parts), and one AMX accumulator per part sums a whole super-block of
// 16 columns x 16 rows, 64 weights an instruction, with no per-sub-block scaling in vector
// code. The unpacked panel already is AMX's weight tile layout (tile row i: 4 weights of each of
// 16 rows); a result tile holds a column per tile row with a lane per row, as Lanes16 does, and
// the float steps then are accumulate_tile's. The integers are exact either way, so the bits are
// those of every variant.
namespace amx {

constexpr int COLS = 16;  // columns (tokens) of one tile

struct alignas(64) TileConfig {
    uint8_t palette_id;
    uint8_t start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
};

// Whether Linux grants this process AMX state: only when asked (ggml asks too, when its AMX
// buffer type starts).
inline bool granted() {
    static const bool granted = syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XFEATURE_XTILEDATA */) == 0;
    return granted;
}

// corral's tile configuration for one product: all 8 tiles 16 rows of 64 bytes. The thread's
// previous one comes back at the end: ggml's AMX code loads its own once per thread and
// assumes it stays loaded.
class Tiles {
  public:
    Tiles() {
        _tile_storeconfig(&saved_);
        TileConfig config = {};
        config.palette_id = 1;
        for (int t = 0; t < 8; ++t) {
            config.rows[t] = 16;
            config.colsb[t] = 64;
        }
        _tile_loadconfig(&config);
    }
    ~Tiles() { _tile_loadconfig(&saved_); }
    Tiles(const Tiles &) = delete;
    Tiles & operator=(const Tiles &) = delete;

  private:
    TileConfig saved_;
};

// One super-block of 16 columns' activations as the tiles read them: each pair of sub-blocks'
// 64 bytes of the 16 columns together (16 cache lines, not 16 pieces of 292-byte blocks).
struct Activations {
    alignas(64) int8_t qs[4][COLS][64];  // [pair of sub-blocks][column]
};

// Columns col0..col0 + 16, super-blocks [l0, l0 + count) of B into out[0..count).
inline void pack_activations(const block_q8_K * B, int64_t ldb, int64_t col0, int64_t l0, int64_t count, Activations * out) {
    for (int64_t l = 0; l < count; ++l) {
        for (int j = 0; j < COLS; ++j) {
            const int8_t * qs = B[(col0 + j) * ldb + l0 + l].qs;
            for (int p = 0; p < 4; ++p) {
                _mm512_store_si512(out[l].qs[p][j], _mm512_loadu_si512(qs + 64 * p));
            }
        }
    }
}

// An unpacked panel's weights times each digit of their sub-block's scales (see above).
template <int PARTS>
struct ScaledQuants {
    __m512i part[PARTS][64];
};

// A digit of each lane's scale in both 16-bit halves of the lane: the 16-bit product of two
// weights (a byte each) by a digit leaves each weight's product in its own byte, as long as
// those are bytes.
inline __m512i in_both_halves(__m512i digits) {
    return _mm512_or_si512(digits, _mm512_slli_epi32(digits, 16));
}

inline __m512i times_digits(__m512i quants, __m512i digits_in_both_halves) {
    return _mm512_mullo_epi16(quants, digits_in_both_halves);
}

// Calls f with std::integral_constant<int, I> for each I (tile numbers must be constants).
template <typename F, int... I>
inline void for_each_constant(F && f, std::integer_sequence<int, I...>) {
    (f(std::integral_constant<int, I>{}), ...);
}

// One super-block's sums of GROUPS (1 or 2) groups of 16 columns, one per part:
// sums[group][part]. Tiles: 0-1 the weights' parts (alternately), 2 .. 2 + GROUPS each group's
// activations, then each group's sums.
template <int PARTS, int GROUPS, bool SIGNED>
inline void super_block_dots(const ScaledQuants<PARTS> & weights, const Activations * const (&activations)[GROUPS],
                             int32_t (&sums)[GROUPS][PARTS][COLS][Lanes16::ROWS]) {
    constexpr int FIRST_SUM = 8 - PARTS * GROUPS;
    static_assert(FIRST_SUM >= 2 + GROUPS, "8 tiles: weights, activations, sums");
    constexpr auto each_group = std::make_integer_sequence<int, GROUPS>{};
    constexpr auto each_part = std::make_integer_sequence<int, PARTS>{};
    for_each_constant([&](auto t) { _tile_zero(FIRST_SUM + decltype(t)::value); }, std::make_integer_sequence<int, PARTS * GROUPS>{});
    for (int p = 0; p < 4; ++p) {  // 64 weights (2 sub-blocks of 32, 4 of 16) a step
        for_each_constant([&](auto part) {
            constexpr int WEIGHTS = decltype(part)::value % 2;
            _tile_loadd(WEIGHTS, &weights.part[decltype(part)::value][16 * p], 64);
            for_each_constant([&](auto group) {
                constexpr int ACTIVATIONS = 2 + decltype(group)::value;
                if constexpr (decltype(part)::value == 0) {
                    _tile_loadd(ACTIVATIONS, activations[decltype(group)::value]->qs[p], 64);
                }
                constexpr int SUM = FIRST_SUM + PARTS * decltype(group)::value + decltype(part)::value;
                if constexpr (SIGNED) {
                    _tile_dpbssd(SUM, ACTIVATIONS, WEIGHTS);
                } else {
                    _tile_dpbsud(SUM, ACTIVATIONS, WEIGHTS);
                }
            }, each_group);
        }, each_part);
    }
    for_each_constant([&](auto group) {
        for_each_constant([&](auto part) {
            _tile_stored(FIRST_SUM + PARTS * decltype(group)::value + decltype(part)::value,
                         sums[decltype(group)::value][decltype(part)::value], 64);
        }, each_part);
    }, each_group);
}

// This thread's buffer of COUNT Items, kept for all of its panels and off its stack: a batch's
// packed activations (512 KB for the K-quants' batches of 256 columns and chunks of 8
// super-blocks) or a chunk's scaled weights (64 KB, Q6_K's 4 parts 128 KB).
template <typename Item, size_t COUNT>
inline Item * buffer() {
    static thread_local Item items[COUNT];
    return items;
}

}  // namespace amx

// GROUPS x 16 columns from col0 of the panel's rows over super-blocks [l0, l0 + count): the
// integers and float steps of tile<Format, 16, false, false> for each 16. Group g's activations
// are activations[g * a_stride + l], its scales scales[(16g + j) * s_stride + l].
// On a 2-core Sapphire Rapids (Qwen3 0.6B shape prompt) the tile products and the float steps
// each take about half of this kernel's time, and they add up: issuing the next super-block's
// products before this one's float steps (sums in two buffers, or stored after the float
// steps) overlapped nothing and ran 2-3% slower, and prefetching the next activations into L1
// did not help either. Each call reads and writes its 16 x 32 results in C (32 cache lines, each
// in a page of its own), which a batch of 256 columns of an 8,192-row product holds 8 MB of:
// chunks of 8 super-blocks (Format::CHUNK) rather than 2 made Llama 3.2 1B shape prompts (2
// threads) 489 -> 547 tokens/s; 16 super-blocks 544, 32 499 (the chunk's packed activations
// outgrow L2); batches of 128 columns instead of 256 did worse with each.
template <typename Format, int GROUPS>
void amx_tile(const typename Format::Panel * panel, const amx::ScaledQuants<Format::AMX_PARTS> * weights, int64_t l0,
              int64_t count, const amx::Activations * activations, int64_t a_stride, const typename Format::Scales * scales,
              int64_t s_stride, float * C, int64_t ldc, int64_t row0, int rows, int64_t col0) {
    using L = Lanes16;
    constexpr int PARTS = Format::AMX_PARTS;
    constexpr int COLS = GROUPS * amx::COLS;
    alignas(64) int32_t sums[GROUPS][PARTS][amx::COLS][L::ROWS];
    L::Float acc[COLS];
    for (int j = 0; j < COLS; ++j) {
        acc[j] = l0 == 0 ? L::zero_floats() : L::load(C + (col0 + j) * ldc + row0, rows);
    }
    for (int64_t l = 0; l < count; ++l) {
        const amx::Activations * group_activations[GROUPS];
        for (int g = 0; g < GROUPS; ++g) {
            group_activations[g] = &activations[g * a_stride + l];
        }
        amx::super_block_dots<PARTS, GROUPS, Format::AMX_SIGNED>(weights[l], group_activations, sums);
        for (int g = 0; g < GROUPS; ++g) {
            const typename Format::Scales * column_scales = &scales[g * amx::COLS * s_stride + l];
            L::Float * column_acc = &acc[g * amx::COLS];
#pragma GCC unroll 16
            for (int j = 0; j < amx::COLS; ++j) {
                L::Int parts[PARTS];
                for (int part = 0; part < PARTS; ++part) {
                    parts[part] = _mm512_load_si512(sums[g][part][j]);
                }
                column_acc[j] = Format::amx_add_super_block(panel[l], parts, column_scales[j * s_stride], column_acc[j]);
            }
        }
    }
    for (int j = 0; j < COLS; ++j) {
        L::store(C + (col0 + j) * ldc + row0, rows, acc[j]);
    }
}
#endif

#ifdef CORRAL_WIDE_PANELS
template <typename Lanes>
struct KPanel;
struct KActivationScales;
template <typename Format, bool UNPACK>
void paired_tile_any(int cols, const typename Format::Weights * A, int64_t lda, KPanel<Lanes16> * first, KPanel<Lanes16> * second,
                     int64_t l0, int64_t count, const block_q8_K * B, int64_t ldb, const KActivationScales * scales, int64_t s_stride,
                     float * C, int64_t ldc, int64_t row0, int second_rows, int64_t col0);
#endif

// Batches (more than TILE_COLS columns): this thread's share of the panels; every thread sees
// every column. The rows go in chunks of CHUNK blocks, so that a chunk's panel stays close (L1,
// or L2 for 16-row K-quant panels) for all the batch's tiles; each (row, column) still sums its
// blocks in order.
template <typename Format>
void gemm(const ggml_compute_params * params, int64_t m, int64_t n, int64_t k, const void * weights, int64_t lda,
          const void * activations, int64_t ldb, float * C, int64_t ldc) {
    const auto * A = (const typename Format::Weights *) weights;
    const auto * B = (const typename Format::Activations *) activations;
    constexpr int64_t CHUNK = Format::CHUNK;
    constexpr int TILE_COLS = Format::TILE_COLS;
    if (n <= TILE_COLS) {
        decode<typename Format::Decoding>(params, m, n, k, A, lda, B, ldb, C, ldc);
        return;
    }
    constexpr int ROWS = Format::Lanes::ROWS;
    const int64_t panels = (m + ROWS - 1) / ROWS;
    const int64_t per_thread = (panels + params->nth - 1) / params->nth;
    const int64_t first = per_thread * params->ith;
    const int64_t last = first + per_thread < panels ? first + per_thread : panels;
    if (first >= last) {
        return;
    }
    constexpr int64_t BATCH_COLS = Format::BATCH_COLS;
#ifdef CORRAL_AMX
    amx::Activations * amx_activations = nullptr;
    std::optional<amx::Tiles> amx_tiles;
    if constexpr (Format::AMX_TILES) {
        amx_activations = amx::buffer<amx::Activations, BATCH_COLS / amx::COLS * CHUNK>();
        if (n >= amx::COLS && amx::granted()) {  // narrower batches take no tiles
            amx_tiles.emplace();
        }
    }
    const bool amx_ready = amx_tiles.has_value();
    amx::ScaledQuants<Format::AMX_PARTS> * scaled = amx::buffer<amx::ScaledQuants<Format::AMX_PARTS>, Format::AMX_TILES ? CHUNK : 1>();
#endif
    typename Format::Panel panel[CHUNK];
    typename Format::Scales scales[BATCH_COLS * CHUNK];
    for (int64_t batch0 = 0; batch0 < n; batch0 += BATCH_COLS) {
        const int64_t batch_cols = n - batch0 < BATCH_COLS ? n - batch0 : BATCH_COLS;
        for (int64_t l0 = 0; l0 < k; l0 += CHUNK) {
            const int64_t count = k - l0 < CHUNK ? k - l0 : CHUNK;
            for (int64_t j = 0; j < batch_cols; ++j) {
                for (int64_t l = 0; l < count; ++l) {
                    scales[j * CHUNK + l] = Format::activation_scales(B[(batch0 + j) * ldb + l0 + l]);
                }
            }
#ifdef CORRAL_AMX
            if constexpr (Format::AMX_TILES) {
                for (int64_t j = 0; amx_ready && j + amx::COLS <= batch_cols; j += amx::COLS) {
                    amx::pack_activations(B, ldb, batch0 + j, l0, count, &amx_activations[j / amx::COLS * CHUNK]);
                }
            }
#endif
            for (int64_t p = first; p < last; ++p) {
                const int64_t row0 = p * ROWS;
                const int rows = m - row0 < ROWS ? (int) (m - row0) : ROWS;
#ifdef CORRAL_AMX
                if constexpr (Format::AMX_TILES) {
                    if (amx_ready && batch_cols >= amx::COLS) {
                        for (int64_t l = 0; l < count; ++l) {
                            prefetch_next_panels<typename Format::Lanes>(A, lda, row0, l0, l, count);
                            Format::unpack(A, lda, row0, rows, l0 + l, panel[l]);
                            Format::amx_scale(panel[l], scaled[l]);
                        }
                        int64_t j = 0;
                        if constexpr (Format::AMX_PARTS <= 2) {  // 2 groups of tokens fit the 8 tiles
                            for (; j + 2 * amx::COLS <= batch_cols; j += 2 * amx::COLS) {
                                amx_tile<Format, 2>(panel, scaled, l0, count, &amx_activations[j / amx::COLS * CHUNK], CHUNK,
                                                    &scales[j * CHUNK], CHUNK, C, ldc, row0, rows, batch0 + j);
                            }
                        }
                        for (; j + amx::COLS <= batch_cols; j += amx::COLS) {
                            amx_tile<Format, 1>(panel, scaled, l0, count, &amx_activations[j / amx::COLS * CHUNK], CHUNK, &scales[j * CHUNK],
                                                CHUNK, C, ldc, row0, rows, batch0 + j);
                        }
                        for (; j < batch_cols; j += TILE_COLS) {
                            const int cols = batch_cols - j < TILE_COLS ? (int) (batch_cols - j) : TILE_COLS;
                            tile_any<Format, false, false>(cols, A, lda, panel, l0, count, B, ldb, &scales[j * CHUNK], CHUNK, C, ldc,
                                                           row0, rows, batch0 + j);
                        }
                        continue;
                    }
                }
#endif
#ifdef CORRAL_WIDE_PANELS
                if constexpr (Format::PANEL_PAIRS) {
                    if (p + 1 < last) {
                        // Two panels at a time (see paired_scaled_sums); the first tile unpacks them.
                        static thread_local typename Format::Panel second[CHUNK];  // off the stack: 46 KB
                        const int second_rows = m - row0 - ROWS < ROWS ? (int) (m - row0 - ROWS) : ROWS;
                        for (int64_t j = 0; j < batch_cols; j += TILE_COLS) {
                            const int cols = batch_cols - j < TILE_COLS ? (int) (batch_cols - j) : TILE_COLS;
                            if (j == 0) {
                                paired_tile_any<Format, true>(cols, A, lda, panel, second, l0, count, B, ldb, scales, CHUNK, C, ldc, row0,
                                                              second_rows, batch0);
                            } else {
                                paired_tile_any<Format, false>(cols, A, lda, panel, second, l0, count, B, ldb, &scales[j * CHUNK], CHUNK, C,
                                                               ldc, row0, second_rows, batch0 + j);
                            }
                        }
                        ++p;
                        continue;
                    }
                }
#endif
                // The first tile unpacks the weights (and keeps them when more tiles follow).
                const int first_cols = batch_cols < TILE_COLS ? (int) batch_cols : TILE_COLS;
                if (batch_cols > TILE_COLS) {
                    tile_any<Format, true, true>(first_cols, A, lda, panel, l0, count, B, ldb, scales, CHUNK, C, ldc, row0, rows, batch0);
                } else {
                    tile_any<Format, true, false>(first_cols, A, lda, panel, l0, count, B, ldb, scales, CHUNK, C, ldc, row0, rows, batch0);
                }
                for (int64_t j = first_cols; j < batch_cols; j += TILE_COLS) {
                    const int cols = batch_cols - j < TILE_COLS ? (int) (batch_cols - j) : TILE_COLS;
                    tile_any<Format, false, false>(cols, A, lda, panel, l0, count, B, ldb, &scales[j * CHUNK], CHUNK, C, ldc,
                                                   row0, rows, batch0 + j);
                }
            }
        }
    }
}

// K-quants: 256-weight super-blocks against Q8_K activations (f32 scale, 256 bytes, int16 sums
// of each 16), in the same panel design: a super-block of 8 rows is unpacked once (its
// weights transposed so that a lane holds a row, its sub-block scales and mins widened per
// lane) and serves every column of the batch.
//
// Arithmetic, per (row, column) and super-block, in super-block order (the same in every
// variant and for every batch size and tile, like the formats above):
//   Q4_K, Q5_K (weight = d x scale_s x q - dmin x min_s, sub-blocks s of 32):
//     isum = sum over s of scale_s x (exact dot product of sub-block s)
//     msum = sum over s of min_s x (sum of the activations of sub-block s)
//     acc  = fma(float(isum), d x activation_d, acc)
//     acc  = fma(-float(msum), dmin x activation_d, acc)
//   Q6_K (weight = d x scale_s x (q - 32), sub-blocks s of 16):
//     isum = sum over s of scale_s x (exact dot product of sub-block s)
//            - 32 x sum over s of scale_s x (sum of the activations of sub-block s)
//     acc  = fma(float(isum), d x activation_d, acc)
// Every integer is exact in 32 bits (at most 63 x 63 x 127 x 256 for Q4_K/Q5_K, 128 x 63 x
// 127 x 256 + 32 x 128 x 127 x 256 for Q6_K), so how a variant groups the integer steps (32-bit
// multiplies, or int16 multiply-adds where partial sums fit 16 bits) never changes a result.

// One super-block of 8 (Lanes8) or 16 (Lanes16) rows.
template <typename Lanes>
struct KPanel {
    using Int = typename Lanes::Int;
    Int quants[64];      // [8c + g]: weights 32c + 4g .. 32c + 4g + 3, unsigned; lane = row
    // Q4_K, Q5_K: [c] the scale of sub-block c in both int16 halves, [8 + c] split (split_scale,
    // for Q5_K); Q6_K: [s] the scale of sub-block s of 16, split.
    Int scales[16];
    Int scale_pairs[8];  // int16 pairs (2k, 2k + 1): Q4_K, Q5_K the mins (k < 4); Q6_K the scales
    typename Lanes::Float d;
    typename Lanes::Float dmin;  // Q4_K, Q5_K
};

// 8 rows of a K-quant panel, where unpacking writes them: all of a KPanel<Lanes8>, or lanes
// 8h..8h + 7 of a KPanel<Lanes16> (its two halves unpacked by the code every variant runs).
class PanelRows {
  public:
    template <typename Lanes>
    PanelRows(KPanel<Lanes> & panel, int half) : first_((char *) &panel + sizeof(__m256i) * half), stride_(sizeof(typename Lanes::Int)) {
        static_assert(sizeof(KPanel<Lanes>) == 90 * sizeof(typename Lanes::Int), "a KPanel is 90 vectors: quants, scales, scale_pairs, d, dmin");
    }
    __m256i & quants(int i) { return vector<__m256i>(i); }
    __m256i & scales(int i) { return vector<__m256i>(64 + i); }
    __m256i & scale_pairs(int i) { return vector<__m256i>(80 + i); }
    __m256 & d() { return vector<__m256>(88); }
    __m256 & dmin() { return vector<__m256>(89); }

  private:
    template <typename V>
    V & vector(int i) { return *(V *) (first_ + stride_ * i); }  // vector types may alias
    char * first_;
    size_t stride_;
};

template <typename Lanes, typename UnpackRows>
inline void unpack_panel(int64_t row0, int rows, KPanel<Lanes> & out, UnpackRows unpack_rows) {
    for (int half = 0; half < Lanes::ROWS / PANEL_ROWS; ++half) {
        unpack_rows(row0 + PANEL_ROWS * half, std::clamp(rows - PANEL_ROWS * half, 0, PANEL_ROWS), PanelRows(out, half));
    }
}

// What the dot products need of one Q8_K block.
struct KActivationScales {
    float d;
    // int16 pairs: Q4_K, Q5_K the sums of sub-blocks (2k, 2k + 1) of 32 (k < 4); Q6_K the
    // sums of sub-blocks (2k, 2k + 1) of 16.
    int32_t sum_pairs[8];
};

inline int32_t int16_pair(int32_t low, int32_t high) {
    return (int32_t) (((uint32_t) (uint16_t) low) | ((uint32_t) (uint16_t) high << 16));
}

// Per lane: the 8 int32 values[0..8) of rows 0..7.
inline __m256i lanes_of(const int32_t (&values)[PANEL_ROWS]) {
    return _mm256_loadu_si256((const __m256i *) values);
}

// Q6_K, per lane (row): isum + scale x the exact integer dot product of 16 unsigned 6-bit
// weights (4 groups) with 16 signed activations. scale_split: split_scale(scale), whose low int16
// is the scale.
inline __m256i add_scaled_half_block_dot(__m256i isum, const __m256i * quants, const int8_t * activations, __m256i scale_split) {
#ifdef CORRAL_DPBUSD
    __m256i sum = _mm256_setzero_si256();
    for (int g = 0; g < 4; ++g) {
        sum = CORRAL_DPBUSD(sum, quants[g], broadcast_word(activations + 4 * g));
    }
    return add_scaled(isum, sum, scale_split);  // |sum| <= 16 x 63 x 128
#else
    // Two pair sums (each at most 2 x 63 x 128) fit 16 bits: each two scaled and widened by one
    // int16 multiply-add (no 32-bit multiply).
    __m256i pairs[4];
    for (int g = 0; g < 4; ++g) {
        pairs[g] = _mm256_maddubs_epi16(quants[g], broadcast_word(activations + 4 * g));
    }
    const __m256i scale_pair = Lanes8::low_word_twice(scale_split);
    isum = _mm256_add_epi32(isum, _mm256_madd_epi16(_mm256_add_epi16(pairs[0], pairs[1]), scale_pair));
    return _mm256_add_epi32(isum, _mm256_madd_epi16(_mm256_add_epi16(pairs[2], pairs[3]), scale_pair));
#endif
}

// Q4_K (NIBBLES) and Q5_K, per lane (row): isum + scale x the exact dot product of 32 weights
// (below 16 and 32) with 32 signed activations, by int16 multiply-adds rather than a 32-bit
// multiply (two passes through the port that the dot products use, on Intel):
// - Q4_K: each half of the dot (16 weights: at most 16 x 15 x 128 = 30,720) fits 16 bits, so
//   the two halves side by side take one multiply-add with the scale in both int16 halves;
// - Q5_K: add_scaled;
// - without VNNI: the 16-bit pair sums of each half (Q4_K: of both halves together), times the
//   scale in both int16 halves.
// scale_twice: the scale (0..63) in both int16 halves of each lane; scale_split: split_scale of
// it (Q5_K with VNNI), as unpacked (KPanel).
template <bool NIBBLES>
inline __m256i add_scaled_block_dot(__m256i isum, const __m256i * quants, const int8_t * activations, __m256i scale_twice,
                                    [[maybe_unused]] __m256i scale_split) {
    __m256i low, high;
#ifdef CORRAL_DPBUSD
    if constexpr (!NIBBLES) {
        return add_scaled(isum, block_dot(quants, activations), scale_split);  // |dot| <= 32 x 31 x 128
    }
    half_dots(quants, activations, _mm256_setzero_si256(), low, high);
    const __m256i halves = _mm256_blend_epi16(low, _mm256_slli_epi32(high, 16), 0xAA);  // [low, high] per lane
    return CORRAL_DPWSSD(isum, halves, scale_twice);
#else
    half_pair_sums(quants, activations, low, high);  // each 4 pair sums of at most 2 x 31 x 128
    if constexpr (NIBBLES) {
        return _mm256_add_epi32(isum, _mm256_madd_epi16(_mm256_add_epi16(low, high), scale_twice));  // 8 x 2 x 15 x 128 at most
    }
    return _mm256_add_epi32(_mm256_add_epi32(isum, _mm256_madd_epi16(low, scale_twice)), _mm256_madd_epi16(high, scale_twice));
#endif
}

#ifdef CORRAL_WIDE_PANELS
// Per lane: isum + (low + high) x scale, for low and high that fit int16 (Q4_K's halves) and
// scale_twice the scale in both int16 halves. [low, high] per lane: high's low bytes shuffled
// into low's top ones by one masked byte shuffle, written in assembly because the compiler
// turns the intrinsic into a shift and a blend (the shift on the dot products' port on Intel)
// or a slower word permute.
inline __m512i add_scaled_halves(__m512i isum, __m512i low, __m512i high, __m512i scale_twice) {
    const __m512i high_low_word = _mm512_broadcast_i32x4(_mm_setr_epi8(0, 0, 0, 1, 0, 0, 4, 5, 0, 0, 8, 9, 0, 0, 12, 13));
    const __mmask64 top_bytes = 0xCCCCCCCCCCCCCCCCull;
    __m512i halves = low;
    asm("vpshufb %[control], %[high], %[halves] %{%[top]%}" : [halves] "+v"(halves) : [high] "v"(high), [control] "v"(high_low_word), [top] "Yk"(top_bytes));
    return _mm512_dpwssd_epi32(isum, halves, scale_twice);
}

template <bool NIBBLES>
inline __m512i add_scaled_block_dot(__m512i isum, const __m512i * quants, const int8_t * activations, __m512i scale_twice,
                                    __m512i scale_split) {
    if constexpr (!NIBBLES) {
        return add_scaled(isum, block_dot(quants, activations), scale_split);  // |dot| <= 32 x 31 x 128
    }
    __m512i low, high;
    half_dots(quants, activations, _mm512_setzero_si512(), low, high);
    return add_scaled_halves(isum, low, high, scale_twice);
}
#endif

// What the K-quant formats share.
template <typename L>
struct SuperBlockFormat {
    static constexpr bool ROW_BY_ROW = true;
    static constexpr bool PANEL_IN_REGISTERS = false;
#ifdef CORRAL_WIDE_PANELS
    static constexpr bool PANEL_PAIRS = std::is_same_v<L, Lanes16>;  // see paired_tile
#else
    static constexpr bool PANEL_PAIRS = false;
#endif
    static constexpr bool AMX_TILES = false;  // see amx_tile
    static constexpr int AMX_PARTS = 1;
    using Lanes = L;
    using Activations = block_q8_K;
    using Panel = KPanel<L>;
    using Scales = KActivationScales;
    // Each chunk's pass reads and writes its tiles' results in C, one cache line (and often one
    // page) per column: chunks of 8 super-blocks (panels of 23 KB with 8 rows, 46 KB with 16;
    // AMX: see amx_tile) rather than 2 made prompts of the Llama 3.2 1B shape (zen4 variant, 2
    // threads) 14% faster, Qwen3 0.6B 5%; 4 gained most of it, 16 nothing more.
    static constexpr int64_t CHUNK = 8;
    static constexpr int TILE_COLS = 4;
    // A wider batch shares each (costly) unpacking: 128 columns rather than 64 made Llama 3.2 1B
    // shape prompts 5-7% faster (zen4 variant), 256 no more (AMX tiles: 256, see gemm).
    static constexpr int64_t BATCH_COLS = 128;
};


// isum[j] = the sum over the super-block's 8 chunks of 32 weights of the chunk's scaled exact
// dot product (Format::add_chunk) for every column j of the tile: chunk by chunk, so that
// the chunk's 8 weight groups stay in registers for every column (a whole super-block would
// not fit).
template <typename Format, int COLS>
inline void scaled_sums(const typename Format::Panel & block, const block_q8_K * b, int64_t ldb,
                        typename Format::Lanes::Int (&isum)[COLS]) {
    using Lanes = typename Format::Lanes;
    for (int j = 0; j < COLS; ++j) {
        isum[j] = Lanes::zero();
    }
    for (int c = 0; c < 8; ++c) {
        typename Lanes::Int quants[8];
        for (int g = 0; g < 8; ++g) {
            quants[g] = block.quants[8 * c + g];
        }
        for (int j = 0; j < COLS; ++j) {
            isum[j] = Format::add_chunk(isum[j], quants, b[j * ldb].qs + 32 * c, block, c);
        }
    }
}

#ifdef CORRAL_WIDE_PANELS
// Two 16-row panels (32 rows) against COLS columns: isum[p][j] is scaled_sums' isum[j] for
// panel p, the same integers. A 16-row tile broadcasts one activation word from memory for each
// dot product (16 rows x 4 weights): those loads, more than the weights' (each shared by the
// tile's columns), held the dot products at about two thirds of their peak on Sapphire Rapids.
// Here each word, broadcast once, serves both panels. The chunk's halves (weights 0-15 and
// 16-31 of each chunk of 32: two chains of 4 dot products) go to Format::add_halves. 32
// registers hold the 16 half sums of 4 columns, 8 isums and 4 weight vectors at a time.
template <typename Format, int COLS>
inline void paired_scaled_sums(const KPanel<Lanes16> & first, const KPanel<Lanes16> & second, const block_q8_K * b, int64_t ldb,
                               __m512i (&isum)[2][COLS]) {
    const KPanel<Lanes16> * panels[2] = {&first, &second};
    for (int p = 0; p < 2; ++p) {
        for (int j = 0; j < COLS; ++j) {
            isum[p][j] = _mm512_setzero_si512();
        }
    }
    for (int c = 0; c < 8; ++c) {
        __m512i low[2][COLS], high[2][COLS];
        for (int p = 0; p < 2; ++p) {
            for (int j = 0; j < COLS; ++j) {
                low[p][j] = _mm512_setzero_si512();
                high[p][j] = _mm512_setzero_si512();
            }
        }
        for (int g = 0; g < 4; ++g) {
            for (int j = 0; j < COLS; ++j) {
                const int8_t * a = b[j * ldb].qs + 32 * c + 4 * g;
                const __m512i low_word = _mm512_set1_epi32(load_word(a)), high_word = _mm512_set1_epi32(load_word(a + 16));
                for (int p = 0; p < 2; ++p) {
                    low[p][j] = _mm512_dpbusd_epi32(low[p][j], panels[p]->quants[8 * c + g], low_word);
                    high[p][j] = _mm512_dpbusd_epi32(high[p][j], panels[p]->quants[8 * c + g + 4], high_word);
                }
            }
        }
        for (int p = 0; p < 2; ++p) {
            for (int j = 0; j < COLS; ++j) {
                isum[p][j] = Format::add_halves(isum[p][j], low[p][j], high[p][j], *panels[p], c);
            }
        }
    }
}

// tile<Format, COLS, UNPACK, ...> for two panels at once: rows row0 .. row0 + 16 in `first`, the
// next second_rows in `second` (see paired_scaled_sums). UNPACK: this tile unpacks both panels'
// super-blocks (and keeps them for the next tiles), each just before its dot products, while it
// is in L1. Each (row, column) gets the same integers and float steps, in the same order, as
// in a tile of its own panel.
template <typename Format, int COLS, bool UNPACK>
void paired_tile(const typename Format::Weights * A, int64_t lda, KPanel<Lanes16> * first, KPanel<Lanes16> * second, int64_t l0,
                 int64_t count, const block_q8_K * B, int64_t ldb, const KActivationScales * scales, int64_t s_stride, float * C,
                 int64_t ldc, int64_t row0, int second_rows, int64_t col0) {
    const KPanel<Lanes16> * panels[2] = {first, second};
    const int rows[2] = {Lanes16::ROWS, second_rows};
    __m512 acc[2][COLS];
    for (int p = 0; p < 2; ++p) {
        for (int j = 0; j < COLS; ++j) {
            acc[p][j] = l0 == 0 ? Lanes16::zero_floats() : Lanes16::load(C + (col0 + j) * ldc + row0 + Lanes16::ROWS * p, rows[p]);
        }
    }
    for (int64_t l = 0; l < count; ++l) {
        if constexpr (UNPACK) {
            // The next pair's share of its two panels. (Its first panel alone ran prompts 1-3%
            // faster but 8 streams of the Qwen3 0.6B shape 17% slower: with few columns per
            // batch, unpacking waits on memory.)
            prefetch_next_panels<Lanes16>(A, lda, row0 + Lanes16::ROWS, l0, l, count);
            prefetch_next_panels<Lanes16>(A, lda, row0 + 2 * Lanes16::ROWS, l0, l, count);
            Format::unpack(A, lda, row0, Lanes16::ROWS, l0 + l, first[l]);
            Format::unpack(A, lda, row0 + Lanes16::ROWS, second_rows, l0 + l, second[l]);
        }
        __m512i isum[2][COLS];
        paired_scaled_sums<Format, COLS>(first[l], second[l], &B[col0 * ldb + l0 + l], ldb, isum);
        for (int p = 0; p < 2; ++p) {
            for (int j = 0; j < COLS; ++j) {
                acc[p][j] = Format::add_super_block(panels[p][l], isum[p][j], scales[l + j * s_stride], acc[p][j]);
            }
        }
    }
    for (int p = 0; p < 2; ++p) {
        for (int j = 0; j < COLS; ++j) {
            Lanes16::store(C + (col0 + j) * ldc + row0 + Lanes16::ROWS * p, rows[p], acc[p][j]);
        }
    }
}

template <typename Format, bool UNPACK>
void paired_tile_any(int cols, const typename Format::Weights * A, int64_t lda, KPanel<Lanes16> * first, KPanel<Lanes16> * second,
                     int64_t l0, int64_t count, const block_q8_K * B, int64_t ldb, const KActivationScales * scales, int64_t s_stride,
                     float * C, int64_t ldc, int64_t row0, int second_rows, int64_t col0) {
    switch (cols) {
        case 4: paired_tile<Format, 4, UNPACK>(A, lda, first, second, l0, count, B, ldb, scales, s_stride, C, ldc, row0, second_rows, col0); break;
        case 3: paired_tile<Format, 3, UNPACK>(A, lda, first, second, l0, count, B, ldb, scales, s_stride, C, ldc, row0, second_rows, col0); break;
        case 2: paired_tile<Format, 2, UNPACK>(A, lda, first, second, l0, count, B, ldb, scales, s_stride, C, ldc, row0, second_rows, col0); break;
        case 1: paired_tile<Format, 1, UNPACK>(A, lda, first, second, l0, count, B, ldb, scales, s_stride, C, ldc, row0, second_rows, col0); break;
        default: break;
    }
}
#endif

// A super-block's 8 dot products of 32 weights (quants[c]) with the activations, the halves of
// each scaled by scales_low (chunks 0-3) and scales_high (4-7) in half_sums' order; per lane.
inline __m256i scaled_dots(const __m256i (&quants)[8], const int8_t * activations, __m256i scales_low, __m256i scales_high) {
    __m256i dots[8];
    for (int c = 0; c < 8; ++c) {
        dots[c] = dot32(quants[c], activations + 32 * c);
    }
    return _mm256_add_epi32(_mm256_mullo_epi32(half_sums(dots), scales_low), _mm256_mullo_epi32(half_sums(dots + 4), scales_high));
}

// [sum of a's lanes, sum of b's lanes, (the same again)].
inline __m128i two_sums(__m256i a, __m256i b) {
    const __m256i pairs = _mm256_hadd_epi32(a, b);
    const __m128i quads = _mm_add_epi32(_mm256_castsi256_si128(pairs), _mm256_extracti128_si256(pairs, 1));
    return _mm_hadd_epi32(quads, quads);
}

// ggml's get_scale_min_k4 for all 8 sub-blocks at once: bytes 0-7 the 6-bit scales, 8-15 the
// mins. Reads 16 bytes (the 12 packed ones and 4 of the weights after them).
inline __m128i k4_scales_and_mins(const uint8_t * packed) {
    const __m128i p = _mm_loadu_si128((const __m128i *) packed);      // 32-bit words p0, p1, p2
    const __m128i words = _mm_shuffle_epi32(p, _MM_SHUFFLE(2, 1, 2, 0));  // p0, p2, p1, p2
    const __m128i tops = _mm_shuffle_epi32(p, _MM_SHUFFLE(1, 1, 0, 0));   // p0, p0, p1, p1
    // Scales 0-3 and mins 0-3: the low 6 bits of p0, p1. Scales 4-7: low nibbles of p2 with bits 6-7
    // of p0 on top; mins 4-7: high nibbles of p2 with bits 6-7 of p1.
    const __m128i low = _mm_and_si128(_mm_srlv_epi32(words, _mm_setr_epi32(0, 0, 0, 4)),
                                      _mm_setr_epi32(0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f));
    const __m128i high = _mm_and_si128(_mm_srli_epi32(tops, 2), _mm_setr_epi32(0, 0x30303030, 0, 0x30303030));
    return _mm_or_si128(low, high);
}

// Bit S of each byte moved to bit 4 (16-bit shifts: what crosses into the other byte is masked).
template <int S>
inline __m256i fifth_bits(__m256i high) {
    const __m256i bit4 = _mm256_set1_epi8(0x10);
    if constexpr (S < 4) {
        return _mm256_and_si256(_mm256_slli_epi16(high, 4 - S), bit4);
    } else if constexpr (S == 4) {
        return _mm256_and_si256(high, bit4);
    } else {
        return _mm256_and_si256(_mm256_srli_epi16(high, S - 4), bit4);
    }
}

// Q4_K, Q5_K: 8 sub-blocks of 32, 6-bit scales and mins packed in 12 bytes (ggml's
// get_scale_min_k4), and 4-bit weights: byte b of qs[32j, 32j + 32) holds weight b of
// sub-block 2j (low nibble) and of 2j + 1 (high); FIFTH_BITS (Q5_K): bit c of byte b of qh is
// bit 4 of weight b of sub-block c.
template <typename Block, bool FIFTH_BITS, typename L = WideLanes>
struct KNibbleFormat : SuperBlockFormat<L> {
    using Weights = Block;
    using Lanes = L;
    using Decoding = KNibbleFormat;  // row_by_row: no panels
    using Panel = KPanel<L>;
#ifdef CORRAL_AMX
    // AMX parts: the weights (below 32) times the low and the high 3 bits of their scale.
    static constexpr bool AMX_TILES = std::is_same_v<L, Lanes16>;
    static constexpr int AMX_PARTS = 2;
    static constexpr int64_t BATCH_COLS = AMX_TILES ? 256 : SuperBlockFormat<L>::BATCH_COLS;
    static void amx_scale(const Panel & block, amx::ScaledQuants<AMX_PARTS> & out) {
        for (int c = 0; c < 8; ++c) {  // sub-block c: vectors 8c .. 8c + 7
            // (The scales are unpacked in both int16 halves: the digits are masked.)
            const __m512i low = amx::in_both_halves(_mm512_and_si512(block.scales[c], _mm512_set1_epi32(7)));
            const __m512i high = amx::in_both_halves(_mm512_and_si512(_mm512_srli_epi32(block.scales[c], 3), _mm512_set1_epi32(7)));
            for (int i = 8 * c; i < 8 * c + 8; ++i) {
                out.part[0][i] = amx::times_digits(block.quants[i], low);
                out.part[1][i] = amx::times_digits(block.quants[i], high);
            }
        }
    }
    static constexpr bool AMX_SIGNED = false;  // unsigned parts: tdpbsud
    static typename L::Float amx_add_super_block(const Panel & block, const __m512i (&parts)[AMX_PARTS], const KActivationScales & s,
                                                 typename L::Float acc) {
        return add_super_block(block, _mm512_add_epi32(parts[0], _mm512_slli_epi32(parts[1], 3)), s, acc);
    }
#endif
    using Activations = block_q8_K;
    using Scales = KActivationScales;
    static void unpack(const Weights * A, int64_t lda, int64_t row0, int rows, int64_t l, Panel & out) {
        unpack_panel(row0, rows, out, [&](int64_t first, int count, PanelRows panel) { unpack_rows(A, lda, first, count, l, panel); });
    }
    static void unpack_rows(const Weights * A, int64_t lda, int64_t row0, int rows, int64_t l, PanelRows out) {
        const Weights * row[PANEL_ROWS];
        block_rows(A, lda, row0, rows, l, row);
        const __m256i low_nibbles = _mm256_set1_epi8(0x0F);
        for (int j = 0; j < 4; ++j) {
            __m256i words[8];
            transpose_words(row, offsetof(Weights, qs) + 32 * j, words);
            for (int g = 0; g < 8; ++g) {
                out.quants(8 * (2 * j) + g) = _mm256_and_si256(words[g], low_nibbles);
                out.quants(8 * (2 * j + 1) + g) = _mm256_and_si256(_mm256_srli_epi16(words[g], 4), low_nibbles);
            }
        }
        if constexpr (FIFTH_BITS) {
            __m256i high[8];
            transpose_words(row, offsetof(Weights, qh), high);
            const __m256i fifth_bit = _mm256_set1_epi8(0x10);
            for (int c = 0; c < 8; ++c) {
                const __m256i bit = _mm256_set1_epi8((char) (1 << c));
                for (int g = 0; g < 8; ++g) {
                    const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(high[g], bit), bit);
                    out.quants(8 * c + g) = _mm256_or_si256(out.quants(8 * c + g), _mm256_and_si256(set, fifth_bit));
                }
            }
        }
        // Each row's scales and mins decoded at once (k4_scales_and_mins), widened, then
        // transposed so that a lane holds a row: decoding them one by one in scalar code was
        // most of this unpacking.
        alignas(32) int32_t scales[PANEL_ROWS][8];     // row r: the scales of sub-blocks 0-7
        alignas(32) int32_t min_pairs[PANEL_ROWS][8];  // row r: int16 pairs of mins (2k, 2k + 1), k < 4
        const int32_t * scale_rows[PANEL_ROWS], * min_rows[PANEL_ROWS];
        for (int r = 0; r < PANEL_ROWS; ++r) {
            const __m128i scales_and_mins = k4_scales_and_mins(row[r]->scales);
            _mm256_store_si256((__m256i *) scales[r], _mm256_cvtepu8_epi32(scales_and_mins));
            _mm256_store_si256((__m256i *) min_pairs[r], _mm256_zextsi128_si256(_mm_cvtepu8_epi16(_mm_srli_si128(scales_and_mins, 8))));
            scale_rows[r] = scales[r];
            min_rows[r] = min_pairs[r];
        }
        __m256i by_row[8];
        transpose_words(scale_rows, 0, by_row);
        for (int s = 0; s < 8; ++s) {
            // In both int16 halves: the int16 multiply-adds take it so (add_scaled_block_dot).
            out.scales(s) = _mm256_or_si256(by_row[s], _mm256_slli_epi32(by_row[s], 16));
            out.scales(8 + s) = _mm256_or_si256(by_row[s], _mm256_slli_epi32(by_row[s], 24));  // split_scale (0..63): Q5_K
        }
        transpose_words(min_rows, 0, by_row);
        for (int k = 0; k < 4; ++k) {
            out.scale_pairs(k) = by_row[k];
        }
        out.d() = halves_of(row, offsetof(Weights, GGML_COMMON_AGGR_U.GGML_COMMON_AGGR_S.d));
        out.dmin() = halves_of(row, offsetof(Weights, GGML_COMMON_AGGR_U.GGML_COMMON_AGGR_S.dmin));
    }
    static Scales activation_scales(const Activations & block) {
        Scales s = {block.d, {}};
        for (int k = 0; k < 4; ++k) {
            s.sum_pairs[k] = int16_pair(block.bsums[4 * k] + block.bsums[4 * k + 1], block.bsums[4 * k + 2] + block.bsums[4 * k + 3]);
        }
        return s;
    }
    // isum + the chunk's dot product times its scale.
    static typename L::Int add_chunk(typename L::Int isum, const typename L::Int * quants, const int8_t * a, const Panel & block, int c) {
        return add_scaled_block_dot<!FIFTH_BITS>(isum, quants, a, block.scales[c], block.scales[8 + c]);
    }
#ifdef CORRAL_WIDE_PANELS
    // add_chunk from the chunk's two half dot products (paired_scaled_sums).
    static __m512i add_halves(__m512i isum, __m512i low, __m512i high, const KPanel<Lanes16> & block, int c) {
        if constexpr (FIFTH_BITS) {
            return add_scaled(isum, _mm512_add_epi32(low, high), block.scales[8 + c]);  // |dot| <= 32 x 31 x 128
        } else {
            return add_scaled_halves(isum, low, high, block.scales[c]);
        }
    }
#endif
    template <int COLS>
    static void accumulate_tile(const Panel & block, const Activations * b, int64_t ldb, const Scales * s, int64_t s_stride,
                                typename L::Float (&acc)[COLS]) {
        typename L::Int isum[COLS];
        scaled_sums<KNibbleFormat, COLS>(block, b, ldb, isum);
        for (int j = 0; j < COLS; ++j) {
            acc[j] = add_super_block(block, isum[j], s[j * s_stride], acc[j]);
        }
    }
    // A super-block's float steps, given isum (the sum of scale x sub-block dot product).
    static typename L::Float add_super_block(const Panel & block, typename L::Int isum, const Scales & s, typename L::Float acc) {
        typename L::Int msum = L::zero();
        for (int k = 0; k < 4; ++k) {
            msum = L::add(msum, L::multiply_pairs(block.scale_pairs[k], s.sum_pairs[k]));
        }
        acc = L::fma(L::to_float(isum), L::times(block.d, s.d), acc);
        return L::fnma(L::to_float(msum), L::times(block.dmin, s.d), acc);
    }
    // One super-block of one row against COLS columns (decoding), bit for bit accumulate_tile's steps.
    template <int COLS>
    static void row_block(const Weights & w, const block_q8_K * b, int64_t ldb, __m128 (&acc)[COLS]) {
        const __m256i low_nibbles = _mm256_set1_epi8(0x0F);
        __m256i quants[8];  // sub-block s
        for (int j = 0; j < 4; ++j) {
            const __m256i bytes = _mm256_loadu_si256((const __m256i *) (w.qs + 32 * j));
            quants[2 * j] = _mm256_and_si256(bytes, low_nibbles);
            quants[2 * j + 1] = _mm256_and_si256(_mm256_srli_epi16(bytes, 4), low_nibbles);
        }
        if constexpr (FIFTH_BITS) {
            const __m256i high = _mm256_loadu_si256((const __m256i *) w.qh);
            quants[0] = _mm256_or_si256(quants[0], fifth_bits<0>(high));
            quants[1] = _mm256_or_si256(quants[1], fifth_bits<1>(high));
            quants[2] = _mm256_or_si256(quants[2], fifth_bits<2>(high));
            quants[3] = _mm256_or_si256(quants[3], fifth_bits<3>(high));
            quants[4] = _mm256_or_si256(quants[4], fifth_bits<4>(high));
            quants[5] = _mm256_or_si256(quants[5], fifth_bits<5>(high));
            quants[6] = _mm256_or_si256(quants[6], fifth_bits<6>(high));
            quants[7] = _mm256_or_si256(quants[7], fifth_bits<7>(high));
        }
        const __m128i scales_and_mins = k4_scales_and_mins(w.scales);
        // The scales in half_sums' order: [s0 s1 s2 s3 s0 s1 s2 s3], [s4 .. s7 s4 .. s7].
        const __m256i scales_low = _mm256_cvtepu8_epi32(_mm_shuffle_epi8(scales_and_mins, _mm_setr_epi8(0, 1, 2, 3, 0, 1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0)));
        const __m256i scales_high = _mm256_cvtepu8_epi32(_mm_shuffle_epi8(scales_and_mins, _mm_setr_epi8(4, 5, 6, 7, 4, 5, 6, 7, 0, 0, 0, 0, 0, 0, 0, 0)));
        const __m256i mins = _mm256_cvtepu8_epi32(_mm_srli_si128(scales_and_mins, 8));
        const __m128 d = _mm_set_ss(_cvtsh_ss(w.GGML_COMMON_AGGR_U.GGML_COMMON_AGGR_S.d));
        const __m128 dmin = _mm_set_ss(_cvtsh_ss(w.GGML_COMMON_AGGR_U.GGML_COMMON_AGGR_S.dmin));
        for (int j = 0; j < COLS; ++j) {
            const block_q8_K & a = b[j * ldb];
            const __m256i isum = scaled_dots(quants, a.qs, scales_low, scales_high);
            const __m256i sub_block_sums = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *) a.bsums), _mm256_set1_epi16(1));
            const __m128 sums = _mm_cvtepi32_ps(two_sums(isum, _mm256_mullo_epi32(sub_block_sums, mins)));  // isum, msum
            const __m128 da = _mm_set_ss(a.d);
            acc[j] = _mm_fmadd_ss(sums, _mm_mul_ss(d, da), acc[j]);
            acc[j] = _mm_fnmadd_ss(_mm_movehdup_ps(sums), _mm_mul_ss(dmin, da), acc[j]);
        }
    }
};

using Q4_K = KNibbleFormat<block_q4_K, false>;
using Q5_K = KNibbleFormat<block_q5_K, true>;

// Q6_K: 16 sub-blocks of 16 with int8 scales; 6-bit weights stored + 32, their low 4 bits in
// ql and high 2 in qh. Half j (weights 128j ..) holds, for b < 32: weight b of sub-blocks
// (chunks of 32) 4j, 4j + 1, 4j + 2, 4j + 3 in the low nibble of ql[64j + b], the low nibble
// of ql[64j + 32 + b], the high nibble of ql[64j + b], the high nibble of ql[64j + 32 + b],
// with bits 0-1, 2-3, 4-5, 6-7 of qh[32j + b] on top.
template <typename L = WideLanes>
struct Q6_KFormat : SuperBlockFormat<L> {
    using Weights = block_q6_K;
    using Lanes = L;
    using Decoding = Q6_KFormat;  // row_by_row: no panels
    using Panel = KPanel<L>;
    using Activations = block_q8_K;
    using Scales = KActivationScales;
#ifdef CORRAL_AMX
    // AMX parts: the weights less 32 (-32..31) times each base-4 digit of their scale
    // (-128..127 = d0 + 4 d1 + 16 d2 + 64 d3 with d0..d2 in 0..3 and d3 = scale >> 6 in -2..1),
    // signed bytes (-96..93) for tdpbssd. The parts then sum to isum less 32 x offset (see
    // add_super_block) without the offset's 8 products per column: 4 parts, where unsigned
    // weights took 5 (the plain weights for scale + 128) and the offset besides.
    static constexpr bool AMX_TILES = std::is_same_v<L, Lanes16>;
    static constexpr int AMX_PARTS = 4;
    static constexpr bool AMX_SIGNED = true;
    static constexpr int64_t BATCH_COLS = AMX_TILES ? 256 : SuperBlockFormat<L>::BATCH_COLS;
    static void amx_scale(const Panel & block, amx::ScaledQuants<AMX_PARTS> & out) {
        const __m512i each_byte_32 = _mm512_set1_epi32(0x20202020);
        for (int s = 0; s < 16; ++s) {  // sub-block s of 16: vectors 4s .. 4s + 3
            // Bytes are multiplied as unsigned (weight below 64 times digit below 4, no carry
            // between the bytes of a 16-bit product) and shifted by 32 x digit in byte
            // arithmetic, which wraps to the signed result: (q - 32) d = q d - 32 d. The top
            // digit d3 is taken as e = d3 + 2: (q - 32) d3 = q e - 2q - (32 e - 64).
            __m512i digits[4], offsets[4];
            for (int d = 0; d < 3; ++d) {
                const __m512i digit = _mm512_and_si512(_mm512_srli_epi32(block.scales[s], 2 * d), _mm512_set1_epi32(3));
                digits[d] = amx::in_both_halves(digit);
                offsets[d] = _mm512_mullo_epi32(digit, each_byte_32);
            }
            // (The scale is the low int16 of its split form.)
            const __m512i top = _mm512_add_epi32(_mm512_srai_epi32(_mm512_slli_epi32(block.scales[s], 16), 22), _mm512_set1_epi32(2));
            digits[3] = amx::in_both_halves(top);
            offsets[3] = _mm512_sub_epi8(_mm512_mullo_epi32(top, each_byte_32), _mm512_set1_epi8(64));
            for (int i = 4 * s; i < 4 * s + 4; ++i) {
                const __m512i quants = block.quants[i];
                for (int d = 0; d < 3; ++d) {
                    out.part[d][i] = _mm512_sub_epi8(amx::times_digits(quants, digits[d]), offsets[d]);
                }
                out.part[3][i] = _mm512_sub_epi8(_mm512_sub_epi8(amx::times_digits(quants, digits[3]), _mm512_add_epi8(quants, quants)),
                                                 offsets[3]);
            }
        }
    }
    // The same integer as add_super_block's isum - 32 x offset, so the same float step.
    static typename L::Float amx_add_super_block(const Panel & block, const __m512i (&parts)[AMX_PARTS], const Scales & s,
                                                 typename L::Float acc) {
        __m512i isum = _mm512_add_epi32(parts[0], _mm512_slli_epi32(parts[1], 2));
        isum = _mm512_add_epi32(isum, _mm512_slli_epi32(parts[2], 4));
        isum = _mm512_add_epi32(isum, _mm512_slli_epi32(parts[3], 6));
        return L::fma(L::to_float(isum), L::times(block.d, s.d), acc);
    }
#endif
    static void unpack(const Weights * A, int64_t lda, int64_t row0, int rows, int64_t l, Panel & out) {
        unpack_panel(row0, rows, out, [&](int64_t first, int count, PanelRows panel) { unpack_rows(A, lda, first, count, l, panel); });
    }
    static void unpack_rows(const Weights * A, int64_t lda, int64_t row0, int rows, int64_t l, PanelRows out) {
        const Weights * row[PANEL_ROWS];
        block_rows(A, lda, row0, rows, l, row);
        const __m256i low_nibbles = _mm256_set1_epi8(0x0F);
        const __m256i two_bits = _mm256_set1_epi8(3);
        for (int j = 0; j < 2; ++j) {
            __m256i first[8], second[8], high[8];
            transpose_words(row, offsetof(Weights, ql) + 64 * j, first);
            transpose_words(row, offsetof(Weights, ql) + 64 * j + 32, second);
            transpose_words(row, offsetof(Weights, qh) + 32 * j, high);
            for (int g = 0; g < 8; ++g) {
                const __m256i h = high[g];
                const auto top = [&](int shift) {
                    return _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, shift), two_bits), 4);
                };
                out.quants(8 * (4 * j) + g) = _mm256_or_si256(_mm256_and_si256(first[g], low_nibbles), top(0));
                out.quants(8 * (4 * j + 1) + g) = _mm256_or_si256(_mm256_and_si256(second[g], low_nibbles), top(2));
                out.quants(8 * (4 * j + 2) + g) = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(first[g], 4), low_nibbles), top(4));
                out.quants(8 * (4 * j + 3) + g) = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(second[g], 4), low_nibbles), top(6));
            }
        }
        int32_t scales[16][PANEL_ROWS], scale_pairs[8][PANEL_ROWS];
        for (int r = 0; r < PANEL_ROWS; ++r) {
            for (int s = 0; s < 16; ++s) {
                scales[s][r] = split_scale(row[r]->scales[s]);
            }
            for (int k = 0; k < 8; ++k) {
                scale_pairs[k][r] = int16_pair(row[r]->scales[2 * k], row[r]->scales[2 * k + 1]);
            }
        }
        for (int s = 0; s < 16; ++s) {
            out.scales(s) = lanes_of(scales[s]);
        }
        for (int k = 0; k < 8; ++k) {
            out.scale_pairs(k) = lanes_of(scale_pairs[k]);
        }
        out.d() = halves_of(row, offsetof(Weights, d));
        out.dmin() = _mm256_setzero_ps();
    }
    static Scales activation_scales(const Activations & block) {
        Scales s = {block.d, {}};
        for (int k = 0; k < 8; ++k) {
            s.sum_pairs[k] = int16_pair(block.bsums[2 * k], block.bsums[2 * k + 1]);
        }
        return s;
    }
    // isum + the scaled dot products of chunk c: sub-blocks 2c and 2c + 1 of 16.
    static typename L::Int add_chunk(typename L::Int isum, const typename L::Int * quants, const int8_t * a, const Panel & block, int c) {
        isum = add_scaled_half_block_dot(isum, quants, a, block.scales[2 * c]);
        return add_scaled_half_block_dot(isum, quants + 4, a + 16, block.scales[2 * c + 1]);
    }
#ifdef CORRAL_WIDE_PANELS
    // add_chunk from the dot products of its two sub-blocks (paired_scaled_sums).
    static __m512i add_halves(__m512i isum, __m512i low, __m512i high, const KPanel<Lanes16> & block, int c) {
        return add_scaled(add_scaled(isum, low, block.scales[2 * c]), high, block.scales[2 * c + 1]);  // each <= 16 x 63 x 128
    }
#endif
    template <int COLS>
    static void accumulate_tile(const Panel & block, const Activations * b, int64_t ldb, const Scales * s, int64_t s_stride,
                                typename L::Float (&acc)[COLS]) {
        typename L::Int isum[COLS];
        scaled_sums<Q6_KFormat, COLS>(block, b, ldb, isum);
        for (int j = 0; j < COLS; ++j) {
            acc[j] = add_super_block(block, isum[j], s[j * s_stride], acc[j]);
        }
    }
    // A super-block's float step, given isum (the sum of scale x sub-block dot product).
    static typename L::Float add_super_block(const Panel & block, typename L::Int isum, const Scales & s, typename L::Float acc) {
        typename L::Int offset = L::zero();
        for (int k = 0; k < 8; ++k) {
            offset = L::add(offset, L::multiply_pairs(block.scale_pairs[k], s.sum_pairs[k]));
        }
        return L::fma(L::to_float(L::minus_32_times(isum, offset)), L::times(block.d, s.d), acc);
    }
    // One super-block of one row against COLS columns (decoding), bit for bit accumulate_tile's steps.
    template <int COLS>
    static void row_block(const Weights & w, const block_q8_K * b, int64_t ldb, __m128 (&acc)[COLS]) {
        const __m256i low_nibbles = _mm256_set1_epi8(0x0F);
        const __m256i top_bits = _mm256_set1_epi8(0x30);
        __m256i quants[8];  // chunk c: sub-blocks 2c, 2c + 1 of 16
        for (int j = 0; j < 2; ++j) {
            const __m256i first = _mm256_loadu_si256((const __m256i *) (w.ql + 64 * j));
            const __m256i second = _mm256_loadu_si256((const __m256i *) (w.ql + 64 * j + 32));
            const __m256i high = _mm256_loadu_si256((const __m256i *) (w.qh + 32 * j));
            quants[4 * j] = _mm256_or_si256(_mm256_and_si256(first, low_nibbles), _mm256_and_si256(_mm256_slli_epi16(high, 4), top_bits));
            quants[4 * j + 1] = _mm256_or_si256(_mm256_and_si256(second, low_nibbles), _mm256_and_si256(_mm256_slli_epi16(high, 2), top_bits));
            quants[4 * j + 2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(first, 4), low_nibbles), _mm256_and_si256(high, top_bits));
            quants[4 * j + 3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(second, 4), low_nibbles),
                                                _mm256_and_si256(_mm256_srli_epi16(high, 2), top_bits));
        }
        const __m128i scale_bytes = _mm_loadu_si128((const __m128i *) w.scales);
        // The scales in half_sums' order of sub-blocks: [0 2 4 6 1 3 5 7], [8 10 12 14 9 11 13 15].
        const __m256i order = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
        const __m256i scales_low = _mm256_permutevar8x32_epi32(_mm256_cvtepi8_epi32(scale_bytes), order);
        const __m256i scales_high = _mm256_permutevar8x32_epi32(_mm256_cvtepi8_epi32(_mm_srli_si128(scale_bytes, 8)), order);
        const __m256i scales16 = _mm256_cvtepi8_epi16(scale_bytes);
        const __m128 d = _mm_set_ss(_cvtsh_ss(w.d));
        for (int j = 0; j < COLS; ++j) {
            const block_q8_K & a = b[j * ldb];
            const __m256i isum = scaled_dots(quants, a.qs, scales_low, scales_high);
            const __m256i offset = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *) a.bsums), scales16);
            const __m128 sum = _mm_cvtepi32_ps(two_sums(_mm256_sub_epi32(isum, _mm256_slli_epi32(offset, 5)), _mm256_setzero_si256()));
            acc[j] = _mm_fmadd_ss(sum, _mm_mul_ss(d, _mm_set_ss(a.d)), acc[j]);
        }
    }
};

using Q6_K = Q6_KFormat<>;

}  // namespace

#ifdef CORRAL_DPBUSD
// Marks the variants that take Q8_0 (core/tests/kernel.rs looks for it).
extern "C" const int corral_gemm_q8_0 = 1;
#endif

extern "C" bool llamafile_sgemm(const struct ggml_compute_params * params, int64_t m, int64_t n, int64_t k,
                                const void * A, int64_t lda, const void * B, int64_t ldb, void * C, int64_t ldc,
                                int Atype, int Btype, int Ctype) {
    if (Ctype == GGML_TYPE_F32 && !params->use_ref) {
        if (Atype == GGML_TYPE_Q4_1 && Btype == GGML_TYPE_Q8_1) {
            gemm<Q4_1>(params, m, n, k, A, lda, B, ldb, (float *) C, ldc);
            return true;
        }
        if (Atype == GGML_TYPE_Q5_1 && Btype == GGML_TYPE_Q8_1) {
            gemm<Q5_1>(params, m, n, k, A, lda, B, ldb, (float *) C, ldc);
            return true;
        }
        if (Atype == GGML_TYPE_Q5_0 && Btype == GGML_TYPE_Q8_0) {
            gemm<Q5_0>(params, m, n, k, A, lda, B, ldb, (float *) C, ldc);
            return true;
        }
        if (Atype == GGML_TYPE_Q4_0 && Btype == GGML_TYPE_Q8_0) {
            gemm<Q4_0>(params, m, n, k, A, lda, B, ldb, (float *) C, ldc);
            return true;
        }
        if (Btype == GGML_TYPE_Q8_K) {
            switch (Atype) {
                case GGML_TYPE_Q4_K: gemm<Q4_K>(params, m, n, k, A, lda, B, ldb, (float *) C, ldc); return true;
                case GGML_TYPE_Q5_K: gemm<Q5_K>(params, m, n, k, A, lda, B, ldb, (float *) C, ldc); return true;
                case GGML_TYPE_Q6_K: gemm<Q6_K>(params, m, n, k, A, lda, B, ldb, (float *) C, ldc); return true;
                default: break;
            }
        }
#ifdef CORRAL_DPBUSD
        if (Atype == GGML_TYPE_Q8_0 && Btype == GGML_TYPE_Q8_0) {
            gemm<Q8_0>(params, m, n, k, A, lda, B, ldb, (float *) C, ldc);
            return true;
        }
#endif
    }
    return ggml_llamafile_sgemm(params, m, n, k, A, lda, B, ldb, C, ldc, Atype, Btype, Ctype);
}
