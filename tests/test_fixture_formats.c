/*
 * test_fixture_formats.c - the accuracy of every --weight-format on ../shared/fixtures/tiny-v3
 * against the Hugging Face reference (float64 activations, the checkpoint's fp8 weights).
 *
 * Per format: the projections are re-quantized at load (dsn_weights_load_as), then each of the
 * four prompts is prefilled (logits at every position) and decoded for 16 steps teacher-forced
 * (the reference token is fed back, so one miss does not cascade). Measured: the largest
 * |logit - reference| over prefill and decode, and top-1 agreement with the reference (prefill
 * positions, and the 64 decode steps). One table row per format is printed; docs/KERNELS.md
 * quotes it. Bounds are stated per format below; `auto` (the stored fp8) must be exact to the
 * fixture's float32 tolerance.
 *
 * Also: the scalar kernels on the re-quantized weights agree with the SIMD level (the new dtypes'
 * references and variants on real shapes), weight bytes shrink as the formats say, and a bad
 * format is refused.
 */
#include <stdlib.h>
#include <string.h>

#include "dsc_memory.h"
#include "dsi_test.h"
#include "dsi_test_fixture.h"
#include "dsn_checkpoint.h"
#include "dsn_engine.h"
#include "dsn_quant.h"
#include "dsn_sampler.h"

#define N_PROMPTS 4
#define GEN_STEPS 16
/* Mean-error bounds, about twice what was measured (docs/KERNELS.md). */
#define MEAN_BF16 1.0
#define MEAN_INT8 1.0
#define MEAN_INT4 10.0

static dsi_fixture_t fx;

/* Bounds a format must meet (measured values are in docs/KERNELS.md). */
typedef struct {
    dsn_weight_format_t format;
    double mean_err;     /* mean |logit - reference|; the logits' own mean magnitude is ~1.9 */
    double max_err;      /* largest; a routing flip (margins down to 1e-4) moves a token a lot */
    double min_gen_frac; /* teacher-forced decode top-1 agreement */
} bound_t;

static const bound_t bounds[] = {
    {DSN_WFMT_AUTO, 1e-4, 1e-3, 1.0},
    {DSN_WFMT_FP8, 1e-4, 1e-3, 1.0}, /* stored as fp8: nothing to convert */
    {DSN_WFMT_BF16, MEAN_BF16, 12.0, 0.85},
    {DSN_WFMT_INT8, MEAN_INT8, 12.0, 0.75},
    {DSN_WFMT_INT4, MEAN_INT4, 25.0, 0.20},
    {DSN_WFMT_INT4_G128, MEAN_INT4, 25.0, 0.20},
};

/* Free-running greedy generation from prompt p: tokens equal to the reference before a miss. */
static int free_run(dsn_engine_t *eng, int p)
{
    const int64_t V = fx.cfg->vocab_size;
    const dsn_st_tensor_t *tok = dsi_fixture_ref(&fx, "p%d.tokens", p);
    const int32_t *gen_tok = dsi_fixture_ref(&fx, "p%d.gen.tokens", p)->data;
    dsn_kvcache_t *kv;
    DSI_CHECK_INT_EQ(dsn_engine_kvcache_create(eng, tok->shape[0] + GEN_STEPS + 1, &kv), DSI_OK);
    float *logits = malloc((size_t)V * sizeof(float));
    dsn_seq_batch_t seq = {kv, 0, (int)tok->shape[0]};
    int same = 0;
    DSI_CHECK_INT_EQ(dsn_engine_forward(eng, tok->data, &seq, 1, 0, logits), DSI_OK);
    for (int step = 0; step < GEN_STEPS; step++) {
        int32_t next = dsn_argmax(logits, (int)V);
        if (next != gen_tok[step])
            break;
        same++;
        seq = (dsn_seq_batch_t){kv, kv->length, 1};
        DSI_CHECK_INT_EQ(dsn_engine_forward(eng, &next, &seq, 1, 0, logits), DSI_OK);
    }
    free(logits);
    dsn_kvcache_destroy(kv);
    return same;
}

/* Every projection matrix of a slice, in dsn_weights_for_each_projection's order. */
typedef struct {
    dsk_matrix_t *m[4096];
    int n;
} mat_list_t;

static void collect(void *ctx, dsk_matrix_t *m)
{
    mat_list_t *l = ctx;
    if (l->n < 4096)
        l->m[l->n++] = m;
}

