/*
 * test_kernel_bf16x.c - the avx512bf16 level's matmul (vdpbf16ps: x split into DSK_BF16X_PARTS
 * bf16 parts, each the rest of x rounded) against its scalar model dsk_matmul_bf16x_ref, and
 * against the exact product of the unsplit x; skipped (exit 77) where the CPU lacks AVX512_BF16.
 *
 * Bounds, with A = sum_c |W[r][c]| sum_p |part_p(x[c])| and B = sum_c |W[r][c] x[c]|:
 * - |kernel - dsk_matmul_bf16x_ref| <= 2e-5 * A: the products are exact, only the order of the
 *   f32 additions differs (and subnormals, which these inputs do not produce);
 * - |kernel - exact f32-x product| <= (2^-(8 parts) + 2e-5) * B: the parts' sum is within
 *   2^-(8 parts) of x (3 parts: x itself), so the bound is the f32 path's 2e-5. The test prints
 *   the largest error it saw relative to B.
 * Infinite and NaN x give what the f32 product gives (lo is 0 there, not inf - inf).
 * FP8 weights the same where they round x (n >= DSK_BF16X_FP8_MIN), and within 2e-5 * B of the
 * exact product below that; every e4m3 code is checked exactly through the bf16 panels.
 * n from 1 to 70 on odd shapes (rows and columns not multiples of 8, 16 or 32; partial
 * 128-column blocks and packed slices), random row sub-ranges, padded ldx / ldy whose padding
 * must survive, columns over one chunk of the rounded x (33000) and more tokens than one block
 * of it (130).
 */
#include <stdlib.h>

#include "dsi_test.h"
#include "dsi_test_matmul.h"
#include "dsk.h"

static double worst_rel; /* largest |kernel - exact| / B seen */

/* The bound against the exact product: the parts' sum is within 2^-(8 parts) of x. */
static double split_bound(void)
{
    return ldexp(1.0, -8 * DSK_BF16X_PARTS) + 2e-5;
}

static uint8_t random_fp8(void)
{
    uint8_t b = (uint8_t)dsi_test_randu();
    return (b & 0x7f) == 0x7f ? (uint8_t)(b ^ 1) : b;
}

/* A [rows, cols] matrix of dtype dt with random values (fp8: random block scales). */
static dsk_matrix_t matrix_make(dsk_dtype_t dt, int64_t rows, int64_t cols)
{
    dsk_matrix_t m = {dt, rows, cols, NULL, NULL, DSK_LAYOUT_ROWS};
    size_t n = (size_t)(rows * cols);
    if (dt == DSK_DTYPE_BF16) {
        uint16_t *d = malloc(n * sizeof(uint16_t) + 1);
        for (size_t i = 0; i < n; i++)
            d[i] = dsk_f32_to_bf16(dsi_test_randf());
        m.data = d;
    } else {
        uint8_t *d = malloc(n + 1);
        for (size_t i = 0; i < n; i++)
            d[i] = random_fp8();
        m.data = d;
        int64_t nb = ((rows + 127) / 128) * ((cols + 127) / 128);
        float *s = malloc((size_t)nb * sizeof(float));
        for (int64_t i = 0; i < nb; i++)
            s[i] = ldexpf(1.0f + 0.5f * dsi_test_randf(), -(int)(dsi_test_randu() % 12));
        m.scale_inv = s;
    }
    return m;
}

static void matrix_free(dsk_matrix_t *m)
{
    free((void *)m->data);
    free((void *)m->scale_inv);
}

