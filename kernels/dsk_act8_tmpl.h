/*
 * dsk_act8_tmpl.h - the int8-activation decode product (matmul, n <= 4 tokens) of the integer
 * weight dtypes, written once over a small integer vocabulary and included by dsk_avx2_act8.c
 * (vpmaddubsw) and dsk_avx512_vnni.c (vpdpbusd). Every function is static and compiled with the
 * including file's ISA flags; include it nowhere else.
 *
 * The including file defines, for 32 inputs of one row in input order (a __m256i step):
 *   a8w_t                      the prepared weights of a step
 *   a8_prep(dt, v)             a8w_t from the 32 signed q bytes (I8) or 32 nibbles 0..15 (int4)
 *   a8_step(dt, acc, w, x)     acc plus the step's products with the 32 int8 x, in the ISA's
 *                              accumulator form
 *   a8_i32(dt, acc)            the accumulator as 8 int32 lanes whose sum is sum (a + A8_BIAS) x,
 *                              a being the q values the step was given
 *   A8_BIAS(dt)                that offset (0, 8 for the nibbles, 128 for VNNI's biased int8)
 *   A8_R1..A8_R4               rows per register tile for 1..4 tokens
 *   A8_FALLBACK                the level's f32-activation matmul (dsk_impl.h), for n >= 5
 *   A8_QUANTIZE                the quantizer, a function with dsk_act8_quantize's parameters and
 *                              results (optional; default dsk_act8_quantize)
 *
 * x is quantized (A8_QUANTIZE: the reference's bits) DSK_A8_KC columns at a time
 * into a stack buffer; per group the integer dot of every row x token is exact, the offset is
 * removed in integers (the lane-0 start value -A8_BIAS * sum(q_x)), and the int32 lanes are
 * converted and folded into f32 totals with w_scale * x_scale.
 */
#include <immintrin.h>
#include <string.h>

#ifndef A8_QUANTIZE
#define A8_QUANTIZE dsk_act8_quantize
#endif

#define DSK_INLINE    static inline __attribute__((always_inline))
#define A8_N_MAX      4
#define A8_GROUPS_MAX (DSK_A8_KC / 32) /* groups per chunk, at the smallest group */

/* The quantized x of up to 4 tokens over one chunk of columns. */
typedef struct {
    _Alignas(32) int8_t q[A8_N_MAX][DSK_A8_KC];
    float scale[A8_N_MAX][A8_GROUPS_MAX];
    int32_t corr[A8_N_MAX][A8_GROUPS_MAX]; /* -A8_BIAS * sum of the group's q */
} a8_x_t;

DSK_INLINE int64_t a8_group(int dt)
{
    return dt == DSK_DTYPE_I4_G32 ? 32 : 128;
}

/*
 * 32 q values of a row from input c of the chunk's row data (a multiple of 32); `left` inputs
 * remain in the row from c. I8 reads only those when fewer than 32 remain (the rest read as 0);
 * an int4 chunk is always whole.
 */
DSK_INLINE __m256i a8_load_w(int dt, const uint8_t *row, int64_t c, int64_t left)
{
    if (dt == DSK_DTYPE_I8) {
        if (left >= 32)
            return _mm256_loadu_si256((const __m256i *)(row + c));
        _Alignas(32) uint8_t buf[32] = {0};
        memcpy(buf, row + c, (size_t)left);
        return _mm256_load_si256((const __m256i *)buf);
    }
    /* byte j holds input j (low nibble) and 16 + j (high nibble) */
    __m128i b = _mm_loadu_si128((const __m128i *)(row + c / 2));
    __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(b), _mm_srli_epi16(b, 4), 1);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x0f));
}

/* *y (accumulate ? +=: =) the sum of the 8 lanes of tot. */
DSK_INLINE void a8_put(__m256 tot, float *y, int accumulate)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(tot), _mm256_extractf128_ps(tot, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    *y = accumulate ? *y + _mm_cvtss_f32(s) : _mm_cvtss_f32(s);
}

/*
 * y[t * ldy + i * rs] (+)= sum over the chunk [k0, k0 + kc) of W[r + i * rs] x[t] for i < R, t < T,
 * from the chunk's group g_first on; the weights' scales and data are those of the chunk.
 * accumulate: add to y (chunks after the first).
 */
