/*
 * Speculative sampling keeps the model's distribution (../shared/fixtures/tiny-v3-mtp, prompt p1):
 * after the prompt and a fixed first token, one speculative step is taken thousands of times with
 * seeds 1..N (the caches rolled back to the same point after each), and the distribution of the
 * step's first token is compared by a chi-square test with the main model's own distribution at
 * that position (its logits through the same controls, temperature, top-k, top-p), and with as
 * many tokens sampled without speculation. Temperature 1 (K = 1), 3 (K = 2), and 2.5 with top-k,
 * top-p, presence and repetition penalties (K = 1). Both branches of the acceptance test
 * must have been taken. Fixed seeds: the outcome is the same on every run.
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

#define SAMPLES 3000

static dsi_fixture_t fx;

typedef struct {
    const char *name;
    dsn_sampling_t sampling;
    dsn_controls_t ctl;
} setup_t;

/* A sampler for the setup with the sequence's history (prompt, then the first token). */
static void sampler_for(dsn_sampler_t *s, const setup_t *su, uint64_t seed, const int32_t *toks,
                        int n)
{
    dsn_sampling_t p = su->sampling;
    p.seed = seed;
    DSI_CHECK_INT_EQ(dsn_sampler_init(s, &p, fx.cfg->vocab_size), 0);
    DSI_CHECK_INT_EQ(dsn_sampler_controls(s, &su->ctl), 0);
    dsn_sampler_history(s, toks, (uint32_t)n, 1);
}

/* Upper 0.1% point of chi-square with df degrees of freedom (Wilson-Hilferty). */
static double chi2_crit(int df)
{
    double z = 3.09, a = 2.0 / (9.0 * df);
    double c = 1.0 - a + z * sqrt(a);
    return df * c * c * c;
}

/* Chi-square of counts against expected probabilities, bins with expectation < 5 merged. */
static int chi2_ok(const char *what, const int *counts, const double *prob, int V, int n)
{
    double stat = 0, rest_e = 0, rest_o = 0;
    int df = -1;
    for (int v = 0; v < V; v++) {
        double e = prob[v] * n;
        if (e >= 5.0) {
            stat += (counts[v] - e) * (counts[v] - e) / e;
            df++;
        } else {
            rest_e += e;
            rest_o += counts[v];
        }
    }
    if (rest_e > 0) {
        stat += (rest_o - rest_e) * (rest_o - rest_e) / (rest_e > 1e-9 ? rest_e : 1e-9);
        df++;
    }
    double crit = chi2_crit(df > 0 ? df : 1);
    printf("%s: chi-square %.1f over %d degrees of freedom (0.1%% point %.1f)\n", what, stat, df,
           crit);
    return stat < crit;
}

/* Two-sample chi-square (equal sizes) over bins with at least 10 tokens in all, others merged. */
static int chi2_two_ok(const char *what, const int *a, const int *b, int V)
{
    double stat = 0, ra = 0, rb = 0;
    int df = -1;
    for (int v = 0; v < V; v++) {
        if (a[v] + b[v] >= 10) {
            stat += (double)(a[v] - b[v]) * (a[v] - b[v]) / (a[v] + b[v]);
            df++;
        } else {
            ra += a[v];
            rb += b[v];
        }
    }
    if (ra + rb > 0) {
        stat += (ra - rb) * (ra - rb) / (ra + rb);
        df++;
    }
    double crit = chi2_crit(df > 0 ? df : 1);
    printf("%s: two-sample chi-square %.1f over %d degrees of freedom (0.1%% point %.1f)\n", what,
           stat, df, crit);
    return stat < crit;
}

