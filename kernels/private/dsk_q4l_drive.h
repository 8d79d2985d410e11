/*
 * dsk_q4l_drive.h - what the int4 kernels of DSK_LAYOUT_Q4_L16 (dsk_avx2_q4l.c,
 * dsk_avx512_vnni_q4l.c) share: the scalar loops around their SIMD blocks. x is quantized (int8,
 * dsk_avx2_act8_quantize) a column chunk at a time for a block of up to DSK_Q4L_NB tokens, and
 * every block of 16 rows of the call is handed to the kernel's block function with it.
 */
#ifndef DSK_Q4L_DRIVE_H
#define DSK_Q4L_DRIVE_H

#include <stdint.h>

#include "dsk.h"

#define DSK_Q4L_NB     64    /* tokens per block of quantized x */
#define DSK_Q4L_XBYTES 65536 /* int8 x per block of tokens */
#define DSK_Q4L_GMAX   (DSK_Q4L_XBYTES / 32)

/* One column chunk of x, quantized, for the tokens of a block. */
typedef struct {
    _Alignas(64) int8_t q[DSK_Q4L_XBYTES]; /* [token][kc_pad] */
    float scale[DSK_Q4L_GMAX];             /* [token][group of the chunk] */
    int32_t corr[DSK_Q4L_GMAX];            /* -8 * sum of the group's q (the nibble offset) */
} dsk_q4l_x_t;

/* One block of 16 rows times one column chunk of x for the tokens of a block. */
typedef struct {
    const uint8_t *blk; /* the block's data at the chunk's first group */
    int64_t bb;         /* bytes per block of rows (the next block is at blk + bb) */
    int64_t gstride;    /* bytes per group in a block */
    int64_t cpg;        /* 32-input chunks per group */
    int64_t nch_last;   /* chunks of the chunk's last group */
    int64_t ngc;        /* groups of the chunk */
    int64_t kc_pad;     /* columns of x per token in xq (a multiple of 32) */
    const dsk_q4l_x_t *xq;
    int64_t nt;         /* tokens */
    int64_t rb, r0, r1; /* the block's first row; the call's rows */
    int lo, hi;         /* lanes [lo, hi) are rows of the call */
    float *y;           /* output of row r0 and the block's first token */
    int64_t ldy;
    int accumulate; /* add to y (not the first column chunk) */
} dsk_q4l_step_t;

typedef void (*dsk_q4l_block_fn)(const dsk_q4l_step_t *s);

/* matmul's contract for w in DSK_LAYOUT_Q4_L16 and int8 activations, every block by `block`. */
void dsk_q4l_matmul_drive(const dsk_matrix_t *w, int64_t r0, int64_t r1, const float *x,
                          int64_t ldx, int64_t n, float *y, int64_t ldy, dsk_q4l_block_fn block);

#endif
