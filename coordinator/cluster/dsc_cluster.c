/* dsc_cluster.c - the coordinator's connections and membership: join, drain, loss. */
#include "dsc_cluster.h"

#include <stdlib.h>
#include <string.h>

#include "dsc_cluster_impl.h"
#include "dsi_clock.h"
#include "dsi_log.h"

static void maybe_free(dsc_cluster_t *cl)
{
    if (cl->destroyed && !cl->timer_open && !cl->load_timer_open && cl->open_conns == 0)
        free(cl);
}

uint64_t dsc_now_ns(void)
{
    return (uint64_t)dsi_now_ns();
}

void dsc_cluster_opts_default(dsc_cluster_opts_t *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->listen = "127.0.0.1:0";
    opts->expect_nodes = 1;
    opts->heartbeat_ms = 500;
    opts->node_timeout_ms = 2000;
    opts->stall_timeout_ms = 60000;
    dsc_plan_opts_default(&opts->plan);
    opts->load_window_ms = 1000;
    opts->load_windows = 60;
    opts->redundant_experts = DSC_REDUNDANT_AUTO;
    opts->rebalance_interval_ms = 60000;
    opts->live_switch = 1;
    opts->prefix_routing = 1;
}

void dsc_cluster_set_state(dsc_cluster_t *cl, dsi_status_t st)
{
    if (cl->state_cb != NULL)
        cl->state_cb(cl->state_arg, st);
}

dsi_status_t dsc_cluster_send(dst_ctrl_conn_t *conn, const dst_msg_t *m)
{
    if (conn == NULL)
        return DSI_OK;
    dsi_status_t st = dst_ctrl_send(conn, m);
    if (st != DSI_OK)
        DSI_ERROR("cannot send %s to %s: %s", dst_msg_type_name(m->type), dst_ctrl_conn_peer(conn),
                  dsi_status_message(st));
    return st;
}

dsi_status_t dsc_cluster_send_node(dsc_cluster_t *cl, uint32_t id, const dst_msg_t *m)
{
    if (id >= cl->n_nodes)
        return DSI_OK;
    node_t *n = &cl->nodes[id];
    if (n->state != NODE_DEAD && n->cs != NULL)
        return dsc_cluster_send(n->cs->conn, m);
    return DSI_OK;
}

int dsc_node_live(const node_t *n)
{
    return n->state != NODE_DEAD && !n->draining;
}

static uint32_t live_nodes(const dsc_cluster_t *cl)
{
    uint32_t k = 0;
    for (uint32_t i = 0; i < cl->n_nodes; i++)
        k += dsc_node_live(&cl->nodes[i]);
    return k;
}

/* ---- membership ---- */

static void refuse(dsc_cluster_t *cl, dst_ctrl_conn_t *conn, dsi_status_t code, const char *why,
                   const char *name)
{
    DSI_ERROR("REGISTER of '%s' from %s: %s: refused", name, dst_ctrl_conn_peer(conn), why);
    cl->stats.bad_registrations++;
    dst_ctrl_send_error(conn, code, DST_MSG_REGISTER, "%s", why);
    dst_ctrl_conn_close(conn);
}

/*
 * The id for a joining node: the lowest id of a node that left and is out of every plan (the
 * current one and the one a live switch moves to or from, so no peer and no submitted sequence
 * still uses it: the other nodes dropped its endpoint with the plan that left it out), else a new
 * one; DSC_MAX_NODES when every id is taken. Without recycling, a node that restarts in a loop
 * would use up the ids and the cluster would refuse every node after DSC_MAX_NODES joins.
 */
