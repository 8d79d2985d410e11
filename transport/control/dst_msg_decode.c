/*
 * dst_msg_decode.c - body bytes -> validated dst_msg_t: bounds scan, msgpack_unpack into a zone,
 * per-type field readers, then dst_msg_check's semantic rules.
 */
#include <stdio.h>
#include <string.h>

#include "dst_msg.h"
#include "dst_msg_impl.h"
#include "dst_msg_scan.h"

#define TRY(expr)                      \
    do {                               \
        dsi_status_t try_st_ = (expr); \
        if (try_st_ != DSI_OK)         \
            return try_st_;            \
    } while (0)

static dsi_status_t read_tokens(dst_msg_rd_t *rd, int32_t **tokens, uint32_t *n)
{
    uint32_t *ids;
    TRY(dst_msg_rd_u32_array(rd, "tokens", DST_MSG_MAX_TOKENS, DST_MSG_MAX_TOKEN_ID, &ids, n));
    /* Ids are <= DST_MSG_MAX_TOKEN_ID < 2^31, so each is the same value as int32. */
    *tokens = (int32_t *)ids;
    return DSI_OK;
}

static dsi_status_t read_hello(dst_msg_rd_t *rd, dst_msg_hello_t *m)
{
    return dst_msg_rd_bin_fixed(rd, "nonce", m->nonce, sizeof(m->nonce));
}

static dsi_status_t read_register(dst_msg_rd_t *rd, dst_msg_register_t *m)
{
    TRY(dst_msg_rd_str(rd, "name", m->name, sizeof(m->name)));
    TRY(dst_msg_rd_u64(rd, "mem_budget", UINT64_MAX, &m->mem_budget));
    TRY(dst_msg_rd_u32(rd, "cores", UINT32_MAX, &m->cores));
    TRY(dst_msg_rd_bin(rd, "ucx_addr", DST_MSG_MAX_UCX_ADDR, &m->ucx_addr, &m->ucx_addr_len));
    TRY(dst_msg_rd_str(rd, "data_addr", m->data_addr, sizeof(m->data_addr)));
    TRY(dst_msg_rd_bin_fixed(rd, "auth", m->auth, sizeof(m->auth)));
    /* Optional (a node that holds no plan may leave them out). */
    uint64_t held_id;
    TRY(dst_msg_rd_u64_opt(rd, "held_id", UINT32_MAX, 0, &held_id));
    m->held_id = (uint32_t)held_id;
    return dst_msg_rd_u64_opt(rd, "held_epoch", UINT64_MAX, 0, &m->held_epoch);
}

static dsi_status_t read_welcome(dst_msg_rd_t *rd, dst_msg_welcome_t *m)
{
    TRY(dst_msg_rd_u32(rd, "node_id", UINT32_MAX, &m->node_id));
    return dst_msg_rd_u32(rd, "heartbeat_ms", UINT32_MAX, &m->heartbeat_ms);
}

static dsi_status_t read_peers(dst_msg_rd_t *rd, dst_msg_peers_t *m)
{
    const msgpack_object *items;
    uint32_t n;
    TRY(dst_msg_rd_u64(rd, "epoch", UINT64_MAX, &m->epoch));
    TRY(dst_msg_rd_array(rd, "peers", DST_MSG_MAX_NODES, &items, &n));
    m->peers = dst_msg_arena_alloc(rd->msg, (size_t)n * sizeof(*m->peers));
    if (n > 0 && m->peers == NULL) {
        dst_msg_errf(rd->err, rd->errlen, "PEERS: out of memory");
        return DSI_ERR_NOMEM;
    }
    m->n_peers = n;
    for (uint32_t i = 0; i < n; i++) {
        dst_msg_rd_t sub;
        char where[64];
        snprintf(where, sizeof(where), "PEERS.peers[%u]", (unsigned)i);
        dst_msg_peer_t *p = &m->peers[i];
        TRY(dst_msg_rd_open(&sub, &items[i], 3, where, rd->msg, rd->err, rd->errlen));
        TRY(dst_msg_rd_u32(&sub, "node_id", UINT32_MAX, &p->node_id));
        TRY(dst_msg_rd_bin(&sub, "ucx_addr", DST_MSG_MAX_UCX_ADDR, &p->ucx_addr, &p->ucx_addr_len));
        TRY(dst_msg_rd_str(&sub, "data_addr", p->data_addr, sizeof(p->data_addr)));
        TRY(dst_msg_rd_end(&sub));
    }
    return DSI_OK;
}

