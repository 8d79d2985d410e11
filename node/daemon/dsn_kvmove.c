/*
 * dsn_kvmove.c - a sequence moves to another node of its stage with its KV cache (a drain or a
 * live re-plan gave it a new lane; docs/ELASTICITY.md, "KV moves with its sequence").
 *
 *   sender    KV_MOVE from the coordinator (before the SWITCH that may retire this node, or
 *             after a restart that kept the rows: dsn_kvstash.c): the rows of positions
 *             [0, n_tokens) of the layers asked for go to the new holder as KV messages on the
 *             data plane, a few MiB each, as the cache stores them; to this node itself they
 *             go through the deferred messages, as if they had arrived.
 *   receiver  the SUBMIT with kv_move names the old id in fork_of; a node that does not hold it
 *             reserves the rows' blocks and waits (fork_wait) while the chunks arrive, in any
 *             order, from one sender or several (each with some of its layers), before or after
 *             the SUBMIT (a chunk of an unknown sequence is deferred
 *             like an ACTIVATION). With the last chunk the cache has its length, stage 0
 *             continues after the moved positions, and KV_DONE tells the coordinator.
 *
 * Anything wrong (the sender lacks the rows, no room here, a malformed or corrupt chunk) ends
 * the move with KV_DONE ok = 0 and a reason: the coordinator then prefills the sequence again
 * from its tokens, so a failed move costs time, never tokens.
 */
#include <stdio.h>
#include <string.h>

#include "dsi_clock.h"
#include "dsi_log.h"
#include "dsn_compute_impl.h"

/* Data of one KV message at most (whole blocks; a chunk is never smaller than one block). */
#define CHUNK_TARGET_BYTES (4u << 20)
/* A chunk whose sequence never shows up is dropped after this long. */
#define ORPHAN_CHUNK_NS (60ULL * 1000000000ULL)

void dsn_kvmove_done(dsn_compute_t *c, uint64_t seq_id, int ok, uint64_t bytes, const char *why)
{
    dsn_out_t *o = dsn_queue_out_get(c->queue);
    if (o == NULL) {
        DSI_ERROR("out of memory reporting the KV move of sequence %llu",
                  (unsigned long long)seq_id);
        return; /* the coordinator's deadline for the move falls back */
    }
    o->type = DSN_OUT_KV_DONE;
    o->seq_id = seq_id;
    o->finish = (uint8_t)(ok != 0);
    o->kv_bytes = bytes;
    snprintf(o->text, sizeof(o->text), "%s", why != NULL ? why : "");
    dsn_queue_emit(c->queue, o);
}

/* A KV message to this node itself (a node that keeps some of a sequence's layers across a
 * re-plan that moved stage boundaries): it joins the deferred data-plane messages, as if it had
 * arrived, and is taken once the sequence's SUBMIT did. */
static int deliver_here(dsn_compute_t *c, const dst_wire_hdr_t *h, void *payload)
{
    dsn_task_t *t = dsn_queue_task_get(c->queue);
    if (t == NULL) {
        dsn_queue_buf_put(payload);
        return -1;
    }
    t->type = DSN_TASK_WIRE;
    t->hdr = *h;
    t->hdr.src = c->node_id;
    t->peer = c->node_id;
    t->payload = payload;
    t->since_ns = 0;
    dsi_list_push_back(&c->deferred, &t->link);
    return 0;
}

