/*
 * dsk_avx512_vbmi.c - the one-token fp8 product (decode) of the AVX-512 levels, with the e4m3
 * codes converted by a byte table (vpermi2b, AVX512_VBMI) instead of F16C.
 *
 * 64 codes at a time: two vpermi2b look up the high and the low byte of each code's bf16 bit
 * pattern (128-entry tables indexed by the 7 magnitude bits; the sign bit is copied in with one
 * vpternlogd), vpunpck[lh]bw interleave them into 64 bf16, and a shift (even 16-bit lanes) or a
 * mask (odd ones) widens each half to 16 f32. e4m3's 3 mantissa bits fit bf16's 7, so every code,
 * subnormals included, becomes its exact value: the products and sums are the f32 FMAs of the
 * F16C route (dsk_avx512.c), in another order. Per 64 weights that is 9 vector operations before
 * the FMAs where the F16C route needs about 16 (vpmovzxbw, two shifts, an AND and vcvtph2ps per
 * 16): on Zen 4, one thread, 1.22x the F16C route's rate on a cache-resident matrix and 1.13-1.33x
 * streaming from memory, in CPU time (docs/KERNELS.md, "FP8 e4m3 weights").
 *
 * The interleave leaves the weights of a 64-column chunk in the order E0 O0 E1 O1 (16 each):
 * E0[d] is column 16 (d / 4) + 2 (d % 4), O0[d] the column after it, E1 and O1 the same plus 8.
 * x is permuted into that order once per call (XP_ELEMS floats of stack, in column chunks when
 * cols is larger), zero-padded to whole chunks; the weights of a partial chunk are read with a
 * masked load, so nothing past a row is touched.
 *
 * One token (2-4 keep the F16C route: see mm_table_1), 8 rows per register tile, rows
 * dsk_tile_row_stride apart as in the F16C route; per 128-column block an accumulator per row
 * folded into the row's total with the block's scale.
 */
#include "dsk_impl.h"

#include <immintrin.h>

#define DSK_INLINE static inline __attribute__((always_inline))
#define XP_ELEMS   32768 /* permuted x per call: 128 KiB of stack, as dsk_avx2_fp8i.c */
#define CHUNK      64    /* codes per conversion */

/* High and low byte of the bf16 (= f32 >> 16) of e4m3 codes 0-127; 127 is a NaN. */
static const uint8_t fp8_bf16_hi[128] = {
    0x00, 0x3b, 0x3b, 0x3b, 0x3c, 0x3c, 0x3c, 0x3c, 0x3c, 0x3c, 0x3c, 0x3c, 0x3c, 0x3c, 0x3c, 0x3c,
    0x3d, 0x3d, 0x3d, 0x3d, 0x3d, 0x3d, 0x3d, 0x3d, 0x3d, 0x3d, 0x3d, 0x3d, 0x3d, 0x3d, 0x3d, 0x3d,
    0x3e, 0x3e, 0x3e, 0x3e, 0x3e, 0x3e, 0x3e, 0x3e, 0x3e, 0x3e, 0x3e, 0x3e, 0x3e, 0x3e, 0x3e, 0x3e,
    0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f,
    0x40, 0x40, 0x40, 0x40, 0x40, 0x40, 0x40, 0x40, 0x40, 0x40, 0x40, 0x40, 0x40, 0x40, 0x40, 0x40,
    0x41, 0x41, 0x41, 0x41, 0x41, 0x41, 0x41, 0x41, 0x41, 0x41, 0x41, 0x41, 0x41, 0x41, 0x41, 0x41,
    0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42,
    0x43, 0x43, 0x43, 0x43, 0x43, 0x43, 0x43, 0x43, 0x43, 0x43, 0x43, 0x43, 0x43, 0x43, 0x43, 0x7f,
};
static const uint8_t fp8_bf16_lo[128] = {
    0x00, 0x00, 0x80, 0xc0, 0x00, 0x20, 0x40, 0x60, 0x80, 0x90, 0xa0, 0xb0, 0xc0, 0xd0, 0xe0, 0xf0,
    0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xa0, 0xb0, 0xc0, 0xd0, 0xe0, 0xf0,
    0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xa0, 0xb0, 0xc0, 0xd0, 0xe0, 0xf0,
    0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xa0, 0xb0, 0xc0, 0xd0, 0xe0, 0xf0,
    0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xa0, 0xb0, 0xc0, 0xd0, 0xe0, 0xf0,
    0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xa0, 0xb0, 0xc0, 0xd0, 0xe0, 0xf0,
    0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xa0, 0xb0, 0xc0, 0xd0, 0xe0, 0xf0,
    0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xa0, 0xb0, 0xc0, 0xd0, 0xe0, 0xc0,
};

