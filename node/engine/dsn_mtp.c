#include "dsn_mtp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsi_log.h"
#include "dsn_engine_impl.h"
#include "dsn_quant.h"

int dsn_mtp_present(const dsn_checkpoint_t *ckpt)
{
    const dsn_config_t *c = dsn_checkpoint_config(ckpt);
    if (c->num_nextn_predict_layers < 1)
        return 0;
    char name[128];
    snprintf(name, sizeof(name), "model.layers.%d.eh_proj.weight", c->num_hidden_layers);
    return dsn_checkpoint_find(ckpt, name) != NULL;
}

static dsi_status_t load_vec(const dsn_checkpoint_t *ckpt, int layer, const char *what, int64_t n,
                             float **out)
{
    char name[128];
    snprintf(name, sizeof(name), "model.layers.%d.%s", layer, what);
    float *v = malloc((size_t)n * sizeof(float));
    if (v == NULL)
        return DSI_ERR_NOMEM;
    dsi_status_t st = dsn_checkpoint_vector_f32(ckpt, name, n, v);
    if (st != DSI_OK) {
        free(v);
        return st;
    }
    *out = v;
    return DSI_OK;
}

static dsi_status_t load_mat(const dsn_checkpoint_t *ckpt, int layer, const char *what,
                             int64_t rows, int64_t cols, dsk_matrix_t *m, uint64_t *bytes)
{
    char prefix[128];
    snprintf(prefix, sizeof(prefix), "model.layers.%d.%s", layer, what);
    dsi_status_t st = dsn_checkpoint_matrix(ckpt, prefix, rows, cols, m);
    if (st == DSI_OK)
        *bytes += dsk_matrix_bytes(m->dtype, m->rows, m->cols);
    return st;
}

dsi_status_t dsn_mtp_weights_load(const dsn_checkpoint_t *ckpt, dsn_weight_format_t format,
                                  int n_threads, const uint8_t *expert_mask,
                                  dsn_mtp_weights_t **out)
{
    const dsn_config_t *main_cfg = dsn_checkpoint_config(ckpt);
    if (!dsn_mtp_present(ckpt)) {
        DSI_ERROR("%s: no MTP module (num_nextn_predict_layers = %d, model.layers.%d.eh_proj "
                  "absent)",
                  dsn_checkpoint_dir(ckpt), main_cfg->num_nextn_predict_layers,
                  main_cfg->num_hidden_layers);
        return DSI_ERR_MISSING_TENSOR;
    }
    dsn_mtp_weights_t *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return DSI_ERR_NOMEM;
    int N = main_cfg->num_hidden_layers;
    m->layer = N;
    /* The module's layer counted as one more layer of the model; always MoE in the release
     * (a config with no MoE layers gives a dense one, which loads the same way). */
    dsn_config_t cfg = *main_cfg;
    cfg.num_hidden_layers = N + 1;
    dsn_slice_t slice = {N, N + 1, 0, 0, NULL};
    uint8_t *mask = NULL;
    if (expert_mask != NULL && dsn_config_is_moe_layer(&cfg, N)) {
        size_t E = (size_t)cfg.n_routed_experts;
        size_t before = (size_t)(N - cfg.first_k_dense_replace) * E;
        mask = calloc(before + E, 1);
        if (mask == NULL) {
            free(m);
            return DSI_ERR_NOMEM;
        }
        memcpy(mask + before, expert_mask, E);
        slice.expert_mask = mask;
    }
    dsi_status_t st = dsn_weights_load_layers(ckpt, &cfg, &slice, &m->w);
    free(mask);
    if (st != DSI_OK) {
        free(m);
        return st;
    }
    int64_t H = cfg.hidden_size, V = cfg.vocab_size;
    dsn_weights_t *w = m->w;
    uint64_t bytes = 0;
    st = load_mat(ckpt, N, "embed_tokens", V, H, &w->embed, &bytes);
    if (st == DSI_OK)
        st = load_mat(ckpt, N, "shared_head.head", V, H, &w->lm_head, &bytes);
    if (st == DSI_OK)
        st = load_mat(ckpt, N, "eh_proj", H, 2 * H, &m->eh_proj, &bytes);
    if (st == DSI_OK)
        st = load_vec(ckpt, N, "shared_head.norm.weight", H, &w->final_norm);
    if (st == DSI_OK)
        st = load_vec(ckpt, N, "enorm.weight", H, &m->enorm);
    if (st == DSI_OK)
        st = load_vec(ckpt, N, "hnorm.weight", H, &m->hnorm);
    if (st == DSI_OK)
        st = dsn_quant_convert(w, format, n_threads);
    if (st != DSI_OK) {
        dsn_mtp_weights_destroy(m);
        return st;
    }
    w->slice.has_embed = w->slice.has_head = 1;
    w->weight_bytes += bytes;
    *out = m;
    return DSI_OK;
}

