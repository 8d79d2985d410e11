/*
 * test_kernel_vector.c - dot, axpy, rmsnorm, silu_mul and softmax of every level this CPU runs,
 * against double-precision formulas, at lengths around every vector width (tails), with the
 * in-place aliasing the contract allows and the extreme inputs attention and MLPs produce.
 */
#include <stdlib.h>

#include "dsi_test.h"
#include "dsk.h"

static const int64_t lengths[] = {1, 3, 7, 8, 15, 16, 17, 31, 33, 64, 100, 1000, 7168};
#define N_LENGTHS (sizeof(lengths) / sizeof(lengths[0]))

static float *rand_vec(int64_t n, float scale)
{
    float *v = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++)
        v[i] = dsi_test_randf() * scale;
    return v;
}

/* max_i |got - want| / (abs_floor + |want|) <= rel, reporting the first failure. */
static void check_rel(const char *what, const dsk_ops_t *ops, int64_t n, const float *got,
                      const double *want, double rel, double abs_floor)
{
    int64_t worst = -1;
    double worst_err = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs(got[i] - want[i]) / (abs_floor + fabs(want[i]));
        if (!(e <= worst_err)) {
            worst_err = e;
            worst = i;
        }
    }
    if (!(worst_err <= rel))
        fprintf(stderr, "%s %s n=%lld: [%lld] got %.9g want %.9g\n", what,
                dsk_level_name(ops->level), (long long)n, (long long)worst, got[worst],
                want[worst]);
    DSI_CHECK(worst_err <= rel);
}

static void test_dot_axpy(const dsk_ops_t *ops, int64_t n)
{
    float *a = rand_vec(n, 3.0f), *b = rand_vec(n, 0.5f), *y = rand_vec(n, 1.0f);
    double want = 0, bound = 0;
    for (int64_t i = 0; i < n; i++) {
        want += (double)a[i] * b[i];
        bound += fabs((double)a[i] * b[i]);
    }
    float got = ops->dot(a, b, n);
    DSI_CHECK_NEAR(got, want, 1e-6 * bound + 1e-30);

    double *yw = malloc((size_t)n * sizeof(double));
    for (int64_t i = 0; i < n; i++)
        yw[i] = y[i] + 0.75 * a[i];
    ops->axpy(0.75f, a, y, n);
    check_rel("axpy", ops, n, y, yw, 1e-6, 1.0);
    free(a);
    free(b);
    free(y);
    free(yw);
}

static void test_rmsnorm(const dsk_ops_t *ops, int64_t n)
{
    float *x = rand_vec(n, 4.0f), *w = rand_vec(n, 2.0f), *out = malloc((size_t)n * 4);
    double ss = 0;
    for (int64_t i = 0; i < n; i++)
        ss += (double)x[i] * x[i];
    double inv = 1.0 / sqrt(ss / n + 1e-6);
    double *want = malloc((size_t)n * sizeof(double));
    for (int64_t i = 0; i < n; i++)
        want[i] = w[i] * x[i] * inv;
    ops->rmsnorm(x, w, n, 1e-6f, out);
    check_rel("rmsnorm", ops, n, out, want, 2e-6, 1e-3);
    ops->rmsnorm(x, w, n, 1e-6f, x); /* in place */
    check_rel("rmsnorm in place", ops, n, x, want, 2e-6, 1e-3);
    free(x);
    free(w);
    free(out);
    free(want);
}

static void test_silu_mul(const dsk_ops_t *ops, int64_t n)
{
    float *g = rand_vec(n, 20.0f), *u = rand_vec(n, 2.0f), *out = malloc((size_t)n * 4);
    if (n > 4) {
        g[0] = -100.0f; /* exp(-g) overflows in f32: silu -> -0 */
        g[1] = 100.0f;
        g[2] = 0.0f;
        g[3] = -87.5f;
    }
    double *want = malloc((size_t)n * sizeof(double));
    for (int64_t i = 0; i < n; i++)
        want[i] = g[i] / (1.0 + exp(-(double)g[i])) * u[i];
    ops->silu_mul(g, u, n, out);
    check_rel("silu_mul", ops, n, out, want, 4e-6, 1e-6);
    float *g2 = malloc((size_t)n * 4), *u2 = malloc((size_t)n * 4);
    memcpy(g2, g, (size_t)n * 4);
    memcpy(u2, u, (size_t)n * 4);
    ops->silu_mul(g2, u, n, g2); /* out == gate */
    check_rel("silu_mul out=gate", ops, n, g2, want, 4e-6, 1e-6);
    ops->silu_mul(g, u2, n, u2); /* out == up */
    check_rel("silu_mul out=up", ops, n, u2, want, 4e-6, 1e-6);
    free(g);
    free(u);
    free(g2);
    free(u2);
    free(out);
    free(want);
}

static void test_softmax(const dsk_ops_t *ops, int64_t n)
{
    float *x = rand_vec(n, 30.0f);
    if (n > 3) {
        x[1] = -INFINITY; /* a masked position */
        x[2] = x[0] - 200.0f;
    }
    double max = -INFINITY, sum = 0;
    for (int64_t i = 0; i < n; i++)
        max = x[i] > max ? x[i] : max;
    double *want = malloc((size_t)n * sizeof(double));
    for (int64_t i = 0; i < n; i++)
        sum += want[i] = exp(x[i] - max);
    for (int64_t i = 0; i < n; i++)
        want[i] /= sum;
    ops->softmax(x, n);
    check_rel("softmax", ops, n, x, want, 1e-5, 1e-7);
    double total = 0;
    for (int64_t i = 0; i < n; i++)
        total += x[i];
    DSI_CHECK_NEAR(total, 1.0, 1e-5);
    if (n > 3)
        DSI_CHECK_NEAR(x[1], 0.0, 0.0);
    free(x);
    free(want);
}

int main(void)
{
    dsi_test_seed(7);
    for (int l = 0; l <= (int)dsk_level_cpu(); l++) {
        dsk_ops_t ops;
        dsk_ops_init(&ops, (dsk_level_t)l);
        for (size_t k = 0; k < N_LENGTHS; k++) {
            test_dot_axpy(&ops, lengths[k]);
            test_rmsnorm(&ops, lengths[k]);
            test_silu_mul(&ops, lengths[k]);
            test_softmax(&ops, lengths[k]);
        }
        float one = 3.0f;
        ops.softmax(&one, 1);
        DSI_CHECK_NEAR(one, 1.0, 0);
    }
    return dsi_test_finish();
}
