/*
 * test_kernel_q4l.c - int4 weights repacked at load (DSK_LAYOUT_Q4_L16, dsk_q4l_pack) and the
 * int8-activation kernels that read them: avx2 (dsk_avx2_q4l.c) and avx512vnni
 * (dsk_avx512_vnni_q4l.c). Each level the CPU lacks is skipped with a loud line; exit 77 when
 * none runs.
 *
 * - the packed layout holds the same values: dsk_matrix_row_f32 of the packed matrix equals the
 *   row-major one bit for bit (so do dsk_q_value / dsk_q_scale, which the references use);
 *   dsk_q4l_pack refuses what is not int4 in the row layout; padding rows are q = 0, scale 0;
 * - each level's matmul on the packed matrix against an exact double evaluation of the integer
 *   math of dsk_matmul_a8_ref (bound 2e-5 * sum_g |w_s x_s| sum |q_w q_x|: only f32 summation
 *   differs), on odd shapes (rows not a multiple of 16, partial groups and chunks, columns over
 *   several chunks of quantized x: 70000 at one token), I4_G32 and I4_G128, n = 1..9, 15, 16,
 *   17, 33, 64, 65, 130 (token blocks, their remainders, several blocks of 64), row sub-ranges
 *   that start and end inside a block of 16, padded ldx / ldy whose padding must stay untouched;
 *   the reference on the packed matrix gives the same as on the row-major one;
 * - the slots without a kernel for the layout (scalar, f32 activations, matmul_t, row_f32) give
 *   the f32 product through the references (the dsi_test_matmul bound).
 *
 * `test_kernel_q4l --bench`: GMAC/s of the row layout against the repacked one at each level
 * (one thread, thread CPU time, cache-resident matrices; best of 5 x 50 ms); docs/PERFORMANCE.md
 * quotes it.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dsi_clock.h"
#include "dsi_test.h"
#include "dsi_test_matmul.h"
#include "dsk.h"
#include "dsk_impl.h"

typedef struct {
    dsk_matrix_t rows; /* row layout */
    dsk_matrix_t q4l;  /* the same values repacked */
    void *data, *packed;
    float *scale, *dense;
} qmat_t;

static void qmat_make(qmat_t *t, dsk_dtype_t dt, int64_t rows, int64_t cols)
{
    float *src = dsi_test_random_floats(rows * cols);
    t->data = malloc((size_t)(rows * dsk_dtype_row_bytes(dt, cols)) + 1);
    t->scale = malloc((size_t)(rows * dsk_dtype_scale_cols(dt, cols)) * sizeof(float) + 1);
    dsk_quantize_rows(dt, src, cols, rows, cols, t->data, t->scale);
    t->rows = (dsk_matrix_t){dt, rows, cols, t->data, t->scale, DSK_LAYOUT_ROWS};
    t->packed = malloc(dsk_q4l_bytes(dt, rows, cols) + 1);
    memset(t->packed, 0xa5, dsk_q4l_bytes(dt, rows, cols) + 1);
    DSI_CHECK_INT_EQ(dsk_q4l_pack(&t->rows, t->packed), 0);
    t->q4l = (dsk_matrix_t){dt, rows, cols, t->packed, NULL, DSK_LAYOUT_Q4_L16};
    t->dense = malloc((size_t)(rows * cols) * sizeof(float) + 1);
    for (int64_t r = 0; r < rows; r++)
        dsk_matrix_row_f32(&t->rows, r, t->dense + r * cols);
    free(src);
}

static void qmat_free(qmat_t *t)
{
    free(t->data);
    free(t->scale);
    free(t->packed);
    free(t->dense);
}

