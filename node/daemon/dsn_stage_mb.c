/*
 * dsn_stage_mb.c - micro-batches through a node's layers with expert-parallel MoE (DISPATCH to the
 * holders of remote experts, local experts in-process, COMBINE rows summed in slot order),
 * sampling at the last stage or ACTIVATION to the next, and the data-plane messages from other
 * nodes (serving their DISPATCHes, their COMBINE replies, ACTIVATIONs from the previous stage).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsi_log.h"
#include "dsn_moe.h"
#include "dsn_node_impl.h"

/* ---- micro-batches ---- */

void dsn_mb_free(dsn_mb_t *mb)
{
    if (mb == NULL)
        return;
    free(mb->seq);
    free(mb->batch);
    free(mb->h);
    free(mb->u);
    free(mb->experts);
    free(mb->weights);
    free(mb->slots);
    free(mb->shared);
    free(mb->pair_slot);
    free(mb->pair_token);
    free(mb->dest_off);
    free(mb->answered);
    free(mb);
}

dsn_mb_t *dsn_mb_create(dsn_node_t *node, int n_seqs, int64_t n)
{
    const dsn_config_t *c = &node->weights->cfg;
    size_t H = (size_t)c->hidden_size,
           K = (size_t)(c->num_experts_per_tok > 0 ? c->num_experts_per_tok : 1);
    dsn_mb_t *mb = calloc(1, sizeof(*mb));
    if (mb == NULL)
        return NULL;
    mb->id = ++node->next_mb_id;
    mb->n_seqs = n_seqs;
    mb->n = n;
    mb->seq = calloc((size_t)n_seqs, sizeof(dsn_seq_t *));
    mb->batch = calloc((size_t)n_seqs, sizeof(dsn_seq_batch_t));
    mb->h = malloc((size_t)n * H * sizeof(float));
    mb->u = malloc((size_t)n * H * sizeof(float));
    mb->experts = malloc((size_t)n * K * sizeof(int32_t));
    mb->weights = malloc((size_t)n * K * sizeof(float));
    mb->slots = malloc((size_t)n * K * H * sizeof(float));
    mb->shared = malloc((size_t)n * H * sizeof(float));
    mb->pair_slot = malloc((size_t)n * K * sizeof(int32_t));
    mb->pair_token = malloc((size_t)n * K * sizeof(int32_t));
    mb->dest_off = malloc((DSN_MAX_PEERS + 1) * sizeof(int32_t));
    mb->answered = malloc(DSN_MAX_PEERS);
    if (!mb->seq || !mb->batch || !mb->h || !mb->u || !mb->experts || !mb->weights || !mb->slots ||
        !mb->shared || !mb->pair_slot || !mb->pair_token || !mb->dest_off || !mb->answered) {
        dsn_mb_free(mb);
        return NULL;
    }
    /* Pair i of the micro-batch is slot i % K of token i / K, for every MoE layer. */
    for (size_t i = 0; i < (size_t)n * K; i++)
        mb->pair_token[i] = (int32_t)(i / K);
    return mb;
}

/* The node that computes expert e of layer l for pair i: this node when it holds a copy, else
 * one of the holders, spread over replicas by pair index. */
static uint32_t expert_dest(const dsn_node_t *node, int l, int e, int64_t i)
{
    const dst_plan_t *p = node->route_plan;
    if (dsn_moe_holds(node->engine, l, e))
        return node->node_id;
    uint32_t idx = (uint32_t)(l - (int)p->first_moe_layer) * p->n_experts + (uint32_t)e;
    uint32_t a = p->expert_offsets[idx], b = p->expert_offsets[idx + 1];
    return p->expert_holders[a + (uint32_t)(i % (int64_t)(b - a))];
}

static void *alloc_payload(size_t bytes)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes > 0 ? bytes : 64) != 0)
        return NULL;
    return p;
}

/* Queues a data-plane message for the loop thread (it owns the payload from now on). Returns -1,
 * the payload freed, when out of memory. */