static uint32_t free_id(const dsc_cluster_t *cl)
{
    /* A failed node's id first (a crash-looping node keeps reusing its own), then a fresh one,
     * then a drained node's: drained nodes stay listed as such (/health, cluster status) until
     * their ids are needed. */
    for (int drained = 0; drained < 2; drained++) {
        for (uint32_t i = 0; i < cl->n_nodes; i++) {
            const node_t *n = &cl->nodes[i];
            if (n->state == NODE_DEAD && n->cs == NULL && n->draining == drained &&
                !dsc_cluster_involves(cl, i))
                return i;
        }
        if (!drained && cl->n_nodes < DSC_MAX_NODES)
            return cl->n_nodes;
    }
    return cl->n_nodes;
}

static void on_register(dsc_cluster_t *cl, conn_state_t *cs, const dst_msg_register_t *r)
{
    dst_ctrl_conn_t *conn = cs->conn;
    if (!dst_secret_register_verify(&cl->opts.secret, cs->nonce, r->name, r->auth)) {
        refuse(cl, conn, DSI_ERR_AUTH, "authentication failed (wrong shared-secret proof)",
               r->name);
        return;
    }
    if (cs->kind != PEER_UNKNOWN) {
        refuse(cl, conn, DSI_ERR_PROTOCOL, "a second REGISTER on one connection", r->name);
        return;
    }
    char why[160];
    for (uint32_t i = 0; i < cl->n_nodes; i++) {
        if (cl->nodes[i].state != NODE_DEAD && strcmp(cl->nodes[i].name, r->name) == 0) {
            snprintf(why, sizeof(why),
                     "the name '%s' is taken by live node %u: give each node its own --name",
                     r->name, cl->nodes[i].id);
            refuse(cl, conn, DSI_ERR_INVALID_ARG, why, r->name);
            return;
        }
    }
    uint32_t id = free_id(cl);
    if (id >= DSC_MAX_NODES || cl->shut_down) {
        snprintf(why, sizeof(why), "the cluster takes no more nodes: %s",
                 cl->shut_down ? "it is shutting down" : "every node id is in use");
        refuse(cl, conn, DSI_ERR_CAPACITY, why, r->name);
        return;
    }
    uint8_t *addr = malloc(r->ucx_addr_len);
    if (addr == NULL) {
        refuse(cl, conn, DSI_ERR_NOMEM, "out of memory", r->name);
        return;
    }
    memcpy(addr, r->ucx_addr, r->ucx_addr_len);
    node_t *n = &cl->nodes[id];
    free(n->ucx_addr); /* a recycled id's last address */
    memset(n, 0, sizeof(*n));
    n->ucx_addr = addr;
    n->ucx_addr_len = r->ucx_addr_len;
    n->id = id;
    snprintf(n->name, sizeof(n->name), "%s", r->name);
    n->mem_budget = r->mem_budget;
    n->cores = r->cores;
    n->held_id = r->held_id;
    n->held_epoch = r->held_epoch;
    /* Every plan from now on must be newer than what a node still serves, or it ignores it. */
    if (r->held_epoch > cl->last_epoch)
        cl->last_epoch = r->held_epoch;
    n->cs = cs;
    n->last_seen_ns = dsc_now_ns();
    cs->kind = PEER_NODE;
    cs->node = (int)id;
    if (id == cl->n_nodes)
        cl->n_nodes++;
    cl->stats.nodes_joined++;
    dst_msg_t w = {.type = DST_MSG_WELCOME};
    w.welcome.node_id = n->id;
    w.welcome.heartbeat_ms = cl->opts.heartbeat_ms;
    dsc_cluster_send(conn, &w);
    DSI_INFO("node %u '%s' joined from %s (%.1f GiB, %u cores); %u live", n->id, n->name,
             dst_ctrl_conn_peer(conn), (double)n->mem_budget / (1 << 30), n->cores, live_nodes(cl));
    if (cl->planned)
        dsc_cluster_replan(cl, "a node joined", 1);
    else if (live_nodes(cl) >= cl->opts.expect_nodes)
        dsc_cluster_replan(cl, "the expected nodes joined", 0);
}

