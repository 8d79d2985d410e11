/*
 * dsn_kvmove.c - a sequence moves to another node of its stage with its KV cache (a drain or a
 * live re-plan gave it a new lane; docs/ELASTICITY.md, "KV moves with its sequence").
 *
 *   sender    KV_MOVE from the coordinator (before the SWITCH that may retire this node): the
 *             rows of positions [0, n_tokens) of the sequence go to the new holder as KV
 *             messages on the data plane, a few MiB each, as the cache stores them.
 *   receiver  the SUBMIT with kv_move names the old id in fork_of; a node that does not hold it
 *             reserves the rows' blocks and waits (fork_wait) while the chunks arrive, in any
 *             order, before or after the SUBMIT (a chunk of an unknown sequence is deferred
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

void dsn_kvmove_send(dsn_compute_t *c, const dst_msg_kv_move_t *m)
{
    char why[DSN_OUT_TEXT];
    dsn_seq_t *s = dsn_seq_find(c, m->seq_id);
    if (c->engine == NULL || s == NULL || s->kv == NULL || s->kv->length < (int64_t)m->n_tokens) {
        snprintf(why, sizeof(why), "node %u holds %lld positions of sequence %llu, %u asked",
                 c->node_id, s != NULL && s->kv != NULL ? (long long)s->kv->length : 0LL,
                 (unsigned long long)m->seq_id, m->n_tokens);
        DSI_WARN("KV move refused: %s", why);
        dsn_kvmove_done(c, m->to_seq, 0, 0, why);
        return;
    }
    const dsn_kvcache_t *kv = s->kv;
    uint32_t per = dsn_kvio_chunk_tokens(kv->n_layers, kv->row, kv->dtype, CHUNK_TARGET_BYTES);
    uint32_t cap_rows = DST_WIRE_MAX_TOKENS / (uint32_t)kv->n_layers / DSN_KV_BLOCK * DSN_KV_BLOCK;
    if (per > cap_rows)
        per = cap_rows > 0 ? cap_rows : DSN_KV_BLOCK;
    uint64_t bytes = 0;
    uint32_t chunks = 0;
    for (uint32_t first = 0; first < m->n_tokens; first += per, chunks++) {
        uint32_t k = m->n_tokens - first < per ? m->n_tokens - first : per;
        dst_wire_hdr_t h = {.type = DST_WIRE_KV,
                            .dtype = DST_WIRE_U8,
                            .epoch = c->route_epoch,
                            .layer = (uint32_t)c->first_layer,
                            .n_rows = (uint32_t)kv->n_layers * k,
                            .width = (uint32_t)dsn_kvio_width(kv->row, kv->dtype)};
        size_t total = dst_wire_payload_bytes(&h), data = dst_wire_tensor_bytes(&h);
        uint8_t *payload = dsn_queue_buf_get(c->queue, total);
        dsn_kvio_chunk_t meta;
        if (payload == NULL ||
            dsn_kvio_export(kv, first, k, m->n_tokens, payload, data, &meta) != DSI_OK) {
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
        if (dsn_stage_emit_wire(c, m->to, &h, payload, total) != 0) {
            snprintf(why, sizeof(why), "node %u is out of memory sending it", c->node_id);
            dsn_kvmove_done(c, m->to_seq, 0, 0, why);
            return;
        }
        bytes += data;
    }
    DSI_INFO("sequence %llu: %u positions of KV cache (%.1f KiB, %s, %u chunks) sent to node %u "
             "as sequence %llu",
             (unsigned long long)m->seq_id, m->n_tokens, (double)bytes / 1024,
             dsn_kv_dtype_name(kv->dtype), chunks, m->to, (unsigned long long)m->to_seq);
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
         * serve prompts that start alike here too (the prefix cache of a one-stage plan). */
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
    if (h->layer != (uint32_t)c->first_layer) {
        snprintf(msg, sizeof(msg),
                 "a chunk from node %u of layers from %u, this stage's start at %d", t->peer,
                 h->layer, c->first_layer);
        finish_rx(c, s, 0, msg);
        return 0;
    }
    dsn_kvio_chunk_t m = {rec->first, rec->n_tokens, rec->total,   rec->n_layers,
                          rec->row,   rec->kv_dtype, rec->checksum};
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
