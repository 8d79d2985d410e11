/*
 * dsi_test_matmul.h - checks of the matmul and matmul_t kernel slots against a dense f32 copy of
 * the matrix, computed in double: every level given, random inputs with padded strides (the padding
 * must stay untouched), row sub-ranges, an error bound relative to sum |w x|.
 */
#ifndef DSI_TEST_MATMUL_H
#define DSI_TEST_MATMUL_H

#include <stdint.h>

#include "dsk.h"

/* What the kernel tests fill the padding of outputs with: a kernel must leave it as it is. */
#define DSI_TEST_SENTINEL 12345.0f

/* n floats uniform in [-1, 1), malloc'ed. */
float *dsi_test_random_floats(int64_t n);
/* One x value with a spread of magnitudes (one in 16 times 50, one in 16 times 1e-3). */
float dsi_test_spread_x(void);
/*
 * Checks n tokens of y (nr values each, ldy apart) against want ([n, nr]) within tol ([n, nr]);
 * the padding between the tokens' values must hold DSI_TEST_SENTINEL.
 */
void dsi_test_check_y(const char *what, const float *y, const double *want, const double *tol,
                      int64_t n, int64_t nr, int64_t ldy);
/* y = W[r0:r1] x for n tokens at every level; `dense` is W dequantized, [rows, cols]. */
void dsi_test_matmul_case(const dsk_ops_t *levels, int n_levels, const dsk_matrix_t *m,
                          const float *dense, int64_t r0, int64_t r1, int64_t n);
/* y += W[r0:r1]^T x for n tokens at every level. */
void dsi_test_matmul_t_case(const dsk_ops_t *levels, int n_levels, const dsk_matrix_t *m,
                            const float *dense, int64_t r0, int64_t r1, int64_t n);
/*
 * Both cases for n tokens on all rows of m, then on a random sub-range of rows starting past the
 * first (inside a block of rows) when m has more than 2.
 */
void dsi_test_matmul_ranges(const dsk_ops_t *levels, int n_levels, const dsk_matrix_t *m,
                            const float *dense, int64_t n);
/*
 * GFLOP/s of ops->matmul on all of m for n tokens (x: [n, cols], y: [n, rows]) in one thread: the
 * best of 5 runs of at least 50 ms of thread CPU time (the `--bench` modes of the kernel tests).
 */
double dsi_test_matmul_gflops(const dsk_ops_t *ops, const dsk_matrix_t *m, const float *x,
                              int64_t n, float *y);

#endif
