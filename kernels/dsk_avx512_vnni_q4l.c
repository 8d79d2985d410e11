/*
 * dsk_avx512_vnni_q4l.c - the int8-activation product of int4 weights repacked at load
 * (DSK_LAYOUT_Q4_L16, dsk.h) at the avx512vnni level, any n: rows in vector lanes, 16 rows x up
 * to 8 tokens of accumulators.
 *
 * One 64-byte load holds dword m of 16 rows' 16-byte chunk (inputs 4m..4m+3 in the low nibbles,
 * 16 + 4m.. in the high ones); an AND and a shift + AND give the two unsigned operands of two
 * 512-bit vpdpbusd per token, whose other operand is 4 bytes of the token's quantized x
 * broadcast to every lane. Per group and token the int32 sums (started at -8 * sum(q_x), the
 * nibble offset) are converted once and added into the 16 rows' f32 totals times the group's 16
 * row scales (the 64 bytes after its chunks) and the token's scale. The outputs of a token are 16
 * consecutive floats of y: no horizontal sums.
 *
 * Unlike dsk_avx512_vnni_q4.c (rows interleaved per call into a stack panel), the weights are
 * read as they lie, one stream per block of 16 rows. x is quantized once per call and column
 * chunk for a block of up to 64 tokens (DSK_Q4L_XBYTES of int8 in all: 1 token takes 65536 columns,
 * so decode quantizes x once and streams every block from its start to its end); more than 64
 * tokens go in blocks of 64, each reading the weights again.
 *
 * Same integer math and the same f32 accumulation order over groups as dsk_matmul_a8_ref (each
 * group's fused multiply-add differs from the reference's product-then-add by one rounding);
 * x is quantized by dsk_avx2_act8_quantize (the reference's bits), in the loops dsk_q4l_drive.c
 * shares with the avx2 kernel.
 */
#include "dsk_impl.h"
#include "dsk_q4l_drive.h"

#include <immintrin.h>
#include <string.h>

#define Q4L_T      8 /* tokens per register block: 8 sums + 8 totals + 2 weights */
#define DSK_INLINE static inline __attribute__((always_inline))

/*
 * acc += w (unsigned bytes) x the 4 signed bytes at q, broadcast: the broadcast is embedded in
 * vpdpbusd ({1to16}), which gcc does not do by itself here (a separate vpbroadcastd per product).
 */
typedef int32_t q4l_u32_t __attribute__((aligned(1), may_alias)); /* 4 bytes of x, any address */

DSK_INLINE __m512i dpbusd_b(__m512i acc, __m512i w, const int8_t *q)
{
    __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(w), "m"(*(const q4l_u32_t *)q));
    return acc;
}

/*
 * Tokens t < T of xq (each kc_pad columns apart, groups ngc apart) times one block (blk: the
 * block's data at group ga), groups [0, ng) of the chunk: y[t * ldy + i] (+)= for lanes in mask.
 * Few tokens split each sum into NC chains (the vpdpbusd latency).
 */