static int emit_wire(dsn_node_t *node, uint32_t peer, const dst_wire_hdr_t *hdr, void *payload,
                     size_t bytes)
{
    dsn_out_t *o = calloc(1, sizeof(*o));
    if (o == NULL) {
        free(payload);
        return -1;
    }
    o->type = DSN_OUT_WIRE;
    o->peer = peer;
    o->hdr = *hdr;
    o->payload = payload;
    o->bytes = bytes;
    dsn_worker_emit(node, o);
    return 0;
}

/* Send one DISPATCH per remote destination of the pairs of this layer. Returns -1 on failure. */
static int send_dispatches(dsn_node_t *node, dsn_mb_t *mb, int l)
{
    const dsn_config_t *c = &node->weights->cfg;
    int64_t K = c->num_experts_per_tok, H = c->hidden_size, n_pairs = mb->n * K;
    uint32_t *dest = malloc((size_t)n_pairs * sizeof(uint32_t));
    if (dest == NULL)
        return -1;
    memset(mb->dest_off, 0, (DSN_MAX_PEERS + 1) * sizeof(int32_t));
    memset(mb->answered, 0, DSN_MAX_PEERS);
    for (int64_t i = 0; i < n_pairs; i++) {
        dest[i] = expert_dest(node, l, mb->experts[i], i);
        mb->dest_off[dest[i] + 1]++;
    }
    for (int d = 0; d < DSN_MAX_PEERS; d++)
        mb->dest_off[d + 1] += mb->dest_off[d];
    int32_t fill[DSN_MAX_PEERS];
    memcpy(fill, mb->dest_off, sizeof(fill));
    for (int64_t i = 0; i < n_pairs; i++)
        mb->pair_slot[fill[dest[i]]++] = (int32_t)i;
    free(dest);

    mb->pending = 0;
    mb->epoch = node->route_epoch;
    for (uint32_t d = 0; d < DSN_MAX_PEERS; d++) {
        int32_t a = mb->dest_off[d], b = mb->dest_off[d + 1];
        if (a == b || d == node->node_id)
            continue;
        /* Rows: the distinct tokens of these pairs, in token order (pairs are in slot order). */
        int64_t rows = 0, last = -1;
        for (int32_t j = a; j < b; j++) {
            int64_t t = mb->pair_slot[j] / K;
            rows += t != last;
            last = t;
        }
        dst_wire_hdr_t hdr = {
            DST_WIRE_DISPATCH, DST_WIRE_F32,   node->node_id, node->route_epoch, mb->id, 0,
            (uint32_t)l,       (uint32_t)rows, (uint32_t)H,   (uint32_t)(b - a)};
        size_t bytes = dst_wire_payload_bytes(&hdr);
        uint8_t *payload = alloc_payload(bytes);
        if (payload == NULL)
            return -1;
        memset(payload, 0, bytes);
        float *x = (float *)payload;
        dst_wire_pair_t *pairs = (dst_wire_pair_t *)(payload + dst_wire_side_offset(&hdr));
        int64_t row = -1;
        last = -1;
        for (int32_t j = a; j < b; j++) {
            int32_t slot = mb->pair_slot[j];
            int64_t t = slot / K;
            if (t != last) {
                row++;
                memcpy(x + row * H, mb->u + t * H, (size_t)H * sizeof(float));
                last = t;
            }
            pairs[j - a] = (dst_wire_pair_t){(uint32_t)row, (uint16_t)(slot % K),
                                             (uint16_t)mb->experts[slot], mb->weights[slot]};
        }
        if (emit_wire(node, d, &hdr, payload, bytes) != 0)
            return -1;
        mb->pending++;
    }
    return 0;
}

static void finish_mb(dsn_node_t *node, dsn_mb_t *mb);

