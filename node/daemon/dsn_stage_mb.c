/*
 * dsn_stage_mb.c - micro-batches through a node's layers: the pool they come from, the layer loop
 * (the engine's attention and feed-forward steps, pausing at a MoE layer while remote experts
 * compute: dsn_dispatch.c), then sampling at the last stage or an ACTIVATION to the next, and the
 * ACTIVATIONs that arrive from the previous stage.
 */
#include <stdio.h>
#include <string.h>

#include "dsi_log.h"
#include "dsn_compute_impl.h"

/* ---- the pool ---- */

static void mb_free(dsn_mb_t *mb)
{
    free(mb->seq);
    free(mb->batch);
    free(mb->tokens);
    free(mb->h);
    free(mb->ffn.u);
    free(mb->ffn.experts);
    free(mb->ffn.weights);
    free(mb->ffn.pair_token);
    free(mb->ffn.slots);
    free(mb->ffn.shared);
    free(mb->pair_dest);
    free(mb->pair_slot);
    free(mb->dest_off);
    free(mb->answered);
    free(mb);
}

/* A new micro-batch with buffers for `cap` tokens of the model and `seqs` sequences. */
static dsn_mb_t *mb_new(const dsn_config_t *cfg, int64_t cap, int64_t seqs_cap)
{
    size_t H = (size_t)cfg->hidden_size,
           K = (size_t)(cfg->num_experts_per_tok > 0 ? cfg->num_experts_per_tok : 1);
    size_t n = (size_t)cap, seqs = (size_t)seqs_cap;
    dsn_mb_t *mb = calloc(1, sizeof(*mb));
    if (mb == NULL)
        return NULL;
    dsi_list_init(&mb->link);
    mb->cap = cap;
    mb->cap_seqs = (int)seqs;
    mb->seq = calloc(seqs, sizeof(dsn_seq_t *));
    mb->batch = calloc(seqs, sizeof(dsn_seq_batch_t));
    mb->tokens = malloc(n * sizeof(int32_t));
    mb->h = malloc(n * H * sizeof(float));
    mb->ffn.u = malloc(n * H * sizeof(float));
    mb->ffn.experts = malloc(n * K * sizeof(int32_t));
    mb->ffn.weights = malloc(n * K * sizeof(float));
    mb->ffn.pair_token = malloc(n * K * sizeof(int32_t));
    mb->ffn.slots = malloc(n * K * H * sizeof(float));
    mb->ffn.shared = malloc(n * H * sizeof(float));
    mb->pair_dest = malloc(n * K * sizeof(uint32_t));
    mb->pair_slot = malloc(n * K * sizeof(int32_t));
    mb->dest_off = malloc((DSN_MAX_PEERS + 1) * sizeof(int32_t));
    mb->answered = malloc(DSN_MAX_PEERS);
    if (!mb->seq || !mb->batch || !mb->tokens || !mb->h || !mb->ffn.u || !mb->ffn.experts ||
        !mb->ffn.weights || !mb->ffn.pair_token || !mb->ffn.slots || !mb->ffn.shared ||
        !mb->pair_dest || !mb->pair_slot || !mb->dest_off || !mb->answered) {
        mb_free(mb);
        return NULL;
    }
    return mb;
}

dsn_mb_t *dsn_mb_get(dsn_compute_t *c, int n_seqs, int64_t n)
{
    dsn_mb_t *mb = NULL;
    dsi_list_for_each(m, &c->free_mbs, dsn_mb_t, link) {
        if (m->cap >= n && m->cap_seqs >= n_seqs) {
            mb = m;
            break;
        }
    }
    if (mb != NULL) {
        dsi_list_remove(&mb->link);
    } else {
        /* Sized for the batch-token limit, so the first few micro-batches fill the pool and the
         * rest reuse it; a larger one (an ACTIVATION from a node with a higher limit) joins it. */
        int64_t cap = n > c->opts->max_batch_tokens ? n : c->opts->max_batch_tokens;
        int64_t seqs = cap < DSN_MAX_BATCH_SEQS ? cap : DSN_MAX_BATCH_SEQS;
        mb = mb_new(&c->weights->cfg, cap, seqs > n_seqs ? seqs : n_seqs);
        if (mb == NULL)
            return NULL;
    }
    mb->id = ++c->next_mb_id;
    mb->n_seqs = n_seqs;
    mb->n = n;
    mb->layer = 0;
    mb->pending = 0;
    mb->spec = 0;
    return mb;
}

