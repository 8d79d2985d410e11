/*
 * test_kernel_act8.c - the int8-activation decode product of the integer weight dtypes (I8,
 * I4_G32, I4_G128) at one level: ACT8_LEVEL, avx2 here; test_kernel_act8_vnni.c includes this file
 * for avx512vnni. Exit 77 (skipped) where the CPU lacks the level.
 *
 * - the activation quantizer: within half a step, scale amax / 127, group sums, zero padding to 32,
 *   all-zero groups, NaN and infinity giving a NaN scale; the AVX2 quantizer bit for bit against
 *   it (random inputs, exact ties, NaN / infinity, zeros, subnormal groups, FLT_MAX);
 * - the scalar reference (dsk_matmul_a8_ref) and the level's matmul slot against an exact double
 *   evaluation of the same integer math, bound 2e-5 * sum_g |w_s x_s| sum |q_w q_x| (only f32
 *   summation differs), on odd shapes: partial groups and int4 chunks, rows not a multiple of the
 *   tile, columns not a multiple of 128 or of the 8192-column chunk, n = 1..4 and, where the
 *   level takes int8 activations for more tokens (ops.a8_n_max: I8 at avx2 up to 64, int4 at
 *   avx512vnni up to 64),
 *   5, 7, 8, 9, 16, 17, 33, 64 (token blocks of 8 and their remainders), rows around the 16-row
 *   and columns around the 1024-column tiles of that path, row sub-ranges, padded ldx / ldy whose
 *   padding must stay untouched;
 * - that exact value against the f32 product within the activation quantization error;
 * - past ops.a8_n_max the f32 path (the dsi_test_matmul bound);
 * - DSINFER_ACT and dsk_ops_init_act choose as documented.
 *
 * `test_kernel_act8 --bench` times the quantizer (reference and AVX2) and the decode product (one
 * thread, thread CPU time) with f32 and int8 activations at V3 shapes; docs/PERFORMANCE.md quotes
 * it.
 */
#include <float.h>
#include <stdlib.h>
#include <string.h>

#include "dsi_clock.h"
#include "dsi_test.h"
#include "dsi_test_matmul.h"
#include "dsk.h"
#include "dsk_impl.h" /* dsk_avx2_act8_quantize */

#ifndef ACT8_LEVEL
#define ACT8_LEVEL DSK_LEVEL_AVX2
#endif

static const dsk_dtype_t qtypes[] = {DSK_DTYPE_I8, DSK_DTYPE_I4_G32, DSK_DTYPE_I4_G128};

static int64_t group_of(dsk_dtype_t dt)
{
    return dt == DSK_DTYPE_I4_G32 ? 32 : 128;
}

static void test_quantizer(void)
{
    static const int64_t lens[] = {1, 5, 31, 32, 33, 100, 127, 128, 129, 300, 1000};
    int8_t q[1024 + 64];
    float x[1024], scale[64];
    int32_t sum[64];
    for (int gi = 0; gi < 2; gi++) {
        const int64_t g = gi ? 128 : 32;
        for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]); l++) {
            const int64_t k = lens[l], ng = (k + g - 1) / g, k32 = (k + 31) / 32 * 32;
            for (int64_t i = 0; i < k; i++)
                x[i] = dsi_test_spread_x();
            if (k > 40)
                memset(x + 3, 0, 37 * sizeof(float)); /* group 1 of 32 inputs is all zero */
            memset(q, 0x55, sizeof(q));
            dsk_act8_quantize(x, k, g, q, scale, sum);
            int bad = 0;
            for (int64_t j = 0; j < ng; j++) {
                const int64_t c0 = j * g, m = k - c0 < g ? k - c0 : g;
                float amax = 0;
                int32_t s = 0;
                for (int64_t i = 0; i < m; i++) {
                    amax = fabsf(x[c0 + i]) > amax ? fabsf(x[c0 + i]) : amax;
                    s += q[c0 + i];
                }
                bad += scale[j] != amax / 127.0f || sum[j] != s;
                for (int64_t i = 0; i < m; i++) {
                    const double err = fabs((double)q[c0 + i] * scale[j] - x[c0 + i]);
                    bad += err > 0.5 * scale[j] * (1 + 1e-6) || q[c0 + i] < -127;
                    bad += fabsf(x[c0 + i]) == amax && amax > 0 && abs(q[c0 + i]) != 127;
                }
            }
            for (int64_t i = k; i < k32; i++)
                bad += q[i] != 0;
            bad += q[k32] != 0x55;
            if (bad)
                fprintf(stderr, "quantize k=%lld g=%lld: %d bad\n", (long long)k, (long long)g,
                        bad);
            DSI_CHECK_INT_EQ(bad, 0);
        }
    }
    /* non-finite inputs: a NaN scale for their group, defined q, other groups unaffected */
    for (int i = 0; i < 96; i++)
        x[i] = 0.5f;
    x[5] = NAN;
    x[40] = INFINITY;
    dsk_act8_quantize(x, 96, 32, q, scale, sum);
    DSI_CHECK(isnan(scale[0]) && isnan(scale[1]) && scale[2] == 0.5f / 127.0f);
    DSI_CHECK(sum[2] == 32 * 127);
}

