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

/* acc += the 64 weights of b times x0..x3 (x permuted like them), in the order E0 O0 E1 O1. */
DSK_INLINE __m512 fma64(const fp8_tab_t *t, __m512i b, __m512 x0, __m512 x1, __m512 x2, __m512 x3,
                        __m512 acc)
{
    __m512i hi = _mm512_permutex2var_epi8(t->hi0, b, t->hi1);
    const __m512i lo = _mm512_permutex2var_epi8(t->lo0, b, t->lo1);
    hi = _mm512_ternarylogic_epi32(hi, b, t->sign, 0xd8); /* sign bit of b, the rest of hi */
    const __m512i w0 = _mm512_unpacklo_epi8(lo, hi), w1 = _mm512_unpackhi_epi8(lo, hi);
    acc = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(w0, 16)), x0, acc);
    acc = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_and_si512(w0, t->odd)), x1, acc);
    acc = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(w1, 16)), x2, acc);
    return _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_and_si512(w1, t->odd)), x3, acc);
}

/*
 * y[i * rs] (+)= sum over columns [k0, k1) of W[r + i * rs][c] x[c] for i < R; xp holds the
 * permuted x of columns k0.. . k0 is a multiple of 128. One accumulator a row and a block, and one
 * total a row (2 R registers), the four x vectors of a chunk loaded once for the R rows, whole
 * chunks without masks: with R = 8 everything stays in the 32 registers (the loop over a block's
 * chunks and the block's fold with its scale are the same operations in the same order as
 * before this layout, so the results are too).
 */
DSK_INLINE void tile(const fp8_tab_t *tb, const dsk_matrix_t *w, int64_t r, const int R,
                     const int64_t rs, const float *xp, int64_t k0, int64_t k1, float *y, int add)
{
    const int64_t K = w->cols;
    const uint8_t *rows[8];
    __m512 tot[8];
    for (int i = 0; i < R; i++) {
        rows[i] = (const uint8_t *)w->data + (r + i * rs) * K;
        tot[i] = _mm512_setzero_ps();
    }
    for (int64_t c0 = k0; c0 < k1; c0 += DSK_FP8_BLOCK) {
        const int64_t c1 = c0 + DSK_FP8_BLOCK < k1 ? c0 + DSK_FP8_BLOCK : k1;
        __m512 acc[8];
        for (int i = 0; i < R; i++)
            acc[i] = _mm512_setzero_ps();
        int64_t c = c0;
        for (; c + CHUNK <= c1; c += CHUNK) {
            const float *xc = xp + (c - k0);
            const __m512 x0 = _mm512_load_ps(xc), x1 = _mm512_load_ps(xc + 16);
            const __m512 x2 = _mm512_load_ps(xc + 32), x3 = _mm512_load_ps(xc + 48);
            for (int i = 0; i < R; i++)
                acc[i] = fma64(tb, _mm512_loadu_si512(rows[i] + c), x0, x1, x2, x3, acc[i]);
        }
        if (c < c1) { /* a partial chunk: the rest of the row */
            const __mmask64 m = ((__mmask64)1 << (c1 - c)) - 1;
            const float *xc = xp + (c - k0);
            const __m512 x0 = _mm512_load_ps(xc), x1 = _mm512_load_ps(xc + 16);
            const __m512 x2 = _mm512_load_ps(xc + 32), x3 = _mm512_load_ps(xc + 48);
            for (int i = 0; i < R; i++)
                acc[i] = fma64(tb, _mm512_maskz_loadu_epi8(m, rows[i] + c), x0, x1, x2, x3, acc[i]);
        }
        for (int i = 0; i < R; i++)
            tot[i] =
                _mm512_fmadd_ps(acc[i], _mm512_set1_ps(dsk_block_scale(w, r + i * rs, c0)), tot[i]);
    }
    for (int i = 0; i < R; i++) {
        float *o = y + i * rs;
        *o = (add ? *o : 0.0f) + _mm512_reduce_add_ps(tot[i]);
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
    DSK_ROW_TILES(r0, r1, 8, dsk_tile_row_stride(w->cols),
                  tile(&tb, w, tile_r, tile_n, tile_s, xp, k0, k1, y + (tile_r - r0), add));
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

/* ---- matmul_t of one token (decode: MLA's absorbed W_UK^T q) ---- */

/* a0..a3 += the 64 weights of codes (in the order E0 O0 E1 O1) times b. */
DSK_INLINE void fma64_bcast(const fp8_tab_t *t, __m512i codes, __m512 b, __m512 *a0, __m512 *a1,
                            __m512 *a2, __m512 *a3)
{
    __m512i hi = _mm512_permutex2var_epi8(t->hi0, codes, t->hi1);
    const __m512i lo = _mm512_permutex2var_epi8(t->lo0, codes, t->lo1);
    hi = _mm512_ternarylogic_epi32(hi, codes, t->sign, 0xd8);
    const __m512i w0 = _mm512_unpacklo_epi8(lo, hi), w1 = _mm512_unpackhi_epi8(lo, hi);
    *a0 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(w0, 16)), b, *a0);
    *a1 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_and_si512(w0, t->odd)), b, *a1);
    *a2 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(w1, 16)), b, *a2);
    *a3 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_and_si512(w1, t->odd)), b, *a3);
}