typedef struct {
    __m512i hi0, hi1, lo0, lo1, sign, odd;
} fp8_tab_t;

DSK_INLINE fp8_tab_t tab_load(void)
{
    fp8_tab_t t;
    t.hi0 = _mm512_loadu_si512(fp8_bf16_hi);
    t.hi1 = _mm512_loadu_si512(fp8_bf16_hi + 64);
    t.lo0 = _mm512_loadu_si512(fp8_bf16_lo);
    t.lo1 = _mm512_loadu_si512(fp8_bf16_lo + 64);
    t.sign = _mm512_set1_epi8((char)0x80);
    t.odd = _mm512_set1_epi32((int)0xffff0000u);
    return t;
}

/* 64 codes -> their f32 values in the order E0 O0 E1 O1 (see the top of the file). */
DSK_INLINE void fp8_convert64(const fp8_tab_t *t, __m512i b, __m512 f[4])
{
    __m512i hi = _mm512_permutex2var_epi8(t->hi0, b, t->hi1);
    const __m512i lo = _mm512_permutex2var_epi8(t->lo0, b, t->lo1);
    hi = _mm512_ternarylogic_epi32(t->sign, b, hi, 0xca); /* sign bit of b, the rest of hi */
    const __m512i w0 = _mm512_unpacklo_epi8(lo, hi), w1 = _mm512_unpackhi_epi8(lo, hi);
    f[0] = _mm512_castsi512_ps(_mm512_slli_epi32(w0, 16));
    f[1] = _mm512_castsi512_ps(_mm512_and_si512(w0, t->odd));
    f[2] = _mm512_castsi512_ps(_mm512_slli_epi32(w1, 16));
    f[3] = _mm512_castsi512_ps(_mm512_and_si512(w1, t->odd));
}

/* x[0 .. k) permuted chunk by chunk into out[0 .. round64(k)), zeros past k. */
static void x_permute(const float *x, int64_t k, float *out)
{
    const __m512i ia = _mm512_setr_epi32(0, 2, 4, 6, 16, 18, 20, 22, 1, 3, 5, 7, 17, 19, 21, 23);
    const __m512i ib = _mm512_add_epi32(ia, _mm512_set1_epi32(8));
    for (int64_t c = 0; c < k; c += CHUNK) {
        __m512 v[4];
        for (int q = 0; q < 4; q++) {
            const int64_t left = k - c - 16 * q;
            const __mmask16 m = left >= 16  ? (__mmask16)0xffff
                                : left <= 0 ? (__mmask16)0
                                            : (__mmask16)((1u << left) - 1);
            v[q] = _mm512_maskz_loadu_ps(m, x + c + 16 * q);
        }
        const __m512 a = _mm512_permutex2var_ps(v[0], ia, v[1]);
        const __m512 b = _mm512_permutex2var_ps(v[2], ia, v[3]);
        const __m512 e = _mm512_permutex2var_ps(v[0], ib, v[1]);
        const __m512 f = _mm512_permutex2var_ps(v[2], ib, v[3]);
        _mm512_storeu_ps(out + c, _mm512_shuffle_f32x4(a, b, 0x44));
        _mm512_storeu_ps(out + c + 16, _mm512_shuffle_f32x4(a, b, 0xee));
        _mm512_storeu_ps(out + c + 32, _mm512_shuffle_f32x4(e, f, 0x44));
        _mm512_storeu_ps(out + c + 48, _mm512_shuffle_f32x4(e, f, 0xee));
    }
}

/*
 * y[t * ldy + i * rs] (+)= sum over columns [k0, k1) of W[r + i * rs][c] x[t][c] for i < R, t < T;
 * xp holds the permuted x of columns k0.. (token t at xp + t * ldxp). k0 is a multiple of 128.
 */
