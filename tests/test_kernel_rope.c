/*
 * test_kernel_rope.c - YaRN RoPE against an independent double-precision implementation of
 * MODEL.md section 4: the V3 correction range (10, 23), frequencies with and without YaRN, the
 * attention and softmax factors (V3's 0.135234 and the tiny fixture's recorded HF scale), and the
 * rotation with float32 angles at positions up to the full 163840 context.
 */
#include <stdlib.h>

#include "dsi_test.h"
#include "dsk.h"

static const dsk_yarn_t v3_yarn = {40.0, 4096, 32.0, 1.0, 1.0, 1.0};

/* MODEL.md 4.5, written out again in double. */
static void yarn_freqs_double(int dim, double base, const dsk_yarn_t *y, double *out)
{
    double corr_fast = dim * log(y->original_max_pos / (2 * M_PI * y->beta_fast)) / (2 * log(base));
    double corr_slow = dim * log(y->original_max_pos / (2 * M_PI * y->beta_slow)) / (2 * log(base));
    double low = fmax(floor(corr_fast), 0), high = fmin(ceil(corr_slow), dim - 1);
    if (low == high)
        high += 0.001;
    for (int i = 0; i < dim / 2; i++) {
        double f = pow(base, -2.0 * i / dim);
        double ramp = fmin(fmax((i - low) / (high - low), 0), 1);
        out[i] = y->factor > 1 ? f / y->factor * ramp + f * (1 - ramp) : f;
    }
}

static void test_v3_freqs(void)
{
    double low, high;
    dsk_rope_yarn_range(64, 10000, &v3_yarn, &low, &high);
    DSI_CHECK_NEAR(low, 10, 0);
    DSI_CHECK_NEAR(high, 23, 0);

    float freqs[32];
    dsk_rope_freqs(64, 10000, &v3_yarn, freqs);
    for (int i = 0; i < 32; i++) {
        double f = pow(10000, -2.0 * i / 64);
        double ramp = fmin(fmax((i - 10.0) / 13.0, 0), 1); /* low 10, high 23 */
        double want = f / 40 * ramp + f * (1 - ramp);
        DSI_CHECK_NEAR(freqs[i], want, 2e-7 * want);
        if (i <= 10)
            DSI_CHECK_NEAR(freqs[i], (float)f, 0); /* below low: original frequency */
        if (i >= 23)
            DSI_CHECK_NEAR(freqs[i], f / 40, 2e-7 * f / 40); /* above high: interpolated */
    }
    double d[32];
    yarn_freqs_double(64, 10000, &v3_yarn, d);
    for (int i = 0; i < 32; i++)
        DSI_CHECK_NEAR(freqs[i], d[i], 2e-7 * d[i]);
}

static void test_other_freqs(void)
{
    /* the tiny fixture's rope head (16), another base, and a zero-width ramp */
    static const struct {
        int dim;
        double base;
        dsk_yarn_t yarn;
    } cases[] = {
        {16, 10000, {40.0, 4096, 32.0, 1.0, 1.0, 1.0}},
        {128, 50000, {8.0, 8192, 32.0, 1.0, 0.707, 1.0}},
        {32, 10000, {4.0, 4096, 1000.0, 660.0, 1.0, 1.0}}, /* low = high = 0 */
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        float f[64];
        double d[64];
        dsk_rope_freqs(cases[k].dim, cases[k].base, &cases[k].yarn, f);
        yarn_freqs_double(cases[k].dim, cases[k].base, &cases[k].yarn, d);
        for (int i = 0; i < cases[k].dim / 2; i++)
            DSI_CHECK_NEAR(f[i], d[i], 2e-7 * d[i]);
    }
    double low, high;
    dsk_rope_yarn_range(32, 10000, &cases[2].yarn, &low, &high);
    DSI_CHECK_NEAR(high - low, 0.001, 1e-12);

    /* plain RoPE: no yarn, or factor 1 */
    float plain[32], one[32];
    dsk_yarn_t unit = v3_yarn;
    unit.factor = 1.0;
    dsk_rope_freqs(64, 10000, NULL, plain);
    dsk_rope_freqs(64, 10000, &unit, one);
    for (int i = 0; i < 32; i++) {
        DSI_CHECK_NEAR(plain[i], pow(10000, -2.0 * i / 64), 2e-7 * pow(10000, -2.0 * i / 64));
        DSI_CHECK_NEAR(one[i], plain[i], 0);
    }
    DSI_CHECK_NEAR(dsk_rope_attn_factor(NULL), 1, 0);
    DSI_CHECK_NEAR(dsk_yarn_softmax_mscale(NULL), 1, 0);
    DSI_CHECK_NEAR(dsk_yarn_softmax_mscale(&unit), 1, 0);
}

