/*
 * dsk_avx2_act8.c - the AVX2 int8-activation decode product (dsk_act8_tmpl.h) with vpmaddubsw,
 * which multiplies unsigned by signed bytes and adds adjacent pairs into saturating int16:
 *
 * - I8: the sign trick (as in llama.cpp's q8_0 dot): |w| times x carrying w's sign, so each pair
 *   is at most 2 * 127 * 127 = 32258 and never saturates; vpmaddwd with ones widens the pairs to
 *   int32 every step. No offset.
 * - int4: the stored nibble q + 8 (0..15) is the unsigned operand as it is; a pair is at most
 *   2 * 15 * 127 = 3810, so the int16 pairs of a whole 128-input group (4 steps, 15240) add up
 *   without saturating and are widened once per group. The offset 8 * sum(q_x) is removed per
 *   group.
 */
#include "dsk_impl.h"

#include <float.h>
#include <immintrin.h>
#include <math.h>

typedef struct {
    __m256i u; /* the unsigned operand: |q| (I8) or the nibbles */
    __m256i s; /* I8: q, whose signs go onto x */
} a8w_t;

#define A8_BIAS(dt) ((dt) == DSK_DTYPE_I8 ? 0 : 8)
/* Rows per tile: 2 * R * T accumulators plus the weights, x, and constants in 16 registers. */
#define A8_R1       4
#define A8_R2       2
#define A8_R3       1
#define A8_R4       1
#define A8_FALLBACK dsk_avx2_matmul_f32act
#define A8_TG_MAX   64 /* I8 in token groups up to 64 tokens (dsk_act8_tmpl.h): prefills too */
#define A8_TILE_Q4  a8_tile_q4x64
#define A8_QUANTIZE dsk_avx2_act8_quantize
#define A8_Q4L      dsk_avx2_q4l_matmul /* int4 repacked at load (dsk_avx2_q4l.c) */

/*
 * dsk_act8_quantize, 8 inputs per op: per group of g (a multiple of 32) the largest magnitude with
 * vmaxps (which, like the reference's comparison, passes over a NaN input; the NaN is flagged
 * separately), then each input times 127 / amax rounded to the nearest even integer (vroundps:
 * the reference's add-and-subtract of 1.5 * 2^23 for every |v| < 2^22), clamped by vmaxps /
 * vminps in the reference's order (NaN to -127), packed to bytes and summed. A partial last group,
 * and any g not a multiple of 32, go to the reference. tests/test_kernel_act8.c compares every bit.
 */
void dsk_avx2_act8_quantize(const float *x, int64_t k, int64_t g, int8_t *q, float *scale,
                            int32_t *sum)
{
    const __m256 sign = _mm256_set1_ps(-0.0f), lo = _mm256_set1_ps(-127.0f),
                 hi = _mm256_set1_ps(127.0f);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    int64_t c0 = 0, j = 0;
    for (; g > 0 && g % 32 == 0 && c0 + g <= k; c0 += g, j++) {
        __m256 amax = _mm256_setzero_ps(), nan = _mm256_setzero_ps();
        for (int64_t i = 0; i < g; i += 8) {
            const __m256 a = _mm256_andnot_ps(sign, _mm256_loadu_ps(x + c0 + i));
            amax = _mm256_max_ps(a, amax);
            nan = _mm256_or_ps(nan, _mm256_cmp_ps(a, a, _CMP_UNORD_Q));
        }
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        const float am = _mm_cvtss_f32(_mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1)));
        const float inv = am > 0 && am <= FLT_MAX ? 127.0f / am : 0.0f;
        const __m256 vinv = _mm256_set1_ps(inv);
        __m256i s = _mm256_setzero_si256();
        for (int64_t i = 0; i < g; i += 32) {
            __m256i v[4];
            for (int u = 0; u < 4; u++) {
                __m256 f = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + c0 + i + 8 * u), vinv),
                                           _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                f = _mm256_min_ps(_mm256_max_ps(f, lo), hi);
                v[u] = _mm256_cvtps_epi32(f);
                s = _mm256_add_epi32(s, v[u]);
            }
            const __m256i b =
                _mm256_packs_epi16(_mm256_packs_epi32(v[0], v[1]), _mm256_packs_epi32(v[2], v[3]));
            _mm256_storeu_si256((__m256i *)(q + c0 + i), _mm256_permutevar8x32_epi32(b, order));
        }
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
        scale[j] = _mm256_movemask_ps(nan) || !(am <= FLT_MAX) ? (float)NAN : am / 127.0f;
        sum[j] = _mm_cvtsi128_si32(s4);
    }
    if (c0 < k) /* the partial last group and the padding of q to 32 */
        dsk_act8_quantize(x + c0, k - c0, g, q + c0, scale + j, sum + j);
}

