/*
 * test_kernel_matmul.c - matmul and matmul_t of every kernel level this CPU runs, for F32, BF16
 * and F8_E4M3 weights, against a double-precision product of the dequantized rows.
 *
 * Sizes are chosen to hit every tail: rows not a multiple of any register tile, columns not a
 * multiple of 8, 16 or 128 (partial fp8 blocks such as 576 x 96), sub-ranges [r0, r1) that start
 * inside a 128-row scale block, padded ldx / ldy, and token counts on both sides of every tile
 * size. Buffers are allocated to their exact extent (ASan catches a read past them) and the
 * padding of y is filled with a sentinel that must survive.
 *
 * --bench: GFLOP/s of the matmul the CPU's default level runs for fp8 and bf16 weights, one
 * thread, cache-resident matrices (best of 5 x 50 ms of thread CPU time): the arithmetic's rate
 * per path (decode tiles, token groups, fp8 slabs, packed GEMM), without the memory.
 */
#include <stdlib.h>
#include <string.h>

#include "dsi_test.h"
#include "dsi_test_matmul.h"
#include "dsk.h"

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
        dsk_matrix_t m = {DSK_DTYPE_F32, R, C, w, NULL, DSK_LAYOUT_ROWS};
        for (int64_t n = 1; n <= N; n += 5) {
            levels[l].matmul[DSK_DTYPE_F32](&m, 0, R, x, C, n, y, R);
            for (int t = 0; t < n; t++)
                for (int r = 0; r < R; r++)
                    DSI_CHECK_NEAR(y[t * R + r], r == 13 ? 514.0 : 0.0, 0);
        }
    }
}

/*
 * The byte table's one-token matmul_t runs the F16C route's f32 operations in the same order, so
 * its outputs are the same bits: levels[twin[l]] is levels[l] with the F16C route.
 */
static void test_fp8_table_t_bits(const dsk_ops_t *levels, const int *twin, int n_levels)
{
    static const int64_t shapes[][2] = {{130, 257}, {256, 512}, {37, 300}, {9, 1}, {70, 2048}};
    for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
        test_matrix_t tm;
        matrix_make(&tm, DSK_DTYPE_F8_E4M3, shapes[s][0], shapes[s][1]);
        const int64_t rows = shapes[s][0], cols = shapes[s][1];
        float *x = dsi_test_random_floats(rows);
        float *y0 = dsi_test_random_floats(cols);
        float *a = malloc((size_t)cols * sizeof(float)), *b = malloc((size_t)cols * sizeof(float));
        for (int l = 0; l < n_levels; l++) {
            if (twin[l] < 0)
                continue;
            const int64_t r0 = rows > 2 ? 1 : 0;
            memcpy(a, y0, (size_t)cols * sizeof(float));
            memcpy(b, y0, (size_t)cols * sizeof(float));
            levels[l].matmul_t[DSK_DTYPE_F8_E4M3](&tm.m, r0, rows, x, rows, 1, a, cols);
            levels[twin[l]].matmul_t[DSK_DTYPE_F8_E4M3](&tm.m, r0, rows, x, rows, 1, b, cols);
            DSI_CHECK(memcmp(a, b, (size_t)cols * sizeof(float)) == 0);
        }
        free(x);
        free(y0);
        free(a);
        free(b);
        matrix_free(&tm);
    }
}

