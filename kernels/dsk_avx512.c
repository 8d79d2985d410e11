/*
 * dsk_avx512.c - the AVX-512 (F/BW/VL/DQ) variants: the vector vocabulary of dsk_simd_tmpl.h for
 * 16-float zmm registers (32 of them, which sizes the register tiles below).
 */
#include "dsk_impl.h"

#include <immintrin.h>

typedef __m512 V;
#define VL 16

#define v_zero()       _mm512_setzero_ps()
#define v_set1(f)      _mm512_set1_ps(f)
#define v_loadu(p)     _mm512_loadu_ps(p)
#define v_storeu(p, v) _mm512_storeu_ps((p), (v))
#define v_add(a, b)    _mm512_add_ps((a), (b))
#define v_sub(a, b)    _mm512_sub_ps((a), (b))
#define v_mul(a, b)    _mm512_mul_ps((a), (b))
#define v_div(a, b)    _mm512_div_ps((a), (b))
#define v_min(a, b)    _mm512_min_ps((a), (b))
#define v_max(a, b)    _mm512_max_ps((a), (b))
#define v_fma(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#define v_hsum(v)      _mm512_reduce_add_ps(v)
#define v_hmax(v)      _mm512_reduce_max_ps(v)
#define v_round(v)     _mm512_roundscale_ps((v), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define v_select_lt(a, b, x, y) \
    _mm512_mask_blend_ps(_mm512_cmp_ps_mask((a), (b), _CMP_LT_OQ), (y), (x))

/* Rows per decode register tile for 1..4 tokens: R * T accumulators + T inputs + 1 weight <= 32. */
#define S_R1 8
#define S_R2 8
#define S_R3 6
#define S_R4 6
/* Rows per integer-weight decode tile: 2 * R * T accumulators + 2 weights <= 32. */
#define Q_R1 8
#define Q_R2 6
#define Q_R3 4
#define Q_R4 3
/* Tokens per GEMM tile: 2 * 12 accumulators + 2 weights + 1 broadcast = 27 registers. */
#define G_T 12
/*
 * Largest n of the token groups (the decode tiles over groups of 4 tokens) per dtype; above it the
 * packed GEMM. On Zen 4, one thread, cache-resident 128x7168 and 1024x7168: the bf16 (and f32)
 * 4-token tile runs at 98-109 GFLOP/s from 8 to 128 tokens where the packed GEMM reaches 63-95
 * (its panel packing is a store, a load and a transpose per weight); the fp8 tile converts every
 * weight vector once per group of 4 tokens (51 GFLOP/s), so fp8 leaves it from 9 tokens.
 */
/*
 * fp8 from 9 to FP8_SLAB_N_MAX tokens: dequantized slabs of 6 rows x 2048 columns (dsk_simd_tmpl.h,
 * mm_fp8_slab); from 25 to 64 tokens they ran 1.05-1.15x the packed GEMM, which takes fp8 above.
 */
#define FP8_SLAB_R     6
#define FP8_SLAB_N_MAX 64
#define TG_MAX_DT(dt)  ((dt) == DT_FP8 ? 8 : (dt) <= DT_BF16 ? 64 : 16)

static inline __m512 v_pow2i(__m512 n)
{
    __m512i e = _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127));
    return _mm512_castsi512_ps(_mm512_slli_epi32(e, 23));
}

static inline __m512 v_load_bf16(const uint16_t *p)
{
    __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
}

/*
 * 16 e4m3 bytes -> f32 / 256 through F16C: each byte goes to the high half of a 16-bit lane, an
 * arithmetic shift by one moves exponent and mantissa to f16 bits 7..13 while the sign stays at
 * bit 15, and the mask clears the sign copy at bit 14. e4m3 has bias 7 and f16 bias 15, so every
 * finite code, subnormals included, converts to its value times 2^-8 (no f32 subnormal inputs,
 * which cost microcode assists on Intel cores).
 */
#define FP8_UNSCALE 256.0f
static inline __m512 v_load_fp8(const uint8_t *p)
{
    __m256i h = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)p));
    h = _mm256_and_si256(_mm256_srai_epi16(_mm256_slli_epi16(h, 8), 1),
                         _mm256_set1_epi16((short)0xbf80));
    return _mm512_cvtph_ps(h);
}

static inline __m512 v_load_i8(const int8_t *p)
{
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)p)));
}

/* 16 bytes -> their low (hi = 0) or high (hi = 1) nibbles minus 8, as f32. */
static inline __m512 v_load_q4(const uint8_t *p, int hi)
{
    __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p));
    v = _mm512_srlv_epi32(v, _mm512_set1_epi32(4 * hi));
    v = _mm512_and_si512(v, _mm512_set1_epi32(15));
    return _mm512_cvtepi32_ps(_mm512_sub_epi32(v, _mm512_set1_epi32(8)));
}

/* One 16-byte int4 chunk widened once: the low nibbles are inputs 0-15, the high ones 16-31. */
static inline void q4_load32(const uint8_t *p, __m512 out[2])
{
    __m512i a = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p));
    const __m512i e = _mm512_set1_epi32(8);
    out[0] = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_and_si512(a, _mm512_set1_epi32(15)), e));
    out[1] = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_srli_epi32(a, 4), e));
}

#include "dsk_simd_tmpl.h"

void dsk_ops_fill_avx512(dsk_ops_t *ops)
{
    simd_fill(ops);
}

void dsk_avx512_matmul_f32act(int dt, const dsk_matrix_t *w, int64_t r0, int64_t r1, const float *x,
                              int64_t ldx, int64_t n, float *y, int64_t ldy)
{
    mm_any(dt, w, r0, r1, x, ldx, n, y, ldy);
}

void dsk_avx512_matmul_t_f32act(int dt, const dsk_matrix_t *w, int64_t r0, int64_t r1,
                                const float *x, int64_t ldx, int64_t n, float *y, int64_t ldy)
{
    if (w->layout != DSK_LAYOUT_ROWS)
        dsk_matmul_t_ref(w, r0, r1, x, ldx, n, y, ldy);
    else
        mmt_any(dt, w, r0, r1, x, ldx, n, y, ldy);
}
