/*
 * dsk_avx2_fp8i.c - the AVX2 fp8 matmuls with an all-integer e4m3 -> f32 conversion, for CPUs
 * whose FMAs take f32 subnormal inputs at full speed (AMD Zen; dsk_dispatch.c decides). Same
 * template as dsk_avx2.c; only the fp8 slots are taken from here.
 *
 * The sign-extended byte shifted left by 20 puts the sign at bit 31 and the 7 exponent/mantissa
 * bits at 26..20 (the f32 exponent's low 4 bits and the mantissa's top 3); the mask clears the
 * sign copies in between. That is the value times 2^-120 for every finite code; e4m3 subnormals
 * (e = 0) become f32 subnormals with the same mantissa, which the FMA takes exactly. Three
 * integer ops per 8 weights instead of F16C's shift/mask plus a two-uop conversion and a lane
 * crossing: decode of fp8 weights is bound by exactly this dequantization on AVX2.
 *
 * On Intel cores every FMA that reads a subnormal takes a microcode assist (measured 30x slower
 * on a Sapphire Rapids host), which is why this is not the default there.
 *
 * x is scaled by 2^64 in the decode kernel (and the rest of 2^120 goes into the block scale), so
 * that no product or partial sum is subnormal while activations up to 2^60 cannot overflow.
 *
 * Decode of 1..4 tokens has its own tile here (fp8_tile; 4 up to 8192 columns): 32 weights per load
 * converted without unpacks into a lane order that x matches once per call (fp8_x_prep: x permuted
 * and scaled into a stack buffer), instead of permuting or scaling x again in every tile.
 */
#include "dsk_impl.h"

#include "dsk_avx2_vocab.h"

#define FP8_UNSCALE 0x1p120f
#define FP8_X_SCALE 0x1p64f
#define FP8_MASK    ((int)0x87f00000)

static inline __m256 v_load_fp8(const uint8_t *p)
{
    __m256i d = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p));
    return _mm256_castsi256_ps(
        _mm256_and_si256(_mm256_slli_epi32(d, 20), _mm256_set1_epi32(FP8_MASK)));
}

/*
 * 32 fp8 weights with in-lane unpacks only: each byte goes to bits 31..24 of a dword, an
 * arithmetic shift by 4 brings it to 27..20 and the mask does the rest. Lane order: out[q] holds
 * weights 4q..4q+3 and 16+4q..16+4q+3 (fp8_x_load4 loads x in the same order).
 */
#define FP8_WIDE      1
#define FP8_WIDE_TMAX 1
static inline void fp8_w_load4(const uint8_t *p, __m256 out[4])
{
    const __m256i z = _mm256_setzero_si256(), m = _mm256_set1_epi32(FP8_MASK);
    __m256i b = _mm256_loadu_si256((const __m256i *)p);
    __m256i lo = _mm256_unpacklo_epi8(z, b), hi = _mm256_unpackhi_epi8(z, b);
    out[0] = _mm256_castsi256_ps(
        _mm256_and_si256(_mm256_srai_epi32(_mm256_unpacklo_epi16(z, lo), 4), m));
    out[1] = _mm256_castsi256_ps(
        _mm256_and_si256(_mm256_srai_epi32(_mm256_unpackhi_epi16(z, lo), 4), m));
    out[2] = _mm256_castsi256_ps(
        _mm256_and_si256(_mm256_srai_epi32(_mm256_unpacklo_epi16(z, hi), 4), m));
    out[3] = _mm256_castsi256_ps(
        _mm256_and_si256(_mm256_srai_epi32(_mm256_unpackhi_epi16(z, hi), 4), m));
}

/* x[0..32) in fp8_w_load4's lane order, times FP8_X_SCALE. */
static inline void fp8_x_load4(const float *x, __m256 out[4])
{
    const __m256 s = _mm256_set1_ps(FP8_X_SCALE);
    for (int q = 0; q < 4; q++)
        out[q] = _mm256_mul_ps(_mm256_loadu2_m128(x + 16 + 4 * q, x + 4 * q), s);
}