/* Runs the micro-batch's layers until it must wait for COMBINE replies or leaves the slice. */
void dsn_mb_run(dsn_node_t *node, dsn_mb_t *mb)
{
    dsn_engine_t *e = node->engine;
    const dsn_weights_t *w = node->weights;
    const dsn_config_t *c = &w->cfg;
    int64_t H = c->hidden_size;
    while (mb->layer < node->end_layer) {
        int l = mb->layer;
        if (dsn_engine_reserve(e, mb->batch, mb->n_seqs) != DSI_OK ||
            dsn_engine_attention(e, l, mb->batch, mb->n_seqs, mb->h) != DSI_OK) {
            DSI_ERROR("micro-batch %llu failed at layer %d", (unsigned long long)mb->id, l);
            mb->layer = -1;
            finish_mb(node, mb);
            return;
        }
        if (!w->layers[l].is_moe || node->route_stage_nodes == 1) {
            /* Dense, or every expert of the stage is here: the single-process path. */
            if (dsn_engine_ffn(e, l, mb->n, mb->h) != DSI_OK) {
                DSI_ERROR("micro-batch %llu failed at layer %d", (unsigned long long)mb->id, l);
                mb->layer = -1;
                finish_mb(node, mb);
                return;
            }
            mb->layer++;
            continue;
        }
        const dsk_ops_t *ops = dsn_engine_ops(e);
        for (int64_t t = 0; t < mb->n; t++)
            ops->rmsnorm(mb->h + t * H, w->layers[l].post_attn_norm, H, c->rms_norm_eps,
                         mb->u + t * H);
        dsn_moe_route(e, l, mb->u, mb->n, mb->experts, mb->weights);
        dsn_stage_count_route(node, l, mb->experts, mb->weights, mb->n);
        if (send_dispatches(node, mb, l) != 0) {
            DSI_ERROR("out of memory dispatching micro-batch %llu", (unsigned long long)mb->id);
            mb->layer = -1;
            finish_mb(node, mb);
            return;
        }
        int64_t K = c->num_experts_per_tok;
        if (dsn_moe_experts(e, l, mb->u, mb->pair_token, mb->experts, mb->weights, mb->n * K,
                            mb->slots) < 0) {
            DSI_ERROR("out of memory computing micro-batch %llu", (unsigned long long)mb->id);
            mb->layer = -1;
            finish_mb(node, mb);
            return;
        }
        dsn_moe_shared(e, l, mb->u, mb->n, mb->shared);
        if (mb->pending > 0) {
            mb->next = node->parked;
            node->parked = mb;
            return;
        }
        dsn_moe_combine(e, mb->n, mb->slots, mb->shared, mb->h);
        mb->layer++;
    }
    finish_mb(node, mb);
}

/* All COMBINE replies of the parked micro-batch are in: finish its layer and go on. */
static void resume_mb(dsn_node_t *node, dsn_mb_t *mb)
{
    dsn_moe_combine(node->engine, mb->n, mb->slots, mb->shared, mb->h);
    mb->layer++;
    dsn_mb_run(node, mb);
}

static void dump_logits(const char *dir, uint64_t seq_id, const float *logits, int64_t V)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/seq-%llu.f32", dir, (unsigned long long)seq_id);
    FILE *f = fopen(path, "ab");
    if (f == NULL || fwrite(logits, sizeof(float), (size_t)V, f) != (size_t)V)
        DSI_ERROR("cannot append logits to %s: %m", path);
    if (f != NULL)
        fclose(f);
}

/* Last stage: sample the sequences whose batch reached the end of their prompt. */
static void sample_and_report(dsn_node_t *node, dsn_mb_t *mb)
{
    const dsn_config_t *c = &node->weights->cfg;
    int64_t V = c->vocab_size;
    int64_t *rows = malloc((size_t)mb->n_seqs * sizeof(int64_t));
    int *which = malloc((size_t)mb->n_seqs * sizeof(int));
    float *logits = malloc((size_t)(mb->n_seqs * V) * sizeof(float));
    if (rows == NULL || which == NULL || logits == NULL) {
        DSI_ERROR("out of memory sampling micro-batch %llu", (unsigned long long)mb->id);
        for (int i = 0; i < mb->n_seqs; i++)
            dsn_stage_emit_tokens(node, mb->seq[i]->id, 0, 0, DST_FINISH_ERROR);
        goto out;
    }
    int64_t n_rows = 0, t = 0;
    for (int i = 0; i < mb->n_seqs; i++) {
        const dsn_seq_batch_t *b = &mb->batch[i];
        t += b->n_tokens;
        if (b->pos + b->n_tokens >= (int64_t)mb->seq[i]->n_prompt) {
            which[n_rows] = i;
            rows[n_rows++] = t - 1;
        }
    }
    if (n_rows > 0)
        dsn_engine_head(node->engine, mb->h, rows, n_rows, logits);
    for (int64_t r = 0; r < n_rows; r++) {
        dsn_seq_t *s = mb->seq[which[r]];
        if (node->opts.logits_dir != NULL)
            dump_logits(node->opts.logits_dir, s->id, logits + r * V, V);
        int32_t tok = dsn_sampler_next(&s->sampler, logits + r * V);
        s->generated++;
        uint8_t finish = DST_FINISH_NONE;
        if (tok == c->eos_token_id)
            finish = DST_FINISH_STOP;
        else if (s->generated >= s->max_tokens || s->kv->length >= s->kv->max_tokens)
            finish = DST_FINISH_LENGTH;
        dsn_stage_emit_tokens(node, s->id, tok, 1, finish);
        if (node->is_first) {
            s->next_token = tok;
            s->has_next = finish == DST_FINISH_NONE;
            s->done |= finish != DST_FINISH_NONE;
        }
    }
out:
    free(rows);
    free(which);
    free(logits);
}

