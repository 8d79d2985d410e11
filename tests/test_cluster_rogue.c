/*
 * Garbage on the data plane of running node daemons (issue 4): a rogue process that knows the
 * shared secret joins a serving 2-node cluster, so the coordinator re-plans with it and the real
 * nodes connect their UCX endpoints to it; it then sends them well-framed but wrong ACTIVATION,
 * DISPATCH and COMBINE messages (a layer outside their slice, a wrong width, an expert nobody
 * holds, a reply to no request, an activation for no sequence) and leaves. The nodes must log and
 * reject every one, the coordinator re-plans over the real nodes, and requests before and after
 * get exactly the single-process engine's tokens; the nodes exit cleanly at the end.
 *
 * The join is a live switch (docs/ELASTICITY.md) that the rogue never completes (no READY): a
 * request made meanwhile is served by the current plan, and the rogue's departure abandons the
 * switch for a restart over the real nodes. Before that, the rogue claims SWITCHED for an epoch
 * never sent and for another node: both are refused with ERROR, and nothing switches.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli_cluster.h"
#include "dsi_test.h"
#include "dsi_test_cluster.h"
#include "dsi_test_coord.h"
#include "dsi_test_engine.h"
#include "dsn_checkpoint.h"
#include "dsn_engine.h"
#include "dsn_sampler.h"
#include "dst_ctrl.h"
#include "dst_ucx.h"

#define STEPS 16

static const char *model;
static const int32_t prompt[] = {11, 22, 33, 44};
static int32_t want[STEPS];

/* The tokens of one request, collected by its callback. */
typedef struct {
    int32_t got[STEPS];
    uint32_t n;
    int done, failed;
} stream_t;

typedef struct {
    dsi_test_coord_t c;
    dst_secret_t secret;
    stream_t req; /* the request in flight */
    /* the rogue */
    dst_ctrl_conn_t *rogue;
    dst_ucx_t *ucx;
    uint32_t rogue_id;
    uint64_t epoch;
    uv_timer_t leave;
    int garbage_sent;
    stream_t mid; /* the request made while the live switch waits for the rogue */
    int refusals; /* ERROR replies to the rogue's false SWITCHED claims */
} test_t;

static void reference(void)
{
    const int32_t *p = prompt;
    const uint32_t len = 4;
    dsi_test_greedy(model, 1, &p, &len, STEPS, want, NULL);
}

/* Adds tokens to s; returns 1 when the request has finished. */
static int collect(stream_t *s, const int32_t *tokens, uint32_t n, dst_finish_t finish)
{
    for (uint32_t i = 0; i < n && s->n < STEPS; i++)
        s->got[s->n++] = tokens[i];
    if (finish == DST_FINISH_NONE)
        return 0;
    s->failed += finish != DST_FINISH_LENGTH;
    s->done = 1;
    return 1;
}

static void on_tokens(void *ctx, const int32_t *tokens, uint32_t n, dst_finish_t finish)
{
    test_t *t = ctx;
    if (collect(&t->req, tokens, n, finish))
        uv_stop(&t->c.loop);
}

static void on_mid_tokens(void *ctx, const int32_t *tokens, uint32_t n, dst_finish_t finish)
{
    test_t *t = ctx;
    collect(&t->mid, tokens, n, finish);
}

static void request(test_t *t, const char *when)
{
    uint64_t id;
    t->req = (stream_t){0};
    dsc_cluster_req_t req = {prompt, 4, STEPS, 0.0f, 1.0f, 0, 0, NULL};
    DSI_CHECK_INT_EQ(dsc_cluster_submit(t->c.cl, &req, on_tokens, t, &id), DSI_OK);
    uv_run(&t->c.loop, UV_RUN_DEFAULT);
    DSI_CHECK(t->req.done);
    DSI_CHECK_INT_EQ(t->req.failed, 0);
    int same = t->req.n == STEPS && memcmp(t->req.got, want, sizeof(want)) == 0;
    if (!same)
        fprintf(stderr, "request %s the rogue: tokens differ from the single-process engine\n",
                when);
    DSI_CHECK(same);
}

/* ---- the rogue ---- */

static void free_cb(dst_ucx_t *ucx, dsi_status_t st, void *arg)
{
    (void)ucx;
    (void)st;
    free(arg);
}

static void send_owned(test_t *t, uint32_t peer, dst_wire_hdr_t hdr, const dst_wire_pair_t *pairs,
                       const dst_wire_token_t *toks)
{
    hdr.epoch = t->epoch;
    size_t bytes = dst_wire_payload_bytes(&hdr);
    uint8_t *p = NULL;
    if (posix_memalign((void **)&p, 64, bytes) != 0)
        return;
    memset(p, 0, bytes);
    if (pairs != NULL)
        memcpy(p + dst_wire_side_offset(&hdr), pairs, hdr.n_pairs * sizeof(*pairs));
    if (toks != NULL)
        memcpy(p + dst_wire_side_offset(&hdr), toks, hdr.n_rows * sizeof(*toks));
    if (dst_ucx_send(t->ucx, peer, &hdr, p, bytes, free_cb, p) == DSI_OK)
        t->garbage_sent++;
    else
        free(p);
}

