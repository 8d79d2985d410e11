/*
 * dsk_avx2_q4l.c - the int8-activation product of int4 weights repacked at load
 * (DSK_LAYOUT_Q4_L16, dsk.h) at the avx2 level, any n: rows in vector lanes as in
 * dsk_avx512_vnni_q4l.c, with AVX2's vpmaddubsw + vpmaddwd in place of vpdpbusd.
 *
 * A block's 64-byte line (dword m of 16 rows) is read as two 32-byte halves of 8 rows each; a
 * tile is one half x up to 4 tokens. Per 32-input chunk and token: 8 vpmaddubsw (stored nibble
 * q + 8, unsigned, times 4 broadcast bytes of q_x, signed: each 16-bit lane adds 2 products of
 * at most 15 * 127) summed in 16 bits (16 products: at most 30480, no saturation), one vpmaddwd
 * by ones to 32 bits, added to the group's int32 sums (started at -8 * sum(q_x)); per group and
 * token one conversion and one FMA with the group's 8 row scales times the token's scale into
 * the f32 totals (a 16-float row per token on the stack). One token (decode) takes both halves
 * in one pass instead (q4l_one_token): the block is streamed once, x broadcast once per line.
 *
 * Same integer math and f32 order over groups as dsk_matmul_a8_ref; x quantized by
 * dsk_avx2_act8_quantize, 65536 int8 of it per block of up to 64 tokens (decode: all of x once),
 * by the loops dsk_q4l_drive.c shares with the avx512vnni kernel.
 */
#include "dsk_impl.h"
#include "dsk_q4l_drive.h"

#include <immintrin.h>
#include <string.h>

#define Q4L_T      4
#define DSK_INLINE static inline __attribute__((always_inline))

DSK_INLINE __m256i bcast4(const int8_t *q)
{
    int32_t v;
    memcpy(&v, q, 4);
    return _mm256_set1_epi32(v);
}

/* Half h (rows 8h .. 8h + 7) of one block, tokens t < T: tot[t][8h ..] += the chunk's groups. */
DSK_INLINE void q4l_half(const uint8_t *blk, int64_t gstride, int64_t cpg, int64_t nch_last,
                         int64_t ng, const int8_t *xq, int64_t kc_pad, const float *xs,
                         const int32_t *xc, int64_t ngc, const int T, int h, float (*tot)[16])
{
    const __m256i low = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
    const int G = (int)cpg * 32;
    for (int64_t g = 0; g < ng; g++) {
        const uint8_t *gp = blk + g * gstride;
        const int64_t chunks = g == ng - 1 ? nch_last : cpg;
        __m256i a32[Q4L_T];
        for (int t = 0; t < T; t++)
            a32[t] = _mm256_set1_epi32(xc[t * ngc + g]);
        for (int64_t j = 0; j < chunks; j++) {
            const uint8_t *cp = gp + j * 256 + 32 * h;
            /* two steps in 16 bits (8 products: at most 15240), then to 32 */
            for (int m = 0; m < 4; m += 2) {
                const __m256i v0 = _mm256_loadu_si256((const __m256i *)(cp + 64 * m));
                const __m256i v1 = _mm256_loadu_si256((const __m256i *)(cp + 64 * (m + 1)));
                const __m256i lo0 = _mm256_and_si256(v0, low),
                              hi0 = _mm256_and_si256(_mm256_srli_epi16(v0, 4), low);
                const __m256i lo1 = _mm256_and_si256(v1, low),
                              hi1 = _mm256_and_si256(_mm256_srli_epi16(v1, 4), low);
                for (int t = 0; t < T; t++) {
                    const int8_t *q = xq + t * kc_pad + g * G + j * 32 + 4 * m;
                    const __m256i p0 = _mm256_add_epi16(_mm256_maddubs_epi16(lo0, bcast4(q)),
                                                        _mm256_maddubs_epi16(hi0, bcast4(q + 16)));
                    const __m256i p1 = _mm256_add_epi16(_mm256_maddubs_epi16(lo1, bcast4(q + 4)),
                                                        _mm256_maddubs_epi16(hi1, bcast4(q + 20)));
                    a32[t] =
                        _mm256_add_epi32(a32[t], _mm256_madd_epi16(_mm256_add_epi16(p0, p1), ones));
                }
            }
        }
        const __m256 wsv = _mm256_loadu_ps((const float *)(gp + chunks * 256) + 8 * h);
        for (int t = 0; t < T; t++) {
            float *o = tot[t] + 8 * h;
            _mm256_storeu_ps(o, _mm256_fmadd_ps(_mm256_cvtepi32_ps(a32[t]),
                                                _mm256_mul_ps(wsv, _mm256_set1_ps(xs[t * ngc + g])),
                                                _mm256_loadu_ps(o)));
        }
    }
}

/*
 * One token over the whole block in one pass (both halves of every 64-byte line, one broadcast of
 * x for the two): the block is read once from start to end, and the 16 rows' totals stay in two
 * registers across the groups. The same integer sums and f32 order as q4l_half.
 */
