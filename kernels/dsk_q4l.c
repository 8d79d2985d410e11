/*
 * dsk_q4l.c - int4 weights repacked for the int8-activation kernels (DSK_LAYOUT_Q4_L16, dsk.h):
 * the sizes and the repacking, scalar (it runs once per weight at load).
 *
 * A block of 16 rows holds, for each group g of the dtype in column order, the group's 32-input
 * chunks, each as uint32 [4][16] (dword m of row i's 16-byte chunk at [m][i]), then the group's
 * scales as float [16]. So the kernels read one contiguous stream per block: 16 rows x 4 inputs
 * (a 512-bit vpdpbusd, or two 256-bit halves of 8 rows) per 64 bytes, the scales next to them.
 */
#include <string.h>

#include "dsk_impl.h"

static int is_int4(dsk_dtype_t dt)
{
    return dt == DSK_DTYPE_I4_G32 || dt == DSK_DTYPE_I4_G128;
}

int64_t dsk_q4l_block_bytes(dsk_dtype_t dt, int64_t cols)
{
    if (!is_int4(dt) || cols < 0)
        return 0;
    return DSK_Q4L_ROWS * (dsk_dtype_row_bytes(dt, cols) + 4 * dsk_dtype_scale_cols(dt, cols));
}

uint64_t dsk_q4l_bytes(dsk_dtype_t dt, int64_t rows, int64_t cols)
{
    if (rows <= 0)
        return 0;
    return (uint64_t)((rows + DSK_Q4L_ROWS - 1) / DSK_Q4L_ROWS) *
           (uint64_t)dsk_q4l_block_bytes(dt, cols);
}

int dsk_q4l_pack(const dsk_matrix_t *src, void *dst)
{
    if (!is_int4(src->dtype) || src->layout != DSK_LAYOUT_ROWS || src->rows < 0 || src->cols < 0)
        return -1;
    const int64_t G = dsk_q_group(src->dtype), cpg = G / DSK_Q4_CHUNK;
    const int64_t rb = dsk_dtype_row_bytes(src->dtype, src->cols);
    const int64_t nch = rb / 16, ng = dsk_dtype_scale_cols(src->dtype, src->cols);
    const int64_t bb = dsk_q4l_block_bytes(src->dtype, src->cols);
    for (int64_t b = 0; b * DSK_Q4L_ROWS < src->rows; b++) {
        uint8_t *blk = (uint8_t *)dst + b * bb;
        for (int64_t g = 0; g < ng; g++) {
            const int64_t k0 = g * cpg, k1 = k0 + cpg < nch ? k0 + cpg : nch;
            uint8_t *gp = blk + g * (cpg * 256 + 64);
            float *sc = (float *)(gp + (k1 - k0) * 256);
            for (int i = 0; i < DSK_Q4L_ROWS; i++) {
                const int64_t r = b * DSK_Q4L_ROWS + i;
                const uint8_t *row = (const uint8_t *)src->data + r * rb;
                for (int64_t k = k0; k < k1; k++)
                    for (int m = 0; m < 4; m++) {
                        uint8_t *d = gp + (k - k0) * 256 + m * 64 + i * 4;
                        if (r < src->rows)
                            memcpy(d, row + k * 16 + m * 4, 4);
                        else
                            memset(d, 0x88, 4); /* q = 0 */
                    }
                sc[i] = r < src->rows ? src->scale_inv[r * ng + g] : 0.0f;
            }
        }
    }
    return 0;
}