void dsn_mtp_weights_destroy(dsn_mtp_weights_t *m)
{
    if (m == NULL)
        return;
    dsn_weights_destroy(m->w);
    free(m->enorm);
    free(m->hnorm);
    free(m);
}

struct dsn_mtp {
    const dsn_mtp_weights_t *w;
    dsn_engine_t *e;
    int64_t tokens;          /* rows the buffers below hold */
    float *cat;              /* [tokens, 2H] [enorm(Emb(t)) ; hnorm(h)] */
    float *h;                /* [tokens, H] the module's residual stream */
    int64_t *rows;           /* [tokens] */
    dsn_mtp_remote_t remote; /* begin NULL: every routed expert is local */
};

void dsn_mtp_set_remote(dsn_mtp_t *m, const dsn_mtp_remote_t *r)
{
    if (r != NULL)
        m->remote = *r;
    else
        memset(&m->remote, 0, sizeof(m->remote));
}

/* The module's decoder layer on m->h with routed experts elsewhere: attention, then the MoE step
 * through the remote's buffers, waiting for its replies. */
static dsi_status_t layer_remote(dsn_mtp_t *m, const dsn_seq_batch_t *seqs, int n_seqs, int64_t n)
{
    dsn_engine_t *e = m->e;
    int layer = m->w->layer;
    dsi_status_t st = dsn_engine_attention(e, layer, seqs, n_seqs, m->h);
    if (st != DSI_OK)
        return st;
    dsn_ffn_step_t *step;
    dsn_ffn_remote_t remote;
    if (m->remote.begin(m->remote.ctx, n, &step, &remote) != 0)
        return DSI_ERR_NOMEM;
    int pending = 0;
    st = dsn_engine_ffn_start(e, layer, n, m->h, step, &remote, &pending);
    if (st == DSI_OK && pending > 0) {
        if (m->remote.wait(m->remote.ctx) == 0) {
            dsn_engine_ffn_finish(e, n, step, m->h);
        } else {
            DSI_ERROR("MTP layer: the replies of the nodes holding its experts did not come");
            st = DSI_ERR_PEER;
        }
    }
    m->remote.end(m->remote.ctx);
    return st;
}

dsi_status_t dsn_mtp_create(const dsn_mtp_weights_t *w, dsn_engine_t *main, dsn_mtp_t **out)
{
    dsn_mtp_t *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return DSI_ERR_NOMEM;
    m->w = w;
    dsi_status_t st = dsn_engine_create_beside(w->w, main, &m->e);
    if (st != DSI_OK) {
        free(m);
        return st;
    }
    *out = m;
    return DSI_OK;
}

void dsn_mtp_destroy(dsn_mtp_t *m)
{
    if (m == NULL)
        return;
    dsn_engine_destroy(m->e);
    free(m->cat);
    free(m->h);
    free(m->rows);
    free(m);
}