void dsn_kvmove_send(dsn_compute_t *c, const dst_msg_kv_move_t *m)
{
    char why[DSN_OUT_TEXT];
    /* The rows: of a live sequence here, or kept from the slice a re-plan replaced. */
    dsn_seq_t *s = dsn_seq_find(c, m->seq_id);
    const dsn_kvio_stash_t *kept = s == NULL ? dsn_kvstash_find(c, m->seq_id) : NULL;
    const dsn_kvcache_t *kv = s != NULL && c->engine != NULL ? s->kv : NULL;
    int64_t held = kv != NULL ? kv->length : kept != NULL ? (int64_t)kept->length : 0;
    uint32_t base = kept != NULL ? kept->base : (uint32_t)c->first_layer;
    uint32_t n_held = kept != NULL ? kept->n_layers : (uint32_t)(c->end_layer - c->first_layer);
    uint32_t layer = m->end_layer != 0 ? m->first_layer : base;
    uint32_t n_layers = m->end_layer != 0 ? m->end_layer - m->first_layer : n_held;
    if ((kv == NULL && kept == NULL) || held < (int64_t)m->n_tokens) {
        snprintf(why, sizeof(why), "node %u holds %lld positions of sequence %llu, %u asked",
                 c->node_id, (long long)held, (unsigned long long)m->seq_id, m->n_tokens);
        DSI_WARN("KV move refused: %s", why);
        dsn_kvmove_done(c, m->to_seq, 0, 0, why);
        return;
    }
    if (layer < base || (uint64_t)layer - base + n_layers > n_held) {
        snprintf(why, sizeof(why), "node %u holds layers %u..%u of sequence %llu, %u..%u asked",
                 c->node_id, base, base + n_held - 1, (unsigned long long)m->seq_id, layer,
                 layer + n_layers - 1);
        DSI_WARN("KV move refused: %s", why);
        dsn_kvmove_done(c, m->to_seq, 0, 0, why);
        return;
    }
    int row = kept != NULL ? (int)kept->row : kv->row;
    dsn_kv_dtype_t dtype = kept != NULL ? (dsn_kv_dtype_t)kept->dtype : kv->dtype;
    uint32_t per = dsn_kvio_chunk_tokens((int)n_layers, row, dtype, CHUNK_TARGET_BYTES);
    uint32_t cap_rows = DST_WIRE_MAX_TOKENS / n_layers / DSN_KV_BLOCK * DSN_KV_BLOCK;
    if (per > cap_rows)
        per = cap_rows > 0 ? cap_rows : DSN_KV_BLOCK;
    uint64_t bytes = 0;
    uint32_t chunks = 0;
    /* The open block of a rounded cache travels as f32 records, in a chunk of its own. */
    uint32_t open = dsn_kvio_open_first(m->n_tokens, dtype);
    for (uint32_t first = 0, k; first < m->n_tokens; first += k, chunks++) {
        k = m->n_tokens - first < per ? m->n_tokens - first : per;
        if (first < open && first + k > open)
            k = open - first;
        dsn_kv_dtype_t rdt = dsn_kvio_record_dtype(dtype, first, m->n_tokens);
        /* The epoch of the plan the sequence moves to: a node that joined with it accepts no
         * other. */
        dst_wire_hdr_t h = {.type = DST_WIRE_KV,
                            .dtype = DST_WIRE_U8,
                            .epoch = m->epoch != 0 ? m->epoch : c->route_epoch,
                            .layer = layer,
                            .n_rows = n_layers * k,
                            .width = (uint32_t)dsn_kvio_width(row, rdt)};
        size_t total = dst_wire_payload_bytes(&h), data = dst_wire_tensor_bytes(&h);
        uint8_t *payload = dsn_queue_buf_get(c->queue, total);
        dsn_kvio_chunk_t meta;
        dsi_status_t st = payload == NULL ? DSI_ERR_NOMEM
                          : kept != NULL
                              ? dsn_kvio_stash_export(kept, layer, n_layers, first, k, m->n_tokens,
                                                      payload, data, &meta)
                              : dsn_kvio_export_layers(kv, base, layer, n_layers, first, k,
                                                       m->n_tokens, payload, data, &meta);
        if (st != DSI_OK) {
            dsn_queue_buf_put(payload);
            snprintf(why, sizeof(why), "node %u could not export positions %u + %u", c->node_id,
                     first, k);
            DSI_ERROR("KV move of sequence %llu: %s", (unsigned long long)m->seq_id, why);
            dsn_kvmove_done(c, m->to_seq, 0, 0, why);
            return;
        }
        memset(payload + data, 0, total - data);
        dst_wire_kv_t *rec = (dst_wire_kv_t *)(payload + dst_wire_side_offset(&h));
        *rec = (dst_wire_kv_t){.seq_id = m->to_seq,
                               .first = meta.first,
                               .n_tokens = meta.n_tokens,
                               .total = meta.total,
                               .n_layers = meta.n_layers,
                               .row = meta.row,
                               .kv_dtype = (uint8_t)meta.dtype,
                               .checksum = meta.checksum};
        int rc = m->to == c->node_id ? deliver_here(c, &h, payload)
                                     : dsn_stage_emit_wire(c, m->to, &h, payload, total);
        if (rc != 0) {
            snprintf(why, sizeof(why), "node %u is out of memory sending it", c->node_id);
            dsn_kvmove_done(c, m->to_seq, 0, 0, why);
            return;
        }
        bytes += data;
    }
    DSI_INFO("sequence %llu: %u positions of KV cache (layers %u..%u, %.1f KiB, %s, %u chunks) "
             "%s node %u as sequence %llu",
             (unsigned long long)m->seq_id, m->n_tokens, layer, layer + n_layers - 1,
             (double)bytes / 1024, dsn_kv_dtype_name(dtype), chunks,
             m->to == c->node_id ? "kept on this" : "sent to", m->to,
             (unsigned long long)m->to_seq);
}

