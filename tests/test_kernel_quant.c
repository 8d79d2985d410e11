/*
 * test_kernel_quant.c - the re-quantized weight formats (int8, int4 in groups of 32 and 128) and
 * the quantizers behind them.
 *
 * 1. dsk_quantize_rows: the integer layouts decode (through the scalar dsk_matrix_row_f32) to
 *    within half a quantization step of the input (a full step for int4's clamped top value),
 *    scales per group, int4 padding nibbles are q = 0; fp8 bands and bf16 round-trip.
 * 2. The fast f32 -> fp8 encoder against a brute-force nearest-even search over all 127 codes.
 * 3. matmul / matmul_t of every level this CPU runs against a double product of the dequantized
 *    rows, on random matrices of odd sizes (partial groups, partial int4 chunks, rows not a
 *    multiple of any tile), sub-ranges, padded ldx / ldy with sentinels, n from 1 to 64.
 * 4. The row_f32 slot of every level is bit-identical to dsk_matrix_row_f32.
 * Buffers are allocated to their exact extent so that ASan sees any read past them.
 */
#include <stdlib.h>

#include "dsi_test.h"
#include "dsi_test_matmul.h"
#include "dsk.h"

static const dsk_dtype_t qtypes[] = {DSK_DTYPE_I8, DSK_DTYPE_I4_G32, DSK_DTYPE_I4_G128};
#define N_QTYPES 3

typedef struct {
    dsk_matrix_t m;
    void *data;
    float *scale;
    float *src;   /* rows * cols: the f32 values that were quantized */
    float *dense; /* rows * cols: the dequantized values */
} qmatrix_t;

static int64_t group_of(dsk_dtype_t dt)
{
    return dt == DSK_DTYPE_I4_G32 ? 32 : 128;
}

/* Random weights with a spread of magnitudes per row, quantized into dt. */
static void qmatrix_make(qmatrix_t *t, dsk_dtype_t dt, int64_t rows, int64_t cols)
{
    memset(t, 0, sizeof(*t));
    size_t n = (size_t)(rows * cols);
    t->src = malloc((n ? n : 1) * sizeof(float));
    for (int64_t r = 0; r < rows; r++) {
        float mag = ldexpf(1.0f, -(int)(dsi_test_randu() % 10));
        for (int64_t c = 0; c < cols; c++)
            t->src[r * cols + c] = mag * dsi_test_randf();
    }
    size_t db = (size_t)(rows * dsk_dtype_row_bytes(dt, cols));
    size_t sb = (size_t)(rows * dsk_dtype_scale_cols(dt, cols));
    t->data = malloc(db ? db : 1);
    t->scale = malloc((sb ? sb : 1) * sizeof(float));
    dsk_quantize_rows(dt, t->src, cols, rows, cols, t->data, t->scale);
    t->m = (dsk_matrix_t){dt, rows, cols, t->data, t->scale, DSK_LAYOUT_ROWS};
    t->dense = malloc((n ? n : 1) * sizeof(float));
    for (int64_t r = 0; r < rows; r++)
        dsk_matrix_row_f32(&t->m, r, t->dense + r * cols);
}

static void qmatrix_free(qmatrix_t *t)
{
    free(t->data);
    free(t->scale);
    free(t->src);
    free(t->dense);
}

