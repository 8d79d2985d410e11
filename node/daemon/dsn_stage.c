/*
 * dsn_stage.c - the compute thread's work on a node: the sequences of its stage, the task
 * dispatcher, the stage-0 scheduler (continuous batching), and expert-load counting. Micro-batches
 * are in dsn_stage_mb.c, expert dispatch in dsn_dispatch.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dsi_log.h"
#include "dsn_compute_impl.h"

/* ---- sequences ---- */

static dsn_seq_t **bucket(dsn_compute_t *c, uint64_t id)
{
    return &c->seq_buckets[(id * 0x9e3779b97f4a7c15ULL) >> 54];
}

int dsn_seq_gone(const dsn_compute_t *c, uint64_t id)
{
    unsigned n = c->n_gone < DSN_GONE_RING ? c->n_gone : DSN_GONE_RING;
    for (unsigned i = 0; i < n; i++) {
        if (c->gone[i] == id)
            return 1;
    }
    return 0;
}

dsn_seq_t *dsn_seq_find(dsn_compute_t *c, uint64_t id)
{
    for (dsn_seq_t *s = *bucket(c, id); s != NULL; s = s->next_in_bucket) {
        if (s->id == id)
            return s;
    }
    return NULL;
}

static void seq_free(dsn_seq_t *s)
{
    if (s->kv_rx != NULL) {
        dsn_kvio_rx_free(s->kv_rx);
        free(s->kv_rx);
    }
    dsn_grammar_free(s);
    dsn_stage_spec_seq_free(s);
    dsn_kvcache_destroy(s->kv);
    dsn_sampler_cleanup(&s->sampler);
    free(s->prompt);
    free(s);
}

#ifndef NDEBUG
/* Debug builds: after a sequence's blocks went back, the KV pool agrees with the block tables of
 * the sequences (dsn_kvcache_check: used + cached + free, every reference count); abort if not. */
static void check_pool(dsn_compute_t *c)
{
    if (c->engine == NULL)
        return;
    dsn_kvpool_t *pool = dsn_engine_kvpool(c->engine);
    int n = 0, cap = 64;
    dsn_kvcache_t **kv = malloc((size_t)cap * sizeof(*kv));
    for (int b = 0; b < DSN_SEQ_BUCKETS && kv != NULL; b++) {
        for (dsn_seq_t *s = c->seq_buckets[b]; s != NULL && kv != NULL; s = s->next_in_bucket) {
            if (s->kv->pool != pool)
                continue;
            if (n == cap) {
                dsn_kvcache_t **t = realloc(kv, (size_t)(cap *= 2) * sizeof(*kv));
                if (t == NULL)
                    free(kv);
                kv = t;
                if (kv == NULL)
                    break;
            }
            kv[n++] = s->kv;
        }
    }
    if (kv != NULL && dsn_kvcache_check(pool, kv, n) != 0) {
        DSI_ERROR("the KV pool disagrees with the block tables of %d sequences", n);
        abort();
    }
    free(kv);
}
#else
static void check_pool(dsn_compute_t *c)
{
    (void)c;
}
#endif

void dsn_seq_remove(dsn_compute_t *c, uint64_t id)
{
    for (dsn_seq_t **p = bucket(c, id); *p != NULL; p = &(*p)->next_in_bucket) {
        if ((*p)->id == id) {
            dsn_seq_t *s = *p;
            if (c->n_fork_wait > 0)
                dsn_stage_forks(c, s); /* its forks copy now or fail; s is still linked */
            if (s->fork_wait)
                c->n_fork_wait--;
            *p = s->next_in_bucket;
            c->gone[c->n_gone++ % DSN_GONE_RING] = s->id;
            seq_free(s);
            check_pool(c);
            return;
        }
    }
}

