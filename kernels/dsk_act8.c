/*
 * dsk_act8.c - int8 activations for the integer weight dtypes: the quantizer of x, shared by every
 * level so that all of them see the same int8 values, and the scalar reference of the product.
 *
 * The quantizer is built without ISA flags (so no FMA can be contracted into its rounding) and
 * with -O3 (CMakeLists.txt), which vectorizes it with baseline SSE2; a decode product calls it once
 * per token and column chunk, against rows x cols weights.
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "dsk_impl.h"

/* Round to nearest even for |v| < 2^22 (see dsk_quant.c); never build kernels/ with -ffast-math. */
static inline float round_even(float v)
{
    const float m = 0x1.8p23f;
    return (v + m) - m;
}

void dsk_act8_quantize(const float *x, int64_t k, int64_t g, int8_t *q, float *scale, int32_t *sum)
{
    for (int64_t c0 = 0, j = 0; c0 < k; c0 += g, j++) {
        const int64_t m = k - c0 < g ? k - c0 : g;
        float amax = 0.0f;
        int nan = 0;
        for (int64_t i = 0; i < m; i++) {
            float a = x[c0 + i] < 0 ? -x[c0 + i] : x[c0 + i];
            amax = a > amax ? a : amax;
            nan |= a != a;
        }
        const float inv = amax > 0 && amax <= FLT_MAX ? 127.0f / amax : 0.0f;
        int32_t s = 0;
        for (int64_t i = 0; i < m; i++) {
            float v = round_even(x[c0 + i] * inv);
            v = v >= -127.0f ? v : -127.0f; /* also NaN: no undefined conversion below */
            v = v <= 127.0f ? v : 127.0f;
            q[c0 + i] = (int8_t)v;
            s += (int8_t)v;
        }
        scale[j] = nan || !(amax <= FLT_MAX) ? (float)NAN : amax / 127.0f;
        sum[j] = s;
    }
    const int64_t k32 = (k + 31) / 32 * 32;
    memset(q + k, 0, (size_t)(k32 - k));
}

void dsk_matmul_a8_ref(const dsk_matrix_t *w, int64_t r0, int64_t r1, const float *x, int64_t ldx,
                       int64_t n, float *y, int64_t ldy)
{
    const int64_t G = dsk_q_group(w->dtype);
    int8_t qx[128 + 32];
    for (int64_t t = 0; t < n; t++) {
        for (int64_t r = r0; r < r1; r++) {
            float acc = 0.0f;
            for (int64_t c0 = 0; c0 < w->cols; c0 += G) {
                const int64_t m = w->cols - c0 < G ? w->cols - c0 : G;
                float xs;
                int32_t xsum, idot = 0;
                dsk_act8_quantize(x + t * ldx + c0, m, G, qx, &xs, &xsum);
                for (int64_t i = 0; i < m; i++)
                    idot += dsk_q_value(w, r, c0 + i) * qx[i];
                acc += dsk_q_scale(w, r, c0) * xs * (float)idot;
            }
            y[t * ldy + (r - r0)] = acc;
        }
    }
}
