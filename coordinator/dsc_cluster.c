#include "dsc_cluster.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dsi_log.h"
#include "dst_ctrl.h"

#define MAX_NODES 1024

typedef enum { PEER_UNKNOWN = 0, PEER_NODE, PEER_CLIENT } peer_kind_t;

/* What the coordinator knows of one control connection. */
typedef struct conn_state {
    dsc_cluster_t *cl;
    dst_ctrl_conn_t *conn;
    peer_kind_t kind;
    int node; /* index into nodes when kind == PEER_NODE */
    uint8_t nonce[DST_MSG_NONCE_LEN];
} conn_state_t;

typedef enum { NODE_JOINED = 0, NODE_READY, NODE_DEAD } node_state_t;

typedef struct {
    uint32_t id;
    char name[DST_MSG_NAME_MAX];
    uint64_t mem_budget;
    uint32_t cores;
    uint8_t *ucx_addr;
    size_t ucx_addr_len;
    node_state_t state;
    conn_state_t *cs;
    uint64_t last_seen_ns;
} node_t;

/* A sequence in flight. */
typedef struct seq {
    struct seq *next;
    uint64_t id;
    uint32_t route[DST_MSG_MAX_STAGES];
    uint32_t n_route;
    int submitted; /* SUBMIT went to the lane's nodes */
    dsc_cluster_token_cb cb;
    void *ctx;
    conn_state_t *client; /* remote client that sent SUBMIT, or NULL */
    uint64_t client_seq;  /* the client's id for it */
    /* the request, kept until the cluster is ready */
    int32_t *prompt;
    dst_msg_submit_t req;
} seq_t;

struct dsc_cluster {
    uv_loop_t *loop;
    dsn_config_t cfg;
    dsc_cluster_opts_t opts;
    dst_ctrl_listener_t *listener;
    uv_timer_t timer;
    node_t nodes[MAX_NODES];
    uint32_t n_nodes;
    dst_plan_t plan;
    int planned, ready, failed;
    int shut_down; /* SHUTDOWN sent: nodes leaving is expected */
    uint32_t n_lanes, next_lane;
    uint32_t *lane_nodes; /* [n_stages][n_lanes] node id of stage s in lane l */
    seq_t *seqs;
    uint64_t next_seq;
    void (*state_cb)(void *arg, dsi_status_t st);
    void *state_arg;
    dsc_cluster_stats_t stats;
    /* Teardown: the struct is freed once destroyed, its timer closed and no connection left. */
    int destroyed, timer_open;
    uint32_t open_conns;
};

