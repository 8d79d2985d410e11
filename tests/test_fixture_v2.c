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
#include <stdlib.h>
#include <string.h>

#include "dsi_test.h"
#include "dsn_checkpoint.h"
#include "dsn_engine.h"
#include "dsn_sampler.h"

#define N_PROMPTS  3
#define GEN_STEPS  12
#define TOL_LOGITS 1e-3
#define TOL_HIDDEN 1e-3
#define TOL_WEIGHT 1e-4 /* routing weights are O(0.1) x scaling */

static dsn_st_file_t *ref;
static const dsn_config_t *cfg;
static const char *fixture;

static const dsn_st_tensor_t *ref_tensor(const char *fmt, int a, int b)
{
    char name[128];
    snprintf(name, sizeof(name), fmt, a, b);
    const dsn_st_tensor_t *t = dsn_st_find(ref, name);
    if (t == NULL) {
        fprintf(stderr, "%s: reference tensor %s missing\n", fixture, name);
        exit(1);
    }
    return t;
}

/* Observations of one prefill of one prompt. */
typedef struct {
    float *hidden[16];  /* [k] -> [n, H] */
    int32_t *route[16]; /* [layer] -> [n, top_k] */
    float *weights[16]; /* [layer] -> [n, top_k] */
} trace_t;

static void *dup_bytes(const void *p, size_t bytes)
{
    void *q = malloc(bytes);
    memcpy(q, p, bytes);
    return q;
}

static void on_hidden(void *ctx, int k, const float *h, int64_t n)
{
    trace_t *t = ctx;
    free(t->hidden[k]);
    t->hidden[k] = dup_bytes(h, (size_t)(n * cfg->hidden_size) * sizeof(float));
}

static void on_route(void *ctx, int layer, const int32_t *experts, const float *weights, int64_t n)
{
    trace_t *t = ctx;
    size_t k = (size_t)(n * cfg->num_experts_per_tok);
    free(t->route[layer]);
    free(t->weights[layer]);
    t->route[layer] = dup_bytes(experts, k * sizeof(int32_t));
    t->weights[layer] = dup_bytes(weights, k * sizeof(float));
}

/* Sort one token's (expert, weight) pairs by expert: the reference's order is arbitrary. */
static void sort_pairs(int32_t *e, float *w, int k)
{
    for (int i = 1; i < k; i++)
        for (int j = i; j > 0 && e[j - 1] > e[j]; j--) {
            int32_t te = e[j];
            float tw = w[j];
            e[j] = e[j - 1];
            w[j] = w[j - 1];
            e[j - 1] = te;
            w[j - 1] = tw;
        }
}

static void check_routes(const trace_t *t, int p, int64_t n, const char *level)
{
    int K = cfg->num_experts_per_tok;
    for (int l = cfg->first_k_dense_replace; l < cfg->num_hidden_layers; l++) {
        const int32_t *want_e = ref_tensor("p%d.route.%d.experts", p, l)->data;
        const float *want_w = ref_tensor("p%d.route.%d.weights", p, l)->data;
        int mismatches = 0;
        double max_w = 0;
        for (int64_t i = 0; i < n; i++) {
            int32_t a[32], b[32];
            float wa[32], wb[32];
            memcpy(a, t->route[l] + i * K, (size_t)K * sizeof(int32_t));
            memcpy(wa, t->weights[l] + i * K, (size_t)K * sizeof(float));
            memcpy(b, want_e + i * K, (size_t)K * sizeof(int32_t));
            memcpy(wb, want_w + i * K, (size_t)K * sizeof(float));
            sort_pairs(a, wa, K);
            sort_pairs(b, wb, K);
            if (memcmp(a, b, (size_t)K * sizeof(int32_t)) != 0) {
                mismatches++;
                continue;
            }
            for (int k = 0; k < K; k++)
                max_w = fmax(max_w, fabs((double)wa[k] - wb[k]));
        }
        if (mismatches || max_w > TOL_WEIGHT)
            fprintf(stderr, "[%s] %s p%d layer %d: %d tokens routed elsewhere, weights off by %g\n",
                    level, fixture, p, l, mismatches, max_w);
        DSI_CHECK_INT_EQ(mismatches, 0);
        DSI_CHECK(max_w <= TOL_WEIGHT);
    }
}

