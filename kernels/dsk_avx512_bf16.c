/*
 * dsk_avx512_bf16.c - the avx512bf16 level: matmul of BF16 weights (and FP8 weights for
 * n >= DSK_BF16X_FP8_MIN tokens) with vdpbf16ps, which multiplies pairs of bf16 and adds both
 * products to an f32 lane.
 *
 * x is split once per call into XPARTS (DSK_BF16X_PARTS, dsk.h) bf16 parts, p1 = bf16(x), p2 =
 * bf16(x - p1), p3 = bf16(x - p1 - p2) (nearest even; each rest is exact in f32), in a stack
 * buffer (XB_ELEMS; in column chunks and blocks of tokens when it does not fit), and each weight
 * pair is multiplied by every part into the same f32 accumulator: XPARTS vdpbf16ps per 32
 * multiply-adds of one row and one token where the f32 path widens the weights and needs two
 * FMAs. One part (the default) moves each x by up to 2^-8 of itself, which is the accuracy cost
 * (dsk.h); two parts 2^-16; three hold a normal f32 exactly, but on Zen 4 vdpbf16ps goes no
 * faster than an FMA, so each part costs what the f32 path's two FMAs do (docs/KERNELS.md).
 * dsk_matmul_bf16x_ref is the scalar model of this arithmetic. vdpbf16ps and vcvtne2ps2bf16
 * also treat subnormal inputs as zero and flush subnormal results, which moves a product by
 * less than 2^-126 times the other factor. Where a rest is NaN (x infinite or NaN) the later
 * parts are 0, so an infinite x gives the infinite product as in f32, not inf - inf.
 *
 * - n <= 4 (decode): R rows x n tokens register tiles straight from the stored rows (no
 *   packing), rows a page apart as dsk_tile_row_stride says; each accumulator is 16 lanes of
 *   partial sums reduced once per row and token.
 * - 5 <= n < LT_MIN (16): the same tiles over groups of up to 4 tokens, rows in L2-sized blocks.
 * - LT_MIN <= n <= 64, bf16 and fp8: the tokens in the lanes. x as pairs with 16 tokens per
 *   vector, in a buffer of the thread's (lt_scratch: 512 KiB is too much stack); a stored row's
 *   pair (one dword, no packing) is broadcast against 1-4 such vectors, R rows x V vectors of
 *   accumulators, the weights read once per block of 32 tokens (64 where one chunk of columns
 *   covers the row). fp8 rows are converted per 128-column slice of the tile into a staging
 *   buffer, each slice's sums scaled into f32 totals.
 * - larger n (prefill), and fp8 at 8-15 tokens: panels of 32 rows x KC columns packed once as
 *   pairs (two bf16 of one row in a dword, 16 rows per vector), then a G_T x 32 micro-kernel
 *   broadcasts a token's pair and accumulates 16 rows per instruction (per part), so the outputs
 *   need no horizontal sums.
 * - FP8 weights, n >= DSK_BF16X_FP8_MIN (8) only: at 8-15 and 65+ tokens the same panels, the
 *   e4m3 codes converted to bf16 exactly (their value / 256: 3 mantissa bits fit bf16's 7) and
 *   the 128x128 block scale applied per row when a 128-column slice is added into y. The packing
 *   converts every weight once per call, which 8 tokens amortize (on the Zen 4 host,
 *   cache-resident: 1.3x the f32 kernels at 8 tokens, 1.9x at 16, 1.5-1.6x from 17 to 128,
 *   where the f32 path packs too);
 *   below 8 tokens the AVX-512 f32 kernels stay (1.0-1.1x).
 *
 * matmul_t and every other slot stay at the AVX-512 level: a bf16 matmul_t was not attempted
 * (its one user, absorbed MLA, multiplies kv_b, which V3 checkpoints store as fp8, and is a
 * small part of a step).
 */
#include "dsk_impl.h"
#include "dsk_transpose8.h"

#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DSK_INLINE static inline __attribute__((always_inline))

#define XPARTS   DSK_BF16X_PARTS  /* bf16 parts of x (dsk.h): 3 hold every normal f32 exactly */
#define XB_ELEMS (XPARTS * 16384) /* the bf16 parts of x per call: 32 KiB of stack per part */
#define TB_MAX   64  /* tokens per block of x, so a chunk is >= 16384 / TB_MAX columns */
#define G_NR     32  /* rows per packed panel: two vectors of 16 */
#define G_MC     128 /* rows per block: 4 panels, up to 64 KiB of packed bf16 */
#define KC_BF16  256 /* columns per packed slice of bf16 weights */
#define KC_FP8   128 /* of fp8 weights: one scale block, so the scale is per row */
#define G_T      12  /* tokens per micro-kernel: 24 accumulators + 2 weights + 1 broadcast */
#define TG_MAX   16  /* largest n of the register tiles */
#define TG_BLOCK (128 << 10)

_Static_assert(XB_ELEMS / XPARTS / TB_MAX >= KC_BF16, "a column chunk holds whole slices");

static inline int64_t round32(int64_t k)
{
    return (k + 31) & ~(int64_t)31;
}

