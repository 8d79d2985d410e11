/*
 * dsinfer serve: the OpenAI-compatible API (coordinator/serve/dsc_api.h) over a cluster coordinated
 * by this process (coordinator/cluster/dsc_cluster.h) with N local dsinfer-node processes, bound
 * together by the text-level backend (coordinator/serve/dsc_backend.h). Runs until SIGINT/SIGTERM,
 * or until the cluster fails; then closes the API, shuts the nodes down and waits for them (none is
 * left).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "cli_cluster.h"
#include "cli_settings.h"
#include "dsi_log.h"
#include "dsinfer_commands.h"

#define CMD "serve"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: dsinfer serve --model DIR [--local-nodes N] [--stages S] [options]\n"
            "Serves the OpenAI API (POST /v1/chat/completions, /v1/completions; GET /v1/models,\n"
            "/health, /metrics) for the model in DIR, run by N local dsinfer-node processes over\n"
            "S pipeline stages. Every node option (--threads, --mem, --numa-node,\n"
            "--weight-format, --max-context, --max-batch-tokens) goes to every node. Prints\n"
            "'ready: http://HOST:PORT' on stderr once every node is ready. SIGINT or SIGTERM\n"
            "stops the server and its nodes.\n");
}

typedef struct {
    dsi_settings_t set;
    const char *model;
    long long local_nodes, max_context;
} serve_opts_t;

static int parse_opts(int argc, char **argv, serve_opts_t *o)
{
    int rc = dsi_settings_parse(&o->set, DSI_P_SERVE, argc, argv, usage);
    if (rc == 1)
        exit(0); /* --help */
    if (rc != 0)
        return rc;
    o->model = dsi_settings_str(&o->set, DSI_S_MODEL);
    o->local_nodes = dsi_settings_int(&o->set, DSI_S_LOCAL_NODES);
    if (o->local_nodes == 0)
        o->local_nodes = 1; /* auto */
    if (o->model == NULL) {
        fprintf(stderr, "dsinfer " CMD ": --model is required\n");
        usage(stderr);
        return 2;
    }
    long long stages = dsi_settings_int(&o->set, DSI_S_STAGES);
    if (stages > o->local_nodes) {
        fprintf(stderr, "dsinfer " CMD ": --stages %lld needs at least as many --local-nodes\n",
                stages);
        return 2;
    }
    return 0;
}

typedef struct {
    uv_loop_t loop;
    uv_signal_t sigint, sigterm, sigchld;
    dsc_cluster_t *cluster;
    cli_api_t api;
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
    s->api.api = NULL;
    dsc_backend_destroy(s->api.backend);
    s->api.backend = NULL;
    dsc_cluster_shutdown(s->cluster, "dsinfer serve stopping");
    uv_stop(&s->loop);
}

static void serve_stop(serve_t *s, int rc)
{
    if (s->stopping)
        return;
    s->stopping = 1;
    s->rc = rc;
    if (s->api.backend != NULL)
        dsc_backend_stop(s->api.backend);
    if (s->api.api != NULL)
        dsc_api_server_destroy(s->api.api, on_api_closed, s);
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
            dsc_backend_fail_all(s->api.backend, "every node of the cluster exited");
        serve_stop(s, s->stopping ? s->rc : 1);
    }
}

static void on_state(void *arg, dsi_status_t st)
{
    serve_t *s = arg;
    if (st == DSI_OK) {
        if (!s->ever_ready)
            fprintf(stderr, "dsinfer " CMD ": ready: %s (model '%s')\n", s->api.url,
                    dsc_backend_model_id(s->api.backend));
        s->ever_ready = 1;
    } else if (!s->ever_ready) {
        /* No other node joins a local cluster: a refused first plan is final. */
        dsc_cluster_condition_t c;
        dsc_cluster_condition(s->cluster, &c);
        fprintf(stderr, "dsinfer " CMD ": the cluster cannot serve the model: %s: stopping\n",
                c.message);
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
    int rc = cli_cluster_tune(&o->set, &co);
    if (rc != 0)
        return rc;
    co.plan.kv_tokens = (uint64_t)o->max_context; /* one full-length sequence per node */
    co.plan.kv_token_layer = cli_kv_token_layer(&o->set, cfg);
    co.plan.mtp = dsi_settings_int(&o->set, DSI_S_SPECULATIVE_TOKENS) > 0; /* the MTP layer */
    if (co.plan.kv_token_layer == 0)
        return 2;
    co.plan.overhead = 64ULL << 20;
    cli_node_args_t na;
    if (cli_node_args(&o->set, o->max_context, (int)o->local_nodes, &na) != 0)
        return 1;
    if (cli_local_secret() != 0 || dst_secret_load(NULL, &co.secret) != DSI_OK ||
        dsc_cluster_create(&s->loop, cfg, &co, &s->cluster) != DSI_OK)
        return 1;
    rc = cli_api_start(&s->loop, &o->set, cfg, o->max_context, s->cluster, on_state, s, &s->api);
    if (rc != 0)
        return rc;
    fprintf(stderr, "dsinfer " CMD ": API on %s; waiting for %lld local node(s)\n", s->api.url,
            o->local_nodes);

    char coord[64];
    snprintf(coord, sizeof(coord), "127.0.0.1:%u", dsc_cluster_port(s->cluster));
    if (cli_spawn_nodes_argv((int)o->local_nodes, coord, o->model, na.argv, s->pids) != 0)
        return 1;
    s->n_pids = (int)o->local_nodes;
    return 0;
}

int dsinfer_cmd_serve(int argc, char **argv)
{
    serve_opts_t o;
    int rc = parse_opts(argc, argv, &o);
    dsn_config_t cfg;
    if (rc == 0 && (rc = cli_config_load(o.model, NULL, &cfg)) == 0)
        rc = cli_max_context(&o.set, &cfg, &o.max_context);
    if (rc != 0) {
        dsi_settings_cleanup(&o.set);
        return rc;
    }

    serve_t s = {0};
    s.pids = calloc((size_t)o.local_nodes, sizeof(pid_t));
    if (s.pids == NULL) {
        dsi_settings_cleanup(&o.set);
        return 1;
    }
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
    if (s.api.api != NULL) {
        s.stopping = 1;
        dsc_api_server_destroy(s.api.api, NULL, NULL);
        s.api.api = NULL;
    }
    dsc_backend_destroy(s.api.backend);
    s.api.backend = NULL;
    /* Let the SHUTDOWN frames reach the nodes before the connections close. */
    for (int i = 0; i < 50; i++)
        uv_run(&s.loop, UV_RUN_NOWAIT);
    uv_signal_stop(&s.sigchld);
    cli_reap_nodes(s.pids, s.n_pids, 15000);
    dsc_cluster_destroy(s.cluster);
    uv_walk(&s.loop, close_walk, NULL);
    uv_run(&s.loop, UV_RUN_DEFAULT);
    uv_loop_close(&s.loop);
    cli_api_free(&s.api);
    free(s.pids);
    dsi_settings_cleanup(&o.set);
    if (rc == 0)
        fprintf(stderr, "dsinfer " CMD ": stopped\n");
    return rc;
}
