/*
 * dsk_simd_tmpl.h - the SIMD kernels written once over a small vector vocabulary, included by
 * each ISA file (dsk_avx2.c, dsk_avx512.c) after it defines that vocabulary for its registers.
 * Never include it anywhere else: every function here is static and compiled with the including
 * file's ISA flags.
 *
 * The including file defines:
 *   V, VL                 vector of VL floats
 *   v_zero() v_set1(f) v_loadu(p) v_storeu(p, v) v_add v_sub v_mul v_div v_min v_max
 *   v_fma(a, b, c)        a * b + c
 *   v_hsum(v) v_hmax(v)   horizontal sum / max to a float
 *   v_round(v)            to the nearest integer value (ties to even)
 *   v_pow2i(v)            2^v for integral v in [-126, 127]
 *   v_select_lt(a, b, x, y)  lane-wise a < b ? x : y
 *   v_load_bf16(p)        VL bf16 -> f32
 *   v_load_fp8(p)         VL e4m3 bytes -> f32 value / FP8_UNSCALE (an exact power of two)
 *   v_load_i8(p)          VL int8 -> f32
 *   v_load_q4(p, hi)      VL bytes -> f32 of their low (hi = 0) or high (hi = 1) nibble - 8
 *   q4_load32(p, V[32/VL])  one 16-byte int4 chunk -> its 32 values - 8, in input order
 *   FP8_UNSCALE           that power of two; FP8_X_SCALE (optional, default 1) moves part of
 *                         it onto x in the decode kernel
 *   FP8_WIDE (optional)   fp8_w_load4(p, V[4]) loads 4 * VL fp8 in a lane order of the ISA's
 *                         choosing and fp8_x_load4(x, V[4]) loads x in the same order, times
 *                         FP8_X_SCALE
 *   S_R1..S_R4            rows per register tile of the decode kernel for 1..4 tokens (fp8)
 *   S_R1_WIDE..S_R4_WIDE  the same for f32 and bf16 weights (optional, default S_R1..S_R4)
 *   G_T                   tokens per register tile of the GEMM micro-kernel (<= 12)
 *
 * Matmul strategy (the header dsk.h states the contract):
 * - decode, n <= 4: each weight vector is dequantized in registers once and used for all n
 *   tokens of an R x n register tile; per 128-column block the accumulators are folded into the
 *   running totals with that block's scale (one FMA per accumulator per block).
 * - 5 <= n <= TG_MAX (16): the decode tiles over groups of up to 4 tokens, rows in L2-sized
 *   blocks (mm_token_groups).
 * - larger n: a panel of G_NR rows x G_KC columns is dequantized (scale folded) and transposed into
 *   a stack buffer once, then a G_T x G_NR broadcast micro-kernel runs over all n tokens, so each
 *   weight byte is read from memory once and reused from L1 for every token.
 */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "dsk_transpose8.h"

#define DSK_INLINE  static inline __attribute__((always_inline))
#define G_NR        (2 * VL) /* weight rows (matmul) or columns (matmul_t) per micro-kernel */
#define G_KC        256      /* reduction length per packed panel; multiple of 8 and of VL */
#define SMALL_N_MAX 4        /* largest n of the register-tile decode kernel */
#define DT_F32      DSK_DTYPE_F32
#define DT_BF16     DSK_DTYPE_BF16
#define DT_FP8      DSK_DTYPE_F8_E4M3
#define DT_I8       DSK_DTYPE_I8
#define DT_I4A      DSK_DTYPE_I4_G32
#define DT_I4B      DSK_DTYPE_I4_G128
#define IS_Q(dt)    ((dt) >= DT_I8) /* row-wise integer formats */
#define Q_NV        (32 / VL)       /* vectors per 32 inputs */

/* ---- weight loading ---- */

static const size_t dt_size[DSK_DTYPE_COUNT] = {4, 2, 1, 1, 0, 0}; /* w_load_part: not int4 */

/* VL weights starting at element idx of w->data, without the fp8 block scale. */
DSK_INLINE V w_load(int dt, const void *data, int64_t idx)
{
    if (dt == DT_F32)
        return v_loadu((const float *)data + idx);
    if (dt == DT_BF16)
        return v_load_bf16((const uint16_t *)data + idx);
    return v_load_fp8((const uint8_t *)data + idx);
}

/* m < VL weights, zero-padded: reads exactly m elements, so tails never run off the tensor. */
DSK_INLINE V w_load_part(int dt, const void *data, int64_t idx, int m)
{
    _Alignas(64) unsigned char buf[VL * 4];
    memset(buf, 0, sizeof(buf));
    memcpy(buf, (const unsigned char *)data + (size_t)idx * dt_size[dt], (size_t)m * dt_size[dt]);
    return w_load(dt, buf, 0);
}

DSK_INLINE V x_load_part(const float *x, int m)
{
    _Alignas(64) float buf[VL];
    memset(buf, 0, sizeof(buf));
    memcpy(buf, x, (size_t)m * sizeof(float));
    return v_loadu(buf);
}

/*
 * The decode kernel multiplies x by FP8_X_SCALE (fp8 weights only) and each block accumulator by
 * w_scale(): together they undo v_load_fp8's 2^-k offset. An ISA whose fp8 loads come out tiny
 * (2^-120, see dsk_avx2.c) scales x up so that no product or sum is subnormal.
 */
#ifndef FP8_X_SCALE
#define FP8_X_SCALE 1.0f
#endif
DSK_INLINE V x_for(int dt, V xv)
{
    return dt == DT_FP8 && FP8_X_SCALE != 1.0f ? v_mul(xv, v_set1(FP8_X_SCALE)) : xv;
}

/* What multiplies a decode block accumulator: the fp8 block scale (x the rest of the offset). */
DSK_INLINE float w_scale(int dt, const dsk_matrix_t *w, int64_t r, int64_t c)
{
    if (dt != DT_FP8)
        return 1.0f;
    return dsk_block_scale(w, r, c) * (FP8_UNSCALE / FP8_X_SCALE);
}

/* What multiplies v_load_fp8's output to give the fp8 value, before the block scale. */
DSK_INLINE V fp8_unscale(V v, float scale)
{
    return v_mul(v_mul(v, v_set1(FP8_UNSCALE)), v_set1(scale));
}

/* ---- integer weights (dsk.h: row-wise group scales, int4 in 32-input chunks) ---- */

DSK_INLINE int64_t q_group(int dt)
{
    return dt == DT_I4A ? 32 : 128;
}

DSK_INLINE const uint8_t *q_row(int dt, const dsk_matrix_t *w, int64_t r)
{
    const int64_t stride = dt == DT_I8 ? w->cols : (w->cols + 31) / 32 * 16;
    return (const uint8_t *)w->data + r * stride;
}

/* The scales of row r: [ceil(cols / group)]. */
DSK_INLINE const float *q_scales(int dt, const dsk_matrix_t *w, int64_t r)
{
    const int64_t g = q_group(dt);
    return w->scale_inv + r * ((w->cols + g - 1) / g);
}

/*
 * VL values of a row from input c (a multiple of VL), without the scale. I8 reads VL bytes, so
 * c + VL <= cols; int4 reads inside c's 16-byte chunk, which the row always holds whole.
 */
DSK_INLINE V q_load(int dt, const uint8_t *row, int64_t c)
{
    if (dt == DT_I8)
        return v_load_i8((const int8_t *)row + c);
    return v_load_q4(row + (c >> 5) * 16 + (c & 15), (int)((c >> 4) & 1));
}