static inline int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* The 16 bf16 in the low (hi16 = 0) or high (hi16 = 1) 256 bits of v, as f32 (exact). */
DSK_INLINE __m512 bf16_half_f32(__m512i v, int hi16)
{
    const __m256i h = hi16 ? _mm512_extracti64x4_epi64(v, 1) : _mm512_castsi512_si256(v);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* x - part, or 0 where that is NaN (x infinite or NaN: the first part carries it). */
DSK_INLINE __m512 x_rest(__m512 x, __m512 part)
{
    const __m512 d = _mm512_sub_ps(x, part);
    return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(d, d, _CMP_ORD_Q), d);
}

/*
 * The split x: for t < nt, k < kc, with v = x[t * ldx + c0 + k], part p < XPARTS of it at
 *   xb[t * ldb + XPART(ldb, p) + k] = bf16(v - the parts before p), nearest even (a rest that is
 *   NaN, from an infinite or NaN v, gives 0: the first part carries it); k in [kc, ldb /
 *   XPARTS) is zero in every part, so a tile may read whole vectors past kc (ldb / XPARTS is a
 *   multiple of 32: each token's parts one after the other).
 */
#define XPART(ldb, p) ((p) * ((ldb) / XPARTS))
static void x_round(const float *x, int64_t ldx, int64_t nt, int64_t c0, int64_t kc, uint16_t *xb,
                    int64_t ldb)
{
    for (int64_t t = 0; t < nt; t++) {
        const float *src = x + t * ldx + c0;
        uint16_t *dst = xb + t * ldb;
        for (int64_t k = 0; k < XPART(ldb, 1); k += 32) {
            const int64_t m = kc - k;
            const __mmask16 m0 = m >= 16 ? 0xffff : m > 0 ? (__mmask16)((1u << m) - 1) : 0;
            const __mmask16 m1 = m >= 32 ? 0xffff : m > 16 ? (__mmask16)((1u << (m - 16)) - 1) : 0;
            __m512 a = _mm512_maskz_loadu_ps(m0, src + k);
            __m512 b = _mm512_maskz_loadu_ps(m1, src + k + 16);
            for (int p = 0; p < XPARTS; p++) {
                const __m512i part = (__m512i)_mm512_cvtne2ps_pbh(b, a);
                _mm512_storeu_si512(dst + XPART(ldb, p) + k, part);
                if (p + 1 < XPARTS) {
                    a = x_rest(a, bf16_half_f32(part, 0));
                    b = x_rest(b, bf16_half_f32(part, 1));
                }
            }
        }
    }
}

DSK_INLINE __m512 dp(__m512 acc, __m512i w, __m512i x)
{
    return _mm512_dpbf16_ps(acc, (__m512bh)w, (__m512bh)x);
}

/* ---- register tiles: R rows (rs apart) x T tokens over the columns [c0, c0 + kc) ---- */

DSK_INLINE void bf_tile(const uint16_t *w, int64_t K, int64_t r, const int R, int64_t rs,
                        const uint16_t *xb, int64_t ldb, int64_t c0, int64_t kc, const int T,
                        float *y, int64_t ldy, int add)
{
    __m512 acc[8][4];
    for (int i = 0; i < R; i++)
        for (int t = 0; t < T; t++)
            acc[i][t] = _mm512_setzero_ps();
    const uint16_t *rows[8];
    for (int i = 0; i < R; i++)
        rows[i] = w + (r + i * rs) * K + c0;
    int64_t k = 0;
    for (; k + 32 <= kc; k += 32) {
        __m512i xv[XPARTS][4];
        for (int p = 0; p < XPARTS; p++)
            for (int t = 0; t < T; t++)
                xv[p][t] = _mm512_loadu_si512(xb + t * ldb + XPART(ldb, p) + k);
        for (int i = 0; i < R; i++) {
            const __m512i wv = _mm512_loadu_si512(rows[i] + k);
            for (int t = 0; t < T; t++)
                for (int p = 0; p < XPARTS; p++)
                    acc[i][t] = dp(acc[i][t], wv, xv[p][t]);
        }
    }
    if (k < kc) { /* the weights are read exactly to kc; x is zero past it */
        const __mmask32 m = (__mmask32)((1ull << (kc - k)) - 1);
        __m512i xv[XPARTS][4];
        for (int p = 0; p < XPARTS; p++)
            for (int t = 0; t < T; t++)
                xv[p][t] = _mm512_loadu_si512(xb + t * ldb + XPART(ldb, p) + k);
        for (int i = 0; i < R; i++) {
            const __m512i wv = _mm512_maskz_loadu_epi16(m, rows[i] + k);
            for (int t = 0; t < T; t++)
                for (int p = 0; p < XPARTS; p++)
                    acc[i][t] = dp(acc[i][t], wv, xv[p][t]);
        }
    }
    for (int i = 0; i < R; i++)
        for (int t = 0; t < T; t++) {
            float *o = y + t * ldy + i * rs;
            const float s = _mm512_reduce_add_ps(acc[i][t]);
            *o = add ? *o + s : s;
        }
}

