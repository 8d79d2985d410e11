/*
 * test_unit_par_matmul.c - the engine's parallel matmul (dsn_par_matmul): how it splits rows over
 * the pool, and that the split changes nothing.
 *
 * - The grain lets every matrix a V3 decode step reads split over 32 threads at one and at four
 *   tokens: the routed and shared experts (2048 x 7168 gate / up, 7168 x 2048 down), q_a, kv_a.
 *   (A grain of 16 M multiply-adds per chunk once ran each expert matrix on one thread.)
 * - Over a pool of 3 threads, fp8, bf16, int8 and int4 matrices of odd shapes (partial
 *   128-blocks, a row range not starting at 0, padded ldx / ldy) give exactly the rows (the same
 *   bits) the kernel gives in one call, for decode and batch token counts.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dsi_pool.h"
#include "dsi_test.h"
#include "dsk.h"
#include "dsn_engine_impl.h"

static void test_grain_splits_v3_matrices(void)
{
    static const int64_t shapes[][2] = {{2048, 7168}, {7168, 2048}, {1536, 7168}, {576, 7168}};
    static const int64_t tokens[] = {1, 4};
    for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++)
        for (size_t t = 0; t < sizeof(tokens) / sizeof(tokens[0]); t++) {
            int64_t grain = dsn_par_matmul_grain(shapes[s][1], tokens[t]);
            DSI_CHECK(grain >= 8);
            if (shapes[s][0] / grain < 32)
                fprintf(stderr, "%lldx%lld, %lld tokens: grain %lld rows, %lld chunks\n",
                        (long long)shapes[s][0], (long long)shapes[s][1], (long long)tokens[t],
                        (long long)grain, (long long)(shapes[s][0] / grain));
            DSI_CHECK(shapes[s][0] / grain >= 32);
        }
    /* a tiny matrix stays in one chunk */
    DSI_CHECK(dsn_par_matmul_grain(64, 1) >= 64);
}

/* A random matrix of dtype dt (fp8 codes without NaN, or bf16 of random floats) with scales. */
static dsk_matrix_t random_matrix(dsk_dtype_t dt, int64_t rows, int64_t cols)
{
    dsk_matrix_t w;
    memset(&w, 0, sizeof(w));
    w.dtype = dt;
    w.rows = rows;
    w.cols = cols;
    if (dt == DSK_DTYPE_F8_E4M3) {
        uint8_t *d = malloc((size_t)(rows * cols));
        for (int64_t i = 0; i < rows * cols; i++) {
            uint8_t b = (uint8_t)dsi_test_randu();
            d[i] = (b & 0x7f) == 0x7f ? (uint8_t)(b ^ 1) : b;
        }
        int64_t nb = ((rows + 127) / 128) * ((cols + 127) / 128);
        float *sc = malloc((size_t)nb * sizeof(float));
        for (int64_t i = 0; i < nb; i++)
            sc[i] = 1e-3f * (1.0f + 0.5f * dsi_test_randf());
        w.data = d;
        w.scale_inv = sc;
    } else if (dt == DSK_DTYPE_I8 || dt == DSK_DTYPE_I4_G32) {
        /* random f32 quantized by the kernels' quantizer: values, then their scales */
        float *src = malloc((size_t)(rows * cols) * sizeof(float));
        for (int64_t i = 0; i < rows * cols; i++)
            src[i] = dsi_test_randf();
        const size_t vbytes = (size_t)(rows * dsk_dtype_row_bytes(dt, cols));
        char *d = malloc((size_t)dsk_matrix_bytes(dt, rows, cols));
        dsk_quantize_rows(dt, src, cols, rows, cols, d, (float *)(d + vbytes));
        free(src);
        w.data = d;
        w.scale_inv = (float *)(d + vbytes);
    } else {
        uint16_t *d = malloc((size_t)(rows * cols) * sizeof(uint16_t));
        for (int64_t i = 0; i < rows * cols; i++) {
            float f = dsi_test_randf();
            uint32_t u;
            memcpy(&u, &f, sizeof(u));
            d[i] = (uint16_t)(u >> 16);
        }
        w.data = d;
    }
    return w;
}

static void test_split_matches_one_call(dsn_engine_t *e, dsk_dtype_t dt, int64_t rows, int64_t cols)
{
    dsk_matrix_t w = random_matrix(dt, rows, cols);
    static const int64_t tokens[] = {1, 2, 4, 5, 17};
    const int64_t r0 = 3, r1 = rows - 1, ldx = cols + 5, ldy = rows + 7;
    for (size_t k = 0; k < sizeof(tokens) / sizeof(tokens[0]); k++) {
        int64_t n = tokens[k];
        float *x = malloc((size_t)(n * ldx) * sizeof(float));
        float *y_par = calloc((size_t)(n * ldy), sizeof(float));
        float *y_one = calloc((size_t)(n * ldy), sizeof(float));
        for (int64_t i = 0; i < n * ldx; i++)
            x[i] = dsi_test_randf();
        dsn_par_matmul(e, &w, r0, r1, x, ldx, n, y_par, ldy);
        e->ops.matmul[dt](&w, r0, r1, x, ldx, n, y_one, ldy);
        double scale = 0;
        for (int64_t i = 0; i < n * ldy; i++)
            scale = fmax(scale, fabs(y_one[i]));
        dsi_check_floats_near(dsk_dtype_name(dt), y_par, y_one, n * ldy, 0);
        free(x);
        free(y_par);
        free(y_one);
    }
    free((void *)w.data);
    if (dt != DSK_DTYPE_I8 && dt != DSK_DTYPE_I4_G32) /* else in the same block */
        free((void *)w.scale_inv);
}

int main(void)
{
    dsi_test_seed(7);
    test_grain_splits_v3_matrices();

    dsn_engine_t e;
    memset(&e, 0, sizeof(e));
    dsk_ops_init(&e.ops, dsk_level_detect());
    e.pool = dsi_pool_create(3);
    DSI_CHECK(e.pool != NULL);
    if (e.pool != NULL) {
        /* 700 x 515 splits from 2 tokens on, the others from 1 */
        test_split_matches_one_call(&e, DSK_DTYPE_F8_E4M3, 700, 515);
        test_split_matches_one_call(&e, DSK_DTYPE_F8_E4M3, 2050, 1000);
        test_split_matches_one_call(&e, DSK_DTYPE_BF16, 1030, 1100);
        /* int8-activation slots (one chunk a thread), the stored layout */
        test_split_matches_one_call(&e, DSK_DTYPE_I8, 1030, 1100);
        test_split_matches_one_call(&e, DSK_DTYPE_I4_G32, 1030, 1100);
        dsi_pool_destroy(e.pool);
    }
    return dsi_test_finish();
}