/* m < VL values from input c; int8 lanes >= m are zero, int4 lanes >= m are the row's padding. */
DSK_INLINE V q_load_part(int dt, const uint8_t *row, int64_t c, int m)
{
    if (dt != DT_I8)
        return q_load(dt, row, c);
    _Alignas(64) int8_t buf[VL];
    memset(buf, 0, sizeof(buf));
    memcpy(buf, row + c, (size_t)m);
    return v_load_i8(buf);
}

/* 32 values from input c (a multiple of 32, c + 32 <= cols for I8), in input order. */
DSK_INLINE void q_load32(int dt, const uint8_t *row, int64_t c, V out[Q_NV])
{
    if (dt == DT_I8) {
        for (int q = 0; q < Q_NV; q++)
            out[q] = v_load_i8((const int8_t *)row + c + q * VL);
    } else {
        q4_load32(row + (c >> 5) * 16, out);
    }
}

/*
 * W[r][c0 .. c0+k) dequantized with its scale into out[0 .. k). c0 is a multiple of VL, so no
 * vector straddles a 128-column scale block (nor a 32-input group or half int4 chunk).
 */
DSK_INLINE void w_row_f32(int dt, const dsk_matrix_t *w, int64_t r, int64_t c0, int64_t k,
                          float *out)
{
    if (IS_Q(dt)) {
        const uint8_t *row = q_row(dt, w, r);
        const float *sc = q_scales(dt, w, r);
        const int64_t g = q_group(dt);
        int64_t c = 0;
        for (; c + VL <= k; c += VL)
            v_storeu(out + c, v_mul(q_load(dt, row, c0 + c), v_set1(sc[(c0 + c) / g])));
        if (c < k) {
            _Alignas(64) float tmp[VL];
            v_storeu(tmp,
                     v_mul(q_load_part(dt, row, c0 + c, (int)(k - c)), v_set1(sc[(c0 + c) / g])));
            memcpy(out + c, tmp, (size_t)(k - c) * sizeof(float));
        }
        return;
    }
    const int64_t base = r * w->cols + c0;
    int64_t c = 0;
    for (; c + VL <= k; c += VL) {
        V v = w_load(dt, w->data, base + c);
        if (dt == DT_FP8)
            v = fp8_unscale(v, dsk_block_scale(w, r, c0 + c));
        v_storeu(out + c, v);
    }
    if (c < k) {
        _Alignas(64) float tmp[VL];
        V v = w_load_part(dt, w->data, base + c, (int)(k - c));
        if (dt == DT_FP8)
            v = fp8_unscale(v, dsk_block_scale(w, r, c0 + c));
        v_storeu(tmp, v);
        memcpy(out + c, tmp, (size_t)(k - c) * sizeof(float));
    }
}

/* ---- decode: R rows x T tokens register tile ---- */

/*
 * y[t * ldy + i * rs] = sum_c W[r + i * rs][c] x[t * ldx + c] for i < R, t < T (rows rs apart:
 * dsk_tile_row_stride). Non-fp8 weights have no blocks, so their accumulators run over the whole
 * row.
 */
DSK_INLINE void mm_small_tile(int dt, const dsk_matrix_t *w, int64_t r, const int R,
                              const int64_t rs, const float *x, int64_t ldx, const int T, float *y,
                              int64_t ldy)
{
    const int64_t K = w->cols;
    const int64_t blk = dt == DT_FP8 ? DSK_FP8_BLOCK : (K > 0 ? K : 1);
    V tot[8][SMALL_N_MAX];
    for (int i = 0; i < R; i++)
        for (int t = 0; t < T; t++)
            tot[i][t] = v_zero();
    for (int64_t c0 = 0; c0 < K; c0 += blk) {
        const int64_t c1 = c0 + blk < K ? c0 + blk : K;
        V acc[8][SMALL_N_MAX];
        for (int i = 0; i < R; i++)
            for (int t = 0; t < T; t++)
                acc[i][t] = v_zero();
        int64_t c = c0;
#ifdef FP8_WIDE
        /* 4 * VL fp8 weights at a time in the ISA's lane order; x permuted to match */
        for (; dt == DT_FP8 && T <= FP8_WIDE_TMAX && c + 4 * VL <= c1; c += 4 * VL) {
            V xq[SMALL_N_MAX][4];
            for (int t = 0; t < T; t++)
                fp8_x_load4(x + t * ldx + c, xq[t]);
            for (int i = 0; i < R; i++) {
                V wq[4];
                fp8_w_load4((const uint8_t *)w->data + (r + i * rs) * K + c, wq);
                for (int t = 0; t < T; t++)
                    for (int q = 0; q < 4; q++)
                        acc[i][t] = v_fma(wq[q], xq[t][q], acc[i][t]);
            }
        }
#endif
        for (; c + VL <= c1; c += VL) {
            V xv[SMALL_N_MAX];
            for (int t = 0; t < T; t++)
                xv[t] = x_for(dt, v_loadu(x + t * ldx + c));
            for (int i = 0; i < R; i++) {
                V wv = w_load(dt, w->data, (r + i * rs) * K + c);
                for (int t = 0; t < T; t++)
                    acc[i][t] = v_fma(wv, xv[t], acc[i][t]);
            }
        }
        if (c < c1) {
            const int m = (int)(c1 - c);
            V xv[SMALL_N_MAX];
            for (int t = 0; t < T; t++)
                xv[t] = x_for(dt, x_load_part(x + t * ldx + c, m));
            for (int i = 0; i < R; i++) {
                V wv = w_load_part(dt, w->data, (r + i * rs) * K + c, m);
                for (int t = 0; t < T; t++)
                    acc[i][t] = v_fma(wv, xv[t], acc[i][t]);
            }
        }
        for (int i = 0; i < R; i++) {
            V s = v_set1(w_scale(dt, w, r + i * rs, c0));
            for (int t = 0; t < T; t++)
                tot[i][t] = v_fma(acc[i][t], s, tot[i][t]);
        }
    }
    for (int i = 0; i < R; i++)
        for (int t = 0; t < T; t++)
            y[t * ldy + i * rs] = v_hsum(tot[i][t]);
}

#define DEF_MM_SMALL(DT, T, R)                                                                     \
    static void mm_small_##DT##_##T(const dsk_matrix_t *w, int64_t r0, int64_t r1, const float *x, \
                                    int64_t ldx, float *y, int64_t ldy)                            \
    {                                                                                              \
        DSK_ROW_TILES(                                                                             \
            r0, r1, (R), dsk_tile_row_stride(dsk_dtype_row_bytes(DT, w->cols)),                    \
            mm_small_tile(DT, w, tile_r, tile_n, tile_s, x, ldx, T, y + (tile_r - r0), ldy));      \
    }
#ifndef S_R1_WIDE
#define S_R1_WIDE S_R1
#define S_R2_WIDE S_R2
#define S_R3_WIDE S_R3
#define S_R4_WIDE S_R4
#endif
#define DEF_MM_SMALL_ALL(DT, R1, R2, R3, R4) \
    DEF_MM_SMALL(DT, 1, R1)                  \
    DEF_MM_SMALL(DT, 2, R2)                  \
    DEF_MM_SMALL(DT, 3, R3)                  \
    DEF_MM_SMALL(DT, 4, R4)
