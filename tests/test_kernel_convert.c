/*
 * test_kernel_convert.c - fp8 e4m3 and bf16 conversions, exhaustively: the scalar converters
 * against MODEL.md's formula, and every SIMD dequantization path (matmul_t row loads, matmul decode
 * tiles, matmul GEMM packing) against the same values, bit for bit.
 */
#include <stdlib.h>

#include "dsi_test.h"
#include "dsk.h"

/* MODEL.md 3: s eeee mmm, bias 7; e=0: m * 2^-9; e=15, m=7: NaN; else (1 + m/8) * 2^(e-7). */
static double fp8_formula(unsigned v)
{
    int s = (v >> 7) & 1, e = (v >> 3) & 15, m = v & 7;
    double f;
    if (e == 15 && m == 7)
        f = NAN;
    else if (e == 0)
        f = m * pow(2.0, -9);
    else
        f = (1.0 + m / 8.0) * pow(2.0, e - 7);
    return s ? -f : f;
}

static void test_fp8_scalar(void)
{
    int mismatches = 0;
    for (unsigned v = 0; v < 256; v++) {
        double want = fp8_formula(v);
        float got = dsk_fp8_e4m3_to_f32((uint8_t)v);
        if (isnan(want) ? !isnan(got) : (double)got != want || !signbit(got) != !signbit(want)) {
            fprintf(stderr, "fp8 0x%02x: got %.9g want %.9g\n", v, got, want);
            mismatches++;
        }
    }
    DSI_CHECK_INT_EQ(mismatches, 0);
    DSI_CHECK_NEAR(dsk_fp8_e4m3_to_f32(0x7e), 448.0, 0);
    DSI_CHECK_NEAR(dsk_fp8_e4m3_to_f32(0x01), ldexp(1, -9), 0);

    /* f32 -> fp8: every code round-trips; midpoints go to the even code; saturation; NaN. */
    int bad = 0;
    for (unsigned v = 0; v < 256; v++) {
        if ((v & 0x7f) == 0x7f)
            continue;
        if (dsk_f32_to_fp8_e4m3(dsk_fp8_e4m3_to_f32((uint8_t)v)) != v)
            bad++;
    }
    for (unsigned v = 0; v + 1 < 0x7f; v++) {
        float a = dsk_fp8_e4m3_to_f32((uint8_t)v), b = dsk_fp8_e4m3_to_f32((uint8_t)(v + 1));
        float mid = (a + b) / 2; /* exact: both have few mantissa bits */
        unsigned even = (v & 1) ? v + 1 : v;
        if (dsk_f32_to_fp8_e4m3(mid) != even || dsk_f32_to_fp8_e4m3(-mid) != (0x80 | even))
            bad++;
        if (dsk_f32_to_fp8_e4m3(nextafterf(mid, 0)) != v ||
            dsk_f32_to_fp8_e4m3(nextafterf(mid, INFINITY)) != v + 1)
            bad++;
    }
    DSI_CHECK_INT_EQ(bad, 0);
    DSI_CHECK_INT_EQ(dsk_f32_to_fp8_e4m3(1000.0f), 0x7e);
    DSI_CHECK_INT_EQ(dsk_f32_to_fp8_e4m3(-1e30f), 0xfe);
    DSI_CHECK_INT_EQ(dsk_f32_to_fp8_e4m3(NAN) & 0x7f, 0x7f);
}

static void test_bf16_scalar(void)
{
    int bad = 0;
    for (uint32_t v = 0; v < 65536; v++) {
        uint32_t bits = v << 16;
        float want;
        memcpy(&want, &bits, sizeof(want));
        float got = dsk_bf16_to_f32((uint16_t)v);
        if (memcmp(&got, &want, sizeof(got)) != 0)
            bad++;
        if (!isnan(want) && dsk_f32_to_bf16(want) != v)
            bad++;
    }
    DSI_CHECK_INT_EQ(bad, 0);
    DSI_CHECK_INT_EQ(dsk_f32_to_bf16(1.0f + ldexpf(1, -8)), 0x3f80);     /* tie to even: down */
    DSI_CHECK_INT_EQ(dsk_f32_to_bf16(1.0f + 3 * ldexpf(1, -8)), 0x3f82); /* tie to even: up */
    DSI_CHECK_INT_EQ(dsk_f32_to_bf16(1.0f + ldexpf(1, -8) + ldexpf(1, -20)), 0x3f81);
    DSI_CHECK(isnan(dsk_bf16_to_f32(dsk_f32_to_bf16(NAN))));
}