/* The packed matrix holds the same values; padding rows hold q = 0 and scale 0. */
static void test_layout(const qmat_t *t)
{
    const dsk_matrix_t *m = &t->q4l;
    float *row = malloc((size_t)m->cols * sizeof(float) + 4);
    int bad = 0;
    for (int64_t r = 0; r < m->rows; r++) {
        dsk_matrix_row_f32(m, r, row);
        bad += memcmp(row, t->dense + r * m->cols, (size_t)m->cols * sizeof(float)) != 0;
    }
    DSI_CHECK_INT_EQ(bad, 0);
    const int64_t pad_rows = (m->rows + 15) / 16 * 16;
    dsk_matrix_t padded = *m;
    padded.rows = pad_rows;
    for (int64_t r = m->rows; r < pad_rows; r++)
        for (int64_t c = 0; c < m->cols; c++) {
            bad += dsk_q_value(&padded, r, c) != 0;
            bad += dsk_q_scale(&padded, r, c) != 0.0f;
        }
    DSI_CHECK_INT_EQ(bad, 0);
    free(row);
}

/* y = W[r0:r1] x, n tokens: the references and the level's slot against exact integer math. */
static void test_product(const dsk_ops_t *ops, const qmat_t *tm, int64_t r0, int64_t r1, int64_t n)
{
    const dsk_matrix_t *m = &tm->rows;
    const int64_t K = m->cols, G = m->dtype == DSK_DTYPE_I4_G32 ? 32 : 128;
    const int64_t ng = (K + G - 1) / G, nr = r1 - r0;
    const int64_t ldx = K + (int64_t)(dsi_test_randu() % 3);
    const int64_t ldy = nr + (int64_t)(dsi_test_randu() % 3);
    float *x = malloc((size_t)((n - 1) * ldx + K) * sizeof(float));
    for (int64_t i = 0; i < (n - 1) * ldx + K; i++)
        x[i] = dsi_test_spread_x();
    double *exact = malloc((size_t)(n * nr) * sizeof(double));
    double *tol = malloc((size_t)(n * nr) * sizeof(double));
    int8_t *qx = malloc((size_t)(K + 32));
    float *xs = malloc((size_t)ng * sizeof(float));
    int32_t *xsum = malloc((size_t)ng * sizeof(int32_t));
    for (int64_t t = 0; t < n; t++) {
        dsk_act8_quantize(x + t * ldx, K, G, qx, xs, xsum);
        for (int64_t r = r0; r < r1; r++) {
            double e = 0, b = 0;
            for (int64_t g = 0; g < ng; g++) {
                int64_t idot = 0, iabs = 0;
                for (int64_t c = g * G; c < K && c < (g + 1) * G; c++) {
                    const int64_t p = (int64_t)dsk_q_value(m, r, c) * qx[c];
                    idot += p;
                    iabs += llabs(p);
                }
                const double s = (double)(dsk_q_scale(m, r, g * G) * xs[g]);
                e += s * (double)idot;
                b += fabs(s) * (double)iabs;
            }
            exact[t * nr + (r - r0)] = e;
            tol[t * nr + (r - r0)] = 2e-5 * b + 1e-30;
        }
    }
    const int64_t ny = (n - 1) * ldy + nr;
    float *y = malloc((size_t)ny * sizeof(float));
    char what[160];
    const int ref = n <= 4 || nr * K * n < 4000000; /* the references are slow */
    for (int v = ref ? 0 : 1; v < 2; v++) {
        for (int64_t i = 0; i < ny; i++)
            y[i] = DSI_TEST_SENTINEL;
        if (v == 0)
            dsk_matmul_a8_ref(&tm->q4l, r0, r1, x, ldx, n, y, ldy);
        else
            ops->matmul[m->dtype](&tm->q4l, r0, r1, x, ldx, n, y, ldy);
        snprintf(what, sizeof(what), "q4l %s %s %lldx%lld rows [%lld,%lld) n=%lld",
                 v ? dsk_level_name(ops->level) : "a8 ref", dsk_dtype_name(m->dtype),
                 (long long)m->rows, (long long)K, (long long)r0, (long long)r1, (long long)n);
        dsi_test_check_y(what, y, exact, tol, n, nr, ldy);
    }
    free(x);
    free(exact);
    free(tol);
    free(qx);
    free(xs);
    free(xsum);
    free(y);
}