/* One input set of test_quantizer_simd: kind 0 random, 1-6 with the special values below. */
static void simd_case_x(float *x, int64_t k, int kind)
{
    for (int64_t i = 0; i < k; i++)
        x[i] = dsi_test_spread_x();
    for (int64_t i = 0; i < k; i++) {
        const uint32_t r = dsi_test_randu() % 8;
        if (kind == 1 && r == 0) /* exact ties once the group's amax is 127: inv is 1 */
            x[i] = (float)((int)(dsi_test_randu() % 254) - 127) + 0.5f;
        else if (kind == 1 && i % 32 == 0)
            x[i] = 127.0f;
        else if (kind == 2 && r == 0)
            x[i] = i % 3 ? NAN : i % 2 ? INFINITY : -INFINITY;
        else if (kind == 3)
            x[i] = i % 64 < 32 ? 0.0f : -0.0f; /* all-zero groups */
        else if (kind == 4)
            x[i] *= 1e-40f; /* subnormal: 127 / amax overflows to infinity */
        else if (kind == 5 && r == 0)
            x[i] = i % 2 ? FLT_MAX : -FLT_MAX;
        else if (kind == 6)
            x[i] = (float)((int)(dsi_test_randu() % 255) - 127); /* integers, amax often 127 */
    }
}

/* dsk_avx2_act8_quantize gives every bit of dsk_act8_quantize (q with its padding, scale, sum). */
static void test_quantizer_simd(void)
{
    static const int64_t lens[] = {1, 31, 32, 33, 64, 100, 128, 129, 256, 300, 1000, 7168, 7300};
    enum { KMAX = 7300, PAD = 64 };
    static float x[KMAX];
    static int8_t qa[KMAX + PAD], qb[KMAX + PAD];
    static float sa[KMAX / 32 + 1], sb[KMAX / 32 + 1];
    static int32_t ua[KMAX / 32 + 1], ub[KMAX / 32 + 1];
    int cases = 0, bad = 0;
    for (int gi = 0; gi < 2; gi++) {
        const int64_t g = gi ? 128 : 32;
        for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]); l++) {
            for (int kind = 0; kind <= 6; kind++) {
                const int64_t k = lens[l], ng = (k + g - 1) / g;
                simd_case_x(x, k, kind);
                memset(qa, 0x55, sizeof(qa));
                memset(qb, 0x55, sizeof(qb));
                dsk_act8_quantize(x, k, g, qa, sa, ua);
                dsk_avx2_act8_quantize(x, k, g, qb, sb, ub);
                const int differs = memcmp(qa, qb, sizeof(qa)) != 0 ||
                                    memcmp(sa, sb, (size_t)ng * sizeof(float)) != 0 ||
                                    memcmp(ua, ub, (size_t)ng * sizeof(int32_t)) != 0;
                if (differs)
                    fprintf(stderr, "simd quantizer k=%lld g=%lld kind %d differs\n", (long long)k,
                            (long long)g, kind);
                bad += differs;
                cases++;
            }
        }
    }
    printf("AVX2 quantizer: %d cases, %d differ from the reference\n", cases, bad);
    DSI_CHECK_INT_EQ(bad, 0);
}