/* ||Wq - W|| / ||W|| over all projections (Frobenius): the format's own weight error. */
static double weight_rel_error(dsn_weights_t *orig, dsn_weights_t *q)
{
    static mat_list_t a, b;
    a.n = b.n = 0;
    dsn_weights_for_each_projection(orig, collect, &a);
    dsn_weights_for_each_projection(q, collect, &b);
    DSI_CHECK_INT_EQ(a.n, b.n);
    double num = 0, den = 0;
    float *ra = malloc(4096 * sizeof(float)), *rb = malloc(4096 * sizeof(float));
    for (int i = 0; i < a.n && i < b.n; i++) {
        DSI_CHECK(a.m[i]->rows == b.m[i]->rows && a.m[i]->cols == b.m[i]->cols &&
                  a.m[i]->cols <= 4096);
        for (int64_t r = 0; r < a.m[i]->rows && a.m[i]->cols <= 4096; r++) {
            dsk_matrix_row_f32(a.m[i], r, ra);
            dsk_matrix_row_f32(b.m[i], r, rb);
            for (int64_t c = 0; c < a.m[i]->cols; c++) {
                num += ((double)rb[c] - ra[c]) * ((double)rb[c] - ra[c]);
                den += (double)ra[c] * ra[c];
            }
        }
    }
    free(ra);
    free(rb);
    return sqrt(num / den);
}

/*
 * Prompt 1 prefill at the scalar level against the SIMD level on the same re-quantized weights,
 * both with f32 activations: the SIMD level's int8-activation slots (its default, used by experts
 * that get <= 4 tokens) compute other math, checked against their own reference in
 * test_kernel_act8.c; their accuracy is the table's.
 */
static void check_levels_agree(const dsn_weights_t *w, const char *name)
{
    const dsk_level_t top = dsk_level_cpu();
    if (top == DSK_LEVEL_SCALAR)
        return;
    dsk_set_options(NULL, NULL, "f32");
    const dsn_st_tensor_t *tok = dsi_fixture_ref(&fx, "p%d.tokens", 1);
    const int64_t n = tok->shape[0], V = fx.cfg->vocab_size;
    float *out[2];
    for (int i = 0; i < 2; i++) {
        dsn_engine_t *eng;
        DSI_CHECK_INT_EQ(dsn_engine_create(w, i ? top : DSK_LEVEL_SCALAR, 2, &eng), DSI_OK);
        dsn_kvcache_t *kv;
        DSI_CHECK_INT_EQ(dsn_engine_kvcache_create(eng, n, &kv), DSI_OK);
        out[i] = malloc((size_t)(n * V) * sizeof(float));
        dsn_seq_batch_t seq = {kv, 0, (int)n};
        DSI_CHECK_INT_EQ(dsn_engine_forward(eng, tok->data, &seq, 1, 1, out[i]), DSI_OK);
        dsn_kvcache_destroy(kv);
        dsn_engine_destroy(eng);
    }
    dsk_set_options(NULL, NULL, NULL);
    char what[128];
    snprintf(what, sizeof(what), "%s: scalar vs %s logits", name, dsk_level_name(top));
    dsi_check_floats_near(what, out[0], out[1], n * V, 1e-3);
    free(out[0]);
    free(out[1]);
}

/* The planner's memory model counts each format's matrices exactly as the re-quantizer stores them.
 */
static void check_planner_sizes(void)
{
    static const struct {
        dsc_weight_format_t planner;
        dsn_weight_format_t node;
    } pairs[] = {{DSC_WEIGHT_FP8, DSN_WFMT_FP8},
                 {DSC_WEIGHT_BF16, DSN_WFMT_BF16},
                 {DSC_WEIGHT_INT8, DSN_WFMT_INT8},
                 {DSC_WEIGHT_INT4, DSN_WFMT_INT4},
                 {DSC_WEIGHT_INT4_G128, DSN_WFMT_INT4_G128}};
    static const int64_t shapes[][2] = {{7168, 2048}, {2048, 7168},  {576, 7168}, {24576, 1536},
                                        {32768, 512}, {7168, 16384}, {96, 256},   {130, 257}};
    for (size_t p = 0; p < sizeof(pairs) / sizeof(pairs[0]); p++) {
        for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
            dsk_dtype_t dt = dsn_quant_dtype(pairs[p].node, DSK_DTYPE_F8_E4M3);
            DSI_CHECK_INT_EQ(dsc_memory_matrix_bytes(pairs[p].planner, (uint64_t)shapes[i][0],
                                                     (uint64_t)shapes[i][1]),
                             dsk_matrix_bytes(dt, shapes[i][0], shapes[i][1]));
        }
        DSI_CHECK_STR_EQ(dsc_weight_format_name(pairs[p].planner),
                         dsn_weight_format_name(pairs[p].node));
    }
}