DSK_INLINE void tile(const fp8_tab_t *tb, const dsk_matrix_t *w, int64_t r, const int R,
                     const int64_t rs, const float *xp, int64_t ldxp, const int T, int64_t k0,
                     int64_t k1, float *y, int64_t ldy, int add)
{
    const int64_t K = w->cols;
    const uint8_t *rows[8];
    __m512 tot[8][4];
    for (int i = 0; i < R; i++) {
        rows[i] = (const uint8_t *)w->data + (r + i * rs) * K;
        for (int t = 0; t < T; t++)
            tot[i][t] = _mm512_setzero_ps();
    }
    for (int64_t c0 = k0; c0 < k1; c0 += DSK_FP8_BLOCK) {
        const int64_t c1 = c0 + DSK_FP8_BLOCK < k1 ? c0 + DSK_FP8_BLOCK : k1;
        __m512 acc[8][4];
        for (int i = 0; i < R; i++)
            for (int t = 0; t < T; t++)
                acc[i][t] = _mm512_setzero_ps();
        for (int64_t c = c0; c < c1; c += CHUNK) {
            const int64_t left = c1 - c;
            const __mmask64 m = left >= CHUNK ? ~(__mmask64)0 : ((__mmask64)1 << left) - 1;
            const float *xc = xp + (c - k0);
            for (int i = 0; i < R; i++) {
                const __m512i b = left >= CHUNK ? _mm512_loadu_si512(rows[i] + c)
                                                : _mm512_maskz_loadu_epi8(m, rows[i] + c);
                __m512 f[4];
                fp8_convert64(tb, b, f);
                for (int t = 0; t < T; t++)
                    for (int q = 0; q < 4; q++)
                        acc[i][t] = _mm512_fmadd_ps(f[q], _mm512_loadu_ps(xc + t * ldxp + 16 * q),
                                                    acc[i][t]);
            }
        }
        for (int i = 0; i < R; i++) {
            const __m512 s = _mm512_set1_ps(dsk_block_scale(w, r + i * rs, c0));
            for (int t = 0; t < T; t++)
                tot[i][t] = _mm512_fmadd_ps(acc[i][t], s, tot[i][t]);
        }
    }
    for (int i = 0; i < R; i++)
        for (int t = 0; t < T; t++) {
            float *o = y + t * ldy + i * rs;
            *o = (add ? *o : 0.0f) + _mm512_reduce_add_ps(tot[i][t]);
        }
}

/*
 * One token, 8 rows per tile (8 accumulators and 8 totals, the tables and one conversion in
 * registers), as the F16C route's. More tokens per tile leave room for fewer rows (2-4 without
 * spilling), and fewer rows are fewer streams: on Zen 4, one thread streaming 2048x7168, 2 and 3
 * tokens with 4 and 2 rows ran at 0.7-0.8x the F16C route's 8 and 6 rows (1.1-1.2x at 7168x2048,
 * rows two apart; cache-resident 1.24-1.47x), so 2-4 tokens keep the F16C route.
 */
static void mm_table_1(const dsk_matrix_t *w, int64_t r0, int64_t r1, const float *xp, int64_t k0,
                       int64_t k1, float *y, int add)
{
    const fp8_tab_t tb = tab_load();
    DSK_ROW_TILES(
        r0, r1, 8, dsk_tile_row_stride(w->cols),
        tile(&tb, w, tile_r, tile_n, tile_s, xp, 0, 1, k0, k1, y + (tile_r - r0), 0, add));
}

void dsk_avx512_fp8_table_matmul(const dsk_matrix_t *w, int64_t r0, int64_t r1, const float *x,
                                 int64_t ldx, int64_t n, float *y, int64_t ldy)
{
    if (n != DSK_FP8_TABLE_N_MAX) {
        dsk_avx512_matmul_f32act(DSK_DTYPE_F8_E4M3, w, r0, r1, x, ldx, n, y, ldy);
        return;
    }
    if (r1 <= r0)
        return;
    const int64_t K = w->cols;
    if (K <= 0) {
        memset(y, 0, (size_t)(r1 - r0) * sizeof(float));
        return;
    }
    _Alignas(64) float xp[XP_ELEMS];
    /* passes of whole 128-column blocks (so whole 64-column chunks): one up to 32768 columns */
    for (int64_t k0 = 0; k0 < K; k0 += XP_ELEMS) {
        const int64_t k1 = k0 + XP_ELEMS < K ? k0 + XP_ELEMS : K;
        x_permute(x + k0, k1 - k0, xp);
        mm_table_1(w, r0, r1, xp, k0, k1, y, k0 > 0);
    }
}

static void matmul_fp8_table(const dsk_matrix_t *w, int64_t r0, int64_t r1, const float *x,
                             int64_t ldx, int64_t n, float *y, int64_t ldy)
{
    dsk_avx512_fp8_table_matmul(w, r0, r1, x, ldx, n, y, ldy);
}

void dsk_ops_fill_avx512_vbmi(dsk_ops_t *ops)
{
    ops->matmul[DSK_DTYPE_F8_E4M3] = matmul_fp8_table;
    ops->fp8_table = 1;
}