static void send_garbage(test_t *t, uint32_t peer)
{
    dst_wire_pair_t pair = {0, 0, 5, 1.0f};
    dst_wire_pair_t bad_expert = {0, 0, 9999, 1.0f};
    dst_wire_token_t tok = {123456789, 0, 0, 0, 0};
    /* DISPATCH for a layer outside every slice. */
    send_owned(t, peer,
               (dst_wire_hdr_t){DST_WIRE_DISPATCH, DST_WIRE_F32, 0, 0, 1, 0, 999, 1, 256, 1}, &pair,
               NULL);
    /* DISPATCH of the wrong width. */
    send_owned(t, peer, (dst_wire_hdr_t){DST_WIRE_DISPATCH, DST_WIRE_F32, 0, 0, 2, 0, 1, 1, 8, 1},
               &pair, NULL);
    /* DISPATCH naming an expert that does not exist. */
    send_owned(t, peer, (dst_wire_hdr_t){DST_WIRE_DISPATCH, DST_WIRE_F32, 0, 0, 3, 0, 1, 1, 256, 1},
               &bad_expert, NULL);
    /* COMBINE answering no DISPATCH. */
    send_owned(t, peer,
               (dst_wire_hdr_t){DST_WIRE_COMBINE, DST_WIRE_F32, 0, 0, 777, 0, 1, 1, 256, 0}, NULL,
               NULL);
    /* ACTIVATION for a sequence nobody submitted, and one for a layer that is nobody's start. */
    send_owned(t, peer,
               (dst_wire_hdr_t){DST_WIRE_ACTIVATION, DST_WIRE_F32, 0, 0, 4, 0, 0, 1, 256, 0}, NULL,
               &tok);
    send_owned(t, peer,
               (dst_wire_hdr_t){DST_WIRE_ACTIVATION, DST_WIRE_F32, 0, 0, 5, 0, 555, 1, 256, 0},
               NULL, &tok);
}

static void on_leave(uv_timer_t *timer)
{
    test_t *t = timer->data;
    if (!t->mid.done) {
        uv_timer_start(&t->leave, on_leave, 100, 0); /* the request must finish first */
        return;
    }
    fprintf(stderr, "rogue: sent %d bad messages, leaving\n", t->garbage_sent);
    dst_ctrl_conn_close(t->rogue);
}

static void rogue_msg(dst_ctrl_conn_t *conn, dst_msg_t *msg, void *arg)
{
    test_t *t = arg;
    if (msg->type == DST_MSG_HELLO) {
        const void *addr;
        size_t len;
        dst_ucx_address(t->ucx, &addr, &len);
        dst_msg_t m = {.type = DST_MSG_REGISTER};
        snprintf(m.reg.name, sizeof(m.reg.name), "rogue");
        m.reg.mem_budget = 16ULL << 30;
        m.reg.cores = 1;
        m.reg.ucx_addr = (uint8_t *)addr;
        m.reg.ucx_addr_len = len;
        dst_secret_register_auth(&t->secret, msg->hello.nonce, "rogue", m.reg.auth);
        dst_ctrl_send(conn, &m);
    } else if (msg->type == DST_MSG_WELCOME) {
        t->rogue_id = msg->welcome.node_id;
        dst_ucx_set_self_id(t->ucx, t->rogue_id);
        /* False claims: an epoch the coordinator never sent, then another node's SWITCHED. */
        dst_msg_t m = {.type = DST_MSG_SWITCHED};
        m.sw = (dst_msg_switch_t){t->rogue_id, 999};
        dst_ctrl_send(conn, &m);
        m.sw = (dst_msg_switch_t){0, 1};
        dst_ctrl_send(conn, &m);
    } else if (msg->type == DST_MSG_ERROR && msg->error.ref_type == DST_MSG_SWITCHED) {
        t->refusals++;
    } else if (msg->type == DST_MSG_PLAN) {
        t->epoch = msg->plan.plan.epoch;
    } else if (msg->type == DST_MSG_PEERS && !t->garbage_sent) {
        dst_ucx_set_epoch(t->ucx, msg->peers.epoch);
        for (uint32_t i = 0; i < msg->peers.n_peers; i++) {
            const dst_msg_peer_t *p = &msg->peers.peers[i];
            if (p->node_id != t->rogue_id)
                dst_ucx_connect(t->ucx, p->node_id, p->ucx_addr, p->ucx_addr_len);
        }
        for (uint32_t i = 0; i < msg->peers.n_peers; i++) {
            if (msg->peers.peers[i].node_id != t->rogue_id)
                send_garbage(t, msg->peers.peers[i].node_id);
        }
        /* The cluster serves on while the switch waits for the rogue's READY. */
        uint64_t id;
        dsc_cluster_req_t req = {prompt, 4, STEPS, 0.0f, 1.0f, 0, 0, NULL};
        DSI_CHECK_INT_EQ(dsc_cluster_submit(t->c.cl, &req, on_mid_tokens, t, &id), DSI_OK);
        /* Give the nodes time to process it, then leave without ever answering READY. */
        uv_timer_start(&t->leave, on_leave, 500, 0);
    }
}

