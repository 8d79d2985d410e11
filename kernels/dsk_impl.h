/*
 * dsk_impl.h - private to kernels/: the per-level table fillers and the shared helpers of the
 * reference kernels. Each ISA file defines one filler that overrides the slots it implements.
 */
#ifndef DSK_IMPL_H
#define DSK_IMPL_H

#include "dsk.h"

void dsk_ops_fill_ref(dsk_ops_t *ops);
void dsk_ops_fill_avx2(dsk_ops_t *ops);
void dsk_ops_fill_avx512(dsk_ops_t *ops);

/* Scale of the 128x128 block holding W[r][c] (1 for non-fp8 matrices). */
static inline float dsk_block_scale(const dsk_matrix_t *w, int64_t r, int64_t c)
{
    if (w->dtype != DSK_DTYPE_F8_E4M3)
        return 1.0f;
    int64_t bcols = (w->cols + DSK_FP8_BLOCK - 1) / DSK_FP8_BLOCK;
    return w->scale_inv[(r / DSK_FP8_BLOCK) * bcols + c / DSK_FP8_BLOCK];
}

#endif
