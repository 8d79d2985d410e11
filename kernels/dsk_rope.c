/*
 * dsk_rope.c - rotary position embedding with YaRN, as Hugging Face's DeepseekV3 computes it
 * (MODEL.md section 4): YaRN-corrected inverse frequencies, float32 angles, cos/sin of the float
 * angle evaluated in double and rounded once.
 */
#include <math.h>

#include "dsk_impl.h"

static int yarn_active(const dsk_yarn_t *yarn)
{
    return yarn != NULL && yarn->factor > 1.0;
}

/* HF get_mscale: 0.1 * m * ln(s) + 1 for s > 1, else 1. */
static double yarn_get_mscale(double s, double m)
{
    return s <= 1.0 ? 1.0 : 0.1 * m * log(s) + 1.0;
}

/* The dimension index whose wavelength makes `rotations` turns over the original context. */
static double yarn_correction_dim(double rotations, int dim, double base, double max_pos)
{
    return (double)dim * log(max_pos / (rotations * 2.0 * M_PI)) / (2.0 * log(base));
}

void dsk_rope_yarn_range(int dim, double base, const dsk_yarn_t *yarn, double *low, double *high)
{
    double lo = floor(yarn_correction_dim(yarn->beta_fast, dim, base, yarn->original_max_pos));
    double hi = ceil(yarn_correction_dim(yarn->beta_slow, dim, base, yarn->original_max_pos));
    lo = lo > 0 ? lo : 0;
    hi = hi < dim - 1 ? hi : dim - 1;
    if (lo == hi)
        hi += 0.001; /* HF's linear_ramp_factor guard against a zero-width ramp */
    *low = lo;
    *high = hi;
}

void dsk_rope_freqs(int dim, double base, const dsk_yarn_t *yarn, float *freqs)
{
    int half = dim / 2;
    double low = 0, high = 1;
    if (yarn_active(yarn))
        dsk_rope_yarn_range(dim, base, yarn, &low, &high);
    for (int i = 0; i < half; i++) {
        double f = 1.0 / pow(base, (double)(2 * i) / (double)dim);
        if (yarn_active(yarn)) {
            /* ramp 0 keeps the original (extrapolated) frequency, ramp 1 interpolates by 1/s. */
            double ramp = ((double)i - low) / (high - low);
            ramp = ramp < 0 ? 0 : (ramp > 1 ? 1 : ramp);
            f = f / yarn->factor * ramp + f * (1.0 - ramp);
        }
        freqs[i] = (float)f;
    }
}

float dsk_rope_attn_factor(const dsk_yarn_t *yarn)
{
    if (!yarn_active(yarn))
        return 1.0f;
    if (yarn->mscale != 0 && yarn->mscale_all_dim != 0)
        return (float)(yarn_get_mscale(yarn->factor, yarn->mscale) /
                       yarn_get_mscale(yarn->factor, yarn->mscale_all_dim));
    return (float)yarn_get_mscale(yarn->factor, 1.0);
}

float dsk_yarn_softmax_mscale(const dsk_yarn_t *yarn)
{
    if (!yarn_active(yarn))
        return 1.0f;
    double m = yarn_get_mscale(yarn->factor, yarn->mscale_all_dim);
    return (float)(m * m);
}

void dsk_rope_cos_sin(int dim, const float *freqs, float attn_factor, int64_t pos, float *cs)
{
    float p = (float)pos;
    for (int i = 0; i < dim / 2; i++) {
        float angle = p * freqs[i]; /* float32 product, as the reference codes compute it */
        cs[2 * i] = (float)(cos((double)angle) * attn_factor);
        cs[2 * i + 1] = (float)(sin((double)angle) * attn_factor);
    }
}

void dsk_rope_apply_cs(float *x, int dim, const float *cs)
{
    for (int i = 0; i < dim / 2; i++) {
        float x0 = x[2 * i], x1 = x[2 * i + 1];
        float c = cs[2 * i], s = cs[2 * i + 1];
        x[2 * i] = x0 * c - x1 * s;
        x[2 * i + 1] = x0 * s + x1 * c;
    }
}

void dsk_rope_apply(float *x, int dim, const float *freqs, float attn_factor, int64_t pos)
{
    float p = (float)pos;
    for (int i = 0; i < dim / 2; i++) {
        float angle = p * freqs[i];
        float c = (float)(cos((double)angle) * attn_factor);
        float s = (float)(sin((double)angle) * attn_factor);
        float x0 = x[2 * i], x1 = x[2 * i + 1];
        x[2 * i] = x0 * c - x1 * s;
        x[2 * i + 1] = x0 * s + x1 * c;
    }
}
