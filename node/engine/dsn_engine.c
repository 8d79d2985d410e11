#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dsi_log.h"
#include "dsn_engine_impl.h"
#include "dsn_moe.h"

static dsi_status_t engine_create(const dsn_weights_t *weights, dsk_level_t level, int n_threads,
                                  dsi_pool_t *pool, dsn_engine_t **out)
{
    const dsn_config_t *c = &weights->cfg;
    dsn_engine_t *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return DSI_ERR_NOMEM;
    e->w = weights;
    e->cfg = c;
    dsk_ops_init(&e->ops, level);
    e->own_pool = pool == NULL;
    e->pool = pool != NULL ? pool : dsi_pool_create(n_threads);
    e->rope_freqs = malloc((size_t)(c->qk_rope_head_dim / 2) * sizeof(float));
    if (e->pool == NULL || e->rope_freqs == NULL) {
        dsn_engine_destroy(e);
        return DSI_ERR_NOMEM;
    }
    const dsk_yarn_t *yarn = c->has_yarn ? &c->yarn : NULL;
    dsk_rope_freqs(c->qk_rope_head_dim, c->rope_theta, yarn, e->rope_freqs);
    e->rope_factor = dsk_rope_attn_factor(yarn);
    e->softmax_scale =
        (float)(1.0 / sqrt((double)dsn_config_qk_head_dim(c))) * dsk_yarn_softmax_mscale(yarn);
    e->router = dsn_config_router(c);
    e->kv_row = c->kv_lora_rank + c->qk_rope_head_dim;
    int n_ones = (e->kv_row + DSK_FP8_BLOCK - 1) / DSK_FP8_BLOCK;
    e->kv_ones = malloc((size_t)n_ones * sizeof(float));
    if (e->kv_ones == NULL || dsn_engine_set_kv(e, DSN_KV_F32, 0) != DSI_OK) {
        dsn_engine_destroy(e);
        return DSI_ERR_NOMEM;
    }
    for (int i = 0; i < n_ones; i++)
        e->kv_ones[i] = 1.0f;
    int64_t shared = (int64_t)c->n_shared_experts * c->moe_intermediate_size;
    e->ffn_width = c->intermediate_size;
    if (shared > e->ffn_width)
        e->ffn_width = shared;
    if (c->moe_intermediate_size > e->ffn_width)
        e->ffn_width = c->moe_intermediate_size;
    DSI_DEBUG("engine: kernels %s, %d threads, softmax scale %.6f", dsk_level_name(e->ops.level),
              dsi_pool_threads(e->pool), (double)e->softmax_scale);
    *out = e;
    return DSI_OK;
}

dsi_status_t dsn_engine_create(const dsn_weights_t *weights, dsk_level_t level, int n_threads,
                               dsn_engine_t **out)
{
    return engine_create(weights, level, n_threads, NULL, out);
}

dsi_status_t dsn_engine_create_beside(const dsn_weights_t *weights, dsn_engine_t *other,
                                      dsn_engine_t **out)
{
    return engine_create(weights, other->ops.level, 0, other->pool, out);
}

static void scratch_free(dsn_scratch_t *s)
{
    free(s->x);
    free(s->q);
    free(s->qa);
    free(s->kva);
    free(s->qfull);
    free(s->olat);
    free(s->o);
    free(s->attn);
    free(s->scores);
    free(s->ffn_a);
    free(s->ffn_b);
    free(s->gather);
    free(s->expert_y);
    free(s->slots);
    free(s->shared);
    free(s->router_logits);
    free(s->route_experts);
    free(s->route_weights);
    free(s->pair_token);
    free(s->pair_index);
    free(s->tok_seq);
    free(s->tok_pos);
    free(s->h);
    free(s->rows);
    free(s->mla);
    memset(s, 0, sizeof(*s));
}

void dsn_engine_destroy(dsn_engine_t *e)
{
    if (e == NULL)
        return;
    scratch_free(&e->s);
    if (e->own_pool)
        dsi_pool_destroy(e->pool);
    free(e->rope_freqs);
    free(e->kv_ones);
    dsn_kvpool_release(e->kvpool);
    free(e);
}

const dsn_weights_t *dsn_engine_weights(const dsn_engine_t *e)
{
    return e->w;
}

const dsk_ops_t *dsn_engine_ops(const dsn_engine_t *e)
{
    return &e->ops;
}

dsi_pool_t *dsn_engine_pool(dsn_engine_t *e)
{
    return e->pool;
}

