/*
 * The single-node engine against the Hugging Face reference outputs of ../shared/fixtures/tiny-v3:
 * prefill logits at every position, hidden states after every layer, expert sets at every MoE
 * layer, and the 16-token greedy continuation with each step's logits; per prompt and with all
 * four prompts in one batched call; at every kernel level this CPU has, the scalar one included.
 */
#include <stdlib.h>
#include <string.h>

#include "dsi_test.h"
#include "dsn_checkpoint.h"
#include "dsn_engine.h"
#include "dsn_sampler.h"

#define N_PROMPTS  4
#define GEN_STEPS  16
#define TOL_LOGITS 1e-3
#define TOL_HIDDEN 1e-3

static dsn_st_file_t *ref;
static const dsn_config_t *cfg;

static const dsn_st_tensor_t *ref_tensor(const char *fmt, int a, int b)
{
    char name[128];
    snprintf(name, sizeof(name), fmt, a, b);
    const dsn_st_tensor_t *t = dsn_st_find(ref, name);
    if (t == NULL) {
        fprintf(stderr, "reference tensor %s missing\n", name);
        exit(1);
    }
    return t;
}

/* Observations of one prefill of one prompt. */
typedef struct {
    int prompt;
    int64_t n;
    float *hidden[16];  /* [k] -> [n, H] */
    int32_t *route[16]; /* [layer] -> [n, top_k] */
} trace_t;

static void on_hidden(void *ctx, int k, const float *h, int64_t n)
{
    trace_t *t = ctx;
    size_t bytes = (size_t)(n * cfg->hidden_size) * sizeof(float);
    free(t->hidden[k]);
    t->hidden[k] = malloc(bytes);
    memcpy(t->hidden[k], h, bytes);
}

static void on_route(void *ctx, int layer, const int32_t *experts, const float *weights, int64_t n)
{
    (void)weights;
    trace_t *t = ctx;
    size_t bytes = (size_t)(n * cfg->num_experts_per_tok) * sizeof(int32_t);
    free(t->route[layer]);
    t->route[layer] = malloc(bytes);
    memcpy(t->route[layer], experts, bytes);
}

static int cmp_i32(const void *a, const void *b)
{
    return *(const int32_t *)a - *(const int32_t *)b;
}

static void check_routes(const trace_t *t, int p)
{
    int K = cfg->num_experts_per_tok;
    for (int l = cfg->first_k_dense_replace; l < cfg->num_hidden_layers; l++) {
        const dsn_st_tensor_t *want = ref_tensor("p%d.route.%d.experts", p, l);
        int mismatches = 0;
        for (int64_t i = 0; i < t->n; i++) {
            int32_t a[32], b[32];
            memcpy(a, t->route[l] + i * K, (size_t)K * sizeof(int32_t));
            memcpy(b, (const int32_t *)want->data + i * K, (size_t)K * sizeof(int32_t));
            qsort(a, (size_t)K, sizeof(int32_t), cmp_i32);
            qsort(b, (size_t)K, sizeof(int32_t), cmp_i32);
            mismatches += memcmp(a, b, (size_t)K * sizeof(int32_t)) != 0;
        }
        if (mismatches)
            fprintf(stderr, "p%d layer %d: %d tokens routed to other experts\n", p, l, mismatches);
        DSI_CHECK_INT_EQ(mismatches, 0);
    }
}

