/*
 * dsinfer-coordinator: the coordinator daemon. Waits for --nodes node daemons, plans, and serves
 * requests from clients of the control protocol (dsinfer run --coordinator ADDR) until SIGINT or
 * SIGTERM, then shuts the nodes down.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_settings.h"
#include "dsi_log.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: dsinfer-coordinator --nodes N (--model DIR | --config FILE) [options]\n"
            "Waits for N node daemons on --control, plans, and serves requests until SIGINT or\n"
            "SIGTERM, then shuts the nodes down. With --listen HOST:PORT (needs --model) it also\n"
            "serves the OpenAI API there (docs/API.md). The shared secret comes from\n"
            "--secret-file or DSINFER_SECRET. Expert load and rebalancing: docs/ELASTICITY.md.\n");
}

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
    (void)arg;
    if (st == DSI_OK)
        DSI_INFO("cluster ready");
    else
        DSI_ERROR("cluster not serving: %s", dsi_status_message(st));
}

int main(int argc, char **argv)
{
    dsi_settings_t s;
    int rc = dsi_settings_parse(&s, DSI_P_COORD, argc, argv, usage);
    if (rc != 0)
        return rc == 1 ? 0 : rc; /* 1: --help */
    dsi_log_set_tag("coordinator");
    const char *model = dsi_settings_str(&s, DSI_S_MODEL);
    const char *config = dsi_settings_str(&s, DSI_S_CONFIG);
    const char *port_file = dsi_settings_str(&s, DSI_S_PORT_FILE);
    int http = dsi_settings_given(&s, DSI_S_LISTEN);
    dsc_cluster_opts_t o;
    dsc_cluster_opts_default(&o);
    o.listen = dsi_settings_str(&s, DSI_S_CONTROL);
    o.expect_nodes = (uint32_t)dsi_settings_int(&s, DSI_S_NODES);
    if (o.expect_nodes == 0 || (model == NULL) == (config == NULL)) {
        fprintf(stderr,
                "dsinfer-coordinator: --nodes and one of --model / --config are required\n");
        usage(stderr);
        return 2;
    }
    if (http && model == NULL) {
        fprintf(stderr, "dsinfer-coordinator: --listen (the API) needs --model (the tokenizer)\n");
        return 2;
    }
    o.model_dir = model; /* the router biases; none with --config alone */
    dsn_config_t cfg;
    long long max_context;
    if ((rc = cli_config_load(model, config, &cfg)) != 0 ||
        (rc = cli_max_context(&s, &cfg, &max_context)) != 0 || (rc = cli_cluster_tune(&s, &o)) != 0)
        return rc;
    o.plan.kv_tokens = (uint64_t)max_context; /* one full-length sequence per node */
    if (dst_secret_load(dsi_settings_str(&s, DSI_S_SECRET_FILE), &o.secret) != DSI_OK)
        return 1;

    uv_loop_t loop;
    uv_loop_init(&loop);
    coord_t c = {.loop = &loop};
    if (dsc_cluster_create(&loop, &cfg, &o, &c.cluster) != DSI_OK)
        return 1;
    if (http) {
        if ((rc = cli_api_start(&loop, &s, &cfg, max_context, c.cluster, on_state, &c, &c.api)) != 0)
            return rc;
    } else {
        dsc_cluster_on_state(c.cluster, on_state, &c);
    }
    if (port_file != NULL) {
        FILE *f = fopen(port_file, "w");
        if (f == NULL || fprintf(f, "%u\n", dsc_cluster_port(c.cluster)) < 0 || fclose(f) != 0) {
            fprintf(stderr, "dsinfer-coordinator: --port-file %s: cannot write\n", port_file);
            return 1;
        }
    }
    uv_signal_init(&loop, &c.sigint);
    uv_signal_init(&loop, &c.sigterm);
    c.sigint.data = c.sigterm.data = &c;
    uv_signal_start(&c.sigint, on_signal, SIGINT);
    uv_signal_start(&c.sigterm, on_signal, SIGTERM);
    uv_run(&loop, UV_RUN_DEFAULT);
    /* Let the SHUTDOWN frames reach the nodes before the connections close. */
    for (int i = 0; i < 50; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    dsc_cluster_destroy(c.cluster);
    uv_walk(&loop, close_walk, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    cli_api_free(&c.api);
    dsi_settings_cleanup(&s);
    return 0;
}