void dsn_stage_forks(dsn_compute_t *c, const dsn_seq_t *leaving)
{
    for (int b = 0; b < DSN_SEQ_BUCKETS && c->n_fork_wait > 0; b++) {
        for (dsn_seq_t *s = c->seq_buckets[b]; s != NULL; s = s->next_in_bucket) {
            if (!s->fork_wait || s->kv_rx != NULL)
                continue; /* not waiting, or waiting for rows from another node */
            dsn_seq_t *p = dsn_seq_find(c, s->fork_of);
            int ready = p != NULL && p->kv->length >= (int64_t)s->fork_len;
            if (!ready && p != NULL && p != leaving && !p->done)
                continue; /* its prompt is still on the way */
            s->fork_wait = 0;
            c->n_fork_wait--;
            dsi_status_t st = DSI_ERR_NOT_FOUND;
            if (ready && (st = dsn_kvcache_copy_prefix(s->kv, p->kv, s->fork_len)) == DSI_OK) {
                if (c->is_first)
                    s->fed = s->fork_len;
                dsn_stage_spec_fork(c, s, p);
                DSI_DEBUG("sequence %llu: %u prompt tokens copied from sequence %llu",
                          (unsigned long long)s->id, s->fork_len, (unsigned long long)s->fork_of);
                if (s->kv_move)
                    dsn_kvmove_done(c, s->id, 1, 0, NULL);
                continue;
            }
            if (s->kv_move) {
                /* The coordinator moves it again from its tokens: no error for the request. */
                DSI_WARN("sequence %llu: cannot copy the KV cache of sequence %llu here (%s)",
                         (unsigned long long)s->id, (unsigned long long)s->fork_of,
                         ready ? dsi_status_message(st) : "it is gone");
                s->done = 1;
                char why[96];
                snprintf(why, sizeof(why), "node %u could not copy sequence %llu", c->node_id,
                         (unsigned long long)s->fork_of);
                dsn_kvmove_done(c, s->id, 0, 0, why);
                continue;
            }
            if (st == DSI_ERR_CAPACITY) { /* the pool is full: wait like any other sequence */
                dsn_stage_preempt(c, s);
                continue;
            }
            DSI_ERROR("sequence %llu: cannot share the prompt of sequence %llu (%s): it ends "
                      "with an error",
                      (unsigned long long)s->id, (unsigned long long)s->fork_of,
                      ready ? dsi_status_message(st) : "it ended before its prompt got here");
            s->done = 1;
            dsn_stage_emit_tokens(c, s->id, 0, 0, DST_FINISH_ERROR);
        }
    }
}

uint32_t dsn_route_next(const dsn_compute_t *c, const dsn_seq_t *seq)
{
    return seq->route[c->stage + 1];
}

void dsn_stage_emit_tokens(dsn_compute_t *c, uint64_t seq_id, int32_t token, uint32_t n,
                           uint8_t finish)
{
    dsn_out_t *o = dsn_queue_out_get(c->queue);
    if (o == NULL) {
        DSI_ERROR("out of memory sending TOKENS of sequence %llu", (unsigned long long)seq_id);
        return;
    }
    o->type = DSN_OUT_TOKENS;
    o->seq_id = seq_id;
    o->token = token;
    o->n_tokens = n;
    o->finish = finish;
    o->has_logprob = 0;
    dsn_queue_emit(c->queue, o);
}

void dsn_stage_emit_sampled(dsn_compute_t *c, const dsn_seq_t *s, int32_t token, uint8_t finish,
                            const float *logits, const dsn_spec_next_t *next)
{
    dsn_out_t *o = dsn_queue_out_get(c->queue);
    if (o == NULL) {
        DSI_ERROR("out of memory sending TOKENS of sequence %llu", (unsigned long long)s->id);
        return;
    }
    o->type = DSN_OUT_TOKENS;
    o->seq_id = s->id;
    o->token = token;
    o->n_tokens = 1;
    o->finish = finish;
    o->has_logprob = s->logprobs;
    o->n_top = s->logprobs ? s->top_logprobs : 0;
    if (s->logprobs)
        o->logprob = dsn_logprobs(logits, (int)c->weights->cfg.vocab_size, token, o->n_top,
                                  o->top_ids, o->top_logprobs);
    if (next != NULL) {
        o->has_spec = 1;
        o->rollback = next->rollback;
        o->n_drafts = next->n_drafts;
        memcpy(o->drafts, next->drafts, next->n_drafts * sizeof(int32_t));
    }
    dsn_queue_emit(c->queue, o);
}

