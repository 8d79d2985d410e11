/* dsi_test_coord.c - see dsi_test_coord.h. */
#include "dsi_test_coord.h"

#include <errno.h>
#include <stdio.h>
#include <sys/wait.h>

#include "cli_cluster.h"
#include "dsi_test.h"
#include "dsi_test_cluster.h"

void dsi_test_coord_start(dsi_test_coord_t *c, const dsn_config_t *cfg,
                          const dsc_cluster_opts_t *co)
{
    uv_loop_init(&c->loop);
    DSI_CHECK_INT_EQ(dsc_cluster_create(&c->loop, cfg, co, &c->cl), DSI_OK);
    snprintf(c->addr, sizeof(c->addr), "127.0.0.1:%u", dsc_cluster_port(c->cl));
}

int dsi_test_coord_spawn(dsi_test_coord_t *c, int n, const char *model,
                         const char *const *node_args)
{
    DSI_CHECK(c->n_pids + n <= DSI_TEST_COORD_MAX_NODES);
    if (c->n_pids + n > DSI_TEST_COORD_MAX_NODES)
        return -1;
    pid_t *pids = &c->pids[c->n_pids];
    int rc = node_args != NULL ? cli_spawn_nodes_argv(n, c->addr, model, node_args, pids)
                               : cli_spawn_nodes(n, c->addr, model, 1, pids);
    if (rc == 0)
        c->n_pids += n;
    return rc;
}

static void on_timer(uv_timer_t *t)
{
    dsi_test_coord_t *c = t->data;
    if (uv_now(&c->loop) - c->started_ms > c->timeout_ms) {
        c->timed_out = 1;
        dsi_test_coord_stop(c, "test timeout");
        return;
    }
    if (c->tick != NULL)
        c->tick(c);
}

int dsi_test_coord_run(dsi_test_coord_t *c, uint64_t period_ms, uint64_t timeout_ms,
                       dsi_test_coord_tick_cb tick)
{
    c->tick = tick;
    c->timeout_ms = timeout_ms;
    c->timed_out = 0;
    uv_timer_init(&c->loop, &c->timer);
    c->timer.data = c;
    uv_timer_start(&c->timer, on_timer, period_ms, period_ms);
    c->started_ms = uv_now(&c->loop);
    uv_run(&c->loop, UV_RUN_DEFAULT);
    return c->timed_out;
}

void dsi_test_coord_stop(dsi_test_coord_t *c, const char *why)
{
    dsc_cluster_shutdown(c->cl, why);
    uv_stop(&c->loop);
}

void dsi_test_coord_settle(dsi_test_coord_t *c)
{
    for (int i = 0; i < 20; i++)
        uv_run(&c->loop, UV_RUN_NOWAIT);
}

int dsi_test_coord_close(dsi_test_coord_t *c)
{
    int unclean = cli_reap_nodes(c->pids, c->n_pids, 20000);
    dsc_cluster_destroy(c->cl);
    dsi_test_loop_close(&c->loop);
    dsi_test_no_children();
    return unclean;
}

void dsi_test_no_children(void)
{
    errno = 0;
    DSI_CHECK(waitpid(-1, NULL, WNOHANG) == -1 && errno == ECHILD);
}