/* Rows per tile for 1..4 tokens: R * T accumulators + XPARTS * T x vectors + 1 weight <= 32. */
#define DEF_BF_ROWS(T, R)                                                                        \
    static void bf_rows_##T(const dsk_matrix_t *w, int64_t r0, int64_t r1, const uint16_t *xb,   \
                            int64_t ldb, int64_t c0, int64_t kc, float *y, int64_t ldy, int add) \
    {                                                                                            \
        const uint16_t *wd = w->data;                                                            \
        DSK_ROW_TILES(r0, r1, (R), dsk_tile_row_stride(2 * w->cols),                             \
                      bf_tile(wd, w->cols, tile_r, tile_n, tile_s, xb, ldb, c0, kc, T,           \
                              y + (tile_r - r0), ldy, add));                                     \
    }
DEF_BF_ROWS(1, 8)
DEF_BF_ROWS(2, 8)
DEF_BF_ROWS(3, 6)
#define BF_R4 (XPARTS == 1 ? 6 : XPARTS == 2 ? 5 : 4) /* rows of the 4-token tile */
DEF_BF_ROWS(4, BF_R4)

typedef void (*bf_rows_fn)(const dsk_matrix_t *w, int64_t r0, int64_t r1, const uint16_t *xb,
                           int64_t ldb, int64_t c0, int64_t kc, float *y, int64_t ldy, int add);
static const bf_rows_fn bf_rows[5] = {NULL, bf_rows_1, bf_rows_2, bf_rows_3, bf_rows_4};

/* n <= TG_MAX: groups of up to 4 tokens, the rows in blocks of about TG_BLOCK weight bytes. */
static void bf_token_groups(const dsk_matrix_t *w, int64_t r0, int64_t r1, const uint16_t *xb,
                            int64_t ldb, int64_t nt, int64_t c0, int64_t kc, float *y, int64_t ldy,
                            int add)
{
    if (nt <= 4) {
        bf_rows[nt](w, r0, r1, xb, ldb, c0, kc, y, ldy, add);
        return;
    }
    /*
     * A whole number of 4-token tiles of 4 rows a page apart or adjacent: bf16 rows of 7168
     * columns made blocks of 9 rows, a 6-row tile and 3 single rows (130 GFLOP/s against the
     * tile's 174 on one Zen 4 core, cache-resident).
     */
    const int64_t unit = 4 * BF_R4;
    int64_t rows = TG_BLOCK / (2 * w->cols);
    rows = (rows + unit - 1) / unit * unit;
    for (int64_t rb = r0; rb < r1; rb += rows) {
        const int64_t rb1 = min64(r1, rb + rows);
        for (int64_t t = 0; t < nt; t += 4) {
            const int64_t g = min64(4, nt - t);
            bf_rows[g](w, rb, rb1, xb + t * ldb, ldb, c0, kc, y + t * ldy + (rb - r0), ldy, add);
        }
    }
}

/*
 * 32 e4m3 codes -> bf16 of their value / 256, exactly: a normal code (exponent field e >= 1)
 * becomes exponent e + 120 - 8 with the same 3 mantissa bits (one shift and one add); the 8
 * subnormal magnitudes m * 2^-17 come from a table. The NaN codes, which weights never hold,
 * become 480 / 256.
 */
DSK_INLINE __m512i fp8_to_bf16_32(const uint8_t *p)
{
    const __m512i sub_tbl =
        _mm512_set_epi16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                         0x3860, 0x3840, 0x3820, 0x3800, 0x37c0, 0x3780, 0x3700, 0);
    const __m512i b = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)p));
    const __m512i mag = _mm512_and_si512(b, _mm512_set1_epi16(0x7f));
    const __m512i sign =
        _mm512_and_si512(_mm512_slli_epi16(b, 8), _mm512_set1_epi16((short)0x8000));
    const __m512i norm = _mm512_add_epi16(_mm512_slli_epi16(mag, 4), _mm512_set1_epi16(112 << 7));
    const __m512i sub = _mm512_permutexvar_epi16(mag, sub_tbl);
    const __mmask32 is_sub = _mm512_cmplt_epu16_mask(mag, _mm512_set1_epi16(8));
    return _mm512_or_si512(_mm512_mask_blend_epi16(is_sub, norm, sub), sign);
}

/* Row r of an fp8 matrix, columns [c, c + k), as bf16 of value / 256 into out (k <= KC_FP8). */
static void fp8_row_bf16(const dsk_matrix_t *w, int64_t r, int64_t c, int64_t k, uint16_t *out)
{
    const uint8_t *src = (const uint8_t *)w->data + r * w->cols + c;
    int64_t i = 0;
    for (; i + 32 <= k; i += 32)
        _mm512_storeu_si512(out + i, fp8_to_bf16_32(src + i));
    if (i < k) {
        _Alignas(64) uint8_t tmp[32] = {0};
        _Alignas(64) uint16_t conv[32];
        memcpy(tmp, src + i, (size_t)(k - i));
        _mm512_store_si512(conv, fp8_to_bf16_32(tmp));
        memcpy(out + i, conv, (size_t)(k - i) * sizeof(uint16_t));
    }
}