static void check_case(const dsk_ops_t *ops, const dsk_matrix_t *m, int64_t r0, int64_t r1,
                       int64_t n)
{
    const int64_t cols = m->cols, nr = r1 - r0;
    const int64_t ldx = cols + (int64_t)(dsi_test_randu() % 3);
    const int64_t ldy = nr + (int64_t)(dsi_test_randu() % 3);
    const int64_t nx = (n - 1) * ldx + cols, ny = (n - 1) * ldy + nr;
    float *x = malloc((size_t)nx * sizeof(float));
    for (int64_t i = 0; i < nx; i++)
        x[i] = dsi_test_randf();
    float *y = malloc((size_t)ny * sizeof(float)), *yr = malloc((size_t)ny * sizeof(float));
    float *row = malloc((size_t)(cols > 0 ? cols : 1) * sizeof(float));
    for (int64_t i = 0; i < ny; i++)
        y[i] = yr[i] = DSI_TEST_SENTINEL;
    ops->matmul[m->dtype](m, r0, r1, x, ldx, n, y, ldy);
    /* fp8 below DSK_BF16X_FP8_MIN tokens keeps f32 x: then y is within 2e-5 of the exact product */
    const int rounds = m->dtype == DSK_DTYPE_BF16 || n >= DSK_BF16X_FP8_MIN;
    dsk_matmul_bf16x_ref(m, r0, r1, x, ldx, n, yr, ldy);
    int bad = 0;
    for (int64_t r = r0; r < r1 && bad < 3; r++) {
        dsk_matrix_row_f32(m, r, row);
        for (int64_t t = 0; t < n && bad < 3; t++) {
            double exact = 0, a = 0, b = 0;
            for (int64_t c = 0; c < cols; c++) {
                const float xv = x[t * ldx + c];
                double parts = 0;
                float rest = xv;
                for (int p = 0; p < DSK_BF16X_PARTS; p++) {
                    const float part = dsk_bf16_to_f32(dsk_f32_to_bf16(rest));
                    parts += fabs((double)part);
                    rest -= part;
                }
                exact += (double)row[c] * xv;
                a += fabs((double)row[c]) * parts;
                b += fabs((double)row[c] * xv);
            }
            const double got = y[t * ldy + (r - r0)], want = yr[t * ldy + (r - r0)];
            const double d_ref = fabs(got - want), d_exact = fabs(got - exact);
            if (b > 0 && d_exact / b > worst_rel)
                worst_rel = d_exact / b;
            const double rel = rounds ? split_bound() : 2e-5;
            if (!(!rounds || d_ref <= 2e-5 * a + 1e-30) || !(d_exact <= rel * b + 1e-30)) {
                fprintf(stderr,
                        "%s %lldx%lld rows [%lld,%lld) n=%lld: row %lld t=%lld got %.9g, "
                        "reference %.9g (tol %.3g), exact %.9g (tol %.3g)\n",
                        dsk_dtype_name(m->dtype), (long long)m->rows, (long long)cols,
                        (long long)r0, (long long)r1, (long long)n, (long long)r, (long long)t, got,
                        want, 2e-5 * a, exact, rel * b);
                bad++;
            }
        }
    }
    for (int64_t t = 0; t + 1 < n; t++)
        for (int64_t j = nr; j < ldy; j++)
            if (y[t * ldy + j] != DSI_TEST_SENTINEL && bad++ < 3)
                fprintf(stderr, "padding of y overwritten: t=%lld j=%lld\n", (long long)t,
                        (long long)j);
    DSI_CHECK(bad == 0);
    free(x);
    free(y);
    free(yr);
    free(row);
}

/*
 * Every shape x n = 1..70 (the shapes over 20000 weights: n = 1..6 and both sides of the tiles'
 * edges), the full range of rows and a random sub-range.
 */