void dsn_engine_set_trace(dsn_engine_t *e, const dsn_trace_t *trace)
{
    if (trace != NULL)
        e->trace = *trace;
    else
        memset(&e->trace, 0, sizeof(e->trace));
}

void dsn_engine_set_mla(dsn_engine_t *e, dsn_mla_mode_t mode)
{
    e->mla = mode;
}

void dsn_engine_set_phase_clock(dsn_engine_t *e, int64_t ns[DSN_PHASE_COUNT])
{
    e->phase_ns = ns;
}

const char *dsn_phase_name(dsn_phase_t phase)
{
    static const char *const names[DSN_PHASE_COUNT] = {"attention", "dense",  "router",
                                                       "experts",   "shared", "head"};
    return phase >= 0 && phase < DSN_PHASE_COUNT ? names[phase] : "?";
}

dsi_status_t dsn_engine_set_kv(dsn_engine_t *e, dsn_kv_dtype_t dtype, int64_t max_blocks)
{
    int n_layers = e->w->slice.end_layer - e->w->slice.first_layer;
    dsn_kvpool_t *p = NULL;
    dsi_status_t st = dsn_kvpool_create(n_layers, e->kv_row, dtype, max_blocks, &p);
    if (st != DSI_OK)
        return st;
    dsn_kvpool_release(e->kvpool);
    e->kvpool = p;
    return DSI_OK;
}

dsn_kvpool_t *dsn_engine_kvpool(const dsn_engine_t *e)
{
    return e->kvpool;
}

dsi_status_t dsn_engine_kvcache_create(const dsn_engine_t *e, int64_t max_tokens,
                                       dsn_kvcache_t **out)
{
    /* No position beyond the model's trained range: a longer sequence fails with a clear error
     * when it gets there (dsn_kvcache_reserve) instead of running on with meaningless RoPE. */
    int64_t mpe = e->w->cfg.max_position_embeddings;
    if (mpe > 0 && max_tokens > mpe)
        max_tokens = mpe;
    return dsn_kvcache_create(e->kvpool, max_tokens, out);
}

static int grow(void **p, size_t bytes)
{
    void *q = realloc(*p, bytes > 0 ? bytes : 1);
    if (q == NULL)
        return -1;
    *p = q;
    return 0;
}

dsi_status_t dsn_engine_scratch(dsn_engine_t *e, int64_t tokens, int64_t ctx)
{
    dsn_scratch_t *s = &e->s;
    const dsn_config_t *c = e->cfg;
    size_t heads = (size_t)c->num_attention_heads, f = sizeof(float);
    if (ctx > s->ctx) {
        /* Only the scores depend on the context; they grow by doubling (the caches grow by a
         * block at a time), never per token. */
        if (s->ctx > 0 && ctx < 2 * s->ctx)
            ctx = 2 * s->ctx;
        if (grow((void **)&s->scores, heads * (size_t)ctx * f) != 0) {
            DSI_ERROR("out of memory for attention scores over %lld positions", (long long)ctx);
            return DSI_ERR_NOMEM;
        }
        s->ctx = ctx;
    }
    if (tokens <= s->tokens)
        return DSI_OK;
    int64_t T = tokens;
    /* Grow geometrically so a stream of slightly larger batches does not realloc every step. */
    if (T < 2 * s->tokens)
        T = 2 * s->tokens;
    size_t H = (size_t)c->hidden_size;
    size_t qk = (size_t)dsn_config_qk_head_dim(c), row = (size_t)e->kv_row;
    size_t K = (size_t)(c->num_experts_per_tok > 0 ? c->num_experts_per_tok : 1);
    size_t qa = (size_t)(c->q_lora_rank > 0 ? c->q_lora_rank : 1);
    size_t t = (size_t)T;
    int fail = 0;
    fail |= grow((void **)&s->x, t * H * f);
    fail |= grow((void **)&s->q, t * heads * qk * f);
    fail |= grow((void **)&s->qa, t * qa * f);
    fail |= grow((void **)&s->kva, t * row * f);
    fail |= grow((void **)&s->qfull, t * heads * row * f);
    fail |= grow((void **)&s->olat, t * heads * row * f);
    fail |= grow((void **)&s->o, t * heads * (size_t)c->v_head_dim * f);
    fail |= grow((void **)&s->attn, t * H * f);
    fail |= grow((void **)&s->ffn_a, t * K * (size_t)e->ffn_width * f);
    fail |= grow((void **)&s->ffn_b, t * K * (size_t)e->ffn_width * f);
    fail |= grow((void **)&s->gather, t * K * H * f);
    fail |= grow((void **)&s->expert_y, t * K * H * f);
    fail |= grow((void **)&s->slots, t * K * H * f);
    fail |= grow((void **)&s->shared, t * H * f);
    fail |= grow((void **)&s->router_logits, t * (size_t)(c->n_routed_experts + 1) * f);
    fail |= grow((void **)&s->route_experts, t * K * sizeof(int32_t));
    fail |= grow((void **)&s->route_weights, t * K * f);
    fail |= grow((void **)&s->pair_token, t * K * sizeof(int32_t));
    fail |= grow((void **)&s->pair_index, t * K * sizeof(int32_t));
    fail |= grow((void **)&s->tok_seq, 2 * t * sizeof(int32_t));
    fail |= grow((void **)&s->tok_pos, 2 * t * sizeof(int64_t));
    fail |= grow((void **)&s->h, t * H * f);
    fail |= grow((void **)&s->rows, t * sizeof(int64_t));
    if (fail) {
        DSI_ERROR("out of memory for a batch of %lld tokens", (long long)T);
        return DSI_ERR_NOMEM;
    }
    s->tokens = T;
    return DSI_OK;
}