static dsi_status_t read_plan(dst_msg_rd_t *rd, dst_msg_plan_t *m)
{
    uint32_t live;
    TRY(dst_msg_plan_read(rd, &m->plan));
    TRY(dst_msg_rd_u32(rd, "live", 2, &live));
    m->live = (uint8_t)live;
    return DSI_OK;
}

static dsi_status_t read_ready(dst_msg_rd_t *rd, dst_msg_ready_t *m)
{
    TRY(dst_msg_rd_u32(rd, "node_id", UINT32_MAX, &m->node_id));
    return dst_msg_rd_u64(rd, "epoch", UINT64_MAX, &m->epoch);
}

static dsi_status_t read_heartbeat(dst_msg_rd_t *rd, dst_msg_heartbeat_t *m)
{
    TRY(dst_msg_rd_u32(rd, "node_id", UINT32_MAX, &m->node_id));
    TRY(dst_msg_rd_u64(rd, "seq", UINT64_MAX, &m->seq));
    TRY(dst_msg_rd_u64(rd, "time_ns", UINT64_MAX, &m->time_ns));
    TRY(dst_msg_rd_u64_opt(rd, "kv_blocks_used", UINT64_MAX, 0, &m->kv_blocks_used));
    TRY(dst_msg_rd_u64_opt(rd, "kv_blocks_total", UINT64_MAX, 0, &m->kv_blocks_total));
    TRY(dst_msg_rd_u64_opt(rd, "preemptions", UINT64_MAX, 0, &m->preemptions));
    TRY(dst_msg_rd_u64_opt(rd, "kv_blocks_cached", UINT64_MAX, 0, &m->kv_blocks_cached));
    TRY(dst_msg_rd_u64_opt(rd, "prompt_tokens", UINT64_MAX, 0, &m->prompt_tokens));
    TRY(dst_msg_rd_u64_opt(rd, "prefix_hit_tokens", UINT64_MAX, 0, &m->prefix_hit_tokens));
    const msgpack_object *spec = dst_msg_rd_opt(rd, "spec");
    if (spec == NULL)
        return DSI_OK;
    dst_msg_rd_t sub;
    dst_msg_spec_t *s = &m->spec;
    uint32_t *drafted, *accepted, n_d, n_a;
    TRY(dst_msg_rd_open(&sub, spec, 6, "HEARTBEAT.spec", rd->msg, rd->err, rd->errlen));
    TRY(dst_msg_rd_u64(&sub, "steps", UINT64_MAX, &s->steps));
    TRY(dst_msg_rd_u64(&sub, "emitted", UINT64_MAX, &s->emitted));
    TRY(dst_msg_rd_u64(&sub, "draft_ns", UINT64_MAX, &s->draft_ns));
    TRY(dst_msg_rd_u64(&sub, "verify_ns", UINT64_MAX, &s->verify_ns));
    TRY(dst_msg_rd_u32_array(&sub, "drafted", DST_MSG_SPEC_MAX_K, UINT32_MAX, &drafted, &n_d));
    TRY(dst_msg_rd_u32_array(&sub, "accepted", DST_MSG_SPEC_MAX_K, UINT32_MAX, &accepted, &n_a));
    TRY(dst_msg_rd_end(&sub));
    if (n_d < 1 || n_a != n_d) {
        dst_msg_errf(rd->err, rd->errlen,
                     "HEARTBEAT.spec: %u drafted and %u accepted counts (1..%d of each, as many)",
                     (unsigned)n_d, (unsigned)n_a, DST_MSG_SPEC_MAX_K);
        return DSI_ERR_PROTOCOL;
    }
    for (uint32_t i = 0; i < n_d; i++) {
        if (accepted[i] > drafted[i]) {
            dst_msg_errf(rd->err, rd->errlen,
                         "HEARTBEAT.spec: %u drafts accepted of %u at position %u",
                         (unsigned)accepted[i], (unsigned)drafted[i], (unsigned)i);
            return DSI_ERR_PROTOCOL;
        }
        s->drafted[i] = drafted[i];
        s->accepted[i] = accepted[i];
    }
    s->k = n_d;
    m->has_spec = 1;
    return DSI_OK;
}