DEF_MM_SMALL_ALL(0, S_R1_WIDE, S_R2_WIDE, S_R3_WIDE, S_R4_WIDE)
DEF_MM_SMALL_ALL(1, S_R1_WIDE, S_R2_WIDE, S_R3_WIDE, S_R4_WIDE)
DEF_MM_SMALL_ALL(2, S_R1, S_R2, S_R3, S_R4)

/*
 * The decode tile for the integer formats: 32 inputs at a time (one int4 chunk), accumulators
 * folded into the totals with the row's scale once per group (32 or 128 inputs). x is read from
 * L1 inside the FMAs rather than held in registers, which leaves them to the R x T accumulators.
 */
DSK_INLINE void mmq_small_tile(int dt, const dsk_matrix_t *w, int64_t r, const int R,
                               const int64_t rs, const float *x, int64_t ldx, const int T, float *y,
                               int64_t ldy)
{
    const int64_t K = w->cols, G = q_group(dt);
    const uint8_t *rows[8];
    const float *sc[8];
    V tot[8][SMALL_N_MAX];
    for (int i = 0; i < R; i++) {
        rows[i] = q_row(dt, w, r + i * rs);
        sc[i] = q_scales(dt, w, r + i * rs);
        for (int t = 0; t < T; t++)
            tot[i][t] = v_zero();
    }
    for (int64_t c0 = 0, g = 0; c0 < K; c0 += G, g++) {
        const int64_t c1 = c0 + G < K ? c0 + G : K;
        V acc[8][SMALL_N_MAX];
        for (int i = 0; i < R; i++)
            for (int t = 0; t < T; t++)
                acc[i][t] = v_zero();
        int64_t c = c0;
        for (; c + 32 <= c1; c += 32) {
            for (int i = 0; i < R; i++) {
                V wq[Q_NV];
                q_load32(dt, rows[i], c, wq);
                for (int t = 0; t < T; t++)
                    for (int q = 0; q < Q_NV; q++)
                        acc[i][t] = v_fma(wq[q], v_loadu(x + t * ldx + c + q * VL), acc[i][t]);
            }
        }
        for (; c < c1; c += VL) {
            const int m = c1 - c < VL ? (int)(c1 - c) : VL;
            V xv[SMALL_N_MAX];
            for (int t = 0; t < T; t++)
                xv[t] = m == VL ? v_loadu(x + t * ldx + c) : x_load_part(x + t * ldx + c, m);
            for (int i = 0; i < R; i++) {
                V wv = m == VL ? q_load(dt, rows[i], c) : q_load_part(dt, rows[i], c, m);
                for (int t = 0; t < T; t++)
                    acc[i][t] = v_fma(wv, xv[t], acc[i][t]);
            }
        }
        for (int i = 0; i < R; i++) {
            V s = v_set1(sc[i][g]);
            for (int t = 0; t < T; t++)
                tot[i][t] = v_fma(acc[i][t], s, tot[i][t]);
        }
    }
    for (int i = 0; i < R; i++)
        for (int t = 0; t < T; t++)
            y[t * ldy + i * rs] = v_hsum(tot[i][t]);
}

#define DEF_MMQ_SMALL(DT, T, R)                                                                    \
    static void mm_small_##DT##_##T(const dsk_matrix_t *w, int64_t r0, int64_t r1, const float *x, \
                                    int64_t ldx, float *y, int64_t ldy)                            \
    {                                                                                              \
        DSK_ROW_TILES(                                                                             \
            r0, r1, (R), dsk_tile_row_stride(dsk_dtype_row_bytes(DT, w->cols)),                    \
            mmq_small_tile(DT, w, tile_r, tile_n, tile_s, x, ldx, T, y + (tile_r - r0), ldy));     \
    }
#define DEF_MMQ_SMALL_ALL(DT)  \
    DEF_MMQ_SMALL(DT, 1, Q_R1) \
    DEF_MMQ_SMALL(DT, 2, Q_R2) \
    DEF_MMQ_SMALL(DT, 3, Q_R3) \
    DEF_MMQ_SMALL(DT, 4, Q_R4)
DEF_MMQ_SMALL_ALL(3)
DEF_MMQ_SMALL_ALL(4)
DEF_MMQ_SMALL_ALL(5)

typedef void (*mm_small_fn)(const dsk_matrix_t *w, int64_t r0, int64_t r1, const float *x,
                            int64_t ldx, float *y, int64_t ldy);
static const mm_small_fn mm_small_fns[DSK_DTYPE_COUNT][SMALL_N_MAX + 1] = {
    {NULL, mm_small_0_1, mm_small_0_2, mm_small_0_3, mm_small_0_4},
    {NULL, mm_small_1_1, mm_small_1_2, mm_small_1_3, mm_small_1_4},
    {NULL, mm_small_2_1, mm_small_2_2, mm_small_2_3, mm_small_2_4},
    {NULL, mm_small_3_1, mm_small_3_2, mm_small_3_3, mm_small_3_4},
    {NULL, mm_small_4_1, mm_small_4_2, mm_small_4_3, mm_small_4_4},
    {NULL, mm_small_5_1, mm_small_5_2, mm_small_5_3, mm_small_5_4},
};

/* ---- GEMM: packed panel x broadcast tokens ---- */

/* The columns k..k+8 of 8 rows src[j * lds + k] written as 8 rows of 8: dst[i * ldd + j]. */
DSK_INLINE void transpose8(const float *src, int64_t lds, float *dst, int64_t ldd)
{
    __m256 r[8];
    for (int j = 0; j < 8; j++)
        r[j] = _mm256_loadu_ps(src + j * lds);
    dsk_transpose8(r);
    for (int i = 0; i < 8; i++)
        _mm256_storeu_ps(dst + i * ldd, r[i]);
}

#if VL == 8
/*
 * pack_rows_t's 8 whole rows [r, r + 8) x columns [c0, c0 + kc), kc a multiple of 32, straight
 * from the weights: each 8 x 8 block is converted and scaled in registers exactly as w_row_f32
 * does (the same operations in the same order, so the same values), transposed there and stored
 * once, where the general path stores every row to a stack buffer and reads it back to transpose.
 * The scales are read once per 32 columns (every group and fp8 block is a multiple of 32).
 */
DSK_INLINE void pack8_rows_t(int dt, const dsk_matrix_t *w, int64_t r, int64_t c0, int64_t kc,
                             float *dst)
{
    const uint8_t *qrow[8];
    float s[8];
    for (int64_t k = 0; k < kc; k += 32) {
        for (int j = 0; j < 8; j++) {
            if (IS_Q(dt)) {
                qrow[j] = q_row(dt, w, r + j);
                s[j] = q_scales(dt, w, r + j)[(c0 + k) / q_group(dt)];
            } else {
                s[j] = dsk_block_scale(w, r + j, c0 + k);
            }
        }
        for (int64_t kk = k; kk < k + 32; kk += 8) {
            V v[8];
            for (int j = 0; j < 8; j++) {
                if (IS_Q(dt))
                    v[j] = v_mul(q_load(dt, qrow[j], c0 + kk), v_set1(s[j]));
                else if (dt == DT_FP8)
                    v[j] = fp8_unscale(w_load(dt, w->data, (r + j) * w->cols + c0 + kk), s[j]);
                else
                    v[j] = w_load(dt, w->data, (r + j) * w->cols + c0 + kk);
            }
            dsk_transpose8(v);
            for (int j = 0; j < 8; j++)
                v_storeu(dst + (kk + j) * G_NR, v[j]);
        }
    }
}
#endif