static void node_lost(dsc_cluster_t *cl, node_t *n, const char *why)
{
    if (n->state == NODE_DEAD)
        return;
    int expected = cl->shut_down || n->draining;
    if (expected)
        DSI_INFO("node %u '%s' left", n->id, n->name);
    else
        DSI_ERROR("node %u '%s' lost: %s", n->id, n->name, why);
    n->state = NODE_DEAD;
    cl->stats.nodes_dead += !expected;
    if (n->cs != NULL) {
        n->cs->kind = PEER_UNKNOWN;
        dst_ctrl_conn_close(n->cs->conn);
        n->cs = NULL;
    }
    /* A drained node that already left the plan changes nothing; any other node of the plan
     * forces a re-plan over the survivors. */
    if (!cl->shut_down && cl->planned && dsc_cluster_involves(cl, n->id))
        dsc_cluster_replan(cl, "a node was lost", 0);
}

dsi_status_t dsc_cluster_drain(dsc_cluster_t *cl, uint32_t node_id)
{
    if (cl->shut_down)
        return DSI_ERR_UNSUPPORTED;
    node_t *n = node_id < cl->n_nodes ? &cl->nodes[node_id] : NULL;
    if (n == NULL || n->state == NODE_DEAD) {
        DSI_ERROR("drain of node %u refused: no live node of that id", node_id);
        return DSI_ERR_NOT_FOUND;
    }
    if (n->draining)
        return DSI_OK;
    n->draining = 1;
    DSI_INFO("node %u '%s' drains", n->id, n->name);
    if (cl->planned && dsc_cluster_involves(cl, n->id)) {
        dsc_cluster_replan(cl, "a node drains", 1);
    } else if (n->cs != NULL) {
        dst_msg_t m = {.type = DST_MSG_SHUTDOWN};
        snprintf(m.shutdown.reason, sizeof(m.shutdown.reason), "drained");
        dsc_cluster_send(n->cs->conn, &m);
    }
    return DSI_OK;
}

/* DRAIN from a node: it leaves by itself (SIGTERM). An operator drains other nodes with an
 * authenticated ADMIN request instead: a bare DRAIN from anyone else is refused. */
static void on_drain(dsc_cluster_t *cl, conn_state_t *cs, const dst_msg_drain_t *d)
{
    if (cs->kind != PEER_NODE) {
        DSI_ERROR("DRAIN of node %u from %s refused: not a node; operators use ADMIN drain",
                  d->node_id, dst_ctrl_conn_peer(cs->conn));
        dst_ctrl_send_error(cs->conn, DSI_ERR_AUTH, DST_MSG_DRAIN,
                            "only a node may send DRAIN (for itself); use an authenticated "
                            "ADMIN drain (dsinfer cluster drain)");
        return;
    }
    node_t *n = &cl->nodes[cs->node];
    if (d->node_id != n->id) {
        dst_ctrl_send_error(cs->conn, DSI_ERR_PROTOCOL, DST_MSG_DRAIN,
                            "a node may only drain itself");
        return;
    }
    if (cl->shut_down) { /* a SIGTERM to every process at once: the SHUTDOWN stops it */
        DSI_INFO("node %u '%s' asks to drain while the cluster shuts down", n->id, n->name);
        return;
    }
    if (dsc_cluster_drain(cl, n->id) != DSI_OK)
        dst_ctrl_send_error(cs->conn, DSI_ERR_NOT_FOUND, DST_MSG_DRAIN, "no live node %u",
                            d->node_id);
}

/* ---- control messages ---- */

static void on_ready(dsc_cluster_t *cl, conn_state_t *cs, const dst_msg_ready_t *r)
{
    node_t *n = &cl->nodes[cs->node];
    if (cl->switch_phase == SWITCH_PREPARE && r->node_id == n->id &&
        r->epoch == cl->next_plan.epoch) {
        if (dsc_plan_node_index(&cl->next_plan, n->id) >= 0 && !n->next_ready)
            dsc_switch_on_ready(cl, n);
        return;
    }
    if (r->node_id != n->id || !cl->planned || r->epoch > cl->plan.epoch) {
        dst_ctrl_send_error(cs->conn, DSI_ERR_PROTOCOL, DST_MSG_READY,
                            "READY for node %u epoch %llu does not match", r->node_id,
                            (unsigned long long)r->epoch);
        return;
    }
    if (r->epoch < cl->plan.epoch || n->state == NODE_READY ||
        dsc_plan_node_index(&cl->plan, n->id) < 0)
        return; /* an older epoch's answer */
    dsc_cluster_node_ready(cl, n);
}

