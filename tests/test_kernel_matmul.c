/*
 * test_kernel_matmul.c - matmul and matmul_t of every kernel level this CPU runs, for F32, BF16
 * and F8_E4M3 weights, against a double-precision product of the dequantized rows.
 *
 * Sizes are chosen to hit every tail: rows not a multiple of any register tile, columns not a
 * multiple of 8, 16 or 128 (partial fp8 blocks such as 576 x 96), sub-ranges [r0, r1) that start
 * inside a 128-row scale block, padded ldx / ldy, and token counts on both sides of every tile
 * size. Buffers are allocated to their exact extent (ASan catches a read past them) and the
 * padding of y is filled with a sentinel that must survive.
 */
#include <stdlib.h>

#include "dsi_test.h"
#include "dsk.h"

#define SENTINEL 12345.0f

typedef struct {
    dsk_matrix_t m;
    void *data;   /* rows * cols of dtype */
    float *scale; /* [ceil(rows/128), ceil(cols/128)] for fp8 */
    float *dense; /* rows * cols: the dequantized values */
} test_matrix_t;

static uint8_t random_fp8(void)
{
    uint8_t b = (uint8_t)dsi_test_randu();
    return (b & 0x7f) == 0x7f ? (uint8_t)(b ^ 1) : b; /* no NaN codes: weights never hold them */
}

static void matrix_make(test_matrix_t *t, dsk_dtype_t dt, int64_t rows, int64_t cols)
{
    size_t n = (size_t)(rows * cols);
    memset(t, 0, sizeof(*t));
    t->m.dtype = dt;
    t->m.rows = rows;
    t->m.cols = cols;
    if (dt == DSK_DTYPE_F32) {
        float *d = malloc(n * sizeof(float));
        for (size_t i = 0; i < n; i++)
            d[i] = dsi_test_randf();
        t->data = d;
    } else if (dt == DSK_DTYPE_BF16) {
        uint16_t *d = malloc(n * sizeof(uint16_t));
        for (size_t i = 0; i < n; i++)
            d[i] = dsk_f32_to_bf16(dsi_test_randf());
        t->data = d;
    } else {
        uint8_t *d = malloc(n);
        for (size_t i = 0; i < n; i++)
            d[i] = random_fp8();
        t->data = d;
        int64_t br = (rows + 127) / 128, bc = (cols + 127) / 128;
        t->scale = malloc((size_t)(br * bc) * sizeof(float));
        for (int64_t i = 0; i < br * bc; i++)
            t->scale[i] = ldexpf(1.0f + 0.5f * dsi_test_randf(), -(int)(dsi_test_randu() % 12));
    }
    t->m.data = t->data;
    t->m.scale_inv = t->scale;
    t->dense = malloc(n * sizeof(float));
    for (int64_t r = 0; r < rows; r++)
        dsk_matrix_row_f32(&t->m, r, t->dense + r * cols);
}

static void matrix_free(test_matrix_t *t)
{
    free(t->data);
    free(t->scale);
    free(t->dense);
}

static float *random_floats(int64_t n)
{
    float *v = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    for (int64_t i = 0; i < n; i++)
        v[i] = dsi_test_randf();
    return v;
}

/* Checks y (with padding ldy) against ref/bound; the padding must still hold SENTINEL. */
static int check_out(const char *what, const float *y, const double *ref, const double *bound,
                     int64_t n, int64_t width, int64_t ldy)
{
    int bad = 0;
    for (int64_t t = 0; t < n && bad < 3; t++) {
        for (int64_t j = 0; j < width && bad < 3; j++) {
            double tol = 2e-5 * bound[t * width + j] + 1e-30;
            double d = fabs(y[t * ldy + j] - ref[t * width + j]);
            if (!(d <= tol)) {
                fprintf(stderr, "%s: t=%lld j=%lld got %.9g want %.9g (tol %.3g)\n", what,
                        (long long)t, (long long)j, y[t * ldy + j], ref[t * width + j], tol);
                bad++;
            }
        }
        for (int64_t j = width; t + 1 < n && j < ldy && bad < 3; j++) {
            if (y[t * ldy + j] != SENTINEL) {
                fprintf(stderr, "%s: t=%lld padding %lld overwritten\n", what, (long long)t,
                        (long long)j);
                bad++;
            }
        }
    }
    DSI_CHECK(bad == 0);
    return bad == 0;
}