/* The move into s ended: the sequence runs (ok) or waits for its CANCEL (the coordinator
 * submits it again). */
static void finish_rx(dsn_compute_t *c, dsn_seq_t *s, int ok, const char *why)
{
    if (s->fork_wait) {
        s->fork_wait = 0;
        c->n_fork_wait--;
    }
    uint64_t bytes = s->kv_rx_bytes;
    uint32_t n = s->kv_rx != NULL ? s->kv_rx->total : s->fork_len;
    if (s->kv_rx != NULL) {
        dsn_kvio_rx_free(s->kv_rx);
        free(s->kv_rx);
        s->kv_rx = NULL;
    }
    if (ok) {
        if (c->is_first)
            s->fed = s->fork_len;
        /* The moved rows are the prompt's and the generated tokens' so far: their full blocks
         * serve prompts that start alike here too (the prefix cache of every stage). */
        if (c->prefix && s->prompt != NULL && s->n_prompt >= s->fork_len &&
            dsn_kvcache_set_ids(s->kv, 0, s->prompt, s->fork_len) == 0)
            dsn_kvcache_publish(s->kv);
        DSI_INFO("sequence %llu: %u positions of KV cache received (%.1f KiB): it continues "
                 "without a prefill",
                 (unsigned long long)s->id, n, (double)bytes / 1024);
        dsn_kvmove_done(c, s->id, 1, bytes, NULL);
        return;
    }
    DSI_WARN("sequence %llu: its KV cache cannot move here (%s): it will be prefilled again",
             (unsigned long long)s->id, why);
    dsn_kvcache_clear(s->kv);
    s->done = 1;
    dsn_kvmove_done(c, s->id, 0, 0, why);
}

void dsn_kvmove_start(dsn_compute_t *c, dsn_seq_t *s)
{
    char why[DSN_OUT_TEXT];
    s->kv_rx = calloc(1, sizeof(*s->kv_rx));
    if (s->kv_rx == NULL) {
        finish_rx(c, s, 0, "out of memory");
        return;
    }
    s->fork_wait = 1;
    c->n_fork_wait++;
    dsi_status_t st = dsn_kvio_rx_start(s->kv_rx, s->kv, s->fork_len, why, sizeof(why));
    s->kv_rx->base = (uint32_t)c->first_layer; /* chunks name model layers */
    if (st != DSI_OK) {
        char msg[DSN_OUT_TEXT + 64];
        snprintf(msg, sizeof(msg), "node %u: %s", c->node_id, why);
        free(s->kv_rx);
        s->kv_rx = NULL;
        finish_rx(c, s, 0, msg);
        return;
    }
    DSI_DEBUG("sequence %llu: waiting for %u positions of KV cache from its previous node",
              (unsigned long long)s->id, s->fork_len);
}

int dsn_kvmove_chunk(dsn_compute_t *c, dsn_task_t *t)
{
    const dst_wire_hdr_t *h = &t->hdr;
    const dst_wire_kv_t *rec = dst_wire_kv(h, t->payload);
    dsn_seq_t *s = dsn_seq_find(c, rec->seq_id);
    if (s == NULL) {
        uint64_t now = dsi_now_ns();
        if (t->since_ns == 0)
            t->since_ns = now;
        if (now - t->since_ns < ORPHAN_CHUNK_NS)
            return 1; /* its SUBMIT is on the way */
        DSI_WARN("KV chunk from node %u for sequence %llu, which never came: dropped", t->peer,
                 (unsigned long long)rec->seq_id);
        return 0;
    }
    if (s->kv_rx == NULL || s->done) {
        DSI_WARN("KV chunk from node %u for sequence %llu, which expects none now: dropped",
                 t->peer, (unsigned long long)rec->seq_id);
        return 0;
    }
    char why[DSN_OUT_TEXT], msg[DSN_OUT_TEXT + 64];
    /* The layers are checked against this stage's with the rest of the chunk. */
    dsn_kvio_chunk_t m = {rec->first, rec->n_tokens, rec->total,    rec->n_layers,
                          rec->row,   rec->kv_dtype, rec->checksum, h->layer};
    size_t data = dst_wire_tensor_bytes(h);
    int complete = 0;
    dsi_status_t st =
        dsn_kvio_rx_chunk(s->kv_rx, s->kv, &m, t->payload, data, &complete, why, sizeof(why));
    if (st != DSI_OK) {
        snprintf(msg, sizeof(msg), "a chunk from node %u: %s", t->peer, why);
        finish_rx(c, s, 0, msg);
        return 0;
    }
    s->kv_rx_bytes += data;
    if (complete)
        finish_rx(c, s, 1, NULL);
    return 0;
}