#include "dsk_simd_tmpl.h"

/* ---- decode, n <= 4 tokens: this file's own register tile ---- */

/* The three constants of fp8_w_load32, made once per tile (fp8_k_pin). */
typedef struct {
    __m256i odd, even, mask;
} fp8_k_t;

/*
 * The constants as values the compiler cannot re-create from memory. With 6-8 accumulators live
 * (2-4 tokens) GCC otherwise reloaded them from .rodata before every conversion (re-creating a
 * constant is free in its register model, so under pressure it prefers that to keeping it):
 * one extra load per converted vector. Behind an empty asm they are ordinary values and stay in
 * registers (docs/PERFORMANCE.md, "Batched fp8 decode: constants in registers, one chunk of x").
 */
static inline fp8_k_t fp8_k_pin(void)
{
    fp8_k_t k = {_mm256_set1_epi16(16 << 8), _mm256_set1_epi16(16), _mm256_set1_epi32(FP8_MASK)};
    __asm__("" : "+x"(k.odd), "+x"(k.even), "+x"(k.mask));
    return k;
}

/*
 * 32 fp8 weights from one 32-byte load, without unpacks: out[j] lane k holds weight 4k + j (byte j
 * of dword k). vpmaddubsw with the unsigned constant 16 in one byte of each word and 0 in the
 * other multiplies the chosen signed byte by 16, which is the byte sign-extended to the word and
 * shifted left by 4: bits 11..4 of the word, the sign copied above. For the high bytes of the
 * dword (3 and 2 after the odd/even choice) that is bits 27..20 of the dword already, for bytes 1
 * and 0 a 32-bit shift by 16 moves it there, and FP8_MASK keeps the sign and the 7 value bits, as
 * in v_load_fp8. 8 integer ops for 32 weights (v_load_fp8: 12, fp8_w_load4: 14), 2 of them shifts
 * and none a shuffle; the multiplies run beside the shifts. Measured on the Zen 3 development VM,
 * one thread, cache-resident 32x7168: 21 G weights/s at one token against 12.7 for the template's
 * tile with fp8_w_load4, and 17 with the same tile converting through 16-bit shifts.
 */
static inline void fp8_w_load32(const uint8_t *p, const fp8_k_t *k, __m256 out[4])
{
    const __m256i v = _mm256_loadu_si256((const __m256i *)p);
    const __m256i odd = _mm256_maddubs_epi16(k->odd, v);
    const __m256i even = _mm256_maddubs_epi16(k->even, v);
    out[0] = _mm256_castsi256_ps(_mm256_and_si256(_mm256_slli_epi32(even, 16), k->mask));
    out[1] = _mm256_castsi256_ps(_mm256_and_si256(_mm256_slli_epi32(odd, 16), k->mask));
    out[2] = _mm256_castsi256_ps(_mm256_and_si256(even, k->mask));
    out[3] = _mm256_castsi256_ps(_mm256_and_si256(odd, k->mask));
}

/*
 * xb[0 .. k) = x[0 .. k) * FP8_X_SCALE with every whole 32-column group in fp8_w_load32's lane
 * order (xb[c + 8j + i] = x[c + 4i + j]) and a partial last group in natural order. x starts at a
 * multiple of 32 columns of the matrix, so these groups are the tile's.
 */
