/* cli_coordinator.c - a coordinator daemon's life: the cluster, the API with --listen, signals. */
#include <signal.h>
#include <stdio.h>

#include "cli_settings.h"
#include "dsi_log.h"

typedef struct {
    uv_signal_t sigint, sigterm;
    dsc_cluster_t *cluster;
    cli_api_t api; /* with --listen */
    uv_loop_t *loop;
    int stopping;
} coord_t;

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* The API is closed (its generations cancelled): then the backend and the cluster go. */
static void on_api_closed(void *arg)
{
    coord_t *c = arg;
    c->api.api = NULL;
    dsc_backend_destroy(c->api.backend);
    c->api.backend = NULL;
    dsc_cluster_shutdown(c->cluster, "coordinator stopping");
    uv_stop(c->loop);
}

static void on_signal(uv_signal_t *sig, int signum)
{
    coord_t *c = sig->data;
    if (c->stopping)
        return;
    c->stopping = 1;
    DSI_INFO("signal %d: shutting the cluster down", signum);
    if (c->api.api != NULL) {
        dsc_backend_stop(c->api.backend);
        dsc_api_server_destroy(c->api.api, on_api_closed, c);
        return;
    }
    dsc_cluster_shutdown(c->cluster, "coordinator stopping");
    uv_stop(c->loop);
}

static void on_state(void *arg, dsi_status_t st)
{
    coord_t *c = arg;
    if (st == DSI_OK) {
        DSI_INFO("cluster ready");
        return;
    }
    dsc_cluster_condition_t cond;
    dsc_cluster_condition(c->cluster, &cond);
    DSI_ERROR("cluster not serving (%s): %s", dsi_status_message(st), cond.message);
}

int cli_coordinator_run(const dsi_settings_t *s, const dsn_config_t *cfg, dsc_cluster_opts_t *o,
                        long long max_context, int (*bound)(void *arg, dsc_cluster_t *cluster),
                        void *arg)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    coord_t c = {.loop = &loop};
    int rc = 1;
    if (dsc_cluster_create(&loop, cfg, o, &c.cluster) != DSI_OK)
        goto out;
    if (dsi_settings_given(s, DSI_S_LISTEN)) {
        rc = cli_api_start(&loop, s, cfg, max_context, c.cluster, on_state, &c, &c.api);
        if (rc != 0)
            goto out;
    } else {
        dsc_cluster_on_state(c.cluster, on_state, &c);
    }
    if (bound != NULL && (rc = bound(arg, c.cluster)) != 0)
        goto out;
    uv_signal_init(&loop, &c.sigint);
    uv_signal_init(&loop, &c.sigterm);
    c.sigint.data = c.sigterm.data = &c;
    uv_signal_start(&c.sigint, on_signal, SIGINT);
    uv_signal_start(&c.sigterm, on_signal, SIGTERM);
    uv_run(&loop, UV_RUN_DEFAULT);
    rc = 0;
out:
    if (rc != 0 && c.api.api != NULL) {
        dsc_api_server_destroy(c.api.api, NULL, NULL);
        c.api.api = NULL;
    }
    if (rc != 0 && c.cluster != NULL)
        dsc_cluster_shutdown(c.cluster, "coordinator failed to start");
    /* Let the SHUTDOWN frames reach the nodes before the connections close. */
    for (int i = 0; i < 50; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    dsc_backend_destroy(c.api.backend);
    c.api.backend = NULL;
    dsc_cluster_destroy(c.cluster);
    uv_walk(&loop, close_walk, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    cli_api_free(&c.api);
    return rc;
}