static void on_switched(dsc_cluster_t *cl, conn_state_t *cs, const dst_msg_switch_t *m)
{
    node_t *n = &cl->nodes[cs->node];
    if (m->node_id != n->id || m->epoch > cl->last_epoch) {
        dst_ctrl_send_error(cs->conn, DSI_ERR_PROTOCOL, DST_MSG_SWITCHED,
                            "SWITCHED for node %u epoch %llu does not match", m->node_id,
                            (unsigned long long)m->epoch);
        return;
    }
    if (cl->switch_phase == SWITCH_DRAIN && m->epoch == cl->plan.epoch && !n->switched &&
        dsc_cluster_involves(cl, n->id))
        dsc_switch_on_switched(cl, n);
}

/* A node's HEARTBEAT.spec into the totals. */
static void spec_add(dsc_spec_totals_t *t, const dst_msg_spec_t *s)
{
    t->steps += s->steps;
    t->emitted += s->emitted;
    t->draft_ns += s->draft_ns;
    t->verify_ns += s->verify_ns;
    if (s->k > t->k)
        t->k = s->k;
    for (uint32_t i = 0; i < s->k && i < DST_MSG_SPEC_MAX_K; i++) {
        t->drafted[i] += s->drafted[i];
        t->accepted[i] += s->accepted[i];
    }
}

/* TOKENS from a node: the last stage's samples, or an error from any stage. */
static void on_tokens(dsc_cluster_t *cl, conn_state_t *cs, const dst_msg_tokens_t *t)
{
    seq_t *s = dsc_seq_by_wire(cl, t->seq_id);
    if (s == NULL)
        return; /* cancelled or of an older epoch */
    uint32_t from = cl->nodes[cs->node].id;
    if (t->finish == DST_FINISH_NONE && from != s->route[s->n_route - 1]) {
        dst_ctrl_send_error(cs->conn, DSI_ERR_PROTOCOL, DST_MSG_TOKENS,
                            "TOKENS for sequence %llu from a node that is not its last stage",
                            (unsigned long long)t->seq_id);
        return;
    }
    if (t->finish == DST_FINISH_PREEMPTED) {
        dsc_seq_preempted(cl, s); /* its owner sees nothing: the tokens go on after a re-prefill */
        return;
    }
    if (t->finish == DST_FINISH_PREFIX_MISS) {
        dsc_seq_prefix_miss(cl, s); /* the same, computing its whole prompt this time */
        return;
    }
    dsc_seq_deliver(cl, s, t, t->tokens, t->n_tokens, (dst_finish_t)t->finish);
    if (t->finish != DST_FINISH_NONE) {
        dsc_seq_end(cl, s);
        return;
    }
    /* The sampled token goes back to stage 0 when another node runs it (not while a re-plan
     * holds the sequence: it continues on the new plan). */
    if (s->route[0] != from && s->submitted) {
        dst_msg_t m = {.type = DST_MSG_TOKENS};
        m.tokens = *t;
        m.tokens.logprob = NULL; /* stage 0 needs only the token */
        dsi_status_t st = dsc_cluster_send_node(cl, s->route[0], &m);
        if (st != DSI_OK && st != DSI_ERR_CONNECTION) {
            /* Stage 0 would wait for this token forever (a lost connection re-plans instead). */
            DSI_ERROR("request %llu failed: its token could not be relayed to stage 0: %s",
                      (unsigned long long)s->handle, dsi_status_message(st));
            dsc_seq_deliver(cl, s, NULL, NULL, 0, DST_FINISH_ERROR);
            dsc_seq_end(cl, s);
        }
    }
}

