#include "dsn_spec.h"

#include <stdlib.h>
#include <string.h>

#include "dsi_clock.h"
#include "dsi_log.h"

struct dsn_spec {
    dsn_engine_t *main;
    dsn_mtp_t *mtp;
    int k;
    int64_t H, V;
    dsn_spec_stats_t stats;
    /* scratch, grown to the largest batch */
    int64_t cap_tokens;   /* rows of the token-sized buffers */
    int cap_seqs;         /* sequences of the per-sequence buffers */
    float *h;             /* [tokens, H] residual stream */
    float *hidden;        /* [tokens, H] after model.norm / shared_head.norm */
    float *logits;        /* [tokens, V] */
    int32_t *tokens;      /* [tokens] */
    float *mtp_h;         /* [seqs, H] the module's own hidden state for its next draft */
    float *q;             /* [seqs * k, V] draft distributions (sampling only) */
    float *p;             /* [V] a target distribution */
    float *row;           /* [V] a processed row */
    int32_t *drafts;      /* [seqs * k] */
    dsn_seq_batch_t *batch; /* [seqs] */
    int64_t *last_row;      /* [seqs] */
};

void dsn_spec_seq_init(dsn_spec_seq_t *q, dsn_kvcache_t *kv, dsn_kvcache_t *mtp_kv,
                       dsn_sampler_t *sampler)
{
    memset(q, 0, sizeof(*q));
    q->kv = kv;
    q->mtp_kv = mtp_kv;
    q->sampler = sampler;
    q->last = -1;
}

void dsn_spec_seq_cleanup(dsn_spec_seq_t *q)
{
    free(q->dist);
    q->dist = NULL;
    free(q->pend_h);
    free(q->pend_tok);
    q->pend_h = NULL;
    q->pend_tok = NULL;
    q->n_pend = q->pend_cap = 0;
}

dsi_status_t dsn_spec_seq_own_dists(const dsn_spec_t *s, dsn_spec_seq_t *q)
{
    if (q->dist != NULL)
        return DSI_OK;
    q->dist = malloc((size_t)s->k * (size_t)s->V * sizeof(float));
    if (q->dist == NULL) {
        DSI_ERROR("speculative decoding: out of memory for a sequence's draft distributions");
        return DSI_ERR_NOMEM;
    }
    return DSI_OK;
}

/* Where sequence q (index i of its batch) keeps its draft distribution of position k. */
static float *dist_of(const dsn_spec_t *s, const dsn_spec_seq_t *q, int i, int k)
{
    if (q->dist != NULL)
        return q->dist + (int64_t)k * s->V;
    return s->q + ((int64_t)i * s->k + k) * s->V;
}

dsi_status_t dsn_spec_create(dsn_engine_t *main, dsn_mtp_t *mtp, int k, dsn_spec_t **out)
{
    if (k < 1 || k > DSN_SPEC_MAX_K) {
        DSI_ERROR("speculative decoding: %d draft tokens per step, not in [1, %d]", k,
                  DSN_SPEC_MAX_K);
        return DSI_ERR_INVALID_ARG;
    }
    dsn_spec_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return DSI_ERR_NOMEM;
    s->main = main;
    s->mtp = mtp;
    s->k = k;
    s->H = dsn_engine_weights(main)->cfg.hidden_size;
    s->V = dsn_engine_weights(main)->cfg.vocab_size;
    s->p = malloc((size_t)s->V * sizeof(float));
    s->row = malloc((size_t)s->V * sizeof(float));
    if (s->p == NULL || s->row == NULL) {
        dsn_spec_destroy(s);
        return DSI_ERR_NOMEM;
    }
    *out = s;
    return DSI_OK;
}

void dsn_spec_destroy(dsn_spec_t *s)
{
    if (s == NULL)
        return;
    free(s->h);
    free(s->hidden);
    free(s->logits);
    free(s->tokens);
    free(s->mtp_h);
    free(s->q);
    free(s->p);
    free(s->row);
    free(s->drafts);
    free(s->batch);
    free(s->last_row);
    free(s);
}

int dsn_spec_k(const dsn_spec_t *s)
{
    return s->k;
}

