/*
 * dst_msg_check.c - the semantic rules of each message (ranges, lengths, cross-field rules), shared
 * by decode (after parsing) and encode (before sending), so that what one side sends the other
 * side accepts.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dst_msg_impl.h"

#define FAIL(...)                               \
    do {                                        \
        dst_msg_errf(err, errlen, __VA_ARGS__); \
        return DSI_ERR_PROTOCOL;                \
    } while (0)

/* String fields are C strings; NUL must fall within cap (a caller-built struct may lack it). */
static int text_field_ok(const char *s, size_t cap)
{
    return memchr(s, 0, cap) != NULL && dst_msg_text_ok(s);
}

int dst_msg_addr_ok(const char *addr)
{
    if (addr[0] == 0)
        return 1;
    const char *colon = strrchr(addr, ':');
    if (colon == NULL || colon == addr)
        return 0;
    if (addr[0] == '[' && colon[-1] != ']')
        return 0;
    if (addr[0] != '[' && memchr(addr, ':', (size_t)(colon - addr)) != NULL)
        return 0; /* IPv6 literals need brackets */
    for (const char *h = addr; h < colon; h++) {
        if (*h == ' ' || *h == '/')
            return 0;
    }
    const char *p = colon + 1;
    if (*p == 0 || strlen(p) > 5)
        return 0;
    unsigned port = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9')
            return 0;
        port = port * 10 + (unsigned)(*p - '0');
    }
    return port >= 1 && port <= 65535;
}

static dsi_status_t check_tokens(const int32_t *tokens, uint32_t n, uint32_t min, const char *what,
                                 char *err, size_t errlen)
{
    if (n < min || n > DST_MSG_MAX_TOKENS) {
        dst_msg_errf(err, errlen, "%s.tokens: %u ids, %u..%u allowed", what, (unsigned)n,
                     (unsigned)min, DST_MSG_MAX_TOKENS);
        return n > DST_MSG_MAX_TOKENS ? DSI_ERR_TOO_LARGE : DSI_ERR_PROTOCOL;
    }
    if (n > 0 && tokens == NULL)
        FAIL("%s.tokens: missing array", what);
    for (uint32_t i = 0; i < n; i++) {
        if (tokens[i] < 0 || tokens[i] > DST_MSG_MAX_TOKEN_ID)
            FAIL("%s.tokens[%u]: id %d not in 0..%d", what, (unsigned)i, (int)tokens[i],
                 DST_MSG_MAX_TOKEN_ID);
    }
    return DSI_OK;
}

static dsi_status_t check_ucx_addr(const uint8_t *a, size_t len, const char *what, char *err,
                                   size_t errlen)
{
    if (a == NULL || len == 0 || len > DST_MSG_MAX_UCX_ADDR)
        FAIL("%s.ucx_addr: %zu bytes, 1..%d required", what, a == NULL ? 0 : len,
             DST_MSG_MAX_UCX_ADDR);
    return DSI_OK;
}