DSK_INLINE void a8_tile_from(int dt, const dsk_matrix_t *w, int64_t r, const int R,
                             const int64_t rs, int64_t k0, int64_t kc, const a8_x_t *xq,
                             const int T, float *y, int64_t ldy, int accumulate, int64_t g_first)
{
    const int64_t G = a8_group(dt), K = w->cols, ng = (kc + G - 1) / G;
    const int64_t row_bytes = dsk_dtype_row_bytes((dsk_dtype_t)dt, K);
    const int64_t sc_cols = (K + G - 1) / G;
    const uint8_t *rows[8];
    const float *ws[8];
    __m256 tot[8][A8_N_MAX];
    for (int i = 0; i < R; i++) {
        rows[i] = (const uint8_t *)w->data + (r + i * rs) * row_bytes +
                  (dt == DSK_DTYPE_I8 ? k0 : k0 / 2);
        ws[i] = w->scale_inv + (r + i * rs) * sc_cols + k0 / G;
        for (int t = 0; t < T; t++)
            tot[i][t] = _mm256_setzero_ps();
    }
    for (int64_t g = g_first; g < ng; g++) {
        const int64_t c0 = g * G, c1 = c0 + G < kc ? c0 + G : kc;
        __m256i acc[8][A8_N_MAX];
        for (int i = 0; i < R; i++)
            for (int t = 0; t < T; t++)
                acc[i][t] = _mm256_setzero_si256();
        for (int64_t c = c0; c < c1; c += 32) {
            __m256i xv[A8_N_MAX];
            for (int t = 0; t < T; t++)
                xv[t] = _mm256_load_si256((const __m256i *)(xq->q[t] + c));
            for (int i = 0; i < R; i++) {
                const a8w_t wv = a8_prep(dt, a8_load_w(dt, rows[i], c, kc - c));
                for (int t = 0; t < T; t++)
                    acc[i][t] = a8_step(dt, acc[i][t], wv, xv[t]);
            }
        }
        for (int i = 0; i < R; i++) {
            for (int t = 0; t < T; t++) {
                __m256i d = a8_i32(dt, acc[i][t]);
                if (A8_BIAS(dt) != 0)
                    d = _mm256_add_epi32(d,
                                         _mm256_castsi128_si256(_mm_cvtsi32_si128(xq->corr[t][g])));
                tot[i][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d),
                                            _mm256_set1_ps(ws[i][g] * xq->scale[t][g]), tot[i][t]);
            }
        }
    }
    for (int i = 0; i < R; i++)
        for (int t = 0; t < T; t++)
            a8_put(tot[i][t], y + t * ldy + i * rs, accumulate);
}

/* a8_tile_from over the whole chunk. */
DSK_INLINE void a8_tile(int dt, const dsk_matrix_t *w, int64_t r, const int R, const int64_t rs,
                        int64_t k0, int64_t kc, const a8_x_t *xq, const int T, float *y,
                        int64_t ldy, int accumulate)
{
    a8_tile_from(dt, w, r, R, rs, k0, kc, xq, T, y, ldy, accumulate, 0);
}

/* Quantizes the chunk [k0, k0 + kc) of the n tokens of x into *xq. */
DSK_INLINE void a8_quantize_chunk(int dt, const float *x, int64_t ldx, int64_t n, int64_t k0,
                                  int64_t kc, a8_x_t *xq)
{
    const int64_t G = a8_group(dt), ng = (kc + G - 1) / G;
    int32_t sum[A8_GROUPS_MAX];
    for (int64_t t = 0; t < n; t++) {
        A8_QUANTIZE(x + t * ldx + k0, kc, G, xq->q[t], xq->scale[t], sum);
        for (int64_t g = 0; g < ng; g++)
            xq->corr[t][g] = -A8_BIAS(dt) * sum[g];
    }
}

/*
 * The tile of the int4 dtypes: an including file may define A8_TILE_Q4 as the name of its own
 * tile (the parameters of a8_tile; defined after this file is included); else a8_tile.
 */