static dsi_status_t read_load_stats(dst_msg_rd_t *rd, dst_msg_load_stats_t *m)
{
    uint32_t n;
    TRY(dst_msg_rd_u32(rd, "node_id", UINT32_MAX, &m->node_id));
    TRY(dst_msg_rd_u64(rd, "epoch", UINT64_MAX, &m->epoch));
    TRY(dst_msg_rd_u32(rd, "window_ms", UINT32_MAX, &m->window_ms));
    TRY(dst_msg_rd_u32(rd, "first_layer", DST_MSG_MAX_LAYERS, &m->first_layer));
    TRY(dst_msg_rd_u32(rd, "n_layers", DST_MSG_MAX_LAYERS, &m->n_layers));
    TRY(dst_msg_rd_u32(rd, "n_experts", DST_MSG_MAX_EXPERTS, &m->n_experts));
    TRY(dst_msg_rd_u32_array(rd, "counts", DST_MSG_MAX_SLOTS, UINT32_MAX, &m->counts, &n));
    /* Both factors are bounded above, so the product cannot overflow. */
    if ((uint64_t)n != (uint64_t)m->n_layers * m->n_experts) {
        dst_msg_errf(rd->err, rd->errlen, "%s.counts: %u entries, n_layers x n_experts = %llu",
                     rd->where, (unsigned)n, (unsigned long long)m->n_layers * m->n_experts);
        return DSI_ERR_PROTOCOL;
    }
    return DSI_OK;
}

static dsi_status_t read_drain(dst_msg_rd_t *rd, dst_msg_drain_t *m)
{
    TRY(dst_msg_rd_u32(rd, "node_id", UINT32_MAX, &m->node_id));
    return dst_msg_rd_u32(rd, "deadline_ms", UINT32_MAX, &m->deadline_ms);
}

/* SUBMIT.sampling: every key present (the encoder writes them all). */
static dsi_status_t read_sampling(dst_msg_rd_t *rd, const msgpack_object *obj,
                                  dst_msg_sampling_t *m)
{
    dst_msg_rd_t sub;
    uint32_t u, n_values;
    char where[128];
    snprintf(where, sizeof(where), "%s.sampling", rd->where);
    TRY(dst_msg_rd_open(&sub, obj, 11, where, rd->msg, rd->err, rd->errlen));
    TRY(dst_msg_rd_f32(&sub, "presence_penalty", &m->presence_penalty));
    TRY(dst_msg_rd_f32(&sub, "frequency_penalty", &m->frequency_penalty));
    TRY(dst_msg_rd_f32(&sub, "repetition_penalty", &m->repetition_penalty));
    TRY(dst_msg_rd_f32(&sub, "min_p", &m->min_p));
    TRY(dst_msg_rd_u32(&sub, "min_tokens", DST_MSG_MAX_TOKENS, &m->min_tokens));
    TRY(dst_msg_rd_u32(&sub, "ignore_eos", 1, &u));
    m->ignore_eos = (uint8_t)u;
    TRY(dst_msg_rd_u32(&sub, "logprobs", 1, &u));
    m->logprobs = (uint8_t)u;
    TRY(dst_msg_rd_u32(&sub, "top_logprobs", DST_MSG_MAX_TOP_LP, &u));
    m->top_logprobs = (uint8_t)u;
    TRY(dst_msg_rd_u32_array(&sub, "bias_ids", DST_MSG_MAX_BIAS, DST_MSG_MAX_TOKEN_ID,
                             (uint32_t **)&m->bias_ids, &m->n_bias));
    TRY(dst_msg_rd_f32_array(&sub, "bias_values", DST_MSG_MAX_BIAS, &m->bias_values, &n_values));
    if (n_values != m->n_bias) {
        dst_msg_errf(rd->err, rd->errlen, "%s: %u bias_ids but %u bias_values", where,
                     (unsigned)m->n_bias, (unsigned)n_values);
        return DSI_ERR_PROTOCOL;
    }
    TRY(dst_msg_rd_u32_array(&sub, "stop_ids", DST_MSG_MAX_STOP_IDS, DST_MSG_MAX_TOKEN_ID,
                             (uint32_t **)&m->stop_ids, &m->n_stop_ids));
    return dst_msg_rd_end(&sub);
}

