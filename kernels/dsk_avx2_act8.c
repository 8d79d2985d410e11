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

#include <immintrin.h>

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

void dsk_ops_fill_avx2_act8(dsk_ops_t *ops)
{
    a8_fill(ops);
}