/* ---- tokens in lanes: bf16 weights, LT_MIN..TB_MAX tokens ---- */

/*
 * x as pairs with the tokens in the lanes: for a block of nt <= 64 tokens in V = ceil(nt / 16)
 * vectors, xp[((i * V + v) * XPARTS + p) * 16 + l] holds part p of token 16v + l at the columns
 * c0 + 2i and c0 + 2i + 1 (low, high half; zero past kc and for tokens >= nt). A stored row's
 * pair (one dword) broadcast against it feeds 16 tokens: the weights need no packing and each is
 * read once per chunk of columns, whatever nt.
 */
#define LT_MIN   16 /* fewest tokens of the lanes path */
#define LT_MAX   32 /* tokens per block of it, or 64 where LT_KC(4) covers the row */
#define LT_KC(V) (LT_DW / ((V)*XPARTS * 16) * 2 / 128 * 128) /* columns per chunk */
#define LT_DW    131072 /* dwords of xp per chunk: 512 KiB, with every part */
/* bf16 of one token's row of x per chunk */
#define LT_ROW (XPARTS * (LT_DW / 16 * 2))

/*
 * The lanes path's x pairs and a rounded row of x (544 KiB with one part): too large for the
 * stack of every caller, so each thread has its own, allocated at its first call to the lanes
 * path and freed when the thread exits (a pthread key's destructor). A malloc per call would
 * fault its pages in every time (glibc maps blocks this large afresh). Where the allocation
 * fails, the product takes the packed path (the same rounding of x, its own order of sums).
 */
typedef struct {
    _Alignas(64) uint32_t xp[LT_DW];
    _Alignas(64) uint16_t row[LT_ROW];
} lt_scratch_t;

static _Thread_local lt_scratch_t *lt_scratch_mine;
static pthread_key_t lt_scratch_key;
static pthread_once_t lt_scratch_once = PTHREAD_ONCE_INIT;

static void lt_scratch_key_create(void)
{
    (void)pthread_key_create(&lt_scratch_key, free);
}

static lt_scratch_t *lt_scratch(void)
{
    lt_scratch_t *s = lt_scratch_mine;
    if (s != NULL)
        return s;
    pthread_once(&lt_scratch_once, lt_scratch_key_create);
    s = aligned_alloc(64, sizeof(*s));
    if (s == NULL) /* the caller takes the packed path, which needs no scratch */
        return NULL;
    (void)pthread_setspecific(lt_scratch_key, s);
    lt_scratch_mine = s;
    return s;
}

static void x_lanes(const float *x, int64_t ldx, int64_t nt, int64_t c0, int64_t kc, int V,
                    uint32_t *xp, uint16_t *row)
{
    const int64_t kp = (kc + 1) / 2, ldr = XPARTS * round32(kc);
    memset(xp, 0, (size_t)(kp * V * XPARTS * 16) * sizeof(uint32_t));
    for (int64_t t = 0; t < nt; t++) {
        x_round(x + t * ldx, ldx, 1, c0, kc, row, ldr);
        uint32_t *dst = xp + (t / 16) * XPARTS * 16 + (t % 16);
        for (int p = 0; p < XPARTS; p++) {
            const uint32_t *src = (const uint32_t *)(row + XPART(ldr, p));
            for (int64_t i = 0; i < kp; i++)
                dst[(i * V * XPARTS + p) * 16] = src[i];
        }
    }
}

/* A lanes tile's R x V accumulators set to zero. */
DSK_INLINE void lt_zero(__m512 acc[][4], const int R, const int V)
{
#pragma GCC unroll 32
    for (int j = 0; j < R; j++)
#pragma GCC unroll 32
        for (int v = 0; v < V; v++)
            acc[j][v] = _mm512_setzero_ps();
}

/*
 * One pair of columns of a lanes tile: the pair i of R rows (row j at rows + j * stride, bf16)
 * broadcast against the XPARTS x vectors of each of the V token vectors at xs (pair-major).
 */
DSK_INLINE void lt_pair(__m512 acc[][4], const uint16_t *rows, int64_t stride, const int R,
                        const uint32_t *xs, const int V, int64_t i)
{
    __m512i xv[4][XPARTS];
#pragma GCC unroll 32
    for (int v = 0; v < V; v++)
#pragma GCC unroll 32
        for (int p = 0; p < XPARTS; p++)
            xv[v][p] = _mm512_load_si512(xs + ((i * V + v) * XPARTS + p) * 16);
#pragma GCC unroll 32
    for (int j = 0; j < R; j++) {
        int32_t pair;
        memcpy(&pair, rows + j * stride + 2 * i, sizeof pair);
        const __m512i b = _mm512_set1_epi32(pair);
#pragma GCC unroll 32
        for (int v = 0; v < V; v++)
#pragma GCC unroll 32
            for (int p = 0; p < XPARTS; p++)
                acc[j][v] = dp(acc[j][v], b, xv[v][p]);
    }
}

