/* dsk_q4l_drive.c - see private/dsk_q4l_drive.h. */
#include "dsk_q4l_drive.h"

#include <string.h>

#include "dsk_impl.h"

void dsk_q4l_matmul_drive(const dsk_matrix_t *w, int64_t r0, int64_t r1, const float *x,
                          int64_t ldx, int64_t n, float *y, int64_t ldy, dsk_q4l_block_fn block)
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
    dsk_q4l_x_t xq;
    int32_t sum[DSK_Q4L_GMAX];
    dsk_q4l_step_t s = {
        .bb = bb, .gstride = gstride, .cpg = cpg, .xq = &xq, .r0 = r0, .r1 = r1, .ldy = ldy};
    for (int64_t tb = 0; tb < n; tb += DSK_Q4L_NB) {
        const int64_t nt = n - tb < DSK_Q4L_NB ? n - tb : DSK_Q4L_NB;
        /* columns per chunk of x: a multiple of the group, nt of them fill the buffer */
        int64_t KC = DSK_Q4L_XBYTES / nt / 128 * 128;
        const int64_t kpad = (K + 31) / 32 * 32;
        KC = KC < kpad ? KC : kpad;
        for (int64_t k0 = 0; k0 < K; k0 += KC) {
            const int64_t kc = K - k0 < KC ? K - k0 : KC, kc_pad = (kc + 31) / 32 * 32;
            const int64_t ga = k0 / G, ngc = (kc + G - 1) / G;
            const int64_t rest = (nch - k0 / 32) - (ngc - 1) * cpg;
            for (int64_t t = 0; t < nt; t++) {
                dsk_avx2_act8_quantize(x + (tb + t) * ldx + k0, kc, G, xq.q + t * kc_pad,
                                       xq.scale + t * ngc, sum);
                for (int64_t g = 0; g < ngc; g++)
                    xq.corr[t * ngc + g] = -8 * sum[g];
            }
            s.nch_last = rest < cpg ? rest : cpg;
            s.ngc = ngc;
            s.kc_pad = kc_pad;
            s.nt = nt;
            s.y = y + tb * ldy;
            s.accumulate = k0 > 0;
            for (int64_t b = r0 / DSK_Q4L_ROWS; b * DSK_Q4L_ROWS < r1; b++) {
                s.rb = b * DSK_Q4L_ROWS;
                s.lo = (int)(r0 > s.rb ? r0 - s.rb : 0);
                s.hi = (int)(r1 - s.rb < DSK_Q4L_ROWS ? r1 - s.rb : DSK_Q4L_ROWS);
                s.blk = (const uint8_t *)w->data + b * bb + ga * gstride;
                block(&s);
            }
        }
    }
}