static inline __attribute__((always_inline)) a8w_t a8_prep(int dt, __m256i v)
{
    a8w_t w = {v, v};
    if (dt == DSK_DTYPE_I8)
        w.u = _mm256_sign_epi8(v, v);
    return w;
}

static inline __attribute__((always_inline)) __m256i a8_step(int dt, __m256i acc, a8w_t w,
                                                             __m256i x)
{
    if (dt == DSK_DTYPE_I8) {
        __m256i p = _mm256_maddubs_epi16(w.u, _mm256_sign_epi8(x, w.s));
        return _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_set1_epi16(1)));
    }
    return _mm256_add_epi16(acc, _mm256_maddubs_epi16(w.u, x));
}

static inline __attribute__((always_inline)) __m256i a8_i32(int dt, __m256i acc)
{
    return dt == DSK_DTYPE_I8 ? acc : _mm256_madd_epi16(acc, _mm256_set1_epi16(1));
}

#include "dsk_act8_tmpl.h"

/* x[c .. c+16) and x[c+32 .. c+48): the inputs of the low nibbles of a 32-byte int4 load at c. */
static inline __m256i q4_x_pair(const int8_t *q, int64_t c)
{
    return _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_load_si128((const __m128i *)(q + c))),
                                   _mm_load_si128((const __m128i *)(q + c + 32)), 1);
}

/* x of T tokens for the 64-input step at h: the inputs of the low (xl) and high (xh) nibbles. */
DSK_INLINE void q4_x_step(const a8_x_t *xq, const int T, int64_t h, __m256i *xl, __m256i *xh)
{
    for (int t = 0; t < T; t++) {
        xl[t] = q4_x_pair(xq->q[t], h);
        xh[t] = q4_x_pair(xq->q[t], h + 16);
    }
}

/* The 32 bytes at p split into their low and high nibbles (the unsigned operands). */
DSK_INLINE void q4_nibbles(const uint8_t *p, __m256i *lo, __m256i *hi)
{
    const __m256i nib = _mm256_set1_epi8(0x0f), v = _mm256_loadu_si256((const __m256i *)p);
    *lo = _mm256_and_si256(v, nib);
    *hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), nib);
}

/* The int16 pair sums of one row's 64-input step with one token's x. */
DSK_INLINE __m256i q4_dot64(__m256i lo, __m256i hi, __m256i xl, __m256i xh)
{
    return _mm256_add_epi16(_mm256_maddubs_epi16(lo, xl), _mm256_maddubs_epi16(hi, xh));
}

/* The f32 vector whose low four lanes are a and high four lanes b. */
static inline __m256 q4_halves(float a, float b)
{
    return _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_set1_ps(a)), _mm_set1_ps(b), 1);
}

/*
 * Groups of 32, eight at a time (four 64-input steps; returns the inputs done, a multiple of 256):
 * each step's int32 vector holds group g + 2k in its low lane and g + 2k + 1 in its high lane, four
 * partial sums each; two rounds of horizontal adds over the four steps leave one vector of the
 * eight group sums in the order Q4_G8_ORDER, converted and scaled once for the eight (the per-step
 * path builds a two-valued scale vector and converts for every two groups). Scales and offsets are
 * permuted into that order.
 */
#define Q4_G8_ORDER _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7)
DSK_INLINE int64_t q4_g32_by_eight(const uint8_t *const *rows, const float *const *ws, const int R,
                                   int64_t whole, const a8_x_t *xq, const int T,
                                   __m256 tot[][A8_N_MAX])
{
    const __m256i ones = _mm256_set1_epi16(1), order = Q4_G8_ORDER;
    int64_t c = 0;
    for (; c + 256 <= whole; c += 256) {
        const int64_t g = c / 32;
        __m256i pair[4][A8_N_MAX], sums[4][A8_N_MAX];
        for (int i = 0; i < R; i++)
            for (int t = 0; t < T; t++)
                pair[i][t] = sums[i][t] = _mm256_setzero_si256();
        for (int k = 0; k < 4; k++) {
            const int64_t h = c + 64 * k;
            __m256i xl[A8_N_MAX], xh[A8_N_MAX];
            q4_x_step(xq, T, h, xl, xh);
            for (int i = 0; i < R; i++) {
                __m256i lo, hi;
                q4_nibbles(rows[i] + h / 2, &lo, &hi);
                for (int t = 0; t < T; t++) {
                    const __m256i d = _mm256_madd_epi16(q4_dot64(lo, hi, xl[t], xh[t]), ones);
                    if (k % 2 == 0)
                        pair[i][t] = d;
                    else if (k == 1)
                        sums[i][t] = _mm256_hadd_epi32(pair[i][t], d);
                    else
                        sums[i][t] =
                            _mm256_hadd_epi32(sums[i][t], _mm256_hadd_epi32(pair[i][t], d));
                }
            }
        }
        for (int t = 0; t < T; t++) {
            const __m256i corr = _mm256_permutevar8x32_epi32(
                _mm256_loadu_si256((const __m256i *)(xq->corr[t] + g)), order);
            const __m256 xs = _mm256_permutevar8x32_ps(_mm256_loadu_ps(xq->scale[t] + g), order);
            for (int i = 0; i < R; i++) {
                const __m256 s =
                    _mm256_mul_ps(_mm256_permutevar8x32_ps(_mm256_loadu_ps(ws[i] + g), order), xs);
                tot[i][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(sums[i][t], corr)),
                                            s, tot[i][t]);
            }
        }
    }
    return c;
}

