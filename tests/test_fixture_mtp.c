/*
 * The MTP module and speculative decoding against ../shared/fixtures/tiny-v3-mtp:
 * - the module's logits over each prompt within 1e-3 of the reference's pN.mtp.logits, at every
 *   kernel level this CPU has (scalar included) with the stored fp8 weights; with each
 *   re-quantized format, within that format's error bound;
 * - greedy speculative generation with K = 1, 2, 3 drafts per step gives exactly pN.gen.tokens,
 *   one prompt at a time and all prompts batched; with a re-quantized format, exactly what plain
 *   decoding gives with that format (integer formats with f32 activations: see below);
 * - KV rollback: a step whose drafts are all right but the last (a long accepted run, then a
 *   rejection), then the sequence continues to the reference tokens;
 * - at the end of the context (caches just long enough) the steps verify fewer drafts;
 * - a checkpoint without the module (tiny-v3) is recognised as such and runs as before.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dsi_test.h"
#include "dsi_test_fixture.h"
#include "dsn_checkpoint.h"
#include "dsn_engine.h"
#include "dsn_mtp.h"
#include "dsn_sampler.h"
#include "dsn_spec.h"

#define N_PROMPTS  3
#define GEN_STEPS  12
#define TOL_LOGITS 1e-3

static dsi_fixture_t fx;

typedef struct {
    dsn_weights_t *w;
    dsn_mtp_weights_t *mw;
    dsn_engine_t *e;
    dsn_mtp_t *m;
} model_t;

static void model_open(model_t *md, dsn_weight_format_t fmt, dsk_level_t level)
{
    dsn_slice_t all = dsn_slice_all(fx.cfg);
    DSI_CHECK_INT_EQ(dsn_weights_load_as(fx.ckpt, &all, fmt, 2, &md->w), DSI_OK);
    DSI_CHECK_INT_EQ(dsn_mtp_weights_load(fx.ckpt, fmt, 2, NULL, &md->mw), DSI_OK);
    DSI_CHECK_INT_EQ(dsn_engine_create(md->w, level, 2, &md->e), DSI_OK);
    DSI_CHECK_INT_EQ(dsn_mtp_create(md->mw, md->e, &md->m), DSI_OK);
}

static void model_close(model_t *md)
{
    dsn_mtp_destroy(md->m);
    dsn_engine_destroy(md->e);
    dsn_mtp_weights_destroy(md->mw);
    dsn_weights_destroy(md->w);
}

/* The module's logits over prompt p against the reference: max |diff| (and the mean in *mean). */
static double mtp_logits_err(model_t *md, int p, double *mean)
{
    const dsn_st_tensor_t *tok = dsi_fixture_ref(&fx, "p%d.tokens", p);
    int n = (int)tok->shape[0];
    int64_t V = fx.cfg->vocab_size, count = (int64_t)(n - 1) * V;
    const dsn_st_tensor_t *want = dsi_fixture_ref(&fx, "p%d.mtp.logits", p);
    DSI_CHECK_INT_EQ(want->shape[0], n - 1);
    float *got = malloc((size_t)count * sizeof(float));
    DSI_CHECK_INT_EQ(dsn_spec_mtp_logits(md->e, md->m, tok->data, n, got), DSI_OK);
    double max = 0, sum = 0;
    const float *w = want->data;
    for (int64_t i = 0; i < count; i++) {
        double d = fabs((double)got[i] - (double)w[i]);
        max = d > max || d != d ? d : max;
        sum += d;
    }
    free(got);
    *mean = sum / (double)count;
    return max;
}

/*
 * Generates `steps` tokens after each of the prompts first..first+count-1 with speculation (K
 * drafts, all sequences batched in every step) or, with K = 0, one token at a time.
 */
static int64_t cache_cap = 256; /* positions of every cache generate() makes */