int dsn_stage_emit_wire(dsn_compute_t *c, uint32_t peer, const dst_wire_hdr_t *hdr, void *payload,
                        size_t bytes)
{
    dsn_out_t *o = dsn_queue_out_get(c->queue);
    if (o == NULL) {
        dsn_queue_buf_put(payload);
        return -1;
    }
    o->type = DSN_OUT_WIRE;
    o->peer = peer;
    o->hdr = *hdr;
    o->payload = payload;
    o->bytes = bytes;
    dsn_queue_emit(c->queue, o);
    return 0;
}

/* The last stage's controls from SUBMIT.sampling, and the history of a re-submitted request. */
static int sampler_controls(dsn_compute_t *c, dsn_seq_t *s, const dst_msg_submit_t *m)
{
    const dst_msg_sampling_t *x = &m->sampling;
    dsn_controls_t ctl = {x->presence_penalty,
                          x->frequency_penalty,
                          x->repetition_penalty,
                          x->min_p,
                          x->min_tokens,
                          c->weights->cfg.eos_token_id,
                          x->bias_ids,
                          x->bias_values,
                          x->n_bias,
                          x->stop_ids,
                          x->n_stop_ids};
    s->n_prior = m->n_generated;
    s->ignore_eos = x->ignore_eos;
    s->logprobs = x->logprobs;
    s->top_logprobs = x->top_logprobs;
    if (dsn_sampler_controls(&s->sampler, &ctl) != 0)
        return -1;
    dsn_sampler_history(&s->sampler, m->tokens, m->n_tokens, m->n_generated);
    return 0;
}

static void handle_submit(dsn_compute_t *c, const dst_msg_submit_t *m)
{
    if (dsn_seq_find(c, m->seq_id) != NULL) {
        DSI_WARN("SUBMIT of sequence %llu, which exists: ignored", (unsigned long long)m->seq_id);
        return;
    }
    if (m->n_route != (uint32_t)c->n_stages || m->route[c->stage] != c->node_id) {
        DSI_ERROR("SUBMIT of sequence %llu: its route does not pass through this node at stage %d",
                  (unsigned long long)m->seq_id, c->stage);
        dsn_stage_emit_tokens(c, m->seq_id, 0, 0, DST_FINISH_ERROR);
        return;
    }
    dsn_seq_t *s = calloc(1, sizeof(*s));
    int64_t ctx = (int64_t)m->n_tokens + m->max_tokens;
    if (c->opts->max_context > 0 && ctx > c->opts->max_context)
        ctx = c->opts->max_context;
    if (s == NULL || dsn_engine_kvcache_create(c->engine, ctx, &s->kv) != DSI_OK)
        goto fail;
    s->id = m->seq_id;
    s->n_route = m->n_route;
    memcpy(s->route, m->route, m->n_route * sizeof(uint32_t));
    s->n_prompt = m->n_tokens;
    s->max_tokens = m->max_tokens;
    s->no_prefix = m->no_prefix;
    s->has_grammar = m->grammar_len > 0;
    /* (the MTP layer pairs states with prompt tokens; a later stage's prefix cache looks them
     * up) */
    if (c->is_first || c->spec != NULL || c->prefix) {
        s->prompt = malloc(m->n_tokens * sizeof(int32_t));
        if (s->prompt == NULL)
            goto fail;
        memcpy(s->prompt, m->tokens, m->n_tokens * sizeof(int32_t));
    }
    c->prompt_tokens += m->n_tokens; /* (every stage: each has a prefix cache of its own) */
    if (c->is_last) {
        dsn_sampling_t sp = {m->temperature, m->top_p, (int)m->top_k, m->seed};
        if (dsn_sampler_init(&s->sampler, &sp, c->weights->cfg.vocab_size) != 0 ||
            sampler_controls(c, s, m) != 0)
            goto fail;
        dsn_sampler_skip(&s->sampler, m->n_generated);
        if (dsn_grammar_start(c, s, m) != 0) {
            seq_free(s);
            dsn_stage_emit_tokens(c, m->seq_id, 0, 0, DST_FINISH_ERROR);
            return;
        }
        if (s->grammar == NULL && dsn_stage_spec_seq_init(c, s) != 0)
            goto fail;
    }
    dsn_seq_t **b = bucket(c, s->id);
    s->next_in_bucket = *b;
    *b = s;
    DSI_DEBUG("sequence %llu: %u prompt tokens, up to %u new", (unsigned long long)s->id,
              s->n_prompt, s->max_tokens);
    if (m->fork_len > 0 && m->kv_move && dsn_seq_find(c, m->fork_of) == NULL) {
        s->fork_of = m->fork_of;
        s->fork_len = m->fork_len;
        s->kv_move = 1;
        dsn_stage_spec_seq_free(s); /* the module's own cache does not move */
        dsn_kvmove_start(c, s);
    } else if (m->fork_len > 0) {
        s->fork_of = m->fork_of;
        s->fork_len = m->fork_len;
        s->kv_move = m->kv_move;
        s->fork_wait = 1;
        c->n_fork_wait++;
        dsn_stage_forks(c, NULL);
    }
    return;
fail:
    DSI_ERROR("out of memory for sequence %llu", (unsigned long long)m->seq_id);
    if (s != NULL)
        seq_free(s);
    dsn_stage_emit_tokens(c, m->seq_id, 0, 0, DST_FINISH_ERROR);
}

