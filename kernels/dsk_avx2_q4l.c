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
 * the f32 totals (a 16-float row per token on the stack).
 *
 * Same integer math and f32 order over groups as dsk_matmul_a8_ref; x quantized by
 * dsk_avx2_act8_quantize, 65536 int8 of it per block of up to 64 tokens (decode: all of x once).
 */
#include "dsk_impl.h"

#include <immintrin.h>
#include <string.h>

#define Q4L_T      4
#define Q4L_NB     64
#define Q4L_XBYTES 65536
#define Q4L_GMAX   (Q4L_XBYTES / 32)
#define DSK_INLINE static inline __attribute__((always_inline))

typedef struct {
    _Alignas(32) int8_t q[Q4L_XBYTES];
    float scale[Q4L_GMAX];
    int32_t corr[Q4L_GMAX];
} q4l_x_t;

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
            __m256i a16[Q4L_T];
            for (int m = 0; m < 4; m++) {
                const __m256i v = _mm256_loadu_si256((const __m256i *)(cp + 64 * m));
                const __m256i lo = _mm256_and_si256(v, low);
                const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
                for (int t = 0; t < T; t++) {
                    const int8_t *q = xq + t * kc_pad + g * G + j * 32 + 4 * m;
                    const __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(lo, bcast4(q)),
                                                       _mm256_maddubs_epi16(hi, bcast4(q + 16)));
                    /* two steps in 16 bits (8 products: at most 15240), then to 32 */
                    if (m % 2 == 0)
                        a16[t] = p;
                    else
                        a32[t] = _mm256_add_epi32(
                            a32[t], _mm256_madd_epi16(_mm256_add_epi16(a16[t], p), ones));
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

#define Q4L_HALF(T_, H_)                                                                         \
    q4l_half(blk, gstride, cpg, nch_last, ng, xq->q + t0 * kc_pad, kc_pad, xq->scale + t0 * ngc, \
             xq->corr + t0 * ngc, ngc, T_, H_, tot)

/*
 * One block of rows (lanes [lo, hi) are rows of the call, at y + lane - lo) for tokens [0, n):
 * the totals start from y (accumulate) or 0 and go back to y.
 */
static void q4l_block(const uint8_t *blk, int64_t gstride, int64_t cpg, int64_t nch_last,
                      int64_t ng, const q4l_x_t *xq, int64_t kc_pad, int64_t ngc, int64_t n,
                      float *y, int64_t ldy, int lo, int hi, int accumulate)
{
    _Alignas(32) float tot[Q4L_T][16];
    for (int64_t t0 = 0; t0 < n; t0 += Q4L_T) {
        const int T = n - t0 < Q4L_T ? (int)(n - t0) : Q4L_T;
        for (int t = 0; t < T; t++)
            for (int i = 0; i < 16; i++)
                tot[t][i] = accumulate && i >= lo && i < hi ? y[(t0 + t) * ldy + i - lo] : 0.0f;
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
    if (n <= 0 || r1 <= r0)
        return;
    if (w->cols == 0) {
        for (int64_t t = 0; t < n; t++)
            memset(y + t * ldy, 0, (size_t)(r1 - r0) * sizeof(float));
        return;
    }
    const int64_t K = w->cols, G = dsk_q_group(w->dtype), cpg = G / 32;
    const int64_t nch = dsk_dtype_row_bytes(w->dtype, K) / 16;
    const int64_t bb = dsk_q4l_block_bytes(w->dtype, K), gstride = cpg * 256 + 64;
    q4l_x_t xq;
    int32_t sum[Q4L_GMAX];
    for (int64_t tb = 0; tb < n; tb += Q4L_NB) {
        const int64_t nt = n - tb < Q4L_NB ? n - tb : Q4L_NB;
        int64_t KC = Q4L_XBYTES / nt / 128 * 128;
        const int64_t kpad = (K + 31) / 32 * 32;
        KC = KC < kpad ? KC : kpad;
        for (int64_t k0 = 0; k0 < K; k0 += KC) {
            const int64_t kc = K - k0 < KC ? K - k0 : KC, kc_pad = (kc + 31) / 32 * 32;
            const int64_t ga = k0 / G, ngc = (kc + G - 1) / G;
            const int64_t rest = (nch - k0 / 32) - (ngc - 1) * cpg;
            const int64_t nch_last = rest < cpg ? rest : cpg;
            for (int64_t t = 0; t < nt; t++) {
                dsk_avx2_act8_quantize(x + (tb + t) * ldx + k0, kc, G, xq.q + t * kc_pad,
                                       xq.scale + t * ngc, sum);
                for (int64_t g = 0; g < ngc; g++)
                    xq.corr[t * ngc + g] = -8 * sum[g];
            }
            for (int64_t b = r0 / DSK_Q4L_ROWS; b * DSK_Q4L_ROWS < r1; b++) {
                const int64_t rb = b * DSK_Q4L_ROWS;
                const int lo = (int)(r0 > rb ? r0 - rb : 0);
                const int hi = (int)(r1 - rb < DSK_Q4L_ROWS ? r1 - rb : DSK_Q4L_ROWS);
                const uint8_t *blk = (const uint8_t *)w->data + b * bb + ga * gstride;
                q4l_block(blk, gstride, cpg, nch_last, ngc, &xq, kc_pad, ngc, nt,
                          y + tb * ldy + (rb + lo - r0), ldy, lo, hi, k0 > 0);
            }
        }
    }
}
