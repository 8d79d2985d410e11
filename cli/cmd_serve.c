/*
 * dsinfer serve: the OpenAI-compatible API (coordinator/serve/dsc_api.h) over a cluster coordinated by
 * this process (coordinator/cluster/dsc_cluster.h) with N local dsinfer-node processes, bound together by
 * the text-level backend (coordinator/serve/dsc_backend.h). Runs until SIGINT/SIGTERM, or until the
 * cluster fails; then closes the API, shuts the nodes down and waits for them (none is left).
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "cli_args.h"
#include "cli_cluster.h"
#include "dsc_api.h"
#include "dsc_backend.h"
#include "dsi_log.h"
#include "dsinfer_commands.h"

#define CMD             "serve"
#define DEFAULT_CONTEXT 16384 /* --max-context when not given (the model's, when smaller) */

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: dsinfer serve --model DIR [--local-nodes N] [--stages S] [options]\n"
        "Serves the OpenAI API (POST /v1/chat/completions, /v1/completions; GET /v1/models,\n"
        "/health, /metrics) for the model in DIR, run by N local dsinfer-node processes\n"
        "(default 1) over S pipeline stages (default: the planner chooses).\n"
        "  --max-queue N        requests generated at once; more get 429 (default 64)\n"
        "  --max-context N      prompt + max_tokens limit, up to the model's positions (default:\n"
        "                       the model's, at most %d); a request without max_tokens may use "
        "the\n"
        "                       rest of it; each node reserves KV cache for one such sequence\n"
        "  --chat-template T    auto (from tokenizer_config.json, default), v3 or r1\n"
        "  --model-name ID      the model id of the API (default: DIR's name)\n"
        "  --node-threads N     compute threads per node process (default 1)\n"
        "  --rebalance-threshold X  re-place experts (EPLB) when the load imbalance passes X > 1\n"
        "                       (default 0: only on `dsinfer cluster rebalance`)\n"
        "  --online-bias-gamma G    move the routing biases by G per load window (default 0:\n"
        "                       never; outputs then differ from the checkpoint's)\n"
        "  --replan live|restart    how re-plans switch (default live: requests keep running;\n"
        "                       docs/ELASTICITY.md)\n"
        "The HTTP server's options (the API key defaults to $DSINFER_API_KEY):\n",
        DEFAULT_CONTEXT);
#define SERVE_API_USAGE(name, value, help) fprintf(out, "  --%s %s\n      %s\n", name, value, help);
    DSC_API_SERVER_OPTIONS(SERVE_API_USAGE)
#undef SERVE_API_USAGE
    fprintf(out, "Prints 'ready: http://HOST:PORT' on stderr once every node is ready. SIGINT or\n"
                 "SIGTERM stops the server and its nodes.\n");
}

/* The API server's options, in table order: their values are applied after the backend's
 * limits, so that an explicit --max-tokens-limit / --default-max-tokens wins. */
static const char *const api_option_names[] = {
#define SERVE_API_NAME(name, value, help) name,
    DSC_API_SERVER_OPTIONS(SERVE_API_NAME)
#undef SERVE_API_NAME
};
#define N_API_OPTIONS (sizeof(api_option_names) / sizeof(api_option_names[0]))
#define API_OPT_BASE  1000 /* getopt value of the first API option */

typedef struct {
    const char *model, *model_name;
    const char *api_value[N_API_OPTIONS]; /* given API server options, or NULL */
    long long local_nodes, stages, max_queue, max_context, node_threads;
    double rebalance_threshold, bias_gamma; /* EPLB and online router bias (0: off) */
    int live_switch;                        /* --replan: 1 live, 0 restart */
    dsc_chat_style_t style;
} serve_opts_t;

