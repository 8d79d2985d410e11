#include "dsi_test_matmul.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsi_clock.h"
#include "dsi_test.h"

float *dsi_test_random_floats(int64_t n)
{
    float *v = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    for (int64_t i = 0; i < n; i++)
        v[i] = dsi_test_randf();
    return v;
}

float dsi_test_spread_x(void)
{
    float v = dsi_test_randf();
    uint32_t k = dsi_test_randu() % 16;
    return k == 0 ? v * 50.0f : k == 1 ? v * 1e-3f : v;
}

void dsi_test_check_y(const char *what, const float *y, const double *want, const double *tol,
                      int64_t n, int64_t nr, int64_t ldy)
{
    int bad = 0;
    for (int64_t t = 0; t < n; t++) {
        for (int64_t j = 0; j < nr; j++) {
            const double d = fabs(y[t * ldy + j] - want[t * nr + j]);
            if (!(d <= tol[t * nr + j]) && bad++ < 3)
                fprintf(stderr, "%s: t=%lld j=%lld got %.9g want %.9g (tol %.3g)\n", what,
                        (long long)t, (long long)j, y[t * ldy + j], want[t * nr + j],
                        tol[t * nr + j]);
        }
        for (int64_t j = nr; t + 1 < n && j < ldy; j++)
            bad += y[t * ldy + j] != DSI_TEST_SENTINEL;
    }
    if (bad)
        fprintf(stderr, "%s: %d bad\n", what, bad);
    DSI_CHECK_INT_EQ(bad, 0);
}

/*
 * The relative bound of a level's product: 2e-5 of sum |w x| for f32 arithmetic; where the level
 * splits x into bf16 parts (dsk_ops_t.x_bf16) each x may move by 2^-(8 DSK_BF16X_PARTS) of
 * itself on top of that (test_kernel_bf16x checks those kernels against their own model,
 * dsk_matmul_bf16x_ref, at 2e-5 again).
 */
static double rel_bound(const dsk_ops_t *ops, dsk_dtype_t dt, int transposed)
{
    return !transposed && (ops->x_bf16 >> dt) & 1 ? ldexp(1.0, -8 * DSK_BF16X_PARTS) + 2e-5 : 2e-5;
}

/* Checks y (with padding ldy) against ref/bound; the padding must still hold DSI_TEST_SENTINEL. */
static int check_out(const char *what, const float *y, const double *ref, const double *bound,
                     double rel, int64_t n, int64_t width, int64_t ldy)
{
    int bad = 0;
    for (int64_t t = 0; t < n && bad < 3; t++) {
        for (int64_t j = 0; j < width && bad < 3; j++) {
            double tol = rel * bound[t * width + j] + 1e-30;
            double d = fabs(y[t * ldy + j] - ref[t * width + j]);
            if (!(d <= tol)) {
                fprintf(stderr, "%s: t=%lld j=%lld got %.9g want %.9g (tol %.3g)\n", what,
                        (long long)t, (long long)j, y[t * ldy + j], ref[t * width + j], tol);
                bad++;
            }
        }
        for (int64_t j = width; t + 1 < n && j < ldy && bad < 3; j++) {
            if (y[t * ldy + j] != DSI_TEST_SENTINEL) {
                fprintf(stderr, "%s: t=%lld padding %lld overwritten\n", what, (long long)t,
                        (long long)j);
                bad++;
            }
        }
    }
    DSI_CHECK(bad == 0);
    return bad == 0;
}

void dsi_test_matmul_case(const dsk_ops_t *levels, int n_levels, const dsk_matrix_t *m,
                          const float *dense, int64_t r0, int64_t r1, int64_t n)
{
    const int64_t cols = m->cols, nr = r1 - r0;
    const int64_t ldx = cols + (int64_t)(dsi_test_randu() % 3);
    const int64_t ldy = nr + (int64_t)(dsi_test_randu() % 3);
    float *x = dsi_test_random_floats((n - 1) * ldx + cols);
    double *ref = malloc((size_t)(n * nr) * sizeof(double));
    double *bound = malloc((size_t)(n * nr) * sizeof(double));
    for (int64_t t = 0; t < n; t++) {
        for (int64_t r = r0; r < r1; r++) {
            double s = 0, a = 0;
            for (int64_t c = 0; c < cols; c++) {
                double p = (double)dense[r * cols + c] * x[t * ldx + c];
                s += p;
                a += fabs(p);
            }
            ref[t * nr + (r - r0)] = s;
            bound[t * nr + (r - r0)] = a;
        }
    }
    int64_t ny = (n - 1) * ldy + nr;
    float *y = malloc((size_t)ny * sizeof(float));
    for (int l = 0; l < n_levels; l++) {
        for (int64_t i = 0; i < ny; i++)
            y[i] = DSI_TEST_SENTINEL;
        levels[l].matmul[m->dtype](m, r0, r1, x, ldx, n, y, ldy);
        char what[160];
        snprintf(what, sizeof(what), "matmul %s %s %lldx%lld rows [%lld,%lld) n=%lld",
                 dsk_level_name(levels[l].level), dsk_dtype_name(m->dtype), (long long)m->rows,
                 (long long)cols, (long long)r0, (long long)r1, (long long)n);
        check_out(what, y, ref, bound, rel_bound(&levels[l], m->dtype, 0), n, nr, ldy);
    }
    free(x);
    free(ref);
    free(bound);
    free(y);
}

