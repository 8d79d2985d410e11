/*
 * dsk_quant.c - storage sizes of every weight dtype and the quantizers that make the
 * re-quantized formats (int8, int4, and fp8 / bf16 from another format) from f32 rows.
 * Scalar code written for the compiler to vectorize (built with -O3, see CMakeLists.txt); it
 * runs once per weight at load.
 */
#include <math.h>
#include <string.h>

#include "dsk_impl.h"

static const char *dtype_names[DSK_DTYPE_COUNT] = {"f32",  "bf16",     "fp8",
                                                   "int8", "int4-g32", "int4-g128"};

const char *dsk_dtype_name(dsk_dtype_t dt)
{
    return (unsigned)dt < DSK_DTYPE_COUNT ? dtype_names[dt] : "?";
}

int64_t dsk_dtype_row_bytes(dsk_dtype_t dt, int64_t cols)
{
    switch (dt) {
    case DSK_DTYPE_F32:
        return cols * 4;
    case DSK_DTYPE_BF16:
        return cols * 2;
    case DSK_DTYPE_F8_E4M3:
    case DSK_DTYPE_I8:
        return cols;
    case DSK_DTYPE_I4_G32:
    case DSK_DTYPE_I4_G128:
        return (cols + DSK_Q4_CHUNK - 1) / DSK_Q4_CHUNK * 16;
    default:
        return 0;
    }
}

int64_t dsk_dtype_scale_rows(dsk_dtype_t dt)
{
    if (dt == DSK_DTYPE_F8_E4M3)
        return DSK_FP8_BLOCK;
    return dsk_q_group(dt) > 0 ? 1 : 0;
}

int64_t dsk_dtype_scale_cols(dsk_dtype_t dt, int64_t cols)
{
    int64_t g = dt == DSK_DTYPE_F8_E4M3 ? DSK_FP8_BLOCK : dsk_q_group(dt);
    return g > 0 ? (cols + g - 1) / g : 0;
}

uint64_t dsk_matrix_bytes(dsk_dtype_t dt, int64_t rows, int64_t cols)
{
    uint64_t b = (uint64_t)rows * (uint64_t)dsk_dtype_row_bytes(dt, cols);
    int64_t sr = dsk_dtype_scale_rows(dt);
    if (sr > 0)
        b += (uint64_t)((rows + sr - 1) / sr) * (uint64_t)dsk_dtype_scale_cols(dt, cols) * 4;
    return b;
}

/*
 * Round to nearest even for |v| < 2^22 by adding and removing 1.5 * 2^23 (the default rounding
 * mode does the work): unlike rintf, which is a libm call on baseline x86-64, this vectorizes.
 * Every caller's values are within +-128.
 */
static inline float round_even(float v)
{
    const float m = 0x1.8p23f; /* exact IEEE arithmetic: never build kernels/ with -ffast-math */
    return (v + m) - m;
}

static float amax_of(const float *v, int64_t n)
{
    float m = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        float a = fabsf(v[i]);
        m = a > m ? a : m; /* not fmaxf: a libm call here, and weights hold no NaN */
    }
    return m;
}

static void quantize_row_i8(const float *src, int64_t cols, int8_t *q, float *scales)
{
    for (int64_t c0 = 0, g = 0; c0 < cols; c0 += 128, g++) {
        int64_t n = cols - c0 < 128 ? cols - c0 : 128;
        float amax = amax_of(src + c0, n);
        float s = amax / 127.0f, inv = amax > 0 ? 127.0f / amax : 0.0f;
        for (int64_t i = 0; i < n; i++) {
            float v = round_even(src[c0 + i] * inv);
            q[c0 + i] = (int8_t)(v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v);
        }
        scales[g] = s;
    }
}