static int parse_opts(int argc, char **argv, serve_opts_t *o)
{
    static const struct option own[] = {{"model", required_argument, NULL, 'm'},
                                        {"local-nodes", required_argument, NULL, 'n'},
                                        {"stages", required_argument, NULL, 's'},
                                        {"max-queue", required_argument, NULL, 'q'},
                                        {"max-context", required_argument, NULL, 'c'},
                                        {"chat-template", required_argument, NULL, 't'},
                                        {"model-name", required_argument, NULL, 'N'},
                                        {"node-threads", required_argument, NULL, 'T'},
                                        {"rebalance-threshold", required_argument, NULL, 'R'},
                                        {"online-bias-gamma", required_argument, NULL, 'G'},
                                        {"replan", required_argument, NULL, 'P'},
                                        {"help", no_argument, NULL, 'h'}};
    enum { N_OWN = sizeof(own) / sizeof(own[0]) };
    struct option longopts[N_OWN + N_API_OPTIONS + 1];
    memcpy(longopts, own, sizeof(own));
    for (size_t i = 0; i < N_API_OPTIONS; i++)
        longopts[N_OWN + i] =
            (struct option){api_option_names[i], required_argument, NULL, API_OPT_BASE + (int)i};
    longopts[N_OWN + N_API_OPTIONS] = (struct option){NULL, 0, NULL, 0};
    *o = (serve_opts_t){.local_nodes = 1,
                        .max_queue = 64,
                        .node_threads = 1,
                        .live_switch = 1,
                        .style = DSC_CHAT_AUTO};
    dsc_api_server_config_t scratch; /* checks the API options' values now */
    dsc_api_server_config_default(&scratch);
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'm':
            o->model = optarg;
            break;
        case 'N':
            o->model_name = optarg;
            break;
        case 'n':
            if (cli_parse_int(CMD, "--local-nodes", optarg, 1, 64, &o->local_nodes) != 0)
                return 2;
            break;
        case 's':
            if (cli_parse_int(CMD, "--stages", optarg, 1, 64, &o->stages) != 0)
                return 2;
            break;
        case 'q':
            if (cli_parse_int(CMD, "--max-queue", optarg, 1, 65536, &o->max_queue) != 0)
                return 2;
            break;
        case 'c':
            if (cli_parse_int(CMD, "--max-context", optarg, 2, 1 << 24, &o->max_context) != 0)
                return 2;
            break;
        case 'T':
            if (cli_parse_int(CMD, "--node-threads", optarg, 1, 1024, &o->node_threads) != 0)
                return 2;
            break;
        case 'R':
            if (cli_parse_float(CMD, "--rebalance-threshold", optarg, 0, 1000,
                                &o->rebalance_threshold) != 0)
                return 2;
            break;
        case 'G':
            if (cli_parse_float(CMD, "--online-bias-gamma", optarg, 0, 1, &o->bias_gamma) != 0)
                return 2;
            break;
        case 'P': {
            static const char *const modes[] = {"restart", "live", NULL};
            if (cli_parse_choice(CMD, "--replan", optarg, modes, &o->live_switch) != 0)
                return 2;
            break;
        }
        case 't':
            if (dsc_chat_style_parse(optarg, &o->style) != DSI_OK) {
                fprintf(stderr, "dsinfer " CMD ": --chat-template: '%s' is not auto, v3 or r1\n",
                        optarg);
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            if (c >= API_OPT_BASE && c < API_OPT_BASE + (int)N_API_OPTIONS) {
                const char *name = api_option_names[c - API_OPT_BASE];
                if (dsc_api_server_config_option(&scratch, name, optarg) != DSI_OK)
                    return 2;
                o->api_value[c - API_OPT_BASE] = optarg;
                break;
            }
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "dsinfer " CMD ": unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (o->model == NULL) {
        fprintf(stderr, "dsinfer " CMD ": --model is required\n");
        usage(stderr);
        return 2;
    }
    if (o->stages > o->local_nodes) {
        fprintf(stderr, "dsinfer " CMD ": --stages %lld needs at least as many --local-nodes\n",
                o->stages);
        return 2;
    }
    return 0;
}

typedef struct {
    uv_loop_t loop;
    uv_signal_t sigint, sigterm, sigchld;
    dsc_metrics_t *metrics;
    dsc_cluster_t *cluster;
    dsc_backend_t *backend;
    dsc_api_server_t *api;
    char url[96];
    pid_t *pids;
    int n_pids;
    int ever_ready, stopping, rc;
} serve_t;

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* The API is closed (its generations cancelled): free the backend, stop the nodes. */
static void on_api_closed(void *arg)
{
    serve_t *s = arg;
    s->api = NULL;
    dsc_backend_destroy(s->backend);
    s->backend = NULL;
    dsc_cluster_shutdown(s->cluster, "dsinfer serve stopping");
    uv_stop(&s->loop);
}