void dsi_test_matmul_t_case(const dsk_ops_t *levels, int n_levels, const dsk_matrix_t *m,
                            const float *dense, int64_t r0, int64_t r1, int64_t n)
{
    const int64_t cols = m->cols, nr = r1 - r0;
    const int64_t ldx = nr + (int64_t)(dsi_test_randu() % 3);
    const int64_t ldy = cols + (int64_t)(dsi_test_randu() % 3);
    float *x = dsi_test_random_floats((n - 1) * ldx + nr);
    int64_t ny = (n - 1) * ldy + cols;
    float *y0 = dsi_test_random_floats(ny); /* matmul_t accumulates onto what y holds */
    double *ref = malloc((size_t)(n * cols) * sizeof(double));
    double *bound = malloc((size_t)(n * cols) * sizeof(double));
    for (int64_t t = 0; t < n; t++) {
        for (int64_t c = 0; c < cols; c++) {
            double s = y0[t * ldy + c], a = fabs(y0[t * ldy + c]);
            for (int64_t r = r0; r < r1; r++) {
                double p = (double)dense[r * cols + c] * x[t * ldx + (r - r0)];
                s += p;
                a += fabs(p);
            }
            ref[t * cols + c] = s;
            bound[t * cols + c] = a;
        }
        for (int64_t c = cols; c < ldy && t + 1 < n; c++)
            y0[t * ldy + c] = DSI_TEST_SENTINEL;
    }
    float *y = malloc((size_t)ny * sizeof(float));
    for (int l = 0; l < n_levels; l++) {
        memcpy(y, y0, (size_t)ny * sizeof(float));
        levels[l].matmul_t[m->dtype](m, r0, r1, x, ldx, n, y, ldy);
        char what[160];
        snprintf(what, sizeof(what), "matmul_t %s %s %lldx%lld rows [%lld,%lld) n=%lld",
                 dsk_level_name(levels[l].level), dsk_dtype_name(m->dtype), (long long)m->rows,
                 (long long)cols, (long long)r0, (long long)r1, (long long)n);
        check_out(what, y, ref, bound, rel_bound(&levels[l], m->dtype, 1), n, cols, ldy);
    }
    free(x);
    free(y0);
    free(y);
    free(ref);
    free(bound);
}

void dsi_test_matmul_ranges(const dsk_ops_t *levels, int n_levels, const dsk_matrix_t *m,
                            const float *dense, int64_t n)
{
    const int64_t rows = m->rows;
    dsi_test_matmul_case(levels, n_levels, m, dense, 0, rows, n);
    dsi_test_matmul_t_case(levels, n_levels, m, dense, 0, rows, n);
    if (rows > 2) {
        int64_t r0 = 1 + (int64_t)(dsi_test_randu() % (uint32_t)(rows / 2));
        int64_t r1 = r0 + 1 + (int64_t)(dsi_test_randu() % (uint32_t)(rows - r0));
        dsi_test_matmul_case(levels, n_levels, m, dense, r0, r1, n);
        dsi_test_matmul_t_case(levels, n_levels, m, dense, r0, r1, n);
    }
}

double dsi_test_matmul_gflops(const dsk_ops_t *ops, const dsk_matrix_t *m, const float *x,
                              int64_t n, float *y)
{
    double best = 1e30;
    for (int rep = 0; rep < 5; rep++) {
        int iters = 0;
        const double t0 = dsi_thread_cpu_s();
        double t = 0;
        do {
            ops->matmul[m->dtype](m, 0, m->rows, x, m->cols, n, y, m->rows);
            iters++;
            t = dsi_thread_cpu_s() - t0;
        } while (t < 0.05);
        best = t / iters < best ? t / iters : best;
    }
    return 2.0 * (double)m->rows * (double)m->cols * (double)n / best * 1e-9;
}