/* hf_softmax_scale from the tiny fixture's reference.json; -1 when the fixture is absent. */
static double fixture_softmax_scale(void)
{
    const char *dir = getenv("DSINFER_FIXTURES");
    char path[4096];
    snprintf(path, sizeof(path), "%s/tiny-v3/reference.json", dir ? dir : "../shared/fixtures");
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        printf("note: %s not found; checking the recorded constant only\n", path);
        return -1;
    }
    char buf[8192];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *key = strstr(buf, "\"hf_softmax_scale\"");
    double v = -1;
    if (key == NULL || sscanf(strchr(key, ':') + 1, "%lf", &v) != 1)
        return -1;
    return v;
}

static void test_factors(void)
{
    DSI_CHECK_NEAR(dsk_rope_attn_factor(&v3_yarn), 1.0, 0);
    double m = 0.1 * log(40) + 1;
    DSI_CHECK_NEAR(dsk_yarn_softmax_mscale(&v3_yarn), m * m, 1e-6);
    DSI_CHECK_NEAR(pow(192, -0.5) * dsk_yarn_softmax_mscale(&v3_yarn), 0.135234, 1e-6);

    dsk_yarn_t y = v3_yarn;
    y.mscale = 0.707;
    DSI_CHECK_NEAR(dsk_rope_attn_factor(&y), (0.0707 * log(40) + 1) / (0.1 * log(40) + 1), 1e-7);
    y.mscale_all_dim = 0; /* HF: without both, get_mscale(s) with m = 1 */
    DSI_CHECK_NEAR(dsk_rope_attn_factor(&y), 0.1 * log(40) + 1, 1e-6);

    /* the tiny fixture: q/k head 32 + 16 = 48 */
    double tiny = pow(48, -0.5) * dsk_yarn_softmax_mscale(&v3_yarn);
    DSI_CHECK_NEAR(tiny, 0.2704675577217602, 1e-7);
    double recorded = fixture_softmax_scale();
    if (recorded > 0)
        DSI_CHECK_NEAR(tiny, recorded, 1e-7);
}

static void test_apply(void)
{
    static const int64_t positions[] = {0, 1, 2, 7, 100, 4095, 4096, 100000, 163839};
    float freqs[32];
    dsk_rope_freqs(64, 10000, &v3_yarn, freqs);
    dsi_test_seed(11);
    for (int k = 0; k < (int)(sizeof(positions) / sizeof(positions[0])); k++) {
        for (int af_case = 0; af_case < 2; af_case++) {
            float af = af_case ? 0.9f : 1.0f;
            float x[64], a[64], b[64], cs[64];
            for (int i = 0; i < 64; i++)
                x[i] = dsi_test_randf() * 4;
            memcpy(a, x, sizeof(x));
            memcpy(b, x, sizeof(x));
            dsk_rope_apply(a, 64, freqs, af, positions[k]);
            dsk_rope_cos_sin(64, freqs, af, positions[k], cs);
            dsk_rope_apply_cs(b, 64, cs);
            DSI_CHECK(memcmp(a, b, sizeof(a)) == 0);
            int bad = 0;
            for (int i = 0; i < 32; i++) {
                /* the angle as the references compute it: a float32 product */
                float angle = (float)positions[k] * freqs[i];
                double c = cos((double)angle) * af, s = sin((double)angle) * af;
                double w0 = x[2 * i] * c - x[2 * i + 1] * s, w1 = x[2 * i] * s + x[2 * i + 1] * c;
                double tol = 1e-6 * (fabs(x[2 * i]) + fabs(x[2 * i + 1]));
                if (fabs(a[2 * i] - w0) > tol || fabs(a[2 * i + 1] - w1) > tol) {
                    fprintf(stderr, "rope pos %lld pair %d: (%.9g, %.9g) want (%.9g, %.9g)\n",
                            (long long)positions[k], i, a[2 * i], a[2 * i + 1], w0, w1);
                    bad++;
                }
            }
            DSI_CHECK_INT_EQ(bad, 0);
            if (positions[k] == 0 && af == 1.0f)
                DSI_CHECK(memcmp(a, x, sizeof(x)) == 0);
        }
    }
}

int main(void)
{
    test_v3_freqs();
    test_other_freqs();
    test_factors();
    test_apply();
    return dsi_test_finish();
}