static void handle_feedback(dsn_compute_t *c, const dst_msg_tokens_t *m)
{
    dsn_seq_t *s = dsn_seq_find(c, m->seq_id);
    if (s == NULL || !c->is_first)
        return;
    if (m->finish != DST_FINISH_NONE || m->n_tokens == 0) {
        s->done = 1; /* finished: nothing more to feed; CANCEL frees it */
        s->in_flight = s->awaiting = 0;
        return;
    }
    if (!m->has_spec && s->spec_steps)
        return; /* a speculative step's token before its last: the last one says how to go on */
    if (m->has_spec) {
        /* The last stage verified the positions fed last (none after the prompt) and drafted
         * the next ones: cut the rejected ones here, and tell the later stages. */
        if (m->rollback > 0 && m->rollback >= s->fed_step) {
            DSI_ERROR("sequence %llu: TOKENS rejects %u of the %u positions of its step: the "
                      "request ends with an error",
                      (unsigned long long)s->id, m->rollback, s->fed_step);
            dsn_stage_emit_tokens(c, s->id, 0, 0, DST_FINISH_ERROR);
            s->done = 1;
            s->in_flight = s->awaiting = 0;
            return;
        }
        dsn_kvcache_truncate(s->kv, s->kv->length - m->rollback);
        s->rollback = m->rollback;
        s->n_drafts = m->n_drafts;
        memcpy(s->drafts, m->drafts, m->n_drafts * sizeof(int32_t));
        s->spec_steps = 1;
    }
    s->next_token = m->tokens[m->n_tokens - 1];
    s->has_next = 1;
    s->in_flight = s->awaiting = 0;
}

/* ---- expert load and router biases ---- */

void dsn_stage_count_route(void *ctx, int layer, const int32_t *experts, const float *weights,
                           int64_t n)
{
    (void)weights;
    dsn_compute_t *c = ctx;
    int li = layer - c->load_first;
    if (c->load_counts == NULL || li < 0 || li >= c->load_layers)
        return;
    int64_t K = c->weights->cfg.num_experts_per_tok, E = c->load_experts;
    uint32_t *row = c->load_counts + (size_t)li * (size_t)E;
    for (int64_t i = 0; i < n * K; i++) {
        /* Saturate rather than wrap: a window never comes near 2^32 pairs in practice. */
        if (experts[i] >= 0 && experts[i] < E && row[experts[i]] != UINT32_MAX)
            row[experts[i]]++;
    }
}

/* The window ended: hand the counts to the loop thread (LOAD_STATS) when there are any. */
static void report_load(dsn_compute_t *c)
{
    size_t n = (size_t)c->load_layers * (size_t)c->load_experts;
    int any = 0;
    for (size_t i = 0; i < n && !any; i++)
        any = c->load_counts[i] != 0;
    if (!any)
        return;
    /* Once a window (a second by default), not per step: the copy travels with the record. */
    dsn_out_t *o = dsn_queue_out_get(c->queue);
    uint32_t *copy = malloc(n * sizeof(uint32_t));
    if (o == NULL || copy == NULL) {
        dsn_queue_out_put(c->queue, o);
        free(copy);
        return; /* keep counting: the next window reports these too */
    }
    memcpy(copy, c->load_counts, n * sizeof(uint32_t));
    memset(c->load_counts, 0, n * sizeof(uint32_t));
    o->type = DSN_OUT_LOAD;
    o->counts = copy;
    o->load_first = (uint32_t)c->load_first;
    o->load_layers = (uint32_t)c->load_layers;
    o->load_experts = (uint32_t)c->load_experts;
    o->epoch = c->route_epoch;
    dsn_queue_emit(c->queue, o);
}