/* y[c] += the 64 permuted sums a0..a3 of columns c < cols (a chunk of y). */
static void add_unpermuted(__m512 a0, __m512 a1, __m512 a2, __m512 a3, int64_t cols, float *y)
{
    _Alignas(64) float tmp[CHUNK];
    _mm512_store_ps(tmp, a0);
    _mm512_store_ps(tmp + 16, a1);
    _mm512_store_ps(tmp + 32, a2);
    _mm512_store_ps(tmp + 48, a3);
    for (int i = 0; i < CHUNK; i++) {
        const int q = i / 16, d = i % 16; /* see the top of the file */
        const int c = 16 * (d / 4) + 2 * (d % 4) + (q & 1) + 8 * (q >> 1);
        if (c < cols)
            y[c] += tmp[i];
    }
}

/*
 * The matmul_t of one token over 256 columns [c0, c0 + 256) (two fp8 blocks, four chunks), row by
 * row; the 16 accumulators hold the columns in the permuted order of the conversion until the
 * end. Per column the same f32 operations in the same order as the F16C route's
 * (dsk_simd_tmpl.h, mmt_one_token_chunk): a chain of FMAs over the rows from zero, each with x
 * times the row's block scale, added to y at the end; so the same bits. Named accumulators, not
 * an array: GCC keeps a 16-vector array in memory.
 */
static void mmt_slab256(const fp8_tab_t *tb, const dsk_matrix_t *w, int64_t r0, int64_t r1,
                        const float *x, int64_t c0, float *y)
{
    const int64_t K = w->cols, bcols = (K + DSK_FP8_BLOCK - 1) / DSK_FP8_BLOCK;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0,
           c0_ = a0, c1 = a0, c2 = a0, c3 = a0, d0 = a0, d1 = a0, d2 = a0, d3 = a0;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = (const uint8_t *)w->data + r * K + c0;
        const float *s = w->scale_inv + (r / DSK_FP8_BLOCK) * bcols + c0 / DSK_FP8_BLOCK;
        const float xr = x[r - r0];
        const __m512 x0 = _mm512_set1_ps(xr * s[0]), x1 = _mm512_set1_ps(xr * s[1]);
        fma64_bcast(tb, _mm512_loadu_si512(row), x0, &a0, &a1, &a2, &a3);
        fma64_bcast(tb, _mm512_loadu_si512(row + CHUNK), x0, &b0, &b1, &b2, &b3);
        fma64_bcast(tb, _mm512_loadu_si512(row + 2 * CHUNK), x1, &c0_, &c1, &c2, &c3);
        fma64_bcast(tb, _mm512_loadu_si512(row + 3 * CHUNK), x1, &d0, &d1, &d2, &d3);
    }
    add_unpermuted(a0, a1, a2, a3, CHUNK, y + c0);
    add_unpermuted(b0, b1, b2, b3, CHUNK, y + c0 + CHUNK);
    add_unpermuted(c0_, c1, c2, c3, CHUNK, y + c0 + 2 * CHUNK);
    add_unpermuted(d0, d1, d2, d3, CHUNK, y + c0 + 3 * CHUNK);
}

/* The same over the columns [c0, c0 + nc), nc <= 64 (one chunk; a partial one read masked). */
static void mmt_chunk(const fp8_tab_t *tb, const dsk_matrix_t *w, int64_t r0, int64_t r1,
                      const float *x, int64_t c0, int64_t nc, float *y)
{
    const int64_t K = w->cols;
    const __mmask64 m = nc >= CHUNK ? ~(__mmask64)0 : ((__mmask64)1 << nc) - 1;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t r = r0; r < r1; r++) {
        const __m512 xs = _mm512_set1_ps(x[r - r0] * dsk_block_scale(w, r, c0));
        fma64_bcast(tb, _mm512_maskz_loadu_epi8(m, (const uint8_t *)w->data + r * K + c0), xs, &a0,
                    &a1, &a2, &a3);
    }
    add_unpermuted(a0, a1, a2, a3, nc, y + c0);
}

void dsk_avx512_fp8_table_matmul_t(const dsk_matrix_t *w, int64_t r0, int64_t r1, const float *x,
                                   int64_t ldx, int64_t n, float *y, int64_t ldy)
{
    if (n != DSK_FP8_TABLE_N_MAX || w->layout != DSK_LAYOUT_ROWS) {
        dsk_avx512_matmul_t_f32act(DSK_DTYPE_F8_E4M3, w, r0, r1, x, ldx, n, y, ldy);
        return;
    }
    if (r1 <= r0)
        return;
    const fp8_tab_t tb = tab_load();
    const int64_t K = w->cols, slab = 4 * CHUNK;
    int64_t c0 = 0;
    for (; c0 + slab <= K; c0 += slab)
        mmt_slab256(&tb, w, r0, r1, x, c0, y);
    for (; c0 < K; c0 += CHUNK)
        mmt_chunk(&tb, w, r0, r1, x, c0, K - c0 < CHUNK ? K - c0 : CHUNK, y);
}

static void matmul_t_fp8_table(const dsk_matrix_t *w, int64_t r0, int64_t r1, const float *x,
                               int64_t ldx, int64_t n, float *y, int64_t ldy)
{
    dsk_avx512_fp8_table_matmul_t(w, r0, r1, x, ldx, n, y, ldy);
}

void dsk_ops_fill_avx512_vbmi(dsk_ops_t *ops)
{
    ops->matmul[DSK_DTYPE_F8_E4M3] = matmul_fp8_table;
    ops->matmul_t[DSK_DTYPE_F8_E4M3] = matmul_t_fp8_table;
    ops->fp8_table = 1;
}