static dsi_status_t check_register(const dst_msg_register_t *m, char *err, size_t errlen)
{
    if (!text_field_ok(m->name, sizeof(m->name)) || m->name[0] == 0)
        FAIL("REGISTER.name: empty, or not UTF-8 without control characters");
    if (m->mem_budget == 0)
        FAIL("REGISTER.mem_budget: must be > 0");
    if (m->cores == 0 || m->cores > DST_MSG_MAX_CORES)
        FAIL("REGISTER.cores: %u not in 1..%d", (unsigned)m->cores, DST_MSG_MAX_CORES);
    dsi_status_t st = check_ucx_addr(m->ucx_addr, m->ucx_addr_len, "REGISTER", err, errlen);
    if (st != DSI_OK)
        return st;
    if (!text_field_ok(m->data_addr, sizeof(m->data_addr)) || !dst_msg_addr_ok(m->data_addr))
        FAIL("REGISTER.data_addr: not \"\" or host:port");
    return DSI_OK;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static dsi_status_t check_peers(const dst_msg_peers_t *m, char *err, size_t errlen)
{
    if (m->n_peers > DST_MSG_MAX_NODES) {
        dst_msg_errf(err, errlen, "PEERS: %u peers, at most %d", (unsigned)m->n_peers,
                     DST_MSG_MAX_NODES);
        return DSI_ERR_TOO_LARGE;
    }
    if (m->n_peers == 0)
        return DSI_OK;
    if (m->peers == NULL)
        FAIL("PEERS.peers: missing array");
    for (uint32_t i = 0; i < m->n_peers; i++) {
        const dst_msg_peer_t *p = &m->peers[i];
        dsi_status_t st = check_ucx_addr(p->ucx_addr, p->ucx_addr_len, "PEERS.peers", err, errlen);
        if (st != DSI_OK)
            return st;
        if (!text_field_ok(p->data_addr, sizeof(p->data_addr)) || !dst_msg_addr_ok(p->data_addr))
            FAIL("PEERS.peers[%u].data_addr: not \"\" or host:port", (unsigned)i);
    }
    uint32_t *ids = malloc((size_t)m->n_peers * sizeof(*ids));
    if (ids == NULL) {
        dst_msg_errf(err, errlen, "PEERS: out of memory");
        return DSI_ERR_NOMEM;
    }
    for (uint32_t i = 0; i < m->n_peers; i++)
        ids[i] = m->peers[i].node_id;
    qsort(ids, m->n_peers, sizeof(*ids), cmp_u32);
    uint32_t dup = 0;
    int has_dup = 0;
    for (uint32_t i = 1; i < m->n_peers && !has_dup; i++) {
        if (ids[i] == ids[i - 1]) {
            has_dup = 1;
            dup = ids[i];
        }
    }
    free(ids);
    if (has_dup)
        FAIL("PEERS: node id %u listed twice", (unsigned)dup);
    return DSI_OK;
}

static dsi_status_t check_load_stats(const dst_msg_load_stats_t *m, char *err, size_t errlen)
{
    if (m->n_layers == 0 || m->n_layers > DST_MSG_MAX_LAYERS ||
        m->first_layer > DST_MSG_MAX_LAYERS - m->n_layers)
        FAIL("LOAD_STATS: layers [%u, +%u) not within 1..%d layers", (unsigned)m->first_layer,
             (unsigned)m->n_layers, DST_MSG_MAX_LAYERS);
    if (m->n_experts == 0 || m->n_experts > DST_MSG_MAX_EXPERTS)
        FAIL("LOAD_STATS.n_experts: %u not in 1..%d", (unsigned)m->n_experts, DST_MSG_MAX_EXPERTS);
    if ((uint64_t)m->n_layers * m->n_experts > DST_MSG_MAX_SLOTS) {
        dst_msg_errf(err, errlen, "LOAD_STATS: %u x %u counts, at most %u", (unsigned)m->n_layers,
                     (unsigned)m->n_experts, DST_MSG_MAX_SLOTS);
        return DSI_ERR_TOO_LARGE;
    }
    if (m->counts == NULL)
        FAIL("LOAD_STATS.counts: missing array");
    return DSI_OK;
}

/* SUBMIT.sampling (docs/PROTOCOL.md): ranges, matching arrays, valid and unique bias ids. */
static dsi_status_t check_sampling(const dst_msg_sampling_t *m, char *err, size_t errlen)
{
    const struct {
        const char *name;
        float v, lo, hi;
    } f[] = {{"presence_penalty", m->presence_penalty, -2, 2},
             {"frequency_penalty", m->frequency_penalty, -2, 2},
             {"repetition_penalty", m->repetition_penalty, 0, 100},
             {"min_p", m->min_p, 0, 1}};
    for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
        if (!isfinite(f[i].v) || f[i].v < f[i].lo || f[i].v > f[i].hi)
            FAIL("SUBMIT.sampling.%s: %g not in [%g, %g]", f[i].name, (double)f[i].v,
                 (double)f[i].lo, (double)f[i].hi);
    }
    if (m->min_tokens > DST_MSG_MAX_TOKENS)
        FAIL("SUBMIT.sampling.min_tokens: %u over %d", (unsigned)m->min_tokens,
             DST_MSG_MAX_TOKENS);
    if (m->ignore_eos > 1 || m->logprobs > 1 || m->top_logprobs > DST_MSG_MAX_TOP_LP)
        FAIL("SUBMIT.sampling: ignore_eos %u, logprobs %u, top_logprobs %u out of range",
             m->ignore_eos, m->logprobs, m->top_logprobs);
    if (m->n_bias > DST_MSG_MAX_BIAS || m->n_stop_ids > DST_MSG_MAX_STOP_IDS)
        FAIL("SUBMIT.sampling: %u logit biases (at most %d), %u stop ids (at most %d)",
             (unsigned)m->n_bias, DST_MSG_MAX_BIAS, (unsigned)m->n_stop_ids,
             DST_MSG_MAX_STOP_IDS);
    if ((m->n_bias > 0 && (m->bias_ids == NULL || m->bias_values == NULL)) ||
        (m->n_stop_ids > 0 && m->stop_ids == NULL))
        FAIL("SUBMIT.sampling: missing array");
    for (uint32_t i = 0; i < m->n_bias; i++) {
        if (m->bias_ids[i] < 0 || m->bias_ids[i] > DST_MSG_MAX_TOKEN_ID)
            FAIL("SUBMIT.sampling.bias_ids[%u]: %d not a token id", (unsigned)i,
                 (int)m->bias_ids[i]);
        if (!isfinite(m->bias_values[i]) || fabsf(m->bias_values[i]) > 100.0f)
            FAIL("SUBMIT.sampling.bias_values[%u]: %g not in [-100, 100]", (unsigned)i,
                 (double)m->bias_values[i]);
        for (uint32_t j = 0; j < i; j++) {
            if (m->bias_ids[j] == m->bias_ids[i])
                FAIL("SUBMIT.sampling.bias_ids: %d twice", (int)m->bias_ids[i]);
        }
    }
    for (uint32_t i = 0; i < m->n_stop_ids; i++) {
        if (m->stop_ids[i] < 0 || m->stop_ids[i] > DST_MSG_MAX_TOKEN_ID)
            FAIL("SUBMIT.sampling.stop_ids[%u]: %d not a token id", (unsigned)i,
                 (int)m->stop_ids[i]);
    }
    return DSI_OK;
}