void dsn_mb_put(dsn_compute_t *c, dsn_mb_t *mb)
{
    dsi_list_push_front(&c->free_mbs, &mb->link); /* most recently used first: warm in cache */
}

void dsn_mb_pool_cleanup(dsn_compute_t *c)
{
    dsi_list_t *e;
    while ((e = dsi_list_pop_front(&c->parked)) != NULL)
        mb_free(dsi_container_of(e, dsn_mb_t, link));
    while ((e = dsi_list_pop_front(&c->free_mbs)) != NULL)
        mb_free(dsi_container_of(e, dsn_mb_t, link));
}

/* ---- the layer loop ---- */

static void finish_mb(dsn_compute_t *c, dsn_mb_t *mb);

static void fail_mb(dsn_compute_t *c, dsn_mb_t *mb, const char *what)
{
    DSI_ERROR("micro-batch %llu failed at layer %d: %s", (unsigned long long)mb->id, mb->layer,
              what);
    mb->layer = -1;
    finish_mb(c, mb);
}

/* Whether every sequence of mb stays within its context limit (so a failed reserve means a full
 * KV pool, not a sequence too long). */
static int within_context(const dsn_mb_t *mb)
{
    for (int i = 0; i < mb->n_seqs; i++) {
        const dsn_seq_batch_t *b = &mb->batch[i];
        if (b->pos + b->n_tokens > b->kv->max_tokens)
            return 0;
    }
    return 1;
}

/* The pool ran out under a micro-batch (a later stage, or more growth than stage 0 counted):
 * every sequence of it is preempted; the coordinator submits them again. */
static void preempt_mb(dsn_compute_t *c, dsn_mb_t *mb)
{
    for (int i = 0; i < mb->n_seqs; i++) {
        mb->seq[i]->in_flight = 0;
        dsn_stage_preempt(c, mb->seq[i]);
        if (mb->seq[i]->remove_after)
            dsn_seq_remove(c, mb->seq[i]->id);
    }
    dsn_mb_put(c, mb);
}

void dsn_mb_run(dsn_compute_t *c, dsn_mb_t *mb)
{
    dsn_engine_t *e = c->engine;
    while (mb->layer < c->end_layer) {
        int l = mb->layer;
        dsi_status_t st = dsn_engine_reserve(e, mb->batch, mb->n_seqs);
        if (st == DSI_ERR_CAPACITY && within_context(mb)) {
            preempt_mb(c, mb); /* this node's KV pool is full */
            return;
        }
        if (st != DSI_OK || dsn_engine_attention(e, l, mb->batch, mb->n_seqs, mb->h) != DSI_OK) {
            fail_mb(c, mb, "attention");
            return;
        }
        dsn_dispatch_ctx_t dc = {c, mb};
        dsn_ffn_remote_t remote = {dsn_dispatch_send, &dc};
        int pending = 0;
        if (dsn_engine_ffn_start(e, l, mb->n, mb->h, &mb->ffn, &remote, &pending) != DSI_OK) {
            fail_mb(c, mb, "out of memory in the feed-forward step");
            return;
        }
        if (pending > 0) {
            dsi_list_push_back(&c->parked, &mb->link); /* dsn_dispatch_combine resumes it */
            return;
        }
        mb->layer++;
    }
    finish_mb(c, mb);
}

void dsn_mb_resume(dsn_compute_t *c, dsn_mb_t *mb)
{
    dsn_engine_ffn_finish(c->engine, mb->n, &mb->ffn, mb->h);
    mb->layer++;
    dsn_mb_run(c, mb);
}

/* ---- leaving the slice ---- */

void dsn_stage_dump_logits(const char *dir, uint64_t seq_id, const float *logits, int64_t V)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/seq-%llu.f32", dir, (unsigned long long)seq_id);
    FILE *f = fopen(path, "ab");
    if (f == NULL || fwrite(logits, sizeof(float), (size_t)V, f) != (size_t)V)
        DSI_ERROR("cannot append logits to %s: %m", path);
    if (f != NULL)
        fclose(f);
}

/* Room for n rows of logits in the scratch; -1 when out of memory. */
static int logits_reserve(dsn_compute_t *c, int64_t n)
{
    if (n <= c->logits_rows)
        return 0;
    int64_t V = c->weights->cfg.vocab_size;
    float *l = realloc(c->logits, (size_t)(n * V) * sizeof(float));
    if (l != NULL)
        c->logits = l;
    int64_t *r = realloc(c->rows, (size_t)n * sizeof(int64_t));
    if (r != NULL)
        c->rows = r;
    int *w = realloc(c->which, (size_t)n * sizeof(int));
    if (w != NULL)
        c->which = w;
    if (l == NULL || r == NULL || w == NULL)
        return -1;
    c->logits_rows = n;
    return 0;
}