/*
 * The int4 tile (A8_TILE_Q4, same contract as a8_tile): 64 inputs per 32-byte load. The load holds
 * two 16-byte chunks, inputs c..c+31 and c+32..c+63, each byte j of a chunk input j (low nibble)
 * and 16 + j (high nibble); so the low nibbles are inputs c+0..15 | c+32..47 and the high ones
 * c+16..31 | c+48..63 by 128-bit lane, one AND and one shift + AND for 64 values where a8_load_w
 * spends a shift, an insert and an AND on 32. x is loaded in the same lane order (q4_x_pair).
 * Groups of 32 (I4_G32): eight groups at a time through q4_g32_by_eight, then each remaining step
 * covers groups g and g + 1, one per lane, folded into the totals with a two-valued scale vector;
 * groups of 128: two steps per group, int16 sums as in a8_step (four pair sums of at most 3810
 * each). Whatever is left of the chunk after the whole steps (a
 * last group shorter than the step) goes through a8_tile's own 32-input path.
 */
DSK_INLINE void a8_tile_q4x64(int dt, const dsk_matrix_t *w, int64_t r, const int R,
                              const int64_t rs, int64_t k0, int64_t kc, const a8_x_t *xq,
                              const int T, float *y, int64_t ldy, int accumulate)
{
    const int64_t G = a8_group(dt), K = w->cols, row_bytes = dsk_dtype_row_bytes(dt, K);
    const int64_t sc_cols = (K + G - 1) / G, step = G == 32 ? 64 : 128;
    const int64_t whole = kc / step * step; /* inputs in whole steps */
    const __m256i ones = _mm256_set1_epi16(1);
    const uint8_t *rows[4];
    const float *ws[4];
    __m256 tot[4][A8_N_MAX];
    for (int i = 0; i < R; i++) {
        rows[i] = (const uint8_t *)w->data + (r + i * rs) * row_bytes + k0 / 2;
        ws[i] = w->scale_inv + (r + i * rs) * sc_cols + k0 / G;
        for (int t = 0; t < T; t++)
            tot[i][t] = _mm256_setzero_ps();
    }
    for (int64_t c = G == 32 ? q4_g32_by_eight(rows, ws, R, whole, xq, T, tot) : 0; c < whole;
         c += step) {
        const int64_t g = c / G;
        __m256i acc[4][A8_N_MAX];
        for (int i = 0; i < R; i++)
            for (int t = 0; t < T; t++)
                acc[i][t] = _mm256_setzero_si256();
        for (int64_t h = c; h < c + step; h += 64) {
            __m256i xl[A8_N_MAX], xh[A8_N_MAX];
            q4_x_step(xq, T, h, xl, xh);
            for (int i = 0; i < R; i++) {
                __m256i lo, hi;
                q4_nibbles(rows[i] + h / 2, &lo, &hi);
                for (int t = 0; t < T; t++)
                    acc[i][t] = _mm256_add_epi16(acc[i][t], q4_dot64(lo, hi, xl[t], xh[t]));
            }
        }
        for (int t = 0; t < T; t++) {
            /* the offset -8 sum(q_x) of each group in lane 0 of its half */
            const int32_t c1 = G == 32 ? xq->corr[t][g + 1] : 0;
            const __m256i corr =
                _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_cvtsi32_si128(xq->corr[t][g])),
                                        _mm_cvtsi32_si128(c1), 1);
            for (int i = 0; i < R; i++) {
                const __m256i d = _mm256_add_epi32(_mm256_madd_epi16(acc[i][t], ones), corr);
                const __m256 s = G == 32 ? q4_halves(ws[i][g] * xq->scale[t][g],
                                                     ws[i][g + 1] * xq->scale[t][g + 1])
                                         : _mm256_set1_ps(ws[i][g] * xq->scale[t][g]);
                tot[i][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d), s, tot[i][t]);
            }
        }
    }
    for (int i = 0; i < R; i++)
        for (int t = 0; t < T; t++)
            a8_put(tot[i][t], y + t * ldy + i * rs, accumulate);
    if (whole < kc) /* the rest of the chunk: its groups from input `whole` on */
        a8_tile_from(dt, w, r, R, rs, k0, kc, xq, T, y, ldy, 1, whole / G);
}

void dsk_ops_fill_avx2_act8(dsk_ops_t *ops)
{
    a8_fill(ops);
}
