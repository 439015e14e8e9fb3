// corral's attention for ggml's x86 CPU backends (AVX2 variants): GGML_OP_FLASH_ATTN_EXT over
// an F16 KV cache, for decoding (one or many sequences), short prompt tails and prompts.
//
// For fewer than GGML_FA_TILE_Q query tokens ggml walks the cache one cell at a time per query
// row: an f16 dot product (Q rounded to f16), a scalar exp, and a multiply-add into an f16
// accumulator, converted both ways at every cell. With a long shared prefix (1,000 cached tokens
// and a few new question tokens) that was most of the time to first token, and with many
// sequences in one unified cache each row also tests every other sequence's cells. For prompts
// its tiled path converts each tile of K once per query head (scalar, transposed) and runs every
// cell of a tile that any of its 64 rows sees.
//
// Decoding and short batches (Unit): one unit of work is one query token with the (up to 4)
// query heads that share a K/V head:
// - the token's mask row is scanned 16 cells at a time for the visible cells, so other
//   sequences' cells cost one compare;
// - each K and V row of a visible cell is converted from f16 once and serves every head of the
//   group; scores and the softmax (ggml's vectorised exp) are computed 32 cells at a time;
// - decoding, a thread takes consecutive units and runs one token's units together, step by
//   step, so its K/V heads' rows (neighbours in each cache cell) are read together, and every
//   row is prefetched into L2 one step ahead: the rows come from memory in a pattern the
//   hardware prefetchers do not follow (attention fell from 30% to about 16% of a Qwen3 0.6B
//   token at 600 cached tokens); scattered cells (many sequences in one cache) are fetched too;
// - the accumulator stays in f32.
// Prompts of PROMPT_TOKENS or more (Block): a unit is a block of consecutive tokens with all the
// heads of a K/V head (about 128 rows; blocks of 16 and 32 rows measured slower, 128 faster
// than 64 on 2,000-token prompts: each step's conversion and K/V reads serve more rows). A
// causal prompt's tokens see prefixes of one list of cells, so each step of 32 cells is
// converted to f32 once for the block and every row uses it. K is transposed (a vector holds
// one dimension of 8 or 16 cells), so the scores of 8 rows (AVX2: 4) x 32 cells take fmas
// alone, each of the 8 lane sums of the arithmetic below its own chain, added at the end in
// the same order: no lanes summed across a vector, which took a third of the scores' time. V
// is taken 16 floats to a vector (AVX2: 8) for 4 rows at a time. Tokens that see no prefix of
// their neighbours' cells (a sliding window past its width) run as Units. Attention samples of
// a 2,000-token prompt against ggml's tiled path: Qwen3 0.6B shape (heads of 128) -25% before
// the transposed K (which took another 20% off), Qwen2.5 0.5B and SmolLM2 (64) -15-20%, Llama
// 3.2 1B shape -10-35%.
//
// Arithmetic, per query row (bit for bit the same in every variant, batch, thread split, head
// grouping and path, and wherever the visible cells sit in the cache: a row's result depends
// only on its own sequence of visible cells, so a prompt's row has the bits of its token decoded
// alone):
//     in steps of 32 visible cells (the last step may be shorter):
//         s_c = dot(q * scale, k_c) + mask_c           (f32, 8 lanes, lanes summed pairwise)
//         M'  = max(M, max_c s_c);  A *= exp(M - M');  S *= exp(M - M')
//         p_c = exp(s_c - M');  S += sum_c p_c;  A += sum_c p_c v_c      (in cell order)
//     out = A * (1 / S)   (0 when no cell is visible)
// ggml rounds Q and the accumulator to f16, so results differ from ggml's in the low bits
// (core/tests/attention.rs checks this kernel against exact attention, for batch independence,
// and prompts against decoding one token at a time).
//
// Linked into each AVX2-capable libggml-cpu-<variant>.so by core/build.rs, like the quantized
// GEMM: ggml's own `ggml_compute_forward_flash_attn_ext` is renamed with a `_ggml` suffix in the
// variant's ops.cpp object, and every case this kernel does not take (other cache types, ALiBi,
// logit soft-capping, attention sinks, ggml's reference mode, too few units of work for the
// threads) goes to it unchanged.

#include <immintrin.h>
#include <algorithm>
#include <vector>
#include <new>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "common.h"
#include "ops.h"
#include "simd_math.h"

extern "C" void ggml_compute_forward_flash_attn_ext_ggml(const struct ggml_compute_params * params, struct ggml_tensor * dst);

// Lets tests find the variants that carry this kernel.
extern "C" const int corral_flash_attention = 1;

namespace {

using corral_simd::exp_ps;

constexpr int MAX_GROUP = 4;        // query heads sharing each converted K/V row (registers)
constexpr int STEP_CELLS = 32;      // visible cells per online-softmax step
constexpr int PREFETCH_CELLS = STEP_CELLS;  // how far ahead K/V rows are fetched (one step)
constexpr int64_t MAX_HEAD_DIM = 512;
constexpr int64_t PROMPT_TOKENS = 16;   // query tokens from which the prompt path (Block) is taken
constexpr int BLOCK_ROWS = 128;        // query rows (tokens x heads) a prompt block aims for
constexpr int MAX_BLOCK_ROWS = 128;
constexpr uint16_t F16_MINUS_INFINITY = 0xFC00;

struct Shape {
    const ggml_tensor * q, * k, * v, * mask;
    ggml_tensor * dst;
    float scale;
    int64_t heads_per_kv;   // query heads per K/V head
    int64_t group;          // query heads per unit of work
    int64_t groups_per_kv;
    int64_t units;
    bool streamed;          // few query tokens: every unit's K/V rows come from memory
    bool prompt;            // units are Blocks of tokens_per_block tokens, not single tokens
    int64_t tokens_per_block;
};

inline float horizontal_sum(__m256 x) {
    __m128 sum = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    sum = _mm_add_ps(sum, _mm_movehl_ps(sum, sum));
    sum = _mm_add_ss(sum, _mm_movehdup_ps(sum));
    return _mm_cvtss_f32(sum);
}

// The lane sums of a and b (one pairwise order for both, whichever cell is paired with which).
inline __m128 horizontal_sums(__m256 a, __m256 b) {
    const __m256 pairs = _mm256_hadd_ps(a, b);
    const __m128 quads = _mm_add_ps(_mm256_castps256_ps128(pairs), _mm256_extractf128_ps(pairs, 1));
    return _mm_hadd_ps(quads, quads);  // [sum a, sum b, sum a, sum b]
}

inline float horizontal_max(__m256 x) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

inline __m256 load_f16(const ggml_fp16_t * p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i *>(p)));
}