/* SUBMIT from a client connection: the tokens go back to it as TOKENS with its id. */
static void on_client_submit(dsc_cluster_t *cl, conn_state_t *cs, const dst_msg_submit_t *m)
{
    if (cs->kind == PEER_NODE) {
        dst_ctrl_send_error(cs->conn, DSI_ERR_PROTOCOL, DST_MSG_SUBMIT, "nodes do not submit");
        return;
    }
    if (!cs->client_ok) {
        /* The control port is reachable by more than the nodes: without the proof, no work. */
        uint64_t now = dsc_now_ns();
        cl->unauth_refused++;
        if (cl->unauth_warn_ns == 0 || now - cl->unauth_warn_ns >= 10000000000ULL) {
            DSI_WARN("SUBMIT from %s refused: the connection did not authenticate (%llu refused "
                     "since the last such warning; logged at most every 10 s)",
                     dst_ctrl_conn_peer(cs->conn), (unsigned long long)cl->unauth_refused);
            cl->unauth_refused = 0;
            cl->unauth_warn_ns = now;
        }
        dst_ctrl_send_error(cs->conn, DSI_ERR_AUTH, DST_MSG_SUBMIT,
                            "SUBMIT refused: authenticate first (ADMIN client with the cluster's "
                            "shared secret, DSINFER_SECRET)");
        dst_ctrl_conn_close(cs->conn);
        return;
    }
    cs->kind = PEER_CLIENT;
    dsc_cluster_req_t req = {m->tokens, m->n_tokens, m->max_tokens, m->temperature,
                             m->top_p,  m->top_k,    m->seed,       m->grammar};
    char why[256] = "";
    dsi_status_t st =
        cl->admit_cb != NULL ? cl->admit_cb(cl->admit_arg, &req, why, sizeof(why)) : DSI_OK;
    if (st != DSI_OK) {
        dst_ctrl_send_error(cs->conn, st, DST_MSG_SUBMIT, "request %llu refused: %s",
                            (unsigned long long)m->seq_id, why);
        return;
    }
    seq_t *s;
    st = dsc_seq_create(cl, &req, &m->sampling, &s, why, sizeof(why), 0);
    if (st != DSI_OK) {
        dst_ctrl_send_error(cs->conn, st, DST_MSG_SUBMIT, "request refused: %s",
                            why[0] ? why : dsi_status_message(st));
        return;
    }
    s->client = cs;
    s->client_seq = m->seq_id;
}

static void on_client_cancel(dsc_cluster_t *cl, conn_state_t *cs, uint64_t client_seq)
{
    dsi_list_for_each(s, &cl->seqs, seq_t, link) {
        if (s->client == cs && s->client_seq == client_seq) {
            dsc_seq_end(cl, s);
            return;
        }
    }
}

