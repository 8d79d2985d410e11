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
/* Rows per integer-weight decode tile: 2 * R * T accumulators + 4 weights <= 16. */
#define Q_R1 4
#define Q_R2 2
#define Q_R3 1
#define Q_R4 1
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
 * e4m3 -> f32 / 256 through F16C: each byte goes to the high half of a 16-bit lane, an arithmetic
 * shift by one moves exponent and mantissa to f16 bits 7..13 while the sign stays at bit 15, and
 * the mask clears the sign copy at bit 14. e4m3 has bias 7 and f16 bias 15, so every finite code,
 * subnormals included, converts to exactly its value times 2^-8.
 *
 * (An all-integer route that builds f32 bits directly is 25% faster on Zen 3, but it yields
 * e4m3 subnormals as f32 subnormals, and on Intel cores every FMA that touches one takes a
 * microcode assist: measured 30x slower on a Sapphire Rapids host. F16C never makes subnormals.)
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

static inline __m256 v_load_i8(const int8_t *p)
{
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p)));
}

/* 8 bytes -> their low (hi = 0) or high (hi = 1) nibbles minus 8, as f32. */
static inline __m256 v_load_q4(const uint8_t *p, int hi)
{
    __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p));
    v = _mm256_srlv_epi32(v, _mm256_set1_epi32(4 * hi));
    v = _mm256_and_si256(v, _mm256_set1_epi32(15));
    return _mm256_cvtepi32_ps(_mm256_sub_epi32(v, _mm256_set1_epi32(8)));
}

/* One 16-byte int4 chunk: bytes 0-7 and 8-15 widened once, each giving a low and a high vector. */
static inline void q4_load32(const uint8_t *p, __m256 out[4])
{
    const __m256i m = _mm256_set1_epi32(15), e = _mm256_set1_epi32(8);
    __m256i a = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p));
    __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(p + 8)));
    out[0] = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_and_si256(a, m), e));
    out[1] = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_and_si256(b, m), e));
    out[2] = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_srli_epi32(a, 4), e));
    out[3] = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_srli_epi32(b, 4), e));
}

#include "dsk_simd_tmpl.h"

void dsk_ops_fill_avx2(dsk_ops_t *ops)
{
    simd_fill(ops);
}
