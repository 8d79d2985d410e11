/*
 * dsi_test_fixture.c - the fixture checks the engine's fixture tests share (dsi_test_fixture.h).
 */
#include "dsi_test_fixture.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsi_test.h"
#include "dsn_sampler.h"

#define MAX_LAYERS 16
#define MAX_TOPK   32
#define MAX_BATCH  16

void dsi_fixture_open(dsi_fixture_t *fx, const char *name)
{
    const char *dir = dsi_test_fixture(name);
    char path[4096];
    snprintf(path, sizeof(path), "%s/reference.safetensors", dir);
    fx->name = name;
    if (dsn_checkpoint_open(dir, &fx->ckpt) != DSI_OK || dsn_st_open(path, &fx->ref) != DSI_OK) {
        fprintf(stderr, "cannot open the fixture %s\n", dir);
        exit(1);
    }
    fx->cfg = dsn_checkpoint_config(fx->ckpt);
}

void dsi_fixture_close(dsi_fixture_t *fx)
{
    dsn_st_close(fx->ref);
    dsn_checkpoint_close(fx->ckpt);
}

const dsn_st_tensor_t *dsi_fixture_ref(const dsi_fixture_t *fx, const char *fmt, ...)
{
    char name[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof(name), fmt, ap);
    va_end(ap);
    const dsn_st_tensor_t *t = dsn_st_find(fx->ref, name);
    if (t == NULL) {
        fprintf(stderr, "%s: reference tensor %s missing\n", fx->name, name);
        exit(1);
    }
    return t;
}

/* Observations of one prefill of one prompt. */
typedef struct {
    const dsn_config_t *cfg;
    float *hidden[MAX_LAYERS + 1]; /* [k] -> [n, H] */
    int32_t *route[MAX_LAYERS];    /* [layer] -> [n, top_k] */
    float *weights[MAX_LAYERS];    /* [layer] -> [n, top_k] */
} trace_t;