static void rogue_close(dst_ctrl_conn_t *conn, dsi_status_t why, void *arg)
{
    (void)conn;
    (void)why;
    test_t *t = arg;
    t->rogue = NULL;
}

static void on_state(void *arg, dsi_status_t st)
{
    test_t *t = arg;
    if (st == DSI_OK && t->rogue == NULL && t->garbage_sent)
        uv_stop(&t->c.loop); /* serving again without the rogue */
}

static void ignore_msg(dst_ucx_t *ucx, uint32_t peer, const dst_wire_hdr_t *hdr,
                       const void *payload, size_t bytes, void *user)
{
    (void)ucx, (void)peer, (void)hdr, (void)payload, (void)bytes, (void)user;
}

int main(void)
{
    model = dsi_test_fixture("tiny-v3");
    cli_local_secret();
    reference();
    /* The nodes' logs (inherited stderr) go to a file we read at the end. */
    char log_path[] = "/tmp/dsinfer-rogue-XXXXXX";
    int log_fd = mkstemp(log_path), saved_err = dup(2);
    dup2(log_fd, 2);

    test_t *t = calloc(1, sizeof(*t));
    dsn_config_t cfg;
    dsc_cluster_opts_t co;
    dsi_test_coordinator_opts(model, 2, 1, &cfg, &co);
    t->secret = co.secret;
    dsi_test_coord_start(&t->c, &cfg, &co);
    dsc_cluster_on_state(t->c.cl, on_state, t);
    DSI_CHECK_INT_EQ(dsi_test_coord_spawn(&t->c, 2, model, NULL), 0);

    request(t, "before");

    dst_ucx_config_t uc;
    dst_ucx_config_default(&uc);
    uc.max_peers = 64;
    uc.on_message = ignore_msg;
    DSI_CHECK_INT_EQ(dst_ucx_create(&t->c.loop, &uc, &t->ucx), DSI_OK);
    uv_timer_init(&t->c.loop, &t->leave);
    t->leave.data = t;
    dst_ctrl_opts_t ctl;
    dst_ctrl_opts_default(&ctl);
    dst_ctrl_cb_t cb = {NULL, rogue_msg, rogue_close, t};
    DSI_CHECK_INT_EQ(dst_ctrl_connect(&t->c.loop, t->c.addr, &ctl, &cb, &t->rogue), DSI_OK);
    uv_run(&t->c.loop, UV_RUN_DEFAULT); /* until the cluster serves again without the rogue */
    DSI_CHECK_INT_EQ(t->garbage_sent, 12);
    DSI_CHECK_INT_EQ(t->refusals, 2);
    DSI_CHECK_INT_EQ(t->mid.failed, 0);
    DSI_CHECK(t->mid.n == STEPS && memcmp(t->mid.got, want, sizeof(want)) == 0);
    dsc_cluster_stats_t st;
    dsc_cluster_stats(t->c.cl, &st);
    DSI_CHECK_INT_EQ(st.replans, 2);       /* the join (live), then the loss (restart) */
    DSI_CHECK_INT_EQ(st.live_switches, 0); /* the live switch never completed */

    request(t, "after");

    dsc_cluster_shutdown(t->c.cl, "test done");
    dsi_test_coord_settle(&t->c);
    dst_ucx_destroy(t->ucx);
    DSI_CHECK_INT_EQ(dsi_test_coord_close(&t->c), 0);
    free(t);

    /* Every kind of bad message was logged by a node. */
    fflush(stderr);
    dup2(saved_err, 2);
    FILE *f = fopen(log_path, "r");
    char line[1024];
    int dispatch_slice = 0, expert = 0, combine = 0, activation = 0;
    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        fputs(line, stderr);
        dispatch_slice += strstr(line, "does not fit this node's slice") != NULL;
        expert += strstr(line, "is not held here") != NULL;
        combine += strstr(line, "COMBINE from node") != NULL;
        activation += strstr(line, "ACTIVATION from node") != NULL;
    }
    if (f != NULL)
        fclose(f);
    unlink(log_path);
    DSI_CHECK(dispatch_slice >= 2);
    DSI_CHECK(expert >= 1);
    DSI_CHECK(combine >= 1);
    DSI_CHECK(activation >= 1);
    return dsi_test_finish();
}
