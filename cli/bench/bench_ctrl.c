/*
 * dsinfer bench ctrl: control-protocol costs. Encode + decode time and body size of typical
 * messages (a TOKENS step, a 4096-token SUBMIT, DeepSeek-V3's PLAN and LOAD_STATS), then a
 * HEARTBEAT ping-pong and a TOKENS stream over a real dst_ctrl connection on 127.0.0.1 (client and
 * server on one libuv loop in this process, so one core does both ends).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "bench_opt.h"
#include "cli_args.h"
#include "dst_ctrl.h"

enum { V3_NODES = 16, V3_SLOTS = 58 * 256, PROMPT = 4096 };

typedef struct {
    dst_plan_stage_t stages[4];
    dst_plan_node_t nodes[V3_NODES];
    uint32_t offsets[V3_SLOTS + 1];
    uint32_t holders[2 * V3_SLOTS];
    uint32_t counts[V3_SLOTS];
    int32_t prompt[PROMPT];
    uint32_t route[4];
    int32_t one_token;
} samples_t;

static void make_plan(samples_t *s, dst_msg_t *m)
{
    for (int i = 0; i < 4; i++)
        s->stages[i] = (dst_plan_stage_t){i == 0 ? 0 : 1 + 15 * i, 1 + 15 * (i + 1)};
    for (int i = 0; i < V3_NODES; i++)
        s->nodes[i] = (dst_plan_node_t){100 + i, (uint32_t)i % 4, 1ull << 40, 1ull << 39};
    for (int i = 0; i <= V3_SLOTS; i++)
        s->offsets[i] = 2 * i;
    for (int i = 0; i < V3_SLOTS; i++) {
        s->holders[2 * i] = 100 + i % V3_NODES;
        s->holders[2 * i + 1] = 100 + (i + 1) % V3_NODES;
    }
    memset(m, 0, sizeof(*m));
    m->type = DST_MSG_PLAN;
    m->plan.plan = (dst_plan_t){.epoch = 1,
                                .n_layers = 61,
                                .first_moe_layer = 3,
                                .n_experts = 256,
                                .n_stages = 4,
                                .stages = s->stages,
                                .n_nodes = V3_NODES,
                                .nodes = s->nodes,
                                .expert_offsets = s->offsets,
                                .expert_holders = s->holders};
}

static void make_samples(samples_t *s, dst_msg_t out[4], const char *names[4])
{
    memset(out, 0, 4 * sizeof(*out));
    s->one_token = 12345;
    names[0] = "TOKENS, 1 token";
    out[0].type = DST_MSG_TOKENS;
    out[0].tokens = (dst_msg_tokens_t){.seq_id = 77, .n_tokens = 1, .tokens = &s->one_token};
    names[1] = "SUBMIT, 4096-token prompt";
    for (int i = 0; i < PROMPT; i++)
        s->prompt[i] = (i * 7919) % 129280;
    for (int i = 0; i < 4; i++)
        s->route[i] = 100 + i;
    out[1].type = DST_MSG_SUBMIT;
    out[1].submit = (dst_msg_submit_t){.seq_id = 77,
                                       .n_tokens = PROMPT,
                                       .tokens = s->prompt,
                                       .max_tokens = 1024,
                                       .temperature = 0.6f,
                                       .top_p = 0.95f,
                                       .n_route = 4,
                                       .route = s->route};
    names[2] = "PLAN, DeepSeek-V3, 16 nodes";
    make_plan(s, &out[2]);
    names[3] = "LOAD_STATS, 58 x 256";
    for (int i = 0; i < V3_SLOTS; i++)
        s->counts[i] = (uint32_t)(i * 2654435761u) % 100000;
    out[3].type = DST_MSG_LOAD_STATS;
    out[3].load_stats = (dst_msg_load_stats_t){.node_id = 1,
                                               .epoch = 1,
                                               .window_ms = 10000,
                                               .first_layer = 3,
                                               .n_layers = 58,
                                               .n_experts = 256,
                                               .counts = s->counts};
}

static int bench_codec(const dst_msg_t *m, const char *name, long long iters)
{
    char err[256];
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    uint64_t enc_ns = 0, dec_ns = 0;
    size_t size = 0;
    for (long long i = 0; i < iters; i++) {
        sb.size = 0;
        uint64_t t0 = uv_hrtime();
        if (dst_msg_encode(m, &sb, err, sizeof(err)) != DSI_OK) {
            fprintf(stderr, "dsinfer bench ctrl: encode %s: %s\n", name, err);
            msgpack_sbuffer_destroy(&sb);
            return 1;
        }
        uint64_t t1 = uv_hrtime();
        dst_msg_t d;
        if (dst_msg_decode(sb.data, sb.size, &d, err, sizeof(err)) != DSI_OK) {
            fprintf(stderr, "dsinfer bench ctrl: decode %s: %s\n", name, err);
            msgpack_sbuffer_destroy(&sb);
            return 1;
        }
        uint64_t t2 = uv_hrtime();
        dst_msg_free(&d);
        enc_ns += t1 - t0;
        dec_ns += t2 - t1;
        size = sb.size;
    }
    printf("%-30s %10zu %14.2f %14.2f\n", name, size, enc_ns / 1e3 / iters, dec_ns / 1e3 / iters);
    msgpack_sbuffer_destroy(&sb);
    return 0;
}

/* ---- loopback ---------------------------------------------------------------------------- */