/* The scratch row for logprobs, made at the first request that asks for them. */
static int raw_row_reserve(dsn_compute_t *c)
{
    if (c->raw_row == NULL)
        c->raw_row = malloc((size_t)c->weights->cfg.vocab_size * sizeof(float));
    if (c->raw_row == NULL)
        DSI_ERROR("out of memory for logprobs: they are taken after the sampling controls");
    return c->raw_row != NULL ? 0 : -1;
}

static int is_stop_id(const dsn_sampler_t *sp, int32_t tok)
{
    for (uint32_t i = 0; i < sp->ctl.n_stop_ids; i++) {
        if (sp->ctl.stop_ids[i] == tok)
            return 1;
    }
    return 0;
}

/* Last stage: sample the sequences whose batch reached the end of their prompt. */
static void sample_and_report(dsn_compute_t *c, dsn_mb_t *mb)
{
    const dsn_config_t *cfg = &c->weights->cfg;
    int64_t V = cfg->vocab_size;
    if (logits_reserve(c, mb->n_seqs) != 0) {
        DSI_ERROR("out of memory sampling micro-batch %llu", (unsigned long long)mb->id);
        for (int i = 0; i < mb->n_seqs; i++)
            dsn_stage_emit_tokens(c, mb->seq[i]->id, 0, 0, DST_FINISH_ERROR);
        return;
    }
    int64_t n_rows = 0, t = 0;
    for (int i = 0; i < mb->n_seqs; i++) {
        const dsn_seq_batch_t *b = &mb->batch[i];
        t += b->n_tokens;
        /* (a sequence that speculates is sampled by dsn_stage_spec_finish) */
        if (mb->seq[i]->spec == NULL && b->pos + b->n_tokens >= (int64_t)mb->seq[i]->n_prompt) {
            c->which[n_rows] = i;
            c->rows[n_rows++] = t - 1;
        }
    }
    if (n_rows > 0)
        dsn_engine_head(c->engine, mb->h, c->rows, n_rows, c->logits);
    for (int64_t r = 0; r < n_rows; r++) {
        dsn_seq_t *s = mb->seq[c->which[r]];
        float *logits = c->logits + r * V;
        if (c->opts->logits_dir != NULL)
            dsn_stage_dump_logits(c->opts->logits_dir, s->id, logits, V);
        /* Logprobs are of the raw row: keep it before the controls change the logits. */
        const float *raw = logits;
        if (s->logprobs && raw_row_reserve(c) == 0) {
            memcpy(c->raw_row, logits, (size_t)V * sizeof(float));
            raw = c->raw_row;
        }
        int32_t tok = -1;
        if (dsn_logits_finite(raw, (int)V)) {
            dsn_sampler_process(&s->sampler, logits, s->n_prior + s->generated);
            dsn_grammar_mask(c, s, logits);
            tok = dsn_sampler_next_masked(&s->sampler, logits);
        }
        if (tok < 0) {
            DSI_ERROR("sequence %llu: the logits hold NaN or infinite values (broken weights or "
                      "scales in the checkpoint?): the request ends with an error",
                      (unsigned long long)s->id);
            dsn_stage_emit_tokens(c, s->id, 0, 0, DST_FINISH_ERROR);
            if (c->is_first) {
                s->has_next = 0;
                s->done = 1;
            }
            continue;
        }
        int drop = 0;
        uint8_t finish = DST_FINISH_NONE;
        if ((tok == cfg->eos_token_id && !s->ignore_eos) || is_stop_id(&s->sampler, tok))
            finish = DST_FINISH_STOP;
        else if (s->generated + 1 >= s->max_tokens || s->kv->length >= s->kv->max_tokens)
            finish = DST_FINISH_LENGTH;
        finish = dsn_grammar_accept(s, tok, finish, &drop);
        if (drop) { /* the grammar allowed nothing: the output ends before this token */
            dsn_stage_emit_tokens(c, s->id, 0, 0, finish);
        } else {
            dsn_sampler_accept(&s->sampler, tok);
            s->generated++;
            dsn_stage_emit_sampled(c, s, tok, finish, raw, NULL);
        }
        if (c->is_first) {
            s->next_token = tok;
            s->has_next = finish == DST_FINISH_NONE;
            s->done |= finish != DST_FINISH_NONE;
        }
    }
}