static void fp8_x_prep(const float *x, int64_t k, float *xb)
{
    const __m256 s = _mm256_set1_ps(FP8_X_SCALE);
    int64_t c = 0;
    for (; c + 32 <= k; c += 32) {
        /* b_q holds x[4q .. 4q+3] and x[16+4q .. 16+4q+3]; then a 4x4 transpose in each lane */
        const float *p = x + c;
        __m256 b0 = _mm256_loadu2_m128(p + 16, p), b1 = _mm256_loadu2_m128(p + 20, p + 4);
        __m256 b2 = _mm256_loadu2_m128(p + 24, p + 8), b3 = _mm256_loadu2_m128(p + 28, p + 12);
        __m256 t0 = _mm256_unpacklo_ps(b0, b1), t1 = _mm256_unpackhi_ps(b0, b1);
        __m256 t2 = _mm256_unpacklo_ps(b2, b3), t3 = _mm256_unpackhi_ps(b2, b3);
        _mm256_storeu_ps(xb + c, _mm256_mul_ps(_mm256_shuffle_ps(t0, t2, 0x44), s));
        _mm256_storeu_ps(xb + c + 8, _mm256_mul_ps(_mm256_shuffle_ps(t0, t2, 0xee), s));
        _mm256_storeu_ps(xb + c + 16, _mm256_mul_ps(_mm256_shuffle_ps(t1, t3, 0x44), s));
        _mm256_storeu_ps(xb + c + 24, _mm256_mul_ps(_mm256_shuffle_ps(t1, t3, 0xee), s));
    }
    for (; c < k; c++)
        xb[c] = x[c] * FP8_X_SCALE;
}

/*
 * y[t * ldy + i * rs] (add ? += : =) sum_{c in [k0, k1)} W[r + i * rs][c] x[t][c] for i < R, t < T,
 * with x prepared by fp8_x_prep (token t at xb + t * ldb, column c at c - k0; k0 a multiple of
 * 128). x is read from L1 inside the FMAs, which leaves the registers to the R x T accumulators
 * (6 x 1, 3 x 2, 3 x 3 or 2 x 4: with the 4 converted vectors and the 3 constants they fit the 16
 * ymm registers), one chain each.
 */
DSK_INLINE void fp8_tile(const dsk_matrix_t *w, int64_t r, const int R, const int64_t rs,
                         const float *xb, int64_t ldb, int64_t k0, int64_t k1, const int T,
                         float *y, int64_t ldy, int add)
{
    const int64_t K = w->cols;
    const uint8_t *row = (const uint8_t *)w->data + r * K;
    const fp8_k_t kk = fp8_k_pin();
    V tot[6][SMALL_N_MAX];
    for (int i = 0; i < R; i++)
        for (int t = 0; t < T; t++)
            tot[i][t] = v_zero();
    for (int64_t c0 = k0; c0 < k1; c0 += DSK_FP8_BLOCK) {
        const int64_t c1 = c0 + DSK_FP8_BLOCK < k1 ? c0 + DSK_FP8_BLOCK : k1;
        V acc[6][SMALL_N_MAX];
        for (int i = 0; i < R; i++)
            for (int t = 0; t < T; t++)
                acc[i][t] = v_zero();
        int64_t c = c0;
        for (; c + 32 <= c1; c += 32) {
            const float *xc = xb + (c - k0);
            for (int i = 0; i < R; i++) {
                V wq[4];
                fp8_w_load32(row + i * rs * K + c, &kk, wq);
                for (int t = 0; t < T; t++)
                    for (int q = 0; q < 4; q++)
                        acc[i][t] = v_fma(wq[q], v_loadu(xc + t * ldb + 8 * q), acc[i][t]);
            }
        }
        for (; c < c1; c += VL) { /* the partial last group, natural order in xb */
            const int m = c1 - c < VL ? (int)(c1 - c) : VL;
            const float *xc = xb + (c - k0);
            for (int i = 0; i < R; i++) {
                V wv = m == VL ? v_load_fp8(row + i * rs * K + c)
                               : w_load_part(DT_FP8, row + i * rs * K, c, m);
                for (int t = 0; t < T; t++) {
                    V xv = m == VL ? v_loadu(xc + t * ldb) : x_load_part(xc + t * ldb, m);
                    acc[i][t] = v_fma(wv, xv, acc[i][t]);
                }
            }
        }
        for (int i = 0; i < R; i++) {
            V s = v_set1(w_scale(DT_FP8, w, r + i * rs, c0));
            for (int t = 0; t < T; t++)
                tot[i][t] = v_fma(acc[i][t], s, tot[i][t]);
        }
    }
    for (int i = 0; i < R; i++)
        for (int t = 0; t < T; t++)
            y[t * ldy + i * rs] = (add ? y[t * ldy + i * rs] : 0.0f) + v_hsum(tot[i][t]);
}