template <int R, int C>
inline void store_scores(const __m256 (&dot)[R][C], const float * const * mask, float * const * score, int first);

// Scores of R query rows against C cells (f16 K rows `k`): score[r][first + j] = dot(q[r], k[j])
// + mask[r][first + j]. The arithmetic of every path: 8 lanes of fmas in dimension order, the
// lanes summed by horizontal_sums (cells taken in pairs; which cell goes with which does not
// change the bits).
template <int R, int C>
inline void dot_cells(const float * const * q, const ggml_fp16_t * const * k, int64_t dk, const float * const * mask, float * const * score,
                      int first) {
    __m256 dot[R][C];
#ifdef __AVX512F__
    if constexpr (C == 2) {
        // Both cells in one 512-bit vector, each in a 256-bit half with the same lanes and fmas:
        // half the fmas, and one conversion from f16 for the two.
        __m512 pair[R];
        for (int r = 0; r < R; ++r) {
            pair[r] = _mm512_setzero_ps();
        }
        for (int64_t d = 0; d < dk; d += 8) {
            const __m256i halves = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *) (k[0] + d))),
                                                           _mm_loadu_si128((const __m128i *) (k[1] + d)), 1);
            const __m512 kv = _mm512_cvtph_ps(halves);
            for (int r = 0; r < R; ++r) {
                pair[r] = _mm512_fmadd_ps(kv, _mm512_broadcast_f32x8(_mm256_loadu_ps(q[r] + d)), pair[r]);
            }
        }
        for (int r = 0; r < R; ++r) {
            dot[r][0] = _mm512_castps512_ps256(pair[r]);
            dot[r][1] = _mm512_extractf32x8_ps(pair[r], 1);
        }
        store_scores<R, C>(dot, mask, score, first);
        return;
    }
#endif
    for (int r = 0; r < R; ++r) {
        for (int j = 0; j < C; ++j) {
            dot[r][j] = _mm256_setzero_ps();
        }
    }
    for (int64_t d = 0; d < dk; d += 8) {
        __m256 kv[C];
        for (int j = 0; j < C; ++j) {
            kv[j] = load_f16(k[j] + d);
        }
        for (int r = 0; r < R; ++r) {
            const __m256 qv = _mm256_loadu_ps(q[r] + d);
            for (int j = 0; j < C; ++j) {
                dot[r][j] = _mm256_fmadd_ps(kv[j], qv, dot[r][j]);
            }
        }
    }
    store_scores<R, C>(dot, mask, score, first);
}

// score[r][first + j] = the lane sum of dot[r][j] + mask[r][first + j].
template <int R, int C>
inline void store_scores(const __m256 (&dot)[R][C], const float * const * mask, float * const * score, int first) {
    for (int r = 0; r < R; ++r) {
        for (int j = 0; j < C; j += 2) {
            const int c = first + j;
            if (j + 1 < C) {
                const __m128 sums = horizontal_sums(dot[r][j], dot[r][j + 1]);
                score[r][c] = _mm_cvtss_f32(sums) + mask[r][c];
                score[r][c + 1] = _mm_cvtss_f32(_mm_movehdup_ps(sums)) + mask[r][c + 1];
            } else {
                score[r][c] = _mm_cvtss_f32(horizontal_sums(dot[r][j], dot[r][j])) + mask[r][c];
            }
        }
    }
}

// Float vectors of 8 (AVX2) and 16 (AVX-512) lanes, for accumulate_cells and transposed_scores.
struct Floats8 {
    using Vector = __m256;
    static constexpr int LANES = 8;
    static Vector load(const float * p) { return _mm256_loadu_ps(p); }
    static Vector load_row(const ggml_fp16_t * p) { return load_f16(p); }
    static Vector load_row(const float * p) { return _mm256_loadu_ps(p); }
    static Vector splat(float x) { return _mm256_set1_ps(x); }
    static Vector fma(Vector a, Vector b, Vector c) { return _mm256_fmadd_ps(a, b, c); }
    static Vector add(Vector a, Vector b) { return _mm256_add_ps(a, b); }
    static void store(float * p, Vector x) { _mm256_storeu_ps(p, x); }
};

#ifdef __AVX512F__
struct Floats16 {
    using Vector = __m512;
    static constexpr int LANES = 16;
    static Vector load(const float * p) { return _mm512_loadu_ps(p); }
    static Vector load_row(const ggml_fp16_t * p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *) p)); }
    static Vector load_row(const float * p) { return _mm512_loadu_ps(p); }
    static Vector splat(float x) { return _mm512_set1_ps(x); }
    static Vector fma(Vector a, Vector b, Vector c) { return _mm512_fmadd_ps(a, b, c); }
    static Vector add(Vector a, Vector b) { return _mm512_add_ps(a, b); }
    static void store(float * p, Vector x) { _mm512_storeu_ps(p, x); }
};
using Floats = Floats16;  // the variant's widest vectors
#else
using Floats = Floats8;
#endif

// acc[r][d, d + LANES * B) += p[r][c] * v[c] over cells [first, last), in cell order (V rows in
// f16 or f32): R x B independent chains of fmas (one chain would wait on fma latency). Every
// float gets the same fmas in the same order whatever the vector width, so the same bits.
template <typename F, int R, int B, typename V>
inline void accumulate_cells(float * const * acc, const float * const * p, const V * const * v, int first, int last, int64_t d) {
    typename F::Vector a[R][B];
    for (int r = 0; r < R; ++r) {
        for (int b = 0; b < B; ++b) {
            a[r][b] = F::load(acc[r] + d + F::LANES * b);
        }
    }
    for (int c = first; c < last; ++c) {
        for (int b = 0; b < B; ++b) {
            const typename F::Vector vv = F::load_row(v[c] + d + F::LANES * b);
            for (int r = 0; r < R; ++r) {
                a[r][b] = F::fma(F::splat(p[r][c]), vv, a[r][b]);
            }
        }
    }
    for (int r = 0; r < R; ++r) {
        for (int b = 0; b < B; ++b) {
            F::store(acc[r] + d + F::LANES * b, a[r][b]);
        }
    }
}

