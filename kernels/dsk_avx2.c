/*
 * dsk_avx2.c - the AVX2 + FMA + F16C variants: the vector vocabulary of dsk_simd_tmpl.h for
 * 8-float ymm registers (16 of them, which sizes the register tiles below).
 */
#include "dsk_impl.h"

#include <immintrin.h>

typedef __m256 V;
#define VL 8

#define v_zero()                _mm256_setzero_ps()
#define v_set1(f)               _mm256_set1_ps(f)
#define v_loadu(p)              _mm256_loadu_ps(p)
#define v_storeu(p, v)          _mm256_storeu_ps((p), (v))
#define v_add(a, b)             _mm256_add_ps((a), (b))
#define v_sub(a, b)             _mm256_sub_ps((a), (b))
#define v_mul(a, b)             _mm256_mul_ps((a), (b))
#define v_div(a, b)             _mm256_div_ps((a), (b))
#define v_min(a, b)             _mm256_min_ps((a), (b))
#define v_max(a, b)             _mm256_max_ps((a), (b))
#define v_fma(a, b, c)          _mm256_fmadd_ps((a), (b), (c))
#define v_round(v)              _mm256_round_ps((v), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define v_select_lt(a, b, x, y) _mm256_blendv_ps((y), (x), _mm256_cmp_ps((a), (b), _CMP_LT_OQ))

/* Rows per decode register tile for 1..4 tokens: R * T accumulators + T inputs + 1 weight <= 16. */
#define S_R1 4
#define S_R2 4
#define S_R3 3
#define S_R4 2
/* Tokens per GEMM tile: 2 * 6 accumulators + 2 weights + 1 broadcast = 15 registers. */
#define G_T 6

static inline float v_hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float v_hmax(__m256 v)
{
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline __m256 v_pow2i(__m256 n)
{
    __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
    return _mm256_castsi256_ps(_mm256_slli_epi32(e, 23));
}

static inline __m256 v_load_bf16(const uint16_t *p)
{
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

/*
 * e4m3 -> f32 without F16C: the sign-extended byte shifted left by 20 puts the sign at bit 31 and
 * the 7 exponent/mantissa bits at 26..20, i.e. the f32 exponent's low 4 bits and the mantissa's top
 * 3; the mask clears the sign copies in between. The result is the value times 2^-120 for every
 * finite code: e4m3 subnormals (e = 0) land on f32 subnormals with the same mantissa, which an FMA
 * takes exactly (and, on the AMD cores measured, at full speed). Three integer ops per 8 weights
 * instead of the F16C route's four plus a two-uop lane-crossing conversion: decode of fp8 weights
 * is bound by exactly this dequantization. x is scaled by 2^120 in the decode kernel so that no
 * product or sum is subnormal.
 */
#define FP8_UNSCALE 0x1p120f
#define FP8_X_SCALE 0x1p120f
#define FP8_MASK    ((int)0x87f00000)

static inline __m256 v_load_fp8(const uint8_t *p)
{
    __m256i d = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p));
    d = _mm256_and_si256(_mm256_slli_epi32(d, 20), _mm256_set1_epi32(FP8_MASK));
    return _mm256_castsi256_ps(d);
}

/*
 * 32 fp8 weights with in-lane unpacks only: each byte goes to bits 31..24 of a dword, an
 * arithmetic shift by 4 brings it to 27..20 and the mask does the rest. Lane order:
 * out[q] holds weights 4q..4q+3 and 16+4q..16+4q+3.
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

void dsk_ops_fill_avx2(dsk_ops_t *ops)
{
    simd_fill(ops);
}
