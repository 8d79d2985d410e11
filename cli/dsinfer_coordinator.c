/*
 * dsinfer-coordinator: the coordinator daemon. Waits for --nodes node daemons, plans, and serves
 * requests from clients of the control protocol (dsinfer run --coordinator ADDR) until SIGINT or
 * SIGTERM, then shuts the nodes down.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_args.h"
#include "dsc_backend.h"
#include "dsc_cluster.h"
#include "dsi_log.h"

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: dsinfer-coordinator --nodes N (--model DIR | --config FILE)\n"
        "                           [--listen HOST:PORT] [--stages S] [--secret-file FILE]\n"
        "                           [--kv-tokens T] [--heartbeat-ms MS] [--node-timeout-ms MS]\n"
        "                           [--port-file FILE]\n"
        "                           [--load-window-ms MS] [--load-windows N]\n"
        "                           [--redundant-experts R] [--rebalance-threshold X]\n"
        "                           [--rebalance-interval-ms MS] [--online-bias-gamma G]\n"
        "                           [--http HOST:PORT] [--replan live|restart]\n"
        "Listens on --listen (default 127.0.0.1:7000) for nodes and clients. The shared secret\n"
        "comes from --secret-file or DSINFER_SECRET. --port-file writes the bound port (for\n"
        "--listen HOST:0).\n"
        "Expert load (docs/ELASTICITY.md): counts are kept over the last --load-windows (60)\n"
        "windows of --load-window-ms (1000). --rebalance-threshold X > 1 re-places experts\n"
        "with --redundant-experts replicas per layer (default experts/8) when the imbalance\n"
        "passes X, at most once per --rebalance-interval-ms (60000); 0 = only on `dsinfer\n"
        "cluster rebalance`. --online-bias-gamma G > 0 adjusts the router biases to the load\n"
        "(needs --model; changes outputs; default 0 = never).\n"
        "--replan live (default): joins, drains and rebalances that keep every node's stage\n"
        "switch plans while requests run (nodes hold both placements briefly); restart: every\n"
        "re-plan pauses requests and re-prefills them (for nodes without that memory headroom).\n"
        "--http HOST:PORT also serves the OpenAI API there (needs --model; API key from\n"
        "DSINFER_API_KEY; docs/API.md \"Serving\").\n");
}

typedef struct {
    uv_signal_t sigint, sigterm;
    dsc_cluster_t *cluster;
    dsc_backend_t *backend; /* with --http */
    dsc_api_server_t *api;
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
    dsc_backend_destroy(c->backend);
    c->backend = NULL;
    c->api = NULL;
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
    if (c->api != NULL) {
        dsc_backend_stop(c->backend);
        dsc_api_server_destroy(c->api, on_api_closed, c);
        return;
    }
    dsc_cluster_shutdown(c->cluster, "coordinator stopping");
    uv_stop(c->loop);
}

static void on_state(void *arg, dsi_status_t st)
{
    coord_t *c = arg;
    dsc_cluster_condition_t cond;
    dsc_cluster_condition(c->cluster, &cond);
    if (st == DSI_OK)
        DSI_INFO("cluster ready");
    else
        DSI_ERROR("cluster not serving (%s): %s", dsi_status_message(st), cond.message);
}

/* --http: the OpenAI API on the cluster, as `dsinfer serve` has it (the backend takes the
 * cluster's state callback and passes it on). */
