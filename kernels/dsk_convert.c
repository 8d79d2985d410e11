#include <math.h>
#include <string.h>

#include "dsk_impl.h"

float dsk_bf16_to_f32(uint16_t v)
{
    uint32_t bits = (uint32_t)v << 16;
    float f;
    memcpy(&f, &bits, sizeof(f));
    return f;
}

uint16_t dsk_f32_to_bf16(float v)
{
    uint32_t bits;
    memcpy(&bits, &v, sizeof(bits));
    if ((bits & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((bits >> 16) | 0x40); /* quiet NaN */
    bits += 0x7fffu + ((bits >> 16) & 1u);
    return (uint16_t)(bits >> 16);
}

float dsk_fp8_e4m3_to_f32(uint8_t v)
{
    int sign = v >> 7;
    int e = (v >> 3) & 0xf;
    int m = v & 0x7;
    float f;
    if (e == 15 && m == 7)
        f = NAN;
    else if (e == 0)
        f = ldexpf((float)m, -9);
    else
        f = ldexpf(1.0f + (float)m / 8.0f, e - 7);
    return sign ? -f : f;
}

uint8_t dsk_f32_to_fp8_e4m3(float v)
{
    if (isnan(v))
        return 0x7f;
    uint8_t sign = signbit(v) ? 0x80 : 0;
    float a = fabsf(v);
    if (a >= 448.0f)
        return sign | 0x7e; /* saturate at 448 */
    if (a < 0x1p-6f) {
        /* Subnormal codes are m * 2^-9 and code 8 is 2^-6: one integer scale covers them all. */
        return sign | (uint8_t)rintf(a * 512.0f);
    }
    /*
     * Normal: the code is the f32's biased exponent and top 3 mantissa bits, rebiased from 127 to
     * 7, after rounding the 20 dropped mantissa bits to nearest even (a carry moves into the
     * exponent, which is the next code). Below 448 the result never passes code 0x7e.
     */
    uint32_t u;
    memcpy(&u, &a, sizeof(u));
    u += 0x7ffffu + ((u >> 20) & 1u);
    return sign | (uint8_t)((u >> 20) - (120u << 3));
}

void dsk_matrix_row_f32(const dsk_matrix_t *w, int64_t r, float *out)
{
    switch (w->dtype) {
    case DSK_DTYPE_F32:
        memcpy(out, (const float *)w->data + r * w->cols, (size_t)w->cols * sizeof(float));
        break;
    case DSK_DTYPE_BF16: {
        const uint16_t *row = (const uint16_t *)w->data + r * w->cols;
        for (int64_t c = 0; c < w->cols; c++)
            out[c] = dsk_bf16_to_f32(row[c]);
        break;
    }
    case DSK_DTYPE_F8_E4M3: {
        const uint8_t *row = (const uint8_t *)w->data + r * w->cols;
        for (int64_t c = 0; c < w->cols; c++)
            out[c] = dsk_fp8_e4m3_to_f32(row[c]) * dsk_block_scale(w, r, c);
        break;
    }
    case DSK_DTYPE_I8:
    case DSK_DTYPE_I4_G32:
    case DSK_DTYPE_I4_G128:
        for (int64_t c = 0; c < w->cols; c++)
            out[c] = (float)dsk_q_value(w, r, c) * dsk_q_scale(w, r, c);
        break;
    default:
        break;
    }
}