static void generate(model_t *md, int K, int first, int count, int steps, int32_t *out)
{
    int64_t V = fx.cfg->vocab_size;
    dsn_spec_t *spec = NULL;
    if (K > 0)
        DSI_CHECK_INT_EQ(dsn_spec_create(md->e, md->m, K, &spec), DSI_OK);
    dsn_kvcache_t *kv[N_PROMPTS], *mkv[N_PROMPTS];
    dsn_sampler_t sm[N_PROMPTS];
    dsn_spec_seq_t sq[N_PROMPTS];
    dsn_spec_seq_t *active[N_PROMPTS];
    int have[N_PROMPTS];
    float *logits = malloc((size_t)V * sizeof(float));
    dsn_sampling_t greedy = {0.0f, 1.0f, 0, 1};
    for (int i = 0; i < count; i++) {
        const dsn_st_tensor_t *tok = dsi_fixture_ref(&fx, "p%d.tokens", first + i);
        int n = (int)tok->shape[0];
        DSI_CHECK_INT_EQ(dsn_engine_kvcache_create(md->e, cache_cap, &kv[i]), DSI_OK);
        DSI_CHECK_INT_EQ(dsn_mtp_kvcache_create(md->m, cache_cap, &mkv[i]), DSI_OK);
        dsn_sampler_init(&sm[i], &greedy, (int)V);
        dsn_spec_seq_init(&sq[i], kv[i], mkv[i], &sm[i]);
        if (K > 0) {
            /* Two chunks (when the prompt has two tokens): the chunk boundary's pair too. */
            int c1 = n / 2 > 0 ? n / 2 : n;
            DSI_CHECK_INT_EQ(dsn_spec_prefill(spec, &sq[i], tok->data, c1, logits), DSI_OK);
            if (c1 < n)
                DSI_CHECK_INT_EQ(
                    dsn_spec_prefill(spec, &sq[i], (const int32_t *)tok->data + c1, n - c1, logits),
                    DSI_OK);
            out[i * steps] = dsn_spec_first(spec, &sq[i], logits);
        } else {
            dsn_seq_batch_t b = {kv[i], 0, n};
            DSI_CHECK_INT_EQ(dsn_engine_forward(md->e, tok->data, &b, 1, 0, logits), DSI_OK);
            out[i * steps] = dsn_argmax(logits, (int)V);
        }
        have[i] = 1;
    }
    int W = K + 1;
    int32_t *step_out = malloc((size_t)(count * W) * sizeof(int32_t));
    int n_out[N_PROMPTS], idx[N_PROMPTS];
    for (int guard = 0; guard < 4 * steps; guard++) {
        int na = 0;
        for (int i = 0; i < count; i++) {
            if (have[i] < steps) {
                idx[na] = i;
                active[na++] = &sq[i];
            }
        }
        if (na == 0)
            break;
        if (K > 0) {
            DSI_CHECK_INT_EQ(dsn_spec_step(spec, active, na, step_out, n_out, NULL), DSI_OK);
        } else {
            for (int a = 0; a < na; a++) {
                int i = idx[a];
                dsn_seq_batch_t b = {kv[i], kv[i]->length, 1};
                DSI_CHECK_INT_EQ(
                    dsn_engine_forward(md->e, &out[i * steps + have[i] - 1], &b, 1, 0, logits),
                    DSI_OK);
                step_out[a * W] = dsn_argmax(logits, (int)V);
                n_out[a] = 1;
            }
        }
        for (int a = 0; a < na; a++) {
            int i = idx[a];
            for (int j = 0; j < n_out[a] && have[i] < steps; j++)
                out[i * steps + have[i]++] = step_out[a * W + j];
        }
    }
    for (int i = 0; i < count; i++) {
        dsn_spec_seq_cleanup(&sq[i]);
        dsn_sampler_cleanup(&sm[i]);
        dsn_kvcache_destroy(kv[i]);
        dsn_kvcache_destroy(mkv[i]);
    }
    free(step_out);
    free(logits);
    dsn_spec_destroy(spec);
}

static void check_reference_tokens(model_t *md, int K, int first, int count, const char *what)
{
    int32_t got[N_PROMPTS * GEN_STEPS];
    generate(md, K, first, count, GEN_STEPS, got);
    for (int i = 0; i < count; i++) {
        const int32_t *want = dsi_fixture_ref(&fx, "p%d.gen.tokens", first + i)->data;
        int same = memcmp(got + i * GEN_STEPS, want, GEN_STEPS * sizeof(int32_t)) == 0;
        if (!same) {
            fprintf(stderr, "%s K=%d batch of %d: p%d differs from the reference:", what, K, count,
                    first + i);
            for (int s = 0; s < GEN_STEPS; s++)
                fprintf(stderr, " %d/%d", got[i * GEN_STEPS + s], want[s]);
            fprintf(stderr, "\n");
        }
        DSI_CHECK(same);
    }
}