static int start_http(coord_t *c, const char *http, const char *model, const dsn_config_t *cfg,
                      dsc_metrics_t **metrics)
{
    dsc_backend_config_t bc;
    dsc_backend_config_default(&bc);
    bc.model_dir = model;
    bc.max_context = cfg->max_position_embeddings < 16384 ? (uint32_t)cfg->max_position_embeddings
                                                          : 16384; /* dsinfer-node's limit */
    bc.vocab_size = cfg->vocab_size;
    bc.on_state = on_state;
    bc.on_state_arg = c;
    dsc_api_server_config_t ac;
    dsc_api_server_config_default(&ac);
    if (dsc_api_server_config_option(&ac, "listen", http) != DSI_OK ||
        dsc_metrics_create(metrics) != DSI_OK ||
        dsc_backend_create(c->loop, &bc, c->cluster, *metrics, &c->backend) != DSI_OK)
        return -1;
    dsc_backend_api_limits(c->backend, &ac.limits);
    ac.api_key = getenv("DSINFER_API_KEY");
    if (dsc_api_server_create(c->loop, &ac, dsc_backend_api(c->backend), *metrics, &c->api) !=
        DSI_OK)
        return -1;
    DSI_INFO("OpenAI API on %s port %d", ac.http.host, dsc_api_server_port(c->api));
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"nodes", required_argument, NULL, 'n'},
        {"model", required_argument, NULL, 'm'},
        {"config", required_argument, NULL, 'c'},
        {"listen", required_argument, NULL, 'l'},
        {"stages", required_argument, NULL, 's'},
        {"secret-file", required_argument, NULL, 'S'},
        {"kv-tokens", required_argument, NULL, 'k'},
        {"heartbeat-ms", required_argument, NULL, 'b'},
        {"node-timeout-ms", required_argument, NULL, 't'},
        {"port-file", required_argument, NULL, 'p'},
        {"help", no_argument, NULL, 'h'},
        {"load-window-ms", required_argument, NULL, 'W'},
        {"load-windows", required_argument, NULL, 'N'},
        {"redundant-experts", required_argument, NULL, 'R'},
        {"rebalance-threshold", required_argument, NULL, 'T'},
        {"rebalance-interval-ms", required_argument, NULL, 'I'},
        {"online-bias-gamma", required_argument, NULL, 'G'},
        {"http", required_argument, NULL, 'H'},
        {"replan", required_argument, NULL, 'P'},
        {NULL, 0, NULL, 0}};
    double x;
    dsc_cluster_opts_t o;
    dsc_cluster_opts_default(&o);
    o.listen = "127.0.0.1:7000";
    o.expect_nodes = 0;
    const char *model = NULL, *config = NULL, *secret_file = NULL, *port_file = NULL;
    const char *http = NULL;
    long long v;
    int ch;
    dsi_log_set_tag("coordinator");
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case 'n':
            if (cli_parse_int("coordinator", "--nodes", optarg, 1, 1024, &v) != 0)
                return 2;
            o.expect_nodes = (uint32_t)v;
            break;
        case 'm':
            model = optarg;
            break;
        case 'c':
            config = optarg;
            break;
        case 'l':
            o.listen = optarg;
            break;
        case 'S':
            secret_file = optarg;
            break;
        case 'p':
            port_file = optarg;
            break;
        case 'H':
            http = optarg;
            break;
        case 's':
            if (cli_parse_int("coordinator", "--stages", optarg, 1, 256, &v) != 0)
                return 2;
            o.plan.n_stages = (uint32_t)v;
            break;
        case 'k':
            if (cli_parse_int("coordinator", "--kv-tokens", optarg, 1, 1LL << 32, &v) != 0)
                return 2;
            o.plan.kv_tokens = (uint64_t)v;
            break;
        case 'b':
            if (cli_parse_int("coordinator", "--heartbeat-ms", optarg, 10, 600000, &v) != 0)
                return 2;
            o.heartbeat_ms = (uint32_t)v;
            break;
        case 't':
            if (cli_parse_int("coordinator", "--node-timeout-ms", optarg, 50, 3600000, &v) != 0)
                return 2;
            o.node_timeout_ms = (uint32_t)v;
            break;
        case 'W':
            if (cli_parse_int("coordinator", "--load-window-ms", optarg, 10, 3600000, &v) != 0)
                return 2;
            o.load_window_ms = (uint32_t)v;
            break;
        case 'N':
            if (cli_parse_int("coordinator", "--load-windows", optarg, 1, 100000, &v) != 0)
                return 2;
            o.load_windows = (uint32_t)v;
            break;
        case 'R':
            if (cli_parse_int("coordinator", "--redundant-experts", optarg, 0, 1 << 20, &v) != 0)
                return 2;
            o.redundant_experts = (uint32_t)v;
            break;
        case 'T':
            if (cli_parse_float("coordinator", "--rebalance-threshold", optarg, 0, 1e6, &x) != 0)
                return 2;
            if (x > 0 && x <= 1) {
                fprintf(stderr,
                        "dsinfer-coordinator: --rebalance-threshold %s: 0 (off) or above "
                        "1 (1 is a perfect balance)\n",
                        optarg);
                return 2;
            }
            o.rebalance_threshold = x;
            break;
        case 'I':
            if (cli_parse_int("coordinator", "--rebalance-interval-ms", optarg, 0, 86400000, &v) !=
                0)
                return 2;
            o.rebalance_interval_ms = (uint32_t)v;
            break;
        case 'G':
            if (cli_parse_float("coordinator", "--online-bias-gamma", optarg, 0, 1, &x) != 0)
                return 2;
            o.online_bias_gamma = (float)x;
            break;
        case 'P': {
            static const char *const modes[] = {"restart", "live", NULL};
            if (cli_parse_choice("coordinator", "--replan", optarg, modes, &o.live_switch) != 0)
                return 2;
            break;
        }
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (o.expect_nodes == 0 || (model == NULL) == (config == NULL)) {
        fprintf(stderr,
                "dsinfer-coordinator: --nodes and one of --model / --config are required\n");
        usage(stderr);
        return 2;
    }
    if (http != NULL && model == NULL) {
        fprintf(stderr, "dsinfer-coordinator: --http needs --model (the tokenizer)\n");
        return 2;
    }
    o.model_dir = model; /* the router biases; none with --config alone */
    char path[4096];
    if (model != NULL)
        snprintf(path, sizeof(path), "%s/config.json", model);
    else
        snprintf(path, sizeof(path), "%s", config);
    dsn_config_t cfg;
    if (dsn_config_load(path, &cfg) != DSI_OK || dst_secret_load(secret_file, &o.secret) != DSI_OK)
        return 1;

    uv_loop_t loop;
    uv_loop_init(&loop);
    coord_t c = {.loop = &loop};
    if (dsc_cluster_create(&loop, &cfg, &o, &c.cluster) != DSI_OK)
        return 1;
    dsc_metrics_t *metrics = NULL;
    if (http != NULL) {
        if (start_http(&c, http, model, &cfg, &metrics) != 0)
            return 1;
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
    dsc_metrics_destroy(metrics);
    return 0;
}