static void test_shapes(const dsk_ops_t *ops, dsk_dtype_t dt)
{
    static const int64_t shapes[][2] = {{1, 1},    {3, 7},     {5, 31},    {9, 33},   {17, 47},
                                        {33, 129}, {37, 300},  {31, 16},   {8, 32},   {130, 257},
                                        {64, 520}, {45, 1500}, {70, 2048}, {100, 555}};
    for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
        dsk_matrix_t m = matrix_make(dt, shapes[s][0], shapes[s][1]);
        const int64_t rows = m.rows;
        /* the larger shapes (their reference is slow under ASan) at the tile edges only */
        const int big = rows * m.cols > 20000;
        for (int64_t n = 1; n <= 70; n++) {
            if (big && n > 6 && n != 8 && n != 12 && n != 13 && n != 16 && n != 17 && n != 24 &&
                n != 25 && n != 40 && n != 64 && n != 70)
                continue;
            check_case(ops, &m, 0, rows, n);
            if (rows > 2) {
                int64_t r0 = 1 + (int64_t)(dsi_test_randu() % (uint32_t)(rows / 2));
                int64_t r1 = r0 + 1 + (int64_t)(dsi_test_randu() % (uint32_t)(rows - r0));
                check_case(ops, &m, r0, r1, n);
            }
        }
        matrix_free(&m);
    }
    /* more columns than one chunk of rounded x, at decode and prefill sizes */
    dsk_matrix_t wide = matrix_make(dt, 9, 33000);
    static const int64_t wide_ns[] = {1, 2, 3, 4, 5, 16, 17, 32, 33, 40, 48, 63, 64};
    for (size_t k = 0; k < sizeof(wide_ns) / sizeof(wide_ns[0]); k++)
        check_case(ops, &wide, 1, 9, wide_ns[k]);
    matrix_free(&wide);
    /*
     * The tokens-in-lanes tiles (16-64 tokens): 64 at once where one chunk of columns (4096)
     * covers a row, else blocks of 32 (4097); odd columns (the last one without its partner), a
     * partial last vector of 16 tokens, rows past the last whole tile.
     */
    static const int64_t lane_cols[] = {2047, 4097};
    static const int64_t lane_ns[] = {16, 31, 33, 47, 48, 63, 64};
    for (size_t c = 0; c < sizeof(lane_cols) / sizeof(lane_cols[0]); c++) {
        dsk_matrix_t lm = matrix_make(dt, 29, lane_cols[c]);
        for (size_t k = 0; k < sizeof(lane_ns) / sizeof(lane_ns[0]); k++)
            check_case(ops, &lm, 0, 29, lane_ns[k]);
        check_case(ops, &lm, 2, 27, 64);
        matrix_free(&lm);
    }
    /* more tokens than one block of rounded x (128), with a partial last block */
    dsk_matrix_t big = matrix_make(dt, 75, 700);
    check_case(ops, &big, 3, 74, 130);
    check_case(ops, &big, 0, 75, 300);
    matrix_free(&big);
}

/*
 * Every e4m3 code through the fp8 path, exactly: row r of a 256 x 1 matrix holds code r, x = 1
 * (exact in bf16), so y[r] is the code's value times the block scale with no rounding at all.
 */
static void test_fp8_codes(const dsk_ops_t *ops)
{
    enum { N = 20 };
    uint8_t codes[256];
    for (int i = 0; i < 256; i++)
        codes[i] = (uint8_t)((i & 0x7f) == 0x7f ? 0 : i); /* no NaN codes */
    float scale[2] = {0.75f, 3.0f};
    dsk_matrix_t m = {DSK_DTYPE_F8_E4M3, 256, 1, codes, scale, DSK_LAYOUT_ROWS};
    float x[N], y[N * 256];
    for (int t = 0; t < N; t++)
        x[t] = 1.0f;
    ops->matmul[DSK_DTYPE_F8_E4M3](&m, 0, 256, x, 1, N, y, 256);
    int bad = 0;
    for (int t = 0; t < N; t++)
        for (int r = 0; r < 256; r++) {
            float want = dsk_fp8_e4m3_to_f32(codes[r]) * scale[r / 128];
            if (y[t * 256 + r] != want && bad++ < 3)
                fprintf(stderr, "fp8 code 0x%02x: got %.9g want %.9g\n", codes[r], y[t * 256 + r],
                        want);
        }
    DSI_CHECK(bad == 0);
}

/*
 * An infinite or NaN x through every path (decode tiles, token groups, packed panels): y is the
 * f32 product's inf / NaN, never the NaN of inf - bf16(inf) in the lo part.
 */
static void test_nonfinite(const dsk_ops_t *ops, dsk_dtype_t dt)
{
    enum { ROWS = 5, COLS = 70, N = 20 };
    dsk_matrix_t m = matrix_make(dt, ROWS, COLS);
    float row[ROWS][COLS], x[N * COLS], y[N * ROWS];
    for (int r = 0; r < ROWS; r++)
        dsk_matrix_row_f32(&m, r, row[r]);
    static const int ns[] = {1, 4, 7, N};
    for (size_t k = 0; k < sizeof(ns) / sizeof(ns[0]); k++) {
        const int n = ns[k];
        for (int i = 0; i < n * COLS; i++)
            x[i] = 0.25f + 0.5f * dsi_test_randf();
        for (int t = 0; t < n; t++)
            x[t * COLS + 3 + t] = t % 3 == 2 ? NAN : t % 3 == 1 ? -INFINITY : INFINITY;
        ops->matmul[dt](&m, 0, ROWS, x, COLS, n, y, ROWS);
        int bad = 0;
        for (int t = 0; t < n; t++)
            for (int r = 0; r < ROWS; r++) {
                const float w = row[r][3 + t], got = y[t * ROWS + r];
                const float want = t % 3 == 2 || w == 0      ? NAN
                                   : (t % 3 == 1) == (w < 0) ? INFINITY
                                                             : -INFINITY;
                if ((isnan(want) ? !isnan(got) : got != want) && bad++ < 3)
                    fprintf(stderr, "%s n=%d t=%d row %d: x infinite or NaN, got %g want %g\n",
                            dsk_dtype_name(dt), n, t, r, got, want);
            }
        DSI_CHECK(bad == 0);
    }
    matrix_free(&m);
}