typedef struct {
    long long left;   /* ping-pongs or stream messages still to go */
    long long got;    /* messages received by the server side */
    long long target; /* stream: messages to receive */
    int done;
    dst_ctrl_conn_t *client;
    int32_t token;
} loop_state_t;

static void srv_msg(dst_ctrl_conn_t *c, dst_msg_t *m, void *arg)
{
    loop_state_t *s = arg;
    s->got++;
    if (m->type == DST_MSG_HEARTBEAT)
        dst_ctrl_send(c, m); /* echo */
    else if (s->got == s->target)
        s->done = 1;
}

static void cli_msg(dst_ctrl_conn_t *c, dst_msg_t *m, void *arg)
{
    loop_state_t *s = arg;
    if (m->type != DST_MSG_HEARTBEAT)
        return;
    if (--s->left <= 0) {
        s->done = 1;
        return;
    }
    m->heartbeat.seq++;
    dst_ctrl_send(c, m);
}

static void cli_open(dst_ctrl_conn_t *c, void *arg)
{
    ((loop_state_t *)arg)->client = c;
}

static void run_until(uv_loop_t *loop, const int *flag)
{
    while (!*flag && uv_run(loop, UV_RUN_ONCE) != 0) {
    }
}

static int bench_loopback(long long pings, long long stream)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    loop_state_t s = {0};
    dst_ctrl_cb_t scb = {NULL, srv_msg, NULL, &s};
    dst_ctrl_cb_t ccb = {cli_open, cli_msg, NULL, &s};
    dst_ctrl_listener_t *l;
    if (dst_ctrl_listen(&loop, "127.0.0.1:0", NULL, &scb, &l) != DSI_OK)
        return 1;
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", (unsigned)dst_ctrl_listener_port(l));
    dst_ctrl_conn_t *c;
    if (dst_ctrl_connect(&loop, addr, NULL, &ccb, &c) != DSI_OK)
        return 1;
    while (s.client == NULL)
        uv_run(&loop, UV_RUN_ONCE);

    s.left = pings;
    dst_msg_t hb = {.type = DST_MSG_HEARTBEAT, .heartbeat = {.node_id = 1, .seq = 1}};
    uint64_t t0 = uv_hrtime();
    dst_ctrl_send(c, &hb);
    run_until(&loop, &s.done);
    double rtt_us = (uv_hrtime() - t0) / 1e3 / pings;
    printf("HEARTBEAT ping-pong over 127.0.0.1: %lld round trips, %.1f us each\n", pings, rtt_us);

    /* Stream TOKENS steps as a last-stage node does, in batches that keep the queue bounded. */
    s.done = 0;
    s.got = 0;
    s.target = stream;
    s.token = 42;
    dst_msg_t tk = {.type = DST_MSG_TOKENS,
                    .tokens = {.seq_id = 1, .n_tokens = 1, .tokens = &s.token}};
    t0 = uv_hrtime();
    for (long long sent = 0; sent < stream;) {
        for (int k = 0; k < 256 && sent < stream; k++, sent++)
            dst_ctrl_send(c, &tk);
        uv_run(&loop, UV_RUN_NOWAIT);
    }
    run_until(&loop, &s.done);
    double secs = (uv_hrtime() - t0) / 1e9;
    printf("TOKENS stream over 127.0.0.1: %lld messages in %.3f s, %.0f messages/s\n", stream, secs,
           stream / secs);

    dst_ctrl_conn_close(c);
    dst_ctrl_listener_close(l);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return 0;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: dsinfer bench ctrl [--iters N] [--pings N] [--stream N]\n"
                 "  --iters N   encode/decode repetitions per message (default 200)\n"
                 "  --pings N   HEARTBEAT round trips over loopback (default 5000)\n"
                 "  --stream N  TOKENS messages streamed over loopback (default 200000)\n");
}

int dsinfer_bench_ctrl(int argc, char **argv)
{
    long long iters = 200, pings = 5000, stream = 200000;
    static const struct option opts[] = {{"iters", required_argument, NULL, 'i'},
                                         {"pings", required_argument, NULL, 'p'},
                                         {"stream", required_argument, NULL, 's'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int rc = 0;
        if (ch == 'i')
            rc = cli_parse_int("bench ctrl", "--iters", optarg, 1, 1000000, &iters);
        else if (ch == 'p')
            rc = cli_parse_int("bench ctrl", "--pings", optarg, 1, 100000000, &pings);
        else if (ch == 's')
            rc = cli_parse_int("bench ctrl", "--stream", optarg, 1, 100000000, &stream);
        else
            return bench_opt_usage(ch == 'h', usage);
        if (rc != 0)
            return 2;
    }
    samples_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return 1;
    dst_msg_t msgs[4];
    const char *names[4];
    make_samples(s, msgs, names);
    printf("%-30s %10s %14s %14s\n", "message", "bytes", "encode us", "decode us");
    int rc = 0;
    for (int i = 0; i < 4 && rc == 0; i++)
        rc = bench_codec(&msgs[i], names[i], i == 0 ? iters * 100 : iters);
    free(s);
    if (rc == 0)
        rc = bench_loopback(pings, stream);
    return rc;
}