/*
 * Rollback: prompt 2, then one verify step with K = 8 whose drafts are the reference's next 7
 * tokens and a wrong 8th: 7 accepted, the 8th rejected and corrected, the caches cut back; then
 * plain speculative steps continue and everything must still be the reference.
 */
static void check_rollback(model_t *md)
{
    const int K = 8, p = 2;
    int64_t V = fx.cfg->vocab_size;
    const dsn_st_tensor_t *tok = dsi_fixture_ref(&fx, "p%d.tokens", p);
    const int32_t *want = dsi_fixture_ref(&fx, "p%d.gen.tokens", p)->data;
    int n = (int)tok->shape[0];
    dsn_spec_t *spec;
    DSI_CHECK_INT_EQ(dsn_spec_create(md->e, md->m, K, &spec), DSI_OK);
    dsn_kvcache_t *kv, *mkv;
    DSI_CHECK_INT_EQ(dsn_engine_kvcache_create(md->e, 256, &kv), DSI_OK);
    DSI_CHECK_INT_EQ(dsn_mtp_kvcache_create(md->m, 256, &mkv), DSI_OK);
    dsn_sampler_t sm;
    dsn_sampling_t greedy = {0.0f, 1.0f, 0, 1};
    dsn_sampler_init(&sm, &greedy, (int)V);
    dsn_spec_seq_t sq, *one = &sq;
    dsn_spec_seq_init(&sq, kv, mkv, &sm);
    float *logits = malloc((size_t)V * sizeof(float));
    DSI_CHECK_INT_EQ(dsn_spec_prefill(spec, &sq, tok->data, n, logits), DSI_OK);
    int32_t got[GEN_STEPS + DSN_SPEC_MAX_K + 1];
    int have = 0;
    got[have++] = dsn_spec_first(spec, &sq, logits);
    int32_t drafts[DSN_SPEC_MAX_K], out[DSN_SPEC_MAX_K + 1];
    int n_out;
    DSI_CHECK_INT_EQ(dsn_spec_draft(spec, &one, 1, drafts), DSI_OK);
    for (int k = 0; k < K - 1; k++)
        drafts[k] = want[1 + k];
    drafts[K - 1] = (want[K] + 1) % (int32_t)V;
    int64_t before = kv->length;
    DSI_CHECK_INT_EQ(dsn_spec_verify(spec, &one, 1, drafts, out, &n_out, NULL), DSI_OK);
    DSI_CHECK_INT_EQ(n_out, K);
    DSI_CHECK_INT_EQ(kv->length, before + K);
    DSI_CHECK_INT_EQ(mkv->length, before);
    for (int j = 0; j < n_out; j++)
        got[have++] = out[j];
    while (have < GEN_STEPS) {
        DSI_CHECK_INT_EQ(dsn_spec_draft(spec, &one, 1, drafts), DSI_OK);
        DSI_CHECK_INT_EQ(dsn_spec_verify(spec, &one, 1, drafts, out, &n_out, NULL), DSI_OK);
        for (int j = 0; j < n_out; j++)
            got[have++] = out[j];
    }
    DSI_CHECK(memcmp(got, want, GEN_STEPS * sizeof(int32_t)) == 0);
    const dsn_spec_stats_t *st = dsn_spec_stats(spec);
    DSI_CHECK(st->accepted[0] >= 1 && st->accepted[K - 2] >= 1);
    DSI_CHECK(st->emitted >= (uint64_t)K);
    free(logits);
    dsn_spec_seq_cleanup(&sq);
    dsn_sampler_cleanup(&sm);
    dsn_kvcache_destroy(kv);
    dsn_kvcache_destroy(mkv);
    dsn_spec_destroy(spec);
}

