/*
 * dsn_dispatch.c - expert parallelism on the compute thread: the destinations of a MoE layer's
 * (token, slot) pairs, one DISPATCH per node holding experts of them, serving the DISPATCHes of
 * other nodes with this node's experts, and the COMBINE replies, whose rows land in the
 * micro-batch's slots before the engine combines them (dsn_engine_ffn_finish).
 *
 * Wire format: transport/data/dst_wire.h. Every row is the weighted expert output as the engine
 * computes it locally, so any placement gives bit-identical results (dsn_moe.h).
 */
#include <string.h>

#include "dsi_log.h"
#include "dsn_compute_impl.h"
#include "dsn_moe.h"

/* The node that computes expert e of layer l for pair i: this node when it holds a copy, else
 * one of the holders, spread over replicas by pair index. */
static uint32_t expert_dest(const dsn_compute_t *c, int l, int e, int64_t i)
{
    const dst_plan_t *p = c->route_plan;
    if (l == dsn_stage_spec_layer(c))
        return dsn_stage_spec_dest(c, e, i); /* the MTP layer's: the holders it loaded with */
    if (dsn_moe_holds(c->engine, l, e))
        return c->node_id;
    uint32_t idx = (uint32_t)(l - (int)p->first_moe_layer) * p->n_experts + (uint32_t)e;
    uint32_t a = p->expert_offsets[idx], b = p->expert_offsets[idx + 1];
    return p->expert_holders[a + (uint32_t)(i % (int64_t)(b - a))];
}

int dsn_dispatch_send(void *ctx, int l, const dsn_ffn_step_t *step, int64_t n)
{
    dsn_dispatch_ctx_t *dc = ctx;
    dsn_compute_t *c = dc->c;
    dsn_mb_t *mb = dc->mb;
    const dsn_config_t *cfg = &c->weights->cfg;
    int64_t K = cfg->num_experts_per_tok, H = cfg->hidden_size, n_pairs = n * K;
    mb->pending = 0;
    mb->epoch = c->route_epoch;
    if (c->route_stage_nodes == 1)
        return 0; /* every expert of the stage is here */
    memset(mb->dest_off, 0, (DSN_MAX_PEERS + 1) * sizeof(int32_t));
    memset(mb->answered, 0, DSN_MAX_PEERS);
    for (int64_t i = 0; i < n_pairs; i++) {
        mb->pair_dest[i] = expert_dest(c, l, step->experts[i], i);
        mb->dest_off[mb->pair_dest[i] + 1]++;
    }
    for (int d = 0; d < DSN_MAX_PEERS; d++)
        mb->dest_off[d + 1] += mb->dest_off[d];
    int32_t fill[DSN_MAX_PEERS];
    memcpy(fill, mb->dest_off, sizeof(fill));
    for (int64_t i = 0; i < n_pairs; i++)
        mb->pair_slot[fill[mb->pair_dest[i]]++] = (int32_t)i;

    for (uint32_t d = 0; d < DSN_MAX_PEERS; d++) {
        int32_t a = mb->dest_off[d], b = mb->dest_off[d + 1];
        if (a == b || d == c->node_id)
            continue;
        /* Rows: the distinct tokens of these pairs, in token order (pairs are in slot order). */
        int64_t rows = 0, last = -1;
        for (int32_t j = a; j < b; j++) {
            int64_t t = mb->pair_slot[j] / K;
            rows += t != last;
            last = t;
        }
        dst_wire_hdr_t hdr = {
            DST_WIRE_DISPATCH, DST_WIRE_F32,   c->node_id,  c->route_epoch,   mb->id, 0,
            (uint32_t)l,       (uint32_t)rows, (uint32_t)H, (uint32_t)(b - a)};
        size_t bytes = dst_wire_payload_bytes(&hdr);
        uint8_t *payload = dsn_queue_buf_get(c->queue, bytes);
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
                memcpy(x + row * H, step->u + t * H, (size_t)H * sizeof(float));
                last = t;
            }
            pairs[j - a] = (dst_wire_pair_t){(uint32_t)row, (uint16_t)(slot % K),
                                             (uint16_t)step->experts[slot], step->weights[slot]};
        }
        if (dsn_stage_emit_wire(c, d, &hdr, payload, bytes) != 0)
            return -1;
        mb->pending++;
    }
    return mb->pending;
}

/* Room for a served DISPATCH of n pairs in the scratch; -1 when out of memory. */
static int serve_reserve(dsn_compute_t *c, int64_t n)
{
    if (n <= c->serve_cap)
        return 0;
    int64_t cap = n > 2 * c->serve_cap ? n : 2 * c->serve_cap;
    int32_t *tok = realloc(c->serve_token, (size_t)cap * sizeof(int32_t));
    if (tok != NULL)
        c->serve_token = tok;
    int32_t *ex = realloc(c->serve_expert, (size_t)cap * sizeof(int32_t));
    if (ex != NULL)
        c->serve_expert = ex;
    float *wt = realloc(c->serve_weight, (size_t)cap * sizeof(float));
    if (wt != NULL)
        c->serve_weight = wt;
    if (tok == NULL || ex == NULL || wt == NULL)
        return -1;
    c->serve_cap = cap;
    return 0;
}