uint8_t dsn_stage_finish_of(const dsn_compute_t *c, const dsn_seq_t *s, int32_t tok,
                            uint32_t generated, int64_t length)
{
    if ((tok == c->weights->cfg.eos_token_id && !s->ignore_eos) || is_stop_id(&s->sampler, tok))
        return DST_FINISH_STOP;
    if (generated >= s->max_tokens || length >= s->kv->max_tokens)
        return DST_FINISH_LENGTH;
    return DST_FINISH_NONE;
}

uint8_t dsn_stage_report(dsn_compute_t *c, dsn_seq_t *s, int32_t tok, int64_t length,
                         const float *raw, const dsn_spec_next_t *next)
{
    s->generated++;
    uint8_t finish = dsn_stage_finish_of(c, s, tok, s->generated, length);
    dsn_stage_emit_sampled(c, s, tok, finish, raw, finish == DST_FINISH_NONE ? next : NULL);
    if (c->is_first) {
        s->next_token = tok;
        s->has_next = finish == DST_FINISH_NONE;
        s->done |= finish != DST_FINISH_NONE;
    }
    return finish;
}

/* Send the micro-batch's hidden states to the next stage, one ACTIVATION per next node. */
static void forward_mb(dsn_compute_t *c, dsn_mb_t *mb)
{
    int64_t H = c->weights->cfg.hidden_size;
    uint8_t sent[DSN_MAX_PEERS] = {0};
    for (int i = 0; i < mb->n_seqs; i++) {
        uint32_t next = dsn_route_next(c, mb->seq[i]);
        if (next >= DSN_MAX_PEERS || sent[next])
            continue;
        sent[next] = 1;
        int64_t rows = 0;
        for (int j = i; j < mb->n_seqs; j++) {
            if (dsn_route_next(c, mb->seq[j]) == next)
                rows += mb->batch[j].n_tokens;
        }
        dst_wire_hdr_t hdr = {DST_WIRE_ACTIVATION,
                              DST_WIRE_F32,
                              c->node_id,
                              c->route_epoch,
                              mb->id,
                              0,
                              (uint32_t)c->end_layer,
                              (uint32_t)rows,
                              (uint32_t)H,
                              0};
        size_t bytes = dst_wire_payload_bytes(&hdr);
        uint8_t *payload = dsn_queue_buf_get(c->queue, bytes);
        if (payload == NULL) {
            DSI_ERROR("out of memory forwarding micro-batch %llu", (unsigned long long)mb->id);
            continue;
        }
        memset(payload, 0, bytes);
        float *x = (float *)payload;
        dst_wire_token_t *side = (dst_wire_token_t *)(payload + dst_wire_side_offset(&hdr));
        int64_t row = 0, t = 0;
        for (int j = 0; j < mb->n_seqs; j++) {
            const dsn_seq_batch_t *b = &mb->batch[j];
            if (dsn_route_next(c, mb->seq[j]) == next) {
                memcpy(x + row * H, mb->h + t * H, (size_t)(b->n_tokens * H) * sizeof(float));
                /* (the rollback of speculative decoding's rejected drafts: TOKENS.spec) */
                /* (the prefix cache's positions before these: s->cached) */
                for (int k = 0; k < b->n_tokens; k++, row++)
                    side[row] = (dst_wire_token_t){
                        mb->seq[j]->id, (uint32_t)(b->pos + k), k == 0 ? mb->seq[j]->rollback : 0,
                        mb->tokens[t + k], k == 0 ? mb->seq[j]->cached : 0};
                mb->seq[j]->rollback = 0;
                mb->seq[j]->cached = 0;
            }
            t += b->n_tokens;
        }
        if (dsn_stage_emit_wire(c, next, &hdr, payload, bytes) != 0)
            DSI_ERROR("out of memory forwarding micro-batch %llu", (unsigned long long)mb->id);
    }
}