DSK_INLINE void q4l_one_token(const uint8_t *blk, int64_t gstride, int64_t cpg, int64_t nch_last,
                              int64_t ng, const int8_t *xq, const float *xs, const int32_t *xc,
                              float *tot)
{
    const __m256i low = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
    const int G = (int)cpg * 32;
    __m256 t0 = _mm256_loadu_ps(tot), t1 = _mm256_loadu_ps(tot + 8);
    for (int64_t g = 0; g < ng; g++) {
        const uint8_t *gp = blk + g * gstride;
        const int64_t chunks = g == ng - 1 ? nch_last : cpg;
        __m256i a0 = _mm256_set1_epi32(xc[g]), a1 = a0;
        for (int64_t j = 0; j < chunks; j++) {
            const uint8_t *cp = gp + j * 256;
            const int8_t *q = xq + g * G + j * 32;
            __m256i s0 = _mm256_setzero_si256(), s1 = s0;
            for (int m = 0; m < 4; m++) {
                const __m256i v0 = _mm256_loadu_si256((const __m256i *)(cp + 64 * m));
                const __m256i v1 = _mm256_loadu_si256((const __m256i *)(cp + 64 * m + 32));
                const __m256i xl = bcast4(q + 4 * m), xh = bcast4(q + 16 + 4 * m);
                const __m256i p0 = _mm256_add_epi16(
                    _mm256_maddubs_epi16(_mm256_and_si256(v0, low), xl),
                    _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(v0, 4), low), xh));
                const __m256i p1 = _mm256_add_epi16(
                    _mm256_maddubs_epi16(_mm256_and_si256(v1, low), xl),
                    _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(v1, 4), low), xh));
                /* two steps in 16 bits (8 products: at most 15240), then to 32 */
                if (m % 2 == 0) {
                    s0 = p0;
                    s1 = p1;
                } else {
                    a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(_mm256_add_epi16(s0, p0), ones));
                    a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(_mm256_add_epi16(s1, p1), ones));
                }
            }
        }
        const float *wsp = (const float *)(gp + chunks * 256);
        const __m256 xsv = _mm256_set1_ps(xs[g]);
        t0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(a0), _mm256_mul_ps(_mm256_loadu_ps(wsp), xsv), t0);
        t1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(a1), _mm256_mul_ps(_mm256_loadu_ps(wsp + 8), xsv),
                             t1);
    }
    _mm256_storeu_ps(tot, t0);
    _mm256_storeu_ps(tot + 8, t1);
}

#define Q4L_HALF(T_, H_)                                                                       \
    q4l_half(s->blk, s->gstride, s->cpg, s->nch_last, s->ngc, s->xq->q + t0 * s->kc_pad,       \
             s->kc_pad, s->xq->scale + t0 * s->ngc, s->xq->corr + t0 * s->ngc, s->ngc, T_, H_, \
             tot)

/*
 * One block of rows (lanes [lo, hi) are rows of the call, at y + lane - lo) for the step's
 * tokens: the totals start from y (accumulate) or 0 and go back to y.
 */
static void q4l_block(const dsk_q4l_step_t *s)
{
    const int64_t n = s->nt, ldy = s->ldy;
    const int lo = s->lo, hi = s->hi, accumulate = s->accumulate;
    float *y = s->y + (s->rb + lo - s->r0);
    _Alignas(32) float tot[Q4L_T][16];
    for (int64_t t0 = 0; t0 < n; t0 += Q4L_T) {
        const int T = n - t0 < Q4L_T ? (int)(n - t0) : Q4L_T;
        for (int t = 0; t < T; t++)
            for (int i = 0; i < 16; i++)
                tot[t][i] = accumulate && i >= lo && i < hi ? y[(t0 + t) * ldy + i - lo] : 0.0f;
        if (T == 1) {
            q4l_one_token(s->blk, s->gstride, s->cpg, s->nch_last, s->ngc,
                          s->xq->q + t0 * s->kc_pad, s->xq->scale + t0 * s->ngc,
                          s->xq->corr + t0 * s->ngc, tot[0]);
            memcpy(y + t0 * ldy, tot[0] + lo, (size_t)(hi - lo) * sizeof(float));
            continue;
        }
        for (int h = 0; h < 2; h++) {
            if (8 * h >= hi || 8 * h + 8 <= lo)
                continue; /* no row of the call in this half */
            switch (T) {
            case 1:
                Q4L_HALF(1, h);
                break;
            case 2:
                Q4L_HALF(2, h);
                break;
            case 3:
                Q4L_HALF(3, h);
                break;
            default:
                Q4L_HALF(Q4L_T, h);
                break;
            }
        }
        for (int t = 0; t < T; t++)
            memcpy(y + (t0 + t) * ldy, tot[t] + lo, (size_t)(hi - lo) * sizeof(float));
    }
}

void dsk_avx2_q4l_matmul(const dsk_matrix_t *w, int64_t r0, int64_t r1, const float *x, int64_t ldx,
                         int64_t n, float *y, int64_t ldy)
{
    dsk_q4l_matmul_drive(w, r0, r1, x, ldx, n, y, ldy, q4l_block);
}
