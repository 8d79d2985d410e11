/*
 * dsk_avx512_vnni.c - the AVX-512 VNNI int8-activation decode product (dsk_act8_tmpl.h):
 * vpdpbusd (256-bit, AVX512VL) adds the four unsigned x signed byte products of each int32 lane
 * into it without intermediate saturation, one instruction per 32 inputs, row and token.
 *
 * - I8: the weights are biased to unsigned (q + 128, 1..255, an XOR with 0x80), so the offset
 *   128 * sum(q_x) is removed per group (AVX-512 has no vpsignb for the sign trick).
 * - int4: the stored nibble q + 8 is the unsigned operand as it is; offset 8 * sum(q_x).
 *
 * Built with -mavx512vnni, so dsk_dispatch.c takes these slots only on CPUs that report
 * avx512vnni (level avx512vnni). From 2 (int4) or 5 (I8) to 64 tokens the product takes the
 * rows-in-lanes kernel of dsk_avx512_vnni_q4.c; more tokens the AVX-512 level's f32 GEMM.
 */
#include "dsk_impl.h"

#include <immintrin.h>

typedef __m256i a8w_t;

#define A8_BIAS(dt) ((dt) == DSK_DTYPE_I8 ? 128 : 8)
/* Rows per tile: 2 * R * T accumulators plus the weights and x in 32 registers. */
#define A8_R1       8
#define A8_R2       6
#define A8_R3       4
#define A8_R4       3
#define A8_FALLBACK dsk_avx512_matmul_f32act
#define A8_QUANTIZE dsk_avx2_act8_quantize /* an AVX-512 CPU has AVX2 */
#define A8_Q4L      dsk_vnni_q4l_matmul

static inline __attribute__((always_inline)) a8w_t a8_prep(int dt, __m256i v)
{
    return dt == DSK_DTYPE_I8 ? _mm256_xor_si256(v, _mm256_set1_epi8((char)0x80)) : v;
}

static inline __attribute__((always_inline)) __m256i a8_step(int dt, __m256i acc, a8w_t w,
                                                             __m256i x)
{
    (void)dt;
    return _mm256_dpbusd_epi32(acc, w, x);
}

static inline __attribute__((always_inline)) __m256i a8_i32(int dt, __m256i acc)
{
    (void)dt;
    return acc;
}

#include "dsk_act8_tmpl.h"

/*
 * Rows in vector lanes (dsk_avx512_vnni_q4.c) for int4 from Q4V_I4_MIN and I8 from Q4V_I8_MIN up
 * to DSK_Q4V_N_MAX tokens; below, the per-row tile above, which streams rows from memory faster
 * (one thread, 7168x2048 from DRAM, batch 1: int4 7-9 GB/s in lanes against 8-14 per row; in
 * lanes int4 at batch 4 is 1.5-2x and batches 16-64 2-4x the f32 path, docs/PERFORMANCE.md).
 * More tokens go to the f32 GEMM.
 */
#define Q4V_I4_MIN 2
#define Q4V_I8_MIN 5
#define DEF_LANES(DT, NAME, MIN)                                                                   \
    static void matmul_lanes_##NAME(const dsk_matrix_t *w, int64_t r0, int64_t r1, const float *x, \
                                    int64_t ldx, int64_t n, float *y, int64_t ldy)                 \
    {                                                                                              \
        if (w->layout != DSK_LAYOUT_ROWS)                                                          \
            dsk_vnni_q4l_matmul(w, r0, r1, x, ldx, n, y, ldy);                                     \
        else if (n < (MIN))                                                                        \
            matmul_a8_##NAME(w, r0, r1, x, ldx, n, y, ldy);                                        \
        else if (n > DSK_Q4V_N_MAX)                                                                \
            dsk_avx512_matmul_f32act(DT, w, r0, r1, x, ldx, n, y, ldy);                            \
        else                                                                                       \
            dsk_vnni_lanes_matmul(w, r0, r1, x, ldx, n, y, ldy);                                   \
    }
DEF_LANES(DSK_DTYPE_I8, i8, Q4V_I8_MIN)
DEF_LANES(DSK_DTYPE_I4_G32, i4a, Q4V_I4_MIN)
DEF_LANES(DSK_DTYPE_I4_G128, i4b, Q4V_I4_MIN)

void dsk_vnni_int_matmul(const dsk_matrix_t *w, int64_t r0, int64_t r1, const float *x, int64_t ldx,
                         int64_t n, float *y, int64_t ldy)
{
    if (w->dtype == DSK_DTYPE_I8)
        matmul_lanes_i8(w, r0, r1, x, ldx, n, y, ldy);
    else if (w->dtype == DSK_DTYPE_I4_G32)
        matmul_lanes_i4a(w, r0, r1, x, ldx, n, y, ldy);
    else
        matmul_lanes_i4b(w, r0, r1, x, ldx, n, y, ldy);
}

void dsk_ops_fill_avx512_vnni(dsk_ops_t *ops)
{
    a8_fill(ops);
    ops->matmul[DSK_DTYPE_I8] = matmul_lanes_i8;
    ops->matmul[DSK_DTYPE_I4_G32] = matmul_lanes_i4a;
    ops->matmul[DSK_DTYPE_I4_G128] = matmul_lanes_i4b;
    for (int d = DSK_DTYPE_I8; d <= DSK_DTYPE_I4_G128; d++)
        ops->a8_n_max[d] = DSK_Q4V_N_MAX;
}