/* The sums of a lanes tile: row j and token t into y[t * ldy + j * rs] (added when add), tokens
 * < nt only. */
DSK_INLINE void lt_store(__m512 acc[][4], const int R, const int V, int64_t nt, float *y,
                         int64_t ldy, int64_t rs, int add)
{
#pragma GCC unroll 32
    for (int j = 0; j < R; j++)
#pragma GCC unroll 32
        for (int v = 0; v < V; v++) {
            _Alignas(64) float s[16];
            _mm512_store_ps(s, acc[j][v]);
            const int64_t nl = min64(16, nt - 16 * v);
            for (int64_t l = 0; l < nl; l++) {
                float *o = y + (16 * v + l) * ldy + j * rs;
                *o = add ? *o + s[l] : s[l];
            }
        }
}

/*
 * R rows (rs apart) x V vectors of 16 tokens over kc columns from c0 of the stored rows: for each
 * pair of columns, one dword broadcast per row and XPARTS x vectors per token vector. Sums of
 * row i and token t go to y[t * ldy + i * rs] (added when add), tokens < nt only.
 */
DSK_INLINE void lt_tile(const uint16_t *w, int64_t K, int64_t r, const int R, int64_t rs,
                        const uint32_t *xp, const int V, int64_t nt, int64_t c0, int64_t kc,
                        float *y, int64_t ldy, int add)
{
    __m512 acc[24][4];
    lt_zero(acc, R, V);
    const uint16_t *w0 = w + r * K + c0;
    const int64_t ws = rs * K, kp = kc / 2;
    int64_t i = 0;
    for (; i < kp; i++)
        lt_pair(acc, w0, ws, R, xp, V, i);
    if (kc & 1) { /* the last column alone: its partner is not read (x is zero there) */
#pragma GCC unroll 32
        for (int j = 0; j < R; j++) {
            const __m512i b = _mm512_set1_epi32(w0[j * ws + 2 * i]);
#pragma GCC unroll 32
            for (int v = 0; v < V; v++)
#pragma GCC unroll 32
                for (int p = 0; p < XPARTS; p++)
                    acc[j][v] =
                        dp(acc[j][v], b, _mm512_load_si512(xp + ((i * V + v) * XPARTS + p) * 16));
        }
    }
    lt_store(acc, R, V, nt, y, ldy, rs, add);
}

/*
 * The same for fp8 weights: each 128-column slice of the R rows is converted to bf16 (value /
 * 256, exact) into a staging buffer, and its sums go into f32 totals times the row's block scale
 * (times 256), so the scale applies per 128x128 block as in the scalar model. c0 is a multiple
 * of 128.
 */
#define LT8_R(V) (12 / (V))
DSK_INLINE void lt_tile_fp8(const dsk_matrix_t *w, int64_t r, const int R, int64_t rs,
                            const uint32_t *xp, const int V, int64_t nt, int64_t c0, int64_t kc,
                            float *y, int64_t ldy, int add)
{
    _Alignas(64) uint16_t st[12][KC_FP8 + 32];
    __m512 tot[12][4];
    lt_zero(tot, R, V);
    for (int64_t s0 = 0; s0 < kc; s0 += KC_FP8) {
        const int64_t ks = min64(KC_FP8, kc - s0), kp = (ks + 1) / 2;
        for (int j = 0; j < R; j++) {
            fp8_row_bf16(w, r + j * rs, c0 + s0, ks, st[j]);
            st[j][ks] = 0; /* an odd slice's last partner: x is zero there */
        }
        __m512 acc[12][4];
        lt_zero(acc, R, V);
        const uint32_t *xs = xp + (s0 / 2) * V * XPARTS * 16;
        for (int64_t i = 0; i < kp; i++)
            lt_pair(acc, st[0], KC_FP8 + 32, R, xs, V, i);
#pragma GCC unroll 32
        for (int j = 0; j < R; j++) {
            const __m512 sc = _mm512_set1_ps(dsk_block_scale(w, r + j * rs, c0 + s0) * 256.0f);
#pragma GCC unroll 32
            for (int v = 0; v < V; v++)
                tot[j][v] = _mm512_fmadd_ps(acc[j][v], sc, tot[j][v]);
        }
    }
    lt_store(tot, R, V, nt, y, ldy, rs, add);
}

/* Rows per lanes tile of V token vectors: R * V accumulators + V * XPARTS x + 1 broadcast. */
#define LT_R(V) \
    ((V) == 1 ? 8 : 24 / (V) < (31 - (V)*XPARTS) / (V) ? 24 / (V) : (31 - (V)*XPARTS) / (V))
