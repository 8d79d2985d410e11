/*
 * dsk_ref.c - the scalar reference kernels: plain loops, double accumulation where it is free,
 * written to be read. Every SIMD variant is tested against these.
 */
#include <math.h>

#include "dsk_impl.h"

/* W[r][c] dequantized (block scale included). */
static float weight_at(const dsk_matrix_t *w, int64_t r, int64_t c)
{
    int64_t i = r * w->cols + c;
    switch (w->dtype) {
    case DSK_DTYPE_F32:
        return ((const float *)w->data)[i];
    case DSK_DTYPE_BF16:
        return dsk_bf16_to_f32(((const uint16_t *)w->data)[i]);
    case DSK_DTYPE_F8_E4M3:
        return dsk_fp8_e4m3_to_f32(((const uint8_t *)w->data)[i]) * dsk_block_scale(w, r, c);
    case DSK_DTYPE_I8:
    case DSK_DTYPE_I4_G32:
    case DSK_DTYPE_I4_G128:
        return (float)dsk_q_value(w, r, c) * dsk_q_scale(w, r, c);
    default:
        return NAN;
    }
}

void dsk_matmul_ref(const dsk_matrix_t *w, int64_t r0, int64_t r1, const float *x, int64_t ldx,
                    int64_t n, float *y, int64_t ldy)
{
    for (int64_t t = 0; t < n; t++) {
        for (int64_t r = r0; r < r1; r++) {
            double acc = 0;
            for (int64_t c = 0; c < w->cols; c++)
                acc += (double)weight_at(w, r, c) * x[t * ldx + c];
            y[t * ldy + (r - r0)] = (float)acc;
        }
    }
}

void dsk_matmul_t_ref(const dsk_matrix_t *w, int64_t r0, int64_t r1, const float *x, int64_t ldx,
                      int64_t n, float *y, int64_t ldy)
{
    for (int64_t t = 0; t < n; t++) {
        for (int64_t c = 0; c < w->cols; c++) {
            double acc = 0;
            for (int64_t r = r0; r < r1; r++)
                acc += (double)weight_at(w, r, c) * x[t * ldx + (r - r0)];
            y[t * ldy + c] += (float)acc;
        }
    }
}

/* The stored weight of dsk_matmul_bf16x_ref: the bf16 value, or the e4m3 value without scale. */
static float weight_unscaled(const dsk_matrix_t *w, int64_t r, int64_t c)
{
    int64_t i = r * w->cols + c;
    if (w->dtype == DSK_DTYPE_BF16)
        return dsk_bf16_to_f32(((const uint16_t *)w->data)[i]);
    return dsk_fp8_e4m3_to_f32(((const uint8_t *)w->data)[i]);
}

void dsk_matmul_bf16x_ref(const dsk_matrix_t *w, int64_t r0, int64_t r1, const float *x,
                          int64_t ldx, int64_t n, float *y, int64_t ldy)
{
    for (int64_t t = 0; t < n; t++) {
        for (int64_t r = r0; r < r1; r++) {
            float total = 0.0f;
            for (int64_t c0 = 0; c0 < w->cols; c0 += DSK_FP8_BLOCK) {
                float block = 0.0f;
                for (int64_t c = c0; c < w->cols && c < c0 + DSK_FP8_BLOCK; c++) {
                    /* x split into bf16 parts, each the rest rounded (a NaN rest: 0); every
                       factor has 8 significant bits, so each product is exact in f32 */
                    const float wv = weight_unscaled(w, r, c);
                    float rest = x[t * ldx + c];
                    for (int p = 0; p < DSK_BF16X_PARTS; p++) {
                        const float part = dsk_bf16_to_f32(dsk_f32_to_bf16(rest));
                        block += wv * part;
                        rest -= part;
                        rest = rest == rest ? rest : 0.0f;
                    }
                }
                total += block * dsk_block_scale(w, r, c0);
            }
            y[t * ldy + (r - r0)] = total;
        }
    }
}

static float dot_ref(const float *a, const float *b, int64_t n)
{
    double acc = 0;
    for (int64_t i = 0; i < n; i++)
        acc += (double)a[i] * b[i];
    return (float)acc;
}

static void axpy_ref(float a, const float *x, float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] += a * x[i];
}

static void rmsnorm_ref(const float *x, const float *w, int64_t n, float eps, float *out)
{
    double ss = 0;
    for (int64_t i = 0; i < n; i++)
        ss += (double)x[i] * x[i];
    float inv = (float)(1.0 / sqrt(ss / (double)n + eps));
    for (int64_t i = 0; i < n; i++)
        out[i] = w[i] * (x[i] * inv);
}

static void silu_mul_ref(const float *gate, const float *up, int64_t n, float *out)
{
    for (int64_t i = 0; i < n; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

static void softmax_ref(float *x, int64_t n)
{
    float max = -INFINITY;
    for (int64_t i = 0; i < n; i++)
        max = x[i] > max ? x[i] : max;
    double sum = 0;
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - max);
        sum += x[i];
    }
    float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; i++)
        x[i] *= inv;
}

void dsk_ops_fill_ref(dsk_ops_t *ops)
{
    for (int d = 0; d < DSK_DTYPE_COUNT; d++) {
        ops->matmul[d] = dsk_matmul_ref;
        ops->matmul_t[d] = dsk_matmul_t_ref;
        ops->row_f32[d] = dsk_matrix_row_f32;
    }
    ops->dot = dot_ref;
    ops->axpy = axpy_ref;
    ops->rmsnorm = rmsnorm_ref;
    ops->silu_mul = silu_mul_ref;
    ops->softmax = softmax_ref;
}