static void run_setup(dsn_engine_t *e, dsn_mtp_t *m, const setup_t *su, int K)
{
    const int V = fx.cfg->vocab_size;
    const dsn_st_tensor_t *tok = dsn_st_find(fx.ref, "p1.tokens");
    int n = (int)tok->shape[0];
    int32_t *seq_toks = malloc((size_t)(n + 1) * sizeof(int32_t));
    memcpy(seq_toks, tok->data, (size_t)n * sizeof(int32_t));
    float *logits = malloc((size_t)V * (K + 1) * sizeof(float));

    /* The model's distribution at the position after the first token. */
    dsn_kvcache_t *pkv;
    DSI_CHECK_INT_EQ(dsn_engine_kvcache_create(e, 64, &pkv), DSI_OK);
    dsn_seq_batch_t b = {pkv, 0, n};
    DSI_CHECK_INT_EQ(dsn_engine_forward(e, seq_toks, &b, 1, 0, logits), DSI_OK);
    seq_toks[n] = dsn_argmax(logits, V); /* the fixed first token */
    b = (dsn_seq_batch_t){pkv, n, 1};
    DSI_CHECK_INT_EQ(dsn_engine_forward(e, &seq_toks[n], &b, 1, 0, logits), DSI_OK);
    dsn_kvcache_destroy(pkv);
    dsn_sampler_t ps;
    sampler_for(&ps, su, 1, seq_toks, n + 1);
    dsn_sampler_process(&ps, logits, 1);
    double *prob = calloc((size_t)V, sizeof(double));
    int nc = dsn_sampler_candidates(&ps, logits);
    double sum = 0;
    for (int i = 0; i < nc; i++)
        sum += ps.probs[ps.order[i]];
    for (int i = 0; i < nc; i++)
        prob[ps.order[i]] = ps.probs[ps.order[i]] / sum;
    /* Without speculation: the sampler on the same row (its controls are applied already). */
    int *plain = calloc((size_t)V, sizeof(int)), *spec_counts = calloc((size_t)V, sizeof(int));
    for (int i = 0; i < SAMPLES; i++) {
        dsn_sampler_t s;
        sampler_for(&s, su, 1000000 + (uint64_t)i, seq_toks, n + 1);
        plain[dsn_sampler_next_masked(&s, logits)]++;
        dsn_sampler_cleanup(&s);
    }
    dsn_sampler_cleanup(&ps);

    /* With speculation: prefill, the fixed first token, then one step per seed from there. */
    dsn_spec_t *spec;
    DSI_CHECK_INT_EQ(dsn_spec_create(e, m, K, &spec), DSI_OK);
    dsn_kvcache_t *kv, *mkv;
    DSI_CHECK_INT_EQ(dsn_engine_kvcache_create(e, 64, &kv), DSI_OK);
    DSI_CHECK_INT_EQ(dsn_mtp_kvcache_create(m, 64, &mkv), DSI_OK);
    dsn_sampler_t s;
    dsn_sampling_t greedy = {0.0f, 1.0f, 0, 1};
    DSI_CHECK_INT_EQ(dsn_sampler_init(&s, &greedy, V), 0);
    dsn_spec_seq_t q, *one = &q;
    dsn_spec_seq_init(&q, kv, mkv, &s);
    DSI_CHECK_INT_EQ(dsn_spec_prefill(spec, &q, seq_toks, n, logits), DSI_OK);
    DSI_CHECK_INT_EQ(dsn_spec_first(spec, &q, logits), seq_toks[n]);
    dsn_sampler_cleanup(&s);
    /* The state to come back to after each step. */
    dsn_spec_seq_t saved = q;
    int64_t H = fx.cfg->hidden_size, kv_len = kv->length, mkv_len = mkv->length;
    float *pend_h = malloc((size_t)(q.n_pend * H) * sizeof(float));
    int32_t *pend_tok = malloc((size_t)q.n_pend * sizeof(int32_t));
    memcpy(pend_h, q.pend_h, (size_t)(q.n_pend * H) * sizeof(float));
    memcpy(pend_tok, q.pend_tok, (size_t)q.n_pend * sizeof(int32_t));
    int32_t out[DSN_SPEC_MAX_K + 1];
    int n_out;
    for (int i = 0; i < SAMPLES; i++) {
        sampler_for(&s, su, 1 + (uint64_t)i, seq_toks, n + 1);
        float *keep_h = q.pend_h;
        int32_t *keep_tok = q.pend_tok;
        int keep_cap = q.pend_cap;
        q = saved;
        q.pend_h = keep_h;
        q.pend_tok = keep_tok;
        q.pend_cap = keep_cap;
        memcpy(q.pend_h, pend_h, (size_t)(saved.n_pend * H) * sizeof(float));
        memcpy(q.pend_tok, pend_tok, (size_t)saved.n_pend * sizeof(int32_t));
        dsn_kvcache_truncate(kv, kv_len);
        dsn_kvcache_truncate(mkv, mkv_len);
        DSI_CHECK_INT_EQ(dsn_spec_step(spec, &one, 1, out, &n_out, NULL), DSI_OK);
        DSI_CHECK(n_out >= 1 && n_out <= K + 1);
        spec_counts[out[0]]++;
        dsn_sampler_cleanup(&s);
    }
    const dsn_spec_stats_t *st = dsn_spec_stats(spec);
    printf("%s K=%d: first draft accepted %llu of %llu times\n", su->name, K,
           (unsigned long long)st->accepted[0], (unsigned long long)st->drafted[0]);
    /* Both the acceptance and the residual branch were taken. */
    DSI_CHECK(st->accepted[0] > 0 && st->accepted[0] < st->drafted[0]);
    if (su->sampling.temperature > 1.0f) /* flat enough that drafts are often right */
        DSI_CHECK(st->accepted[0] * 20 > st->drafted[0]);
    char what[128];
    snprintf(what, sizeof(what), "%s K=%d speculative vs the model", su->name, K);
    DSI_CHECK(chi2_ok(what, spec_counts, prob, V, SAMPLES));
    snprintf(what, sizeof(what), "%s plain vs the model", su->name);
    DSI_CHECK(chi2_ok(what, plain, prob, V, SAMPLES));
    snprintf(what, sizeof(what), "%s K=%d speculative vs plain", su->name, K);
    DSI_CHECK(chi2_two_ok(what, spec_counts, plain, V));
    dsn_spec_seq_cleanup(&q);
    free(pend_h);
    free(pend_tok);
    dsn_kvcache_destroy(kv);
    dsn_kvcache_destroy(mkv);
    dsn_spec_destroy(spec);
    free(prob);
    free(plain);
    free(spec_counts);
    free(logits);
    free(seq_toks);
}