/*
 * Pack for matmul: buf[k * G_NR + j] = W[rp + j][c0 + k] (scaled) for j < nr, k < kc; rows
 * j >= nr are zero. buf holds G_KC * G_NR floats; k is padded to a multiple of 8.
 */
DSK_INLINE void pack_rows_t(int dt, const dsk_matrix_t *w, int64_t rp, int nr, int64_t c0,
                            int64_t kc, float *buf)
{
    _Alignas(64) float tmp[8][G_KC];
    const int64_t kc8 = (kc + 7) & ~(int64_t)7;
    for (int j0 = 0; j0 < G_NR; j0 += 8) {
        if (j0 >= nr) {
            for (int64_t k = 0; k < kc8; k++)
                memset(buf + k * G_NR + j0, 0, 8 * sizeof(float));
            continue;
        }
#if VL == 8
        if (j0 + 8 <= nr && kc % 32 == 0) {
            pack8_rows_t(dt, w, rp + j0, c0, kc, buf + j0);
            continue;
        }
#endif
        for (int j = 0; j < 8; j++) {
            if (j0 + j < nr)
                w_row_f32(dt, w, rp + j0 + j, c0, kc, tmp[j]);
            else
                memset(tmp[j], 0, (size_t)kc * sizeof(float));
            for (int64_t k = kc; k < kc8; k++)
                tmp[j][k] = 0.0f;
        }
        for (int64_t k = 0; k < kc8; k += 8)
            transpose8(&tmp[0][k], G_KC, buf + k * G_NR + j0, G_NR);
    }
}

/*
 * Pack for matmul_t: buf[k * G_NR + j] = W[rk + k][c0 + j] (scaled) for j < nc, k < kc; columns
 * j >= nc are zero.
 */
DSK_INLINE void pack_rows(int dt, const dsk_matrix_t *w, int64_t rk, int64_t kc, int64_t c0, int nc,
                          float *buf)
{
    for (int64_t k = 0; k < kc; k++) {
        float *dst = buf + k * G_NR;
        w_row_f32(dt, w, rk + k, c0, nc, dst);
        for (int j = nc; j < G_NR; j++)
            dst[j] = 0.0f;
    }
}

/*
 * The micro-kernel: for t < T, j < nc (<= G_NR)
 *   y[t * ldy + j] (accumulate ? += : =) sum_{k < kc} buf[k * G_NR + j] * x[t * ldx + k].
 * 2 * T vector accumulators; each packed weight vector is loaded once per T tokens.
 */
DSK_INLINE void gemm_tile(const float *buf, int64_t kc, const float *x, int64_t ldx, const int T,
                          float *y, int64_t ldy, int nc, int accumulate)
{
    V a0[12], a1[12];
    for (int t = 0; t < T; t++) {
        a0[t] = v_zero();
        a1[t] = v_zero();
    }
    for (int64_t k = 0; k < kc; k++) {
        const V w0 = v_loadu(buf + k * G_NR), w1 = v_loadu(buf + k * G_NR + VL);
        for (int t = 0; t < T; t++) {
            const V b = v_set1(x[t * ldx + k]);
            a0[t] = v_fma(w0, b, a0[t]);
            a1[t] = v_fma(w1, b, a1[t]);
        }
    }
    for (int t = 0; t < T; t++) {
        float *yt = y + t * ldy;
        if (nc == G_NR) {
            if (accumulate) {
                a0[t] = v_add(a0[t], v_loadu(yt));
                a1[t] = v_add(a1[t], v_loadu(yt + VL));
            }
            v_storeu(yt, a0[t]);
            v_storeu(yt + VL, a1[t]);
        } else {
            _Alignas(64) float tmp[G_NR];
            v_storeu(tmp, a0[t]);
            v_storeu(tmp + VL, a1[t]);
            for (int j = 0; j < nc; j++)
                yt[j] = accumulate ? yt[j] + tmp[j] : tmp[j];
        }
    }
}

typedef void (*gemm_tile_fn)(const float *buf, int64_t kc, const float *x, int64_t ldx, float *y,
                             int64_t ldy, int nc, int accumulate);
#define DEF_GEMM_TILE(T)                                                                           \
    static void gemm_tile_##T(const float *buf, int64_t kc, const float *x, int64_t ldx, float *y, \
                              int64_t ldy, int nc, int accumulate)                                 \
    {                                                                                              \
        gemm_tile(buf, kc, x, ldx, T, y, ldy, nc, accumulate);                                     \
    }
DEF_GEMM_TILE(1)
DEF_GEMM_TILE(2)
DEF_GEMM_TILE(3)
DEF_GEMM_TILE(4)
DEF_GEMM_TILE(5)
DEF_GEMM_TILE(6)
#if G_T > 6
DEF_GEMM_TILE(7)
DEF_GEMM_TILE(8)
DEF_GEMM_TILE(9)
DEF_GEMM_TILE(10)
DEF_GEMM_TILE(11)
DEF_GEMM_TILE(12)
#endif
static const gemm_tile_fn gemm_tiles[G_T + 1] = {
    NULL,        gemm_tile_1, gemm_tile_2, gemm_tile_3,  gemm_tile_4,  gemm_tile_5,  gemm_tile_6,
#if G_T > 6
    gemm_tile_7, gemm_tile_8, gemm_tile_9, gemm_tile_10, gemm_tile_11, gemm_tile_12,
#endif
};

/* All n tokens against one packed panel, G_T tokens at a time. */
static void gemm_panel(const float *buf, int64_t kc, const float *x, int64_t ldx, int64_t n,
                       float *y, int64_t ldy, int nc, int accumulate)
{
    int64_t t = 0;
    for (; t + G_T <= n; t += G_T)
        gemm_tiles[G_T](buf, kc, x + t * ldx, ldx, y + t * ldy, ldy, nc, accumulate);
    if (t < n)
        gemm_tiles[n - t](buf, kc, x + t * ldx, ldx, y + t * ldy, ldy, nc, accumulate);
}

/*
 * Rows in blocks of G_MC (several packed panels, 64 KiB of stack in all), so each x micro-panel
 * (G_T tokens x G_KC floats) is reused from L1 by every panel of the block instead of streaming
 * all of x from L3 once per G_NR rows.
 */
#define G_MC 64
static void mm_gemm(int dt, const dsk_matrix_t *w, int64_t r0, int64_t r1, const float *x,
                    int64_t ldx, int64_t n, float *y, int64_t ldy)
{
    _Alignas(64) float buf[G_MC / G_NR][G_KC * G_NR];
    const int64_t K = w->cols;
    for (int64_t rb = r0; rb < r1; rb += G_MC) {
        const int64_t rb1 = r1 - rb < G_MC ? r1 : rb + G_MC;
        const int np = (int)((rb1 - rb + G_NR - 1) / G_NR);
        int nr[G_MC / G_NR];
        for (int p = 0; p < np; p++)
            nr[p] = (int)(rb1 - (rb + p * G_NR) < G_NR ? rb1 - (rb + p * G_NR) : G_NR);
        for (int64_t c0 = 0; c0 < K; c0 += G_KC) {
            const int64_t kc = K - c0 < G_KC ? K - c0 : G_KC;
            for (int p = 0; p < np; p++)
                pack_rows_t(dt, w, rb + p * G_NR, nr[p], c0, kc, buf[p]);
            for (int64_t t = 0; t < n; t += G_T) {
                const int64_t tn = n - t < G_T ? n - t : G_T;
                for (int p = 0; p < np; p++)
                    gemm_tiles[tn](buf[p], kc, x + t * ldx + c0, ldx,
                                   y + t * ldy + (rb + p * G_NR - r0), ldy, nr[p], c0 > 0);
            }
        }
    }
}