/* Multiply-adds per second of ops->matmul on m at n tokens: best of 5 runs of >= 50 ms. */
static double bench_one(const dsk_ops_t *ops, const dsk_matrix_t *m, const float *x, float *y,
                        int64_t n)
{
    double best = 1e30;
    for (int rep = 0; rep < 5; rep++) {
        const double t0 = dsi_thread_cpu_s();
        int it = 0;
        do {
            ops->matmul[m->dtype](m, 0, m->rows, x, m->cols, n, y, m->rows);
            it++;
        } while (dsi_thread_cpu_s() - t0 < 0.05);
        const double t = (dsi_thread_cpu_s() - t0) / it;
        best = t < best ? t : best;
    }
    return (double)m->rows * (double)m->cols * (double)n / best;
}

static int bench(void)
{
    static const int64_t shapes[][2] = {{512, 2048}, {64, 7168}};
    static const int64_t ns[] = {1, 4, 16, 64};
    static const dsk_level_t lv[] = {DSK_LEVEL_AVX2, DSK_LEVEL_AVX512_VNNI};
    static const dsk_dtype_t dts[] = {DSK_DTYPE_I4_G32, DSK_DTYPE_I4_G128};
    printf(
        "GMAC/s, one thread, thread CPU time, best of 5; rows = stored layout, q4l = repacked\n");
    printf("%-11s %-9s %-9s %-6s %8s %8s %8s %8s\n", "level", "dtype", "shape", "layout", "n=1",
           "n=4", "n=16", "n=64");
    float *x = malloc((size_t)(64 * 7168) * sizeof(float));
    float *y = malloc((size_t)(64 * 512) * sizeof(float));
    for (int64_t i = 0; i < 64 * 7168; i++)
        x[i] = dsi_test_spread_x();
    for (size_t l = 0; l < 2; l++) {
        if (!dsk_level_supported(lv[l]))
            continue;
        dsk_ops_t ops;
        dsk_ops_init_act(&ops, lv[l], DSK_ACT_I8);
        for (size_t d = 0; d < 2; d++)
            for (size_t s = 0; s < 2; s++) {
                qmat_t tm;
                qmat_make(&tm, dts[d], shapes[s][0], shapes[s][1]);
                for (int lay = 0; lay < 2; lay++) {
                    char shape[32];
                    snprintf(shape, sizeof(shape), "%lldx%lld", (long long)shapes[s][0],
                             (long long)shapes[s][1]);
                    printf("%-11s %-9s %-9s %-6s", dsk_level_name(lv[l]), dsk_dtype_name(dts[d]),
                           shape, lay ? "q4l" : "rows");
                    for (size_t k = 0; k < 4; k++)
                        printf(" %8.1f",
                               bench_one(&ops, lay ? &tm.q4l : &tm.rows, x, y, ns[k]) * 1e-9);
                    printf("\n");
                    fflush(stdout);
                }
                qmat_free(&tm);
            }
    }
    free(x);
    free(y);
    return 0;
}