/* Prefill prompt p alone with every hook on; compare logits, hidden states and routes. */
static void check_prefill(dsn_engine_t *eng, int p, const char *level)
{
    const dsn_st_tensor_t *tok = ref_tensor("p%d.tokens", p, 0);
    int64_t n = tok->shape[0], H = cfg->hidden_size, V = cfg->vocab_size;
    trace_t tr;
    memset(&tr, 0, sizeof(tr));
    dsn_trace_t hooks = {on_hidden, on_route, &tr};
    dsn_engine_set_trace(eng, &hooks);
    dsn_kvcache_t *kv;
    DSI_CHECK_INT_EQ(dsn_engine_kvcache_create(eng, 256, &kv), DSI_OK);
    float *logits = malloc((size_t)(n * V) * sizeof(float));
    dsn_seq_batch_t seq = {kv, 0, (int)n};
    DSI_CHECK_INT_EQ(dsn_engine_forward(eng, tok->data, &seq, 1, 1, logits), DSI_OK);
    char what[160];
    snprintf(what, sizeof(what), "[%s] %s p%d prefill logits", level, fixture, p);
    dsi_check_floats_near(what, logits, ref_tensor("p%d.logits", p, 0)->data, n * V, TOL_LOGITS);
    for (int k = 0; k <= cfg->num_hidden_layers; k++) {
        snprintf(what, sizeof(what), "[%s] %s p%d hidden.%d", level, fixture, p, k);
        DSI_CHECK(tr.hidden[k] != NULL);
        if (tr.hidden[k] != NULL)
            dsi_check_floats_near(what, tr.hidden[k], ref_tensor("p%d.hidden.%d", p, k)->data,
                                  n * H, TOL_HIDDEN);
    }
    check_routes(&tr, p, n, level);
    dsn_engine_set_trace(eng, NULL);
    for (int i = 0; i < 16; i++) {
        free(tr.hidden[i]);
        free(tr.route[i]);
        free(tr.weights[i]);
    }
    free(logits);
    dsn_kvcache_destroy(kv);
}

/*
 * Prefill the prompts `first`..`first + count - 1` together in one call, then decode GEN_STEPS
 * greedy steps with all of them in each call; compare every step's logits and token.
 */
static void check_generation(dsn_engine_t *eng, int first, int count, const char *level)
{
    int64_t V = cfg->vocab_size;
    dsn_kvcache_t *kv[N_PROMPTS];
    dsn_seq_batch_t seqs[N_PROMPTS];
    int64_t total = 0;
    for (int i = 0; i < count; i++)
        total += ref_tensor("p%d.tokens", first + i, 0)->shape[0];
    int32_t *tokens = malloc((size_t)total * sizeof(int32_t));
    float *logits = malloc((size_t)(count * V) * sizeof(float));
    int64_t off = 0;
    for (int i = 0; i < count; i++) {
        const dsn_st_tensor_t *tok = ref_tensor("p%d.tokens", first + i, 0);
        memcpy(tokens + off, tok->data, tok->nbytes);
        off += tok->shape[0];
        DSI_CHECK_INT_EQ(dsn_engine_kvcache_create(eng, 256, &kv[i]), DSI_OK);
        seqs[i] = (dsn_seq_batch_t){kv[i], 0, (int)tok->shape[0]};
    }
    DSI_CHECK_INT_EQ(dsn_engine_forward(eng, tokens, seqs, count, 0, logits), DSI_OK);
    int32_t next[N_PROMPTS];
    for (int step = 0; step < GEN_STEPS; step++) {
        for (int i = 0; i < count; i++) {
            int p = first + i;
            const float *want = (const float *)ref_tensor("p%d.gen.logits", p, 0)->data;
            const int32_t *want_tok = ref_tensor("p%d.gen.tokens", p, 0)->data;
            char what[160];
            snprintf(what, sizeof(what), "[%s] %s batch of %d: p%d step %d logits", level, fixture,
                     count, p, step);
            dsi_check_floats_near(what, logits + i * V, want + step * V, V, TOL_LOGITS);
            next[i] = dsn_argmax(logits + i * V, (int)V);
            if (next[i] != want_tok[step])
                fprintf(stderr, "%s: token %d, reference %d\n", what, next[i], want_tok[step]);
            DSI_CHECK_INT_EQ(next[i], want_tok[step]);
            next[i] = want_tok[step]; /* one miss must not cascade */
            seqs[i] = (dsn_seq_batch_t){kv[i], kv[i]->length, 1};
        }
        if (step + 1 < GEN_STEPS)
            DSI_CHECK_INT_EQ(dsn_engine_forward(eng, next, seqs, count, 0, logits), DSI_OK);
    }
    for (int i = 0; i < count; i++)
        dsn_kvcache_destroy(kv[i]);
    free(tokens);
    free(logits);
}

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

typedef struct {
    double max_err, sum_err;
    int64_t n_err;
    int gen_agree, gen_total;
} accuracy_t;

static void add_err(accuracy_t *acc, const float *a, const float *b, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        acc->max_err = d > acc->max_err || d != d ? d : acc->max_err;
        acc->sum_err += d;
    }
    acc->n_err += n;
}