/*
 * Batched decode, SMALL_N_MAX < n <= TG_MAX tokens: the decode tiles over groups of up to
 * SMALL_N_MAX tokens, the rows in blocks of about TG_BLOCK weight bytes so that a block read from
 * memory for the first group is read from L2 by the others. The packed GEMM pays its panel packing
 * (dequantize, scale, transpose, store) for every weight, which 5-16 tokens do not amortize:
 * measured on Zen 3 (docs/PERFORMANCE.md, "Batched decode in token groups"), fp8 and bf16 at 8
 * tokens 1.5-2x; at 32 tokens the two are even.
 */
#define TG_MAX   16
#define TG_BLOCK (128 << 10)
/* Rows of a token-group block: a multiple of every tile height (8, 6, 4, 3, 2), so that no block
 * ends in a partial tile (bf16 rows of 7168 columns gave blocks of 9 rows: a 6-row tile and 3
 * single rows, 0.7x of one 4-token call per token). */
#define TG_ROWS 24
#ifndef TG_MAX_DT
#define TG_MAX_DT(dt) TG_MAX /* largest n of the token groups per dtype (the ISA may lower it) */
#endif
static void mm_token_groups(int dt, const dsk_matrix_t *w, int64_t r0, int64_t r1, const float *x,
                            int64_t ldx, int64_t n, float *y, int64_t ldy)
{
    const int64_t row_bytes = dsk_dtype_row_bytes((dsk_dtype_t)dt, w->cols);
    int64_t rows = TG_BLOCK / (row_bytes > 0 ? row_bytes : 1);
    rows = (rows + TG_ROWS - 1) / TG_ROWS * TG_ROWS;
    for (int64_t rb = r0; rb < r1; rb += rows) {
        const int64_t rb1 = r1 - rb < rows ? r1 : rb + rows;
        for (int64_t t = 0; t < n; t += SMALL_N_MAX) {
            const int64_t g = n - t < SMALL_N_MAX ? n - t : SMALL_N_MAX;
            mm_small_fns[dt][g](w, rb, rb1, x + t * ldx, ldx, y + t * ldy + (rb - r0), ldy);
        }
    }
}

#ifdef FP8_SLAB_R
/*
 * fp8, TG_MAX_DT < n <= FP8_SLAB_N_MAX tokens (the ISA defines FP8_SLAB_R, the rows of a slab):
 * FP8_SLAB_R rows are dequantized with their scales (the values of w_row_f32, which the packed
 * GEMM and the reference use) SLAB_KC columns at a time into an f32 slab, and an R rows x 4
 * tokens register tile runs every group of 4 tokens over it. Each weight is converted once per
 * call (the fp8 decode tile converts it once per group of 4 tokens, the packed GEMM also
 * transposes and stores it); the tile's accumulators (16 partial sums per row and token) live
 * across the column slices in accb and are summed once per row and token at the end, so the
 * outputs take no transpose. The slices are long (2048 columns: a 48 KiB slab in L2) so that a
 * tile runs long over its registers and each token's x is read in long runs: with 512 columns
 * fp8 ran 10-20% slower from 16 tokens on, with 256 slower again (every token's x row lies a
 * multiple of 4 KiB from the next at V3 widths, so the slices of 8 or more tokens share L1 sets
 * and never stay there; x comes from L2 either way). Zen 4, one thread: docs/KERNELS.md.
 */
#define SLAB_KC 2048
_Static_assert(SLAB_KC % VL == 0 && SLAB_KC % DSK_FP8_BLOCK == 0, "slices of whole vectors");

/*
 * Rows [r, r + R) of w, columns [k0, k0 + kc) (k0 a multiple of SLAB_KC), dequantized into
 * slab[i * SLAB_KC + c], the last vector zero-padded. One multiplication by FP8_UNSCALE x the
 * block scale: that product is exact (a power of two times the scale), so this rounds once, as
 * w_row_f32's (v x FP8_UNSCALE) x scale does, to the same value.
 */
DSK_INLINE void slab_fp8_fill(const dsk_matrix_t *w, int64_t r, int R, int64_t k0, int64_t kc,
                              float *slab)
{
    const int64_t K = w->cols;
    const int64_t bcols = (K + DSK_FP8_BLOCK - 1) / DSK_FP8_BLOCK;
    for (int i = 0; i < R; i++) {
        const float *srow = w->scale_inv + ((r + i) / DSK_FP8_BLOCK) * bcols;
        const uint8_t *wrow = (const uint8_t *)w->data + (r + i) * K + k0;
        float *dst = slab + i * SLAB_KC;
        int64_t c = 0;
        for (int64_t b = 0; b < kc; b += DSK_FP8_BLOCK) {
            const V s = v_set1(srow[(k0 + b) / DSK_FP8_BLOCK] * FP8_UNSCALE);
            const int64_t be = b + DSK_FP8_BLOCK < kc ? b + DSK_FP8_BLOCK : kc;
            for (; c + VL <= be; c += VL)
                v_storeu(dst + c, v_mul(v_load_fp8(wrow + c), s));
            if (c < be) { /* the row's last partial vector (only the last block has one) */
                v_storeu(dst + c, v_mul(w_load_part(DT_FP8, wrow, c, (int)(be - c)), s));
                c += VL;
            }
        }
    }
}

DSK_INLINE void slab_tile(const float *slab, int64_t kcv, const float *x, int64_t ldx, int64_t kc,
                          const int R, const int T, V *accb, int64_t n)
{
    V acc[FP8_SLAB_R][SMALL_N_MAX];
    for (int i = 0; i < R; i++)
        for (int t = 0; t < T; t++)
            acc[i][t] = accb[i * n + t];
    int64_t c = 0;
    for (; c + VL <= kc; c += VL) {
        V xv[SMALL_N_MAX];
        for (int t = 0; t < T; t++)
            xv[t] = v_loadu(x + t * ldx + c);
        for (int i = 0; i < R; i++) {
            const V wv = v_loadu(slab + i * SLAB_KC + c);
            for (int t = 0; t < T; t++)
                acc[i][t] = v_fma(wv, xv[t], acc[i][t]);
        }
    }
    if (c < kcv) { /* the slab is zero past kc; x is read only up to kc */
        V xv[SMALL_N_MAX];
        for (int t = 0; t < T; t++)
            xv[t] = x_load_part(x + t * ldx + c, (int)(kc - c));
        for (int i = 0; i < R; i++) {
            const V wv = v_loadu(slab + i * SLAB_KC + c);
            for (int t = 0; t < T; t++)
                acc[i][t] = v_fma(wv, xv[t], acc[i][t]);
        }
    }
    for (int i = 0; i < R; i++)
        for (int t = 0; t < T; t++)
            accb[i * n + t] = acc[i][t];
}

typedef void (*slab_tile_fn)(const float *slab, int64_t kcv, const float *x, int64_t ldx,
                             int64_t kc, V *accb, int64_t n);
#define DEF_SLAB_TILE(R, T) DEF_SLAB_TILE_(R, T)
#define DEF_SLAB_TILE_(R, T)                                                                     \
    static void slab_tile_##R##_##T(const float *slab, int64_t kcv, const float *x, int64_t ldx, \
                                    int64_t kc, V *accb, int64_t n)                              \
    {                                                                                            \
        slab_tile(slab, kcv, x, ldx, kc, R, T, accb, n);                                         \
    }