/* New router biases for one MoE layer of this stage: they choose experts from the next routing
 * on (a micro-batch parked in that layer has already routed). */
static void apply_bias(dsn_compute_t *c, const dst_msg_bias_t *b)
{
    int l = (int)b->layer;
    if (b->epoch != c->route_epoch)
        return; /* an older epoch's: the coordinator sends the biases again for this one */
    if (l < c->first_layer || l >= c->end_layer || !c->weights->layers[l].is_moe ||
        c->weights->layers[l].router_bias == NULL ||
        b->n_biases != (uint32_t)c->weights->cfg.n_routed_experts) {
        DSI_ERROR("BIAS for layer %u with %u values does not fit this node (MoE layers of "
                  "%d..%d, %d experts, with correction biases): ignored",
                  b->layer, b->n_biases, c->first_layer, c->end_layer - 1,
                  c->weights->cfg.n_routed_experts);
        return;
    }
    memcpy(c->weights->layers[l].router_bias, b->biases, b->n_biases * sizeof(float));
    DSI_DEBUG("router biases of layer %d updated", l);
}

/* ---- the task dispatcher and the stage-0 scheduler ---- */

static void handle_cancel(dsn_compute_t *c, uint64_t id)
{
    if (c->n_stash > 0)
        dsn_kvstash_drop(c, id); /* rows kept across a re-plan, sent by now */
    dsn_seq_t *s = dsn_seq_find(c, id);
    if (s == NULL)
        return;
    s->done = 1;
    /* A sequence that waits for its token at stage 0 holds no micro-batch: it goes now (the
     * token of its last step ended it and does not come back). */
    if (s->in_flight && !s->awaiting)
        s->remove_after = 1;
    else
        dsn_seq_remove(c, id);
}

/* Retry the deferred ACTIVATIONs after something changed, oldest first; one that goes through
 * may unblock an older one, so start over after each. */
static void retry_deferred(dsn_compute_t *c)
{
    int again = 1;
    while (again) {
        again = 0;
        dsi_list_for_each_safe(t, &c->deferred, dsn_task_t, link) {
            int wait =
                t->hdr.type == DST_WIRE_KV ? dsn_kvmove_chunk(c, t) : dsn_stage_activation(c, t);
            if (wait == 0) {
                dsi_list_remove(&t->link);
                dsn_queue_task_put(c->queue, t);
                again = 1;
                break;
            }
        }
    }
}

int dsn_stage_handle(dsn_compute_t *c, dsn_task_t *task)
{
    switch (task->type) {
    case DSN_TASK_SUBMIT:
        handle_submit(c, &task->msg.submit);
        break;
    case DSN_TASK_FEEDBACK:
        handle_feedback(c, &task->msg.tokens);
        break;
    case DSN_TASK_CANCEL:
        handle_cancel(c, task->msg.cancel.seq_id);
        break;
    case DSN_TASK_BIAS:
        apply_bias(c, &task->msg.bias);
        break;
    case DSN_TASK_LOAD:
        if (c->load_counts != NULL)
            report_load(c);
        break;
    case DSN_TASK_ORPHAN:
        dsn_stage_cleanup(c); /* the requests went with the coordinator; the slice stays */
        dsn_queue_new_session(c->queue);
        break;
    case DSN_TASK_KV_MOVE:
        dsn_kvmove_send(c, &task->msg.kv_move);
        break;
    case DSN_TASK_RELOAD:
    case DSN_TASK_PREPARE:
    case DSN_TASK_SWITCH:
    case DSN_TASK_RELEASE:
        dsn_replan_handle(c, task);
        break;
    case DSN_TASK_WIRE:
        if (c->engine == NULL) {
            DSI_WARN("%s from node %u before a slice is loaded: dropped",
                     dst_wire_type_name(task->hdr.type), task->peer);
        } else if (task->hdr.type == DST_WIRE_DISPATCH) {
            dsn_dispatch_serve(c, task);
        } else if (task->hdr.type == DST_WIRE_COMBINE) {
            dsn_dispatch_combine(c, task);
        } else if (task->hdr.type == DST_WIRE_KV) {
            if (dsn_kvmove_chunk(c, task) != 0) {
                dsi_list_push_back(&c->deferred, &task->link); /* its SUBMIT comes later */
                return 1;
            }
        } else if (dsn_stage_activation(c, task) != 0) {
            dsi_list_push_back(&c->deferred, &task->link); /* kept until its sequence is ready */
            return 1;
        }
        break;
    default:
        break;
    }
    if (!dsi_list_is_empty(&c->deferred))
        retry_deferred(c);
    dsn_replan_check(c);
    return 0;
}