template <int R, typename V>
void accumulate(float * const * acc, const float * const * p, const V * const * v, int64_t dv, int first, int last) {
    // 8-float blocks of V per pass: as many accumulators as the 16 registers of AVX2 hold.
    constexpr int B = R <= 3 ? 4 : 2;
    int64_t d = 0;
#ifdef __AVX512F__
    for (; d + 64 <= dv; d += 64) {  // 4 x 4 accumulators of the 32 registers
        accumulate_cells<Floats16, R, 4>(acc, p, v, first, last, d);
    }
#endif
    for (; d + 8 * B <= dv; d += 8 * B) {
        accumulate_cells<Floats8, R, B>(acc, p, v, first, last, d);
    }
    for (; d < dv; d += 8) {
        accumulate_cells<Floats8, R, 1>(acc, p, v, first, last, d);
    }
}

// Fetches an f16 row into the cache level `hint` (_MM_HINT_T0: L1, _MM_HINT_T1: L2).
template <int hint>
inline void prefetch_row(const char * row, int64_t dims) {
    for (int64_t offset = 0; offset < dims * (int64_t) sizeof(ggml_fp16_t); offset += 64) {
        _mm_prefetch(row + offset, hint);
    }
}

// The cells a query row sees, in cache order, with their mask values; returns how many.
// `row`: the row's mask (null: every cell visible).
int64_t visible_cells(const ggml_fp16_t * row, int64_t cache_cells, int32_t * cells, float * masks) {
    int64_t total = 0;
    if (!row) {
        for (int64_t c = 0; c < cache_cells; ++c) {
            cells[total] = (int32_t) c;
            masks[total++] = 0.0f;
        }
        return total;
    }
    const __m256i hidden = _mm256_set1_epi16((short) F16_MINUS_INFINITY);
    int64_t c = 0;
    for (; c + 16 <= cache_cells; c += 16) {
        const __m256i m = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(row + c));
        // Two mask bits per cell; the even ones mark visible cells.
        uint32_t visible = ~(uint32_t) _mm256_movemask_epi8(_mm256_cmpeq_epi16(m, hidden)) & 0x55555555u;
        if (visible == 0x55555555u) {
            // All 16 visible, as in a sequence's own contiguous cells.
            _mm256_storeu_ps(&masks[total], _mm256_cvtph_ps(_mm256_castsi256_si128(m)));
            _mm256_storeu_ps(&masks[total + 8], _mm256_cvtph_ps(_mm256_extracti128_si256(m, 1)));
            for (int i = 0; i < 16; ++i) {
                cells[total + i] = (int32_t) (c + i);
            }
            total += 16;
            continue;
        }
        while (visible) {
            const int64_t cell = c + __builtin_ctz(visible) / 2;
            cells[total] = (int32_t) cell;
            masks[total++] = GGML_CPU_FP16_TO_FP32(row[cell]);
            visible &= visible - 1;
        }
    }
    for (; c < cache_cells; ++c) {
        if (row[c] != F16_MINUS_INFINITY) {
            cells[total] = (int32_t) c;
            masks[total++] = GGML_CPU_FP16_TO_FP32(row[c]);
        }
    }
    return total;
}

// The mask row of query token `token` for head `head` of batch `batch` (null without a mask).
inline const ggml_fp16_t * mask_row(const ggml_tensor * mask, int64_t token, int64_t head, int64_t batch) {
    if (!mask) {
        return nullptr;
    }
    return (const ggml_fp16_t *) ((const char *) mask->data + token * mask->nb[1] + (head % mask->ne[2]) * mask->nb[2] +
                                  (batch % mask->ne[3]) * mask->nb[3]);
}

// One online-softmax step of one query row: score[0, n) holds the step's scores (dot + mask);
// they become the weights p_c (the rest of the STEP_CELLS entries 0), the row's accumulator and
// sum are rescaled to the new maximum, and the weights are added to the sum.
inline void softmax_step(float * score, int n, float & max, float & sum, float * acc, int64_t dv) {
    for (int c = n; c < STEP_CELLS; ++c) {
        score[c] = -INFINITY;
    }
    __m256 step_max = _mm256_loadu_ps(score);
    for (int c = 8; c < STEP_CELLS; c += 8) {
        step_max = _mm256_max_ps(step_max, _mm256_loadu_ps(score + c));
    }
    const float new_max = std::max(max, horizontal_max(step_max));
    if (new_max == -INFINITY) {
        // Every score is -inf (an infinite dot product): nothing to add.
        for (int c = 0; c < STEP_CELLS; ++c) {
            score[c] = 0.0f;
        }
        return;
    }
    if (new_max > max) {
        const float rescale = expf(max - new_max);
        int64_t d = 0;
#ifdef __AVX512F__
        for (; d + 16 <= dv; d += 16) {
            _mm512_storeu_ps(acc + d, _mm512_mul_ps(_mm512_loadu_ps(acc + d), _mm512_set1_ps(rescale)));
        }
#endif
        for (; d < dv; d += 8) {
            _mm256_storeu_ps(acc + d, _mm256_mul_ps(_mm256_loadu_ps(acc + d), _mm256_set1_ps(rescale)));
        }
        sum *= rescale;
        max = new_max;
    }
    // The weights, and their sum in 8 lanes taking the cells in order: lane i adds cells i,
    // i + 8, i + 16, i + 24.
    __m256 step_sum = _mm256_setzero_ps();
#ifdef __AVX512F__
    const __m512 m = _mm512_set1_ps(new_max);
    for (int c = 0; c < STEP_CELLS; c += 16) {
        const __m512 s = _mm512_loadu_ps(score + c);
        // exp(-inf) is 0 in ggml's approximation too, but padding must add exactly nothing.
        const __m512 p = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(s, _mm512_set1_ps(-INFINITY), _CMP_NEQ_OQ), exp_ps(_mm512_sub_ps(s, m)));
        _mm512_storeu_ps(score + c, p);
        step_sum = _mm256_add_ps(_mm256_add_ps(step_sum, _mm512_castps512_ps256(p)), _mm512_extractf32x8_ps(p, 1));
    }
#else
    const __m256 m = _mm256_set1_ps(new_max);
    for (int c = 0; c < STEP_CELLS; c += 8) {
        const __m256 s = _mm256_loadu_ps(score + c);
        const __m256 p = _mm256_and_ps(exp_ps(_mm256_sub_ps(s, m)), _mm256_cmp_ps(s, _mm256_set1_ps(-INFINITY), _CMP_NEQ_OQ));
        _mm256_storeu_ps(score + c, p);
        step_sum = _mm256_add_ps(step_sum, p);
    }
#endif
    sum += horizontal_sum(step_sum);
}