static void check_without_module(void)
{
    dsn_checkpoint_t *plain;
    DSI_CHECK_INT_EQ(dsn_checkpoint_open(dsi_test_fixture("tiny-v3"), &plain), DSI_OK);
    DSI_CHECK_INT_EQ(dsn_mtp_present(plain), 0);
    dsn_mtp_weights_t *mw = NULL;
    DSI_CHECK(dsn_mtp_weights_load(plain, DSN_WFMT_AUTO, 1, NULL, &mw) != DSI_OK);
    DSI_CHECK(mw == NULL);
    dsn_checkpoint_close(plain);
}

int main(void)
{
    dsi_fixture_open(&fx, "tiny-v3-mtp");
    DSI_CHECK_INT_EQ(dsn_mtp_present(fx.ckpt), 1);
    check_without_module();

    dsk_level_t top = dsk_level_cpu();
    for (int level = 0; level <= (int)top; level++) {
        if (level != DSK_LEVEL_SCALAR && level != (int)top)
            continue;
        const char *name = dsk_level_name((dsk_level_t)level);
        model_t md;
        model_open(&md, DSN_WFMT_AUTO, (dsk_level_t)level);
        for (int p = 0; p < N_PROMPTS; p++) {
            double mean, max = mtp_logits_err(&md, p, &mean);
            printf("[%s] p%d MTP logits: max |diff| %.2e, mean %.2e\n", name, p, max, mean);
            DSI_CHECK(max <= TOL_LOGITS);
        }
        for (int K = 1; K <= 3; K++) {
            if (level == DSK_LEVEL_SCALAR && K > 1)
                continue; /* the scalar references are slow */
            check_reference_tokens(&md, K, 0, N_PROMPTS, name);
            for (int p = 0; p < N_PROMPTS && level != DSK_LEVEL_SCALAR; p++)
                check_reference_tokens(&md, K, p, 1, name);
        }
        if (level == (int)top) {
            check_rollback(&md);
            /* At the context's end: caches just long enough for the prompt and the tokens (the
             * last one never enters them): steps there verify fewer drafts, tokens unchanged. */
            cache_cap = dsi_fixture_ref(&fx, "p%d.tokens", 1)->shape[0] + GEN_STEPS - 1;
            check_reference_tokens(&md, 3, 1, 1, "context end");
            cache_cap = 256;
        }
        model_close(&md);
    }

    /* Re-quantized formats: the module loads and runs in each; speculation stays lossless. */
    static const struct {
        dsn_weight_format_t f;
        double mean;
    } formats[] = {{DSN_WFMT_FP8, 1e-4},
                   {DSN_WFMT_BF16, 1.0},
                   {DSN_WFMT_INT8, 1.0},
                   {DSN_WFMT_INT4, 10.0},
                   {DSN_WFMT_INT4_G128, 10.0}};
    for (size_t f = 0; f < sizeof(formats) / sizeof(formats[0]); f++) {
        const char *name = dsn_weight_format_name(formats[f].f);
        model_t md;
        /* Integer weights decode up to 4 tokens with int8 activations and larger batches in f32:
         * batch size changes their numerics with or without speculation. f32 activations make
         * every batch compute the same, which is what lets "identical tokens" be asserted. */
        dsk_set_options(NULL, NULL, "f32");
        model_open(&md, formats[f].f, top);
        dsk_set_options(NULL, NULL, NULL);
        for (int p = 0; p < N_PROMPTS; p++) {
            double mean, max = mtp_logits_err(&md, p, &mean);
            printf("[%s] p%d MTP logits: max |diff| %.2e, mean %.2e\n", name, p, max, mean);
            DSI_CHECK(mean <= formats[f].mean);
            if (formats[f].f == DSN_WFMT_FP8)
                DSI_CHECK(max <= TOL_LOGITS);
        }
        int32_t plain[N_PROMPTS * GEN_STEPS], spec[N_PROMPTS * GEN_STEPS];
        generate(&md, 0, 0, N_PROMPTS, GEN_STEPS, plain);
        for (int K = 1; K <= 3; K++) {
            generate(&md, K, 0, N_PROMPTS, GEN_STEPS, spec);
            if (memcmp(plain, spec, sizeof(plain)) != 0)
                fprintf(stderr, "[%s] K=%d: speculative tokens differ from plain decoding\n", name,
                        K);
            DSI_CHECK(memcmp(plain, spec, sizeof(plain)) == 0);
        }
        model_close(&md);
    }
    dsi_fixture_close(&fx);
    return dsi_test_finish();
}
