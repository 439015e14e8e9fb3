// corral's attention for ggml's x86 CPU backends (AVX2 variants): GGML_OP_FLASH_ATTN_EXT for
// small query batches (decoding one or many sequences, short prompt tails) over an F16 KV cache,
// and for prompts of models with heads of 256 shared by 4 or more query heads (see take()).
//
// For fewer than GGML_FA_TILE_Q query tokens ggml walks the cache one cell at a time per query
// row: an f16 dot product (Q rounded to f16), a scalar exp, and a multiply-add into an f16
// accumulator, converted both ways at every cell. With a long shared prefix (1,000 cached tokens
// and a few new question tokens) that was most of the time to first token, and with many
// sequences in one unified cache each row also tests every other sequence's cells.
//
// Here one unit of work is one query token with the (up to 4) query heads that share a K/V head:
// - the token's mask row is scanned 16 cells at a time for the visible cells, so other
//   sequences' cells cost one compare;
// - each K and V row of a visible cell is converted from f16 once and serves every head of the
//   group; scores and the softmax (ggml's vectorised exp) are computed 32 cells at a time;
// - where a sequence's cells are scattered (many sequences generating in one cache), the K and
//   V rows are prefetched a few cells ahead: 8 streams generate about 8% faster;
// - the accumulator stays in f32.
//
// Arithmetic, per query row (bit for bit the same in every variant, batch, thread split and
// head grouping, and wherever the visible cells sit in the cache: a row's result depends only
// on its own sequence of visible cells):
//     in steps of 32 visible cells (the last step may be shorter):
//         s_c = dot(q * scale, k_c) + mask_c           (f32, 8 lanes, lanes summed pairwise)
//         M'  = max(M, max_c s_c);  A *= exp(M - M');  S *= exp(M - M')
//         p_c = exp(s_c - M');  S += sum_c p_c;  A += sum_c p_c v_c      (in cell order)
//     out = A * (1 / S)   (0 when no cell is visible)
// ggml rounds Q and the accumulator to f16, so results differ from ggml's in the low bits
// (core/tests/attention.rs checks this kernel against exact attention and for batch
// independence).
//
// Linked into each AVX2-capable libggml-cpu-<variant>.so by core/build.rs, like the quantized
// GEMM: ggml's own `ggml_compute_forward_flash_attn_ext` is renamed with a `_ggml` suffix in the
// variant's ops.cpp object, and every case this kernel does not take (other cache types, ALiBi,
// logit soft-capping, attention sinks, other prompts, ggml's reference mode, too few
// units of work for the threads) goes to it unchanged.

#include <immintrin.h>
#include <algorithm>
#include <vector>
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
constexpr int PREFETCH_CELLS = 8;   // how far ahead K rows are fetched
constexpr int64_t MAX_HEAD_DIM = 512;
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

// One query token with G query heads that share one K/V head.
template <int G>
class Unit {
public:
    Unit(const Shape & shape, int64_t unit) : shape_(shape) {
        const ggml_tensor * q = shape.q;
        int64_t per_token = q->ne[2] / shape.heads_per_kv * shape.groups_per_kv;
        int64_t group_index = unit % per_token;
        token_ = unit / per_token % q->ne[1];
        batch_ = unit / per_token / q->ne[1];
        kv_head_ = group_index / shape.groups_per_kv;
        first_head_ = kv_head_ * shape.heads_per_kv + group_index % shape.groups_per_kv * shape.group;
        heads_ = (int) std::min<int64_t>(G, kv_head_ * shape.heads_per_kv + shape.heads_per_kv - first_head_);
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
        }
        const int64_t k_batch = batch_ / (q->ne[3] / shape.k->ne[3]);
        const int64_t v_batch = batch_ / (q->ne[3] / shape.v->ne[3]);
        k_base_ = (const char *) shape.k->data + kv_head_ * shape.k->nb[2] + k_batch * shape.k->nb[3];
        v_base_ = (const char *) shape.v->data + kv_head_ * shape.v->nb[2] + v_batch * shape.v->nb[3];
    }

    void run() {
        // The cells this token sees, in cache order, with their mask values.
        thread_local std::vector<int64_t> cells;
        thread_local std::vector<float> masks;
        const ggml_tensor * mask = shape_.mask;
        const int64_t cache_cells = shape_.k->ne[1];
        if ((int64_t) cells.size() < cache_cells) {
            cells.resize(cache_cells);
            masks.resize(cache_cells);
        }
        int64_t total = 0;
        if (!mask) {
            for (int64_t c = 0; c < cache_cells; ++c) {
                cells[total] = c;
                masks[total++] = 0.0f;
            }
        } else {
            const ggml_fp16_t * row = (const ggml_fp16_t *) ((const char *) mask->data + token_ * mask->nb[1] +
                                                             (first_head_ % mask->ne[2]) * mask->nb[2] +
                                                             (batch_ % mask->ne[3]) * mask->nb[3]);
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
                        cells[total + i] = c + i;
                    }
                    total += 16;
                    continue;
                }
                while (visible) {
                    const int64_t cell = c + __builtin_ctz(visible) / 2;
                    cells[total] = cell;
                    masks[total++] = GGML_CPU_FP16_TO_FP32(row[cell]);
                    visible &= visible - 1;
                }
            }
            for (; c < cache_cells; ++c) {
                if (row[c] != F16_MINUS_INFINITY) {
                    cells[total] = c;
                    masks[total++] = GGML_CPU_FP16_TO_FP32(row[c]);
                }
            }
        }
        for (int64_t start = 0; start < total; start += STEP_CELLS) {
            step(cells.data() + start, masks.data() + start, (int) std::min<int64_t>(STEP_CELLS, total - start), total - start);
        }
        write();
    }

