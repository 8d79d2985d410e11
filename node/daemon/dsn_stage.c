/*
 * dsn_stage.c - the compute thread's work on a node: the sequences of its stage, the task
 * dispatcher, the stage-0 scheduler (continuous batching), and expert-load counting. Micro-batches
 * and the data-plane messages are in dsn_stage_mb.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dsi_log.h"
#include "dsn_moe.h"
#include "dsn_node_impl.h"

/* ---- sequences ---- */

static dsn_seq_t **bucket(dsn_node_t *node, uint64_t id)
{
    return &node->seq_buckets[(id * 0x9e3779b97f4a7c15ULL) >> 54];
}

dsn_seq_t *dsn_seq_find(dsn_node_t *node, uint64_t id)
{
    for (dsn_seq_t *s = *bucket(node, id); s != NULL; s = s->next_in_bucket) {
        if (s->id == id)
            return s;
    }
    return NULL;
}

static void seq_free(dsn_seq_t *s)
{
    dsn_kvcache_destroy(s->kv);
    dsn_sampler_cleanup(&s->sampler);
    free(s->prompt);
    free(s);
}

void dsn_seq_remove(dsn_node_t *node, uint64_t id)
{
    for (dsn_seq_t **p = bucket(node, id); *p != NULL; p = &(*p)->next_in_bucket) {
        if ((*p)->id == id) {
            dsn_seq_t *s = *p;
            *p = s->next_in_bucket;
            seq_free(s);
            return;
        }
    }
}

uint32_t dsn_route_next(const dsn_node_t *node, const dsn_seq_t *seq)
{
    return seq->route[node->stage + 1];
}

void dsn_stage_emit_tokens(dsn_node_t *node, uint64_t seq_id, int32_t token, uint32_t n,
                           uint8_t finish)
{
    dsn_out_t *o = calloc(1, sizeof(*o));
    if (o == NULL) {
        DSI_ERROR("out of memory sending TOKENS of sequence %llu", (unsigned long long)seq_id);
        return;
    }
    o->type = DSN_OUT_TOKENS;
    o->seq_id = seq_id;
    o->token = token;
    o->n_tokens = n;
    o->finish = finish;
    dsn_worker_emit(node, o);
}

static void handle_submit(dsn_node_t *node, const dst_msg_submit_t *m)
{
    if (dsn_seq_find(node, m->seq_id) != NULL) {
        DSI_WARN("SUBMIT of sequence %llu, which exists: ignored", (unsigned long long)m->seq_id);
        return;
    }
    if (m->n_route != (uint32_t)node->n_stages || m->route[node->stage] != node->node_id) {
        DSI_ERROR("SUBMIT of sequence %llu: its route does not pass through this node at stage %d",
                  (unsigned long long)m->seq_id, node->stage);
        dsn_stage_emit_tokens(node, m->seq_id, 0, 0, DST_FINISH_ERROR);
        return;
    }
    dsn_seq_t *s = calloc(1, sizeof(*s));
    int64_t ctx = (int64_t)m->n_tokens + m->max_tokens;
    if (ctx > node->opts.max_context)
        ctx = node->opts.max_context;
    if (s == NULL || dsn_engine_kvcache_create(node->engine, ctx, &s->kv) != DSI_OK)
        goto fail;
    s->id = m->seq_id;
    s->n_route = m->n_route;
    memcpy(s->route, m->route, m->n_route * sizeof(uint32_t));
    s->n_prompt = m->n_tokens;
    s->max_tokens = m->max_tokens;
    if (node->is_first) {
        s->prompt = malloc(m->n_tokens * sizeof(int32_t));
        if (s->prompt == NULL)
            goto fail;
        memcpy(s->prompt, m->tokens, m->n_tokens * sizeof(int32_t));
    }
    if (node->is_last) {
        dsn_sampling_t sp = {m->temperature, m->top_p, (int)m->top_k, m->seed};
        if (dsn_sampler_init(&s->sampler, &sp, node->weights->cfg.vocab_size) != 0)
            goto fail;
        dsn_sampler_skip(&s->sampler, m->n_generated);
    }
    dsn_seq_t **b = bucket(node, s->id);
    s->next_in_bucket = *b;
    *b = s;
    DSI_DEBUG("sequence %llu: %u prompt tokens, up to %u new", (unsigned long long)s->id,
              s->n_prompt, s->max_tokens);
    return;
fail:
    DSI_ERROR("out of memory for sequence %llu", (unsigned long long)m->seq_id);
    if (s != NULL)
        seq_free(s);
    dsn_stage_emit_tokens(node, m->seq_id, 0, 0, DST_FINISH_ERROR);
}