static dsi_status_t check_submit(const dst_msg_submit_t *m, char *err, size_t errlen)
{
    dsi_status_t st = check_tokens(m->tokens, m->n_tokens, 1, "SUBMIT", err, errlen);
    if (st != DSI_OK)
        return st;
    const double values[DST_BOUND_END] = {
        [DST_BOUND_MAX_TOKENS] = m->max_tokens,
        [DST_BOUND_TEMPERATURE] = m->temperature,
        [DST_BOUND_TOP_P] = m->top_p,
        [DST_BOUND_TOP_K] = m->top_k,
        [DST_BOUND_GRAMMAR] = m->grammar_len,
    };
    for (int i = 0; i < DST_BOUND_END; i++) {
        const dst_bound_t *b = &dst_bounds[i];
        if (!dst_bound_ok((dst_bound_id_t)i, values[i], 0))
            FAIL("SUBMIT.%s: %.9g not in %s%.9g, %.9g]", b->name, values[i], b->lo_open ? "(" : "[",
                 b->lo, b->hi);
    }
    if (m->n_route == 0 || m->n_route > DST_MSG_MAX_STAGES || m->route == NULL)
        FAIL("SUBMIT.route: %u stages not in 1..%d", (unsigned)m->n_route, DST_MSG_MAX_STAGES);
    if (m->n_generated >= m->n_tokens)
        FAIL("SUBMIT.n_generated: %u not below n_tokens %u", (unsigned)m->n_generated,
             (unsigned)m->n_tokens);
    if (m->fork_len >= m->n_tokens || (m->fork_len > 0 && m->fork_of == m->seq_id))
        FAIL("SUBMIT.fork_len: %u not below n_tokens %u, or fork_of is the sequence itself",
             (unsigned)m->fork_len, (unsigned)m->n_tokens);
    if (m->no_prefix > 1)
        FAIL("SUBMIT.no_prefix: %u, not 0 or 1", (unsigned)m->no_prefix);
    if (m->kv_move > 1 || (m->kv_move && m->fork_len == 0))
        FAIL("SUBMIT.kv_move: %u, with fork_len %u (1 needs the rows it moves)",
             (unsigned)m->kv_move, (unsigned)m->fork_len);
    if ((m->grammar == NULL) != (m->grammar_len == 0) ||
        (m->grammar != NULL && memchr(m->grammar, 0, m->grammar_len) != NULL))
        FAIL("SUBMIT.grammar: %u bytes, %s", (unsigned)m->grammar_len,
             m->grammar == NULL ? "missing text" : "empty or holds a NUL byte");
    return check_sampling(&m->sampling, err, errlen);
}