static dsi_status_t read_submit(dst_msg_rd_t *rd, dst_msg_submit_t *m)
{
    TRY(dst_msg_rd_u64(rd, "seq_id", UINT64_MAX, &m->seq_id));
    TRY(read_tokens(rd, &m->tokens, &m->n_tokens));
    TRY(dst_msg_rd_u32(rd, "max_tokens", UINT32_MAX, &m->max_tokens));
    TRY(dst_msg_rd_f32(rd, "temperature", &m->temperature));
    TRY(dst_msg_rd_f32(rd, "top_p", &m->top_p));
    TRY(dst_msg_rd_u32(rd, "top_k", UINT32_MAX, &m->top_k));
    TRY(dst_msg_rd_u64(rd, "seed", UINT64_MAX, &m->seed));
    TRY(dst_msg_rd_u32(rd, "n_generated", UINT32_MAX, &m->n_generated));
    const msgpack_object *sampling = dst_msg_rd_opt(rd, "sampling");
    if (sampling != NULL)
        TRY(read_sampling(rd, sampling, &m->sampling));
    /* fork_of and fork_len come together or not at all. */
    if (dst_msg_rd_opt(rd, "fork_of") != NULL || dst_msg_rd_opt(rd, "fork_len") != NULL) {
        TRY(dst_msg_rd_u64(rd, "fork_of", UINT64_MAX, &m->fork_of));
        TRY(dst_msg_rd_u32(rd, "fork_len", UINT32_MAX, &m->fork_len));
    }
    if (dst_msg_rd_opt(rd, "kv_move") != NULL) {
        uint32_t u;
        TRY(dst_msg_rd_u32(rd, "kv_move", 1, &u));
        m->kv_move = (uint8_t)u;
    }
    if (dst_msg_rd_opt(rd, "no_prefix") != NULL) {
        uint32_t u;
        TRY(dst_msg_rd_u32(rd, "no_prefix", 1, &u));
        m->no_prefix = (uint8_t)u;
    }
    if (dst_msg_rd_opt(rd, "grammar") != NULL) {
        char *g;
        TRY(dst_msg_rd_str_alloc(rd, "grammar", (size_t)DST_MSG_MAX_GRAMMAR + 1, &g));
        m->grammar = g;
        m->grammar_len = (uint32_t)strlen(g);
    }
    return dst_msg_rd_u32_array(rd, "route", DST_MSG_MAX_STAGES, UINT32_MAX, &m->route,
                                &m->n_route);
}