const dsn_spec_stats_t *dsn_spec_stats(const dsn_spec_t *s)
{
    return &s->stats;
}

void dsn_spec_count_verify(dsn_spec_t *s, int64_t ns)
{
    s->stats.verify_ns += ns;
}

static int grow(void **p, size_t bytes)
{
    void *q = realloc(*p, bytes > 0 ? bytes : 1);
    if (q == NULL)
        return -1;
    *p = q;
    return 0;
}

static dsi_status_t scratch(dsn_spec_t *s, int64_t tokens, int n_seqs)
{
    size_t f = sizeof(float), H = (size_t)s->H, V = (size_t)s->V;
    if (tokens > s->cap_tokens) {
        int64_t T = tokens < 2 * s->cap_tokens ? 2 * s->cap_tokens : tokens;
        size_t t = (size_t)T;
        int fail = grow((void **)&s->h, t * H * f) | grow((void **)&s->hidden, t * H * f) |
                   grow((void **)&s->logits, t * V * f) |
                   grow((void **)&s->tokens, t * sizeof(int32_t));
        if (fail)
            goto nomem;
        s->cap_tokens = T;
    }
    if (n_seqs > s->cap_seqs) {
        size_t n = (size_t)n_seqs, K = (size_t)s->k;
        int fail = grow((void **)&s->mtp_h, n * H * f) | grow((void **)&s->q, n * K * V * f) |
                   grow((void **)&s->drafts, n * K * sizeof(int32_t)) |
                   grow((void **)&s->batch, n * sizeof(dsn_seq_batch_t)) |
                   grow((void **)&s->last_row, n * sizeof(int64_t));
        if (fail)
            goto nomem;
        s->cap_seqs = n_seqs;
    }
    return DSI_OK;
nomem:
    DSI_ERROR("speculative decoding: out of memory for a batch of %lld tokens",
              (long long)tokens);
    return DSI_ERR_NOMEM;
}

dsi_status_t dsn_spec_main_forward(dsn_engine_t *e, const int32_t *tokens,
                                   const dsn_seq_batch_t *seqs, int n_seqs, float *h,
                                   float *hidden, float *logits)
{
    const dsn_weights_t *w = dsn_engine_weights(e);
    const dsn_config_t *c = &w->cfg;
    int64_t n = dsn_batch_tokens(seqs, n_seqs), H = c->hidden_size;
    for (int64_t t = 0; t < n; t++) {
        if (tokens[t] < 0 || tokens[t] >= c->vocab_size) {
            DSI_ERROR("token id %d outside the vocabulary [0, %d)", tokens[t], c->vocab_size);
            return DSI_ERR_INVALID_ARG;
        }
    }
    dsi_status_t st = dsn_engine_reserve(e, seqs, n_seqs);
    if (st != DSI_OK)
        return st;
    dsn_engine_embed(e, tokens, n, h);
    for (int l = 0; l < c->num_hidden_layers && st == DSI_OK; l++)
        st = dsn_engine_layer(e, l, seqs, n_seqs, h);
    if (st != DSI_OK)
        return st;
    dsn_engine_commit(seqs, n_seqs);
    const dsk_ops_t *ops = dsn_engine_ops(e);
    for (int64_t t = 0; t < n; t++)
        ops->rmsnorm(h + t * H, w->final_norm, H, c->rms_norm_eps, hidden + t * H);
    int64_t rows[64];
    for (int64_t t0 = 0; t0 < n; t0 += 64) {
        int64_t m = n - t0 < 64 ? n - t0 : 64;
        for (int64_t i = 0; i < m; i++)
            rows[i] = t0 + i;
        dsn_engine_head(e, h, rows, m, logits + t0 * c->vocab_size);
    }
    return DSI_OK;
}