/* Prefill prompt p alone with every hook on; compare logits, hidden states and routes. */
static void check_prefill(dsn_engine_t *eng, int p, const char *level)
{
    const dsn_st_tensor_t *tok = ref_tensor("p%d.tokens", p, 0);
    int64_t n = tok->shape[0], H = cfg->hidden_size, V = cfg->vocab_size;
    trace_t tr = {p, n, {0}, {0}};
    dsn_trace_t hooks = {on_hidden, on_route, &tr};
    dsn_engine_set_trace(eng, &hooks);
    dsn_kvcache_t *kv;
    DSI_CHECK_INT_EQ(dsn_engine_kvcache_create(eng, 1024, &kv), DSI_OK);
    float *logits = malloc((size_t)(n * V) * sizeof(float));
    dsn_seq_batch_t seq = {kv, 0, (int)n};
    DSI_CHECK_INT_EQ(dsn_engine_forward(eng, tok->data, &seq, 1, 1, logits), DSI_OK);
    char what[128];
    snprintf(what, sizeof(what), "[%s] p%d prefill logits", level, p);
    dsi_check_floats_near(what, logits, ref_tensor("p%d.logits", p, 0)->data, n * V, TOL_LOGITS);
    for (int k = 0; k <= cfg->num_hidden_layers; k++) {
        snprintf(what, sizeof(what), "[%s] p%d hidden.%d", level, p, k);
        DSI_CHECK(tr.hidden[k] != NULL);
        if (tr.hidden[k] != NULL)
            dsi_check_floats_near(what, tr.hidden[k], ref_tensor("p%d.hidden.%d", p, k)->data,
                                  n * H, TOL_HIDDEN);
    }
    check_routes(&tr, p);
    dsn_engine_set_trace(eng, NULL);
    for (int i = 0; i < 16; i++) {
        free(tr.hidden[i]);
        free(tr.route[i]);
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
        dsn_engine_kvcache_create(eng, 1024, &kv[i]);
        seqs[i] = (dsn_seq_batch_t){kv[i], 0, (int)tok->shape[0]};
    }
    DSI_CHECK_INT_EQ(dsn_engine_forward(eng, tokens, seqs, count, 0, logits), DSI_OK);
    int32_t next[N_PROMPTS];
    for (int step = 0; step < GEN_STEPS; step++) {
        for (int i = 0; i < count; i++) {
            int p = first + i;
            const float *want = (const float *)ref_tensor("p%d.gen.logits", p, 0)->data;
            const int32_t *want_tok = ref_tensor("p%d.gen.tokens", p, 0)->data;
            char what[128];
            snprintf(what, sizeof(what), "[%s] batch of %d: p%d step %d logits", level, count, p,
                     step);
            dsi_check_floats_near(what, logits + i * V, want + step * V, V, TOL_LOGITS);
            next[i] = dsn_argmax(logits + i * V, (int)V);
            if (next[i] != want_tok[step])
                fprintf(stderr, "%s: token %d, reference %d\n", what, next[i], want_tok[step]);
            DSI_CHECK_INT_EQ(next[i], want_tok[step]);
            /* Feed the reference token so one miss does not cascade. */
            next[i] = want_tok[step];
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

int main(void)
{
    const char *dir = dsi_test_fixture("tiny-v3");
    char path[4096];
    snprintf(path, sizeof(path), "%s/reference.safetensors", dir);
    dsn_checkpoint_t *ckpt;
    if (dsn_checkpoint_open(dir, &ckpt) != DSI_OK || dsn_st_open(path, &ref) != DSI_OK) {
        fprintf(stderr, "cannot open the fixture\n");
        return 1;
    }
    cfg = dsn_checkpoint_config(ckpt);
    dsn_slice_t all = dsn_slice_all(cfg);
    dsn_weights_t *w;
    DSI_CHECK_INT_EQ(dsn_weights_load(ckpt, &all, &w), DSI_OK);

    dsk_level_t top = dsk_level_cpu();
    for (int level = 0; level <= (int)top; level++) {
        if (level != DSK_LEVEL_SCALAR && level != (int)top)
            continue;
        const char *name = dsk_level_name((dsk_level_t)level);
        dsn_engine_t *eng;
        DSI_CHECK_INT_EQ(dsn_engine_create(w, (dsk_level_t)level, 2, &eng), DSI_OK);
        for (int p = 0; p < N_PROMPTS; p++) {
            check_prefill(eng, p, name);
            /* The scalar references are slow: one-prompt generation only at the top level. */
            if (level != DSK_LEVEL_SCALAR)
                check_generation(eng, p, 1, name);
        }
        check_generation(eng, 0, N_PROMPTS, name);
        dsn_engine_destroy(eng);
    }
    dsn_weights_destroy(w);
    dsn_st_close(ref);
    dsn_checkpoint_close(ckpt);
    return dsi_test_finish();
}