static dsi_status_t read_tokens_msg(dst_msg_rd_t *rd, dst_msg_tokens_t *m)
{
    uint32_t finish;
    TRY(dst_msg_rd_u64(rd, "seq_id", UINT64_MAX, &m->seq_id));
    TRY(read_tokens(rd, &m->tokens, &m->n_tokens));
    TRY(dst_msg_rd_u32(rd, "finish", DST_FINISH_END - 1, &finish));
    m->finish = (uint8_t)finish;
    if (dst_msg_rd_opt(rd, "spec") != NULL) {
        uint32_t *v, n;
        TRY(dst_msg_rd_u32_array(rd, "spec", 1 + DST_MSG_SPEC_MAX_K, DST_MSG_MAX_TOKEN_ID, &v, &n));
        if (n < 1 || v[0] > DST_MSG_SPEC_MAX_K) {
            dst_msg_errf(rd->err, rd->errlen,
                         "TOKENS.spec: %u values, rollback %u (want [rollback <= %d, up to %d "
                         "drafts])",
                         (unsigned)n, n > 0 ? (unsigned)v[0] : 0u, DST_MSG_SPEC_MAX_K,
                         DST_MSG_SPEC_MAX_K);
            return DSI_ERR_PROTOCOL;
        }
        m->has_spec = 1;
        m->rollback = (uint8_t)v[0];
        m->n_drafts = (uint8_t)(n - 1);
        for (uint32_t i = 1; i < n; i++)
            m->drafts[i - 1] = (int32_t)v[i];
    }
    const msgpack_object *lp = dst_msg_rd_opt(rd, "logprobs");
    if (lp == NULL)
        return DSI_OK;
    dst_msg_rd_t sub;
    uint32_t n_lp, n_ids, n_top_lp;
    TRY(dst_msg_rd_open(&sub, lp, 4, "TOKENS.logprobs", rd->msg, rd->err, rd->errlen));
    TRY(dst_msg_rd_u32(&sub, "n_top", DST_MSG_MAX_TOP_LP, &m->n_top));
    TRY(dst_msg_rd_f32_array(&sub, "logprob", DST_MSG_MAX_TOKENS, &m->logprob, &n_lp));
    TRY(dst_msg_rd_u32_array(&sub, "top_ids", DST_MSG_MAX_TOKENS, DST_MSG_MAX_TOKEN_ID,
                             (uint32_t **)&m->top_ids, &n_ids));
    TRY(dst_msg_rd_f32_array(&sub, "top_logprobs", DST_MSG_MAX_TOKENS, &m->top_logprobs,
                             &n_top_lp));
    TRY(dst_msg_rd_end(&sub));
    if (n_lp != m->n_tokens || n_ids != m->n_tokens * m->n_top || n_top_lp != n_ids) {
        dst_msg_errf(rd->err, rd->errlen,
                     "TOKENS.logprobs: %u logprobs, %u top ids, %u top logprobs for %u tokens "
                     "and n_top %u",
                     (unsigned)n_lp, (unsigned)n_ids, (unsigned)n_top_lp, (unsigned)m->n_tokens,
                     (unsigned)m->n_top);
        return DSI_ERR_PROTOCOL;
    }
    return DSI_OK;
}

static dsi_status_t read_error(dst_msg_rd_t *rd, dst_msg_error_t *m)
{
    TRY(dst_msg_rd_i32(rd, "code", &m->code));
    TRY(dst_msg_rd_u32(rd, "ref_type", UINT32_MAX, &m->ref_type));
    return dst_msg_rd_str(rd, "text", m->text, sizeof(m->text));
}

static dsi_status_t read_bias(dst_msg_rd_t *rd, dst_msg_bias_t *m)
{
    TRY(dst_msg_rd_u64(rd, "epoch", UINT64_MAX, &m->epoch));
    TRY(dst_msg_rd_u32(rd, "layer", DST_MSG_MAX_LAYERS - 1, &m->layer));
    return dst_msg_rd_f32_array(rd, "biases", DST_MSG_MAX_EXPERTS, &m->biases, &m->n_biases);
}

static dsi_status_t read_admin(dst_msg_rd_t *rd, dst_msg_admin_t *m)
{
    TRY(dst_msg_rd_u32(rd, "command", UINT32_MAX, &m->command));
    TRY(dst_msg_rd_u32(rd, "arg", UINT32_MAX, &m->arg));
    return dst_msg_rd_bin_fixed(rd, "auth", m->auth, sizeof(m->auth));
}

static dsi_status_t read_admin_reply(dst_msg_rd_t *rd, dst_msg_admin_reply_t *m)
{
    TRY(dst_msg_rd_u32(rd, "command", UINT32_MAX, &m->command));
    return dst_msg_rd_str_alloc(rd, "json", DST_MSG_JSON_MAX, &m->json);
}