static void finish_mb(dsn_compute_t *c, dsn_mb_t *mb)
{
    if (mb->layer < 0) {
        if (mb->spec)
            dsn_stage_spec_abort(c);
        /* The coordinator learns of the failure and cancels the sequences on every node. */
        for (int i = 0; i < mb->n_seqs; i++) {
            dsn_stage_emit_tokens(c, mb->seq[i]->id, 0, 0, DST_FINISH_ERROR);
            mb->seq[i]->in_flight = 0;
            mb->seq[i]->done = 1;
        }
        dsn_mb_put(c, mb);
        return;
    }
    dsn_engine_commit(mb->batch, mb->n_seqs);
    if (c->n_fork_wait > 0)
        dsn_stage_forks(c, NULL); /* forks waiting for these positions */
    if (c->is_last && c->spec != NULL)
        dsn_stage_spec_finish(c, mb); /* its sequences that speculate */
    if (c->is_last)
        sample_and_report(c, mb);
    else
        forward_mb(c, mb);
    /* At stage 0 a sequence may go on at once when this node also samples, or when it was
     * only a prefill chunk (the next chunk needs no sampled token); otherwise it waits for the
     * token to come back from the last stage. Later stages are free as soon as it left. */
    for (int i = 0; i < mb->n_seqs; i++) {
        dsn_seq_t *s = mb->seq[i];
        if (c->prefix) {
            dsn_kvcache_publish(s->kv); /* its full blocks, for prompts that start alike */
            dsn_stage_spec_publish(c, s);
        }
        if (!c->is_first || c->is_last || s->fed < s->n_prompt)
            s->in_flight = 0;
        else
            s->awaiting = 1; /* (a CANCEL frees it at once) */
        if (s->remove_after && !s->in_flight)
            dsn_seq_remove(c, s->id); /* mb->seq[i] is not read again */
    }
    dsn_mb_put(c, mb);
}

/* ---- ACTIVATIONs from the previous stage ---- */

/* A later stage lacks positions stage 0 took from its prefix cache: the sequence is submitted
 * again without prefix reuse (TOKENS finish PREFIX_MISS); its rows are dropped until then. */
static void prefix_miss(dsn_compute_t *c, dsn_seq_t *s, int64_t from, int64_t to)
{
    DSI_INFO("sequence %llu: positions %lld..%lld, which stage 0 took from its prefix cache, "
             "are not all in this node's: it is submitted again without prefix reuse",
             (unsigned long long)s->id, (long long)from, (long long)to - 1);
    dsn_kvcache_clear(s->kv);
    s->prefix_miss = 1;
    s->done = 1;
    dsn_stage_emit_tokens(c, s->id, 0, 0, DST_FINISH_PREFIX_MISS);
}

/*
 * The ACTIVATION says positions [from, to) of s came from stage 0's prefix cache: take them from
 * this node's (the same lane computed the same prompt before, so it normally holds them too).
 * 0, or -1 when it lacks some (reported: prefix_miss).
 */
static int prefix_take(dsn_compute_t *c, dsn_seq_t *s, int64_t from, int64_t to)
{
    dsn_kvpool_t *pool = dsn_engine_kvpool(c->engine);
    if (c->test_drop_prefix) { /* (tests: every cached block evicted, as by memory pressure) */
        dsn_kvpool_set_prefix_cache(pool, 0);
        dsn_kvpool_set_prefix_cache(pool, c->prefix);
    }
    int64_t want = (to + DSN_KV_BLOCK - 1) / DSN_KV_BLOCK * DSN_KV_BLOCK;
    if (c->prefix && s->prompt != NULL && to < (int64_t)s->n_prompt)
        dsn_kvcache_attach_prefix(s->kv, s->prompt, s->n_prompt, want);
    if (s->kv->length < to) {
        prefix_miss(c, s, from, to);
        return -1;
    }
    dsn_kvcache_truncate(s->kv, to); /* (a sequence that speculates: all but the block's last) */
    if (s->spec != NULL && (from != 0 || dsn_stage_spec_prefix(c, s, to) < to))
        dsn_stage_spec_drop(s);         /* exact, one token a step */
    s->cached += (uint32_t)(to - from); /* for the next stage */
    c->prefix_hit_tokens += (uint64_t)(to - from);
    DSI_DEBUG("sequence %llu: %lld prompt tokens found in the prefix cache, as at stage 0",
              (unsigned long long)s->id, (long long)(to - from));
    return 0;
}

/*
 * Returns 0 when taken, 1 when it must wait (a sequence it names is not known yet, or an earlier
 * chunk of it has not arrived: the data plane does not order rendezvous messages, and SUBMIT
 * travels on another connection). Rows of sequences removed here lately, or waiting to be
 * submitted again after a prefix-cache miss, are dropped.
 */