#define DEF_LT_ROWS(V)                                                                          \
    static void lt_rows_##V(const dsk_matrix_t *w, int64_t r0, int64_t r1, const uint32_t *xp,  \
                            int64_t nt, int64_t c0, int64_t kc, float *y, int64_t ldy, int add) \
    {                                                                                           \
        const uint16_t *wd = w->data;                                                           \
        if (w->dtype == DSK_DTYPE_F8_E4M3)                                                      \
            DSK_ROW_TILES(r0, r1, LT8_R(V), dsk_tile_row_stride(w->cols),                       \
                          lt_tile_fp8(w, tile_r, tile_n, tile_s, xp, V, nt, c0, kc,             \
                                      y + (tile_r - r0), ldy, add));                            \
        else                                                                                    \
            DSK_ROW_TILES(r0, r1, LT_R(V), dsk_tile_row_stride(2 * w->cols),                    \
                          lt_tile(wd, w->cols, tile_r, tile_n, tile_s, xp, V, nt, c0, kc,       \
                                  y + (tile_r - r0), ldy, add));                                \
    }
DEF_LT_ROWS(1)
DEF_LT_ROWS(2)
DEF_LT_ROWS(3)
DEF_LT_ROWS(4)
typedef void (*lt_rows_fn)(const dsk_matrix_t *w, int64_t r0, int64_t r1, const uint32_t *xp,
                           int64_t nt, int64_t c0, int64_t kc, float *y, int64_t ldy, int add);
static const lt_rows_fn lt_rows[5] = {NULL, lt_rows_1, lt_rows_2, lt_rows_3, lt_rows_4};

/* bf16 weights, nt <= TB_MAX tokens of x (from x, ldx) into y: column chunks of LT_DW dwords. */
static void bf_lanes(lt_scratch_t *sc, const dsk_matrix_t *w, int64_t r0, int64_t r1,
                     const float *x, int64_t ldx, int64_t nt, float *y, int64_t ldy)
{
    uint32_t *xp = sc->xp;
    const int V = (int)((nt + 15) / 16);
    const int64_t K = w->cols, kcx = LT_KC(V);
    for (int64_t c0 = 0; c0 < K; c0 += kcx) {
        const int64_t kc = min64(kcx, K - c0);
        x_lanes(x, ldx, nt, c0, kc, V, xp, sc->row);
        lt_rows[V](w, r0, r1, xp, nt, c0, kc, y, ldy, c0 > 0);
    }
}

/* ---- packed panels for many tokens ---- */

/*
 * dst[i * 32 + j] = src[j][k + i] for i, j < 8: an 8x8 transpose of dwords (bf16 pairs, moved
 * as float bits: only shuffles touch them).
 */
DSK_INLINE void transpose8(const uint32_t *const src[8], int64_t k, uint32_t *dst)
{
    __m256 r[8];
    for (int j = 0; j < 8; j++)
        r[j] = _mm256_loadu_ps((const float *)(src[j] + k));
    dsk_transpose8(r);
    for (int i = 0; i < 8; i++)
        _mm256_storeu_ps((float *)(dst + i * G_NR), r[i]);
}

/*
 * Pack rows [rp, rp + nr) x columns [c, c + k) as pairs: buf[i * 32 + j] holds W[rp + j][c + 2i]
 * and W[rp + j][c + 2i + 1] (low, high half) for i < ceil(k / 2), j < 32; rows j >= nr, the odd
 * column's partner and the pairs up to a multiple of 8 are zero. Whole bf16 slices are
 * transposed straight from the weights; fp8 and partial slices go through a staging buffer.
 */
static void pack_panel(const dsk_matrix_t *w, int64_t rp, int nr, int64_t c, int64_t k,
                       uint32_t *buf)
{
    _Alignas(64) uint16_t tmp[8][KC_BF16 + 16];
    const int64_t kp8 = ((k + 1) / 2 + 7) & ~(int64_t)7;
    const int direct = w->dtype == DSK_DTYPE_BF16 && (k & 15) == 0;
    for (int j0 = 0; j0 < G_NR; j0 += 8) {
        if (j0 >= nr) {
            for (int64_t i = 0; i < kp8; i++)
                memset(buf + i * G_NR + j0, 0, 8 * sizeof(uint32_t));
            continue;
        }
        const uint32_t *src[8];
        for (int j = 0; j < 8; j++) {
            const int64_t r = rp + j0 + j;
            if (direct && j0 + j < nr) {
                src[j] = (const uint32_t *)((const uint16_t *)w->data + r * w->cols + c);
                continue;
            }
            memset(tmp[j], 0, (size_t)(2 * kp8) * sizeof(uint16_t));
            if (j0 + j < nr && w->dtype == DSK_DTYPE_BF16)
                memcpy(tmp[j], (const uint16_t *)w->data + r * w->cols + c,
                       (size_t)k * sizeof(uint16_t));
            else if (j0 + j < nr)
                fp8_row_bf16(w, r, c, k, tmp[j]);
            src[j] = (const uint32_t *)tmp[j];
        }
        for (int64_t i = 0; i < kp8; i += 8)
            transpose8(src, i, buf + i * G_NR + j0);
    }
}

/*
 * The micro-kernel: for t < T, j < nr
 *   y[t * ldy + j] = (add ? y[..] : 0) + s[j] * sum_{i < kp} pair(buf[i * 32 + j]) . pair(x_t, i)
 * with pair(x_t, i) the sum over the parts of token t's pair (part p at xb + t * ldb +
 * XPART(ldb, p));
 * s is 1 for bf16 and the row's block scale for fp8.
 */