static dsi_status_t read_kv_move(dst_msg_rd_t *rd, dst_msg_kv_move_t *m)
{
    TRY(dst_msg_rd_u64(rd, "seq_id", UINT64_MAX, &m->seq_id));
    TRY(dst_msg_rd_u32(rd, "n_tokens", UINT32_MAX, &m->n_tokens));
    TRY(dst_msg_rd_u32(rd, "to", UINT32_MAX, &m->to));
    TRY(dst_msg_rd_u64(rd, "to_seq", UINT64_MAX, &m->to_seq));
    TRY(dst_msg_rd_u64(rd, "epoch", UINT64_MAX, &m->epoch));
    /* first_layer and end_layer come together or not at all. */
    if (dst_msg_rd_opt(rd, "first_layer") != NULL || dst_msg_rd_opt(rd, "end_layer") != NULL) {
        TRY(dst_msg_rd_u32(rd, "first_layer", UINT32_MAX, &m->first_layer));
        TRY(dst_msg_rd_u32(rd, "end_layer", UINT32_MAX, &m->end_layer));
    }
    return DSI_OK;
}

static dsi_status_t read_kv_done(dst_msg_rd_t *rd, dst_msg_kv_done_t *m)
{
    uint32_t ok;
    TRY(dst_msg_rd_u32(rd, "node_id", UINT32_MAX, &m->node_id));
    TRY(dst_msg_rd_u64(rd, "seq_id", UINT64_MAX, &m->seq_id));
    TRY(dst_msg_rd_u32(rd, "ok", 1, &ok));
    m->ok = (uint8_t)ok;
    TRY(dst_msg_rd_u64(rd, "bytes", UINT64_MAX, &m->bytes));
    return dst_msg_rd_str(rd, "text", m->text, sizeof(m->text));
}

static dsi_status_t read_fields(dst_msg_rd_t *rd, dst_msg_t *m)
{
    switch (m->type) {
    case DST_MSG_HELLO:
        return read_hello(rd, &m->hello);
    case DST_MSG_REGISTER:
        return read_register(rd, &m->reg);
    case DST_MSG_WELCOME:
        return read_welcome(rd, &m->welcome);
    case DST_MSG_PLAN:
        return read_plan(rd, &m->plan);
    case DST_MSG_PEERS:
        return read_peers(rd, &m->peers);
    case DST_MSG_READY:
        return read_ready(rd, &m->ready);
    case DST_MSG_HEARTBEAT:
        return read_heartbeat(rd, &m->heartbeat);
    case DST_MSG_LOAD_STATS:
        return read_load_stats(rd, &m->load_stats);
    case DST_MSG_DRAIN:
        return read_drain(rd, &m->drain);
    case DST_MSG_SUBMIT:
        return read_submit(rd, &m->submit);
    case DST_MSG_TOKENS:
        return read_tokens_msg(rd, &m->tokens);
    case DST_MSG_CANCEL:
        return dst_msg_rd_u64(rd, "seq_id", UINT64_MAX, &m->cancel.seq_id);
    case DST_MSG_SHUTDOWN:
        return dst_msg_rd_str(rd, "reason", m->shutdown.reason, sizeof(m->shutdown.reason));
    case DST_MSG_ERROR:
        return read_error(rd, &m->error);
    case DST_MSG_BIAS:
        return read_bias(rd, &m->bias);
    case DST_MSG_ADMIN:
        return read_admin(rd, &m->admin);
    case DST_MSG_ADMIN_REPLY:
        return read_admin_reply(rd, &m->admin_reply);
    case DST_MSG_SWITCH:
    case DST_MSG_SWITCHED:
    case DST_MSG_RELEASE:
        TRY(dst_msg_rd_u32(rd, "node_id", UINT32_MAX, &m->sw.node_id));
        return dst_msg_rd_u64(rd, "epoch", UINT64_MAX, &m->sw.epoch);
    case DST_MSG_KV_MOVE:
        return read_kv_move(rd, &m->kv_move);
    case DST_MSG_KV_DONE:
        return read_kv_done(rd, &m->kv_done);
    default:
        return DSI_ERR_INTERNAL;
    }
}