dsn_engine_t *dsn_mtp_engine(dsn_mtp_t *m)
{
    return m->e;
}

dsi_status_t dsn_mtp_kvcache_create(const dsn_mtp_t *m, int64_t max_tokens, dsn_kvcache_t **out)
{
    return dsn_engine_kvcache_create(m->e, max_tokens, out);
}

static dsi_status_t grow(dsn_mtp_t *m, int64_t n)
{
    if (n <= m->tokens)
        return DSI_OK;
    int64_t T = n < 2 * m->tokens ? 2 * m->tokens : n;
    size_t H = (size_t)m->w->w->cfg.hidden_size;
    float *cat = realloc(m->cat, (size_t)T * 2 * H * sizeof(float));
    if (cat != NULL)
        m->cat = cat;
    float *h = realloc(m->h, (size_t)T * H * sizeof(float));
    if (h != NULL)
        m->h = h;
    int64_t *rows = realloc(m->rows, (size_t)T * sizeof(int64_t));
    if (rows != NULL)
        m->rows = rows;
    if (cat == NULL || h == NULL || rows == NULL) {
        DSI_ERROR("out of memory for an MTP batch of %lld tokens", (long long)n);
        return DSI_ERR_NOMEM;
    }
    m->tokens = T;
    return DSI_OK;
}

dsi_status_t dsn_mtp_forward(dsn_mtp_t *m, const int32_t *next_tokens, const float *hidden,
                             const dsn_seq_batch_t *seqs, int n_seqs, int all_logits, float *logits,
                             float *h_out)
{
    dsn_engine_t *e = m->e;
    const dsn_config_t *c = e->cfg;
    int64_t n = dsn_batch_tokens(seqs, n_seqs), H = c->hidden_size;
    for (int64_t t = 0; t < n; t++) {
        if (next_tokens[t] < 0 || next_tokens[t] >= c->vocab_size) {
            DSI_ERROR("MTP: token id %d outside the vocabulary [0, %d)", next_tokens[t],
                      c->vocab_size);
            return DSI_ERR_INVALID_ARG;
        }
    }
    dsi_status_t st = grow(m, n);
    if (st == DSI_OK)
        st = dsn_engine_reserve(e, seqs, n_seqs);
    if (st != DSI_OK)
        return st;
    /* cat = [enorm(Emb(t_{i+1})) ; hnorm(h_i)]; the embedding goes through the residual buffer. */
    dsn_engine_embed(e, next_tokens, n, m->h);
    for (int64_t t = 0; t < n; t++) {
        e->ops.rmsnorm(m->h + t * H, m->w->enorm, H, c->rms_norm_eps, m->cat + t * 2 * H);
        e->ops.rmsnorm(hidden + t * H, m->w->hnorm, H, c->rms_norm_eps, m->cat + t * 2 * H + H);
    }
    dsn_par_matmul(e, &m->w->eh_proj, 0, H, m->cat, 2 * H, n, m->h, H);
    if (m->remote.begin != NULL)
        st = layer_remote(m, seqs, n_seqs, n);
    else
        st = dsn_engine_layer(e, m->w->layer, seqs, n_seqs, m->h);
    if (st != DSI_OK)
        return st;
    dsn_engine_commit(seqs, n_seqs);
    if (h_out != NULL) {
        for (int64_t t = 0; t < n; t++)
            e->ops.rmsnorm(m->h + t * H, e->w->final_norm, H, c->rms_norm_eps, h_out + t * H);
    }
    int64_t n_rows = 0, t = 0;
    for (int i = 0; i < n_seqs; i++) {
        for (int j = 0; j < seqs[i].n_tokens; j++, t++) {
            if (all_logits || j == seqs[i].n_tokens - 1)
                m->rows[n_rows++] = t;
        }
    }
    dsn_engine_head(e, m->h, m->rows, n_rows, logits);
    return DSI_OK;
}