int main(int argc, char **argv)
{
    dsi_test_seed(17);
    if (argc > 1 && strcmp(argv[1], "--bench") == 0)
        return bench();
    static const dsk_level_t want[] = {DSK_LEVEL_AVX2, DSK_LEVEL_AVX512_VNNI};
    dsk_ops_t levels[2];
    int n_levels = 0;
    for (size_t i = 0; i < 2; i++) {
        if (!dsk_level_supported(want[i])) {
            fprintf(stderr, "SKIPPED: this CPU (%s) lacks level %s: its int4 kernel was NOT run\n",
                    dsk_level_name(dsk_level_cpu()), dsk_level_name(want[i]));
            continue;
        }
        dsk_ops_init_act(&levels[n_levels], want[i], DSK_ACT_I8);
        DSI_CHECK_INT_EQ(levels[n_levels].level, want[i]);
        DSI_CHECK_INT_EQ(levels[n_levels].q4l, 1);
        n_levels++;
    }
    if (n_levels == 0)
        return 77;
    /* the slots without a kernel for the layout: scalar, and a SIMD level with f32 activations */
    dsk_ops_t fallback[2];
    dsk_ops_init_act(&fallback[0], DSK_LEVEL_SCALAR, DSK_ACT_I8);
    dsk_ops_init_act(&fallback[1], dsk_level_cpu(), DSK_ACT_F32);
    DSI_CHECK_INT_EQ(fallback[0].q4l, 0);
    DSI_CHECK_INT_EQ(fallback[1].q4l, 0);

    /* what dsk_q4l_pack refuses */
    {
        uint8_t d[64] = {0};
        float s[4] = {1, 1, 1, 1};
        char out[1024];
        dsk_matrix_t i8 = {DSK_DTYPE_I8, 1, 16, d, s, DSK_LAYOUT_ROWS};
        dsk_matrix_t p = {DSK_DTYPE_I4_G32, 1, 16, d, s, DSK_LAYOUT_Q4_L16};
        DSI_CHECK_INT_EQ(dsk_q4l_pack(&i8, out), -1);
        DSI_CHECK_INT_EQ(dsk_q4l_pack(&p, out), -1);
        DSI_CHECK(dsk_q4l_bytes(DSK_DTYPE_I8, 16, 16) == 0);
        DSI_CHECK(dsk_q4l_bytes(DSK_DTYPE_I4_G32, 17, 40) == 2 * 16 * (32 + 2 * 4));
        DSI_CHECK(dsk_q4l_bytes(DSK_DTYPE_I4_G128, 16, 300) == 16 * (160 + 3 * 4));
    }

    static const int64_t shapes[][2] = {{1, 1},     {3, 7},     {16, 32},   {17, 33},   {37, 300},
                                        {5, 129},   {33, 1000}, {15, 1056}, {31, 1025}, {6, 8200},
                                        {48, 2048}, {2, 70000}, {20, 4100}, {130, 257}, {64, 160}};
    static const dsk_dtype_t dts[] = {DSK_DTYPE_I4_G32, DSK_DTYPE_I4_G128};
    static const int64_t ns[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 17, 33, 64, 65, 130};
    for (size_t d = 0; d < 2; d++) {
        for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
            const int64_t rows = shapes[s][0], cols = shapes[s][1];
            qmat_t tm;
            qmat_make(&tm, dts[d], rows, cols);
            test_layout(&tm);
            for (int l = 0; l < n_levels; l++)
                for (size_t k = 0; k < sizeof(ns) / sizeof(ns[0]); k++) {
                    const int64_t n = ns[k];
                    if (n > 17 && rows * cols * n > 40000000)
                        continue; /* the exact double evaluation is slow */
                    test_product(&levels[l], &tm, 0, rows, n);
                    if (rows > 2) {
                        int64_t r0 = 1 + (int64_t)(dsi_test_randu() % (uint32_t)(rows / 2));
                        int64_t r1 = r0 + 1 + (int64_t)(dsi_test_randu() % (uint32_t)(rows - r0));
                        test_product(&levels[l], &tm, r0, r1, n);
                    }
                }
            /* the reference slots read the layout: f32 products, transposed products, rows */
            if (rows * cols <= 100000) {
                for (int64_t n = 1; n <= 5; n += 4) {
                    dsi_test_matmul_case(fallback, 2, &tm.q4l, tm.dense, 0, rows, n);
                    dsi_test_matmul_t_case(fallback, 2, &tm.q4l, tm.dense, 0, rows, n);
                    dsi_test_matmul_t_case(levels, n_levels, &tm.q4l, tm.dense, 0, rows, n);
                }
                float *row = malloc((size_t)cols * sizeof(float));
                for (int l = 0; l < n_levels; l++) {
                    int bad = 0;
                    for (int64_t r = 0; r < rows; r++) {
                        levels[l].row_f32[dts[d]](&tm.q4l, r, row);
                        bad += memcmp(row, tm.dense + r * cols, (size_t)cols * sizeof(float)) != 0;
                    }
                    DSI_CHECK_INT_EQ(bad, 0);
                }
                free(row);
            }
            qmat_free(&tm);
        }
    }
    printf("int4 repacked: %d level(s) with int8 activations checked\n", n_levels);
    return dsi_test_finish();
}