/*
 * --bench: one thread, a cache-resident matrix (rows x 7168, bf16 or fp8), the avx512 slot
 * against the avx512bf16 one, best of 5 runs of 50 ms of thread CPU time each, alternated: the
 * arithmetic's rate, without the memory (dsinfer bench kernels measures the streaming one).
 */
static int bench(void)
{
    dsk_ops_t f32, bf;
    dsk_ops_init_act(&f32, DSK_LEVEL_AVX512, DSK_ACT_F32);
    dsk_ops_init_act(&bf, DSK_LEVEL_AVX512_BF16, DSK_ACT_F32);
    static const int64_t ns[] = {1, 2, 3, 4, 5, 8, 12, 16, 17, 24, 32, 48, 64, 128, 256};
    printf("GFLOP/s, one thread, a cache-resident matrix\n%-6s %-10s %5s %9s %11s %6s\n", "dtype",
           "shape", "n", "avx512", "avx512bf16", "ratio");
    for (int d = 0; d < 2; d++) {
        const dsk_dtype_t dt = d == 0 ? DSK_DTYPE_BF16 : DSK_DTYPE_F8_E4M3;
        const int64_t rows = 64, cols = 7168;
        dsk_matrix_t m = matrix_make(dt, rows, cols);
        float *x = malloc((size_t)(256 * cols) * sizeof(float));
        float *y = malloc((size_t)(256 * rows) * sizeof(float));
        for (int64_t i = 0; i < 256 * cols; i++)
            x[i] = dsi_test_randf();
        for (size_t k = 0; k < sizeof(ns) / sizeof(ns[0]); k++) {
            const double a = dsi_test_matmul_gflops(&f32, &m, x, ns[k], y),
                         b = dsi_test_matmul_gflops(&bf, &m, x, ns[k], y);
            printf("%-6s %lldx%-5lld %5lld %9.1f %11.1f %6.2f\n", dsk_dtype_name(dt),
                   (long long)rows, (long long)cols, (long long)ns[k], a, b, b / a);
        }
        free(x);
        free(y);
        matrix_free(&m);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (!dsk_level_supported(DSK_LEVEL_AVX512_BF16)) {
        printf("SKIPPED: this CPU (%s) lacks AVX512_BF16\n", dsk_level_name(dsk_level_cpu()));
        return 77;
    }
    if (argc > 1 && strcmp(argv[1], "--bench") == 0)
        return bench();
    dsk_ops_t ops;
    dsk_ops_init_act(&ops, DSK_LEVEL_AVX512_BF16, DSK_ACT_F32);
    DSI_CHECK_INT_EQ(ops.level, DSK_LEVEL_AVX512_BF16);
    DSI_CHECK((ops.x_bf16 >> DSK_DTYPE_BF16) & 1);
    DSI_CHECK(((ops.x_bf16 >> DSK_DTYPE_F32) & 1) == 0);
    dsi_test_seed(7);
    test_shapes(&ops, DSK_DTYPE_BF16);
    test_nonfinite(&ops, DSK_DTYPE_BF16);
    printf("bf16: largest |error| / sum |w x| against the f32-x product: %.3g (bound %.3g)\n",
           worst_rel, split_bound());
    if ((ops.x_bf16 >> DSK_DTYPE_F8_E4M3) & 1) {
        worst_rel = 0;
        test_fp8_codes(&ops);
        test_shapes(&ops, DSK_DTYPE_F8_E4M3);
        test_nonfinite(&ops, DSK_DTYPE_F8_E4M3);
        printf("fp8: largest |error| / sum |w x| against the f32-x product: %.3g\n", worst_rel);
    } else {
        printf("fp8: the level keeps f32 x (x_bf16 has no fp8 bit)\n");
    }
    return dsi_test_finish();
}