/* Room for n more pending rows of q. */
static dsi_status_t pend_room(dsn_spec_seq_t *q, int64_t H, int n)
{
    if (q->n_pend + n <= q->pend_cap)
        return DSI_OK;
    int cap = q->n_pend + n;
    if (cap < 2 * q->pend_cap)
        cap = 2 * q->pend_cap;
    if (grow((void **)&q->pend_h, (size_t)cap * (size_t)H * sizeof(float)) != 0 ||
        grow((void **)&q->pend_tok, (size_t)cap * sizeof(int32_t)) != 0) {
        DSI_ERROR("speculative decoding: out of memory for %d hidden states", cap);
        return DSI_ERR_NOMEM;
    }
    q->pend_cap = cap;
    return DSI_OK;
}

/* Runs the module over every pending pair of each sequence whose next token is known, except
 * the last `keep` rows; with logits / h_out of each sequence's last row processed. */
static dsi_status_t run_pending(dsn_spec_t *s, dsn_spec_seq_t *const *seqs, int n_seqs, int keep,
                                float *logits, float *h_out)
{
    int64_t H = s->H, n = 0;
    int nb = 0;
    for (int i = 0; i < n_seqs; i++) {
        int m = seqs[i]->n_pend - keep;
        if (m > 0)
            n += m;
    }
    if (n == 0)
        return DSI_OK;
    dsi_status_t st = scratch(s, n, n_seqs);
    if (st != DSI_OK)
        return st;
    int64_t t = 0;
    for (int i = 0; i < n_seqs; i++) {
        dsn_spec_seq_t *q = seqs[i];
        int m = q->n_pend - keep;
        if (m <= 0)
            continue;
        memcpy(s->hidden + t * H, q->pend_h, (size_t)(m * H) * sizeof(float));
        memcpy(s->tokens + t, q->pend_tok, (size_t)m * sizeof(int32_t));
        s->batch[nb++] = (dsn_seq_batch_t){q->mtp_kv, q->pend_pos, m};
        t += m;
    }
    st = dsn_mtp_forward(s->mtp, s->tokens, s->hidden, s->batch, nb, 0, logits, h_out);
    if (st != DSI_OK)
        return st;
    for (int i = 0; i < n_seqs; i++) {
        dsn_spec_seq_t *q = seqs[i];
        int m = q->n_pend - keep;
        if (m <= 0)
            continue;
        memmove(q->pend_h, q->pend_h + m * H, (size_t)(keep * H) * sizeof(float));
        memmove(q->pend_tok, q->pend_tok + m, (size_t)keep * sizeof(int32_t));
        q->n_pend = keep;
        q->pend_pos += m;
    }
    return DSI_OK;
}

dsi_status_t dsn_spec_prefill(dsn_spec_t *s, dsn_spec_seq_t *q, const int32_t *tokens, int n,
                              float *logits)
{
    int64_t V = s->V;
    if (n < 1) {
        DSI_ERROR("speculative decoding: a prefill chunk of %d tokens", n);
        return DSI_ERR_INVALID_ARG;
    }
    dsi_status_t st = scratch(s, n, 1);
    if (st != DSI_OK)
        return st;
    int64_t pos = q->kv->length;
    dsn_seq_batch_t b = {q->kv, pos, n};
    int64_t t0 = dsi_now_ns();
    st = dsn_spec_main_forward(s->main, tokens, &b, 1, s->h, s->hidden, s->logits);
    s->stats.verify_ns += dsi_now_ns() - t0;
    if (st != DSI_OK)
        return st;
    if (logits != NULL)
        memcpy(logits, s->logits + (int64_t)(n - 1) * V, (size_t)V * sizeof(float));
    return dsn_spec_prefilled(s, q, pos, tokens, n, s->hidden);
}

dsi_status_t dsn_spec_prefilled(dsn_spec_t *s, dsn_spec_seq_t *q, int64_t pos,
                                const int32_t *tokens, int n, const float *hidden)
{
    int64_t H = s->H;
    dsi_status_t st = pend_room(q, H, n);
    if (st != DSI_OK)
        return st;
    if (q->n_pend == 0)
        q->pend_pos = pos;
    /* The previous chunk's last row pairs with this chunk's first token. */
    if (q->n_pend > 0)
        q->pend_tok[q->n_pend - 1] = tokens[0];
    memcpy(q->pend_h + q->n_pend * H, hidden, (size_t)(n * H) * sizeof(float));
    for (int i = 0; i < n; i++)
        q->pend_tok[q->n_pend + i] = i + 1 < n ? tokens[i + 1] : -1;
    q->n_pend += n;
    /* The module's pass over every pair known now (its logits unused): all rows but the last. */
    int64_t t0 = dsi_now_ns();
    st = run_pending(s, &q, 1, 1, s->row, NULL);
    s->stats.draft_ns += dsi_now_ns() - t0;
    return st;
}

