/*
 * Node ids are recycled: a node that restarts in a loop (systemd restarting a crashing daemon)
 * registers again and again. The coordinator has 1024 node slots; before ids were recycled, the
 * 1025th registration and every one after it were refused. Here a fake node speaking the control
 * protocol registers 2000 times with the shared secret, each time getting its WELCOME (and, as the
 * only node, a PLAN it never loads) and leaving. Then a real node joins, the cluster serves a
 * greedy request and gets the single-process engine's tokens, and the node exits at shutdown.
 */
#include <stdlib.h>
#include <string.h>

#include "cli_cluster.h"
#include "dsi_log.h"
#include "dsi_test.h"
#include "dsi_test_cluster.h"
#include "dsi_test_coord.h"
#include "dsi_test_engine.h"
#include "dst_ctrl.h"

#define CYCLES 2000
#define STEPS  8

static const char *model;
static const int32_t prompt[] = {11, 22, 33, 44};
static int32_t want[STEPS];

typedef struct {
    dsi_test_coord_t c;
    dst_secret_t secret;
    int registered, refused, max_id;
    char refusal[DST_MSG_TEXT_MAX];
    /* the request once the real node serves */
    int32_t got[STEPS];
    uint32_t n;
    int done, failed, ready;
} test_t;

static void fake_connect(test_t *t);

static void fake_msg(dst_ctrl_conn_t *conn, dst_msg_t *msg, void *arg)
{
    test_t *t = arg;
    if (msg->type == DST_MSG_HELLO) {
        static const uint8_t ucx_addr[16] = {1, 2, 3};
        dst_msg_t m = {.type = DST_MSG_REGISTER};
        snprintf(m.reg.name, sizeof(m.reg.name), "crashloop-%d", t->registered + t->refused);
        m.reg.mem_budget = 16ULL << 30;
        m.reg.cores = 1;
        m.reg.ucx_addr = (uint8_t *)ucx_addr;
        m.reg.ucx_addr_len = sizeof(ucx_addr);
        dst_secret_register_auth(&t->secret, msg->hello.nonce, m.reg.name, m.reg.auth);
        dst_ctrl_send(conn, &m);
    } else if (msg->type == DST_MSG_WELCOME) {
        t->registered++;
        if ((int)msg->welcome.node_id > t->max_id)
            t->max_id = (int)msg->welcome.node_id;
        dst_ctrl_conn_close(conn); /* the crash */
    } else if (msg->type == DST_MSG_ERROR) {
        t->refused++;
        snprintf(t->refusal, sizeof(t->refusal), "%s", msg->error.text);
        dst_ctrl_conn_close(conn);
    }
}

static void fake_close(dst_ctrl_conn_t *conn, dsi_status_t why, void *arg)
{
    (void)conn;
    (void)why;
    test_t *t = arg;
    if (t->registered < CYCLES && t->refused < 10)
        fake_connect(t);
    else
        uv_stop(&t->c.loop);
}

static void fake_connect(test_t *t)
{
    dst_ctrl_opts_t opts;
    dst_ctrl_opts_default(&opts);
    dst_ctrl_cb_t cb = {NULL, fake_msg, fake_close, t};
    dst_ctrl_conn_t *conn;
    if (dst_ctrl_connect(&t->c.loop, t->c.addr, &opts, &cb, &conn) != DSI_OK) {
        t->refused = 10;
        uv_stop(&t->c.loop);
    }
}

static void on_state(void *arg, dsi_status_t st)
{
    test_t *t = arg;
    if (st == DSI_OK && t->registered >= CYCLES) {
        t->ready = 1;
        uv_stop(&t->c.loop);
    }
}

static void on_tokens(void *ctx, const int32_t *tokens, uint32_t n, dst_finish_t finish)
{
    test_t *t = ctx;
    for (uint32_t i = 0; i < n && t->n < STEPS; i++)
        t->got[t->n++] = tokens[i];
    if (finish == DST_FINISH_NONE)
        return;
    t->failed = finish != DST_FINISH_LENGTH;
    t->done = 1;
    uv_stop(&t->c.loop);
}

int main(void)
{
    model = dsi_test_fixture("tiny-v3");
    cli_local_secret();
    const int32_t *p = prompt;
    const uint32_t len = 4;
    dsi_test_greedy(model, 1, &p, &len, STEPS, want, NULL);

    test_t *t = calloc(1, sizeof(*t));
    t->max_id = -1;
    dsn_config_t cfg;
    dsc_cluster_opts_t co;
    dsi_test_coordinator_opts(model, 1, 1, &cfg, &co);
    t->secret = co.secret;
    dsi_test_coord_start(&t->c, &cfg, &co);
    dsc_cluster_on_state(t->c.cl, on_state, t);

    dsi_log_set_level(DSI_LOG_LEVEL_WARN); /* 2000 joins and losses */
    fake_connect(t);
    uv_run(&t->c.loop, UV_RUN_DEFAULT);
    dsi_log_set_level(DSI_LOG_LEVEL_INFO);
    if (t->refused > 0)
        fprintf(stderr, "refused after %d registrations: %s\n", t->registered, t->refusal);
    DSI_CHECK_INT_EQ(t->registered, CYCLES);
    DSI_CHECK_INT_EQ(t->refused, 0);
    fprintf(stderr, "%d registrations used node ids 0..%d\n", t->registered, t->max_id);
    DSI_CHECK(t->max_id < 4);
    if (t->registered < CYCLES) {
        dsc_cluster_destroy(t->c.cl); /* a real node would be refused too */
        return dsi_test_finish();
    }

    DSI_CHECK_INT_EQ(dsi_test_coord_spawn(&t->c, 1, model, NULL), 0);
    uv_run(&t->c.loop, UV_RUN_DEFAULT); /* until the real node serves */
    DSI_CHECK(t->ready);
    uint64_t id;
    dsc_cluster_req_t req = {prompt, 4, STEPS, 0.0f, 1.0f, 0, 0, NULL};
    DSI_CHECK_INT_EQ(dsc_cluster_submit(t->c.cl, &req, on_tokens, t, &id), DSI_OK);
    uv_run(&t->c.loop, UV_RUN_DEFAULT);
    DSI_CHECK(t->done);
    DSI_CHECK_INT_EQ(t->failed, 0);
    DSI_CHECK(t->n == STEPS && memcmp(t->got, want, sizeof(want)) == 0);

    dsc_cluster_shutdown(t->c.cl, "test done");
    dsi_test_coord_settle(&t->c);
    DSI_CHECK_INT_EQ(dsi_test_coord_close(&t->c), 0);
    free(t);
    return dsi_test_finish();
}