static const char *dtype_name(dsk_dtype_t dt)
{
    return dt == DSK_DTYPE_F32 ? "f32" : dt == DSK_DTYPE_BF16 ? "bf16" : "fp8";
}

static void test_matmul_case(const dsk_ops_t *levels, int n_levels, const test_matrix_t *tm,
                             int64_t r0, int64_t r1, int64_t n)
{
    const int64_t cols = tm->m.cols, nr = r1 - r0;
    const int64_t ldx = cols + (int64_t)(dsi_test_randu() % 3);
    const int64_t ldy = nr + (int64_t)(dsi_test_randu() % 3);
    float *x = random_floats((n - 1) * ldx + cols);
    double *ref = malloc((size_t)(n * nr) * sizeof(double));
    double *bound = malloc((size_t)(n * nr) * sizeof(double));
    for (int64_t t = 0; t < n; t++) {
        for (int64_t r = r0; r < r1; r++) {
            double s = 0, a = 0;
            for (int64_t c = 0; c < cols; c++) {
                double p = (double)tm->dense[r * cols + c] * x[t * ldx + c];
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
            y[i] = SENTINEL;
        levels[l].matmul[tm->m.dtype](&tm->m, r0, r1, x, ldx, n, y, ldy);
        char what[160];
        snprintf(what, sizeof(what), "matmul %s %s %lldx%lld rows [%lld,%lld) n=%lld",
                 dsk_level_name(levels[l].level), dtype_name(tm->m.dtype), (long long)tm->m.rows,
                 (long long)cols, (long long)r0, (long long)r1, (long long)n);
        check_out(what, y, ref, bound, n, nr, ldy);
    }
    free(x);
    free(ref);
    free(bound);
    free(y);
}

static void test_matmul_t_case(const dsk_ops_t *levels, int n_levels, const test_matrix_t *tm,
                               int64_t r0, int64_t r1, int64_t n)
{
    const int64_t cols = tm->m.cols, nr = r1 - r0;
    const int64_t ldx = nr + (int64_t)(dsi_test_randu() % 3);
    const int64_t ldy = cols + (int64_t)(dsi_test_randu() % 3);
    float *x = random_floats((n - 1) * ldx + nr);
    int64_t ny = (n - 1) * ldy + cols;
    float *y0 = random_floats(ny); /* matmul_t accumulates onto what y holds */
    double *ref = malloc((size_t)(n * cols) * sizeof(double));
    double *bound = malloc((size_t)(n * cols) * sizeof(double));
    for (int64_t t = 0; t < n; t++) {
        for (int64_t c = 0; c < cols; c++) {
            double s = y0[t * ldy + c], a = fabs(y0[t * ldy + c]);
            for (int64_t r = r0; r < r1; r++) {
                double p = (double)tm->dense[r * cols + c] * x[t * ldx + (r - r0)];
                s += p;
                a += fabs(p);
            }
            ref[t * cols + c] = s;
            bound[t * cols + c] = a;
        }
        for (int64_t c = cols; c < ldy && t + 1 < n; c++)
            y0[t * ldy + c] = SENTINEL;
    }
    float *y = malloc((size_t)ny * sizeof(float));
    for (int l = 0; l < n_levels; l++) {
        memcpy(y, y0, (size_t)ny * sizeof(float));
        levels[l].matmul_t[tm->m.dtype](&tm->m, r0, r1, x, ldx, n, y, ldy);
        char what[160];
        snprintf(what, sizeof(what), "matmul_t %s %s %lldx%lld rows [%lld,%lld) n=%lld",
                 dsk_level_name(levels[l].level), dtype_name(tm->m.dtype), (long long)tm->m.rows,
                 (long long)cols, (long long)r0, (long long)r1, (long long)n);
        check_out(what, y, ref, bound, n, cols, ldy);
    }
    free(x);
    free(y0);
    free(y);
    free(ref);
    free(bound);
}

/* A weight that is a single non-zero makes a wrong index show up as a wrong output row. */
static void test_one_hot(const dsk_ops_t *levels, int n_levels)
{
    for (int l = 0; l < n_levels; l++) {
        enum { R = 21, C = 300, N = 7 };
        static float w[R * C];
        float x[N * C], y[N * R];
        memset(w, 0, sizeof(w));
        w[13 * C + 257] = 2.0f;
        for (int i = 0; i < N * C; i++)
            x[i] = (float)(i % C);
        dsk_matrix_t m = {DSK_DTYPE_F32, R, C, w, NULL};
        for (int64_t n = 1; n <= N; n += 5) {
            levels[l].matmul[DSK_DTYPE_F32](&m, 0, R, x, C, n, y, R);
            for (int t = 0; t < n; t++)
                for (int r = 0; r < R; r++)
                    DSI_CHECK_NEAR(y[t * R + r], r == 13 ? 514.0 : 0.0, 0);
        }
    }
}

int main(void)
{
    dsk_ops_t levels[DSK_LEVEL_COUNT];
    int n_levels = 0;
    for (int l = 0; l <= (int)dsk_level_cpu(); l++)
        dsk_ops_init(&levels[n_levels++], (dsk_level_t)l);
    printf("levels tested: %d (cpu: %s)\n", n_levels, dsk_level_name(dsk_level_cpu()));
    for (int l = 0; l < n_levels; l++)
        DSI_CHECK_INT_EQ(levels[l].level, l);

    static const int64_t shapes[][2] = {{1, 1},     {3, 7},    {37, 300}, {576, 96},
                                        {130, 257}, {17, 128}, {64, 520}, {33, 129}};
    static const int64_t ns[] = {1, 2, 3, 4, 5, 8, 17, 64};
    dsi_test_seed(42);
    test_one_hot(levels, n_levels);
    for (int dt = 0; dt <= DSK_DTYPE_F8_E4M3; dt++) { /* the checkpoint dtypes */
        for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
            test_matrix_t tm;
            matrix_make(&tm, (dsk_dtype_t)dt, shapes[s][0], shapes[s][1]);
            for (size_t k = 0; k < sizeof(ns) / sizeof(ns[0]); k++) {
                int64_t rows = shapes[s][0];
                /* the full range, then a sub-range starting inside a block */
                test_matmul_case(levels, n_levels, &tm, 0, rows, ns[k]);
                test_matmul_t_case(levels, n_levels, &tm, 0, rows, ns[k]);
                if (rows > 2) {
                    int64_t r0 = 1 + (int64_t)(dsi_test_randu() % (uint32_t)(rows / 2));
                    int64_t r1 = r0 + 1 + (int64_t)(dsi_test_randu() % (uint32_t)(rows - r0));
                    test_matmul_case(levels, n_levels, &tm, r0, r1, ns[k]);
                    test_matmul_t_case(levels, n_levels, &tm, r0, r1, ns[k]);
                }
            }
            matrix_free(&tm);
        }
        /* prefill: many tokens, more than one G_KC panel of columns and of rows */
        test_matrix_t big;
        matrix_make(&big, (dsk_dtype_t)dt, 300, 600);
        test_matmul_case(levels, n_levels, &big, 5, 290, 40);
        test_matmul_t_case(levels, n_levels, &big, 3, 299, 30);
        matrix_free(&big);
    }
    return dsi_test_finish();
}
