/*
 * dsk_avx2.c - the AVX2 + FMA + F16C variants: dsk_simd_tmpl.h over dsk_avx2_vocab.h, with fp8
 * weights converted through F16C.
 */
#include "dsk_impl.h"

#include "dsk_avx2_vocab.h"

/*
 * e4m3 -> f32 / 256 through F16C: each byte goes to the high half of a 16-bit lane, an arithmetic
 * shift by one moves exponent and mantissa to f16 bits 7..13 while the sign stays at bit 15, and
 * the mask clears the sign copy at bit 14. e4m3 has bias 7 and f16 bias 15, so every finite code,
 * subnormals included, converts to exactly its value times 2^-8.
 *
 * (dsk_avx2_fp8i.c builds f32 bits with integer ops instead, faster on AMD; it yields e4m3
 * subnormals as f32 subnormals, and on Intel cores every FMA that touches one takes a microcode
 * assist: measured 30x slower on a Sapphire Rapids host. F16C never makes subnormals.)
 */
#define FP8_UNSCALE 256.0f

static inline __m256i fp8_to_f16x16(const uint8_t *p)
{
    __m256i h = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)p));
    return _mm256_and_si256(_mm256_srai_epi16(_mm256_slli_epi16(h, 8), 1),
                            _mm256_set1_epi16((short)0xbf80));
}

static inline __m256 v_load_fp8(const uint8_t *p)
{
    __m128i b = _mm_loadl_epi64((const __m128i *)p);
    __m128i h = _mm_unpacklo_epi8(_mm_setzero_si128(), b);
    h = _mm_and_si128(_mm_srai_epi16(h, 1), _mm_set1_epi16((short)0xbf80));
    return _mm256_cvtph_ps(h);
}

/* 32 fp8 weights with 256-bit integer ops (two 16-lane conversions), in natural order. */
#define FP8_WIDE      1
#define FP8_WIDE_TMAX 1
static inline void fp8_w_load4(const uint8_t *p, __m256 out[4])
{
    __m256i h0 = fp8_to_f16x16(p), h1 = fp8_to_f16x16(p + 16);
    out[0] = _mm256_cvtph_ps(_mm256_castsi256_si128(h0));
    out[1] = _mm256_cvtph_ps(_mm256_extracti128_si256(h0, 1));
    out[2] = _mm256_cvtph_ps(_mm256_castsi256_si128(h1));
    out[3] = _mm256_cvtph_ps(_mm256_extracti128_si256(h1, 1));
}

static inline void fp8_x_load4(const float *x, __m256 out[4])
{
    for (int q = 0; q < 4; q++)
        out[q] = _mm256_loadu_ps(x + 8 * q);
}

#include "dsk_simd_tmpl.h"

void dsk_ops_fill_avx2(dsk_ops_t *ops)
{
    simd_fill(ops);
}

void dsk_avx2_matmul_f32act(int dt, const dsk_matrix_t *w, int64_t r0, int64_t r1, const float *x,
                            int64_t ldx, int64_t n, float *y, int64_t ldy)
{
    mm_any(dt, w, r0, r1, x, ldx, n, y, ldy);
}
