/*
 * dst_msg_encode.c - dst_msg_t -> msgpack body: a map of "type", "v" and the type's fields, in the
 * order docs/PROTOCOL.md lists them (decoders must not depend on the order).
 */
#include <string.h>

#include "dst_msg_impl.h"

static int key(msgpack_packer *pk, const char *k)
{
    size_t n = strlen(k);
    return msgpack_pack_str(pk, n) | msgpack_pack_str_body(pk, k, n);
}

static int kv_u64(msgpack_packer *pk, const char *k, uint64_t v)
{
    return key(pk, k) | msgpack_pack_uint64(pk, v);
}

static int kv_str(msgpack_packer *pk, const char *k, const char *s)
{
    size_t n = strlen(s);
    return key(pk, k) | msgpack_pack_str(pk, n) | msgpack_pack_str_body(pk, s, n);
}

static int kv_bin(msgpack_packer *pk, const char *k, const uint8_t *b, size_t n)
{
    return key(pk, k) | msgpack_pack_bin(pk, n) | msgpack_pack_bin_body(pk, b, n);
}

static int kv_tokens(msgpack_packer *pk, const int32_t *t, uint32_t n)
{
    int rc = key(pk, "tokens") | msgpack_pack_array(pk, n);
    for (uint32_t i = 0; i < n; i++)
        rc |= msgpack_pack_uint32(pk, (uint32_t)t[i]); /* checked non-negative */
    return rc;
}

static int pack_peers(msgpack_packer *pk, const dst_msg_peers_t *m)
{
    int rc = kv_u64(pk, "epoch", m->epoch) | key(pk, "peers") | msgpack_pack_array(pk, m->n_peers);
    for (uint32_t i = 0; i < m->n_peers; i++) {
        const dst_msg_peer_t *p = &m->peers[i];
        rc |= msgpack_pack_map(pk, 3) | kv_u64(pk, "node_id", p->node_id) |
              kv_bin(pk, "ucx_addr", p->ucx_addr, p->ucx_addr_len) |
              kv_str(pk, "data_addr", p->data_addr);
    }
    return rc;
}

static int kv_f32(msgpack_packer *pk, const char *k, float v)
{
    return key(pk, k) | msgpack_pack_float(pk, v);
}

static int kv_u32_array(msgpack_packer *pk, const char *k, const int32_t *v, uint32_t n)
{
    int rc = key(pk, k) | msgpack_pack_array(pk, n);
    for (uint32_t i = 0; i < n; i++)
        rc |= msgpack_pack_uint32(pk, (uint32_t)v[i]); /* checked non-negative */
    return rc;
}

static int kv_f32_array(msgpack_packer *pk, const char *k, const float *v, uint32_t n)
{
    int rc = key(pk, k) | msgpack_pack_array(pk, n);
    for (uint32_t i = 0; i < n; i++)
        rc |= msgpack_pack_float(pk, v[i]);
    return rc;
}

static int pack_sampling(msgpack_packer *pk, const dst_msg_sampling_t *s)
{
    return key(pk, "sampling") | msgpack_pack_map(pk, 11) |
           kv_f32(pk, "presence_penalty", s->presence_penalty) |
           kv_f32(pk, "frequency_penalty", s->frequency_penalty) |
           kv_f32(pk, "repetition_penalty", s->repetition_penalty) | kv_f32(pk, "min_p", s->min_p) |
           kv_u64(pk, "min_tokens", s->min_tokens) | kv_u64(pk, "ignore_eos", s->ignore_eos) |
           kv_u64(pk, "logprobs", s->logprobs) | kv_u64(pk, "top_logprobs", s->top_logprobs) |
           kv_u32_array(pk, "bias_ids", s->bias_ids, s->n_bias) |
           kv_f32_array(pk, "bias_values", s->bias_values, s->n_bias) |
           kv_u32_array(pk, "stop_ids", s->stop_ids, s->n_stop_ids);
}

static int tokens_has_logprobs(const dst_msg_tokens_t *t)
{
    return t->logprob != NULL && t->n_tokens > 0;
}