static void on_msg(dst_ctrl_conn_t *conn, dst_msg_t *msg, void *arg)
{
    (void)arg;
    conn_state_t *cs = dst_ctrl_conn_data(conn);
    dsc_cluster_t *cl = cs->cl;
    int is_node = cs->kind == PEER_NODE;
    if (is_node)
        cl->nodes[cs->node].last_seen_ns = dsc_now_ns();
    switch (msg->type) {
    case DST_MSG_REGISTER:
        on_register(cl, cs, &msg->reg);
        return;
    case DST_MSG_SUBMIT:
        on_client_submit(cl, cs, &msg->submit);
        return;
    case DST_MSG_DRAIN:
        on_drain(cl, cs, &msg->drain);
        return;
    case DST_MSG_ADMIN:
        dsc_cluster_on_admin(cl, cs, &msg->admin);
        return;
    case DST_MSG_CANCEL:
        if (!is_node) {
            on_client_cancel(cl, cs, msg->cancel.seq_id);
            return;
        }
        break;
    default:
        break;
    }
    if (!is_node) {
        dst_ctrl_send_error(conn, DSI_ERR_PROTOCOL, msg->type, "%s before REGISTER",
                            dst_msg_type_name(msg->type));
        return;
    }
    switch (msg->type) {
    case DST_MSG_READY:
        on_ready(cl, cs, &msg->ready);
        break;
    case DST_MSG_PLAN:
        dsc_cluster_held_plan(cl, &cl->nodes[cs->node], &msg->plan.plan);
        /* The first plan may have waited for this one (dsc_cluster_replan). */
        if (!cl->planned && live_nodes(cl) >= cl->opts.expect_nodes)
            dsc_cluster_replan(cl, "the expected nodes joined", 0);
        break;
    case DST_MSG_SWITCHED:
        on_switched(cl, cs, &msg->sw);
        break;
    case DST_MSG_HEARTBEAT: {
        if (msg->heartbeat.has_spec)
            spec_add(&cl->stats.spec, &msg->heartbeat.spec);
        if (is_node) {
            node_t *n = &cl->nodes[cs->node];
            n->kv_used = msg->heartbeat.kv_blocks_used;
            n->kv_total = msg->heartbeat.kv_blocks_total;
            n->preemptions = msg->heartbeat.preemptions;
            n->kv_cached = msg->heartbeat.kv_blocks_cached;
            /* the node's counters run since its compute thread started: add what they grew
             * by (all of them after a restart) */
            const dst_msg_heartbeat_t *hb = &msg->heartbeat;
            cl->stats.prefix_prompt_tokens += hb->prompt_tokens >= n->prompt_tokens
                                                  ? hb->prompt_tokens - n->prompt_tokens
                                                  : hb->prompt_tokens;
            cl->stats.prefix_hit_tokens += hb->prefix_hit_tokens >= n->hit_tokens
                                               ? hb->prefix_hit_tokens - n->hit_tokens
                                               : hb->prefix_hit_tokens;
            n->prompt_tokens = hb->prompt_tokens;
            n->hit_tokens = hb->prefix_hit_tokens;
        }
        dst_msg_t h = *msg;
        h.arena = NULL;
        h.heartbeat.has_spec = 0; /* the echo is for the round trip */
        dsc_cluster_send(conn, &h);
        break;
    }
    case DST_MSG_TOKENS:
        on_tokens(cl, cs, &msg->tokens);
        break;
    case DST_MSG_LOAD_STATS:
        dsc_cluster_on_load_stats(cl, cs, &msg->load_stats);
        break;
    case DST_MSG_KV_DONE:
        dsc_kvmove_on_done(cl, cs, &msg->kv_done);
        break;
    case DST_MSG_ERROR:
        DSI_ERROR("node %u reports: %s", cl->nodes[cs->node].id, msg->error.text);
        break;
    default:
        dst_ctrl_send_error(conn, DSI_ERR_PROTOCOL, msg->type, "unexpected %s from a node",
                            dst_msg_type_name(msg->type));
        break;
    }
}

static void on_open(dst_ctrl_conn_t *conn, void *arg)
{
    dsc_cluster_t *cl = arg;
    conn_state_t *cs = calloc(1, sizeof(*cs));
    if (cs == NULL) {
        dst_ctrl_conn_close(conn);
        return;
    }
    cs->cl = cl;
    cs->conn = conn;
    cs->node = -1;
    cl->open_conns++;
    dst_ctrl_conn_set_data(conn, cs);
    dst_msg_t h = {.type = DST_MSG_HELLO};
    if (dst_secret_nonce(cs->nonce) != DSI_OK) {
        dst_ctrl_conn_close(conn);
        return;
    }
    memcpy(h.hello.nonce, cs->nonce, DST_MSG_NONCE_LEN);
    dsc_cluster_send(conn, &h);
}