static dsi_status_t check_tokens_msg(const dst_msg_tokens_t *m, char *err, size_t errlen)
{
    if (m->finish >= DST_FINISH_END)
        FAIL("TOKENS.finish: %u not a finish reason", (unsigned)m->finish);
    if (m->n_tokens == 0 && m->finish == DST_FINISH_NONE)
        FAIL("TOKENS: no tokens and no finish reason");
    if (m->has_spec > 1 || (m->has_spec && (m->rollback > DST_MSG_SPEC_MAX_K ||
                                            m->n_drafts > DST_MSG_SPEC_MAX_K)))
        FAIL("TOKENS.spec: rollback %u and %u drafts (at most %d each)", (unsigned)m->rollback,
             (unsigned)m->n_drafts, DST_MSG_SPEC_MAX_K);
    for (uint32_t i = 0; m->has_spec && i < m->n_drafts; i++) {
        if (m->drafts[i] < 0 || m->drafts[i] > DST_MSG_MAX_TOKEN_ID)
            FAIL("TOKENS.spec: draft %u: %d not a token id", (unsigned)i, (int)m->drafts[i]);
    }
    if (m->logprob != NULL && m->n_tokens > 0) {
        if (m->n_top > DST_MSG_MAX_TOP_LP || (m->n_top > 0 && (!m->top_ids || !m->top_logprobs)))
            FAIL("TOKENS.logprobs: n_top %u (at most %d) or its arrays missing",
                 (unsigned)m->n_top, DST_MSG_MAX_TOP_LP);
        for (uint32_t i = 0; i < m->n_tokens * m->n_top; i++) {
            if (m->top_ids[i] < 0 || m->top_ids[i] > DST_MSG_MAX_TOKEN_ID)
                FAIL("TOKENS.logprobs.top_ids[%u]: %d not a token id", (unsigned)i,
                     (int)m->top_ids[i]);
        }
    }
    return check_tokens(m->tokens, m->n_tokens, 0, "TOKENS", err, errlen);
}

static dsi_status_t check_bias(const dst_msg_bias_t *m, char *err, size_t errlen)
{
    if (m->layer >= DST_MSG_MAX_LAYERS)
        FAIL("BIAS.layer: %u not below %d", (unsigned)m->layer, DST_MSG_MAX_LAYERS);
    if (m->n_biases > DST_MSG_MAX_EXPERTS) {
        dst_msg_errf(err, errlen, "BIAS.biases: %u values, at most %d", (unsigned)m->n_biases,
                     DST_MSG_MAX_EXPERTS);
        return DSI_ERR_TOO_LARGE;
    }
    if (m->n_biases == 0 || m->biases == NULL)
        FAIL("BIAS.biases: empty");
    for (uint32_t i = 0; i < m->n_biases; i++) {
        if (!isfinite(m->biases[i]))
            FAIL("BIAS.biases[%u]: not finite", (unsigned)i);
    }
    return DSI_OK;
}

static dsi_status_t check_admin_reply(const dst_msg_admin_reply_t *m, char *err, size_t errlen)
{
    if (m->command == 0 || m->command >= DST_ADMIN_END)
        FAIL("ADMIN_REPLY.command: %u is not an admin command", (unsigned)m->command);
    if (m->json == NULL)
        FAIL("ADMIN_REPLY.json: missing");
    size_t n = strlen(m->json);
    if (n >= DST_MSG_JSON_MAX) {
        dst_msg_errf(err, errlen, "ADMIN_REPLY.json: %zu bytes, at most %u", n,
                     DST_MSG_JSON_MAX - 1);
        return DSI_ERR_TOO_LARGE;
    }
    if (!dst_msg_text_ok(m->json))
        FAIL("ADMIN_REPLY.json: not UTF-8 without control characters");
    return DSI_OK;
}