static int pack_logprobs(msgpack_packer *pk, const dst_msg_tokens_t *t)
{
    uint32_t n_top = t->n_tokens * t->n_top;
    return key(pk, "logprobs") | msgpack_pack_map(pk, 4) | kv_u64(pk, "n_top", t->n_top) |
           kv_f32_array(pk, "logprob", t->logprob, t->n_tokens) |
           kv_u32_array(pk, "top_ids", t->top_ids, n_top) |
           kv_f32_array(pk, "top_logprobs", t->top_logprobs, n_top);
}

static int pack_spec(msgpack_packer *pk, const dst_msg_spec_t *s)
{
    uint32_t k = s->k <= DST_MSG_SPEC_MAX_K ? s->k : DST_MSG_SPEC_MAX_K;
    return key(pk, "spec") | msgpack_pack_map(pk, 6) | kv_u64(pk, "steps", s->steps) |
           kv_u64(pk, "emitted", s->emitted) | kv_u64(pk, "draft_ns", s->draft_ns) |
           kv_u64(pk, "verify_ns", s->verify_ns) |
           kv_u32_array(pk, "drafted", (const int32_t *)s->drafted, k) |
           kv_u32_array(pk, "accepted", (const int32_t *)s->accepted, k);
}

/* TOKENS.spec: [rollback, drafts...] (checked before: n_drafts <= DST_MSG_SPEC_MAX_K). */
static int pack_tokens_spec(msgpack_packer *pk, const dst_msg_tokens_t *t)
{
    int32_t v[1 + DST_MSG_SPEC_MAX_K];
    v[0] = t->rollback;
    memcpy(v + 1, t->drafts, (size_t)t->n_drafts * sizeof(int32_t));
    return kv_u32_array(pk, "spec", v, 1u + t->n_drafts);
}

/* Fields on the wire: the type's fields less the optional ones that are absent. */
static uint32_t fields_sent(const dst_msg_t *m)
{
    uint32_t n = dst_msg_nfields(m->type);
    if (m->type == DST_MSG_SUBMIT && !dst_msg_sampling_any(&m->submit.sampling))
        n--;
    if (m->type == DST_MSG_SUBMIT && m->submit.fork_len == 0)
        n -= 2;
    if (m->type == DST_MSG_SUBMIT && m->submit.kv_move == 0)
        n--;
    if (m->type == DST_MSG_SUBMIT && m->submit.no_prefix == 0)
        n--;
    if (m->type == DST_MSG_SUBMIT && m->submit.grammar_len == 0)
        n--;
    if (m->type == DST_MSG_TOKENS && !tokens_has_logprobs(&m->tokens))
        n--;
    if (m->type == DST_MSG_TOKENS && !m->tokens.has_spec)
        n--;
    if (m->type == DST_MSG_HEARTBEAT && !m->heartbeat.has_spec)
        n--;
    if (m->type == DST_MSG_KV_MOVE && m->kv_move.end_layer == 0)
        n -= 2;
    if (m->type == DST_MSG_PLAN && m->plan.plan.mtp_offsets == NULL)
        n -= 2;
    return n;
}