void dsn_dispatch_serve(dsn_compute_t *c, const dsn_task_t *t)
{
    const dst_wire_hdr_t *h = &t->hdr;
    const dsn_config_t *cfg = &c->weights->cfg;
    int64_t H = cfg->hidden_size, K = cfg->num_experts_per_tok;
    int l = (int)h->layer;
    /* The MTP layer's experts are the module's (the last stage with speculative decoding). */
    dsn_engine_t *engine = l == dsn_stage_spec_layer(c) ? dsn_stage_spec_engine(c) : c->engine;
    int fits = engine != c->engine
                   ? engine != NULL
                   : l >= c->first_layer && l < c->end_layer && c->weights->layers[l].is_moe;
    if (!fits || h->width != (uint32_t)H || h->n_pairs > h->n_rows * (uint32_t)K ||
        h->dtype != DST_WIRE_F32) {
        DSI_ERROR("DISPATCH from node %u for layer %u (%u rows x %u, %u pairs) does not fit this "
                  "node's slice: dropped",
                  t->peer, h->layer, h->n_rows, h->width, h->n_pairs);
        return;
    }
    const dst_wire_pair_t *pairs = dst_wire_pairs(h, t->payload);
    int64_t n = h->n_pairs;
    /* The reply carries its request's epoch: the sender accepts it even when it is retiring. */
    dst_wire_hdr_t rh = {DST_WIRE_COMBINE, DST_WIRE_F32, c->node_id, h->epoch, h->step,
                         h->micro_batch,   h->layer,     h->n_pairs, h->width, 0};
    size_t bytes = dst_wire_payload_bytes(&rh);
    float *out = dsn_queue_buf_get(c->queue, bytes);
    if (out == NULL || serve_reserve(c, n) != 0) {
        DSI_ERROR("out of memory serving a DISPATCH of %u pairs", h->n_pairs);
        dsn_queue_buf_put(out);
        return;
    }
    int32_t *tok = c->serve_token, *ex = c->serve_expert;
    float *wt = c->serve_weight;
    memset(out, 0, bytes);
    for (int64_t i = 0; i < n; i++) {
        tok[i] = (int32_t)pairs[i].token;
        ex[i] = pairs[i].expert;
        wt[i] = pairs[i].weight;
        if (ex[i] >= cfg->n_routed_experts || !dsn_moe_holds(engine, l, ex[i]) ||
            pairs[i].slot >= K) {
            DSI_ERROR("DISPATCH from node %u: expert %d of layer %d is not held here (slot %u)",
                      t->peer, ex[i], l, pairs[i].slot);
            ex[i] = 0;
            wt[i] = 0;
            tok[i] = 0;
        }
    }
    if (dsn_moe_experts(engine, l, t->payload, tok, ex, wt, n, out) < 0) {
        DSI_ERROR("out of memory serving a DISPATCH of %u pairs", h->n_pairs);
        dsn_queue_buf_put(out);
        return;
    }
    if (dsn_stage_emit_wire(c, t->peer, &rh, out, bytes) != 0)
        DSI_ERROR("out of memory answering a DISPATCH of %u pairs", h->n_pairs);
}

int dsn_dispatch_combine_into(dsn_compute_t *c, dsn_mb_t *mb, const dsn_task_t *t)
{
    const dst_wire_hdr_t *h = &t->hdr;
    int64_t H = c->weights->cfg.hidden_size;
    if (t->peer >= DSN_MAX_PEERS)
        return -1;
    int32_t a = mb->dest_off[t->peer], b = mb->dest_off[t->peer + 1];
    if ((uint32_t)(b - a) != h->n_rows || h->width != (uint32_t)H || h->dtype != DST_WIRE_F32 ||
        b == a || mb->answered[t->peer]) {
        DSI_ERROR("COMBINE from node %u for micro-batch %llu layer %u does not match its "
                  "DISPATCH (%u rows, expected %d): dropped",
                  t->peer, (unsigned long long)mb->id, h->layer, h->n_rows, b - a);
        return -1;
    }
    const float *rows = t->payload;
    for (int32_t j = a; j < b; j++)
        memcpy(mb->ffn.slots + (int64_t)mb->pair_slot[j] * H, rows + (int64_t)(j - a) * H,
               (size_t)H * sizeof(float));
    mb->answered[t->peer] = 1; /* a duplicate reply is refused */
    mb->pending--;
    return 0;
}

void dsn_dispatch_combine(dsn_compute_t *c, const dsn_task_t *t)
{
    const dst_wire_hdr_t *h = &t->hdr;
    dsi_list_for_each(mb, &c->parked, dsn_mb_t, link) {
        if (mb->id != h->step || (uint32_t)mb->layer != h->layer)
            continue;
        if (t->peer >= DSN_MAX_PEERS)
            break;
        if (dsn_dispatch_combine_into(c, mb, t) == 0 && mb->pending == 0) {
            dsi_list_remove(&mb->link);
            dsn_mb_resume(c, mb);
        }
        return;
    }
    DSI_WARN("COMBINE from node %u for unknown micro-batch %llu layer %u: dropped", t->peer,
             (unsigned long long)h->step, h->layer);
}