typedef struct {
    dsk_matrix_t m;
    void *data;
    float *scale;
    float *dense; /* [rows, cols], W dequantized */
} qmat_t;

static void qmat_make(qmat_t *t, dsk_dtype_t dt, int64_t rows, int64_t cols)
{
    float *src = dsi_test_random_floats(rows * cols);
    t->data = malloc((size_t)(rows * dsk_dtype_row_bytes(dt, cols)) + 1);
    t->scale = malloc((size_t)(rows * dsk_dtype_scale_cols(dt, cols)) * sizeof(float) + 1);
    dsk_quantize_rows(dt, src, cols, rows, cols, t->data, t->scale);
    t->m = (dsk_matrix_t){dt, rows, cols, t->data, t->scale, DSK_LAYOUT_ROWS};
    t->dense = malloc((size_t)(rows * cols) * sizeof(float) + 1);
    for (int64_t r = 0; r < rows; r++)
        dsk_matrix_row_f32(&t->m, r, t->dense + r * cols);
    free(src);
}

static void qmat_free(qmat_t *t)
{
    free(t->data);
    free(t->scale);
    free(t->dense);
}

/* y = W[r0:r1] x for n <= 4 tokens: the reference and the level against exact integer math. */
static void test_product(const dsk_ops_t *ops, const qmat_t *tm, int64_t r0, int64_t r1, int64_t n)
{
    const dsk_matrix_t *m = &tm->m;
    const int64_t K = m->cols, G = group_of(m->dtype), ng = (K + G - 1) / G, nr = r1 - r0;
    const int64_t ldx = K + (int64_t)(dsi_test_randu() % 3);
    const int64_t ldy = nr + (int64_t)(dsi_test_randu() % 3);
    float *x = malloc((size_t)((n - 1) * ldx + K) * sizeof(float));
    for (int64_t i = 0; i < (n - 1) * ldx + K; i++)
        x[i] = dsi_test_spread_x();
    double *exact = malloc((size_t)(n * nr) * sizeof(double));
    double *tol = malloc((size_t)(n * nr) * sizeof(double));
    double *qtol = malloc((size_t)(n * nr) * sizeof(double));
    double *f32 = malloc((size_t)(n * nr) * sizeof(double));
    int8_t *qx = malloc((size_t)(K + 32));
    float *xs = malloc((size_t)ng * sizeof(float));
    int32_t *xsum = malloc((size_t)ng * sizeof(int32_t));
    for (int64_t t = 0; t < n; t++) {
        dsk_act8_quantize(x + t * ldx, K, G, qx, xs, xsum);
        for (int64_t r = r0; r < r1; r++) {
            const float *ws = m->scale_inv + r * ng;
            double e = 0, b = 0, qe = 0, f = 0;
            for (int64_t g = 0; g < ng; g++) {
                int64_t idot = 0, iabs = 0;
                double wabs = 0;
                for (int64_t c = g * G; c < K && c < (g + 1) * G; c++) {
                    /* the q of W[r][c] is its dequantized value over the scale */
                    const float wd = tm->dense[r * K + c];
                    const int64_t qw = ws[g] != 0 ? (int64_t)lrint(wd / ws[g]) : 0;
                    idot += qw * qx[c];
                    iabs += llabs(qw * qx[c]);
                    wabs += fabs(wd);
                    f += (double)wd * x[t * ldx + c];
                }
                const double s = (double)(ws[g] * xs[g]);
                e += s * (double)idot;
                b += fabs(s) * (double)iabs;
                qe += wabs * 0.5 * xs[g];
            }
            exact[t * nr + (r - r0)] = e;
            tol[t * nr + (r - r0)] = 2e-5 * b + 1e-30;
            qtol[t * nr + (r - r0)] = qe * (1 + 1e-4) + 2e-5 * b + 1e-30;
            f32[t * nr + (r - r0)] = f;
        }
    }
    const int64_t ny = (n - 1) * ldy + nr;
    float *y = malloc((size_t)ny * sizeof(float));
    char what[160];
    for (int v = 0; v < 2; v++) {
        for (int64_t i = 0; i < ny; i++)
            y[i] = DSI_TEST_SENTINEL;
        if (v == 0)
            dsk_matmul_a8_ref(m, r0, r1, x, ldx, n, y, ldy);
        else
            ops->matmul[m->dtype](m, r0, r1, x, ldx, n, y, ldy);
        snprintf(what, sizeof(what), "a8 %s %s %lldx%lld rows [%lld,%lld) n=%lld",
                 v ? dsk_level_name(ops->level) : "ref", dsk_dtype_name(m->dtype),
                 (long long)m->rows, (long long)K, (long long)r0, (long long)r1, (long long)n);
        dsi_test_check_y(what, y, exact, tol, n, nr, ldy);
    }
    /* the integer math is the f32 product up to the activations' rounding (half a step each) */
    snprintf(what, sizeof(what), "a8 vs f32 %s %lldx%lld n=%lld", dsk_dtype_name(m->dtype),
             (long long)m->rows, (long long)K, (long long)n);
    for (int64_t i = 0; i < ny; i++)
        y[i] = DSI_TEST_SENTINEL;
    for (int64_t t = 0; t < n; t++)
        for (int64_t j = 0; j < nr; j++)
            y[t * ldy + j] = (float)exact[t * nr + j];
    dsi_test_check_y(what, y, f32, qtol, n, nr, ldy);
    free(x);
    free(exact);
    free(tol);
    free(qtol);
    free(f32);
    free(qx);
    free(xs);
    free(xsum);
    free(y);
}