static void handle_feedback(dsn_node_t *node, const dst_msg_tokens_t *m)
{
    dsn_seq_t *s = dsn_seq_find(node, m->seq_id);
    if (s == NULL || !node->is_first)
        return;
    if (m->finish != DST_FINISH_NONE || m->n_tokens == 0) {
        s->done = 1; /* finished: nothing more to feed; CANCEL frees it */
        s->in_flight = 0;
        return;
    }
    s->next_token = m->tokens[m->n_tokens - 1];
    s->has_next = 1;
    s->in_flight = 0;
}

/* ---- expert load and router biases ---- */

void dsn_stage_count_route(void *ctx, int layer, const int32_t *experts, const float *weights,
                           int64_t n)
{
    (void)weights;
    dsn_node_t *node = ctx;
    int li = layer - node->load_first;
    if (node->load_counts == NULL || li < 0 || li >= node->load_layers)
        return;
    int64_t K = node->weights->cfg.num_experts_per_tok, E = node->load_experts;
    uint32_t *row = node->load_counts + (size_t)li * (size_t)E;
    for (int64_t i = 0; i < n * K; i++) {
        /* Saturate rather than wrap: a window never comes near 2^32 pairs in practice. */
        if (experts[i] >= 0 && experts[i] < E && row[experts[i]] != UINT32_MAX)
            row[experts[i]]++;
    }
}

/* The window ended: hand the counts to the loop thread (LOAD_STATS) when there are any. */
static void report_load(dsn_node_t *node)
{
    size_t n = (size_t)node->load_layers * (size_t)node->load_experts;
    int any = 0;
    for (size_t i = 0; i < n && !any; i++)
        any = node->load_counts[i] != 0;
    if (!any)
        return;
    dsn_out_t *o = calloc(1, sizeof(*o));
    uint32_t *copy = malloc(n * sizeof(uint32_t));
    if (o == NULL || copy == NULL) {
        free(o);
        free(copy);
        return; /* keep counting: the next window reports these too */
    }
    memcpy(copy, node->load_counts, n * sizeof(uint32_t));
    memset(node->load_counts, 0, n * sizeof(uint32_t));
    o->type = DSN_OUT_LOAD;
    o->counts = copy;
    o->load_first = (uint32_t)node->load_first;
    o->load_layers = (uint32_t)node->load_layers;
    o->load_experts = (uint32_t)node->load_experts;
    o->epoch = node->route_epoch;
    dsn_worker_emit(node, o);
}

/* New router biases for one MoE layer of this stage: they choose experts from the next routing
 * on (a micro-batch parked in that layer has already routed). */
static void apply_bias(dsn_node_t *node, const dst_msg_bias_t *b)
{
    int l = (int)b->layer;
    if (b->epoch != node->route_epoch)
        return; /* an older epoch's: the coordinator sends the biases again for this one */
    if (l < node->first_layer || l >= node->end_layer || !node->weights->layers[l].is_moe ||
        b->n_biases != (uint32_t)node->weights->cfg.n_routed_experts) {
        DSI_ERROR("BIAS for layer %u with %u values does not fit this node (MoE layers of "
                  "%d..%d, %d experts): ignored",
                  b->layer, b->n_biases, node->first_layer, node->end_layer - 1,
                  node->weights->cfg.n_routed_experts);
        return;
    }
    memcpy(node->weights->layers[l].router_bias, b->biases, b->n_biases * sizeof(float));
    DSI_DEBUG("router biases of layer %d updated", l);
}

/* ---- the task dispatcher and the stage-0 scheduler ---- */

static void handle_cancel(dsn_node_t *node, uint64_t id)
{
    dsn_seq_t *s = dsn_seq_find(node, id);
    if (s == NULL)
        return;
    s->done = 1;
    if (s->in_flight)
        s->remove_after = 1;
    else
        dsn_seq_remove(node, id);
}

/* Retry deferred ACTIVATIONs after something changed; drop those waiting too long. */
static void retry_deferred(dsn_node_t *node)
{
    dsn_task_t **p = &node->deferred;
    while (*p != NULL) {
        dsn_task_t *t = *p;
        if (dsn_stage_activation(node, t) == 0) {
            *p = t->next;
            dst_msg_free(&t->msg);
            free(t->payload);
            free(t);
            p = &node->deferred; /* it may unblock an earlier one */
            continue;
        }
        p = &t->next;
    }
}