static int pack_fields(msgpack_packer *pk, const dst_msg_t *m)
{
    switch (m->type) {
    case DST_MSG_HELLO:
        return kv_bin(pk, "nonce", m->hello.nonce, sizeof(m->hello.nonce));
    case DST_MSG_REGISTER:
        return kv_str(pk, "name", m->reg.name) | kv_u64(pk, "mem_budget", m->reg.mem_budget) |
               kv_u64(pk, "cores", m->reg.cores) |
               kv_bin(pk, "ucx_addr", m->reg.ucx_addr, m->reg.ucx_addr_len) |
               kv_str(pk, "data_addr", m->reg.data_addr) |
               kv_bin(pk, "auth", m->reg.auth, sizeof(m->reg.auth)) |
               kv_u64(pk, "held_id", m->reg.held_id) | kv_u64(pk, "held_epoch", m->reg.held_epoch);
    case DST_MSG_WELCOME:
        return kv_u64(pk, "node_id", m->welcome.node_id) |
               kv_u64(pk, "heartbeat_ms", m->welcome.heartbeat_ms);
    case DST_MSG_PLAN:
        return dst_msg_plan_pack(pk, &m->plan.plan) | kv_u64(pk, "live", m->plan.live);
    case DST_MSG_PEERS:
        return pack_peers(pk, &m->peers);
    case DST_MSG_READY:
        return kv_u64(pk, "node_id", m->ready.node_id) | kv_u64(pk, "epoch", m->ready.epoch);
    case DST_MSG_HEARTBEAT:
        return kv_u64(pk, "node_id", m->heartbeat.node_id) | kv_u64(pk, "seq", m->heartbeat.seq) |
               kv_u64(pk, "time_ns", m->heartbeat.time_ns) |
               kv_u64(pk, "kv_blocks_used", m->heartbeat.kv_blocks_used) |
               kv_u64(pk, "kv_blocks_total", m->heartbeat.kv_blocks_total) |
               kv_u64(pk, "preemptions", m->heartbeat.preemptions) |
               kv_u64(pk, "kv_blocks_cached", m->heartbeat.kv_blocks_cached) |
               kv_u64(pk, "prompt_tokens", m->heartbeat.prompt_tokens) |
               kv_u64(pk, "prefix_hit_tokens", m->heartbeat.prefix_hit_tokens) |
               (m->heartbeat.has_spec ? pack_spec(pk, &m->heartbeat.spec) : 0);
    case DST_MSG_LOAD_STATS: {
        const dst_msg_load_stats_t *s = &m->load_stats;
        size_t n = (size_t)s->n_layers * s->n_experts;
        int rc = kv_u64(pk, "node_id", s->node_id) | kv_u64(pk, "epoch", s->epoch) |
                 kv_u64(pk, "window_ms", s->window_ms) | kv_u64(pk, "first_layer", s->first_layer) |
                 kv_u64(pk, "n_layers", s->n_layers) | kv_u64(pk, "n_experts", s->n_experts) |
                 key(pk, "counts") | msgpack_pack_array(pk, n);
        for (size_t i = 0; i < n; i++)
            rc |= msgpack_pack_uint32(pk, s->counts[i]);
        return rc;
    }
    case DST_MSG_DRAIN:
        return kv_u64(pk, "node_id", m->drain.node_id) |
               kv_u64(pk, "deadline_ms", m->drain.deadline_ms);
    case DST_MSG_SUBMIT: {
        const dst_msg_submit_t *s = &m->submit;
        int rc = kv_u64(pk, "seq_id", s->seq_id) | kv_tokens(pk, s->tokens, s->n_tokens) |
                 kv_u64(pk, "max_tokens", s->max_tokens) | key(pk, "temperature") |
                 msgpack_pack_float(pk, s->temperature) | key(pk, "top_p") |
                 msgpack_pack_float(pk, s->top_p) | kv_u64(pk, "top_k", s->top_k) |
                 kv_u64(pk, "seed", s->seed) | kv_u64(pk, "n_generated", s->n_generated) |
                 key(pk, "route") | msgpack_pack_array(pk, s->n_route);
        for (uint32_t i = 0; i < s->n_route; i++)
            rc |= msgpack_pack_uint32(pk, s->route[i]);
        if (dst_msg_sampling_any(&s->sampling))
            rc |= pack_sampling(pk, &s->sampling);
        if (s->fork_len > 0)
            rc |= kv_u64(pk, "fork_of", s->fork_of) | kv_u64(pk, "fork_len", s->fork_len);
        if (s->kv_move)
            rc |= kv_u64(pk, "kv_move", s->kv_move);
        if (s->no_prefix)
            rc |= kv_u64(pk, "no_prefix", s->no_prefix);
        if (s->grammar_len > 0)
            rc |= key(pk, "grammar") | msgpack_pack_str(pk, s->grammar_len) |
                  msgpack_pack_str_body(pk, s->grammar, s->grammar_len);
        return rc;
    }
    case DST_MSG_TOKENS:
        return kv_u64(pk, "seq_id", m->tokens.seq_id) |
               kv_tokens(pk, m->tokens.tokens, m->tokens.n_tokens) |
               kv_u64(pk, "finish", m->tokens.finish) |
               (tokens_has_logprobs(&m->tokens) ? pack_logprobs(pk, &m->tokens) : 0) |
               (m->tokens.has_spec ? pack_tokens_spec(pk, &m->tokens) : 0);
    case DST_MSG_CANCEL:
        return kv_u64(pk, "seq_id", m->cancel.seq_id);
    case DST_MSG_SHUTDOWN:
        return kv_str(pk, "reason", m->shutdown.reason);
    case DST_MSG_ERROR:
        return key(pk, "code") | msgpack_pack_int32(pk, m->error.code) |
               kv_u64(pk, "ref_type", m->error.ref_type) | kv_str(pk, "text", m->error.text);
    case DST_MSG_BIAS: {
        const dst_msg_bias_t *b = &m->bias;
        int rc = kv_u64(pk, "epoch", b->epoch) | kv_u64(pk, "layer", b->layer) | key(pk, "biases") |
                 msgpack_pack_array(pk, b->n_biases);
        for (uint32_t i = 0; i < b->n_biases; i++)
            rc |= msgpack_pack_float(pk, b->biases[i]);
        return rc;
    }
    case DST_MSG_ADMIN:
        return kv_u64(pk, "command", m->admin.command) | kv_u64(pk, "arg", m->admin.arg) |
               kv_bin(pk, "auth", m->admin.auth, sizeof(m->admin.auth));
    case DST_MSG_ADMIN_REPLY:
        return kv_u64(pk, "command", m->admin_reply.command) |
               kv_str(pk, "json", m->admin_reply.json);
    case DST_MSG_SWITCH:
    case DST_MSG_SWITCHED:
    case DST_MSG_RELEASE:
        return kv_u64(pk, "node_id", m->sw.node_id) | kv_u64(pk, "epoch", m->sw.epoch);
    case DST_MSG_KV_MOVE:
        return kv_u64(pk, "seq_id", m->kv_move.seq_id) |
               kv_u64(pk, "n_tokens", m->kv_move.n_tokens) | kv_u64(pk, "to", m->kv_move.to) |
               kv_u64(pk, "to_seq", m->kv_move.to_seq) | kv_u64(pk, "epoch", m->kv_move.epoch) |
               (m->kv_move.end_layer != 0 ? kv_u64(pk, "first_layer", m->kv_move.first_layer) |
                                                kv_u64(pk, "end_layer", m->kv_move.end_layer)
                                          : 0);
    case DST_MSG_KV_DONE:
        return kv_u64(pk, "node_id", m->kv_done.node_id) | kv_u64(pk, "seq_id", m->kv_done.seq_id) |
               kv_u64(pk, "ok", m->kv_done.ok) | kv_u64(pk, "bytes", m->kv_done.bytes) |
               kv_str(pk, "text", m->kv_done.text);
    default:
        return -1;
    }
}

dsi_status_t dst_msg_encode(const dst_msg_t *msg, msgpack_sbuffer *out, char *err, size_t errlen)
{
    dsi_status_t st = dst_msg_check(msg, err, errlen);
    if (st != DSI_OK)
        return DSI_ERR_INVALID_ARG;
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    int rc = msgpack_pack_map(&pk, 2 + fields_sent(msg));
    rc |= kv_u64(&pk, "type", (uint64_t)msg->type) | kv_u64(&pk, "v", DST_PROTO_VERSION);
    rc |= pack_fields(&pk, msg);
    if (rc != 0) {
        dst_msg_errf(err, errlen, "%s: out of memory encoding", dst_msg_type_name(msg->type));
        return DSI_ERR_NOMEM;
    }
    return DSI_OK;
}