DEF_SLAB_TILE(FP8_SLAB_R, 1)
DEF_SLAB_TILE(FP8_SLAB_R, 2)
DEF_SLAB_TILE(FP8_SLAB_R, 3)
DEF_SLAB_TILE(FP8_SLAB_R, 4)
DEF_SLAB_TILE(1, 1)
DEF_SLAB_TILE(1, 2)
DEF_SLAB_TILE(1, 3)
DEF_SLAB_TILE(1, 4)
#define SLAB_FNS_(R)                                                                     \
    {                                                                                    \
        NULL, slab_tile_##R##_1, slab_tile_##R##_2, slab_tile_##R##_3, slab_tile_##R##_4 \
    }
#define SLAB_FNS(R) SLAB_FNS_(R)
static const slab_tile_fn slab_tiles[2][SMALL_N_MAX + 1] = {SLAB_FNS(1), SLAB_FNS(FP8_SLAB_R)};

static void mm_fp8_slab(const dsk_matrix_t *w, int64_t r0, int64_t r1, const float *x, int64_t ldx,
                        int64_t n, float *y, int64_t ldy)
{
    _Alignas(64) float slab[FP8_SLAB_R * SLAB_KC];
    _Alignas(64) V accb[FP8_SLAB_R * FP8_SLAB_N_MAX];
    const int64_t K = w->cols;
    for (int64_t r = r0; r < r1;) {
        const int R = r1 - r >= FP8_SLAB_R ? FP8_SLAB_R : 1;
        for (int64_t i = 0; i < R * n; i++)
            accb[i] = v_zero();
        for (int64_t k0 = 0; k0 < K; k0 += SLAB_KC) {
            const int64_t kc = K - k0 < SLAB_KC ? K - k0 : SLAB_KC;
            const int64_t kcv = (kc + VL - 1) / VL * VL;
            slab_fp8_fill(w, r, R, k0, kc, slab);
            /*
             * the next slice's rows (the next slice of these rows, or the next rows), prefetched
             * a share before each group of tokens, so they arrive while the FMAs run
             */
            int64_t pr = r, pk = k0 + SLAB_KC;
            if (pk >= K) {
                pr = r + R;
                pk = 0;
            }
            const int pn = pr + FP8_SLAB_R <= r1 ? FP8_SLAB_R : (int)(r1 - pr);
            const int64_t plines = ((K - pk < SLAB_KC ? K - pk : SLAB_KC) + 63) / 64;
            const int64_t ptotal = pr < r1 ? pn * plines : 0;
            const int64_t groups = (n + SMALL_N_MAX - 1) / SMALL_N_MAX;
            const int64_t pstep = (ptotal + groups - 1) / groups;
            int64_t p = 0;
            for (int64_t t = 0; t < n; t += SMALL_N_MAX) {
                for (const int64_t pe = p + pstep < ptotal ? p + pstep : ptotal; p < pe; p++)
                    _mm_prefetch((const char *)w->data + (pr + p % pn) * K + pk + (p / pn) * 64,
                                 _MM_HINT_T0);
                const int64_t g = n - t < SMALL_N_MAX ? n - t : SMALL_N_MAX;
                slab_tiles[R == FP8_SLAB_R][g](slab, kcv, x + t * ldx + k0, ldx, kc, accb + t, n);
            }
        }
        for (int i = 0; i < R; i++)
            for (int64_t t = 0; t < n; t++)
                y[t * ldy + (r + i - r0)] = v_hsum(accb[i * n + t]);
        r += R;
    }
}
#endif

static void mm_any(int dt, const dsk_matrix_t *w, int64_t r0, int64_t r1, const float *x,
                   int64_t ldx, int64_t n, float *y, int64_t ldy)
{
    if (n <= 0 || r1 <= r0)
        return;
    if (w->cols == 0) {
        for (int64_t t = 0; t < n; t++)
            memset(y + t * ldy, 0, (size_t)(r1 - r0) * sizeof(float));
        return;
    }
    if (n <= SMALL_N_MAX)
        mm_small_fns[dt][n](w, r0, r1, x, ldx, y, ldy);
    else if (n <= TG_MAX_DT(dt))
        mm_token_groups(dt, w, r0, r1, x, ldx, n, y, ldy);
#ifdef FP8_SLAB_R
    else if (dt == DT_FP8 && n <= FP8_SLAB_N_MAX)
        mm_fp8_slab(w, r0, r1, x, ldx, n, y, ldy);
#endif
    else
        mm_gemm(dt, w, r0, r1, x, ldx, n, y, ldy);
}

/*
 * matmul_t for n <= SMALL_N_MAX straight from the weights (no packing, whose extra store and load
 * per element would dominate at decode): y[t][c0 .. c0+nc) += sum_r W[r][c0 ..] x[t][r - r0].
 * The chunk [c0, c0 + G_NR) lies in one 128-column block, so each row has one scale, folded into
 * the broadcast token value.
 */
DSK_INLINE void mmt_direct_tile(int dt, const dsk_matrix_t *w, int64_t r0, int64_t r1, int64_t c0,
                                int nc, const float *x, int64_t ldx, const int T, float *y,
                                int64_t ldy)
{
    const int64_t K = w->cols;
    V a0[SMALL_N_MAX], a1[SMALL_N_MAX];
    for (int t = 0; t < T; t++) {
        a0[t] = v_zero();
        a1[t] = v_zero();
    }
    for (int64_t r = r0; r < r1; r++) {
        const int64_t base = r * K + c0;
        V w0, w1;
        if (IS_Q(dt)) {
            const uint8_t *row = q_row(dt, w, r);
            if (nc == G_NR) {
                w0 = q_load(dt, row, c0);
                w1 = q_load(dt, row, c0 + VL);
            } else {
                w0 = nc >= VL ? q_load(dt, row, c0) : q_load_part(dt, row, c0, nc);
                w1 = nc > VL ? q_load_part(dt, row, c0 + VL, nc - VL) : v_zero();
            }
            const float s = q_scales(dt, w, r)[c0 / q_group(dt)];
            for (int t = 0; t < T; t++) {
                const V b = v_set1(x[t * ldx + (r - r0)] * s);
                a0[t] = v_fma(w0, b, a0[t]);
                a1[t] = v_fma(w1, b, a1[t]);
            }
            continue;
        }
        if (nc == G_NR) {
            w0 = w_load(dt, w->data, base);
            w1 = w_load(dt, w->data, base + VL);
        } else {
            w0 = nc >= VL ? w_load(dt, w->data, base) : w_load_part(dt, w->data, base, nc);
            w1 = nc > VL ? w_load_part(dt, w->data, base + VL, nc - VL) : v_zero();
        }
        const float s = dt == DT_FP8 ? dsk_block_scale(w, r, c0) : 1.0f;
        for (int t = 0; t < T; t++) {
            float xs = x[t * ldx + (r - r0)];
            if (dt == DT_FP8)
                xs = xs * s * FP8_UNSCALE;
            const V b = v_set1(xs);
            a0[t] = v_fma(w0, b, a0[t]);
            a1[t] = v_fma(w1, b, a1[t]);
        }
    }
    for (int t = 0; t < T; t++) {
        float *yt = y + t * ldy + c0;
        _Alignas(64) float tmp[G_NR];
        v_storeu(tmp, a0[t]);
        v_storeu(tmp + VL, a1[t]);
        for (int j = 0; j < nc; j++)
            yt[j] += tmp[j];
    }
}