int main(void)
{
    check_planner_sizes();
    dsi_fixture_open(&fx, "tiny-v3");
    dsn_checkpoint_t *ckpt = fx.ckpt;
    dsn_slice_t all = dsn_slice_all(fx.cfg);

    dsn_weights_t *bad = NULL;
    DSI_CHECK_INT_EQ(dsn_weights_load_as(ckpt, &all, (dsn_weight_format_t)99, 1, &bad),
                     DSI_ERR_INVALID_ARG);
    DSI_CHECK(bad == NULL);

    dsn_weights_t *orig;
    DSI_CHECK_INT_EQ(dsn_weights_load(ckpt, &all, &orig), DSI_OK);
    printf("| format | weight bytes | weight rel. error | mean / max logit error | prefill top-1 "
           "| decode top-1 (teacher-forced) | free-running greedy |\n"
           "|---|---|---|---|---|---|---|\n");
    uint64_t bytes[DSN_WFMT_COUNT] = {0};
    for (size_t b = 0; b < sizeof(bounds) / sizeof(bounds[0]); b++) {
        const bound_t *bd = &bounds[b];
        const char *name = dsn_weight_format_name(bd->format);
        dsn_weights_t *w;
        DSI_CHECK_INT_EQ(dsn_weights_load_as(ckpt, &all, bd->format, 2, &w), DSI_OK);
        bytes[bd->format] = w->weight_bytes;
        dsn_engine_t *eng;
        DSI_CHECK_INT_EQ(dsn_engine_create(w, dsk_level_detect(), 2, &eng), DSI_OK);
        dsi_fixture_accuracy_t acc = {0};
        int free_agree = 0;
        for (int p = 0; p < N_PROMPTS; p++) {
            dsi_fixture_measure(&fx, eng, p, GEN_STEPS, &acc);
            free_agree += free_run(eng, p);
        }
        dsn_engine_destroy(eng);
        const double mean = acc.sum_err / (double)acc.n_err;
        printf("| %s | %.2f MB | %.2e | %.4f / %.4f | %d / %d | %d / %d | %d / %d |\n", name,
               w->weight_bytes / 1e6, weight_rel_error(orig, w), mean, acc.max_err, acc.pre_agree,
               acc.pre_total, acc.gen_agree, acc.gen_total, free_agree, N_PROMPTS * GEN_STEPS);
        fflush(stdout);
        if (!(mean <= bd->mean_err && acc.max_err <= bd->max_err))
            fprintf(stderr, "%s: logit error mean %.4f max %.4f, bounds %.4f / %.4f\n", name, mean,
                    acc.max_err, bd->mean_err, bd->max_err);
        DSI_CHECK(mean <= bd->mean_err);
        DSI_CHECK(acc.max_err <= bd->max_err);
        DSI_CHECK(acc.gen_agree >= bd->min_gen_frac * acc.gen_total);
        if (bd->format == DSN_WFMT_INT8 || bd->format == DSN_WFMT_INT4)
            check_levels_agree(w, name);
        dsn_weights_destroy(w);
    }
    /* The fixture's projections are fp8: int8 is about the same size, int4 smaller, bf16 larger. */
    DSI_CHECK(bytes[DSN_WFMT_FP8] == bytes[DSN_WFMT_AUTO]);
    DSI_CHECK(bytes[DSN_WFMT_BF16] > bytes[DSN_WFMT_AUTO]);
    DSI_CHECK(bytes[DSN_WFMT_INT4] < bytes[DSN_WFMT_AUTO]);
    DSI_CHECK(bytes[DSN_WFMT_INT4_G128] < bytes[DSN_WFMT_INT4]);
    dsn_weights_destroy(orig);
    dsi_fixture_close(&fx);
    return dsi_test_finish();
}