static void serve_stop(serve_t *s, int rc)
{
    if (s->stopping)
        return;
    s->stopping = 1;
    s->rc = rc;
    dsc_backend_stop(s->backend);
    if (s->api != NULL)
        dsc_api_server_destroy(s->api, on_api_closed, s);
    else
        on_api_closed(s);
}

static void on_signal(uv_signal_t *sig, int signum)
{
    serve_t *s = sig->data;
    DSI_INFO("signal %d: stopping", signum);
    serve_stop(s, 0);
}

/*
 * A node process ended. Before the cluster was first ready that is a failed start; later the
 * cluster re-plans over the nodes left (requests wait meanwhile), and only when none is left
 * does the server stop.
 */
static void on_sigchld(uv_signal_t *sig, int signum)
{
    (void)signum;
    serve_t *s = sig->data;
    int alive = 0;
    for (int i = 0; i < s->n_pids; i++) {
        int status;
        if (s->pids[i] > 0 && waitpid(s->pids[i], &status, WNOHANG) == s->pids[i]) {
            int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            if (!s->stopping)
                fprintf(stderr, "dsinfer " CMD ": node process %d exited with status %d\n",
                        (int)s->pids[i], code);
            s->pids[i] = 0;
        }
        alive += s->pids[i] > 0;
    }
    if (!s->ever_ready && alive < s->n_pids)
        serve_stop(s, 1);
    else if (alive == 0) {
        if (!s->stopping) /* open requests end with an error event, not a closed connection */
            dsc_backend_fail_all(s->backend, "every node of the cluster exited");
        serve_stop(s, s->stopping ? s->rc : 1);
    }
}

static void on_state(void *arg, dsi_status_t st)
{
    serve_t *s = arg;
    if (st == DSI_OK) {
        if (!s->ever_ready)
            fprintf(stderr, "dsinfer " CMD ": ready: %s (model '%s')\n", s->url,
                    dsc_backend_model_id(s->backend));
        s->ever_ready = 1;
    } else if (!s->ever_ready) {
        /* No other node joins a local cluster: a refused first plan is final. */
        fprintf(stderr, "dsinfer " CMD ": the cluster cannot serve the model (%s): stopping\n",
                dsi_status_message(st));
        serve_stop(s, 1);
    }
}

/* Everything up to the nodes being spawned; 0 or an exit code. */
static int serve_start(serve_t *s, const serve_opts_t *o, const dsn_config_t *cfg)
{
    dsc_cluster_opts_t co;
    dsc_cluster_opts_default(&co);
    co.expect_nodes = (uint32_t)o->local_nodes;
    co.model_dir = o->model; /* the routing biases, for the load statistics */
    co.rebalance_threshold = o->rebalance_threshold;
    co.online_bias_gamma = (float)o->bias_gamma;
    co.live_switch = o->live_switch;
    co.plan.n_stages = (uint32_t)o->stages;
    co.plan.kv_tokens = (uint64_t)o->max_context; /* one full-length sequence per node */
    co.plan.overhead = 64ULL << 20;
    if (cli_local_secret() != 0 || dst_secret_load(NULL, &co.secret) != DSI_OK ||
        dsc_metrics_create(&s->metrics) != DSI_OK ||
        dsc_cluster_create(&s->loop, cfg, &co, &s->cluster) != DSI_OK)
        return 1;

    dsc_backend_config_t bc;
    dsc_backend_config_default(&bc);
    bc.model_dir = o->model;
    bc.model_id = o->model_name;
    bc.chat_style = o->style;
    bc.max_queue = (uint32_t)o->max_queue;
    bc.max_context = (uint32_t)o->max_context;
    bc.vocab_size = cfg->vocab_size;
    bc.on_state = on_state;
    bc.on_state_arg = s;
    if (dsc_backend_create(&s->loop, &bc, s->cluster, s->metrics, &s->backend) != DSI_OK)
        return 1;

    dsc_api_server_config_t ac;
    dsc_api_server_config_default(&ac);
    dsc_backend_api_limits(s->backend, &ac.limits);
    ac.api_key = getenv("DSINFER_API_KEY");
    for (size_t i = 0; i < N_API_OPTIONS; i++) {
        if (o->api_value[i] != NULL &&
            dsc_api_server_config_option(&ac, api_option_names[i], o->api_value[i]) != DSI_OK)
            return 2;
    }
    if (dsc_api_server_create(&s->loop, &ac, dsc_backend_api(s->backend), s->metrics, &s->api) !=
        DSI_OK)
        return 1;
    int v6 = strchr(ac.http.host, ':') != NULL;
    snprintf(s->url, sizeof(s->url), v6 ? "http://[%s]:%d" : "http://%s:%d", ac.http.host,
             dsc_api_server_port(s->api));
    fprintf(stderr, "dsinfer " CMD ": API on %s; waiting for %lld local node(s)\n", s->url,
            o->local_nodes);

    char coord[64], ctx[24];
    snprintf(coord, sizeof(coord), "127.0.0.1:%u", dsc_cluster_port(s->cluster));
    snprintf(ctx, sizeof(ctx), "%lld", o->max_context);
    setenv("DSINFER_MAX_CONTEXT", ctx, 1); /* the nodes' sequences must fit the API's limit */
    if (cli_spawn_nodes((int)o->local_nodes, coord, o->model, (int)o->node_threads, s->pids) != 0)
        return 1;
    s->n_pids = (int)o->local_nodes;
    return 0;
}