/*
 * matmul_t of one token (decode: MLA's absorbed W_UK^T q) over the columns [c0, c0 + MT_NV * VL),
 * which lie in one 128-column block: MT_NV independent accumulator chains and one broadcast per
 * row, where mmt_direct_tile's two chains wait on the FMA latency at every row. Every dtype; the
 * integer ones with the same products and sums as mmt_direct_tile (a chunk starts at a multiple
 * of 64 columns, so its 32-input int4 groups and 128-input scale groups lie whole in it).
 */
#define MT_NV 8
_Static_assert(DSK_FP8_BLOCK % (MT_NV * VL) == 0 && (MT_NV * VL) % 32 == 0,
               "a one-token matmul_t chunk spans fp8 blocks and whole int4 chunks");
DSK_INLINE void mmt_one_token_chunk(int dt, const dsk_matrix_t *w, int64_t r0, int64_t r1,
                                    int64_t c0, const float *x, float *y)
{
    const int64_t K = w->cols;
    V acc[MT_NV];
    for (int j = 0; j < MT_NV; j++)
        acc[j] = v_zero();
    for (int64_t r = r0; r < r1; r++) {
        float xs = x[r - r0];
        if (IS_Q(dt)) { /* each group's scale folded into x, as mmt_direct_tile does */
            const uint8_t *row = q_row(dt, w, r);
            const float *sc = q_scales(dt, w, r);
            V wv[MT_NV];
            for (int q = 0; q < MT_NV * VL / 32; q++)
                q_load32(dt, row, c0 + 32 * q, wv + q * Q_NV);
            V b = v_zero();
            for (int j = 0; j < MT_NV; j++) {
                if ((j * VL) % q_group(dt) == 0)
                    b = v_set1(xs * sc[(c0 + j * VL) / q_group(dt)]);
                acc[j] = v_fma(wv[j], b, acc[j]);
            }
            continue;
        }
        if (dt == DT_FP8)
            xs = xs * dsk_block_scale(w, r, c0) * FP8_UNSCALE;
        const V b = v_set1(xs);
        for (int j = 0; j < MT_NV; j++)
            acc[j] = v_fma(w_load(dt, w->data, r * K + c0 + j * VL), b, acc[j]);
    }
    for (int j = 0; j < MT_NV; j++)
        v_storeu(y + c0 + j * VL, v_add(v_loadu(y + c0 + j * VL), acc[j]));
}

#define DEF_MMT_DIRECT(DT, T)                                                             \
    static void mmt_direct_##DT##_##T(const dsk_matrix_t *w, int64_t r0, int64_t r1,      \
                                      const float *x, int64_t ldx, float *y, int64_t ldy) \
    {                                                                                     \
        int64_t c = 0;                                                                    \
        for (; (T) == 1 && c + MT_NV * VL <= w->cols; c += MT_NV * VL)                    \
            mmt_one_token_chunk(DT, w, r0, r1, c, x, y);                                  \
        for (int64_t c0 = c; c0 < w->cols; c0 += G_NR) {                                  \
            const int nc = (int)(w->cols - c0 < G_NR ? w->cols - c0 : G_NR);              \
            mmt_direct_tile(DT, w, r0, r1, c0, nc, x, ldx, T, y, ldy);                    \
        }                                                                                 \
    }
#define DEF_MMT_DIRECT_ALL(DT) \
    DEF_MMT_DIRECT(DT, 1)      \
    DEF_MMT_DIRECT(DT, 2)      \
    DEF_MMT_DIRECT(DT, 3)      \
    DEF_MMT_DIRECT(DT, 4)
DEF_MMT_DIRECT_ALL(0)
DEF_MMT_DIRECT_ALL(1)
DEF_MMT_DIRECT_ALL(2)
DEF_MMT_DIRECT_ALL(3)
DEF_MMT_DIRECT_ALL(4)
DEF_MMT_DIRECT_ALL(5)
static const mm_small_fn mmt_direct_fns[DSK_DTYPE_COUNT][SMALL_N_MAX + 1] = {
    {NULL, mmt_direct_0_1, mmt_direct_0_2, mmt_direct_0_3, mmt_direct_0_4},
    {NULL, mmt_direct_1_1, mmt_direct_1_2, mmt_direct_1_3, mmt_direct_1_4},
    {NULL, mmt_direct_2_1, mmt_direct_2_2, mmt_direct_2_3, mmt_direct_2_4},
    {NULL, mmt_direct_3_1, mmt_direct_3_2, mmt_direct_3_3, mmt_direct_3_4},
    {NULL, mmt_direct_4_1, mmt_direct_4_2, mmt_direct_4_3, mmt_direct_4_4},
    {NULL, mmt_direct_5_1, mmt_direct_5_2, mmt_direct_5_3, mmt_direct_5_4},
};

static void mmt_any(int dt, const dsk_matrix_t *w, int64_t r0, int64_t r1, const float *x,
                    int64_t ldx, int64_t n, float *y, int64_t ldy)
{
    if (n <= 0 || r1 <= r0)
        return;
    if (n <= SMALL_N_MAX) {
        mmt_direct_fns[dt][n](w, r0, r1, x, ldx, y, ldy);
        return;
    }
    _Alignas(64) float buf[G_KC * G_NR];
    const int64_t K = w->cols;
    for (int64_t c0 = 0; c0 < K; c0 += G_NR) {
        const int nc = (int)(K - c0 < G_NR ? K - c0 : G_NR);
        for (int64_t rk = r0; rk < r1; rk += G_KC) {
            const int64_t kc = r1 - rk < G_KC ? r1 - rk : G_KC;
            pack_rows(dt, w, rk, kc, c0, nc, buf);
            gemm_panel(buf, kc, x + (rk - r0), ldx, n, y + c0, ldy, nc, 1);
        }
    }
}

#define DEF_MATMUL(DT, NAME)                                                                   \
    static void matmul_##NAME(const dsk_matrix_t *w, int64_t r0, int64_t r1, const float *x,   \
                              int64_t ldx, int64_t n, float *y, int64_t ldy)                   \
    {                                                                                          \
        if (w->layout != DSK_LAYOUT_ROWS) /* repacked int4: the reference */                   \
            dsk_matmul_ref(w, r0, r1, x, ldx, n, y, ldy);                                      \
        else                                                                                   \
            mm_any(DT, w, r0, r1, x, ldx, n, y, ldy);                                          \
    }                                                                                          \
    static void matmul_t_##NAME(const dsk_matrix_t *w, int64_t r0, int64_t r1, const float *x, \
                                int64_t ldx, int64_t n, float *y, int64_t ldy)                 \
    {                                                                                          \
        if (w->layout != DSK_LAYOUT_ROWS)                                                      \
            dsk_matmul_t_ref(w, r0, r1, x, ldx, n, y, ldy);                                    \
        else                                                                                   \
            mmt_any(DT, w, r0, r1, x, ldx, n, y, ldy);                                         \
    }
DEF_MATMUL(DT_F32, f32)
DEF_MATMUL(DT_BF16, bf16)
DEF_MATMUL(DT_FP8, fp8)
DEF_MATMUL(DT_I8, i8)
DEF_MATMUL(DT_I4A, i4a)
DEF_MATMUL(DT_I4B, i4b)

#define DEF_ROW_F32(DT, NAME)                                                \
    static void row_f32_##NAME(const dsk_matrix_t *w, int64_t r, float *out) \
    {                                                                        \
        if (w->layout != DSK_LAYOUT_ROWS)                                    \
            dsk_matrix_row_f32(w, r, out);                                   \
        else                                                                 \
            w_row_f32(DT, w, r, 0, w->cols, out);                            \
    }