DSK_INLINE void q4l_tile(const uint8_t *blk, int64_t gstride, int64_t cpg, int64_t nch_last,
                         int64_t ng, const int8_t *xq, int64_t kc_pad, const float *xs,
                         const int32_t *xc, int64_t ngc, const int T, float *y, int64_t ldy,
                         __mmask16 mask, int accumulate)
{
    enum { NC = 4 };
    const int nc = T == 1 ? 4 : T == 2 ? 2 : 1;
    const __m512i low = _mm512_set1_epi8(0x0f);
    const int G = (int)cpg * 32;
    __m512 tot[Q4L_T];
    for (int t = 0; t < T; t++)
        tot[t] = accumulate ? _mm512_maskz_loadu_ps(mask, y + t * ldy) : _mm512_setzero_ps();
    for (int64_t g = 0; g < ng; g++) {
        const uint8_t *gp = blk + g * gstride;
        const int64_t chunks = g == ng - 1 ? nch_last : cpg;
        __m512i acc[Q4L_T][NC];
        for (int t = 0; t < T; t++) {
            acc[t][0] = _mm512_set1_epi32(xc[t * ngc + g]);
            for (int c = 1; c < nc; c++)
                acc[t][c] = _mm512_setzero_si512();
        }
        for (int64_t j = 0; j < chunks; j++) {
            const uint8_t *cp = gp + j * 256;
            for (int m = 0; m < 4; m++) {
                const __m512i v = _mm512_loadu_si512(cp + 64 * m);
                const __m512i lo = _mm512_and_si512(v, low);
                const __m512i hi = _mm512_and_si512(_mm512_srli_epi32(v, 4), low);
                for (int t = 0; t < T; t++) {
                    const int8_t *q = xq + t * kc_pad + g * G + j * 32 + 4 * m;
                    acc[t][(2 * m) % nc] = dpbusd_b(acc[t][(2 * m) % nc], lo, q);
                    acc[t][(2 * m + 1) % nc] = dpbusd_b(acc[t][(2 * m + 1) % nc], hi, q + 16);
                }
            }
        }
        const __m512 wsv = _mm512_loadu_ps((const float *)(gp + chunks * 256));
        for (int t = 0; t < T; t++) {
            __m512i a = acc[t][0];
            for (int c = 1; c < nc; c++)
                a = _mm512_add_epi32(a, acc[t][c]);
            tot[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a),
                                     _mm512_mul_ps(wsv, _mm512_set1_ps(xs[t * ngc + g])), tot[t]);
        }
    }
    for (int t = 0; t < T; t++)
        _mm512_mask_storeu_ps(y + t * ldy, mask, tot[t]);
}

#define Q4L_TILE(T_)                                                                       \
    q4l_tile(s->blk, s->gstride, s->cpg, s->nch_last, s->ngc, s->xq->q + t0 * s->kc_pad,   \
             s->kc_pad, s->xq->scale + t0 * s->ngc, s->xq->corr + t0 * s->ngc, s->ngc, T_, \
             yb + t0 * s->ldy, s->ldy, mask, s->accumulate)

/* y (+)= one block of rows for the step's tokens: every register block of tokens. */
static void q4l_block(const dsk_q4l_step_t *s)
{
    const int64_t n = s->nt;
    const __mmask16 mask = (__mmask16)(((1u << s->hi) - 1) & ~((1u << s->lo) - 1));
    /*
     * Lane i is row rb + i, at y + (rb + i - r0): for the first block that address is before y
     * for the lanes the mask leaves out (masked loads and stores never touch them), so the base
     * is made from integers.
     */
    float *yb = (float *)((uintptr_t)s->y + (uintptr_t)((s->rb - s->r0) * (int64_t)sizeof(float)));
    if (s->rb + DSK_Q4L_ROWS < s->r1)
        _mm_prefetch((const char *)(s->blk + s->bb), _MM_HINT_T0);
    for (int64_t t0 = 0; t0 < n; t0 += Q4L_T) {
        switch (n - t0 < Q4L_T ? (int)(n - t0) : Q4L_T) {
        case 1:
            Q4L_TILE(1);
            break;
        case 2:
            Q4L_TILE(2);
            break;
        case 3:
            Q4L_TILE(3);
            break;
        case 4:
            Q4L_TILE(4);
            break;
        case 5:
            Q4L_TILE(5);
            break;
        case 6:
            Q4L_TILE(6);
            break;
        case 7:
            Q4L_TILE(7);
            break;
        default:
            Q4L_TILE(Q4L_T);
            break;
        }
    }
}

void dsk_vnni_q4l_matmul(const dsk_matrix_t *w, int64_t r0, int64_t r1, const float *x, int64_t ldx,
                         int64_t n, float *y, int64_t ldy)
{
    dsk_q4l_matmul_drive(w, r0, r1, x, ldx, n, y, ldy, q4l_block);
}
