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

void dsk_ops_fill_avx2_fp8i(dsk_ops_t *ops)
{
    ops->matmul[DSK_DTYPE_F8_E4M3] = matmul_fp8;
    ops->matmul_t[DSK_DTYPE_F8_E4M3] = matmul_t_fp8;
    ops->row_f32[DSK_DTYPE_F8_E4M3] = row_f32_fp8;
    (void)simd_fill; /* the other slots are dsk_avx2.c's */
}