static void maybe_free(dsc_cluster_t *cl)
{
    if (cl->destroyed && !cl->timer_open && cl->open_conns == 0)
        free(cl);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

void dsc_cluster_opts_default(dsc_cluster_opts_t *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->listen = "127.0.0.1:0";
    opts->expect_nodes = 1;
    opts->heartbeat_ms = 500;
    opts->node_timeout_ms = 2000;
    dsc_plan_opts_default(&opts->plan);
}

static void set_state(dsc_cluster_t *cl, dsi_status_t st)
{
    if (cl->state_cb != NULL)
        cl->state_cb(cl->state_arg, st);
}

static void send_to(dst_ctrl_conn_t *conn, const dst_msg_t *m)
{
    if (conn == NULL)
        return;
    dsi_status_t st = dst_ctrl_send(conn, m);
    if (st != DSI_OK)
        DSI_ERROR("cannot send %s to %s: %s", dst_msg_type_name(m->type), dst_ctrl_conn_peer(conn),
                  dsi_status_message(st));
}

static node_t *node_by_id(dsc_cluster_t *cl, uint32_t id)
{
    for (uint32_t i = 0; i < cl->n_nodes; i++) {
        if (cl->nodes[i].id == id)
            return &cl->nodes[i];
    }
    return NULL;
}

static void send_to_node(dsc_cluster_t *cl, uint32_t id, const dst_msg_t *m)
{
    node_t *n = node_by_id(cl, id);
    if (n != NULL && n->state != NODE_DEAD && n->cs != NULL)
        send_to(n->cs->conn, m);
}

/* ---- sequences ---- */

static seq_t *seq_find(dsc_cluster_t *cl, uint64_t id, seq_t ***link)
{
    for (seq_t **p = &cl->seqs; *p != NULL; p = &(*p)->next) {
        if ((*p)->id == id) {
            if (link != NULL)
                *link = p;
            return *p;
        }
    }
    return NULL;
}

/* Tell every node of the lane to forget the sequence, and free it. */
static void seq_end(dsc_cluster_t *cl, uint64_t id)
{
    seq_t **link;
    seq_t *s = seq_find(cl, id, &link);
    if (s == NULL)
        return;
    if (s->submitted) {
        dst_msg_t m = {.type = DST_MSG_CANCEL};
        m.cancel.seq_id = s->id;
        for (uint32_t i = 0; i < s->n_route; i++) {
            if (i == 0 || s->route[i] != s->route[i - 1])
                send_to_node(cl, s->route[i], &m);
        }
    }
    *link = s->next;
    free(s->prompt);
    free(s);
    cl->stats.sequences_active--;
    cl->stats.sequences_done++;
}

/* Deliver tokens to the sequence's owner. */
static void seq_deliver(dsc_cluster_t *cl, seq_t *s, const int32_t *tokens, uint32_t n,
                        dst_finish_t finish)
{
    if (s->client != NULL) {
        dst_msg_t m = {.type = DST_MSG_TOKENS};
        m.tokens.seq_id = s->client_seq;
        m.tokens.tokens = (int32_t *)tokens;
        m.tokens.n_tokens = n;
        m.tokens.finish = (uint8_t)finish;
        send_to(s->client->conn, &m);
    } else if (s->cb != NULL) {
        s->cb(s->ctx, tokens, n, finish);
    }
    (void)cl;
}

static void seq_send_submit(dsc_cluster_t *cl, seq_t *s)
{
    uint32_t lane = cl->next_lane++ % cl->n_lanes;
    s->n_route = cl->plan.n_stages;
    for (uint32_t st = 0; st < s->n_route; st++)
        s->route[st] = cl->lane_nodes[st * cl->n_lanes + lane];
    dst_msg_t m = {.type = DST_MSG_SUBMIT};
    m.submit = s->req;
    m.submit.seq_id = s->id;
    m.submit.tokens = s->prompt;
    m.submit.route = s->route;
    m.submit.n_route = s->n_route;
    for (uint32_t i = 0; i < s->n_route; i++) {
        int dup = 0;
        for (uint32_t j = 0; j < i; j++)
            dup |= s->route[j] == s->route[i];
        if (!dup)
            send_to_node(cl, s->route[i], &m);
    }
    s->submitted = 1;
    DSI_DEBUG("sequence %llu: %u prompt tokens, lane %u", (unsigned long long)s->id,
              s->req.n_tokens, lane);
}

static dsi_status_t seq_create(dsc_cluster_t *cl, const dsc_cluster_req_t *req, seq_t **out)
{
    if (req->n_prompt == 0 || req->n_prompt > DST_MSG_MAX_TOKENS || req->max_tokens == 0) {
        DSI_ERROR("request with %u prompt tokens and max_tokens %u refused", req->n_prompt,
                  req->max_tokens);
        return DSI_ERR_INVALID_ARG;
    }
    for (uint32_t i = 0; i < req->n_prompt; i++) {
        if (req->prompt[i] < 0 || req->prompt[i] >= cl->cfg.vocab_size) {
            DSI_ERROR("prompt token %d outside the vocabulary [0, %d)", req->prompt[i],
                      cl->cfg.vocab_size);
            return DSI_ERR_INVALID_ARG;
        }
    }
    if (cl->failed)
        return DSI_ERR_UNSUPPORTED;
    seq_t *s = calloc(1, sizeof(*s));
    if (s == NULL || (s->prompt = malloc(req->n_prompt * sizeof(int32_t))) == NULL) {
        free(s);
        return DSI_ERR_NOMEM;
    }
    memcpy(s->prompt, req->prompt, req->n_prompt * sizeof(int32_t));
    s->id = ++cl->next_seq;
    s->req.n_tokens = req->n_prompt;
    s->req.max_tokens = req->max_tokens;
    s->req.temperature = req->temperature;
    s->req.top_p = req->top_p;
    s->req.top_k = req->top_k;
    s->req.seed = req->seed;
    s->next = cl->seqs;
    cl->seqs = s;
    cl->stats.sequences_active++;
    if (cl->ready)
        seq_send_submit(cl, s);
    *out = s;
    return DSI_OK;
}

dsi_status_t dsc_cluster_submit(dsc_cluster_t *cl, const dsc_cluster_req_t *req,
                                dsc_cluster_token_cb cb, void *ctx, uint64_t *seq_id)
{
    seq_t *s;
    dsi_status_t st = seq_create(cl, req, &s);
    if (st != DSI_OK)
        return st;
    s->cb = cb;
    s->ctx = ctx;
    *seq_id = s->id;
    return DSI_OK;
}

void dsc_cluster_cancel(dsc_cluster_t *cl, uint64_t seq_id)
{
    seq_end(cl, seq_id);
}

/* Every open sequence ends with an error (a node was lost: issue 7 re-plans instead). */
static void fail_all(dsc_cluster_t *cl, const char *why)
{
    while (cl->seqs != NULL) {
        seq_t *s = cl->seqs;
        DSI_ERROR("sequence %llu failed: %s", (unsigned long long)s->id, why);
        seq_deliver(cl, s, NULL, 0, DST_FINISH_ERROR);
        seq_end(cl, s->id);
    }
}

/* ---- planning ---- */

static dsi_status_t build_lanes(dsc_cluster_t *cl)
{
    const dst_plan_t *p = &cl->plan;
    uint32_t lanes = 0;
    for (uint32_t s = 0; s < p->n_stages; s++) {
        uint32_t k = 0;
        for (uint32_t i = 0; i < p->n_nodes; i++)
            k += p->nodes[i].stage == s;
        lanes = k > lanes ? k : lanes;
    }
    cl->n_lanes = lanes;
    cl->lane_nodes = calloc((size_t)p->n_stages * lanes, sizeof(uint32_t));
    if (cl->lane_nodes == NULL)
        return DSI_ERR_NOMEM;
    for (uint32_t s = 0; s < p->n_stages; s++) {
        uint32_t ids[MAX_NODES], k = 0;
        for (uint32_t i = 0; i < p->n_nodes; i++) {
            if (p->nodes[i].stage == s)
                ids[k++] = p->nodes[i].node_id;
        }
        for (uint32_t l = 0; l < lanes; l++)
            cl->lane_nodes[s * lanes + l] = ids[l % k];
    }
    return DSI_OK;
}

static void make_plan(dsc_cluster_t *cl)
{
    dsc_node_desc_t descs[MAX_NODES];
    for (uint32_t i = 0; i < cl->n_nodes; i++)
        descs[i] = (dsc_node_desc_t){cl->nodes[i].id, cl->nodes[i].mem_budget, cl->nodes[i].cores};
    dsc_plan_opts_t po = cl->opts.plan;
    po.epoch = 1;
    dsc_plan_report_t report;
    dsi_status_t st = dsc_planner_plan(&cl->cfg, descs, cl->n_nodes, &po, &cl->plan, &report);
    if (st == DSI_OK)
        st = build_lanes(cl);
    if (st != DSI_OK) {
        DSI_ERROR("cannot plan the model over %u nodes: %s", cl->n_nodes,
                  report.reason[0] ? report.reason : dsi_status_message(st));
        cl->failed = 1;
        fail_all(cl, "the cluster cannot hold the model");
        set_state(cl, st);
        return;
    }
    cl->planned = 1;
    DSI_INFO("plan epoch %llu: %u stages over %u nodes, %u lanes, largest node use %.0f%%",
             (unsigned long long)cl->plan.epoch, cl->plan.n_stages, cl->plan.n_nodes, cl->n_lanes,
             report.max_use * 100);
    dst_msg_t pm = {.type = DST_MSG_PLAN};
    pm.plan.plan = cl->plan;
    dst_msg_peer_t *peers = calloc(cl->n_nodes, sizeof(*peers));
    if (peers == NULL) {
        cl->failed = 1;
        set_state(cl, DSI_ERR_NOMEM);
        return;
    }
    for (uint32_t i = 0; i < cl->n_nodes; i++) {
        peers[i].node_id = cl->nodes[i].id;
        peers[i].ucx_addr = cl->nodes[i].ucx_addr;
        peers[i].ucx_addr_len = cl->nodes[i].ucx_addr_len;
    }
    dst_msg_t pe = {.type = DST_MSG_PEERS};
    pe.peers.epoch = cl->plan.epoch;
    pe.peers.n_peers = cl->n_nodes;
    pe.peers.peers = peers;
    for (uint32_t i = 0; i < cl->n_nodes; i++) {
        send_to(cl->nodes[i].cs->conn, &pm);
        send_to(cl->nodes[i].cs->conn, &pe);
    }
    free(peers);
}

/* ---- control messages ---- */

static void on_register(dsc_cluster_t *cl, conn_state_t *cs, const dst_msg_register_t *r)
{
    dst_ctrl_conn_t *conn = cs->conn;
    if (!dst_secret_register_verify(&cl->opts.secret, cs->nonce, r->name, r->auth)) {
        DSI_ERROR("REGISTER of '%s' from %s: wrong shared-secret proof: refused", r->name,
                  dst_ctrl_conn_peer(conn));
        cl->stats.bad_registrations++;
        dst_ctrl_send_error(conn, DSI_ERR_AUTH, DST_MSG_REGISTER, "authentication failed");
        dst_ctrl_conn_close(conn);
        return;
    }
    if (cs->kind != PEER_UNKNOWN || cl->planned || cl->n_nodes >= cl->opts.expect_nodes) {
        DSI_ERROR("REGISTER of '%s' from %s: the cluster is complete: refused", r->name,
                  dst_ctrl_conn_peer(conn));
        cl->stats.bad_registrations++;
        dst_ctrl_send_error(conn, DSI_ERR_CAPACITY, DST_MSG_REGISTER,
                            "the cluster has all its %u nodes", cl->opts.expect_nodes);
        dst_ctrl_conn_close(conn);
        return;
    }
    for (uint32_t i = 0; i < cl->n_nodes; i++) {
        if (strcmp(cl->nodes[i].name, r->name) == 0) {
            DSI_ERROR("REGISTER from %s: the name '%s' is taken: refused", dst_ctrl_conn_peer(conn),
                      r->name);
            cl->stats.bad_registrations++;
            dst_ctrl_send_error(conn, DSI_ERR_INVALID_ARG, DST_MSG_REGISTER,
                                "node name '%s' is already registered", r->name);
            dst_ctrl_conn_close(conn);
            return;
        }
    }
    node_t *n = &cl->nodes[cl->n_nodes];
    memset(n, 0, sizeof(*n));
    n->ucx_addr = malloc(r->ucx_addr_len);
    if (n->ucx_addr == NULL)
        return;
    memcpy(n->ucx_addr, r->ucx_addr, r->ucx_addr_len);
    n->ucx_addr_len = r->ucx_addr_len;
    n->id = cl->n_nodes;
    snprintf(n->name, sizeof(n->name), "%s", r->name);
    n->mem_budget = r->mem_budget;
    n->cores = r->cores;
    n->cs = cs;
    n->last_seen_ns = now_ns();
    cs->kind = PEER_NODE;
    cs->node = (int)cl->n_nodes;
    cl->n_nodes++;
    cl->stats.nodes_joined++;
    dst_msg_t w = {.type = DST_MSG_WELCOME};
    w.welcome.node_id = n->id;
    w.welcome.heartbeat_ms = cl->opts.heartbeat_ms;
    send_to(conn, &w);
    DSI_INFO("node %u '%s' joined from %s (%.1f GiB, %u cores); %u of %u", n->id, n->name,
             dst_ctrl_conn_peer(conn), (double)n->mem_budget / (1 << 30), n->cores, cl->n_nodes,
             cl->opts.expect_nodes);
    if (cl->n_nodes == cl->opts.expect_nodes)
        make_plan(cl);
}

static void on_ready(dsc_cluster_t *cl, conn_state_t *cs, const dst_msg_ready_t *r)
{
    node_t *n = &cl->nodes[cs->node];
    if (r->node_id != n->id || !cl->planned || r->epoch != cl->plan.epoch) {
        dst_ctrl_send_error(cs->conn, DSI_ERR_PROTOCOL, DST_MSG_READY,
                            "READY for node %u epoch %llu does not match", r->node_id,
                            (unsigned long long)r->epoch);
        return;
    }
    if (n->state == NODE_READY)
        return;
    n->state = NODE_READY;
    cl->stats.nodes_ready++;
    if (cl->stats.nodes_ready < cl->n_nodes)
        return;
    cl->ready = 1;
    DSI_INFO("all %u nodes ready: serving", cl->n_nodes);
    for (seq_t *s = cl->seqs; s != NULL; s = s->next) {
        if (!s->submitted)
            seq_send_submit(cl, s);
    }
    set_state(cl, DSI_OK);
}

/* TOKENS from a node: the last stage's samples, or an error from any stage. */
static void on_tokens(dsc_cluster_t *cl, conn_state_t *cs, const dst_msg_tokens_t *t)
{
    seq_t *s = seq_find(cl, t->seq_id, NULL);
    if (s == NULL)
        return; /* cancelled meanwhile */
    uint32_t from = cl->nodes[cs->node].id;
    if (t->finish == DST_FINISH_NONE && from != s->route[s->n_route - 1]) {
        dst_ctrl_send_error(cs->conn, DSI_ERR_PROTOCOL, DST_MSG_TOKENS,
                            "TOKENS for sequence %llu from a node that is not its last stage",
                            (unsigned long long)t->seq_id);
        return;
    }
    seq_deliver(cl, s, t->tokens, t->n_tokens, (dst_finish_t)t->finish);
    if (t->finish != DST_FINISH_NONE) {
        seq_end(cl, s->id);
        return;
    }
    /* The sampled token goes back to stage 0 when another node runs it. */
    if (s->route[0] != from) {
        dst_msg_t m = {.type = DST_MSG_TOKENS};
        m.tokens = *t;
        send_to_node(cl, s->route[0], &m);
    }
}

/* SUBMIT from a client connection: the tokens go back to it as TOKENS with its id. */
static void on_client_submit(dsc_cluster_t *cl, conn_state_t *cs, const dst_msg_submit_t *m)
{
    if (cs->kind == PEER_NODE) {
        dst_ctrl_send_error(cs->conn, DSI_ERR_PROTOCOL, DST_MSG_SUBMIT, "nodes do not submit");
        return;
    }
    cs->kind = PEER_CLIENT;
    dsc_cluster_req_t req = {m->tokens, m->n_tokens, m->max_tokens, m->temperature,
                             m->top_p,  m->top_k,    m->seed};
    seq_t *s;
    dsi_status_t st = seq_create(cl, &req, &s);
    if (st != DSI_OK) {
        dst_ctrl_send_error(cs->conn, st, DST_MSG_SUBMIT, "request refused: %s",
                            dsi_status_message(st));
        return;
    }
    s->client = cs;
    s->client_seq = m->seq_id;
}

static void on_msg(dst_ctrl_conn_t *conn, dst_msg_t *msg, void *arg)
{
    (void)arg;
    conn_state_t *cs = dst_ctrl_conn_data(conn);
    dsc_cluster_t *cl = cs->cl;
    int is_node = cs->kind == PEER_NODE;
    if (is_node)
        cl->nodes[cs->node].last_seen_ns = now_ns();
    switch (msg->type) {
    case DST_MSG_REGISTER:
        on_register(cl, cs, &msg->reg);
        return;
    case DST_MSG_SUBMIT:
        on_client_submit(cl, cs, &msg->submit);
        return;
    case DST_MSG_CANCEL:
        if (cs->kind == PEER_CLIENT) {
            for (seq_t *s = cl->seqs; s != NULL; s = s->next) {
                if (s->client == cs && s->client_seq == msg->cancel.seq_id) {
                    seq_end(cl, s->id);
                    break;
                }
            }
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
    case DST_MSG_HEARTBEAT: {
        dst_msg_t h = *msg;
        h.arena = NULL;
        send_to(conn, &h);
        break;
    }
    case DST_MSG_TOKENS:
        on_tokens(cl, cs, &msg->tokens);
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

static void node_lost(dsc_cluster_t *cl, node_t *n, const char *why)
{
    if (n->state == NODE_DEAD)
        return;
    if (cl->shut_down)
        DSI_INFO("node %u '%s' left", n->id, n->name);
    else
        DSI_ERROR("node %u '%s' lost: %s", n->id, n->name, why);
    n->state = NODE_DEAD;
    cl->stats.nodes_dead++;
    if (n->cs != NULL) {
        n->cs->kind = PEER_UNKNOWN;
        dst_ctrl_conn_close(n->cs->conn);
        n->cs = NULL;
    }
    if (!cl->failed) {
        cl->failed = 1;
        cl->ready = 0;
        fail_all(cl, "a node of the cluster was lost");
        set_state(cl, DSI_ERR_PEER);
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
    send_to(conn, &h);
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
        for (seq_t *s = cl->seqs, *next; s != NULL; s = next) {
            next = s->next;
            if (s->client == cs)
                seq_end(cl, s->id);
        }
    }
    free(cs);
}

static void on_timer(uv_timer_t *t)
{
    dsc_cluster_t *cl = t->data;
    uint64_t now = now_ns(), limit = (uint64_t)cl->opts.node_timeout_ms * 1000000ULL;
    for (uint32_t i = 0; i < cl->n_nodes; i++) {
        node_t *n = &cl->nodes[i];
        if (n->state != NODE_DEAD && now - n->last_seen_ns > limit)
            node_lost(cl, n, "no heartbeat within the timeout");
    }
}

dsi_status_t dsc_cluster_create(uv_loop_t *loop, const dsn_config_t *cfg,
                                const dsc_cluster_opts_t *opts, dsc_cluster_t **out)
{
    if (opts->expect_nodes < 1 || opts->expect_nodes > MAX_NODES) {
        DSI_ERROR("expected node count %u not in 1..%d", opts->expect_nodes, MAX_NODES);
        return DSI_ERR_INVALID_ARG;
    }
    dsc_cluster_t *cl = calloc(1, sizeof(*cl));
    if (cl == NULL)
        return DSI_ERR_NOMEM;
    cl->loop = loop;
    cl->cfg = *cfg;
    cl->opts = *opts;
    dst_ctrl_opts_t co;
    dst_ctrl_opts_default(&co);
    dst_ctrl_cb_t cb = {on_open, on_msg, on_close, cl};
    dsi_status_t st = dst_ctrl_listen(loop, opts->listen, &co, &cb, &cl->listener);
    if (st != DSI_OK) {
        free(cl);
        return st;
    }
    uv_timer_init(loop, &cl->timer);
    cl->timer.data = cl;
    cl->timer_open = 1;
    uint32_t every = opts->node_timeout_ms / 4 > 10 ? opts->node_timeout_ms / 4 : 10;
    uv_timer_start(&cl->timer, on_timer, every, every);
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
            send_to(cl->nodes[i].cs->conn, &m);
    }
    cl->ready = 0;
    cl->failed = 1;
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
    if (!cl->failed)
        dsc_cluster_shutdown(cl, "coordinator exiting");
    while (cl->seqs != NULL) {
        seq_t *s = cl->seqs;
        cl->seqs = s->next;
        free(s->prompt);
        free(s);
    }
    for (uint32_t i = 0; i < cl->n_nodes; i++)
        free(cl->nodes[i].ucx_addr);
    dst_ctrl_listener_close(cl->listener);
    dsc_plan_cleanup(&cl->plan);
    free(cl->lane_nodes);
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

void dsc_cluster_on_state(dsc_cluster_t *cl, void (*cb)(void *arg, dsi_status_t st), void *arg)
{
    cl->state_cb = cb;
    cl->state_arg = arg;
}

void dsc_cluster_stats(const dsc_cluster_t *cl, dsc_cluster_stats_t *out)
{
    *out = cl->stats;
}