#ifdef A8_TILE_Q4
DSK_INLINE void A8_TILE_Q4(int dt, const dsk_matrix_t *w, int64_t r, const int R, const int64_t rs,
                           int64_t k0, int64_t kc, const a8_x_t *xq, const int T, float *y,
                           int64_t ldy, int accumulate);
#else
#define A8_TILE_Q4 a8_tile
#endif

#define DEF_A8_ROWS(DT, T, R, TILE)                                                              \
    static void a8_rows_##DT##_##T(const dsk_matrix_t *w, int64_t r0, int64_t r1, int64_t k0,    \
                                   int64_t kc, const a8_x_t *xq, float *y, int64_t ldy)          \
    {                                                                                            \
        DSK_ROW_TILES(                                                                           \
            r0, r1, (R), dsk_tile_row_stride(dsk_dtype_row_bytes(DT, w->cols)),                  \
            TILE(DT, w, tile_r, tile_n, tile_s, k0, kc, xq, T, y + (tile_r - r0), ldy, k0 > 0)); \
    }
/*
 * Batched decode of I8 weights, A8_N_MAX < n <= A8_TG_MAX tokens, where the including file
 * defines A8_TG_MAX: the n <= 4 tiles over groups of up to 4 tokens (each group's x quantized
 * once per column chunk), the rows in blocks of about A8_TG_BLOCK weight bytes so that a block
 * read from memory for the first group is read from L2 by the others (the f32 path's token
 * groups, dsk_simd_tmpl.h, with the integer tiles). Stack: A8_TG_MAX / 4 quantized chunks.
 */
#ifdef A8_TG_MAX
#define A8_TG_BLOCK (128 << 10)
#define A8_TG_ROWS  24 /* a multiple of every tile's rows x row stride at V3 widths */
static void a8_token_groups_i8(const dsk_matrix_t *w, int64_t r0, int64_t r1, const float *x,
                               int64_t ldx, int64_t n, float *y, int64_t ldy);
#define A8_TOKEN_GROUPS(DT)                                                                 \
    if ((DT) == DSK_DTYPE_I8 && n > A8_N_MAX && n <= A8_TG_MAX && w->cols > 0 && r1 > r0) { \
        a8_token_groups_i8(w, r0, r1, x, ldx, n, y, ldy);                                   \
        return;                                                                             \
    }
#else
#define A8_TOKEN_GROUPS(DT)
#endif

#define DEF_A8(DT, NAME, TILE)                                                                  \
    DEF_A8_ROWS(DT, 1, A8_R1, TILE)                                                             \
    DEF_A8_ROWS(DT, 2, A8_R2, TILE)                                                             \
    DEF_A8_ROWS(DT, 3, A8_R3, TILE)                                                             \
    DEF_A8_ROWS(DT, 4, A8_R4, TILE)                                                             \
    static void matmul_a8_##NAME(const dsk_matrix_t *w, int64_t r0, int64_t r1, const float *x, \
                                 int64_t ldx, int64_t n, float *y, int64_t ldy)                 \
    {                                                                                           \
        if (w->layout != DSK_LAYOUT_ROWS) { /* int4 repacked at load: every n */                \
            A8_Q4L(w, r0, r1, x, ldx, n, y, ldy);                                               \
            return;                                                                             \
        }                                                                                       \
        A8_TOKEN_GROUPS(DT)                                                                     \
        if (n > A8_N_MAX || w->cols == 0) {                                                     \
            A8_FALLBACK(DT, w, r0, r1, x, ldx, n, y, ldy);                                      \
            return;                                                                             \
        }                                                                                       \
        if (n <= 0 || r1 <= r0)                                                                 \
            return;                                                                             \
        a8_x_t xq;                                                                              \
        for (int64_t k0 = 0; k0 < w->cols; k0 += DSK_A8_KC) {                                   \
            const int64_t kc = w->cols - k0 < DSK_A8_KC ? w->cols - k0 : DSK_A8_KC;             \
            a8_quantize_chunk(DT, x, ldx, n, k0, kc, &xq);                                      \
            switch (n) {                                                                        \
            case 1:                                                                             \
                a8_rows_##DT##_1(w, r0, r1, k0, kc, &xq, y, ldy);                               \
                break;                                                                          \
            case 2:                                                                             \
                a8_rows_##DT##_2(w, r0, r1, k0, kc, &xq, y, ldy);                               \
                break;                                                                          \
            case 3:                                                                             \
                a8_rows_##DT##_3(w, r0, r1, k0, kc, &xq, y, ldy);                               \
                break;                                                                          \
            default:                                                                            \
                a8_rows_##DT##_4(w, r0, r1, k0, kc, &xq, y, ldy);                               \
                break;                                                                          \
            }                                                                                   \
        }                                                                                       \
    }