/* The controls applied to a raw row into s->row; -1 when the row is not finite. */
static int processed(dsn_spec_t *s, dsn_spec_seq_t *q, const float *raw, uint32_t n_generated)
{
    if (!dsn_logits_finite(raw, (int)s->V))
        return -1;
    memcpy(s->row, raw, (size_t)s->V * sizeof(float));
    dsn_sampler_process(q->sampler, s->row, n_generated);
    return 0;
}

/* The sampling distribution of a processed row (temperature > 0) into dist[V], summing to 1. */
static void distribution(dsn_spec_t *s, dsn_sampler_t *sm, const float *row, float *dist)
{
    int n = dsn_sampler_candidates(sm, row);
    memset(dist, 0, (size_t)s->V * sizeof(float));
    double sum = 0;
    for (int i = 0; i < n; i++)
        sum += sm->probs[sm->order[i]];
    if (n <= 0 || !(sum > 0)) {
        dist[dsn_argmax(row, (int)s->V)] = 1.0f;
        return;
    }
    for (int i = 0; i < n; i++)
        dist[sm->order[i]] = (float)(sm->probs[sm->order[i]] / sum);
}

/* A token drawn from dist[V] (sums to 1, up to rounding) with the sequence's stream. */
static int32_t draw(dsn_spec_t *s, dsn_sampler_t *sm, const float *dist)
{
    double sum = 0;
    for (int64_t v = 0; v < s->V; v++)
        sum += dist[v];
    double r = dsn_sampler_uniform(sm) * sum, acc = 0;
    int32_t last = 0;
    for (int64_t v = 0; v < s->V; v++) {
        if (dist[v] <= 0)
            continue;
        acc += dist[v];
        last = (int32_t)v;
        if (r < acc)
            return (int32_t)v;
    }
    return last;
}

int32_t dsn_spec_first(dsn_spec_t *s, dsn_spec_seq_t *q, float *logits)
{
    if (processed(s, q, logits, q->n_generated) != 0)
        return -1;
    int32_t tok = dsn_sampler_next_masked(q->sampler, s->row);
    dsn_sampler_accept(q->sampler, tok);
    q->n_generated++;
    q->last = tok;
    if (q->n_pend > 0)
        q->pend_tok[q->n_pend - 1] = tok;
    return tok;
}

/* Drafts this step can verify: K, fewer when a sequence's cache is K + 1 positions from its
 * limit (the context's end), 0 at the last position. */
int dsn_spec_step_k(const dsn_spec_t *s, dsn_spec_seq_t *const *seqs, int n_seqs)
{
    int kk = s->k;
    for (int i = 0; i < n_seqs; i++) {
        int64_t room = seqs[i]->kv->max_tokens - seqs[i]->kv->length - 1;
        if (room < kk)
            kk = room > 0 ? (int)room : 0;
    }
    return kk;
}

/* The draft of one row of module logits for sequence i at draft position k. */
static int32_t draft_one(dsn_spec_t *s, dsn_spec_seq_t *q, int i, int k, const float *raw)
{
    memcpy(s->row, raw, (size_t)s->V * sizeof(float));
    /* Non-finite draft logits only make a poor draft: the main model's check is what counts. */
    for (int64_t v = 0; v < s->V; v++) {
        if (!(s->row[v] == s->row[v]) || s->row[v] > 3e38f)
            s->row[v] = -1e30f;
    }
    dsn_sampler_process(q->sampler, s->row, q->n_generated);
    if (q->sampler->params.temperature <= 0.0f)
        return dsn_argmax(s->row, (int)s->V);
    float *dist = dist_of(s, q, i, k);
    distribution(s, q->sampler, s->row, dist);
    return draw(s, q->sampler, dist);
}

