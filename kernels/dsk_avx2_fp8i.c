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

#define S_R1 4
#define S_R2 4
#define S_R3 3
#define S_R4 2
#define Q_R1 4
#define Q_R2 2
#define Q_R3 1
#define Q_R4 1
#define G_T  6

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

static inline __m256 v_load_i8(const int8_t *p)
{
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p)));
}

static inline __m256 v_load_q4(const uint8_t *p, int hi)
{
    __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p));
    v = _mm256_srlv_epi32(v, _mm256_set1_epi32(4 * hi));
    v = _mm256_and_si256(v, _mm256_set1_epi32(15));
    return _mm256_cvtepi32_ps(_mm256_sub_epi32(v, _mm256_set1_epi32(8)));
}

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