static void on_close(dst_ctrl_conn_t *conn, dsi_status_t why, void *arg)
{
    (void)why;
    dsc_cluster_t *cl = arg;
    conn_state_t *cs = dst_ctrl_conn_data(conn);
    if (cs == NULL)
        return;
    cl->open_conns--;
    if (cl->destroyed) {
        free(cs);
        maybe_free(cl);
        return;
    }
    if (cs->kind == PEER_NODE) {
        node_t *n = &cl->nodes[cs->node];
        n->cs = NULL;
        node_lost(cl, n, "control connection closed");
    } else if (cs->kind == PEER_CLIENT) {
        /* The client went away: its sequences are cancelled everywhere. */
        dsi_list_for_each_safe(s, &cl->seqs, seq_t, link) {
            if (s->client == cs)
                dsc_seq_end(cl, s);
        }
    }
    free(cs);
}

static void on_timer(uv_timer_t *t)
{
    dsc_cluster_t *cl = t->data;
    uint64_t now = dsc_now_ns(), limit = (uint64_t)cl->opts.node_timeout_ms * 1000000ULL;
    for (uint32_t i = 0; i < cl->n_nodes; i++) {
        node_t *n = &cl->nodes[i];
        if (n->state != NODE_DEAD && now - n->last_seen_ns > limit)
            node_lost(cl, n, "no heartbeat within the node timeout");
    }
    dsc_kvmove_tick(cl, now);
    dsc_cluster_drain_hold_tick(cl);
    /* Requests never wait forever: a cluster that cannot serve again in time fails them. */
    uint64_t stall = (uint64_t)cl->opts.stall_timeout_ms * 1000000ULL;
    now = dsc_now_ns(); /* a re-plan above may have just started the wait */
    if (cl->planned && !cl->ready && !cl->shut_down && !dsi_list_is_empty(&cl->seqs) &&
        now > cl->unready_since_ns + stall) {
        dsc_seq_fail_all(cl, "the cluster could not serve again within the stall timeout");
        cl->unready_since_ns = now;
    }
}

dsi_status_t dsc_cluster_create(uv_loop_t *loop, const dsn_config_t *cfg,
                                const dsc_cluster_opts_t *opts, dsc_cluster_t **out)
{
    if (opts->expect_nodes < 1 || opts->expect_nodes > DSC_MAX_NODES) {
        DSI_ERROR("expected node count %u not in 1..%d", opts->expect_nodes, DSC_MAX_NODES);
        return DSI_ERR_INVALID_ARG;
    }
    dsc_cluster_t *cl = calloc(1, sizeof(*cl));
    if (cl == NULL)
        return DSI_ERR_NOMEM;
    dsi_list_init(&cl->seqs);
    cl->prefix_route = dsc_prefix_route_create(DSC_PREFIX_ROUTE_ENTRIES);
    if (cl->prefix_route == NULL) {
        free(cl);
        return DSI_ERR_NOMEM;
    }
    cl->loop = loop;
    cl->cfg = *cfg;
    cl->opts = *opts;
    /* Nodes keep the stored format unless told to re-quantize: a bf16 checkpoint (the V2 family)
     * takes bf16's memory, not fp8's (an fp8 re-quantization would only overestimate). */
    if (!cfg->fp8 && cl->opts.plan.format == DSC_WEIGHT_FP8)
        cl->opts.plan.format = DSC_WEIGHT_BF16;
    dst_ctrl_opts_t co;
    dst_ctrl_opts_default(&co);
    dst_ctrl_cb_t cb = {on_open, on_msg, on_close, cl};
    dsi_status_t st = dst_ctrl_listen(loop, opts->listen, &co, &cb, &cl->listener);
    if (st != DSI_OK) {
        dsc_prefix_route_destroy(cl->prefix_route);
        free(cl);
        return st;
    }
    st = dsc_cluster_load_init(cl);
    if (st != DSI_OK) {
        dst_ctrl_listener_close(cl->listener);
        free(cl);
        return st;
    }
    uv_timer_init(loop, &cl->timer);
    cl->timer.data = cl;
    cl->timer_open = 1;
    uint32_t every = opts->node_timeout_ms / 4 > 10 ? opts->node_timeout_ms / 4 : 10;
    uv_timer_start(&cl->timer, on_timer, every, every);
    cl->unready_since_ns = dsc_now_ns();
    DSI_INFO("coordinator listening on port %u for %u nodes", dst_ctrl_listener_port(cl->listener),
             opts->expect_nodes);
    *out = cl;
    return DSI_OK;
}