dsi_status_t dsn_spec_draft(dsn_spec_t *s, dsn_spec_seq_t *const *seqs, int n_seqs,
                            int32_t *drafts)
{
    int64_t H = s->H, V = s->V;
    int K = s->k;
    int64_t rows = 0;
    for (int i = 0; i < n_seqs; i++) {
        const dsn_spec_seq_t *q = seqs[i];
        if (q->last < 0 || q->n_pend < 1 || q->pend_pos + q->n_pend != q->kv->length ||
            q->mtp_kv->length != q->pend_pos) {
            DSI_ERROR("speculative decoding: sequence %d has no token to continue from", i);
            return DSI_ERR_INVALID_ARG;
        }
        rows += q->n_pend;
    }
    dsi_status_t st = scratch(s, rows, n_seqs);
    if (st != DSI_OK)
        return st;
    int64_t t0 = dsi_now_ns();
    /* The first draft: every pending pair through the module (the pairs of the tokens the last
     * step emitted), logits of each sequence's last row; its hidden state feeds the next draft. */
    int64_t end = 0;
    for (int i = 0; i < n_seqs; i++) {
        end += seqs[i]->n_pend;
        s->last_row[i] = end - 1;
    }
    float *logits = s->logits;
    st = run_pending(s, seqs, n_seqs, 0, logits, s->h);
    if (st != DSI_OK)
        return st;
    for (int i = 0; i < n_seqs; i++) {
        memcpy(s->mtp_h + i * H, s->h + s->last_row[i] * H, (size_t)H * sizeof(float));
        drafts[i * K] = draft_one(s, seqs[i], i, 0, logits + i * V);
    }
    /* Further drafts: the module on its own output and its previous draft. */
    int kk = dsn_spec_step_k(s, seqs, n_seqs);
    for (int k = 1; k < kk; k++) {
        for (int i = 0; i < n_seqs; i++) {
            s->batch[i] = (dsn_seq_batch_t){seqs[i]->mtp_kv, seqs[i]->mtp_kv->length, 1};
            s->tokens[i] = drafts[i * K + k - 1];
        }
        st = dsn_mtp_forward(s->mtp, s->tokens, s->mtp_h, s->batch, n_seqs, 0, logits, s->h);
        if (st != DSI_OK)
            return st;
        memcpy(s->mtp_h, s->h, (size_t)(n_seqs * H) * sizeof(float));
        for (int i = 0; i < n_seqs; i++)
            drafts[i * K + k] = draft_one(s, seqs[i], i, k, logits + i * V);
    }
    s->stats.draft_ns += dsi_now_ns() - t0;
    return DSI_OK;
}

/* The token at verify position j of sequence i (sampling): the draft if accepted, else one drawn
 * from the residual; *accepted says which. s->row holds the processed main row. */
static int32_t judge_sampled(dsn_spec_t *s, dsn_spec_seq_t *q, int i, int j, int kk,
                             int32_t draft, int *accepted)
{
    int64_t V = s->V;
    distribution(s, q->sampler, s->row, s->p);
    *accepted = 0;
    if (j == kk)
        return draw(s, q->sampler, s->p);
    const float *dq = dist_of(s, q, i, j);
    double pd = s->p[draft], qd = dq[draft];
    double u = dsn_sampler_uniform(q->sampler);
    if (qd > 0 && u * qd < pd) {
        *accepted = 1;
        return draft;
    }
    /* Rejected: the residual max(0, p - q), normalised by draw. */
    double sum = 0;
    for (int64_t v = 0; v < V; v++) {
        float r = s->p[v] - dq[v];
        s->p[v] = r > 0 ? r : 0.0f;
        sum += s->p[v];
    }
    if (!(sum > 0)) /* p == q up to rounding: the rejection was rounding; p itself */
        distribution(s, q->sampler, s->row, s->p);
    return draw(s, q->sampler, s->p);
}