DSK_INLINE void gemm_tile(const uint32_t *buf, int64_t kp, const uint16_t *xb, int64_t ldb,
                          const int T, const float *s, float *y, int64_t ldy, int nr, int add)
{
    __m512 a0[G_T], a1[G_T];
    for (int t = 0; t < T; t++) {
        a0[t] = _mm512_setzero_ps();
        a1[t] = _mm512_setzero_ps();
    }
    const uint32_t *xd[XPARTS][G_T];
    for (int p = 0; p < XPARTS; p++)
        for (int t = 0; t < T; t++)
            xd[p][t] = (const uint32_t *)(xb + t * ldb + XPART(ldb, p));
    for (int64_t i = 0; i < kp; i++) {
        const __m512i w0 = _mm512_load_si512(buf + i * G_NR);
        const __m512i w1 = _mm512_load_si512(buf + i * G_NR + 16);
        for (int t = 0; t < T; t++) {
            for (int p = 0; p < XPARTS; p++) {
                const __m512i b = _mm512_set1_epi32((int)xd[p][t][i]);
                a0[t] = dp(a0[t], w0, b);
                a1[t] = dp(a1[t], w1, b);
            }
        }
    }
    const __m512 s0 = _mm512_loadu_ps(s), s1 = _mm512_loadu_ps(s + 16);
    const __mmask16 m0 = nr >= 16 ? 0xffff : (__mmask16)((1u << nr) - 1);
    const __mmask16 m1 = nr >= 32 ? 0xffff : nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1) : 0;
    for (int t = 0; t < T; t++) {
        float *yt = y + t * ldy;
        const __m512 y0 = add ? _mm512_maskz_loadu_ps(m0, yt) : _mm512_setzero_ps();
        const __m512 y1 = add ? _mm512_maskz_loadu_ps(m1, yt + 16) : _mm512_setzero_ps();
        _mm512_mask_storeu_ps(yt, m0, _mm512_fmadd_ps(a0[t], s0, y0));
        _mm512_mask_storeu_ps(yt + 16, m1, _mm512_fmadd_ps(a1[t], s1, y1));
    }
}

typedef void (*gemm_tile_fn)(const uint32_t *buf, int64_t kp, const uint16_t *xb, int64_t ldb,
                             const float *s, float *y, int64_t ldy, int nr, int add);
#define DEF_GEMM_TILE(T)                                                                        \
    static void gemm_tile_##T(const uint32_t *buf, int64_t kp, const uint16_t *xb, int64_t ldb, \
                              const float *s, float *y, int64_t ldy, int nr, int add)           \
    {                                                                                           \
        gemm_tile(buf, kp, xb, ldb, T, s, y, ldy, nr, add);                                     \
    }
DEF_GEMM_TILE(1)
DEF_GEMM_TILE(2)
DEF_GEMM_TILE(3)
DEF_GEMM_TILE(4)
DEF_GEMM_TILE(5)
DEF_GEMM_TILE(6)
DEF_GEMM_TILE(7)
DEF_GEMM_TILE(8)
DEF_GEMM_TILE(9)
DEF_GEMM_TILE(10)
DEF_GEMM_TILE(11)
DEF_GEMM_TILE(12)
static const gemm_tile_fn gemm_tiles[G_T + 1] = {
    NULL,        gemm_tile_1, gemm_tile_2, gemm_tile_3,  gemm_tile_4,  gemm_tile_5,  gemm_tile_6,
    gemm_tile_7, gemm_tile_8, gemm_tile_9, gemm_tile_10, gemm_tile_11, gemm_tile_12,
};

/*
 * Rows [r0, r1) x the columns [c0, c0 + kc) of one chunk of x (xb: nt tokens) into y, adding to
 * y unless c0 == 0. Rows go in blocks of G_MC so that each token's slice of xb is reused from
 * L1 by every panel of the block.
 */
static void bf_gemm(const dsk_matrix_t *w, int64_t r0, int64_t r1, const uint16_t *xb, int64_t ldb,
                    int64_t nt, int64_t c0, int64_t kc, float *y, int64_t ldy)
{
    _Alignas(64) uint32_t buf[G_MC / G_NR][KC_BF16 / 2 * G_NR];
    _Alignas(64) float scale[G_MC / G_NR][G_NR];
    const int fp8 = w->dtype == DSK_DTYPE_F8_E4M3;
    const int64_t KC = fp8 ? KC_FP8 : KC_BF16, bcols = (w->cols + 127) / 128;
    for (int64_t rb = r0; rb < r1; rb += G_MC) {
        const int64_t rb1 = min64(r1, rb + G_MC);
        const int np = (int)((rb1 - rb + G_NR - 1) / G_NR);
        int nr[G_MC / G_NR];
        for (int p = 0; p < np; p++)
            nr[p] = (int)min64(G_NR, rb1 - (rb + p * G_NR));
        for (int64_t s0 = 0; s0 < kc; s0 += KC) {
            const int64_t ks = min64(KC, kc - s0), kp = (ks + 1) / 2;
            for (int p = 0; p < np; p++) {
                const int64_t rp = rb + p * G_NR;
                pack_panel(w, rp, nr[p], c0 + s0, ks, buf[p]);
                for (int j = 0; j < G_NR; j++) /* fp8: value / 256 in the panel */
                    scale[p][j] =
                        !fp8 ? 1.0f
                        : j < nr[p]
                            ? w->scale_inv[((rp + j) / 128) * bcols + (c0 + s0) / 128] * 256.0f
                            : 0.0f;
            }
            for (int64_t t = 0; t < nt; t += G_T) {
                const int64_t tn = min64(G_T, nt - t);
                for (int p = 0; p < np; p++)
                    gemm_tiles[tn](buf[p], kp, xb + t * ldb + s0, ldb, scale[p],
                                   y + t * ldy + (rb + p * G_NR - r0), ldy, nr[p], c0 + s0 > 0);
            }
        }
    }
}