void dsc_cluster_shutdown(dsc_cluster_t *cl, const char *reason)
{
    dst_msg_t m = {.type = DST_MSG_SHUTDOWN};
    snprintf(m.shutdown.reason, sizeof(m.shutdown.reason), "%s", reason ? reason : "");
    for (uint32_t i = 0; i < cl->n_nodes; i++) {
        if (cl->nodes[i].cs != NULL)
            dsc_cluster_send(cl->nodes[i].cs->conn, &m);
    }
    cl->ready = 0;
    cl->shut_down = 1;
}

static void timer_closed(uv_handle_t *h)
{
    dsc_cluster_t *cl = h->data;
    cl->timer_open = 0;
    maybe_free(cl);
}

void dsc_cluster_destroy(dsc_cluster_t *cl)
{
    if (cl == NULL)
        return;
    if (!cl->shut_down)
        dsc_cluster_shutdown(cl, "coordinator exiting");
    dsc_seq_free_all(cl);
    for (uint32_t i = 0; i < cl->n_nodes; i++)
        free(cl->nodes[i].ucx_addr);
    dst_ctrl_listener_close(cl->listener);
    dsc_plan_cleanup(&cl->plan);
    dsc_plan_cleanup(&cl->held_plan);
    dsc_switch_abort(cl);
    free(cl->lane_nodes);
    dsc_prefix_route_destroy(cl->prefix_route);
    cl->prefix_route = NULL;
    dsc_cluster_load_close(cl);
    cl->destroyed = 1;
    uv_close((uv_handle_t *)&cl->timer, timer_closed);
}

uint16_t dsc_cluster_port(const dsc_cluster_t *cl)
{
    return dst_ctrl_listener_port(cl->listener);
}

int dsc_cluster_ready(const dsc_cluster_t *cl)
{
    return cl->ready;
}

void dsc_cluster_on_admit(dsc_cluster_t *cl, dsc_cluster_admit_cb cb, void *arg)
{
    cl->admit_cb = cb;
    cl->admit_arg = arg;
}

uint32_t dsc_cluster_client_sequences(const dsc_cluster_t *cl)
{
    uint32_t n = 0;
    dsi_list_for_each(s, &cl->seqs, const seq_t, link)
        n += s->client != NULL;
    return n;
}

void dsc_cluster_on_state(dsc_cluster_t *cl, void (*cb)(void *arg, dsi_status_t st), void *arg)
{
    cl->state_cb = cb;
    cl->state_arg = arg;
}

uint32_t dsc_cluster_node_slots(const dsc_cluster_t *cl)
{
    return cl->n_nodes;
}

int dsc_cluster_node_kv(const dsc_cluster_t *cl, uint32_t i, dsc_cluster_node_kv_t *out)
{
    if (i >= cl->n_nodes || cl->nodes[i].state == NODE_DEAD)
        return 0;
    const node_t *n = &cl->nodes[i];
    *out = (dsc_cluster_node_kv_t){n->name,      n->kv_used,       n->kv_total,  n->preemptions,
                                   n->kv_cached, n->prompt_tokens, n->hit_tokens};
    return 1;
}

void dsc_cluster_stats(const dsc_cluster_t *cl, dsc_cluster_stats_t *out)
{
    *out = cl->stats;
    out->nodes_ready = 0;
    for (uint32_t i = 0; i < cl->n_nodes; i++)
        out->nodes_ready += cl->nodes[i].state == NODE_READY;
}