int dsn_spec_verify_tokens(const dsn_spec_t *s, dsn_spec_seq_t *const *seqs, int n_seqs,
                           const int32_t *drafts, int32_t *tokens)
{
    int K = s->k, kk = dsn_spec_step_k(s, seqs, n_seqs), B = kk + 1;
    for (int i = 0; i < n_seqs; i++) {
        tokens[i * B] = seqs[i]->last;
        memcpy(tokens + i * B + 1, drafts + i * K, (size_t)kk * sizeof(int32_t));
    }
    return B;
}

dsi_status_t dsn_spec_verify(dsn_spec_t *s, dsn_spec_seq_t *const *seqs, int n_seqs,
                             const int32_t *drafts, int32_t *out, int *n_out, float *out_logits)
{
    /* the batch holds the kk + 1 tokens verified (kk < K only at the context's end) */
    int B = dsn_spec_step_k(s, seqs, n_seqs) + 1;
    dsi_status_t st = scratch(s, (int64_t)n_seqs * B, n_seqs);
    if (st != DSI_OK)
        return st;
    int64_t t0 = dsi_now_ns();
    dsn_spec_verify_tokens(s, seqs, n_seqs, drafts, s->tokens);
    for (int i = 0; i < n_seqs; i++)
        s->batch[i] = (dsn_seq_batch_t){seqs[i]->kv, seqs[i]->kv->length, B};
    st = dsn_spec_main_forward(s->main, s->tokens, s->batch, n_seqs, s->h, s->hidden, s->logits);
    if (st != DSI_OK)
        return st;
    st = dsn_spec_judge(s, seqs, n_seqs, drafts, B, s->logits, s->hidden, out, n_out,
                        out_logits);
    s->stats.verify_ns += dsi_now_ns() - t0;
    return st;
}

dsi_status_t dsn_spec_judge(dsn_spec_t *s, dsn_spec_seq_t *const *seqs, int n_seqs,
                            const int32_t *drafts, int B, const float *logits,
                            const float *hidden, int32_t *out, int *n_out, float *out_logits)
{
    int64_t H = s->H, V = s->V;
    /* drafts and out are laid out by K */
    int K = s->k, W = K + 1, kk = B - 1;
    dsi_status_t st;
    for (int i = 0; i < n_seqs; i++) {
        dsn_spec_seq_t *q = seqs[i];
        int64_t L = q->kv->length - B;
        int m = 0;
        for (int j = 0; j <= kk; j++) {
            const float *raw = logits + ((int64_t)i * B + j) * V;
            if (processed(s, q, raw, q->n_generated) != 0) {
                DSI_ERROR("speculative decoding: sequence %d: the logits hold NaN or infinite "
                          "values (broken weights or scales in the checkpoint?)",
                          i);
                return DSI_ERR_INVALID_ARG;
            }
            int32_t d = j < kk ? drafts[i * K + j] : -1, tok;
            int accepted;
            if (q->sampler->params.temperature <= 0.0f) {
                tok = dsn_argmax(s->row, (int)V);
                accepted = j < kk && tok == d;
            } else {
                tok = judge_sampled(s, q, i, j, kk, d, &accepted);
            }
            if (j < kk) {
                s->stats.drafted[j]++;
                s->stats.accepted[j] += (uint64_t)accepted;
            }
            out[i * W + m] = tok;
            if (out_logits != NULL)
                memcpy(out_logits + ((int64_t)i * W + m) * V, raw, (size_t)V * sizeof(float));
            m++;
            dsn_sampler_accept(q->sampler, tok);
            q->n_generated++;
            if (!accepted)
                break;
        }
        n_out[i] = m;
        s->stats.emitted += (uint64_t)m;
        /* Keep last and the accepted drafts; the module keeps only what real states made. */
        dsn_kvcache_truncate(q->kv, L + m);
        dsn_kvcache_truncate(q->mtp_kv, L);
        q->n_pend = 0;
        q->pend_pos = L;
        st = pend_room(q, H, m);
        if (st != DSI_OK)
            return st;
        memcpy(q->pend_h, hidden + (int64_t)i * B * H, (size_t)(m * H) * sizeof(float));
        memcpy(q->pend_tok, out + i * W, (size_t)m * sizeof(int32_t));
        q->n_pend = m;
        q->last = out[i * W + m - 1];
    }
    s->stats.steps++;
    return DSI_OK;
}