/*
 * s cannot grow in a full KV pool: its blocks go back to the pool now and the coordinator
 * submits it again with the tokens so far (it is prefilled anew when blocks are free); CANCEL
 * removes it here.
 */
void dsn_stage_preempt(dsn_compute_t *c, dsn_seq_t *s)
{
    DSI_INFO("sequence %llu preempted at %lld tokens: the KV pool is full",
             (unsigned long long)s->id, (long long)s->kv->length);
    dsn_kvcache_clear(s->kv);
    check_pool(c);
    s->done = 1;
    s->has_next = 0;
    c->preemptions++;
    dsn_stage_emit_tokens(c, s->id, 0, 0, DST_FINISH_PREEMPTED);
}

void dsn_stage_kv_gauges(dsn_compute_t *c)
{
    if (c->engine == NULL)
        return;
    dsn_kvpool_stats_t st;
    dsn_kvpool_stats(dsn_engine_kvpool(c->engine), &st);
    atomic_store_explicit(&c->kv_used, (uint64_t)st.used, memory_order_relaxed);
    atomic_store_explicit(&c->kv_total, (uint64_t)st.total, memory_order_relaxed);
    atomic_store_explicit(&c->kv_preemptions, c->preemptions, memory_order_relaxed);
    atomic_store_explicit(&c->kv_cached, (uint64_t)st.cached, memory_order_relaxed);
    atomic_store_explicit(&c->kv_prompt_tokens, c->prompt_tokens, memory_order_relaxed);
    atomic_store_explicit(&c->kv_hit_tokens, c->prefix_hit_tokens, memory_order_relaxed);
}

/* Whether s's next token would need more than the whole pool even if s were alone: then
 * waiting or preempting cannot make room for it. */
static int exceeds_pool(const dsn_compute_t *c, const dsn_seq_t *s)
{
    int64_t need = dsn_kvcache_blocks_needed(s->kv, s->kv->length + 1);
    dsn_kvpool_t *p = dsn_engine_kvpool(c->engine);
    if (dsn_kvpool_can_alloc(p, INT64_MAX / 2))
        return 0; /* no limit */
    dsn_kvpool_stats_t st;
    dsn_kvpool_stats(p, &st);
    return dsn_kvcache_pool_blocks(s->kv) + need > st.total;
}

/* s needs more blocks than the whole pool has: it ends with an error (not a preemption, which
 * would prefill it again into the same wall). */
static void fail_too_long(dsn_compute_t *c, dsn_seq_t *s)
{
    dsn_kvpool_stats_t st;
    dsn_kvpool_stats(dsn_engine_kvpool(c->engine), &st);
    DSI_ERROR("sequence %llu needs more than the %lld blocks of %d tokens of this node's KV pool "
              "(at %lld tokens; its open block's f32 rows take blocks too with bf16 and fp8): "
              "raise --kv-pool or --mem; the request ends with an error",
              (unsigned long long)s->id, (long long)st.total, DSN_KV_BLOCK,
              (long long)s->kv->length);
    dsn_kvcache_clear(s->kv);
    s->done = 1;
    s->has_next = 0;
    dsn_stage_emit_tokens(c, s->id, 0, 0, DST_FINISH_KV_FULL);
}