typedef struct {
    dsn_engine_t *e;
    const dsk_matrix_t *w;
    int64_t r0;
    const float *x;
    int64_t ldx, n;
    float *y;
    int64_t ldy;
    int64_t unit, r1; /* rows per pool index (16: whole blocks of repacked int4); the last row */
} par_matmul_t;

static void par_matmul_task(void *arg, int64_t begin, int64_t end)
{
    par_matmul_t *p = arg;
    begin *= p->unit;
    end = p->r0 + end * p->unit < p->r1 ? end * p->unit : p->r1 - p->r0;
    p->e->ops.matmul[p->w->dtype](p->w, p->r0 + begin, p->r0 + end, p->x, p->ldx, p->n,
                                  p->y + begin, p->ldy);
}

int64_t dsn_par_matmul_grain(int64_t cols, int64_t n)
{
    int64_t grain = DSN_CHUNK_WORK / (cols * (n < 8 ? n : 8) + 1);
    return grain < 8 ? 8 : grain;
}

void dsn_par_matmul(dsn_engine_t *e, const dsk_matrix_t *w, int64_t r0, int64_t r1, const float *x,
                    int64_t ldx, int64_t n, float *y, int64_t ldy)
{
    /* int4 repacked in blocks of 16 rows: threads take whole blocks (no block computed twice) */
    const int64_t unit =
        w->layout == DSK_LAYOUT_Q4_L16 && r0 % DSK_Q4L_ROWS == 0 ? DSK_Q4L_ROWS : 1;
    par_matmul_t p = {e, w, r0, x, ldx, n, y, ldy, unit, r1};
    const int64_t items = (r1 - r0 + unit - 1) / unit;
    const int64_t grain = (dsn_par_matmul_grain(w->cols, n) + unit - 1) / unit;
    /* Chunks claimed as threads get to them: a late thread takes fewer, and one that claims
     * none is not waited for. f32-activation slots: 4 a thread; int8-activation slots (which
     * quantize x in every call): 1. */
    const int per_thread = dsk_matmul_chunks_per_thread(&e->ops, w, n);
    dsi_pool_run_dynamic(e->pool, items, grain, per_thread, par_matmul_task, &p);
}

int64_t dsn_batch_tokens(const dsn_seq_batch_t *seqs, int n_seqs)
{
    int64_t n = 0;
    for (int i = 0; i < n_seqs; i++)
        n += seqs[i].n_tokens;
    return n;
}

void dsn_engine_embed(dsn_engine_t *e, const int32_t *tokens, int64_t n, float *h)
{
    int64_t H = e->cfg->hidden_size;
    for (int64_t t = 0; t < n; t++)
        dsk_matrix_row_f32(&e->w->embed, tokens[t], h + t * H);
}