// Writes out = acc * (1 / sum) (0 when no cell was visible) into ggml's result layout, which is
// permuted (0, 2, 1, 3).
inline void write_row(ggml_tensor * dst, int64_t token, int64_t head, int64_t batch, const float * acc, float sum, int64_t dv) {
    const float inverse = sum == 0.0f ? 0.0f : 1.0f / sum;
    float * out = (float *) ((char *) dst->data + (batch * dst->ne[2] * dst->ne[1] + head + token * dst->ne[1]) * dst->nb[1]);
    const __m256 r = _mm256_set1_ps(inverse);
    for (int64_t d = 0; d < dv; d += 8) {
        _mm256_storeu_ps(out + d, _mm256_mul_ps(_mm256_loadu_ps(acc + d), r));
    }
}

// One query token with G query heads that share one K/V head.
template <int G>
class Unit {
public:
    // Query token `token` of batch `batch` with heads [first_head, first_head + heads) (heads <= G)
    // of K/V head `kv_head`.
    Unit(const Shape & shape, int64_t token, int64_t batch, int64_t kv_head, int64_t first_head, int heads)
        : shape_(shape), token_(token), batch_(batch), kv_head_(kv_head), first_head_(first_head), heads_(heads) {
        const ggml_tensor * q = shape.q;
        dk_ = shape.k->ne[0];
        dv_ = shape.v->ne[0];
        for (int h = 0; h < G; ++h) {
            int64_t head = first_head_ + std::min(h, heads_ - 1);
            const float * row = (const float *) ((const char *) q->data + token_ * q->nb[1] + head * q->nb[2] + batch_ * q->nb[3]);
            for (int64_t d = 0; d < dk_; ++d) {
                q_[h][d] = row[d] * shape.scale;
            }
            memset(acc_[h], 0, dv_ * sizeof(float));
            max_[h] = -INFINITY;
            sum_[h] = 0.0f;
            q_rows_[h] = q_[h];
            acc_rows_[h] = acc_[h];
            score_rows_[h] = score_[h];
        }
        const int64_t k_batch = batch_ / (q->ne[3] / shape.k->ne[3]);
        const int64_t v_batch = batch_ / (q->ne[3] / shape.v->ne[3]);
        k_base_ = (const char *) shape.k->data + kv_head_ * shape.k->nb[2] + k_batch * shape.k->nb[3];
        v_base_ = (const char *) shape.v->data + kv_head_ * shape.v->nb[2] + v_batch * shape.v->nb[3];
    }

    void run() {
        run_together(this, 1);
    }

    // Units of one query token (one mask row for all: the same visible cells) that run their
    // steps in turn, so that their K/V rows, next to each other in every cache cell, are read
    // together.
    static void run_together(Unit * units, int count) {
        // The cells the token sees, in cache order, with their mask values.
        thread_local std::vector<int32_t> cells;
        thread_local std::vector<float> masks;
        const Unit & first = units[0];
        const int64_t cache_cells = first.shape_.k->ne[1];
        if ((int64_t) cells.size() < cache_cells) {
            cells.resize(cache_cells);
            masks.resize(cache_cells);
        }
        const int64_t total = visible_cells(mask_row(first.shape_.mask, first.token_, first.first_head_, first.batch_), cache_cells, cells.data(), masks.data());
        for (int64_t start = 0; start < total; start += STEP_CELLS) {
            for (int u = 0; u < count; ++u) {
                units[u].step(cells.data() + start, masks.data() + start, (int) std::min<int64_t>(STEP_CELLS, total - start), total - start);
            }
        }
        for (int u = 0; u < count; ++u) {
            units[u].write();
        }
    }

private:
    // One online-softmax step over n (<= STEP_CELLS) visible cells.
    // `listed`: visible cells from `cells` on, this step's and later ones (for prefetching).
    void step(const int32_t * cells, const float * masks, int n, int64_t listed) {
        const ggml_tensor * k = shape_.k, * v = shape_.v;
        const float * mask_rows[G];
        for (int h = 0; h < G; ++h) {
            mask_rows[h] = masks;
        }
        // Two cells at a time: 2 x G independent dot products.
        int c = 0;
        for (; c + 2 <= n; c += 2) {
            // Fetch the K and V rows of the cells one step ahead into the L2 cache. A decoding
            // token's rows come from memory (no other unit has just read them), 256 bytes of
            // each 2 KB cell for one K/V head, a pattern the hardware prefetchers do not follow
            // across pages; with several units taking their steps in turn (run_together) a
            // step of all of them is about 128 KB, more than the L1 cache. Prefetching 8 cells
            // ahead into L1 left decoding waiting on memory: attention was 30% of a Qwen3 0.6B
            // token at 600 cached tokens, against 16% with this. A prompt's contiguous rows,
            // which its units read again and again, stay cached; its scattered ones (a cache
            // shared by many sequences) are fetched too.
            if (c + PREFETCH_CELLS + 1 < listed &&
                (shape_.streamed || cells[c + PREFETCH_CELLS + 1] - cells[c] != PREFETCH_CELLS + 1)) {
                for (int a = 0; a < 2; ++a) {
                    prefetch_row<_MM_HINT_T1>(k_base_ + cells[c + PREFETCH_CELLS + a] * k->nb[1], dk_);
                    prefetch_row<_MM_HINT_T1>(v_base_ + cells[c + PREFETCH_CELLS + a] * v->nb[1], dv_);
                }
            }
            const ggml_fp16_t * k_rows[2] = {(const ggml_fp16_t *) (k_base_ + cells[c] * k->nb[1]),
                                             (const ggml_fp16_t *) (k_base_ + cells[c + 1] * k->nb[1])};
            dot_cells<G, 2>(q_rows_, k_rows, dk_, mask_rows, score_rows_, c);
        }
        if (c < n) {
            const ggml_fp16_t * k_rows[1] = {(const ggml_fp16_t *) (k_base_ + cells[c] * k->nb[1])};
            dot_cells<G, 1>(q_rows_, k_rows, dk_, mask_rows, score_rows_, c);
        }
        for (int h = 0; h < G; ++h) {
            softmax_step(score_[h], n, max_[h], sum_[h], acc_[h], dv_);
        }
        const ggml_fp16_t * v_rows[STEP_CELLS];
        for (int c = 0; c < n; ++c) {
            v_rows[c] = (const ggml_fp16_t *) (v_base_ + cells[c] * v->nb[1]);
        }
        accumulate<G>(acc_rows_, score_rows_, v_rows, dv_, 0, n);
    }

    void write() {
        for (int h = 0; h < heads_; ++h) {
            write_row(shape_.dst, token_, first_head_ + h, batch_, acc_[h], sum_[h], dv_);
        }
    }