/* Quantization error bounds, the layout's padding, and the sizes. */
static void test_quantize(dsk_dtype_t dt, int64_t rows, int64_t cols)
{
    qmatrix_t t;
    qmatrix_make(&t, dt, rows, cols);
    const int64_t g = group_of(dt), ng = (cols + g - 1) / g;
    DSI_CHECK_INT_EQ(dsk_dtype_scale_cols(dt, cols), ng);
    DSI_CHECK_INT_EQ(dsk_matrix_bytes(dt, rows, cols),
                     rows * dsk_dtype_row_bytes(dt, cols) + rows * ng * 4);
    int bad = 0;
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t k = 0; k < ng; k++) {
            float amax = 0;
            for (int64_t c = k * g; c < cols && c < (k + 1) * g; c++)
                amax = fmaxf(amax, fabsf(t.src[r * cols + c]));
            const float s = fabsf(t.scale[r * ng + k]);
            /* int8: amax / 127; int4: amax / 8 */
            const float want = amax / (dt == DSK_DTYPE_I8 ? 127.0f : 8.0f);
            if (fabsf(s - want) > 1e-6f * want) {
                if (bad++ < 3)
                    fprintf(stderr, "%s row %lld group %lld: scale %g, want %g\n",
                            dsk_dtype_name(dt), (long long)r, (long long)k, s, want);
            }
            for (int64_t c = k * g; c < cols && c < (k + 1) * g; c++) {
                /* Half a step; a full step for int4's +8 end, which clamps to +7. */
                float tol = (dt == DSK_DTYPE_I8 ? 0.5f : 1.0f) * s * 1.0001f + 1e-30f;
                float d = fabsf(t.dense[r * cols + c] - t.src[r * cols + c]);
                if (!(d <= tol) && bad++ < 3)
                    fprintf(stderr, "%s %lldx%lld [%lld][%lld]: %g -> %g (step %g)\n",
                            dsk_dtype_name(dt), (long long)rows, (long long)cols, (long long)r,
                            (long long)c, t.src[r * cols + c], t.dense[r * cols + c], s);
            }
        }
        if (dt != DSK_DTYPE_I8) { /* padding of the last chunk: nibble 8 (q = 0) */
            const uint8_t *row = (const uint8_t *)t.data + r * dsk_dtype_row_bytes(dt, cols);
            for (int64_t c = cols; c < (cols + 31) / 32 * 32; c++) {
                uint8_t b = row[(c / 32) * 16 + c % 16];
                int nib = (c % 32) < 16 ? b & 15 : b >> 4;
                if (nib != 8 && bad++ < 3)
                    fprintf(stderr, "%s: padding input %lld holds nibble %d\n", dsk_dtype_name(dt),
                            (long long)c, nib);
            }
        }
    }
    DSI_CHECK_INT_EQ(bad, 0);
    qmatrix_free(&t);
}

/* Known values: one group of int4 with its largest magnitude negative and positive. */
static void test_quantize_exact(void)
{
    float src[40];
    for (int i = 0; i < 40; i++)
        src[i] = (float)(i % 16) - 8.0f; /* -8 .. 7: exactly representable with scale 1 */
    uint8_t q[32];
    float sc[2];
    dsk_quantize_rows(DSK_DTYPE_I4_G32, src, 40, 1, 40, q, sc);
    DSI_CHECK_NEAR(sc[0], 1.0, 0);
    dsk_matrix_t m = {DSK_DTYPE_I4_G32, 1, 40, q, sc, DSK_LAYOUT_ROWS};
    float out[40];
    dsk_matrix_row_f32(&m, 0, out);
    dsi_check_floats_near("int4 exact values", out, src, 40, 0);
    /* low nibble = input j, high nibble = input 16 + j */
    DSI_CHECK_INT_EQ(q[0], (uint8_t)((src[0] + 8) + 16 * (src[16] + 8)));
    DSI_CHECK_INT_EQ(q[5], (uint8_t)((src[5] + 8) + 16 * (src[21] + 8)));
    /* int8: 127 levels */
    float s8[3] = {-1.0f, 0.5f, 1.0f};
    int8_t q8[3];
    float sc8;
    dsk_quantize_rows(DSK_DTYPE_I8, s8, 3, 1, 3, q8, &sc8);
    DSI_CHECK_INT_EQ(q8[0], -127);
    DSI_CHECK_INT_EQ(q8[1], 64); /* 63.5 rounds to even */
    DSI_CHECK_INT_EQ(q8[2], 127);
    /* an all-zero group: scale 0, values 0, no NaN */
    float z[128] = {0};
    int8_t qz[128];
    float scz = -1;
    dsk_quantize_rows(DSK_DTYPE_I8, z, 128, 1, 128, qz, &scz);
    DSI_CHECK(scz == 0.0f && qz[0] == 0 && qz[127] == 0);
}

/* Brute force: the nearest of the 127 non-negative finite codes, ties to the even code. */
static uint8_t fp8_brute(float v)
{
    if (isnan(v))
        return 0x7f;
    uint8_t sign = signbit(v) ? 0x80 : 0;
    float a = fabsf(v);
    if (a >= 448.0f)
        return sign | 0x7e;
    uint8_t best = 0;
    float best_err = INFINITY;
    for (int code = 0; code < 0x7f; code++) {
        float err = fabsf(dsk_fp8_e4m3_to_f32((uint8_t)code) - a);
        if (err < best_err || (err == best_err && (code & 1) == 0)) {
            best_err = err;
            best = (uint8_t)code;
        }
    }
    return sign | best;
}