/* Reads "type" and "v" from the top map and the type's fields into tmp. */
static dsi_status_t decode_object(const msgpack_object *root, dst_msg_t *tmp, char *err,
                                  size_t errlen)
{
    dst_msg_rd_t rd;
    uint32_t type, version;
    TRY(dst_msg_rd_open(&rd, root, 32, "body", tmp, err, errlen));
    TRY(dst_msg_rd_u32(&rd, "type", UINT32_MAX, &type));
    uint32_t nfields = dst_msg_nfields(type);
    if (nfields == 0) {
        dst_msg_errf(err, errlen, "unknown message type %u", (unsigned)type);
        return DSI_ERR_UNSUPPORTED;
    }
    snprintf(rd.where, sizeof(rd.where), "%s", dst_msg_type_name(type));
    TRY(dst_msg_rd_u32(&rd, "v", UINT32_MAX, &version));
    if (version != DST_PROTO_VERSION) {
        dst_msg_errf(err, errlen, "%s: protocol version %u, this build speaks %d",
                     dst_msg_type_name(type), (unsigned)version, DST_PROTO_VERSION);
        return DSI_ERR_UNSUPPORTED;
    }
    if (rd.n > 2 + nfields) {
        dst_msg_errf(err, errlen, "%s: %u fields, %u expected", rd.where, (unsigned)rd.n,
                     (unsigned)(2 + nfields));
        return DSI_ERR_PROTOCOL;
    }
    tmp->type = (dst_msg_type_t)type;
    TRY(read_fields(&rd, tmp));
    TRY(dst_msg_rd_end(&rd));
    return dst_msg_check(tmp, err, errlen);
}

/* Scans and unpacks buf into zone; *root valid while zone lives. */
static dsi_status_t unpack(const char *buf, size_t len, msgpack_zone *zone, msgpack_object *root,
                           char *err, size_t errlen)
{
    if (buf == NULL || len == 0) {
        dst_msg_errf(err, errlen, "empty body");
        return DSI_ERR_PROTOCOL;
    }
    TRY(dst_msg_scan(buf, len, err, errlen));
    size_t off = 0;
    msgpack_unpack_return ret = msgpack_unpack(buf, len, &off, zone, root);
    if (ret == MSGPACK_UNPACK_NOMEM_ERROR) {
        dst_msg_errf(err, errlen, "out of memory unpacking %zu bytes", len);
        return DSI_ERR_NOMEM;
    }
    /* The scan accepted exactly one object spanning buf, so anything else is msgpack's doing. */
    if (ret != MSGPACK_UNPACK_SUCCESS || off != len) {
        dst_msg_errf(err, errlen, "msgpack refused the body (%d)", (int)ret);
        return DSI_ERR_PROTOCOL;
    }
    return DSI_OK;
}

dsi_status_t dst_msg_decode(const char *buf, size_t len, dst_msg_t *out, char *err, size_t errlen)
{
    msgpack_zone zone;
    msgpack_object root;
    dst_msg_t tmp;
    memset(&tmp, 0, sizeof(tmp));
    if (!msgpack_zone_init(&zone, 8192)) {
        dst_msg_errf(err, errlen, "out of memory");
        return DSI_ERR_NOMEM;
    }
    dsi_status_t st = unpack(buf, len, &zone, &root, err, errlen);
    if (st != DSI_OK)
        goto out_zone;
    st = decode_object(&root, &tmp, err, errlen);
    if (st != DSI_OK) {
        dst_msg_free(&tmp);
        goto out_zone;
    }
    *out = tmp;
out_zone:
    msgpack_zone_destroy(&zone);
    return st;
}

uint32_t dst_msg_peek_type(const char *buf, size_t len)
{
    msgpack_zone zone;
    msgpack_object root;
    char err[8];
    uint32_t type = 0;
    if (!msgpack_zone_init(&zone, 8192))
        return 0;
    if (unpack(buf, len, &zone, &root, err, sizeof(err)) == DSI_OK &&
        root.type == MSGPACK_OBJECT_MAP) {
        for (uint32_t i = 0; i < root.via.map.size; i++) {
            const msgpack_object_kv *kv = &root.via.map.ptr[i];
            if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == 4 &&
                memcmp(kv->key.via.str.ptr, "type", 4) == 0) {
                if (kv->val.type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
                    kv->val.via.u64 <= UINT32_MAX)
                    type = (uint32_t)kv->val.via.u64;
                break;
            }
        }
    }
    msgpack_zone_destroy(&zone);
    return type;
}