/* ---- the slots ---- */

static void mm_bf16x(const dsk_matrix_t *w, int64_t r0, int64_t r1, const float *x, int64_t ldx,
                     int64_t n, float *y, int64_t ldy)
{
    if (n <= 0 || r1 <= r0)
        return;
    const int64_t K = w->cols;
    if (K == 0) {
        for (int64_t t = 0; t < n; t++)
            memset(y + t * ldy, 0, (size_t)(r1 - r0) * sizeof(float));
        return;
    }
    lt_scratch_t *sc; /* NULL: out of memory for it, the packed path below runs instead */
    if (n >= LT_MIN && n <= TB_MAX && (sc = lt_scratch()) != NULL) {
        /* bf16, or fp8 from DSK_BF16X_FP8_MIN */
        /*
         * Each chunk of columns after the first adds its sums into y, a cache line per token
         * and row tile, so 64 tokens go at once only in one chunk (and with bf16 weights: fp8
         * tiles would have 3 rows).
         */
        const int64_t tb = w->dtype == DSK_DTYPE_BF16 && K <= LT_KC(4) ? 64 : LT_MAX;
        for (int64_t t0 = 0; t0 < n; t0 += tb)
            bf_lanes(sc, w, r0, r1, x + t0 * ldx, ldx, min64(tb, n - t0), y + t0 * ldy, ldy);
        return;
    }
    _Alignas(64) uint16_t xb[XB_ELEMS];
    for (int64_t t0 = 0; t0 < n; t0 += TB_MAX) {
        const int64_t nt = min64(TB_MAX, n - t0);
        /* all columns at once where they fit; else chunks of whole slices */
        int64_t kcx = K;
        if (nt * XPARTS * round32(K) > XB_ELEMS)
            kcx = XB_ELEMS / XPARTS / nt / KC_BF16 * KC_BF16;
        for (int64_t c0 = 0; c0 < K; c0 += kcx) {
            const int64_t kc = min64(kcx, K - c0), ldb = XPARTS * round32(kc);
            x_round(x + t0 * ldx, ldx, nt, c0, kc, xb, ldb);
            float *yt = y + t0 * ldy;
            if (nt <= TG_MAX && w->dtype == DSK_DTYPE_BF16)
                bf_token_groups(w, r0, r1, xb, ldb, nt, c0, kc, yt, ldy, c0 > 0);
            else
                bf_gemm(w, r0, r1, xb, ldb, nt, c0, kc, yt, ldy);
        }
    }
}

static void matmul_fp8_bf16x(const dsk_matrix_t *w, int64_t r0, int64_t r1, const float *x,
                             int64_t ldx, int64_t n, float *y, int64_t ldy)
{
    if (n < DSK_BF16X_FP8_MIN)
        dsk_avx512_matmul_f32act(DSK_DTYPE_F8_E4M3, w, r0, r1, x, ldx, n, y, ldy);
    else
        mm_bf16x(w, r0, r1, x, ldx, n, y, ldy);
}

/* The same with the byte-table fp8 kernel (dsk_avx512_vbmi.c) at one token. */
static void matmul_fp8_bf16x_table(const dsk_matrix_t *w, int64_t r0, int64_t r1, const float *x,
                                   int64_t ldx, int64_t n, float *y, int64_t ldy)
{
    if (n <= DSK_FP8_TABLE_N_MAX)
        dsk_avx512_fp8_table_matmul(w, r0, r1, x, ldx, n, y, ldy);
    else
        matmul_fp8_bf16x(w, r0, r1, x, ldx, n, y, ldy);
}

void dsk_ops_fill_avx512_bf16(dsk_ops_t *ops)
{
    ops->matmul[DSK_DTYPE_BF16] = mm_bf16x;
    ops->x_bf16 |= 1u << DSK_DTYPE_BF16;
    ops->matmul[DSK_DTYPE_F8_E4M3] = ops->fp8_table ? matmul_fp8_bf16x_table : matmul_fp8_bf16x;
    ops->x_bf16 |= 1u << DSK_DTYPE_F8_E4M3;
}