int main(void)
{
    dsi_fixture_open(&fx, "tiny-v3-mtp");
    dsn_slice_t all = dsn_slice_all(fx.cfg);
    dsn_weights_t *w;
    dsn_mtp_weights_t *mw;
    dsn_engine_t *e;
    dsn_mtp_t *m;
    DSI_CHECK_INT_EQ(dsn_weights_load(fx.ckpt, &all, &w), DSI_OK);
    DSI_CHECK_INT_EQ(dsn_mtp_weights_load(fx.ckpt, DSN_WFMT_AUTO, 2, NULL, &mw), DSI_OK);
    DSI_CHECK_INT_EQ(dsn_engine_create(w, dsk_level_detect(), 2, &e), DSI_OK);
    DSI_CHECK_INT_EQ(dsn_mtp_create(mw, e, &m), DSI_OK);

    /* Temperature 1 (the distribution is peaked: few tokens, the draft rarely right), and flatter
     * ones where the draft is accepted often: both branches of the test weigh in. */
    setup_t t1 = {.name = "temperature 1", .sampling = {1.0f, 1.0f, 0, 0}};
    setup_t t3 = {.name = "temperature 3", .sampling = {3.0f, 1.0f, 0, 0}};
    setup_t controlled = {.name = "temperature 2.5, top-k 200, top-p 0.95, penalties",
                          .sampling = {2.5f, 0.95f, 200, 0}};
    controlled.ctl.presence_penalty = 1.5f;
    controlled.ctl.repetition_penalty = 1.3f;
    t1.ctl.eos_id = t3.ctl.eos_id = controlled.ctl.eos_id = -1;
    run_setup(e, m, &t1, 1);
    run_setup(e, m, &t3, 2);
    run_setup(e, m, &controlled, 1);

    dsn_mtp_destroy(m);
    dsn_engine_destroy(e);
    dsn_mtp_weights_destroy(mw);
    dsn_weights_destroy(w);
    dsi_fixture_close(&fx);
    return dsi_test_finish();
}