static void *dup_bytes(const void *p, size_t bytes)
{
    void *q = malloc(bytes);
    if (q == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    memcpy(q, p, bytes);
    return q;
}

static void on_hidden(void *ctx, int k, const float *h, int64_t n)
{
    trace_t *t = ctx;
    if (k > MAX_LAYERS)
        return;
    free(t->hidden[k]);
    t->hidden[k] = dup_bytes(h, (size_t)(n * t->cfg->hidden_size) * sizeof(float));
}

static void on_route(void *ctx, int layer, const int32_t *experts, const float *weights, int64_t n)
{
    trace_t *t = ctx;
    if (layer >= MAX_LAYERS)
        return;
    size_t k = (size_t)(n * t->cfg->num_experts_per_tok);
    free(t->route[layer]);
    free(t->weights[layer]);
    t->route[layer] = dup_bytes(experts, k * sizeof(int32_t));
    t->weights[layer] = dup_bytes(weights, k * sizeof(float));
}

/* Sorts one token's (expert, weight) pairs by expert: the reference's order is arbitrary. */
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

static void check_routes(const dsi_fixture_t *fx, const trace_t *t, int p, int64_t n,
                         const char *level)
{
    const dsn_config_t *cfg = fx->cfg;
    int K = cfg->num_experts_per_tok;
    DSI_CHECK(K <= MAX_TOPK);
    for (int l = cfg->first_k_dense_replace; l < cfg->num_hidden_layers && K <= MAX_TOPK; l++) {
        DSI_CHECK(t->route[l] != NULL && t->weights[l] != NULL);
        if (t->route[l] == NULL || t->weights[l] == NULL)
            continue;
        const int32_t *want_e = dsi_fixture_ref(fx, "p%d.route.%d.experts", p, l)->data;
        const float *want_w = dsi_fixture_ref(fx, "p%d.route.%d.weights", p, l)->data;
        int mismatches = 0;
        double max_w = 0;
        for (int64_t i = 0; i < n; i++) {
            int32_t a[MAX_TOPK], b[MAX_TOPK];
            float wa[MAX_TOPK], wb[MAX_TOPK];
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
        if (mismatches || max_w > DSI_FIXTURE_TOL_WEIGHT)
            fprintf(stderr, "[%s] %s p%d layer %d: %d tokens routed elsewhere, weights off by %g\n",
                    level, fx->name, p, l, mismatches, max_w);
        DSI_CHECK_INT_EQ(mismatches, 0);
        DSI_CHECK(max_w <= DSI_FIXTURE_TOL_WEIGHT);
    }
}

void dsi_fixture_check_prefill(const dsi_fixture_t *fx, dsn_engine_t *eng, int p, const char *level)
{
    const dsn_config_t *cfg = fx->cfg;
    const dsn_st_tensor_t *tok = dsi_fixture_ref(fx, "p%d.tokens", p);
    int64_t n = tok->shape[0], H = cfg->hidden_size, V = cfg->vocab_size;
    DSI_CHECK(cfg->num_hidden_layers <= MAX_LAYERS);
    trace_t tr;
    memset(&tr, 0, sizeof(tr));
    tr.cfg = cfg;
    dsn_trace_t hooks = {on_hidden, on_route, &tr};
    dsn_engine_set_trace(eng, &hooks);
    dsn_kvcache_t *kv;
    DSI_CHECK_INT_EQ(dsn_engine_kvcache_create(eng, n + 1, &kv), DSI_OK);
    float *logits = malloc((size_t)(n * V) * sizeof(float));
    dsn_seq_batch_t seq = {kv, 0, (int)n};
    DSI_CHECK_INT_EQ(dsn_engine_forward(eng, tok->data, &seq, 1, 1, logits), DSI_OK);
    char what[160];
    snprintf(what, sizeof(what), "[%s] %s p%d prefill logits", level, fx->name, p);
    dsi_check_floats_near(what, logits, dsi_fixture_ref(fx, "p%d.logits", p)->data, n * V,
                          DSI_FIXTURE_TOL_LOGITS);
    for (int k = 0; k <= cfg->num_hidden_layers && k <= MAX_LAYERS; k++) {
        snprintf(what, sizeof(what), "[%s] %s p%d hidden.%d", level, fx->name, p, k);
        DSI_CHECK(tr.hidden[k] != NULL);
        if (tr.hidden[k] != NULL)
            dsi_check_floats_near(what, tr.hidden[k],
                                  dsi_fixture_ref(fx, "p%d.hidden.%d", p, k)->data, n * H,
                                  DSI_FIXTURE_TOL_HIDDEN);
    }
    check_routes(fx, &tr, p, n, level);
    dsn_engine_set_trace(eng, NULL);
    for (int i = 0; i < MAX_LAYERS; i++) {
        free(tr.hidden[i]);
        free(tr.route[i]);
        free(tr.weights[i]);
    }
    free(tr.hidden[MAX_LAYERS]);
    free(logits);
    dsn_kvcache_destroy(kv);
}

void dsi_fixture_check_generation(const dsi_fixture_t *fx, dsn_engine_t *eng, int first, int count,
                                  int steps, const char *level)
{
    int64_t V = fx->cfg->vocab_size;
    dsn_kvcache_t *kv[MAX_BATCH];
    dsn_seq_batch_t seqs[MAX_BATCH];
    DSI_CHECK(count <= MAX_BATCH);
    if (count > MAX_BATCH)
        return;
    int64_t total = 0;
    for (int i = 0; i < count; i++)
        total += dsi_fixture_ref(fx, "p%d.tokens", first + i)->shape[0];
    int32_t *tokens = malloc((size_t)total * sizeof(int32_t));
    float *logits = malloc((size_t)(count * V) * sizeof(float));
    int64_t off = 0;
    for (int i = 0; i < count; i++) {
        const dsn_st_tensor_t *tok = dsi_fixture_ref(fx, "p%d.tokens", first + i);
        memcpy(tokens + off, tok->data, tok->nbytes);
        off += tok->shape[0];
        DSI_CHECK_INT_EQ(dsn_engine_kvcache_create(eng, tok->shape[0] + steps, &kv[i]), DSI_OK);
        seqs[i] = (dsn_seq_batch_t){kv[i], 0, (int)tok->shape[0]};
    }
    DSI_CHECK_INT_EQ(dsn_engine_forward(eng, tokens, seqs, count, 0, logits), DSI_OK);
    int32_t next[MAX_BATCH];
    for (int step = 0; step < steps; step++) {
        for (int i = 0; i < count; i++) {
            int p = first + i;
            const float *want = dsi_fixture_ref(fx, "p%d.gen.logits", p)->data;
            const int32_t *want_tok = dsi_fixture_ref(fx, "p%d.gen.tokens", p)->data;
            char what[160];
            snprintf(what, sizeof(what), "[%s] %s batch of %d: p%d step %d logits", level, fx->name,
                     count, p, step);
            dsi_check_floats_near(what, logits + i * V, want + step * V, V, DSI_FIXTURE_TOL_LOGITS);
            next[i] = dsn_argmax(logits + i * V, (int)V);
            if (next[i] != want_tok[step])
                fprintf(stderr, "%s: token %d, reference %d\n", what, next[i], want_tok[step]);
            DSI_CHECK_INT_EQ(next[i], want_tok[step]);
            next[i] = want_tok[step]; /* one miss must not cascade */
            seqs[i] = (dsn_seq_batch_t){kv[i], kv[i]->length, 1};
        }
        if (step + 1 < steps)
            DSI_CHECK_INT_EQ(dsn_engine_forward(eng, next, seqs, count, 0, logits), DSI_OK);
    }
    for (int i = 0; i < count; i++)
        dsn_kvcache_destroy(kv[i]);
    free(tokens);
    free(logits);
}

void dsi_fixture_accuracy_add(dsi_fixture_accuracy_t *acc, const float *got, const float *want,
                              int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        acc->max_err = d > acc->max_err || d != d ? d : acc->max_err;
        acc->sum_err += d;
    }
    acc->n_err += n;
}

void dsi_fixture_measure(const dsi_fixture_t *fx, dsn_engine_t *eng, int p, int steps,
                         dsi_fixture_accuracy_t *acc)
{
    const int64_t V = fx->cfg->vocab_size;
    const dsn_st_tensor_t *tok = dsi_fixture_ref(fx, "p%d.tokens", p);
    const int64_t n = tok->shape[0];
    const float *want = dsi_fixture_ref(fx, "p%d.logits", p)->data;
    const float *gen_want = dsi_fixture_ref(fx, "p%d.gen.logits", p)->data;
    const int32_t *gen_tok = dsi_fixture_ref(fx, "p%d.gen.tokens", p)->data;
    dsn_kvcache_t *kv;
    DSI_CHECK_INT_EQ(dsn_engine_kvcache_create(eng, n + steps + 1, &kv), DSI_OK);
    float *logits = malloc((size_t)(n * V) * sizeof(float));
    dsn_seq_batch_t seq = {kv, 0, (int)n};
    DSI_CHECK_INT_EQ(dsn_engine_forward(eng, tok->data, &seq, 1, 1, logits), DSI_OK);
    dsi_fixture_accuracy_add(acc, logits, want, n * V);
    for (int64_t i = 0; i < n; i++)
        acc->pre_agree += dsn_argmax(logits + i * V, (int)V) == dsn_argmax(want + i * V, (int)V);
    acc->pre_total += (int)n;
    /* The last prefill row chose the first generated token. */
    const float *last = logits + (n - 1) * V;
    for (int step = 0; step < steps; step++) {
        dsi_fixture_accuracy_add(acc, last, gen_want + step * V, V);
        acc->gen_agree += dsn_argmax(last, (int)V) == gen_tok[step];
        acc->gen_total++;
        if (step + 1 == steps)
            break;
        seq = (dsn_seq_batch_t){kv, kv->length, 1};
        DSI_CHECK_INT_EQ(dsn_engine_forward(eng, &gen_tok[step], &seq, 1, 0, logits), DSI_OK);
        last = logits;
    }
    free(logits);
    dsn_kvcache_destroy(kv);
}