dsi_status_t dst_msg_check(const dst_msg_t *m, char *err, size_t errlen)
{
    switch (m->type) {
    case DST_MSG_HELLO:
    case DST_MSG_READY:
    case DST_MSG_HEARTBEAT:
    case DST_MSG_DRAIN:
    case DST_MSG_CANCEL:
    case DST_MSG_SWITCH:
    case DST_MSG_SWITCHED:
    case DST_MSG_RELEASE:
        return DSI_OK; /* every value of their fields' types is meaningful */
    case DST_MSG_REGISTER:
        return check_register(&m->reg, err, errlen);
    case DST_MSG_WELCOME:
        if (m->welcome.heartbeat_ms == 0 || m->welcome.heartbeat_ms > 600000)
            FAIL("WELCOME.heartbeat_ms: %u not in 1..600000", (unsigned)m->welcome.heartbeat_ms);
        return DSI_OK;
    case DST_MSG_PLAN:
        if (m->plan.live > 2)
            FAIL("PLAN.live: %u is not 0, 1 or 2", (unsigned)m->plan.live);
        return dst_msg_plan_check(&m->plan.plan, err, errlen);
    case DST_MSG_PEERS:
        return check_peers(&m->peers, err, errlen);
    case DST_MSG_LOAD_STATS:
        return check_load_stats(&m->load_stats, err, errlen);
    case DST_MSG_SUBMIT:
        return check_submit(&m->submit, err, errlen);
    case DST_MSG_TOKENS:
        return check_tokens_msg(&m->tokens, err, errlen);
    case DST_MSG_SHUTDOWN:
        if (!text_field_ok(m->shutdown.reason, sizeof(m->shutdown.reason)))
            FAIL("SHUTDOWN.reason: not UTF-8 without control characters");
        return DSI_OK;
    case DST_MSG_BIAS:
        return check_bias(&m->bias, err, errlen);
    case DST_MSG_ADMIN:
        if (m->admin.command == 0 || m->admin.command >= DST_ADMIN_END)
            FAIL("ADMIN.command: %u is not an admin command", (unsigned)m->admin.command);
        return DSI_OK;
    case DST_MSG_ADMIN_REPLY:
        return check_admin_reply(&m->admin_reply, err, errlen);
    case DST_MSG_KV_MOVE:
        if (m->kv_move.n_tokens == 0 || m->kv_move.n_tokens > DST_MSG_MAX_TOKENS)
            FAIL("KV_MOVE.n_tokens: %u not in 1..%d", (unsigned)m->kv_move.n_tokens,
                 DST_MSG_MAX_TOKENS);
        if (m->kv_move.to_seq == m->kv_move.seq_id)
            FAIL("KV_MOVE.to_seq: the sequence's own id %llu",
                 (unsigned long long)m->kv_move.seq_id);
        if (m->kv_move.first_layer >= m->kv_move.end_layer &&
            (m->kv_move.first_layer != 0 || m->kv_move.end_layer != 0))
            FAIL("KV_MOVE layers %u..%u: not a range (first < end, or both 0 for all)",
                 (unsigned)m->kv_move.first_layer, (unsigned)m->kv_move.end_layer);
        return DSI_OK;
    case DST_MSG_KV_DONE:
        if (m->kv_done.ok > 1)
            FAIL("KV_DONE.ok: %u is not 0 or 1", (unsigned)m->kv_done.ok);
        if (!text_field_ok(m->kv_done.text, sizeof(m->kv_done.text)))
            FAIL("KV_DONE.text: not UTF-8 without control characters");
        return DSI_OK;
    case DST_MSG_ERROR:
        if (m->error.code >= 0 || m->error.code <= -1000)
            FAIL("ERROR.code: %d not in -999..-1", (int)m->error.code);
        if (!text_field_ok(m->error.text, sizeof(m->error.text)))
            FAIL("ERROR.text: not UTF-8 without control characters");
        return DSI_OK;
    default:
        dst_msg_errf(err, errlen, "unknown message type %u", (unsigned)m->type);
        return DSI_ERR_UNSUPPORTED;
    }
}