dsi_status_t dsn_spec_step(dsn_spec_t *s, dsn_spec_seq_t *const *seqs, int n_seqs, int32_t *out,
                           int *n_out, float *out_logits)
{
    dsi_status_t st = scratch(s, n_seqs, n_seqs);
    if (st != DSI_OK)
        return st;
    /* The drafts live in s->drafts; verify reads them before anything overwrites them. */
    st = dsn_spec_draft(s, seqs, n_seqs, s->drafts);
    if (st != DSI_OK)
        return st;
    return dsn_spec_verify(s, seqs, n_seqs, s->drafts, out, n_out, out_logits);
}

dsi_status_t dsn_spec_mtp_logits(dsn_engine_t *main, dsn_mtp_t *mtp, const int32_t *tokens, int n,
                                 float *logits)
{
    if (n < 2)
        return DSI_OK;
    const dsn_config_t *c = &dsn_engine_weights(main)->cfg;
    size_t H = (size_t)c->hidden_size, f = sizeof(float);
    float *h = malloc((size_t)n * H * f), *hidden = malloc((size_t)n * H * f);
    float *all = malloc((size_t)n * (size_t)c->vocab_size * f);
    dsn_kvcache_t *kv = NULL, *mkv = NULL;
    dsi_status_t st = DSI_ERR_NOMEM;
    if (h == NULL || hidden == NULL || all == NULL)
        goto out;
    st = dsn_engine_kvcache_create(main, n, &kv);
    if (st == DSI_OK)
        st = dsn_mtp_kvcache_create(mtp, n, &mkv);
    if (st != DSI_OK)
        goto out;
    dsn_seq_batch_t b = {kv, 0, n};
    st = dsn_spec_main_forward(main, tokens, &b, 1, h, hidden, all);
    if (st != DSI_OK)
        goto out;
    dsn_seq_batch_t mb = {mkv, 0, n - 1};
    st = dsn_mtp_forward(mtp, tokens + 1, hidden, &mb, 1, 1, logits, NULL);
out:
    dsn_kvcache_destroy(kv);
    dsn_kvcache_destroy(mkv);
    free(h);
    free(hidden);
    free(all);
    return st;
}

/* ---- prefix cache ---- */

int64_t dsn_spec_attach_module(dsn_spec_seq_t *q, const int32_t *ids, int64_t n_ids, int64_t n)
{
    if (n <= 0)
        return 0;
    int64_t want = (n + DSN_KV_BLOCK - 1) / DSN_KV_BLOCK * DSN_KV_BLOCK, hit = 0;
    if (q->mtp_kv->length == 0 && q->n_pend == 0)
        hit = dsn_kvcache_attach_prefix(q->mtp_kv, ids, n_ids, want);
    int64_t have = hit > 0 ? hit - 1 : 0; /* (the last row is the next block's) */
    if (have > n)
        have = n;
    dsn_kvcache_truncate(q->mtp_kv, have);
    q->pend_pos = have;
    return have;
}

int64_t dsn_spec_attach_prefix(dsn_spec_seq_t *q, const int32_t *ids, int64_t n_ids, int64_t limit)
{
    if (q->kv->length != 0 || q->mtp_kv->length != 0 || q->n_pend != 0)
        return 0;
    int64_t hit = dsn_kvcache_attach_prefix(q->kv, ids, n_ids, limit);
    int64_t keep = hit > 0 ? dsn_spec_attach_module(q, ids, n_ids, hit - 1) : 0;
    dsn_kvcache_truncate(q->kv, keep);
    return keep;
}

void dsn_spec_publish(dsn_spec_seq_t *q)
{
    dsn_kvcache_t *kv = q->kv, *m = q->mtp_kv;
    int64_t known = kv->n_ids < kv->length ? kv->n_ids : kv->length;
    if (m->n_ids > known)
        return; /* (not expected: ids of positions the main cache no longer holds) */
    if (known > m->n_ids)
        dsn_kvcache_set_ids(m, m->n_ids, kv->ids + m->n_ids, known - m->n_ids);
    dsn_kvcache_publish(m);
}