DEF_ROW_F32(DT_F32, f32)
DEF_ROW_F32(DT_BF16, bf16)
DEF_ROW_F32(DT_FP8, fp8)
DEF_ROW_F32(DT_I8, i8)
DEF_ROW_F32(DT_I4A, i4a)
DEF_ROW_F32(DT_I4B, i4b)

/* ---- vector kernels ---- */

/* e^x to about 2 ulp (Cephes' range reduction and polynomial); exactly 0 below -87.3. */
DSK_INLINE V v_exp(V x)
{
    const V lo = v_set1(-87.3f);
    V xc = v_min(v_max(x, lo), v_set1(88.3f));
    V fx = v_round(v_mul(xc, v_set1(1.44269504088896341f)));
    V r = v_sub(xc, v_mul(fx, v_set1(0.693359375f)));
    r = v_sub(r, v_mul(fx, v_set1(-2.12194440e-4f)));
    V p = v_set1(1.9875691500e-4f);
    p = v_fma(p, r, v_set1(1.3981999507e-3f));
    p = v_fma(p, r, v_set1(8.3334519073e-3f));
    p = v_fma(p, r, v_set1(4.1665795894e-2f));
    p = v_fma(p, r, v_set1(1.6666665459e-1f));
    p = v_fma(p, r, v_set1(5.0000001201e-1f));
    p = v_fma(p, v_mul(r, r), v_add(r, v_set1(1.0f)));
    return v_select_lt(x, lo, v_zero(), v_mul(p, v_pow2i(fx)));
}

static float dot_simd(const float *a, const float *b, int64_t n)
{
    V s0 = v_zero(), s1 = v_zero(), s2 = v_zero(), s3 = v_zero();
    int64_t i = 0;
    for (; i + 4 * VL <= n; i += 4 * VL) {
        s0 = v_fma(v_loadu(a + i), v_loadu(b + i), s0);
        s1 = v_fma(v_loadu(a + i + VL), v_loadu(b + i + VL), s1);
        s2 = v_fma(v_loadu(a + i + 2 * VL), v_loadu(b + i + 2 * VL), s2);
        s3 = v_fma(v_loadu(a + i + 3 * VL), v_loadu(b + i + 3 * VL), s3);
    }
    for (; i + VL <= n; i += VL)
        s0 = v_fma(v_loadu(a + i), v_loadu(b + i), s0);
    float s = v_hsum(v_add(v_add(s0, s1), v_add(s2, s3)));
    for (; i < n; i++)
        s += a[i] * b[i];
    return s;
}

static void axpy_simd(float a, const float *x, float *y, int64_t n)
{
    const V va = v_set1(a);
    int64_t i = 0;
    for (; i + VL <= n; i += VL)
        v_storeu(y + i, v_fma(va, v_loadu(x + i), v_loadu(y + i)));
    for (; i < n; i++)
        y[i] += a * x[i];
}

static void rmsnorm_simd(const float *x, const float *w, int64_t n, float eps, float *out)
{
    V s0 = v_zero(), s1 = v_zero();
    int64_t i = 0;
    for (; i + 2 * VL <= n; i += 2 * VL) {
        V a = v_loadu(x + i), b = v_loadu(x + i + VL);
        s0 = v_fma(a, a, s0);
        s1 = v_fma(b, b, s1);
    }
    for (; i + VL <= n; i += VL) {
        V a = v_loadu(x + i);
        s0 = v_fma(a, a, s0);
    }
    double ss = v_hsum(v_add(s0, s1));
    for (; i < n; i++)
        ss += (double)x[i] * x[i];
    const float inv = (float)(1.0 / sqrt(ss / (double)n + eps));
    const V vinv = v_set1(inv);
    for (i = 0; i + VL <= n; i += VL)
        v_storeu(out + i, v_mul(v_loadu(w + i), v_mul(v_loadu(x + i), vinv)));
    for (; i < n; i++)
        out[i] = w[i] * (x[i] * inv);
}

static void silu_mul_simd(const float *gate, const float *up, int64_t n, float *out)
{
    const V one = v_set1(1.0f);
    int64_t i = 0;
    for (; i + VL <= n; i += VL) {
        V g = v_loadu(gate + i);
        V e = v_exp(v_sub(v_zero(), g));
        v_storeu(out + i, v_mul(v_div(g, v_add(one, e)), v_loadu(up + i)));
    }
    for (; i < n; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

static void softmax_simd(float *x, int64_t n)
{
    if (n <= 0)
        return;
    V vmax = v_set1(-INFINITY);
    int64_t i = 0;
    for (; i + VL <= n; i += VL)
        vmax = v_max(vmax, v_loadu(x + i));
    float max = v_hmax(vmax);
    for (; i < n; i++)
        max = x[i] > max ? x[i] : max;
    const V vm = v_set1(max);
    V sum = v_zero();
    for (i = 0; i + VL <= n; i += VL) {
        V e = v_exp(v_sub(v_loadu(x + i), vm));
        v_storeu(x + i, e);
        sum = v_add(sum, e);
    }
    double s = v_hsum(sum);
    for (; i < n; i++) {
        x[i] = expf(x[i] - max);
        s += x[i];
    }
    const V inv = v_set1((float)(1.0 / s));
    for (i = 0; i + VL <= n; i += VL)
        v_storeu(x + i, v_mul(v_loadu(x + i), inv));
    for (; i < n; i++)
        x[i] *= (float)(1.0 / s);
}

/* Every slot this template implements. */
static void simd_fill(dsk_ops_t *ops)
{
    ops->matmul[DSK_DTYPE_F32] = matmul_f32;
    ops->matmul[DSK_DTYPE_BF16] = matmul_bf16;
    ops->matmul[DSK_DTYPE_F8_E4M3] = matmul_fp8;
    ops->matmul_t[DSK_DTYPE_F32] = matmul_t_f32;
    ops->matmul_t[DSK_DTYPE_BF16] = matmul_t_bf16;
    ops->matmul_t[DSK_DTYPE_F8_E4M3] = matmul_t_fp8;
    ops->matmul[DSK_DTYPE_I8] = matmul_i8;
    ops->matmul[DSK_DTYPE_I4_G32] = matmul_i4a;
    ops->matmul[DSK_DTYPE_I4_G128] = matmul_i4b;
    ops->matmul_t[DSK_DTYPE_I8] = matmul_t_i8;
    ops->matmul_t[DSK_DTYPE_I4_G32] = matmul_t_i4a;
    ops->matmul_t[DSK_DTYPE_I4_G128] = matmul_t_i4b;
    ops->row_f32[DSK_DTYPE_F32] = row_f32_f32;
    ops->row_f32[DSK_DTYPE_BF16] = row_f32_bf16;
    ops->row_f32[DSK_DTYPE_F8_E4M3] = row_f32_fp8;
    ops->row_f32[DSK_DTYPE_I8] = row_f32_i8;
    ops->row_f32[DSK_DTYPE_I4_G32] = row_f32_i4a;
    ops->row_f32[DSK_DTYPE_I4_G128] = row_f32_i4b;
    ops->dot = dot_simd;
    ops->axpy = axpy_simd;
    ops->rmsnorm = rmsnorm_simd;
    ops->silu_mul = silu_mul_simd;
    ops->softmax = softmax_simd;
}