void dsn_stage_handle(dsn_node_t *node, dsn_task_t *task)
{
    switch (task->type) {
    case DSN_TASK_SUBMIT:
        handle_submit(node, &task->msg.submit);
        break;
    case DSN_TASK_FEEDBACK:
        handle_feedback(node, &task->msg.tokens);
        break;
    case DSN_TASK_CANCEL:
        handle_cancel(node, task->msg.cancel.seq_id);
        break;
    case DSN_TASK_BIAS:
        apply_bias(node, &task->msg.bias);
        break;
    case DSN_TASK_LOAD:
        if (node->load_counts != NULL)
            report_load(node);
        break;
    case DSN_TASK_RELOAD:
    case DSN_TASK_PREPARE:
    case DSN_TASK_SWITCH:
    case DSN_TASK_RELEASE:
        dsn_replan_handle(node, task);
        break;
    case DSN_TASK_WIRE:
        if (task->hdr.type == DST_WIRE_DISPATCH) {
            dsn_stage_serve_dispatch(node, task);
        } else if (task->hdr.type == DST_WIRE_COMBINE) {
            dsn_stage_combine(node, task);
        } else if (dsn_stage_activation(node, task) != 0) {
            /* Keep it: move the task into the deferred list (the caller frees a copy). */
            dsn_task_t *keep = malloc(sizeof(*keep));
            if (keep == NULL) {
                DSI_ERROR("out of memory deferring an ACTIVATION: dropped");
                return;
            }
            *keep = *task;
            keep->next = NULL;
            task->payload = NULL;
            memset(&task->msg, 0, sizeof(task->msg));
            dsn_task_t **tail = &node->deferred;
            while (*tail != NULL)
                tail = &(*tail)->next;
            *tail = keep;
            return;
        }
        break;
    default:
        break;
    }
    if (node->deferred != NULL)
        retry_deferred(node);
    dsn_replan_check(node);
}

int dsn_stage_schedule(dsn_node_t *node)
{
    if (!node->is_first || node->retiring)
        return 0;
    int budget = node->opts.max_batch_tokens, n_seqs = 0;
    int64_t n = 0;
    dsn_seq_t *pick[256];
    int take[256];
    /* Decodes first (one token each: they keep latency low), then prefill chunks. */
    for (int pass = 0; pass < 2; pass++) {
        for (int b = 0; b < 1024; b++) {
            for (dsn_seq_t *s = node->seq_buckets[b]; s != NULL; s = s->next_in_bucket) {
                if (s->in_flight || s->done || n_seqs == 256 || n >= budget)
                    continue;
                int decode = s->fed == s->n_prompt && s->has_next;
                int prefill = s->fed < s->n_prompt;
                if ((pass == 0 && !decode) || (pass == 1 && !prefill))
                    continue;
                int k = decode ? 1 : (int)(s->n_prompt - s->fed);
                if (k > budget - n)
                    k = (int)(budget - n);
                pick[n_seqs] = s;
                take[n_seqs++] = k;
                n += k;
            }
        }
    }
    if (n_seqs == 0)
        return 0;
    dsn_mb_t *mb = dsn_mb_create(node, n_seqs, n);
    int32_t *tokens = malloc((size_t)n * sizeof(int32_t));
    if (mb == NULL || tokens == NULL) {
        DSI_ERROR("out of memory for a micro-batch of %lld tokens", (long long)n);
        dsn_mb_free(mb);
        free(tokens);
        return 0;
    }
    int64_t t = 0;
    for (int i = 0; i < n_seqs; i++) {
        dsn_seq_t *s = pick[i];
        if (s->fed < s->n_prompt) {
            memcpy(tokens + t, s->prompt + s->fed, (size_t)take[i] * sizeof(int32_t));
            s->fed += (uint32_t)take[i];
        } else {
            tokens[t] = s->next_token;
            s->has_next = 0;
        }
        mb->seq[i] = s;
        mb->batch[i] = (dsn_seq_batch_t){s->kv, s->kv->length, take[i]};
        s->in_flight = 1;
        t += take[i];
    }
    dsn_engine_embed(node->engine, tokens, n, mb->h);
    free(tokens);
    mb->layer = node->first_layer;
    dsn_mb_run(node, mb);
    return 1;
}

void dsn_stage_cleanup(dsn_node_t *node)
{
    while (node->parked != NULL) {
        dsn_mb_t *mb = node->parked;
        node->parked = mb->next;
        dsn_mb_free(mb);
    }
    while (node->deferred != NULL) {
        dsn_task_t *t = node->deferred;
        node->deferred = t->next;
        dst_msg_free(&t->msg);
        free(t->payload);
        free(t);
    }
    for (int b = 0; b < 1024; b++) {
        while (node->seq_buckets[b] != NULL) {
            dsn_seq_t *s = node->seq_buckets[b];
            node->seq_buckets[b] = s->next_in_bucket;
            seq_free(s);
        }
    }
}