    const Shape & shape_;
    int64_t token_, batch_, kv_head_, first_head_, dk_, dv_;
    int heads_;
    const char * k_base_, * v_base_;
    alignas(32) float q_[G][MAX_HEAD_DIM];
    alignas(32) float acc_[G][MAX_HEAD_DIM];
    alignas(32) float score_[G][STEP_CELLS];
    float max_[G], sum_[G];
    const float * q_rows_[G];
    float * acc_rows_[G], * score_rows_[G];
};

constexpr int MAX_TOGETHER = 8;  // decoding units of one token that take their steps in turn

template <int G>
void run_units(const Shape & shape, int ith, int nth) {
    const int64_t tokens = shape.q->ne[1], per_token = shape.q->ne[2] / shape.heads_per_kv * shape.groups_per_kv;
    auto make = [&](int64_t unit, void * where) {
        const int64_t group_index = unit % per_token;
        const int64_t kv_head = group_index / shape.groups_per_kv;
        const int64_t first_head = kv_head * shape.heads_per_kv + group_index % shape.groups_per_kv * shape.group;
        const int heads = (int) std::min<int64_t>(G, kv_head * shape.heads_per_kv + shape.heads_per_kv - first_head);
        return new (where) Unit<G>(shape, unit / per_token % tokens, unit / per_token / tokens, kv_head, first_head, heads);
    };
    if (!shape.streamed || (shape.mask && shape.mask->ne[2] > 1)) {
        // Prompt tokens (Gemma's heads of 256) in turns, whose rows stay cached from one token to
        // the next; or heads with masks of their own, whose visible cells differ.
        alignas(Unit<G>) unsigned char storage[sizeof(Unit<G>)];
        for (int64_t unit = ith; unit < shape.units; unit += nth) {
            make(unit, storage)->run();
        }
        return;
    }
    // Decoding: each thread takes a range of consecutive units, so that one token's units (its
    // K/V heads, next to each other in every cache cell) run together. Units hold up to 17 KB:
    // they live on the heap, not on the calling thread's stack.
    thread_local std::vector<unsigned char> storage;
    storage.resize((MAX_TOGETHER + 1) * sizeof(Unit<G>));
    Unit<G> * units = (Unit<G> *) (((uintptr_t) storage.data() + alignof(Unit<G>) - 1) / alignof(Unit<G>) * alignof(Unit<G>));
    const int64_t first = shape.units * ith / nth, end = shape.units * (ith + 1) / nth;
    for (int64_t unit = first; unit < end;) {
        const int64_t stop = std::min({end, (unit / per_token + 1) * per_token, unit + MAX_TOGETHER});
        for (int64_t u = unit; u < stop; ++u) {
            make(u, units + (u - unit));
        }
        Unit<G>::run_together(units, (int) (stop - unit));
        unit = stop;
    }
}