DEF_A8(3, i8, a8_tile)
DEF_A8(4, i4a, A8_TILE_Q4)
DEF_A8(5, i4b, A8_TILE_Q4)

#ifdef A8_TG_MAX
/* The rows [rb, rb1) of one column chunk for the T tokens of one group (a8_rows of I8). */
static void a8_group_rows_i8(const dsk_matrix_t *w, int64_t rb, int64_t rb1, int64_t k0, int64_t kc,
                             const a8_x_t *xq, int64_t T, float *y, int64_t ldy)
{
    switch (T) {
    case 1:
        a8_rows_3_1(w, rb, rb1, k0, kc, xq, y, ldy);
        break;
    case 2:
        a8_rows_3_2(w, rb, rb1, k0, kc, xq, y, ldy);
        break;
    case 3:
        a8_rows_3_3(w, rb, rb1, k0, kc, xq, y, ldy);
        break;
    default:
        a8_rows_3_4(w, rb, rb1, k0, kc, xq, y, ldy);
        break;
    }
}

static void a8_token_groups_i8(const dsk_matrix_t *w, int64_t r0, int64_t r1, const float *x,
                               int64_t ldx, int64_t n, float *y, int64_t ldy)
{
    a8_x_t xg[(A8_TG_MAX + A8_N_MAX - 1) / A8_N_MAX];
    const int64_t ngr = (n + A8_N_MAX - 1) / A8_N_MAX;
    for (int64_t k0 = 0; k0 < w->cols; k0 += DSK_A8_KC) {
        const int64_t kc = w->cols - k0 < DSK_A8_KC ? w->cols - k0 : DSK_A8_KC;
        for (int64_t j = 0; j < ngr; j++) {
            const int64_t t = j * A8_N_MAX, T = n - t < A8_N_MAX ? n - t : A8_N_MAX;
            a8_quantize_chunk(DSK_DTYPE_I8, x + t * ldx, ldx, T, k0, kc, &xg[j]);
        }
        int64_t rows = A8_TG_BLOCK / kc;
        rows = rows < A8_TG_ROWS ? A8_TG_ROWS : (rows + A8_TG_ROWS - 1) / A8_TG_ROWS * A8_TG_ROWS;
        for (int64_t rb = r0; rb < r1; rb += rows) {
            const int64_t rb1 = r1 - rb < rows ? r1 : rb + rows;
            for (int64_t j = 0; j < ngr; j++) {
                const int64_t t = j * A8_N_MAX, T = n - t < A8_N_MAX ? n - t : A8_N_MAX;
                a8_group_rows_i8(w, rb, rb1, k0, kc, &xg[j], T, y + t * ldy + (rb - r0), ldy);
            }
        }
    }
}
#endif

/* The int8-activation slots: matmul of the three integer dtypes. */
static void a8_fill(dsk_ops_t *ops)
{
    ops->matmul[DSK_DTYPE_I8] = matmul_a8_i8;
    ops->matmul[DSK_DTYPE_I4_G32] = matmul_a8_i4a;
    ops->matmul[DSK_DTYPE_I4_G128] = matmul_a8_i4b;
#ifdef A8_TG_MAX
    ops->a8_n_max[DSK_DTYPE_I8] = A8_TG_MAX;
#else
    ops->a8_n_max[DSK_DTYPE_I8] = A8_N_MAX;
#endif
    ops->a8_n_max[DSK_DTYPE_I4_G32] = A8_N_MAX;
    ops->a8_n_max[DSK_DTYPE_I4_G128] = A8_N_MAX;
}
