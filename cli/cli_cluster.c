#include "cli_cluster.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dsi_clock.h"
#include "dsi_log.h"
#include "dsi_settings.h"
#include "cli_settings.h"
#include "dst_ctrl.h"
#include "dst_msg_admin.h"
#include "dst_mpi.h"

int cli_local_secret(void)
{
    if (dsi_env(DST_SECRET_ENV) != NULL)
        return 0;
    uint8_t raw[DST_MSG_NONCE_LEN];
    if (dst_secret_nonce(raw) != DSI_OK)
        return -1;
    char hex[2 * DST_MSG_NONCE_LEN + 1];
    for (int i = 0; i < DST_MSG_NONCE_LEN; i++)
        snprintf(hex + 2 * i, 3, "%02x", raw[i]);
    return setenv(DST_SECRET_ENV, hex, 1);
}

/* DSINFER_NODE_BIN, else dsinfer-node next to this program, else dsinfer-node on PATH. */
static int node_binary(char *out, size_t cap)
{
    const char *env = dsi_env("DSINFER_NODE_BIN");
    if (env != NULL) {
        snprintf(out, cap, "%s", env);
        return access(out, X_OK);
    }
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0)
        return -1;
    self[n] = '\0';
    snprintf(out, cap, "%s/dsinfer-node", dirname(self));
    if (access(out, X_OK) == 0)
        return 0;
    snprintf(out, cap, "dsinfer-node");
    return 0;
}

/* Bytes of --mem for each of n nodes on this machine: 90% of its memory, shared equally (at
 * least 64 MiB). A fixed default (dsinfer-node's) would refuse a large model on a large server. */
static unsigned long long local_node_mem(int n)
{
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    unsigned long long total = pages > 0 && page > 0 ? (unsigned long long)pages * page : 0;
    unsigned long long share = total / 10 * 9 / (unsigned long long)(n > 0 ? n : 1);
    return share > (64ULL << 20) ? share : 64ULL << 20;
}

int cli_spawn_nodes(int n, const char *coord_addr, const char *model, int threads, pid_t *pids)
{
    char thr[16], mem[32];
    snprintf(thr, sizeof(thr), "%d", threads > 0 ? threads : 1);
    snprintf(mem, sizeof(mem), "%lluK", local_node_mem(n) >> 10);
    const char *args[] = {"--threads", thr, "--mem", mem, NULL};
    return cli_spawn_nodes_argv(n, coord_addr, model, args, pids);
}

int cli_spawn_nodes_argv(int n, const char *coord_addr, const char *model,
                         const char *const *node_args, pid_t *pids)
{
    char bin[PATH_MAX + 16], name[32];
    int n_args = 0;
    while (node_args != NULL && node_args[n_args] != NULL)
        n_args++;
    if (n_args > 32) {
        fprintf(stderr, "dsinfer: too many node options\n");
        return -1;
    }
    if (node_binary(bin, sizeof(bin)) != 0) {
        fprintf(stderr, "dsinfer: cannot find dsinfer-node next to this program (%s)\n", bin);
        return -1;
    }
    /* Names are unique over the process's life: nodes started later (joins) get new ones. */
    static int spawned;
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof(name), "local-%d", spawned++);
        pid_t pid = fork();
        if (pid < 0) {
            fprintf(stderr, "dsinfer: fork: %s\n", strerror(errno));
            cli_reap_nodes(pids, i, 0);
            return -1;
        }
        if (pid == 0) {
            /* The node dies with us if we die first. */
            const char *argv[48] = {bin,   "--coordinator", coord_addr, "--model",
                                    model, "--name",        name};
            for (int a = 0; a < n_args; a++)
                argv[7 + a] = node_args[a];
            argv[7 + n_args] = NULL;
            execvp(bin, (char *const *)argv);
            fprintf(stderr, "dsinfer: exec %s: %s\n", bin, strerror(errno));
            _exit(127);
        }
        pids[i] = pid;
    }
    return 0;
}