/* Send the micro-batch's hidden states to the next stage, one ACTIVATION per next node. */
static void forward_mb(dsn_node_t *node, dsn_mb_t *mb)
{
    int64_t H = node->weights->cfg.hidden_size;
    int sent[DSN_MAX_PEERS] = {0};
    for (int i = 0; i < mb->n_seqs; i++) {
        uint32_t next = dsn_route_next(node, mb->seq[i]);
        if (next >= DSN_MAX_PEERS || sent[next])
            continue;
        sent[next] = 1;
        int64_t rows = 0;
        for (int j = i; j < mb->n_seqs; j++) {
            if (dsn_route_next(node, mb->seq[j]) == next)
                rows += mb->batch[j].n_tokens;
        }
        dst_wire_hdr_t hdr = {DST_WIRE_ACTIVATION,
                              DST_WIRE_F32,
                              node->node_id,
                              node->route_epoch,
                              mb->id,
                              0,
                              (uint32_t)node->end_layer,
                              (uint32_t)rows,
                              (uint32_t)H,
                              0};
        size_t bytes = dst_wire_payload_bytes(&hdr);
        uint8_t *payload = alloc_payload(bytes);
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
            if (dsn_route_next(node, mb->seq[j]) == next) {
                memcpy(x + row * H, mb->h + t * H, (size_t)(b->n_tokens * H) * sizeof(float));
                for (int k = 0; k < b->n_tokens; k++, row++)
                    side[row] = (dst_wire_token_t){mb->seq[j]->id, (uint32_t)(b->pos + k), 0};
            }
            t += b->n_tokens;
        }
        if (emit_wire(node, next, &hdr, payload, bytes) != 0)
            DSI_ERROR("out of memory forwarding micro-batch %llu", (unsigned long long)mb->id);
    }
}

static void finish_mb(dsn_node_t *node, dsn_mb_t *mb)
{
    if (mb->layer < 0) {
        /* The coordinator learns of the failure and cancels the sequences on every node. */
        for (int i = 0; i < mb->n_seqs; i++) {
            dsn_stage_emit_tokens(node, mb->seq[i]->id, 0, 0, DST_FINISH_ERROR);
            mb->seq[i]->in_flight = 0;
            mb->seq[i]->done = 1;
        }
        dsn_mb_free(mb);
        return;
    }
    dsn_engine_commit(mb->batch, mb->n_seqs);
    if (node->is_last)
        sample_and_report(node, mb);
    else
        forward_mb(node, mb);
    /* At stage 0 a sequence may go on at once when this node also samples, or when it was
     * only a prefill chunk (the next chunk needs no sampled token); otherwise it waits for the
     * token to come back from the last stage. Later stages are free as soon as it left. */
    uint64_t drop[64];
    int n_drop = 0;
    for (int i = 0; i < mb->n_seqs; i++) {
        dsn_seq_t *s = mb->seq[i];
        if (!node->is_first || node->is_last || s->fed < s->n_prompt)
            s->in_flight = 0;
        if (s->remove_after && !s->in_flight && n_drop < 64)
            drop[n_drop++] = s->id;
    }
    dsn_mb_free(mb);
    for (int i = 0; i < n_drop; i++)
        dsn_seq_remove(node, drop[i]);
}