int dsinfer_cmd_serve(int argc, char **argv)
{
    serve_opts_t o;
    int rc = parse_opts(argc, argv, &o);
    if (rc != 0)
        return rc;
    char path[4096];
    snprintf(path, sizeof(path), "%s/config.json", o.model);
    dsn_config_t cfg;
    if (dsn_config_load(path, &cfg) != DSI_OK)
        return 1;
    long long model_ctx = cfg.max_position_embeddings > 1 ? cfg.max_position_embeddings : 2;
    if (o.max_context == 0)
        o.max_context = model_ctx < DEFAULT_CONTEXT ? model_ctx : DEFAULT_CONTEXT;
    else if (o.max_context > model_ctx) {
        fprintf(stderr, "dsinfer " CMD ": --max-context %lld is over the model's %lld positions\n",
                o.max_context, model_ctx);
        return 2;
    }

    serve_t s = {0};
    s.pids = calloc((size_t)o.local_nodes, sizeof(pid_t));
    if (s.pids == NULL)
        return 1;
    uv_loop_init(&s.loop);
    uv_signal_init(&s.loop, &s.sigint);
    uv_signal_init(&s.loop, &s.sigterm);
    uv_signal_init(&s.loop, &s.sigchld);
    s.sigint.data = s.sigterm.data = s.sigchld.data = &s;
    uv_signal_start(&s.sigint, on_signal, SIGINT);
    uv_signal_start(&s.sigterm, on_signal, SIGTERM);
    uv_signal_start(&s.sigchld, on_sigchld, SIGCHLD);

    rc = serve_start(&s, &o, &cfg);
    if (rc == 0) {
        uv_run(&s.loop, UV_RUN_DEFAULT);
        rc = s.rc;
    } else if (s.cluster != NULL) {
        dsc_cluster_shutdown(s.cluster, "dsinfer serve failed to start");
    }
    /* Teardown in order: API (cancels generations), backend, then the nodes. */
    if (s.api != NULL) {
        s.stopping = 1;
        dsc_api_server_destroy(s.api, NULL, NULL);
        s.api = NULL;
    }
    dsc_backend_destroy(s.backend);
    s.backend = NULL;
    /* Let the SHUTDOWN frames reach the nodes before the connections close. */
    for (int i = 0; i < 50; i++)
        uv_run(&s.loop, UV_RUN_NOWAIT);
    uv_signal_stop(&s.sigchld);
    cli_reap_nodes(s.pids, s.n_pids, 15000);
    dsc_cluster_destroy(s.cluster);
    uv_walk(&s.loop, close_walk, NULL);
    uv_run(&s.loop, UV_RUN_DEFAULT);
    uv_loop_close(&s.loop);
    dsc_metrics_destroy(s.metrics);
    free(s.pids);
    if (rc == 0)
        fprintf(stderr, "dsinfer " CMD ": stopped\n");
    return rc;
}
