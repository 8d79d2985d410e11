/*
 * cmd_cluster.c - `dsinfer cluster status|rebalance|drain NODE`: an operator's authenticated
 * ADMIN request to a running coordinator (docs/ELASTICITY.md, docs/PROTOCOL.md "ADMIN").
 *
 * The client connects like any peer, takes the HELLO nonce, answers with ADMIN carrying the
 * shared secret's proof for that nonce and command, and prints the ADMIN_REPLY (JSON with
 * --json, a table otherwise). A refusal (ERROR) is printed and exits 1.
 */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_args.h"
#include "dsi_log.h"
#include "dsi_settings.h"
#include "dsinfer_commands.h"
#include "dst_ctrl.h"
#include "dst_msg_admin.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: dsinfer cluster status|rebalance|drain NODE --coordinator HOST:PORT\n"
            "                       [--json] [--secret-file FILE] [--timeout-ms MS]\n"
            "Administers a running coordinator (dsinfer-coordinator, dsinfer serve):\n"
            "  status      nodes, stages, expert-load imbalance, router-bias drift, re-plans\n"
            "  rebalance   re-place experts by the observed load now (EPLB), with replicas of\n"
            "              the hottest; requests continue with unchanged tokens\n"
            "  drain NODE  move node NODE's (an id from status) experts and sequences to the\n"
            "              others and release it\n"
            "The request is signed with the cluster's shared secret (--secret-file or\n"
            "DSINFER_SECRET). --json prints the coordinator's JSON reply as is.\n");
}

typedef struct {
    uv_loop_t loop;
    uv_timer_t timer;
    dst_ctrl_conn_t *conn;
    dst_secret_t secret;
    uint32_t command, arg;
    int sent;
    int rc; /* exit code once decided; -1 while waiting */
    char *json;
} admin_t;

static void finish(admin_t *a, int rc)
{
    if (a->rc < 0)
        a->rc = rc;
    if (a->conn != NULL)
        dst_ctrl_conn_close(a->conn);
    uv_stop(&a->loop);
}

static void on_msg(dst_ctrl_conn_t *conn, dst_msg_t *msg, void *arg)
{
    admin_t *a = arg;
    if (msg->type == DST_MSG_HELLO && !a->sent) {
        dst_msg_t m = {.type = DST_MSG_ADMIN};
        m.admin.command = a->command;
        m.admin.arg = a->arg;
        dst_msg_admin_auth(&a->secret, msg->hello.nonce, a->command, a->arg, m.admin.auth);
        a->sent = 1;
        if (dst_ctrl_send(conn, &m) != DSI_OK) {
            fprintf(stderr, "dsinfer cluster: cannot send the request\n");
            finish(a, 1);
        }
    } else if (msg->type == DST_MSG_ADMIN_REPLY && msg->admin_reply.command == a->command) {
        a->json = strdup(msg->admin_reply.json);
        finish(a, a->json != NULL ? 0 : 1);
    } else if (msg->type == DST_MSG_ERROR) {
        fprintf(stderr, "dsinfer cluster: the coordinator refused %s: %s (%s)\n",
                dst_msg_admin_name(a->command), msg->error.text,
                dsi_status_name((dsi_status_t)msg->error.code));
        finish(a, 1);
    }
}

static void on_close(dst_ctrl_conn_t *conn, dsi_status_t why, void *arg)
{
    (void)conn;
    admin_t *a = arg;
    a->conn = NULL;
    if (a->rc < 0) {
        fprintf(stderr, "dsinfer cluster: lost the coordinator: %s\n", dsi_status_message(why));
        finish(a, 1);
    }
}