/* ---- data-plane tasks ---- */

/* Serve another node's DISPATCH: compute the pairs with our experts and answer with COMBINE. */
void dsn_stage_serve_dispatch(dsn_node_t *node, const dsn_task_t *t)
{
    const dst_wire_hdr_t *h = &t->hdr;
    const dsn_config_t *c = &node->weights->cfg;
    int64_t H = c->hidden_size, K = c->num_experts_per_tok;
    int l = (int)h->layer;
    if (l < node->first_layer || l >= node->end_layer || !node->weights->layers[l].is_moe ||
        h->width != (uint32_t)H || h->n_pairs > h->n_rows * (uint32_t)K ||
        h->dtype != DST_WIRE_F32) {
        DSI_ERROR("DISPATCH from node %u for layer %u (%u rows x %u, %u pairs) does not fit this "
                  "node's slice: dropped",
                  t->peer, h->layer, h->n_rows, h->width, h->n_pairs);
        return;
    }
    const dst_wire_pair_t *pairs = dst_wire_pairs(h, t->payload);
    int64_t n = h->n_pairs;
    int32_t *tok = malloc((size_t)n * sizeof(int32_t));
    int32_t *ex = malloc((size_t)n * sizeof(int32_t));
    float *wt = malloc((size_t)n * sizeof(float));
    /* The reply carries its request's epoch: the sender accepts it even when it is retiring. */
    dst_wire_hdr_t rh = {DST_WIRE_COMBINE, DST_WIRE_F32, node->node_id, h->epoch, h->step,
                         h->micro_batch,   h->layer,     h->n_pairs,    h->width, 0};
    size_t bytes = dst_wire_payload_bytes(&rh);
    float *out = alloc_payload(bytes);
    if (tok == NULL || ex == NULL || wt == NULL || out == NULL) {
        DSI_ERROR("out of memory serving a DISPATCH of %u pairs", h->n_pairs);
        free(out);
        goto out;
    }
    memset(out, 0, bytes);
    for (int64_t i = 0; i < n; i++) {
        tok[i] = (int32_t)pairs[i].token;
        ex[i] = pairs[i].expert;
        wt[i] = pairs[i].weight;
        if (ex[i] >= c->n_routed_experts || !dsn_moe_holds(node->engine, l, ex[i]) ||
            pairs[i].slot >= K) {
            DSI_ERROR("DISPATCH from node %u: expert %d of layer %d is not held here (slot %u)",
                      t->peer, ex[i], l, pairs[i].slot);
            ex[i] = 0;
            wt[i] = 0;
            tok[i] = 0;
        }
    }
    if (dsn_moe_experts(node->engine, l, t->payload, tok, ex, wt, n, out) < 0) {
        DSI_ERROR("out of memory serving a DISPATCH of %u pairs", h->n_pairs);
        free(out);
        goto out;
    }
    if (emit_wire(node, t->peer, &rh, out, bytes) != 0)
        DSI_ERROR("out of memory answering a DISPATCH of %u pairs", h->n_pairs);
out:
    free(tok);
    free(ex);
    free(wt);
}