dsi_status_t dsn_engine_reserve(dsn_engine_t *e, const dsn_seq_batch_t *seqs, int n_seqs)
{
    int64_t n = dsn_batch_tokens(seqs, n_seqs), ctx = 0;
    for (int i = 0; i < n_seqs; i++) {
        int64_t end = seqs[i].pos + seqs[i].n_tokens;
        if (seqs[i].n_tokens < 1 || seqs[i].pos != seqs[i].kv->length) {
            DSI_ERROR("batch sequence %d: %d tokens at position %lld, cache holds %lld", i,
                      seqs[i].n_tokens, (long long)seqs[i].pos, (long long)seqs[i].kv->length);
            return DSI_ERR_INVALID_ARG;
        }
        dsi_status_t st = dsn_kvcache_reserve(seqs[i].kv, end);
        if (st != DSI_OK)
            return st;
        /* The scores' room follows the caches' capacity (>= end), not every new position. */
        ctx = seqs[i].kv->capacity > ctx ? seqs[i].kv->capacity : ctx;
    }
    dsi_status_t st = dsn_engine_scratch(e, n, ctx);
    if (st != DSI_OK)
        return st;
    int64_t t = 0;
    for (int i = 0; i < n_seqs; i++) {
        for (int j = 0; j < seqs[i].n_tokens; j++, t++) {
            e->s.tok_seq[t] = i;
            e->s.tok_pos[t] = seqs[i].pos + j;
        }
    }
    return DSI_OK;
}

void dsn_engine_commit(const dsn_seq_batch_t *seqs, int n_seqs)
{
    for (int i = 0; i < n_seqs; i++)
        dsn_kvcache_advance(seqs[i].kv, seqs[i].pos + seqs[i].n_tokens);
}

dsi_status_t dsn_engine_ffn_start(dsn_engine_t *e, int layer, int64_t n, float *h,
                                  const dsn_ffn_step_t *step, const dsn_ffn_remote_t *remote,
                                  int *pending)
{
    const dsn_layer_t *ly = &e->w->layers[layer];
    const dsn_config_t *c = e->cfg;
    int64_t H = c->hidden_size;
    float *u = step->u;
    *pending = 0;
    for (int64_t t = 0; t < n; t++)
        e->ops.rmsnorm(h + t * H, ly->post_attn_norm, H, c->rms_norm_eps, u + t * H);
    int64_t t0 = dsn_phase_start(e);
    if (!ly->is_moe) {
        /* The dense output goes through the shared-expert buffer, then into h. */
        dsn_ffn_dense(e, layer, u, n, step->shared);
        dsn_phase_stop(e, DSN_PHASE_DENSE, t0);
        for (int64_t t = 0; t < n * H; t++)
            h[t] += step->shared[t];
        return DSI_OK;
    }
    int64_t K = c->num_experts_per_tok;
    dsn_moe_route(e, layer, u, n, step->experts, step->weights);
    dsn_phase_stop(e, DSN_PHASE_ROUTER, t0);
    if (e->trace.on_route != NULL)
        e->trace.on_route(e->trace.ctx, layer, step->experts, step->weights, n);
    for (int64_t i = 0; i < n * K; i++)
        step->pair_token[i] = (int32_t)(i / K);
    int waiting = 0;
    if (remote != NULL) {
        waiting = remote->send(remote->ctx, layer, step, n);
        if (waiting < 0)
            return DSI_ERR_NOMEM;
    }
    t0 = dsn_phase_start(e);
    if (dsn_moe_experts(e, layer, u, step->pair_token, step->experts, step->weights, n * K,
                        step->slots) < 0)
        return DSI_ERR_NOMEM;
    dsn_phase_stop(e, DSN_PHASE_EXPERTS, t0);
    t0 = dsn_phase_start(e);
    dsn_moe_shared(e, layer, u, n, step->shared);
    dsn_phase_stop(e, DSN_PHASE_SHARED, t0);
    *pending = waiting;
    if (waiting == 0)
        dsn_engine_ffn_finish(e, n, step, h);
    return DSI_OK;
}

void dsn_engine_ffn_finish(dsn_engine_t *e, int64_t n, const dsn_ffn_step_t *step, float *h)
{
    dsn_moe_combine(e, n, step->slots, step->shared, h);
}

dsi_status_t dsn_engine_ffn(dsn_engine_t *e, int layer, int64_t n, float *h)
{
    /* The engine's scratch; u must not alias h's rows, and the dense output must not alias u. */
    dsn_ffn_step_t step = {e->s.x,          e->s.route_experts, e->s.route_weights,
                           e->s.pair_token, e->s.slots,         e->s.shared};
    int pending;
    return dsn_engine_ffn_start(e, layer, n, h, &step, NULL, &pending);
}

dsi_status_t dsn_engine_layer(dsn_engine_t *e, int layer, const dsn_seq_batch_t *seqs, int n_seqs,
                              float *h)
{
    dsi_status_t st = dsn_engine_attention(e, layer, seqs, n_seqs, h);
    if (st != DSI_OK)
        return st;
    return dsn_engine_ffn(e, layer, dsn_batch_tokens(seqs, n_seqs), h);
}