static void test_fp8_encode(void)
{
    int bad = 0;
    /* every code, the midpoints between neighbours (ties) and just around them */
    for (int code = 0; code < 0x7e; code++) {
        float a = dsk_fp8_e4m3_to_f32((uint8_t)code), b = dsk_fp8_e4m3_to_f32((uint8_t)(code + 1));
        float probes[5] = {a, 0.5f * (a + b), nextafterf(0.5f * (a + b), 0),
                           nextafterf(0.5f * (a + b), 1e9f), -a};
        for (int i = 0; i < 5; i++)
            bad += dsk_f32_to_fp8_e4m3(probes[i]) != fp8_brute(probes[i]);
    }
    for (int i = 0; i < 200000; i++) {
        float v = ldexpf(dsi_test_randf(), (int)(dsi_test_randu() % 30) - 20);
        if (dsk_f32_to_fp8_e4m3(v) != fp8_brute(v) && bad++ < 3)
            fprintf(stderr, "fp8(%g): %#x, brute force %#x\n", v, dsk_f32_to_fp8_e4m3(v),
                    fp8_brute(v));
    }
    float specials[] = {0.0f, -0.0f, 448.0f, 449.0f, 1e30f, -INFINITY, 1e-30f, 0x1p-10f};
    for (size_t i = 0; i < sizeof(specials) / sizeof(specials[0]); i++)
        bad += dsk_f32_to_fp8_e4m3(specials[i]) != fp8_brute(specials[i]);
    DSI_CHECK_INT_EQ(dsk_f32_to_fp8_e4m3(NAN), 0x7f);
    DSI_CHECK_INT_EQ(bad, 0);
}

/* fp8 band and bf16 through dsk_quantize_rows. */
static void test_quantize_fp8_bf16(void)
{
    enum { R = 130, C = 200 };
    float *src = malloc(R * C * sizeof(float));
    for (int i = 0; i < R * C; i++)
        src[i] = ldexpf(dsi_test_randf(), -(i / C) % 7);
    uint8_t *q = malloc(R * C);
    float sc[2 * 2];
    dsk_quantize_rows(DSK_DTYPE_F8_E4M3, src, C, 128, C, q, sc);
    dsk_quantize_rows(DSK_DTYPE_F8_E4M3, src + 128 * C, C, R - 128, C, q + 128 * C, sc + 2);
    dsk_matrix_t m = {DSK_DTYPE_F8_E4M3, R, C, q, sc, DSK_LAYOUT_ROWS};
    float row[C];
    int bad = 0;
    for (int r = 0; r < R; r++) {
        dsk_matrix_row_f32(&m, r, row);
        for (int c = 0; c < C; c++) {
            /* 3 mantissa bits: relative error <= 2^-4, plus the subnormal step of the block */
            float tol = fabsf(src[r * C + c]) / 16.0f + sc[(r / 128) * 2 + c / 128] * 0x1p-10f;
            if (!(fabsf(row[c] - src[r * C + c]) <= tol) && bad++ < 3)
                fprintf(stderr, "fp8 [%d][%d]: %g -> %g\n", r, c, src[r * C + c], row[c]);
        }
    }
    DSI_CHECK_INT_EQ(bad, 0);
    uint16_t *b = malloc(R * C * sizeof(uint16_t));
    dsk_quantize_rows(DSK_DTYPE_BF16, src, C, R, C, b, NULL);
    for (int i = 0; i < R * C; i++)
        bad += b[i] != dsk_f32_to_bf16(src[i]);
    DSI_CHECK_INT_EQ(bad, 0);
    free(src);
    free(q);
    free(b);
}