/* One group of an int4 row: q = round(v / s) in [-8, 7], the largest magnitude mapping to -8. */
static float quantize_group_i4(const float *src, int64_t n, int8_t *q)
{
    float m = 0.0f;
    for (int64_t i = 0; i < n; i++)
        m = fabsf(src[i]) > fabsf(m) ? src[i] : m;
    float s = m / -8.0f, inv = m != 0.0f ? -8.0f / m : 0.0f;
    for (int64_t i = 0; i < n; i++) {
        float v = round_even(src[i] * inv);
        q[i] = (int8_t)(v > 7.0f ? 7.0f : v < -8.0f ? -8.0f : v);
    }
    return s;
}

static void quantize_row_i4(const float *src, int64_t cols, int64_t group, uint8_t *out,
                            float *scales)
{
    int8_t q[128];
    int64_t chunks = (cols + DSK_Q4_CHUNK - 1) / DSK_Q4_CHUNK;
    memset(out, 0x88, (size_t)(chunks * 16)); /* padding inputs hold q = 0 */
    for (int64_t c0 = 0, g = 0; c0 < cols; c0 += group, g++) {
        int64_t n = cols - c0 < group ? cols - c0 : group;
        scales[g] = quantize_group_i4(src + c0, n, q);
        for (int64_t i = 0; i < n; i++) {
            int64_t c = c0 + i;
            uint8_t *b = out + (c / DSK_Q4_CHUNK) * 16 + c % 16;
            uint8_t nib = (uint8_t)(q[i] + 8);
            *b = (c % DSK_Q4_CHUNK) < 16 ? (uint8_t)((*b & 0xf0) | nib)
                                         : (uint8_t)((*b & 0x0f) | (nib << 4));
        }
    }
}

/* One 128-row band of an FP8 matrix: per 128x128 block, scale = amax / 448. */
static void quantize_band_fp8(const float *src, int64_t ld, int64_t n_rows, int64_t cols,
                              uint8_t *data, float *scales)
{
    for (int64_t c0 = 0, b = 0; c0 < cols; c0 += DSK_FP8_BLOCK, b++) {
        int64_t n = cols - c0 < DSK_FP8_BLOCK ? cols - c0 : DSK_FP8_BLOCK;
        float amax = 0.0f;
        for (int64_t r = 0; r < n_rows; r++) {
            float a = amax_of(src + r * ld + c0, n);
            amax = a > amax ? a : amax;
        }
        float s = amax / 448.0f, inv = amax > 0 ? 448.0f / amax : 0.0f;
        for (int64_t r = 0; r < n_rows; r++)
            for (int64_t i = 0; i < n; i++)
                data[r * cols + c0 + i] = dsk_f32_to_fp8_e4m3(src[r * ld + c0 + i] * inv);
        scales[b] = s;
    }
}

void dsk_quantize_rows(dsk_dtype_t dt, const float *src, int64_t ld, int64_t n_rows, int64_t cols,
                       void *data, float *scale_inv)
{
    const int64_t rb = dsk_dtype_row_bytes(dt, cols), sc = dsk_dtype_scale_cols(dt, cols);
    switch (dt) {
    case DSK_DTYPE_F32:
        for (int64_t r = 0; r < n_rows; r++)
            memcpy((char *)data + r * rb, src + r * ld, (size_t)rb);
        break;
    case DSK_DTYPE_BF16:
        for (int64_t r = 0; r < n_rows; r++) {
            uint16_t *d = (uint16_t *)((char *)data + r * rb);
            for (int64_t c = 0; c < cols; c++)
                d[c] = dsk_f32_to_bf16(src[r * ld + c]);
        }
        break;
    case DSK_DTYPE_F8_E4M3:
        quantize_band_fp8(src, ld, n_rows, cols, data, scale_inv);
        break;
    case DSK_DTYPE_I8:
        for (int64_t r = 0; r < n_rows; r++)
            quantize_row_i8(src + r * ld, cols, (int8_t *)data + r * rb, scale_inv + r * sc);
        break;
    case DSK_DTYPE_I4_G32:
    case DSK_DTYPE_I4_G128:
        for (int64_t r = 0; r < n_rows; r++)
            quantize_row_i4(src + r * ld, cols, dsk_q_group(dt), (uint8_t *)data + r * rb,
                            scale_inv + r * sc);
        break;
    default:
        break;
    }
}