int dsn_stage_activation(dsn_compute_t *c, const dsn_task_t *t)
{
    const dst_wire_hdr_t *h = &t->hdr;
    int64_t H = c->weights->cfg.hidden_size;
    if (h->layer != (uint32_t)c->first_layer || h->width != (uint32_t)H ||
        h->dtype != DST_WIRE_F32 || c->is_first) {
        DSI_ERROR("ACTIVATION from node %u for layer %u does not fit this node (stage %d, layers "
                  "%d..%d): dropped",
                  t->peer, h->layer, c->stage, c->first_layer, c->end_layer - 1);
        return 0;
    }
    const dst_wire_token_t *tok = dst_wire_tokens(h, t->payload);
#define RUN_START(i) \
    ((i) == 0 || tok[i].seq_id != tok[(i)-1].seq_id || tok[i].pos != tok[(i)-1].pos + 1)
    /* Check every sequence first: all present, not in flight, at the expected position (after
     * the positions the prefix cache gives, when it says so). */
    for (uint32_t i = 0; i < h->n_rows; i++) {
        if (!RUN_START(i))
            continue;
        /* A speculative step starts where the one before kept its positions: the rejected
         * ones are cut first (a last stage that drafts has cut them itself). */
        dsn_seq_t *s = dsn_seq_find(c, tok[i].seq_id);
        if (s == NULL && dsn_seq_gone(c, tok[i].seq_id))
            continue;
        if (s != NULL && s->prefix_miss)
            continue;
        if (s == NULL || s->in_flight ||
            (int64_t)(tok[i].pos - tok[i].cached) !=
                s->kv->length - (s->spec == NULL ? tok[i].rollback : 0))
            return 1;
    }
    /* The positions stage 0 took from its prefix cache, from ours. */
    for (uint32_t i = 0; i < h->n_rows; i++) {
        if (!RUN_START(i) || tok[i].cached == 0)
            continue;
        dsn_seq_t *s = dsn_seq_find(c, tok[i].seq_id);
        if (s != NULL && !s->prefix_miss)
            prefix_take(c, s, (int64_t)tok[i].pos - tok[i].cached, tok[i].pos);
    }
    int n_seqs = 0;
    int64_t n_rows = 0;
    for (uint32_t i = 0; i < h->n_rows; i++) {
        dsn_seq_t *s = dsn_seq_find(c, tok[i].seq_id);
        if (s == NULL || s->prefix_miss)
            continue;
        n_seqs += RUN_START(i);
        n_rows++;
    }
    if (n_rows == 0)
        return 0; /* all dropped */
    dsn_mb_t *mb = dsn_mb_get(c, n_seqs, n_rows);
    if (mb == NULL) {
        DSI_ERROR("out of memory for an ACTIVATION of %u tokens", h->n_rows);
        return 0;
    }
    int k = -1;
    int64_t r = 0;
    const float *x = t->payload;
    for (uint32_t i = 0; i < h->n_rows; i++) {
        dsn_seq_t *s = dsn_seq_find(c, tok[i].seq_id);
        if (s == NULL || s->prefix_miss)
            continue;
        if (RUN_START(i)) {
            if (s->spec == NULL && tok[i].rollback > 0)
                dsn_kvcache_truncate(s->kv, tok[i].pos);
            s->rollback = (uint8_t)tok[i].rollback; /* for the stage after this one */
            mb->seq[++k] = s;
            mb->batch[k] = (dsn_seq_batch_t){s->kv, tok[i].pos, 0};
            s->in_flight = 1;
        }
        mb->batch[k].n_tokens++;
        mb->tokens[r] = tok[i].token;
        memcpy(mb->h + r * H, x + (int64_t)i * H, (size_t)H * sizeof(float));
        r++;
    }
#undef RUN_START
    /* A sequence split in two runs of one message would break the cache order: refuse it. */
    for (int i = 0; i < n_seqs; i++) {
        for (int j = i + 1; j < n_seqs; j++) {
            if (mb->seq[i] == mb->seq[j]) {
                DSI_ERROR("ACTIVATION from node %u names sequence %llu twice: dropped", t->peer,
                          (unsigned long long)mb->seq[i]->id);
                for (int y = 0; y < n_seqs; y++)
                    mb->seq[y]->in_flight = 0;
                dsn_mb_put(c, mb);
                return 0;
            }
        }
    }
    /* The token ids key this node's prefix cache (its blocks, published as they fill). */
    for (int i = 0, off = 0; i < n_seqs && c->prefix; off += mb->batch[i++].n_tokens)
        dsn_kvcache_set_ids(mb->batch[i].kv, mb->batch[i].pos, mb->tokens + off,
                            mb->batch[i].n_tokens);
    mb->layer = c->first_layer;
    dsn_mb_run(c, mb);
    return 0;
}