void dsn_stage_combine(dsn_node_t *node, const dsn_task_t *t)
{
    const dst_wire_hdr_t *h = &t->hdr;
    int64_t H = node->weights->cfg.hidden_size;
    for (dsn_mb_t **p = &node->parked; *p != NULL; p = &(*p)->next) {
        dsn_mb_t *mb = *p;
        if (mb->id != h->step || (uint32_t)mb->layer != h->layer)
            continue;
        if (t->peer >= DSN_MAX_PEERS)
            break;
        int32_t a = mb->dest_off[t->peer], b = mb->dest_off[t->peer + 1];
        if ((uint32_t)(b - a) != h->n_rows || h->width != (uint32_t)H || h->dtype != DST_WIRE_F32 ||
            b == a || mb->answered[t->peer]) {
            DSI_ERROR("COMBINE from node %u for micro-batch %llu layer %u does not match its "
                      "DISPATCH (%u rows, expected %d): dropped",
                      t->peer, (unsigned long long)mb->id, h->layer, h->n_rows, b - a);
            return;
        }
        const float *rows = t->payload;
        for (int32_t j = a; j < b; j++)
            memcpy(mb->slots + (int64_t)mb->pair_slot[j] * H, rows + (int64_t)(j - a) * H,
                   (size_t)H * sizeof(float));
        mb->answered[t->peer] = 1; /* a duplicate reply is refused */
        if (--mb->pending == 0) {
            *p = mb->next;
            resume_mb(node, mb);
        }
        return;
    }
    DSI_WARN("COMBINE from node %u for unknown micro-batch %llu layer %u: dropped", t->peer,
             (unsigned long long)h->step, h->layer);
}

/*
 * An ACTIVATION from the previous stage. Returns 0 when taken, 1 when it must wait (a sequence it
 * names is not known yet, or an earlier chunk of it has not arrived: the data plane does not
 * order rendezvous messages, and SUBMIT travels on another connection).
 */
int dsn_stage_activation(dsn_node_t *node, const dsn_task_t *t)
{
    const dst_wire_hdr_t *h = &t->hdr;
    int64_t H = node->weights->cfg.hidden_size;
    if (h->layer != (uint32_t)node->first_layer || h->width != (uint32_t)H ||
        h->dtype != DST_WIRE_F32 || node->is_first) {
        DSI_ERROR("ACTIVATION from node %u for layer %u does not fit this node (stage %d, layers "
                  "%d..%d): dropped",
                  t->peer, h->layer, node->stage, node->first_layer, node->end_layer - 1);
        return 0;
    }
    const dst_wire_token_t *tok = dst_wire_tokens(h, t->payload);
    int n_seqs = 0;
    for (uint32_t i = 0; i < h->n_rows; i++) {
        if (i == 0 || tok[i].seq_id != tok[i - 1].seq_id || tok[i].pos != tok[i - 1].pos + 1)
            n_seqs++;
    }
    /* Check every sequence first: all present, not in flight, at the expected position. */
    for (uint32_t i = 0; i < h->n_rows; i++) {
        if (i > 0 && tok[i].seq_id == tok[i - 1].seq_id && tok[i].pos == tok[i - 1].pos + 1)
            continue;
        dsn_seq_t *s = dsn_seq_find(node, tok[i].seq_id);
        if (s == NULL || s->in_flight || (int64_t)tok[i].pos != s->kv->length)
            return 1;
    }
    dsn_mb_t *mb = dsn_mb_create(node, n_seqs, h->n_rows);
    if (mb == NULL) {
        DSI_ERROR("out of memory for an ACTIVATION of %u tokens", h->n_rows);
        return 0;
    }
    int k = -1;
    for (uint32_t i = 0; i < h->n_rows; i++) {
        if (i == 0 || tok[i].seq_id != tok[i - 1].seq_id || tok[i].pos != tok[i - 1].pos + 1) {
            dsn_seq_t *s = dsn_seq_find(node, tok[i].seq_id);
            mb->seq[++k] = s;
            mb->batch[k] = (dsn_seq_batch_t){s->kv, tok[i].pos, 0};
            s->in_flight = 1;
        }
        mb->batch[k].n_tokens++;
    }
    /* A sequence split in two runs of one message would break the cache order: refuse it. */
    for (int i = 0; i < n_seqs; i++) {
        for (int j = i + 1; j < n_seqs; j++) {
            if (mb->seq[i] == mb->seq[j]) {
                DSI_ERROR("ACTIVATION from node %u names sequence %llu twice: dropped", t->peer,
                          (unsigned long long)mb->seq[i]->id);
                for (int x = 0; x < n_seqs; x++)
                    mb->seq[x]->in_flight = 0;
                dsn_mb_free(mb);
                return 0;
            }
        }
    }
    memcpy(mb->h, t->payload, (size_t)(h->n_rows * H) * sizeof(float));
    mb->layer = node->first_layer;
    dsn_mb_run(node, mb);
    return 0;
}