/* Blocks of the engine's pool a batch can take: free and cached (evicted for room; INT64_MAX
 * without a limit). */
static int64_t pool_free(const dsn_compute_t *c)
{
    dsn_kvpool_t *p = dsn_engine_kvpool(c->engine);
    if (dsn_kvpool_can_alloc(p, INT64_MAX / 2))
        return INT64_MAX;
    dsn_kvpool_stats_t st;
    dsn_kvpool_stats(p, &st);
    return st.free + st.cached;
}

/* The longest prefill chunk of at most k tokens whose rows and open tail take at most avail
 * blocks (0: not even one token). */
static int chunk_that_fits(const dsn_kvcache_t *kv, int k, int64_t avail)
{
    int lo = 0, hi = k; /* lo fits, hi + 1 does not */
    while (lo < hi) {
        int mid = lo + (hi - lo + 1) / 2;
        if (dsn_kvcache_blocks_needed(kv, kv->length + mid) <= avail)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

/* Whether s will speculate at the last stage of a plan of several (its positions are then
 * taken from the prefix cache but the last: the MTP layer needs the main model's state there). */
static int speculates_later(const dsn_compute_t *c, const dsn_seq_t *s)
{
    return c->spec_later && !s->has_grammar;
}

/*
 * Prefix cache: a prefill of s (not in flight, its cache at s->fed) first takes the pool's
 * cached blocks that continue its prompt, whole blocks only and leaving at least the prompt's
 * last token to compute (its logits sample the first token). A sequence that speculates takes
 * them only before its first chunk, and all of them but the last position (the MTP layer pairs
 * the main model's state there with the next token: dsn_stage_spec_prefix). The positions taken
 * go to the later stages with the next ACTIVATION (s->cached), which take them from their own
 * caches.
 */
static void prefix_lookup(dsn_compute_t *c, dsn_seq_t *s)
{
    if (!c->prefix || s->no_prefix || s->kv->length != (int64_t)s->fed)
        return;
    int spec = s->spec != NULL || speculates_later(c, s);
    if (spec && s->fed != 0)
        return;
    int64_t start = s->kv->length;
    int64_t hit =
        dsn_kvcache_attach_prefix(s->kv, s->prompt, s->n_prompt, (int64_t)s->n_prompt - 1);
    if (hit <= 0)
        return;
    if (spec) {
        int64_t keep = dsn_stage_spec_prefix(c, s, hit - 1); /* (s->spec: the module's share) */
        dsn_kvcache_truncate(s->kv, start + keep);
        hit = keep;
        if (hit <= 0)
            return;
    }
    s->fed += (uint32_t)hit;
    s->cached += (uint32_t)hit;
    c->prefix_hit_tokens += (uint64_t)hit;
    DSI_DEBUG("sequence %llu: %lld prompt tokens found in the prefix cache",
              (unsigned long long)s->id, (long long)hit);
}

int dsn_stage_schedule(dsn_compute_t *c)
{
    if (!c->is_first || c->retiring)
        return 0;
    int budget = c->opts->max_batch_tokens, n_seqs = 0;
    int64_t n = 0, avail = pool_free(c); /* KV blocks not yet promised to this batch */
    dsn_seq_t *pick[DSN_MAX_BATCH_SEQS];
    int take[DSN_MAX_BATCH_SEQS];
    /* Decodes first (one token each: they keep latency low), then prefill chunks. */
    for (int pass = 0; pass < 2; pass++) {
        for (int b = 0; b < DSN_SEQ_BUCKETS; b++) {
            for (dsn_seq_t *s = c->seq_buckets[b]; s != NULL; s = s->next_in_bucket) {
                if (s->in_flight || s->done || s->fork_wait || n_seqs == DSN_MAX_BATCH_SEQS ||
                    n >= budget)
                    continue;
                int decode = s->fed == s->n_prompt && s->has_next;
                if (decode && !dsn_stage_spec_can_decode(c))
                    continue;
                int prefill = s->fed < s->n_prompt;
                if ((pass == 0 && !decode) || (pass == 1 && !prefill))
                    continue;
                if (prefill) {
                    uint32_t fed = s->fed;
                    prefix_lookup(c, s);
                    if (s->fed != fed && avail != INT64_MAX) {
                        /* the blocks it took may have been cached ones, counted in avail */
                        avail -= (int64_t)(s->fed - fed) / DSN_KV_BLOCK;
                        avail = avail > 0 ? avail : 0;
                    }
                }
                int k = decode ? 1 + s->n_drafts : (int)(s->n_prompt - s->fed);
                if (decode && k > budget - n && n > 0)
                    continue; /* its drafts go together, in the next micro-batch */
                if (k > budget - n && !decode)
                    k = (int)(budget - n);
                /* Admission by memory: a prefill chunk takes what the free blocks hold (none:
                 * it waits); a decode that needs a block the pool lacks is preempted. */
                int64_t need = dsn_kvcache_blocks_needed(
                    s->kv, s->kv->length + (decode ? dsn_stage_spec_decode_tokens(c, s) : k));
                if (need > avail && exceeds_pool(c, s)) {
                    fail_too_long(c, s);
                    avail = pool_free(c);
                    continue;
                }
                if (need > avail && decode) {
                    dsn_stage_preempt(c, s);
                    avail = pool_free(c);
                    continue;
                }
                if (need > avail) {
                    k = chunk_that_fits(s->kv, k, avail);
                    if (k == 0)
                        continue;
                    need = dsn_kvcache_blocks_needed(s->kv, s->kv->length + k);
                }
                avail -= need;
                pick[n_seqs] = s;
                take[n_seqs++] = k;
                n += k;
            }
        }
    }
    int spec = 0;
    if (c->spec != NULL && n_seqs > 0) {
        n_seqs = dsn_stage_spec_draft(c, pick, take, n_seqs, &spec);
        n = 0;
        for (int i = 0; i < n_seqs; i++)
            n += take[i];
    }
    if (n_seqs == 0)
        return 0;
    dsn_mb_t *mb = dsn_mb_get(c, n_seqs, n);
    if (mb == NULL) {
        DSI_ERROR("out of memory for a micro-batch of %lld tokens", (long long)n);
        return 0;
    }
    int32_t *tokens = mb->tokens;
    int64_t t = 0;
    for (int i = 0; i < n_seqs; i++) {
        dsn_seq_t *s = pick[i];
        if (s->fed < s->n_prompt) {
            memcpy(tokens + t, s->prompt + s->fed, (size_t)take[i] * sizeof(int32_t));
            s->fed += (uint32_t)take[i];
        } else if (s->spec != NULL && spec) {
            dsn_stage_spec_feed(s, tokens + t, take[i]);
            s->has_next = 0;
        } else {
            /* (with the drafts of TOKENS.spec on a plan of several stages) */
            tokens[t] = s->next_token;
            memcpy(tokens + t + 1, s->drafts, (size_t)s->n_drafts * sizeof(int32_t));
            s->fed_step = (uint8_t)take[i];
            s->n_drafts = 0;
            s->has_next = 0;
        }
        if (c->prefix)
            dsn_kvcache_set_ids(s->kv, s->kv->length, tokens + t, take[i]);
        mb->seq[i] = s;
        mb->batch[i] = (dsn_seq_batch_t){s->kv, s->kv->length, take[i]};
        s->in_flight = 1;
        t += take[i];
    }
    mb->spec = spec;
    dsn_engine_embed(c->engine, tokens, n, mb->h);
    mb->layer = c->first_layer;
    dsn_mb_run(c, mb);
    return 1;
}

void dsn_stage_cleanup(dsn_compute_t *c)
{
    dsi_list_t *e;
    if (c->spec != NULL)
        dsn_stage_spec_abort(c);
    while ((e = dsi_list_pop_front(&c->parked)) != NULL)
        dsn_mb_put(c, dsi_container_of(e, dsn_mb_t, link));
    while ((e = dsi_list_pop_front(&c->deferred)) != NULL)
        dsn_queue_task_put(c->queue, dsi_container_of(e, dsn_task_t, link));
    for (int b = 0; b < DSN_SEQ_BUCKETS; b++) {
        while (c->seq_buckets[b] != NULL) {
            dsn_seq_t *s = c->seq_buckets[b];
            c->seq_buckets[b] = s->next_in_bucket;
            seq_free(s);
        }
    }
    c->n_fork_wait = 0;
}