private:
    // One online-softmax step over n (<= STEP_CELLS) visible cells.
    // `listed`: visible cells from `cells` on, this step's and later ones (for prefetching).
    void step(const int64_t * cells, const float * masks, int n, int64_t listed) {
        const ggml_tensor * k = shape_.k, * v = shape_.v;
        // Two cells at a time: 2 x G independent dot products.
        int c = 0;
        for (; c + 2 <= n; c += 2) {
            // Fetch the K rows a few cells ahead, and this pair's V rows for the step's second
            // half, where the rows come from memory: in small query batches (decoding), whose
            // rows no other unit has just read, and where a sequence's cells are scattered
            // through a cache shared by many (8 sequences generating: every 8th cell, 3 KB
            // apart), which the hardware prefetchers do not follow. A long prompt's units read
            // the same contiguous rows again and again: those stay cached.
            if (c + PREFETCH_CELLS + 1 < listed &&
                (shape_.streamed || cells[c + PREFETCH_CELLS + 1] - cells[c] != PREFETCH_CELLS + 1)) {
                for (int a = 0; a < 2; ++a) {
                    prefetch_row(k_base_ + cells[c + PREFETCH_CELLS + a] * k->nb[1], dk_);
                    prefetch_row(v_base_ + cells[c + a] * v->nb[1], dv_);
                }
            }
            const ggml_fp16_t * k0 = (const ggml_fp16_t *) (k_base_ + cells[c] * k->nb[1]);
            const ggml_fp16_t * k1 = (const ggml_fp16_t *) (k_base_ + cells[c + 1] * k->nb[1]);
            __m256 dot0[G], dot1[G];
            for (int h = 0; h < G; ++h) {
                dot0[h] = _mm256_setzero_ps();
                dot1[h] = _mm256_setzero_ps();
            }
            for (int64_t d = 0; d < dk_; d += 8) {
                const __m256 kv0 = load_f16(k0 + d), kv1 = load_f16(k1 + d);
                for (int h = 0; h < G; ++h) {
                    const __m256 qv = _mm256_loadu_ps(q_[h] + d);
                    dot0[h] = _mm256_fmadd_ps(kv0, qv, dot0[h]);
                    dot1[h] = _mm256_fmadd_ps(kv1, qv, dot1[h]);
                }
            }
            for (int h = 0; h < G; ++h) {
                const __m128 sums = horizontal_sums(dot0[h], dot1[h]);
                score_[h][c] = _mm_cvtss_f32(sums) + masks[c];
                score_[h][c + 1] = _mm_cvtss_f32(_mm_movehdup_ps(sums)) + masks[c + 1];
            }
        }
        if (c < n) {
            const ggml_fp16_t * k0 = (const ggml_fp16_t *) (k_base_ + cells[c] * k->nb[1]);
            __m256 dot0[G];
            for (int h = 0; h < G; ++h) {
                dot0[h] = _mm256_setzero_ps();
            }
            for (int64_t d = 0; d < dk_; d += 8) {
                const __m256 kv0 = load_f16(k0 + d);
                for (int h = 0; h < G; ++h) {
                    dot0[h] = _mm256_fmadd_ps(kv0, _mm256_loadu_ps(q_[h] + d), dot0[h]);
                }
            }
            for (int h = 0; h < G; ++h) {
                score_[h][c] = _mm_cvtss_f32(horizontal_sums(dot0[h], dot0[h])) + masks[c];
            }
        }
        for (int h = 0; h < G; ++h) {
            for (int c = n; c < STEP_CELLS; ++c) {
                score_[h][c] = -INFINITY;
            }
            __m256 step_max = _mm256_loadu_ps(score_[h]);
            for (int c = 8; c < STEP_CELLS; c += 8) {
                step_max = _mm256_max_ps(step_max, _mm256_loadu_ps(score_[h] + c));
            }
            const float new_max = std::max(max_[h], horizontal_max(step_max));
            if (new_max == -INFINITY) {
                // Every score is -inf (an infinite dot product): nothing to add.
                for (int c = 0; c < STEP_CELLS; ++c) {
                    score_[h][c] = 0.0f;
                }
                continue;
            }
            if (new_max > max_[h]) {
                const float rescale = expf(max_[h] - new_max);
                const __m256 r = _mm256_set1_ps(rescale);
                for (int64_t d = 0; d < dv_; d += 8) {
                    _mm256_storeu_ps(acc_[h] + d, _mm256_mul_ps(_mm256_loadu_ps(acc_[h] + d), r));
                }
                sum_[h] *= rescale;
                max_[h] = new_max;
            }
            const __m256 m = _mm256_set1_ps(new_max);
            __m256 step_sum = _mm256_setzero_ps();
            for (int c = 0; c < STEP_CELLS; c += 8) {
                const __m256 s = _mm256_loadu_ps(score_[h] + c);
                // exp(-inf) is 0 in ggml's approximation too, but padding must add exactly nothing.
                const __m256 p = _mm256_and_ps(exp_ps(_mm256_sub_ps(s, m)), _mm256_cmp_ps(s, _mm256_set1_ps(-INFINITY), _CMP_NEQ_OQ));
                _mm256_storeu_ps(score_[h] + c, p);
                step_sum = _mm256_add_ps(step_sum, p);
            }
            sum_[h] += horizontal_sum(step_sum);
        }
        const ggml_fp16_t * v_rows[STEP_CELLS];
        for (int c = 0; c < n; ++c) {
            v_rows[c] = (const ggml_fp16_t *) (v_base_ + cells[c] * v->nb[1]);
        }
        int64_t d = 0;
        for (; d + 8 * V_BLOCKS <= dv_; d += 8 * V_BLOCKS) {
            accumulate_v<V_BLOCKS>(v_rows, n, d);
        }
        for (; d < dv_; d += 8) {
            accumulate_v<1>(v_rows, n, d);
        }
    }

    // acc[h][d, d + 8 * B) += sum over the step's cells of p[h][c] * v_c: G x B independent
    // chains of fmas (one chain per head and 8 dimensions would wait on fma latency).
    template <int B>
    void accumulate_v(const ggml_fp16_t * const * v_rows, int n, int64_t d) {
        __m256 a[G][B];
        for (int h = 0; h < G; ++h) {
            for (int b = 0; b < B; ++b) {
                a[h][b] = _mm256_loadu_ps(acc_[h] + d + 8 * b);
            }
        }
        for (int c = 0; c < n; ++c) {
            for (int b = 0; b < B; ++b) {
                const __m256 vv = load_f16(v_rows[c] + d + 8 * b);
                for (int h = 0; h < G; ++h) {
                    a[h][b] = _mm256_fmadd_ps(_mm256_broadcast_ss(&score_[h][c]), vv, a[h][b]);
                }
            }
        }
        for (int h = 0; h < G; ++h) {
            for (int b = 0; b < B; ++b) {
                _mm256_storeu_ps(acc_[h] + d + 8 * b, a[h][b]);
            }
        }
    }

    static void prefetch_row(const char * row, int64_t dims) {
        for (int64_t offset = 0; offset < dims * (int64_t) sizeof(ggml_fp16_t); offset += 64) {
            _mm_prefetch(row + offset, _MM_HINT_T0);
        }
    }

    // 8-float blocks of V per pass: as many accumulators as the 16 registers of AVX2 hold.
    static constexpr int V_BLOCKS = G <= 3 ? 4 : 2;

    void write() {
        ggml_tensor * dst = shape_.dst;
        for (int h = 0; h < heads_; ++h) {
            const float inverse = sum_[h] == 0.0f ? 0.0f : 1.0f / sum_[h];
            const int64_t head = first_head_ + h;
            // ggml's layout: the result is permuted (0, 2, 1, 3).
            float * out = (float *) ((char *) dst->data + (batch_ * dst->ne[2] * dst->ne[1] + head + token_ * dst->ne[1]) * dst->nb[1]);
            const __m256 r = _mm256_set1_ps(inverse);
            for (int64_t d = 0; d < dv_; d += 8) {
                _mm256_storeu_ps(out + d, _mm256_mul_ps(_mm256_loadu_ps(acc_[h] + d), r));
            }
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
};

template <int G>
void run_units(const Shape & shape, int ith, int nth) {
    for (int64_t unit = ith; unit < shape.units; unit += nth) {
        Unit<G>(shape, unit).run();
    }
}

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
    // Prompts go to ggml's tiled path, except with heads of 256 shared 4 or more to a K/V head
    // (Gemma 2 and 3): there this kernel ran 512-token prompts 11% faster on a 270M model, and
    // 2,000-token ones 24% (a sliding window hides most cells, and it skips hidden cells);
    // with heads of 64 (Qwen2.5, SmolLM2) the tiled path is as fast or faster.
    if (q->ne[1] >= GGML_FA_TILE_Q && (dk < 256 || q->ne[2] / k->ne[2] < MAX_GROUP)) {
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
    shape = Shape{q, k, v, mask, dst, scale, q->ne[2] / k->ne[2], 1, 0, 0, q->ne[1] < GGML_FA_TILE_Q};
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
    switch (shape.group) {
        case 1: run_units<1>(shape, params->ith, params->nth); break;
        case 2: run_units<2>(shape, params->ith, params->nth); break;
        case 3: run_units<3>(shape, params->ith, params->nth); break;
        default: run_units<4>(shape, params->ith, params->nth); break;
    }
}