static void on_timeout(uv_timer_t *t)
{
    admin_t *a = t->data;
    fprintf(stderr, "dsinfer cluster: no answer from the coordinator in time\n");
    finish(a, 1);
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* ---- human-readable output ---- */

static double num(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    return json_is_number(v) ? json_number_value(v) : 0;
}

static void print_figure(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    if (json_is_number(v))
        printf("%.3f", json_number_value(v));
    else
        printf("-");
}

static void print_status(const json_t *root)
{
    const json_t *nodes = json_object_get(root, "nodes");
    printf("epoch %.0f, %s; %.0f re-plans (%.0f rebalances, %.0f live switches), %.1f MiB of "
           "weights moved; %.0f preemptions (full KV pool)\n",
           num(root, "epoch"),
           json_is_true(json_object_get(root, "serving")) ? "serving" : "not serving",
           num(root, "replans"), num(root, "rebalances"), num(root, "live_switches"),
           num(root, "bytes_moved") / (1 << 20), num(root, "preemptions"));
    double pt = num(root, "prefix_prompt_tokens"), ht = num(root, "prefix_hit_tokens");
    printf("prefix cache: %.0f of %.0f prompt tokens found cached (%.1f%%)\n", ht, pt,
           pt > 0 ? 100.0 * ht / pt : 0.0);
    const char *why = json_string_value(json_object_get(root, "message"));
    if (why != NULL && !json_is_true(json_object_get(root, "serving")))
        printf("%s\n", why); /* what it waits for: nodes, loading, memory */
    const char *sw = json_string_value(json_object_get(root, "switch"));
    if (sw != NULL && strcmp(sw, "none") != 0)
        printf("a live switch is in progress (%s)\n", sw);
    printf("\n%-4s %-20s %-9s %-5s %-8s %-30s %s\n", "id", "name", "state", "stage", "experts",
           "memory planned / budget (GiB)", "KV blocks used / cached / free");
    size_t i;
    const json_t *n;
    json_array_foreach(nodes, i, n)
    {
        const json_t *stage = json_object_get(n, "stage");
        char st[16] = "-";
        if (json_is_integer(stage))
            snprintf(st, sizeof(st), "%lld", (long long)json_integer_value(stage));
        char mem[40];
        snprintf(mem, sizeof(mem), "%.2f / %.2f", num(n, "memory_planned") / (1 << 30),
                 num(n, "memory_budget") / (1 << 30));
        printf("%-4.0f %-20s %-9s %-5s %-8.0f %-30s %.0f / %.0f / %.0f\n", num(n, "id"),
               json_string_value(json_object_get(n, "name")),
               json_string_value(json_object_get(n, "state")), st, num(n, "experts"), mem,
               num(n, "kv_blocks_used"), num(n, "kv_blocks_cached"),
               num(n, "kv_blocks_total") - num(n, "kv_blocks_used") - num(n, "kv_blocks_cached"));
    }
    const json_t *load = json_object_get(root, "load");
    const json_t *bias = json_object_get(root, "bias");
    int have_bias = json_is_true(json_object_get(bias, "available"));
    printf("\nexpert load: %.0f (token, expert) pairs over the last %.0f windows of %.0f ms; "
           "imbalance ",
           num(load, "pairs"), num(load, "windows"), num(load, "window_ms"));
    print_figure(load, "imbalance");
    printf(" (max / mean expected load per node; 1 = even)\n");
    printf("%.0f replicas per layer\n", num(root, "replicas_per_layer"));
    printf("\n%-6s %-10s %-10s %s\n", "layer", "pairs", "imbalance",
           have_bias ? "bias drift max / mean" : "");
    const json_t *l;
    json_array_foreach(json_object_get(load, "layers"), i, l)
    {
        printf("%-6.0f %-10.0f ", num(l, "layer"), num(l, "pairs"));
        print_figure(l, "imbalance");
        if (have_bias)
            printf("      %.4f / %.4f", num(l, "bias_drift_max"), num(l, "bias_drift_mean"));
        printf("\n");
    }
    if (!have_bias)
        printf("\nrouter biases: unavailable (the coordinator has no checkpoint, only a config)\n");
    else if (num(bias, "gamma") == 0)
        printf("\nrouter biases: as in the checkpoint (online updates off: outputs exact)\n");
    else
        printf("\nrouter biases: online updates with gamma %g; drift max %.4f, mean %.4f\n",
               num(bias, "gamma"), num(bias, "max_drift"), num(bias, "mean_drift"));
}

static int print_reply(uint32_t command, const char *text, int as_json)
{
    if (as_json) {
        printf("%s\n", text);
        return 0;
    }
    json_error_t err;
    json_t *root = json_loads(text, 0, &err);
    if (root == NULL) {
        fprintf(stderr, "dsinfer cluster: the reply is not JSON: %s\n", err.text);
        return 1;
    }
    if (command == DST_ADMIN_STATUS) {
        print_status(root);
    } else if (command == DST_ADMIN_REBALANCE) {
        printf("rebalanced: epoch %.0f, imbalance %.3f -> %.3f, %.0f replicas (%.0f per layer), "
               "%.0f expert copies moved (%.1f MiB)\n",
               num(root, "epoch"), num(root, "imbalance_before"), num(root, "imbalance_after"),
               num(root, "replicas"), num(root, "replicas_per_layer"), num(root, "experts_moved"),
               num(root, "bytes_moved") / (1 << 20));
    } else {
        printf("node %.0f '%s' drains: its work moves to the other nodes, then it is released\n",
               num(root, "node"), json_string_value(json_object_get(root, "name")));
    }
    json_decref(root);
    return 0;
}

/* ---- the command ---- */

static int parse_command(int argc, char **argv, uint32_t *command, uint32_t *arg)
{
    if (optind >= argc) {
        fprintf(stderr, "dsinfer cluster: status, rebalance or drain NODE expected\n");
        return 2;
    }
    const char *what = argv[optind];
    int want_args = 0;
    long long v = 0;
    if (strcmp(what, "status") == 0) {
        *command = DST_ADMIN_STATUS;
    } else if (strcmp(what, "rebalance") == 0) {
        *command = DST_ADMIN_REBALANCE;
    } else if (strcmp(what, "drain") == 0) {
        *command = DST_ADMIN_DRAIN;
        want_args = 1;
    } else {
        fprintf(stderr, "dsinfer cluster: unknown command '%s'\n", what);
        return 2;
    }
    if (argc - optind - 1 != want_args) {
        fprintf(stderr, "dsinfer cluster %s: %s\n", what,
                want_args ? "one NODE id expected" : "no argument expected");
        return 2;
    }
    if (want_args &&
        cli_parse_int("cluster", "drain NODE", argv[optind + 1], 0, UINT32_MAX, &v) != 0)
        return 2;
    *arg = (uint32_t)v;
    return 0;
}

int dsinfer_cmd_cluster(int argc, char **argv)
{
    dsi_settings_t set;
    int first;
    int rc = dsi_settings_parse_args(&set, DSI_P_ADMIN, argc, argv, usage, &first);
    if (rc != 0) {
        dsi_settings_cleanup(&set);
        return rc == 1 ? 0 : rc; /* 1: --help */
    }
    optind = first; /* parse_command reads the positional arguments from here */
    const char *coordinator = dsi_settings_str(&set, DSI_S_COORDINATOR);
    const char *secret_file = dsi_settings_str(&set, DSI_S_SECRET_FILE);
    int as_json = (int)dsi_settings_int(&set, DSI_S_JSON);
    long long timeout_ms = dsi_settings_int(&set, DSI_S_TIMEOUT_MS);
    admin_t *a = calloc(1, sizeof(*a));
    if (a == NULL) {
        dsi_settings_cleanup(&set);
        return 1;
    }
    rc = parse_command(argc, argv, &a->command, &a->arg);
    if (rc == 0 && coordinator == NULL) {
        fprintf(stderr, "dsinfer cluster: --coordinator HOST:PORT is required\n");
        rc = 2;
    }
    if (rc != 0) {
        free(a);
        dsi_settings_cleanup(&set);
        return rc;
    }
    if (dst_secret_load(secret_file, &a->secret) != DSI_OK) {
        free(a);
        dsi_settings_cleanup(&set);
        return 1;
    }
    a->rc = -1;
    uv_loop_init(&a->loop);
    uv_timer_init(&a->loop, &a->timer);
    a->timer.data = a;
    uv_timer_start(&a->timer, on_timeout, (uint64_t)timeout_ms, 0);
    dst_ctrl_opts_t co;
    dst_ctrl_opts_default(&co);
    co.connect_attempts = 3;
    dst_ctrl_cb_t cb = {NULL, on_msg, on_close, a};
    if (dst_ctrl_connect(&a->loop, coordinator, &co, &cb, &a->conn) != DSI_OK)
        a->rc = 1;
    else
        uv_run(&a->loop, UV_RUN_DEFAULT);
    if (a->conn != NULL)
        dst_ctrl_conn_close(a->conn);
    uv_walk(&a->loop, close_walk, NULL);
    uv_run(&a->loop, UV_RUN_DEFAULT);
    uv_loop_close(&a->loop);
    rc = a->rc < 0 ? 1 : a->rc;
    if (rc == 0)
        rc = print_reply(a->command, a->json, as_json);
    memset(&a->secret, 0, sizeof(a->secret));
    free(a->json);
    free(a);
    dsi_settings_cleanup(&set);
    return rc;
}
