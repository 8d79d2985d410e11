/*
 * The single-process engine on the V2-family fixtures ../shared/fixtures/v2-lite-tiny (V2-Lite
 * style: plain q_proj, greedy softmax routing, scaling 1) and v2-tiny (V2 style: q_lora,
 * group_limited_greedy over 3 groups scored by their best expert, scaling 16), both with 2 shared
 * experts, YaRN with mscale = mscale_all_dim = 0.707 and bf16 weights without scales, against the
 * Hugging Face DeepseekV2 reference (float64 activations):
 *
 * - at every kernel level this CPU has (scalar, avx2, avx512, avx512vnni): prefill logits at every
 *   position and hidden states after every layer within 1e-3, the expert set and its weights at
 *   every MoE layer, and the 12-step greedy continuation (per prompt and all prompts batched), each
 *   step's logits within 1e-3 and its token identical;
 * - every weight format (--weight-format): the stored bf16 (auto, bf16) exact to the same
 *   tolerance, the re-quantized ones (fp8, int8, int4, int4-g128) within test_fixture_formats.c's
 *   mean-error bounds for tiny-v3 and the largest-error bounds stated below. One table row per
 *   fixture and format is printed.
 */
#include "dsi_test.h"
#include "dsi_test_fixture.h"
#include "dsn_sampler.h"

#define N_PROMPTS 3
#define GEN_STEPS 12

static dsi_fixture_t fx;

/*
 * Bounds of a weight format. The stored bf16 (auto, bf16) is exact to the fixture tolerance. The
 * re-quantized formats keep test_fixture_formats.c's mean-error bounds for tiny-v3; the largest
 * error and the decode agreement are bounded from what was measured here (printed table), with
 * about 1.5x margin: re-quantizing bf16 to e4m3 (3 mantissa bits) costs more than int8's per-row
 * scales, and v2-tiny's routed outputs are scaled by 16 (V2's routed_scaling_factor), so an expert
 * chosen differently moves a logit further than in tiny-v3 (measured max 20-22 there for fp8 and
 * int8, 3.5 and 1.4 in v2-lite-tiny).
 */
typedef struct {
    dsn_weight_format_t format;
    double mean_err;     /* mean |logit - reference|; the logits' mean magnitude is O(1) */
    double max_err[2];   /* largest |logit - reference|: v2-lite-tiny, v2-tiny */
    double min_gen_frac; /* teacher-forced decode top-1 agreement */
} bound_t;

static const bound_t bounds[] = {
    {DSN_WFMT_AUTO, 1e-4, {1e-3, 1e-3}, 1.0},
    {DSN_WFMT_BF16, 1e-4, {1e-3, 1e-3}, 1.0},       /* stored as bf16: nothing to convert */
    {DSN_WFMT_FP8, 1.0, {12.0, 32.0}, 0.45},        /* measured 28/36 and 20/36 */
    {DSN_WFMT_INT8, 1.0, {12.0, 32.0}, 0.6},        /* measured 34/36 and 27/36 */
    {DSN_WFMT_INT4, 10.0, {25.0, 32.0}, 0.15},      /* measured 19/36 and 10/36 */
    {DSN_WFMT_INT4_G128, 10.0, {25.0, 32.0}, 0.15}, /* measured 14/36 and 8/36 */
};

static int fixture_index; /* 0: v2-lite-tiny, 1: v2-tiny */

static void check_formats(void)
{
    dsn_slice_t all = dsn_slice_all(fx.cfg);
    for (size_t b = 0; b < sizeof(bounds) / sizeof(bounds[0]); b++) {
        const bound_t *bd = &bounds[b];
        const char *name = dsn_weight_format_name(bd->format);
        dsn_weights_t *w;
        DSI_CHECK_INT_EQ(dsn_weights_load_as(fx.ckpt, &all, bd->format, 2, &w), DSI_OK);
        if (w == NULL)
            continue;
        dsn_engine_t *eng;
        DSI_CHECK_INT_EQ(dsn_engine_create(w, dsk_level_detect(), 2, &eng), DSI_OK);
        dsi_fixture_accuracy_t acc = {0};
        for (int p = 0; p < N_PROMPTS; p++)
            dsi_fixture_measure(&fx, eng, p, GEN_STEPS, &acc);
        dsn_engine_destroy(eng);
        double mean = acc.sum_err / (double)acc.n_err;
        printf("| %s | %s | %.2f MB | %.2e / %.2e | %d / %d |\n", fx.name, name,
               w->weight_bytes / 1e6, mean, acc.max_err, acc.gen_agree, acc.gen_total);
        fflush(stdout);
        double max_bound = bd->max_err[fixture_index];
        if (!(mean <= bd->mean_err && acc.max_err <= max_bound))
            fprintf(stderr, "%s %s: logit error mean %.4g max %.4g, bounds %.4g / %.4g\n", fx.name,
                    name, mean, acc.max_err, bd->mean_err, max_bound);
        DSI_CHECK(mean <= bd->mean_err);
        DSI_CHECK(acc.max_err <= max_bound);
        DSI_CHECK(acc.gen_agree >= bd->min_gen_frac * acc.gen_total);
        dsn_weights_destroy(w);
    }
}

static void run_fixture(const char *name)
{
    dsi_fixture_open(&fx, name);
    dsn_slice_t all = dsn_slice_all(fx.cfg);
    dsn_weights_t *w;
    DSI_CHECK_INT_EQ(dsn_weights_load(fx.ckpt, &all, &w), DSI_OK);
    dsk_level_t top = dsk_level_cpu();
    for (int level = 0; level <= (int)top; level++) {
        const char *lname = dsk_level_name((dsk_level_t)level);
        dsn_engine_t *eng;
        DSI_CHECK_INT_EQ(dsn_engine_create(w, (dsk_level_t)level, 2, &eng), DSI_OK);
        for (int p = 0; p < N_PROMPTS; p++) {
            dsi_fixture_check_prefill(&fx, eng, p, lname);
            dsi_fixture_check_generation(&fx, eng, p, 1, GEN_STEPS, lname);
        }
        dsi_fixture_check_generation(&fx, eng, 0, N_PROMPTS, GEN_STEPS, lname);
        dsn_engine_destroy(eng);
        printf("%s: level %s checked\n", name, lname);
    }
    dsn_weights_destroy(w);
    check_formats();
    dsi_fixture_close(&fx);
}

int main(void)
{
    printf("| fixture | format | weight bytes | mean / max logit error | decode top-1 |\n"
           "|---|---|---|---|---|\n");
    run_fixture("v2-lite-tiny");
    fixture_index = 1;
    run_fixture("v2-tiny");
    return dsi_test_finish();
}