/*
 * Columns in chunks of at most XB_FLOATS / T (128 KiB of prepared x on the stack), each chunk over
 * all rows of the range: one chunk for every V3 matrix at 1 token, and for every one but the
 * 18432-column dense down projection at 2-4 tokens (with 64 KiB, 3 tokens of 7168 columns took
 * two passes over the rows: paired, two threads, one chunk is 1.14-1.17x at 3 tokens and
 * 1.11x for the down projection at one token). Rows per tile R for 1, 2, 3, 4 tokens: 6, 3, 3, 2.
 * Measured against the alternatives with one thread, the variants alternated every 50 ms in one
 * process (medians of 30 pairs, docs/PERFORMANCE.md): one token with 6 rows against 4 rows of two
 * chains each: 1.04x cache-resident, 1.06-1.12x streaming (5 rows 0.95x, 8 rows 0.83-0.89x of 6);
 * 2 and 3 tokens with 4 or 2 rows: no better.
 */
#define XB_FLOATS 32768
#define DEF_FP8_DECODE(T, R)                                                                  \
    static void fp8_decode_##T(const dsk_matrix_t *w, int64_t r0, int64_t r1, const float *x, \
                               int64_t ldx, float *y, int64_t ldy)                            \
    {                                                                                         \
        _Alignas(32) float xb[XB_FLOATS];                                                     \
        const int64_t K = w->cols, kc = XB_FLOATS / (T) / DSK_FP8_BLOCK * DSK_FP8_BLOCK;      \
        for (int64_t k0 = 0; k0 < K; k0 += kc) {                                              \
            const int64_t k1 = K - k0 < kc ? K : k0 + kc, ldb = k1 - k0;                      \
            for (int t = 0; t < (T); t++)                                                     \
                fp8_x_prep(x + t * ldx + k0, ldb, xb + t * ldb);                              \
            DSK_ROW_TILES(r0, r1, (R), dsk_tile_row_stride(K),                                \
                          fp8_tile(w, tile_r, tile_n, tile_s, xb, ldb, k0, k1, (T),           \
                                   y + (tile_r - r0), ldy, k0 > 0));                          \
        }                                                                                     \
    }
DEF_FP8_DECODE(1, 6)
DEF_FP8_DECODE(2, 3)
DEF_FP8_DECODE(3, 3)
DEF_FP8_DECODE(4, 2)

/*
 * n = 4 through fp8_tile where the 4 prepared tokens fit one chunk (8192 columns), through the
 * template's tile otherwise: paired, two threads, against the template 1.04-1.11x on 7168
 * columns, 0.93x on 18432 (three chunks). n <= 3 through fp8_tile; larger n through the template.
 */
#define FP8_TILE4_MAX_COLS (XB_FLOATS / 4)

static void matmul_fp8_int(const dsk_matrix_t *w, int64_t r0, int64_t r1, const float *x,
                           int64_t ldx, int64_t n, float *y, int64_t ldy)
{
    if (n == 4 && r1 > r0 && w->cols > 0 && w->cols <= FP8_TILE4_MAX_COLS)
        fp8_decode_4(w, r0, r1, x, ldx, y, ldy);
    else if (r1 <= r0 || w->cols == 0 || n < 1 || n > 3)
        matmul_fp8(w, r0, r1, x, ldx, n, y, ldy);
    else if (n == 1)
        fp8_decode_1(w, r0, r1, x, ldx, y, ldy);
    else if (n == 2)
        fp8_decode_2(w, r0, r1, x, ldx, y, ldy);
    else
        fp8_decode_3(w, r0, r1, x, ldx, y, ldy);
}

void dsk_ops_fill_avx2_fp8i(dsk_ops_t *ops)
{
    ops->matmul[DSK_DTYPE_F8_E4M3] = matmul_fp8_int;
    ops->matmul_t[DSK_DTYPE_F8_E4M3] = matmul_t_fp8;
    ops->row_f32[DSK_DTYPE_F8_E4M3] = row_f32_fp8;
    (void)simd_fill; /* the other slots are dsk_avx2.c's */
}