static int bench(void)
{
    dsk_ops_t ops;
    dsk_ops_init(&ops, dsk_level_detect());
    static const int64_t shapes[][2] = {{128, 7168}, {256, 2048}};
    static const int64_t ns[] = {1, 4, 8, 12, 16, 24, 32, 48, 64, 128};
    printf("GFLOP/s, one thread, cache-resident, level %s\n%-6s %-9s", dsk_level_name(ops.level),
           "dtype", "shape");
    for (size_t k = 0; k < sizeof(ns) / sizeof(ns[0]); k++)
        printf(" %6lld", (long long)ns[k]);
    printf("\n");
    for (int dt = DSK_DTYPE_BF16; dt <= DSK_DTYPE_F8_E4M3; dt++) {
        for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
            test_matrix_t tm;
            matrix_make(&tm, (dsk_dtype_t)dt, shapes[s][0], shapes[s][1]);
            const int64_t cols = shapes[s][1], rows = shapes[s][0];
            float *x = malloc((size_t)(128 * cols) * sizeof(float));
            float *y = malloc((size_t)(128 * rows) * sizeof(float));
            for (int64_t i = 0; i < 128 * cols; i++)
                x[i] = dsi_test_randf();
            printf("%-6s %lldx%-4lld", dsk_dtype_name((dsk_dtype_t)dt), (long long)rows,
                   (long long)cols);
            for (size_t k = 0; k < sizeof(ns) / sizeof(ns[0]); k++)
                printf(" %6.1f", dsi_test_matmul_gflops(&ops, &tm.m, x, ns[k], y));
            printf("\n");
            free(x);
            free(y);
            matrix_free(&tm);
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--bench") == 0)
        return bench();
    dsk_ops_t levels[2 * DSK_LEVEL_COUNT];
    int n_levels = 0;
    /* every level this CPU runs, the opt-in avx512bf16 included (its bound: dsi_test_matmul.c) */
    for (int l = 0; l < DSK_LEVEL_COUNT; l++) {
        if (!dsk_level_supported((dsk_level_t)l))
            continue;
        dsk_ops_init(&levels[n_levels], (dsk_level_t)l);
        DSI_CHECK_INT_EQ(levels[n_levels].level, l);
        n_levels++;
    }
    /* where the AVX-512 fp8 decode takes the byte table, its F16C route too (option fp8=f16c) */
    const int n_default = n_levels;
    int twin[DSK_LEVEL_COUNT]; /* the F16C twin of a level with the byte table, or -1 */
    dsk_set_options(NULL, "f16c", NULL);
    for (int l = 0; l < n_default; l++) {
        twin[l] = -1;
        if (!levels[l].fp8_table)
            continue;
        dsk_ops_init(&levels[n_levels], levels[l].level);
        DSI_CHECK_INT_EQ(levels[n_levels].fp8_table, 0);
        twin[l] = n_levels++;
    }
    dsk_set_options(NULL, NULL, NULL);
    printf("levels tested: %d (cpu: %s%s; %d with the fp8 byte table, tested also without)\n",
           n_levels, dsk_level_name(dsk_level_cpu()),
           dsk_level_supported(DSK_LEVEL_AVX512_BF16) ? " and avx512bf16" : "",
           n_levels - n_default);

    static const int64_t shapes[][2] = {{1, 1},     {3, 7},    {37, 300}, {576, 96},
                                        {130, 257}, {17, 128}, {64, 520}, {33, 129},
                                        {45, 1500}, {70, 2048}}; /* tiles of strided rows */
    static const int64_t ns[] = {1, 2, 3, 4, 5, 8, 9, 12, 16, 17, 25, 31, 33, 63, 64, 65};
    dsi_test_seed(42);
    test_one_hot(levels, n_levels);
    test_fp8_table_t_bits(levels, twin, n_default);
    for (int dt = 0; dt <= DSK_DTYPE_F8_E4M3; dt++) { /* the checkpoint dtypes */
        for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
            test_matrix_t tm;
            matrix_make(&tm, (dsk_dtype_t)dt, shapes[s][0], shapes[s][1]);
            for (size_t k = 0; k < sizeof(ns) / sizeof(ns[0]); k++)
                dsi_test_matmul_ranges(levels, n_levels, &tm.m, tm.dense, ns[k]);
            matrix_free(&tm);
        }
        /* prefill: many tokens, more than one G_KC panel of columns and of rows */
        test_matrix_t big;
        matrix_make(&big, (dsk_dtype_t)dt, 300, 600);
        dsi_test_matmul_case(levels, n_levels, &big.m, big.dense, 5, 290, 40);
        dsi_test_matmul_t_case(levels, n_levels, &big.m, big.dense, 3, 299, 30);
        matrix_free(&big);
        /*
         * batched products over long rows: 4200 columns are two whole 2048-column slices of the
         * AVX-512 fp8 slabs and a third ending inside a vector and a 128-column block; 13 rows
         * are two 6-row slabs and a single row
         */
        test_matrix_t slabs;
        matrix_make(&slabs, (dsk_dtype_t)dt, 13, 4200);
        static const int64_t slab_ns[] = {9, 23, 64};
        for (size_t k = 0; k < sizeof(slab_ns) / sizeof(slab_ns[0]); k++)
            dsi_test_matmul_case(levels, n_levels, &slabs.m, slabs.dense, 0, 13, slab_ns[k]);
        matrix_free(&slabs);
        /*
         * decode of wide rows: 7300 columns are one chunk of the AVX2 fp8 tile's prepared x for
         * 1-4 tokens; 33000 are more than it prepares at once (32768 / n) for every n
         */
        static const int64_t wide_cols[] = {7300, 33000};
        for (size_t wc = 0; wc < sizeof(wide_cols) / sizeof(wide_cols[0]); wc++) {
            test_matrix_t wide;
            matrix_make(&wide, (dsk_dtype_t)dt, 7, wide_cols[wc]);
            for (int64_t n = 1; n <= 4; n++)
                dsi_test_matmul_case(levels, n_levels, &wide.m, wide.dense, 1, 7, n);
            matrix_free(&wide);
        }
    }
    return dsi_test_finish();
}