// A prompt step's K rows (n <= STEP_CELLS, f16) transposed into f32: kt[d * STEP_CELLS + c] =
// k_c[d], 0 for the cells past n, so that one vector of kt holds one dimension of consecutive
// cells. Converted once per step for every row of a Block.
inline void transpose_step(const ggml_fp16_t * const * rows, int n, int64_t dk, float * kt) {
    for (int c0 = 0; c0 < STEP_CELLS; c0 += 8) {
        for (int64_t d = 0; d < dk; d += 8) {
            __m256 r[8];
            for (int i = 0; i < 8; ++i) {
                r[i] = c0 + i < n ? load_f16(rows[c0 + i] + d) : _mm256_setzero_ps();
            }
            // 8 x 8 transpose: r[i] becomes dimension d + i of cells c0 .. c0 + 7.
            __m256 pairs[8], quads[8];
            for (int i = 0; i < 8; i += 2) {
                pairs[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
                pairs[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
            }
            for (int i = 0; i < 8; i += 4) {
                quads[i] = _mm256_shuffle_ps(pairs[i], pairs[i + 2], 0x44);
                quads[i + 1] = _mm256_shuffle_ps(pairs[i], pairs[i + 2], 0xEE);
                quads[i + 2] = _mm256_shuffle_ps(pairs[i + 1], pairs[i + 3], 0x44);
                quads[i + 3] = _mm256_shuffle_ps(pairs[i + 1], pairs[i + 3], 0xEE);
            }
            for (int i = 0; i < 4; ++i) {
                r[i] = _mm256_permute2f128_ps(quads[i], quads[i + 4], 0x20);
                r[i + 4] = _mm256_permute2f128_ps(quads[i], quads[i + 4], 0x31);
            }
            for (int i = 0; i < 8; ++i) {
                _mm256_storeu_ps(kt + (d + i) * STEP_CELLS + c0, r[i]);
            }
        }
    }
}

// The prompt path's scores of R query rows against all STEP_CELLS cells of a step (those past
// its n come out as garbage that softmax_step overwrites), from the transposed K: cells lie in
// the vector lanes, so no lanes are summed across a vector. Each of dot_cells' 8 lane sums
// (the dimensions d = l mod 8) is its own chain of fmas over d in order, and the 8 are added
// in horizontal_sums' order: every score has dot_cells' bits.
// Rows per tile: R x 2 chains of fmas at a time, enough to keep both fma units busy past their
// latency (4 rows on AVX-512 measured 4% slower than 8 on a 2,000-token prompt), and each
// load of K shared by more rows.
constexpr int SCORE_ROWS = Floats::LANES == 16 ? 8 : 4;

template <typename F, int R>
void transposed_scores(const float * const * q, const float * kt, int64_t dk, const float * const * mask, float * const * score) {
    constexpr int V = 2;  // vectors of cells per pass
    constexpr int CELLS = V * F::LANES;
    static_assert(STEP_CELLS % CELLS == 0, "a step is whole passes");
    using Vector = typename F::Vector;
    for (int c0 = 0; c0 < STEP_CELLS; c0 += CELLS) {
        alignas(64) float lane_sums[8][R][CELLS];
        for (int l = 0; l < 8; ++l) {
            Vector acc[R][V];
            for (int r = 0; r < R; ++r) {
                for (int v = 0; v < V; ++v) {
                    acc[r][v] = F::splat(0.0f);
                }
            }
            for (int64_t d = l; d < dk; d += 8) {
                Vector kv[V];
                for (int v = 0; v < V; ++v) {
                    kv[v] = F::load(kt + d * STEP_CELLS + c0 + v * F::LANES);
                }
                for (int r = 0; r < R; ++r) {
                    const Vector qv = F::splat(q[r][d]);
                    for (int v = 0; v < V; ++v) {
                        acc[r][v] = F::fma(kv[v], qv, acc[r][v]);
                    }
                }
            }
            for (int r = 0; r < R; ++r) {
                for (int v = 0; v < V; ++v) {
                    F::store(lane_sums[l][r] + v * F::LANES, acc[r][v]);
                }
            }
        }
        for (int r = 0; r < R; ++r) {
            for (int v = 0; v < V; ++v) {
                const int at = v * F::LANES;
                auto lanes = [&](int l) { return F::load(lane_sums[l][r] + at); };
                // horizontal_sums: lane pairs, then pair l with pair l + 4, then the two quads.
                const Vector low = F::add(F::add(lanes(0), lanes(1)), F::add(lanes(4), lanes(5)));
                const Vector high = F::add(F::add(lanes(2), lanes(3)), F::add(lanes(6), lanes(7)));
                F::store(score[r] + c0 + at, F::add(F::add(low, high), F::load(mask[r] + c0 + at)));
            }
        }
    }
}

// One block of a prompt: up to tokens_per_block consecutive query tokens with the (up to `group`)
// query heads that share one K/V head. A causal prompt's tokens see prefixes of one list of
// cells, so each step's 32 cells are converted from f16 once and serve every row of the block
// (tokens x heads), in 4-row tiles that share each K and V load. Each row's arithmetic is
// exactly Unit's: its own visible cells, in steps of 32 counted from its first, so a prompt's
// rows have the bits they would have decoded one token at a time. Tokens whose cells are not
// prefixes of each other (a sliding window past its width, another sequence) get their own steps.
class Block {
public:
    Block(const Shape & shape, int64_t unit) : shape_(shape) {
        const ggml_tensor * q = shape.q;
        // Units run block by block within a group of heads: a thread's next unit reads the same
        // K/V rows, from its L2 cache (a 512-token prompt's rows of one K/V head: 256 KB).
        const int64_t per_batch = q->ne[2] / shape.heads_per_kv * shape.groups_per_kv;
        const int64_t blocks = (q->ne[1] + shape.tokens_per_block - 1) / shape.tokens_per_block;
        const int64_t group_index = unit / blocks % per_batch;
        // Every other group runs its blocks last to first: a causal block costs more than the one
        // before it, and the threads take units in turn.
        const int64_t block = group_index % 2 ? blocks - 1 - unit % blocks : unit % blocks;
        first_token_ = block * shape.tokens_per_block;
        tokens_ = (int) std::min<int64_t>(shape.tokens_per_block, q->ne[1] - first_token_);
        batch_ = unit / blocks / per_batch;
        kv_head_ = group_index / shape.groups_per_kv;
        first_head_ = kv_head_ * shape.heads_per_kv + group_index % shape.groups_per_kv * shape.group;
        heads_ = (int) std::min<int64_t>(shape.group, kv_head_ * shape.heads_per_kv + shape.heads_per_kv - first_head_);
        dk_ = shape.k->ne[0];
        dv_ = shape.v->ne[0];
        const int64_t k_batch = batch_ / (q->ne[3] / shape.k->ne[3]);
        const int64_t v_batch = batch_ / (q->ne[3] / shape.v->ne[3]);
        k_base_ = (const char *) shape.k->data + kv_head_ * shape.k->nb[2] + k_batch * shape.k->nb[3];
        v_base_ = (const char *) shape.v->data + kv_head_ * shape.v->nb[2] + v_batch * shape.v->nb[3];
    }

    void run() {
        Scratch & s = scratch();
        const int64_t cache_cells = shape_.k->ne[1];
        s.reserve(cache_cells, tokens_ * heads_, dk_, dv_);
        // Runs of consecutive tokens whose visible cells are prefixes of the run's longest list
        // (s.longest). Only that list and the one being scanned are kept: 12 bytes a cache cell,
        // whatever the block's size.
        int64_t longest = 0;
        int first = 0;
        for (int t = 0; t < tokens_; ++t) {
            s.counts[t] = visible_cells(mask_row(shape_.mask, first_token_ + t, first_head_, batch_), cache_cells, s.scanned.data(),
                                        s.scanned_masks.data());
            if (t > first && memcmp(s.scanned.data(), s.longest.data(), std::min(s.counts[t], longest) * sizeof(int32_t))) {
                run_tokens(s, first, t, longest);
                first = t;
            }
            if (t == first || s.counts[t] > longest) {
                std::swap(s.longest, s.scanned);
                longest = s.counts[t];
            }
        }
        run_tokens(s, first, tokens_, longest);
    }

private:
    struct Scratch {
        std::vector<int32_t> longest, scanned;  // visible cells: the run's longest list, a token's
        std::vector<float> scanned_masks;       // (their mask values, unused: read per step)
        std::vector<float> q, acc;              // [row][dk], [row][dv]
        std::vector<float> kt, v;               // [dk][STEP_CELLS], [STEP_CELLS][dv]: one step's K transposed, V rows, in f32
        int64_t counts[MAX_BLOCK_ROWS];
        alignas(32) float score[MAX_BLOCK_ROWS][STEP_CELLS];
        float masks[MAX_BLOCK_ROWS][STEP_CELLS];  // [token]: one step's mask values
        float max[MAX_BLOCK_ROWS], sum[MAX_BLOCK_ROWS];

        void reserve(int64_t cache_cells, int64_t rows, int64_t dk, int64_t dv) {
            if ((int64_t) longest.size() < cache_cells) {
                longest.resize(cache_cells);
                scanned.resize(cache_cells);
                scanned_masks.resize(cache_cells);
            }
            if ((int64_t) q.size() < rows * dk) {
                q.resize(rows * dk);
            }
            if ((int64_t) acc.size() < rows * dv) {
                acc.resize(rows * dv);
            }
            if ((int64_t) kt.size() < STEP_CELLS * dk) {
                kt.resize(STEP_CELLS * dk);
            }
            if ((int64_t) v.size() < STEP_CELLS * dv) {
                v.resize(STEP_CELLS * dv);
            }
        }
    };

    static Scratch & scratch() {
        thread_local Scratch s;
        return s;
    }

    void decode_token(int t) {
        for (int h = 0; h < heads_; h += MAX_GROUP) {
            const int64_t token = first_token_ + t, first_head = first_head_ + h;
            switch (std::min(MAX_GROUP, heads_ - h)) {
                case 1: Unit<1>(shape_, token, batch_, kv_head_, first_head, 1).run(); break;
                case 2: Unit<2>(shape_, token, batch_, kv_head_, first_head, 2).run(); break;
                case 3: Unit<3>(shape_, token, batch_, kv_head_, first_head, 3).run(); break;
                default: Unit<4>(shape_, token, batch_, kv_head_, first_head, 4).run(); break;
            }
        }
    }

    // Tokens [first, end) of the block, whose visible cells are prefixes of s.longest (`listed`
    // cells). A token on its own (a sliding window past its width) takes the decode path, which
    // streams its rows without converting them into a buffer.
    void run_tokens(Scratch & s, int first, int end, int64_t listed) {
        if (end - first == 1) {
            decode_token(first);
            return;
        }
        const ggml_tensor * q = shape_.q, * k = shape_.k, * v = shape_.v;
        const int rows = (end - first) * heads_;
        for (int i = 0; i < rows; ++i) {
            const int64_t token = first_token_ + first + i / heads_, head = first_head_ + i % heads_;
            const float * row = (const float *) ((const char *) q->data + token * q->nb[1] + head * q->nb[2] + batch_ * q->nb[3]);
            float * scaled = s.q.data() + i * dk_;
            for (int64_t d = 0; d < dk_; ++d) {
                scaled[d] = row[d] * shape_.scale;
            }
            memset(s.acc.data() + i * dv_, 0, dv_ * sizeof(float));
            s.max[i] = -INFINITY;
            s.sum[i] = 0.0f;
        }
        const float * v_rows[STEP_CELLS];
        for (int c = 0; c < STEP_CELLS; ++c) {
            v_rows[c] = s.v.data() + c * dv_;
        }
        const int32_t * cells = s.longest.data();
        for (int64_t start = 0; start < listed; start += STEP_CELLS) {
            const int n = (int) std::min<int64_t>(STEP_CELLS, listed - start);
            const ggml_fp16_t * k_step[STEP_CELLS];
            for (int c = 0; c < n; ++c) {
                // The next step's rows, so that they arrive while this step computes.
                if (start + STEP_CELLS + c < listed) {
                    prefetch_row<_MM_HINT_T0>(k_base_ + cells[start + STEP_CELLS + c] * k->nb[1], dk_);
                    prefetch_row<_MM_HINT_T0>(v_base_ + cells[start + STEP_CELLS + c] * v->nb[1], dv_);
                }
                k_step[c] = (const ggml_fp16_t *) (k_base_ + cells[start + c] * k->nb[1]);
                const ggml_fp16_t * v_row = (const ggml_fp16_t *) (v_base_ + cells[start + c] * v->nb[1]);
                for (int64_t d = 0; d < dv_; d += 8) {
                    _mm256_storeu_ps(s.v.data() + c * dv_ + d, load_f16(v_row + d));
                }
            }
            transpose_step(k_step, n, dk_, s.kt.data());
            // Each token's mask values of the step's cells (hidden ones past its own are padding);
            // 8 at a time where the cells are contiguous (a sequence's own, as in most prompts).
            const bool contiguous = cells[start + n - 1] - cells[start] == n - 1;
            for (int t = first; t < end; ++t) {
                const ggml_fp16_t * mask = mask_row(shape_.mask, first_token_ + t, first_head_, batch_);
                int c = 0;
                if (mask && contiguous) {
                    for (; c + 8 <= n; c += 8) {
                        _mm256_storeu_ps(s.masks[t] + c, load_f16(mask + cells[start] + c));
                    }
                }
                for (; c < n; ++c) {
                    s.masks[t][c] = mask ? GGML_CPU_FP16_TO_FP32(mask[cells[start + c]]) : 0.0f;
                }
            }
            // The rows that still see cells in this step, and how many.
            int active[MAX_BLOCK_ROWS], seen[MAX_BLOCK_ROWS], count = 0;
            for (int i = 0; i < rows; ++i) {
                const int64_t visible = s.counts[first + i / heads_];
                if (visible > start) {
                    active[count] = i;
                    seen[count++] = (int) std::min<int64_t>(STEP_CELLS, visible - start);
                }
            }
            // Scores in tiles of SCORE_ROWS rows (the rest in 4, 2 and 1).
            for (int a = 0; a < count;) {
                const int left = count - a;
                const int tile = left >= SCORE_ROWS ? SCORE_ROWS : left >= 4 ? 4 : left >= 2 ? 2 : 1;
                const float * q_rows[SCORE_ROWS], * mask_rows[SCORE_ROWS];
                float * scores[SCORE_ROWS];
                for (int r = 0; r < tile; ++r) {
                    const int i = active[a + r];
                    q_rows[r] = s.q.data() + i * dk_;
                    mask_rows[r] = s.masks[first + i / heads_];
                    scores[r] = s.score[i];
                }
                switch (tile) {
                    case 1: transposed_scores<Floats, 1>(q_rows, s.kt.data(), dk_, mask_rows, scores); break;
                    case 2: transposed_scores<Floats, 2>(q_rows, s.kt.data(), dk_, mask_rows, scores); break;
                    case 4: transposed_scores<Floats, 4>(q_rows, s.kt.data(), dk_, mask_rows, scores); break;
                    default: transposed_scores<Floats, SCORE_ROWS>(q_rows, s.kt.data(), dk_, mask_rows, scores); break;
                }
                a += tile;
            }
            for (int a = 0; a < count; ++a) {
                const int i = active[a];
                softmax_step(s.score[i], seen[a], s.max[i], s.sum[i], s.acc.data() + i * dv_, dv_);
            }
            for (int a = 0; a < count; a += 4) {
                const int tile = std::min(4, count - a);
                float * acc_rows[4];
                const float * weights[4];
                int shared = STEP_CELLS;
                for (int r = 0; r < tile; ++r) {
                    acc_rows[r] = s.acc.data() + active[a + r] * dv_;
                    weights[r] = s.score[active[a + r]];
                    shared = std::min(shared, seen[a + r]);
                }
                switch (tile) {
                    case 1: accumulate<1>(acc_rows, weights, v_rows, dv_, 0, shared); break;
                    case 2: accumulate<2>(acc_rows, weights, v_rows, dv_, 0, shared); break;
                    case 3: accumulate<3>(acc_rows, weights, v_rows, dv_, 0, shared); break;
                    default: accumulate<4>(acc_rows, weights, v_rows, dv_, 0, shared); break;
                }
                // The rest of each row's cells (the last step of a causal block), row by row.
                for (int r = 0; r < tile; ++r) {
                    if (seen[a + r] > shared) {
                        accumulate<1>(acc_rows + r, weights + r, v_rows, dv_, shared, seen[a + r]);
                    }
                }
            }
        }
        for (int i = 0; i < rows; ++i) {
            write_row(shape_.dst, first_token_ + first + i / heads_, first_head_ + i % heads_, batch_, s.acc.data() + i * dv_, s.sum[i], dv_);
        }
    }

    const Shape & shape_;
    int64_t first_token_, batch_, kv_head_, first_head_, dk_, dv_;
    int tokens_, heads_;
    const char * k_base_, * v_base_;
};



// The shape when this kernel takes the operation, else false.
bool take(const ggml_compute_params * params, ggml_tensor * dst, Shape & shape) {
    const ggml_tensor * q = dst->src[0], * k = dst->src[1], * v = dst->src[2], * mask = dst->src[3];
    float scale, max_bias, logit_softcap;
    memcpy(&scale, (const float *) dst->op_params + 0, sizeof(float));
    memcpy(&max_bias, (const float *) dst->op_params + 1, sizeof(float));
    memcpy(&logit_softcap, (const float *) dst->op_params + 2, sizeof(float));
    const int32_t precision = dst->op_params[3];
    if (params->use_ref || dst->src[4] || max_bias != 0.0f || logit_softcap != 0.0f ||
        (precision != GGML_PREC_DEFAULT && precision != GGML_PREC_F32)) {
        return false;
    }
    if (q->type != GGML_TYPE_F32 || k->type != GGML_TYPE_F16 || v->type != GGML_TYPE_F16 || dst->type != GGML_TYPE_F32 ||
        (mask && mask->type != GGML_TYPE_F16)) {
        return false;
    }
    const int64_t dk = k->ne[0], dv = v->ne[0];
    if (dk % 8 || dv % 8 || dk > MAX_HEAD_DIM || dv > MAX_HEAD_DIM || q->ne[0] != dk || dst->ne[0] != dv) {
        return false;
    }
    if (q->nb[0] != sizeof(float) || k->nb[0] != sizeof(ggml_fp16_t) || v->nb[0] != sizeof(ggml_fp16_t) ||
        dst->nb[0] != sizeof(float) || (mask && mask->nb[0] != sizeof(ggml_fp16_t))) {
        return false;
    }
    if (k->ne[1] != v->ne[1] || k->ne[2] != v->ne[2] || q->ne[2] % k->ne[2] || q->ne[3] % k->ne[3] || q->ne[3] % v->ne[3]) {
        return false;
    }
    if (mask && (mask->ne[0] < k->ne[1] || mask->ne[1] < q->ne[1])) {
        return false;
    }
    if (k->ne[1] > INT32_MAX) {
        return false;
    }
    shape = Shape{q, k, v, mask, dst, scale, q->ne[2] / k->ne[2], 1, 0, 0, q->ne[1] < GGML_FA_TILE_Q, false, 1};
    // Heads of 256 (Gemma 2 and 3) take Blocks too, though their f32 steps (32 KB each for K and
    // V) leave the L1 cache: with the transposed K, a 508-token prompt of the Gemma 3 270M shape
    // ran 4% faster on Blocks than on Units (it was slower before).
    if (q->ne[1] >= PROMPT_TOKENS) {
        // Prompts: blocks of all the heads of a K/V head (one, if the mask differs per head) and
        // enough tokens for about BLOCK_ROWS rows; smaller blocks where there would be too few to
        // share between the threads.
        const int64_t group = (mask && mask->ne[2] > 1) ? 1 : std::min<int64_t>(shape.heads_per_kv, MAX_BLOCK_ROWS);
        shape.prompt = true;
        shape.group = group;
        shape.groups_per_kv = (shape.heads_per_kv + group - 1) / group;
        shape.tokens_per_block = std::max<int64_t>(1, BLOCK_ROWS / group);
        auto units_of = [&](int64_t tokens) { return q->ne[3] * ((q->ne[1] + tokens - 1) / tokens) * k->ne[2] * shape.groups_per_kv; };
        while (shape.tokens_per_block > 1 && units_of(shape.tokens_per_block) < 4 * params->nth) {
            shape.tokens_per_block /= 2;
        }
        shape.units = units_of(shape.tokens_per_block);
        return true;
    }
    // Heads per unit: each unit streams its K/V rows once (and converts them from f16) for all
    // its heads, so larger groups read the cache fewer times, but they make fewer units to
    // share between the threads. Pick the group with the least work on the busiest thread,
    // counting a pass over the rows as PASS_COST heads' arithmetic. Decoding one token of
    // Gemma 3 (4 heads a K/V head) on 2 threads: 2 units of 2 heads, where 4 units of 1 head
    // read each layer's cache 4 times (13% of generation at 600 cached tokens).
    // Heads share one mask row unless the mask differs per head.
    constexpr int64_t PASS_COST = 2;
    const int64_t largest = (mask && mask->ne[2] > 1) ? 1 : std::min<int64_t>(shape.heads_per_kv, MAX_GROUP);
    auto units_of = [&](int64_t g) { return q->ne[3] * q->ne[1] * k->ne[2] * ((shape.heads_per_kv + g - 1) / g); };
    int64_t group = 0, best_cost = 0;
    for (int64_t g = largest; g >= 1; --g) {
        const int64_t units = units_of(g);
        if (units < params->nth) {
            continue;
        }
        const int64_t cost = (units + params->nth - 1) / params->nth * (PASS_COST + g);
        if (group == 0 || cost < best_cost) {
            group = g;
            best_cost = cost;
        }
    }
    if (group == 0) {
        return false;  // fewer units than threads: ggml splits the cache between threads instead
    }
    shape.group = group;
    shape.groups_per_kv = (shape.heads_per_kv + group - 1) / group;
    shape.units = units_of(group);
    return true;
}

}  // namespace

extern "C" void ggml_compute_forward_flash_attn_ext(const struct ggml_compute_params * params, struct ggml_tensor * dst) {
    Shape shape;
    if (!take(params, dst, shape)) {
        ggml_compute_forward_flash_attn_ext_ggml(params, dst);
        return;
    }
    if (shape.prompt) {
        for (int64_t unit = params->ith; unit < shape.units; unit += params->nth) {
            Block(shape, unit).run();
        }
        return;
    }
    switch (shape.group) {
        case 1: run_units<1>(shape, params->ith, params->nth); break;
        case 2: run_units<2>(shape, params->ith, params->nth); break;
        case 3: run_units<3>(shape, params->ith, params->nth); break;
        default: run_units<4>(shape, params->ith, params->nth); break;
    }
}