int cli_reap_nodes(pid_t *pids, int n, int timeout_ms)
{
    int unclean = 0;
    const int64_t t0 = dsi_now_ns();
    int left = n;
    while (left > 0) {
        left = 0;
        for (int i = 0; i < n; i++) {
            if (pids[i] <= 0)
                continue;
            int status;
            pid_t r = waitpid(pids[i], &status, WNOHANG);
            if (r == pids[i] || (r < 0 && errno == ECHILD)) {
                if (r == pids[i] && (!WIFEXITED(status) || WEXITSTATUS(status) != 0) && ++unclean)
                    fprintf(stderr, "dsinfer: node process %d ended with status %d\n", (int)pids[i],
                            WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
                pids[i] = 0;
            } else {
                left++;
            }
        }
        const int64_t ms = (dsi_now_ns() - t0) / 1000000;
        if (left > 0 && ms >= timeout_ms) {
            for (int i = 0; i < n; i++) {
                if (pids[i] > 0) {
                    fprintf(stderr, "dsinfer: node process %d did not exit: killed\n",
                            (int)pids[i]);
                    kill(pids[i], SIGKILL);
                    waitpid(pids[i], NULL, 0);
                    pids[i] = 0;
                    unclean++;
                }
            }
            return unclean;
        }
        if (left > 0)
            usleep(20000);
    }
    return unclean;
}

/* ---- a generation run on an event loop, in-process coordinator or remote client ---- */

typedef struct {
    uv_loop_t loop;
    uv_timer_t timer;
    const dsc_cluster_req_t *req;
    int n_req, n_done, failed;
    cli_gen_result_t *results;
    uint64_t last_progress_ms;
    uint32_t timeout_ms;
    dsc_cluster_t *cluster; /* in-process mode */
    dst_ctrl_conn_t *conn;  /* client mode */
    dst_secret_t secret;    /* client mode: proves the client to the coordinator */
} run_t;

typedef struct {
    run_t *run;
    int index;
} req_ctx_t;

static void finish_if_done(run_t *r)
{
    if (r->n_done == r->n_req || r->failed) {
        if (r->cluster != NULL)
            dsc_cluster_shutdown(r->cluster, "job done");
        if (r->conn != NULL)
            dst_ctrl_conn_close(r->conn);
        uv_stop(&r->loop);
    }
}

static void collect(run_t *r, int i, const int32_t *tokens, uint32_t n, dst_finish_t finish)
{
    cli_gen_result_t *res = &r->results[i];
    r->last_progress_ms = uv_now(&r->loop);
    if (n > 0) {
        int32_t *p = realloc(res->tokens, (res->n_tokens + n) * sizeof(int32_t));
        if (p == NULL) {
            r->failed = 1;
            finish_if_done(r);
            return;
        }
        memcpy(p + res->n_tokens, tokens, n * sizeof(int32_t));
        res->tokens = p;
        res->n_tokens += n;
    }
    if (finish != DST_FINISH_NONE) {
        res->finish = finish;
        if (finish == DST_FINISH_KV_FULL) {
            fprintf(stderr,
                    "dsinfer: request %d needs more KV cache than a node's pool holds "
                    "(raise --kv-pool or --mem, or ask for fewer tokens)\n",
                    i);
            r->failed = 1;
        } else if (finish == DST_FINISH_ERROR || finish == DST_FINISH_CANCELLED) {
            fprintf(stderr, "dsinfer: request %d failed on the cluster\n", i);
            r->failed = 1;
        }
        r->n_done++;
        finish_if_done(r);
    }
}

static void on_tokens(void *ctx, const int32_t *tokens, uint32_t n, dst_finish_t finish)
{
    req_ctx_t *c = ctx;
    collect(c->run, c->index, tokens, n, finish);
}

static void on_state(void *arg, dsi_status_t st)
{
    run_t *r = arg;
    if (st != DSI_OK) {
        dsc_cluster_condition_t c;
        dsc_cluster_condition(r->cluster, &c);
        fprintf(stderr, "dsinfer: the cluster failed (%s): %s\n", dsi_status_message(st),
                c.message);
        r->failed = 1;
        finish_if_done(r);
    } else {
        r->last_progress_ms = uv_now(&r->loop);
    }
}

static void on_timer(uv_timer_t *t)
{
    run_t *r = t->data;
    if (uv_now(&r->loop) - r->last_progress_ms > r->timeout_ms) {
        fprintf(stderr, "dsinfer: no progress for %u ms: giving up\n", r->timeout_ms);
        r->failed = 1;
        finish_if_done(r);
    }
}

/* Client mode: SUBMIT every request over one control connection, collect TOKENS. */
static void client_msg(dst_ctrl_conn_t *conn, dst_msg_t *msg, void *arg)
{
    run_t *r = arg;
    if (msg->type == DST_MSG_HELLO) {
        /* The control port serves authenticated clients only: prove the shared secret first
         * (the coordinator handles messages in order, so the SUBMITs may follow at once). */
        dst_msg_t a = {.type = DST_MSG_ADMIN};
        a.admin.command = DST_ADMIN_CLIENT;
        dst_msg_admin_auth(&r->secret, msg->hello.nonce, DST_ADMIN_CLIENT, 0, a.admin.auth);
        if (dst_ctrl_send(conn, &a) != DSI_OK) {
            r->failed = 1;
            finish_if_done(r);
            return;
        }
        for (int i = 0; i < r->n_req; i++) {
            const dsc_cluster_req_t *q = &r->req[i];
            uint32_t route0 = 0;
            dst_msg_t m = {.type = DST_MSG_SUBMIT};
            m.submit = (dst_msg_submit_t){.seq_id = (uint64_t)i,
                                          .n_tokens = q->n_prompt,
                                          .tokens = (int32_t *)q->prompt,
                                          .max_tokens = q->max_tokens,
                                          .temperature = q->temperature,
                                          .top_p = q->top_p,
                                          .top_k = q->top_k,
                                          .seed = q->seed,
                                          .n_route = 1,
                                          .route = &route0};
            if (dst_ctrl_send(conn, &m) != DSI_OK) {
                r->failed = 1;
                finish_if_done(r);
                return;
            }
        }
    } else if (msg->type == DST_MSG_TOKENS && msg->tokens.seq_id < (uint64_t)r->n_req) {
        collect(r, (int)msg->tokens.seq_id, msg->tokens.tokens, msg->tokens.n_tokens,
                (dst_finish_t)msg->tokens.finish);
    } else if (msg->type == DST_MSG_ERROR) {
        fprintf(stderr, "dsinfer: the coordinator refused %s: %s\n",
                dst_msg_type_name(msg->error.ref_type), msg->error.text);
        r->failed = 1;
        finish_if_done(r);
    }
}

static void client_close(dst_ctrl_conn_t *conn, dsi_status_t why, void *arg)
{
    (void)conn;
    run_t *r = arg;
    r->conn = NULL;
    if (r->n_done < r->n_req && !r->failed) {
        fprintf(stderr, "dsinfer: lost the coordinator: %s\n", dsi_status_message(why));
        r->failed = 1;
        uv_stop(&r->loop);
    }
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

int cli_cluster_generate(const cli_cluster_opts_t *opts, const dsc_cluster_req_t *req, int n_req,
                         cli_gen_result_t *results)
{
    run_t r = {0};
    r.req = req;
    r.n_req = n_req;
    r.results = results;
    r.timeout_ms = opts->timeout_ms ? opts->timeout_ms : 120000;
    memset(results, 0, (size_t)n_req * sizeof(*results));
    req_ctx_t *ctx = calloc((size_t)n_req, sizeof(*ctx));
    pid_t *pids = calloc((size_t)(opts->local_nodes > 0 ? opts->local_nodes : 1), sizeof(pid_t));
    int rc = 1, spawned = 0;
    if (ctx == NULL || pids == NULL)
        goto out_free;
    uv_loop_init(&r.loop);
    uv_timer_init(&r.loop, &r.timer);
    r.timer.data = &r;
    uv_timer_start(&r.timer, on_timer, 250, 250);
    r.last_progress_ms = uv_now(&r.loop);

    if (opts->coordinator != NULL) {
        if (dst_secret_load(NULL, &r.secret) != DSI_OK) {
            fprintf(stderr, "dsinfer: a client of the coordinator needs the cluster's shared "
                            "secret: set " DST_SECRET_ENV "\n");
            goto out_loop;
        }
        dst_ctrl_opts_t co;
        dst_ctrl_opts_default(&co);
        co.connect_attempts = 50;
        dst_ctrl_cb_t cb = {NULL, client_msg, client_close, &r};
        if (dst_ctrl_connect(&r.loop, opts->coordinator, &co, &cb, &r.conn) != DSI_OK)
            goto out_loop;
    } else {
        char cfg_path[PATH_MAX];
        dsn_config_t cfg;
        snprintf(cfg_path, sizeof(cfg_path), "%s/config.json", opts->model);
        if (dsn_config_load(cfg_path, &cfg) != DSI_OK || cli_local_secret() != 0)
            goto out_loop;
        dsc_cluster_opts_t co;
        dsc_cluster_opts_default(&co);
        co.expect_nodes = (uint32_t)(opts->mpi_nodes > 0 ? opts->mpi_nodes : opts->local_nodes);
        if (opts->mpi_nodes > 0 && opts->mpi_listen != NULL)
            co.listen = opts->mpi_listen;
        co.model_dir = opts->model;
        if (opts->settings != NULL && cli_cluster_tune(opts->settings, &co) != 0)
            goto out_loop;
        co.plan.n_stages = opts->stages;
        co.plan.kv_tokens = opts->kv_tokens ? opts->kv_tokens : 4096;
        if (opts->settings != NULL &&
            (co.plan.kv_token_layer = cli_kv_token_layer(opts->settings, &cfg)) == 0)
            goto out_loop;
        co.plan.overhead = 64ULL << 20;
        /* The MTP layer on the last stage, its routed experts spread over that stage's nodes. */
        co.plan.mtp = opts->settings != NULL &&
                      dsi_settings_int(opts->settings, DSI_S_SPECULATIVE_TOKENS) > 0;
        if (dst_secret_load(NULL, &co.secret) != DSI_OK ||
            dsc_cluster_create(&r.loop, &cfg, &co, &r.cluster) != DSI_OK)
            goto out_loop;
        dsc_cluster_on_state(r.cluster, on_state, &r);
        char addr[64];
        snprintf(addr, sizeof(addr), "%s:%u",
                 opts->mpi_nodes > 0 && opts->mpi_host != NULL ? opts->mpi_host : "127.0.0.1",
                 dsc_cluster_port(r.cluster));
        if (opts->mpi_nodes > 0) {
            /* Rank 0's entry of the allgather is the coordinator's address. */
            dst_mpi_addrs_t *table;
            if (dst_mpi_allgather_addresses(addr, strlen(addr) + 1, &table) != DSI_OK)
                goto out_loop;
            dst_mpi_addrs_free(table);
        } else {
            if (opts->node_args != NULL ? cli_spawn_nodes_argv(opts->local_nodes, addr, opts->model,
                                                               opts->node_args, pids) != 0
                                        : cli_spawn_nodes(opts->local_nodes, addr, opts->model,
                                                          opts->node_threads, pids) != 0)
                goto out_loop;
            spawned = 1;
        }
        for (int i = 0; i < n_req; i++) {
            uint64_t id;
            ctx[i] = (req_ctx_t){&r, i};
            if (dsc_cluster_submit_ex(r.cluster, &req[i], opts->sampling, on_tokens, NULL, &ctx[i],
                                      &id) != DSI_OK)
                goto out_loop;
        }
    }
    uv_run(&r.loop, UV_RUN_DEFAULT);
    rc = r.failed || r.n_done < r.n_req;

out_loop:
    if (rc != 0 && r.cluster != NULL)
        dsc_cluster_shutdown(r.cluster, "job failed");
    if (r.conn != NULL)
        dst_ctrl_conn_close(r.conn);
    /* Let the SHUTDOWN frames go out before the listener closes. */
    for (int i = 0; i < 20; i++)
        uv_run(&r.loop, UV_RUN_NOWAIT);
    /* A node that does not exit cleanly after SHUTDOWN is a failure too. */
    if (spawned && cli_reap_nodes(pids, opts->local_nodes, 15000) != 0)
        rc = 1;
    dsc_cluster_destroy(r.cluster);
    memset(&r.secret, 0, sizeof(r.secret));
    uv_walk(&r.loop, close_walk, NULL);
    uv_run(&r.loop, UV_RUN_DEFAULT);
    uv_loop_close(&r.loop);
out_free:
    free(ctx);
    free(pids);
    return rc;
}