static void test_switch(void)
{
    dsk_ops_t ops;
    dsk_set_options(NULL, NULL, NULL);
    DSI_CHECK_INT_EQ(dsk_act_detect(), DSK_ACT_I8);
    dsk_set_options(NULL, NULL, "int8");
    DSI_CHECK_INT_EQ(dsk_act_detect(), DSK_ACT_I8);
    dsk_set_options(NULL, NULL, "f32");
    DSI_CHECK_INT_EQ(dsk_act_detect(), DSK_ACT_F32);
    dsk_ops_init(&ops, ACT8_LEVEL);
    DSI_CHECK_INT_EQ(ops.act, DSK_ACT_F32);
    dsk_set_options(NULL, NULL, "bogus");
    DSI_CHECK_INT_EQ(dsk_act_detect(), DSK_ACT_F32);
    /* the library reads no environment: only the option counts */
    setenv("DSINFER_ACT", "f32", 1);
    dsk_set_options(NULL, NULL, NULL);
    DSI_CHECK_INT_EQ(dsk_act_detect(), DSK_ACT_I8);
    unsetenv("DSINFER_ACT");
    dsk_ops_init(&ops, ACT8_LEVEL);
    DSI_CHECK_INT_EQ(ops.act, DSK_ACT_I8);
    DSI_CHECK_INT_EQ(ops.level, ACT8_LEVEL);
    /* the scalar level and plain AVX-512 keep f32 activations */
    dsk_ops_init_act(&ops, DSK_LEVEL_SCALAR, DSK_ACT_I8);
    DSI_CHECK_INT_EQ(ops.act, DSK_ACT_F32);
    if (dsk_level_cpu() >= DSK_LEVEL_AVX512) {
        dsk_ops_init_act(&ops, DSK_LEVEL_AVX512, DSK_ACT_I8);
        DSI_CHECK_INT_EQ(ops.act, DSK_ACT_F32);
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/*
 * GB/s of weight bytes (values + scales) of one thread, median of 5 passes: `hot` repeats one
 * matrix (cache-resident when small), otherwise the pass rotates over copies that together exceed
 * 192 MiB, so every product streams its weights from memory.
 */
static double bench_one(const dsk_ops_t *ops, dsk_dtype_t dt, int64_t rows, int64_t cols, int64_t n,
                        int hot)
{
    const size_t bytes = (size_t)dsk_matrix_bytes(dt, rows, cols);
    const size_t vbytes = (size_t)(rows * dsk_dtype_row_bytes(dt, cols));
    const int copies = hot ? 1 : (int)((192u << 20) / bytes + 1);
    const int per_pass = hot ? (int)((256u << 20) / bytes / (size_t)n + 1) : copies;
    qmat_t base;
    qmat_make(&base, dt, rows, cols);
    char **mem = malloc((size_t)copies * sizeof(char *));
    dsk_matrix_t *ms = malloc((size_t)copies * sizeof(dsk_matrix_t));
    for (int c = 0; c < copies; c++) {
        mem[c] = malloc(bytes);
        memcpy(mem[c], base.data, vbytes);
        memcpy(mem[c] + vbytes, base.scale, bytes - vbytes);
        ms[c] = (dsk_matrix_t){
            dt, rows, cols, mem[c], (const float *)(mem[c] + vbytes), DSK_LAYOUT_ROWS};
    }
    float *x = dsi_test_random_floats(n * cols), *y = malloc((size_t)(n * rows) * sizeof(float));
    double t[5];
    for (int rep = 0; rep < 5; rep++) {
        double t0 = dsi_thread_cpu_s();
        for (int i = 0; i < per_pass; i++)
            ops->matmul[dt](&ms[i % copies], 0, rows, x, cols, n, y, rows);
        t[rep] = (double)bytes * per_pass / (dsi_thread_cpu_s() - t0) / 1e9;
    }
    qsort(t, 5, sizeof(double), cmp_double);
    for (int c = 0; c < copies; c++)
        free(mem[c]);
    free(mem);
    free(ms);
    free(x);
    free(y);
    qmat_free(&base);
    return t[2];
}

/* Microseconds per quantization of 7168 inputs in groups of g, median of 5 runs of 2000. */
static double bench_quantize(void (*quantize)(const float *, int64_t, int64_t, int8_t *, float *,
                                              int32_t *),
                             int64_t g)
{
    enum { K = 7168, CALLS = 2000 };
    static int8_t q[K + 32];
    static float scale[K / 32];
    static int32_t sum[K / 32];
    float *x = dsi_test_random_floats(K);
    double t[5];
    for (int rep = 0; rep < 5; rep++) {
        double t0 = dsi_thread_cpu_s();
        for (int i = 0; i < CALLS; i++)
            quantize(x, K, g, q, scale, sum);
        t[rep] = (dsi_thread_cpu_s() - t0) / CALLS * 1e6;
    }
    qsort(t, 5, sizeof(double), cmp_double);
    free(x);
    return t[2];
}

static int bench(void)
{
    printf("quantize 7168 inputs, one thread (us, thread CPU time, median of 5):\n");
    for (int64_t g = 32; g <= 128; g *= 4)
        printf("  groups of %lld: reference %.2f, AVX2 %.2f\n", (long long)g,
               bench_quantize(dsk_act8_quantize, g), bench_quantize(dsk_avx2_act8_quantize, g));
    dsk_ops_t f32, a8;
    dsk_ops_init_act(&f32, ACT8_LEVEL, DSK_ACT_F32);
    dsk_ops_init_act(&a8, ACT8_LEVEL, DSK_ACT_I8);
    /* 64 x 7168: one thread's share of a V3 expert matrix split over 32 threads */
    static const int64_t shapes[][3] = {
        {512, 2048, 1}, {64, 7168, 1}, {7168, 2048, 0}, {2048, 7168, 0}};
    printf("level %s, one thread, GB/s of weight bytes (thread CPU time, median of 5)\n",
           dsk_level_name(a8.level));
    printf(
        "| dtype | shape | batch | f32 act | int8 act | speed-up |\n|---|---|---|---|---|---|\n");
    for (size_t d = 0; d < sizeof(qtypes) / sizeof(qtypes[0]); d++) {
        for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
            static const int64_t bn[] = {1, 4, 16, 64};
            for (size_t k = 0; k < sizeof(bn) / sizeof(bn[0]); k++) {
                const int64_t R = shapes[s][0], C = shapes[s][1], n = bn[k];
                if (n > 4 && !shapes[s][2])
                    continue; /* cached shapes only: the streamed ones take minutes */
                double gf = bench_one(&f32, qtypes[d], R, C, n, (int)shapes[s][2]);
                double ga = bench_one(&a8, qtypes[d], R, C, n, (int)shapes[s][2]);
                printf("| %s | %lldx%lld%s | %lld | %.2f | %.2f | %.2fx |\n",
                       dsk_dtype_name(qtypes[d]), (long long)R, (long long)C,
                       shapes[s][2] ? " (cached)" : "", (long long)n, gf, ga, ga / gf);
                fflush(stdout);
            }
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (dsk_level_cpu() < ACT8_LEVEL) {
        printf("skipped: this CPU (%s) lacks level %s\n", dsk_level_name(dsk_level_cpu()),
               dsk_level_name(ACT8_LEVEL));
        return 77;
    }
#ifdef ACT8_AMX
    if (!dsk_amx_available()) {
        fprintf(stderr, "SKIPPED: no AMX here (CPUID AMX-TILE / AMX-INT8, XCR0 tile state or the "
                        "kernel's arch_prctl permission missing): the AMX kernels were NOT run\n");
        return 77;
    }
#endif
    dsi_test_seed(11);
    if (argc > 1 && strcmp(argv[1], "--bench") == 0)
        return bench();
    test_switch();
    dsk_ops_t ops;
    dsk_ops_init_act(&ops, ACT8_LEVEL, DSK_ACT_I8);
    DSI_CHECK_INT_EQ(ops.act, DSK_ACT_I8);
#ifdef ACT8_AMX
    DSI_CHECK_INT_EQ(ops.amx, 1);
#endif
    printf("level %s, int8 activations%s\n", dsk_level_name(ops.level), ops.amx ? ", AMX" : "");
    test_quantizer();
    test_quantizer_simd();

    static const int64_t shapes[][2] = {{1, 1},
                                        {3, 7},
                                        {37, 300},
                                        {5, 33},
                                        {9, 48},
                                        {130, 257},
                                        {17, 128},
                                        {11, 1000},
                                        {7, 129},
                                        {2, 16},
                                        {6, 8200},
                                        {3, 16500},
                                        {13, 160},
                                        {50, 2000},
                                        /* the 16-row, 1024-column tiles of the int4 VNNI path */
                                        {16, 1024},
                                        {15, 1056},
                                        {17, 2080},
                                        {33, 96},
                                        {31, 1025}};
    for (size_t d = 0; d < sizeof(qtypes) / sizeof(qtypes[0]); d++) {
        for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
            const int64_t rows = shapes[s][0];
            qmat_t tm;
            qmat_make(&tm, qtypes[d], rows, shapes[s][1]);
            /* every n up to 4, then odd and whole token blocks up to the level's int8 limit */
            static const int64_t ns[] = {1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 33, 64, 65, 130};
            const int64_t n_max = ops.a8_n_max[qtypes[d]];
            DSI_CHECK(n_max >= 4);
            for (size_t k = 0; k < sizeof(ns) / sizeof(ns[0]) && ns[k] <= n_max; k++) {
                const int64_t n = ns[k];
                if (n > 9 && rows * shapes[s][1] > 200000)
                    continue; /* the exact double evaluation is slow */
                test_product(&ops, &tm, 0, rows, n);
                if (rows > 2) {
                    int64_t r0 = 1 + (int64_t)(dsi_test_randu() % (uint32_t)(rows / 2));
                    int64_t r1 = r0 + 1 + (int64_t)(dsi_test_randu() % (uint32_t)(rows - r0));
                    test_product(&ops, &tm, r0, r1, n);
                }
            }
            /* past the int8 limit the f32 path: token groups up to 16, then the GEMM */
            if (n_max < DSK_A8_N_ANY) {
                dsi_test_matmul_case(&ops, 1, &tm.m, tm.dense, 0, rows, n_max + 1);
                if (n_max < 9)
                    dsi_test_matmul_case(&ops, 1, &tm.m, tm.dense, 0, rows, 9);
                dsi_test_matmul_case(&ops, 1, &tm.m, tm.dense, 0, rows, n_max + 13);
            }
            qmat_free(&tm);
        }
    }
    return dsi_test_finish();
}
