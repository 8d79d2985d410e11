/*
 * dsk_avx2_vocab.h - the vector vocabulary of dsk_simd_tmpl.h for AVX2 + FMA (8-float ymm
 * registers, 16 of them, which sizes the register tiles), shared by the AVX2 files: the two of the
 * template differ only in how fp8 weights become floats (dsk_avx2.c: F16C; dsk_avx2_fp8i.c:
 * integer ops); dsk_avx2_bf16.c takes its helpers. Include once, from an AVX2 translation unit,
 * before the fp8 loaders and the template.
 */
#ifndef DSK_AVX2_VOCAB_H
#define DSK_AVX2_VOCAB_H

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

/*
 * Rows per decode register tile for 1..4 tokens: R * T accumulators + T inputs + the weights.
 * S_R* for fp8 (whose 32-weight conversion holds 4 registers), S_R*_WIDE for f32 and bf16 (one):
 * the wider bf16 tiles ran 1.07-1.25x faster, paired on two threads, than the fp8 sizes did for
 * them (docs/PERFORMANCE.md, "Decode tiles and the engine's matmul split"), the wider fp8 4-token
 * tile 0.8x.
 */
#define S_R1      4
#define S_R2      4
#define S_R3      3
#define S_R4      2
#define S_R1_WIDE 8
#define S_R2_WIDE 6
#define S_R3_WIDE 4
#define S_R4_WIDE 3
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

#endif