void dsn_engine_head(dsn_engine_t *e, const float *h, const int64_t *rows, int64_t n_rows,
                     float *logits)
{
    const dsn_config_t *c = e->cfg;
    int64_t H = c->hidden_size;
    int64_t t0 = dsn_phase_start(e);
    /* x has room for every token of the batch, and n_rows never exceeds them. */
    for (int64_t i = 0; i < n_rows; i++)
        e->ops.rmsnorm(h + rows[i] * H, e->w->final_norm, H, c->rms_norm_eps, e->s.x + i * H);
    dsn_par_matmul(e, &e->w->lm_head, 0, c->vocab_size, e->s.x, H, n_rows, logits, c->vocab_size);
    dsn_phase_stop(e, DSN_PHASE_HEAD, t0);
}

dsi_status_t dsn_engine_forward(dsn_engine_t *e, const int32_t *tokens, const dsn_seq_batch_t *seqs,
                                int n_seqs, int all_logits, float *logits)
{
    const dsn_slice_t *sl = &e->w->slice;
    const dsn_config_t *c = e->cfg;
    if (!sl->has_embed || !sl->has_head || sl->first_layer != 0 ||
        sl->end_layer != c->num_hidden_layers) {
        DSI_ERROR("dsn_engine_forward needs the whole model; this engine holds a slice");
        return DSI_ERR_INVALID_ARG;
    }
    int64_t n = dsn_batch_tokens(seqs, n_seqs);
    for (int64_t t = 0; t < n; t++) {
        if (tokens[t] < 0 || tokens[t] >= c->vocab_size) {
            DSI_ERROR("token id %d outside the vocabulary [0, %d)", tokens[t], c->vocab_size);
            return DSI_ERR_INVALID_ARG;
        }
    }
    dsi_status_t st = dsn_engine_reserve(e, seqs, n_seqs);
    if (st != DSI_OK)
        return st;
    int64_t H = c->hidden_size;
    /* Scratch, not per call: a decode step allocates nothing. */
    float *h = e->s.h;
    int64_t *rows = e->s.rows;
    int64_t n_rows = 0;
    for (int i = 0, t = 0; i < n_seqs; i++) {
        for (int j = 0; j < seqs[i].n_tokens; j++, t++) {
            if (all_logits || j == seqs[i].n_tokens - 1)
                rows[n_rows++] = t;
        }
    }
    /* Only the rows of the logits leave the last layer: its queries, attention and feed-forward
     * run for those alone (every token's KV is still cached). Tracing sees every row. */
    int trim = n_rows < n && e->trace.on_hidden == NULL && e->trace.on_route == NULL;
    int last = c->num_hidden_layers - 1;
    dsn_engine_embed(e, tokens, n, h);
    if (e->trace.on_hidden != NULL)
        e->trace.on_hidden(e->trace.ctx, 0, h, n);
    for (int l = 0; l < c->num_hidden_layers && st == DSI_OK; l++) {
        if (trim && l == last) {
            st = dsn_engine_attention_rows(e, l, seqs, n_seqs, h, rows, n_rows);
            if (st != DSI_OK)
                break;
            for (int64_t i = 0; i < n_rows; i++) {
                if (rows[i] != i)
                    memmove(h + i * H, h + rows[i] * H, (size_t)H * sizeof(float));
                rows[i] = i;
            }
            st = dsn_engine_ffn(e, l, n_rows, h);
            continue;
        }
        st = dsn_engine_layer(e, l, seqs, n_seqs, h);
        if (st == DSI_OK && e->trace.on_hidden != NULL && l + 1 < c->num_hidden_layers)
            e->trace.on_hidden(e->trace.ctx, l + 1, h, n);
    }
    if (st == DSI_OK) {
        dsn_engine_commit(seqs, n_seqs);
        if (e->trace.on_hidden != NULL) {
            /* Tracing only (tests, tools): an allocation here is fine. */
            float *normed = malloc((size_t)(n * H) * sizeof(float));
            if (normed != NULL) {
                for (int64_t t = 0; t < n; t++)
                    e->ops.rmsnorm(h + t * H, e->w->final_norm, H, c->rms_norm_eps, normed + t * H);
                e->trace.on_hidden(e->trace.ctx, c->num_hidden_layers, normed, n);
                free(normed);
            }
        }
        dsn_engine_head(e, h, rows, n_rows, logits);
    }
    return st;
}