/* Prefill prompt p and decode teacher-forced (the reference token is fed back). */
static void measure_prompt(dsn_engine_t *eng, int p, accuracy_t *acc)
{
    const int64_t V = cfg->vocab_size;
    const dsn_st_tensor_t *tok = ref_tensor("p%d.tokens", p, 0);
    const int64_t n = tok->shape[0];
    const float *gen_want = ref_tensor("p%d.gen.logits", p, 0)->data;
    const int32_t *gen_tok = ref_tensor("p%d.gen.tokens", p, 0)->data;
    dsn_kvcache_t *kv;
    DSI_CHECK_INT_EQ(dsn_engine_kvcache_create(eng, n + GEN_STEPS + 1, &kv), DSI_OK);
    float *logits = malloc((size_t)(n * V) * sizeof(float));
    dsn_seq_batch_t seq = {kv, 0, (int)n};
    DSI_CHECK_INT_EQ(dsn_engine_forward(eng, tok->data, &seq, 1, 1, logits), DSI_OK);
    add_err(acc, logits, ref_tensor("p%d.logits", p, 0)->data, n * V);
    const float *last = logits + (n - 1) * V;
    for (int step = 0; step < GEN_STEPS; step++) {
        add_err(acc, last, gen_want + step * V, V);
        acc->gen_agree += dsn_argmax(last, (int)V) == gen_tok[step];
        acc->gen_total++;
        if (step + 1 == GEN_STEPS)
            break;
        seq = (dsn_seq_batch_t){kv, kv->length, 1};
        DSI_CHECK_INT_EQ(dsn_engine_forward(eng, &gen_tok[step], &seq, 1, 0, logits), DSI_OK);
        last = logits;
    }
    free(logits);
    dsn_kvcache_destroy(kv);
}

static void check_formats(const dsn_checkpoint_t *ckpt)
{
    dsn_slice_t all = dsn_slice_all(cfg);
    for (size_t b = 0; b < sizeof(bounds) / sizeof(bounds[0]); b++) {
        const bound_t *bd = &bounds[b];
        const char *name = dsn_weight_format_name(bd->format);
        dsn_weights_t *w;
        DSI_CHECK_INT_EQ(dsn_weights_load_as(ckpt, &all, bd->format, 2, &w), DSI_OK);
        if (w == NULL)
            continue;
        dsn_engine_t *eng;
        DSI_CHECK_INT_EQ(dsn_engine_create(w, dsk_level_detect(), 2, &eng), DSI_OK);
        accuracy_t acc = {0};
        for (int p = 0; p < N_PROMPTS; p++)
            measure_prompt(eng, p, &acc);
        dsn_engine_destroy(eng);
        double mean = acc.sum_err / (double)acc.n_err;
        printf("| %s | %s | %.2f MB | %.2e / %.2e | %d / %d |\n", fixture, name,
               w->weight_bytes / 1e6, mean, acc.max_err, acc.gen_agree, acc.gen_total);
        fflush(stdout);
        double max_bound = bd->max_err[fixture_index];
        if (!(mean <= bd->mean_err && acc.max_err <= max_bound))
            fprintf(stderr, "%s %s: logit error mean %.4g max %.4g, bounds %.4g / %.4g\n", fixture,
                    name, mean, acc.max_err, bd->mean_err, max_bound);
        DSI_CHECK(mean <= bd->mean_err);
        DSI_CHECK(acc.max_err <= max_bound);
        DSI_CHECK(acc.gen_agree >= bd->min_gen_frac * acc.gen_total);
        dsn_weights_destroy(w);
    }
}

static void run_fixture(const char *name)
{
    fixture = name;
    const char *dir = dsi_test_fixture(name);
    char path[4096];
    snprintf(path, sizeof(path), "%s/reference.safetensors", dir);
    dsn_checkpoint_t *ckpt;
    if (dsn_checkpoint_open(dir, &ckpt) != DSI_OK || dsn_st_open(path, &ref) != DSI_OK) {
        fprintf(stderr, "cannot open the fixture %s\n", dir);
        exit(1);
    }
    cfg = dsn_checkpoint_config(ckpt);
    dsn_slice_t all = dsn_slice_all(cfg);
    dsn_weights_t *w;
    DSI_CHECK_INT_EQ(dsn_weights_load(ckpt, &all, &w), DSI_OK);
    dsk_level_t top = dsk_level_cpu();
    for (int level = 0; level <= (int)top; level++) {
        const char *lname = dsk_level_name((dsk_level_t)level);
        dsn_engine_t *eng;
        DSI_CHECK_INT_EQ(dsn_engine_create(w, (dsk_level_t)level, 2, &eng), DSI_OK);
        for (int p = 0; p < N_PROMPTS; p++) {
            check_prefill(eng, p, lname);
            check_generation(eng, p, 1, lname);
        }
        check_generation(eng, 0, N_PROMPTS, lname);
        dsn_engine_destroy(eng);
        printf("%s: level %s checked\n", name, lname);
    }
    dsn_weights_destroy(w);
    check_formats(ckpt);
    dsn_st_close(ref);
    dsn_checkpoint_close(ckpt);
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