/* Checks y[i * stride] == want[i] exactly for i < n. */
static int count_mismatch(const float *y, int64_t stride, const float *want, int n)
{
    int bad = 0;
    for (int i = 0; i < n; i++) {
        if (y[i * stride] != want[i]) {
            if (bad < 3)
                fprintf(stderr, "  [%d] got %.9g want %.9g\n", i, y[i * stride], want[i]);
            bad++;
        }
    }
    return bad;
}

/* All codes of one dtype as the columns of a [1, n] matrix and the rows of an [n, 1] matrix. */
static void test_simd_codes(const dsk_ops_t *ops, dsk_dtype_t dt, const void *codes,
                            const float *want, int n, float scale)
{
    float scales[2048];
    for (int i = 0; i < 2048; i++)
        scales[i] = scale;
    float *y = calloc((size_t)n * 8, sizeof(float));
    float *ones = malloc((size_t)n * sizeof(float));
    float *want_s = malloc((size_t)n * sizeof(float));
    for (int i = 0; i < n; i++) {
        ones[i] = 1.0f;
        want_s[i] = want[i] * scale;
    }
    const float *sc = dt == DSK_DTYPE_F8_E4M3 ? scales : NULL;
    dsk_matrix_t row = {dt, 1, n, codes, sc, DSK_LAYOUT_ROWS};
    ops->matmul_t[dt](&row, 0, 1, ones, 1, 1, y, n);
    int bad = count_mismatch(y, 1, want_s, n);
    dsk_matrix_t col = {dt, n, 1, codes, sc, DSK_LAYOUT_ROWS};
    for (int64_t tokens = 1; tokens <= 8; tokens += 7) { /* decode tile, then GEMM packing */
        ops->matmul[dt](&col, 0, n, ones, 1, tokens, y, n);
        for (int64_t t = 0; t < tokens; t++)
            bad += count_mismatch(y + t * n, 1, want_s, n);
    }
    if (bad)
        fprintf(stderr, "%s dtype %d scale %g: %d mismatches\n", dsk_level_name(ops->level), dt,
                scale, bad);
    DSI_CHECK_INT_EQ(bad, 0);
    free(y);
    free(ones);
    free(want_s);
}

int main(void)
{
    test_fp8_scalar();
    test_bf16_scalar();

    /* every finite fp8 code (the NaN codes 0x7f/0xff never occur in weights) */
    uint8_t fp8[256];
    float fp8_want[256];
    int n8 = 0;
    for (unsigned v = 0; v < 256; v++) {
        if ((v & 0x7f) == 0x7f)
            continue;
        fp8[n8] = (uint8_t)v;
        fp8_want[n8++] = (float)fp8_formula(v);
    }
    /* every finite bf16 code */
    uint16_t *bf = malloc(65536 * sizeof(uint16_t));
    float *bf_want = malloc(65536 * sizeof(float));
    int nb = 0;
    for (uint32_t v = 0; v < 65536; v++) {
        if (((v >> 7) & 0xff) == 0xff)
            continue;
        bf[nb] = (uint16_t)v;
        bf_want[nb++] = dsk_bf16_to_f32((uint16_t)v);
    }
    for (int l = 0; l <= (int)dsk_level_cpu(); l++) {
        dsk_ops_t ops;
        dsk_ops_init(&ops, (dsk_level_t)l);
        test_simd_codes(&ops, DSK_DTYPE_F8_E4M3, fp8, fp8_want, n8, 1.0f);
        test_simd_codes(&ops, DSK_DTYPE_F8_E4M3, fp8, fp8_want, n8, 0.125f);
        test_simd_codes(&ops, DSK_DTYPE_BF16, bf, bf_want, nb, 1.0f);
    }
    free(bf);
    free(bf_want);
    return dsi_test_finish();
}