/* The row_f32 slot of every level against the scalar dequantization, bit for bit. */
static void test_row_f32(const dsk_ops_t *levels, int n_levels, const qmatrix_t *tm)
{
    const int64_t cols = tm->m.cols;
    float *row = malloc((size_t)(cols > 0 ? cols : 1) * sizeof(float));
    for (int l = 0; l < n_levels; l++) {
        int bad = 0;
        for (int64_t r = 0; r < tm->m.rows; r++) {
            levels[l].row_f32[tm->m.dtype](&tm->m, r, row);
            bad += memcmp(row, tm->dense + r * cols, (size_t)cols * sizeof(float)) != 0;
        }
        if (bad)
            fprintf(stderr, "row_f32 %s %s %lldx%lld: %d rows differ\n",
                    dsk_level_name(levels[l].level), dsk_dtype_name(tm->m.dtype),
                    (long long)tm->m.rows, (long long)cols, bad);
        DSI_CHECK_INT_EQ(bad, 0);
    }
    free(row);
}

int main(void)
{
    dsk_ops_t levels[DSK_LEVEL_COUNT];
    int n_levels = 0;
    for (int l = 0; l <= (int)dsk_level_cpu(); l++)
        /* f32 activations: the 2e-5 bound below is that contract; the int8-activation decode
         * slots are checked against their own reference in test_kernel_act8.c */
        dsk_ops_init_act(&levels[n_levels++], (dsk_level_t)l, DSK_ACT_F32);
    printf("levels tested: %d (cpu: %s)\n", n_levels, dsk_level_name(dsk_level_cpu()));
    dsi_test_seed(7);

    test_quantize_exact();
    test_fp8_encode();
    test_quantize_fp8_bf16();

    /* {50, 2000}: tiles of strided rows (dsk_tile_row_stride) */
    static const int64_t shapes[][2] = {{1, 1},     {3, 7},    {37, 300}, {576, 96}, {130, 257},
                                        {17, 128},  {64, 520}, {33, 129}, {5, 33},   {9, 48},
                                        {11, 1000}, {2, 16},   {50, 2000}};
    static const int64_t ns[] = {1, 2, 3, 4, 5, 8, 16, 17, 64};
    for (int q = 0; q < N_QTYPES; q++) {
        const dsk_dtype_t dt = qtypes[q];
        for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
            test_quantize(dt, shapes[s][0], shapes[s][1]);
            qmatrix_t tm;
            qmatrix_make(&tm, dt, shapes[s][0], shapes[s][1]);
            test_row_f32(levels, n_levels, &tm);
            for (size_t k = 0; k < sizeof(ns) / sizeof(ns[0]); k++)
                dsi_test_matmul_ranges(levels, n_levels, &tm.m, tm.dense, ns[k]);
            qmatrix_free(&tm);
        }
        /* prefill: more than one packed panel of columns and of rows */
        qmatrix_t big;
        qmatrix_make(&big, dt, 300, 600);
        dsi_test_matmul_case(levels, n_levels, &big.m, big.dense, 5, 290, 40);
        dsi_test_matmul_t_case(levels, n_levels, &big.m, big.dense, 3, 299, 30);
        qmatrix_free(&big);
    }
    /* the checkpoint dtypes' row_f32 slots too */
    for (int dt = DSK_DTYPE_BF16; dt <= DSK_DTYPE_F8_E4M3; dt++) {
        qmatrix_t tm;
        memset(&tm, 0, sizeof(tm));
        const int64_t R = 130, C = 257;
        tm.src = dsi_test_random_floats(R * C);
        tm.data = malloc((size_t)(R * dsk_dtype_row_bytes((dsk_dtype_t)dt, C)));
        tm.scale = malloc((size_t)(2 * 3) * sizeof(float));
        dsk_quantize_rows((dsk_dtype_t)dt, tm.src, C, dt == DSK_DTYPE_BF16 ? R : 128, C, tm.data,
                          tm.scale);
        if (dt == DSK_DTYPE_F8_E4M3)
            dsk_quantize_rows((dsk_dtype_t)dt, tm.src + 128 * C, C, R - 128, C,
                              (uint8_t *)tm.data + 128 * C, tm.scale + 3);
        tm.m = (dsk_matrix_t){
            (dsk_dtype_t)dt, R, C, tm.data, dt == DSK_DTYPE_F8_E4M3 ? tm.scale : NULL,
            DSK_LAYOUT_ROWS};
        tm.dense = malloc((size_t)(R * C) * sizeof(float));
        for (int64_t r = 0; r < R; r++)
            dsk_matrix_row_f32(&tm.m, r, tm.dense + r * C);
        test_row_f32(levels, n_levels, &tm);
        qmatrix_free(&tm);
    }
    return dsi_test_finish();
}
