/*
 * The UCX data plane between two real processes (this program forks itself as the peer): UCX
 * addresses exchanged over a pipe, DISPATCH -> COMBINE round trips small and large (rendezvous),
 * garbage sent by a raw UCX endpoint (logged, rejected, the peer keeps serving), a peer stopped
 * with SIGSTOP (our loop keeps running), and a peer killed with SIGKILL reported by the error
 * callback. Over shared memory and over tcp (loopback).
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <ucp/api/ucp.h>
#include <unistd.h>

#include "dsi_clock.h"
#include "dsi_log.h"
#include "dsi_test.h"
#include "dst_ucx.h"

#define EPOCH      5u
#define STOP_LAYER 0xffffffffu
#define N_GARBAGE  8

static char tmpdir[256];

/* ---------- pipes: length-prefixed blobs ---------- */

static int pipe_write(int fd, const void *buf, uint32_t len)
{
    if (write(fd, &len, sizeof(len)) != (ssize_t)sizeof(len))
        return -1;
    return len == 0 || write(fd, buf, len) == (ssize_t)len ? 0 : -1;
}

/* Reads one blob (at most cap bytes) within timeout_ms; returns its length or -1. */
static int pipe_read(int fd, void *buf, uint32_t cap, int timeout_ms)
{
    uint32_t len;
    uint8_t *p = (uint8_t *)&len;
    size_t got = 0, want = sizeof(len);
    int phase = 0;
    while (1) {
        struct pollfd pfd = {fd, POLLIN, 0};
        if (poll(&pfd, 1, timeout_ms) <= 0)
            return -1;
        ssize_t n = read(fd, p + got, want - got);
        if (n <= 0)
            return -1;
        got += (size_t)n;
        if (got < want)
            continue;
        if (phase == 1)
            return (int)len;
        if (len > cap)
            return -1;
        if (len == 0)
            return 0;
        phase = 1, p = buf, got = 0, want = len;
    }
}

/* ---------- messages ---------- */

typedef struct {
    dst_wire_hdr_t hdr;
    void *payload; /* 64-byte aligned, freed by msg_free */
    size_t bytes;
} msg_t;

static void msg_alloc(msg_t *m)
{
    m->bytes = dst_wire_payload_bytes(&m->hdr);
    m->payload = aligned_alloc(64, (m->bytes + 63) / 64 * 64);
    memset(m->payload, 0, m->bytes);
}

static void msg_free(msg_t *m)
{
    free(m->payload);
    m->payload = NULL;
}

/* T tokens of width W, token t routed here with slots t%3 and t%3+2 (so pairs are ordered). */
static void make_dispatch(msg_t *m, uint32_t tokens, uint32_t width, uint64_t step)
{
    dst_wire_hdr_t h = {.type = DST_WIRE_DISPATCH,
                        .dtype = DST_WIRE_F32,
                        .epoch = EPOCH,
                        .step = step,
                        .micro_batch = 1,
                        .layer = 3,
                        .n_rows = tokens,
                        .width = width,
                        .n_pairs = 2 * tokens};
    m->hdr = h;
    msg_alloc(m);
    float *x = m->payload;
    for (size_t i = 0; i < (size_t)tokens * width; i++)
        x[i] = dsi_test_randf();
    dst_wire_pair_t *p = (dst_wire_pair_t *)dst_wire_pairs(&m->hdr, m->payload);
    for (uint32_t t = 0; t < tokens; t++) {
        for (int k = 0; k < 2; k++) {
            dst_wire_pair_t pair = {t, (uint16_t)(t % 3 + 2 * k),
                                    (uint16_t)(dsi_test_randu() % 256), dsi_test_randf()};
            p[2 * t + k] = pair;
        }
    }
}

/* The toy expert both sides agree on: row i = weight_i * (x[token_i] + expert_i). */
static void compute_combine(const dst_wire_hdr_t *h, const void *payload, float *out)
{
    const float *x = payload;
    const dst_wire_pair_t *p = dst_wire_pairs(h, payload);
    for (uint32_t i = 0; i < h->n_pairs; i++) {
        for (uint32_t j = 0; j < h->width; j++)
            out[(size_t)i * h->width + j] =
                p[i].weight * (x[(size_t)p[i].token * h->width + j] + (float)p[i].expert);
    }
}

/* ---------- the peer process: an expert server ---------- */

typedef struct {
    uv_loop_t loop;
    int failed;
} server_t;

static void server_send_done(dst_ucx_t *ucx, dsi_status_t status, void *arg)
{
    (void)ucx;
    (void)status;
    free(arg);
}

static void server_on_message(dst_ucx_t *ucx, uint32_t peer, const dst_wire_hdr_t *hdr,
                              const void *payload, size_t bytes, void *user)
{
    server_t *s = user;
    (void)bytes;
    if (hdr->type == DST_WIRE_ACTIVATION && hdr->layer == STOP_LAYER) {
        uv_stop(&s->loop);
        return;
    }
    if (hdr->type != DST_WIRE_DISPATCH) {
        fprintf(stderr, "server: unexpected %s\n", dst_wire_type_name(hdr->type));
        s->failed = 1;
        return;
    }
    dst_wire_hdr_t r = *hdr;
    r.type = DST_WIRE_COMBINE;
    r.n_rows = hdr->n_pairs;
    r.n_pairs = 0;
    size_t out_bytes = dst_wire_payload_bytes(&r);
    float *out = aligned_alloc(64, (out_bytes + 63) / 64 * 64);
    compute_combine(hdr, payload, out);
    if (dst_ucx_send(ucx, peer, &r, out, out_bytes, server_send_done, out) != DSI_OK) {
        s->failed = 1;
        free(out);
    }
}

static int run_server(int rd, int wr, const char *tls, const char *log_path)
{
    if (log_path != NULL) {
        if (freopen(log_path, "w", stderr) == NULL)
            return 1;
        setvbuf(stderr, NULL, _IONBF, 0);
    }
    dsi_log_set_tag("server");
    server_t s = {0};
    uv_loop_init(&s.loop);
    dst_ucx_config_t cfg;
    dst_ucx_config_default(&cfg);
    cfg.self_id = 1;
    cfg.max_peers = 4;
    cfg.epoch = EPOCH;
    cfg.max_message_bytes = (size_t)16 << 20;
    cfg.tls = tls;
    cfg.on_message = server_on_message;
    cfg.user = &s;
    dst_ucx_t *ucx;
    if (dst_ucx_create(&s.loop, &cfg, &ucx) != DSI_OK)
        return 1;
    const void *addr;
    size_t len;
    uint8_t peer_addr[4096];
    dst_ucx_address(ucx, &addr, &len);
    if (pipe_write(wr, addr, (uint32_t)len) != 0)
        return 1;
    int n = pipe_read(rd, peer_addr, sizeof(peer_addr), 10000);
    if (n <= 0 || dst_ucx_connect(ucx, 0, peer_addr, (size_t)n) != DSI_OK)
        return 1;
    if (pipe_write(wr, "R", 1) != 0)
        return 1;
    uv_run(&s.loop, UV_RUN_DEFAULT);
    dst_ucx_stats_t st;
    dst_ucx_stats(ucx, &st);
    dst_ucx_destroy(ucx);
    uv_run(&s.loop, UV_RUN_NOWAIT);
    uv_loop_close(&s.loop);
    pipe_write(wr, &st, sizeof(st));
    return s.failed;
}

/* ---------- the test side ---------- */

typedef struct {
    uv_loop_t loop;
    uv_timer_t tick; /* wakes the loop so that waits can check pipes and deadlines */
    dst_ucx_t *ucx;
    int combines;
    dst_wire_hdr_t last;
    float *last_payload;
    size_t last_bytes;
    int peer_errors;
    uint32_t error_peer;
    int sends_ok;
    ucp_worker_h raw;                   /* progressed by the tick when set */
    double last_tick_s, max_tick_gap_s; /* the longest the loop went without running its timer */
} side_t;

static void side_on_message(dst_ucx_t *ucx, uint32_t peer, const dst_wire_hdr_t *hdr,
                            const void *payload, size_t bytes, void *user)
{
    side_t *s = user;
    (void)ucx;
    DSI_CHECK_INT_EQ(peer, 1);
    DSI_CHECK_INT_EQ((uintptr_t)payload % 8, 0);
    s->combines++;
    s->last = *hdr;
    free(s->last_payload);
    s->last_payload = malloc(bytes);
    memcpy(s->last_payload, payload, bytes);
    s->last_bytes = bytes;
}

static void side_on_peer_error(dst_ucx_t *ucx, uint32_t peer, dsi_status_t status, void *user)
{
    side_t *s = user;
    (void)ucx;
    DSI_CHECK_INT_EQ(status, DSI_ERR_PEER);
    s->peer_errors++;
    s->error_peer = peer;
}

static void side_send_done(dst_ucx_t *ucx, dsi_status_t status, void *arg)
{
    side_t *s = arg;
    (void)ucx;
    s->sends_ok += status == DSI_OK;
}

static void on_tick(uv_timer_t *t)
{
    side_t *s = t->data;
    double now = dsi_now_s();
    if (s->last_tick_s > 0 && now - s->last_tick_s > s->max_tick_gap_s)
        s->max_tick_gap_s = now - s->last_tick_s;
    s->last_tick_s = now;
    if (s->raw != NULL)
        ucp_worker_progress(s->raw);
}

/* Runs the loop until *counter >= target or timeout; returns 1 if reached. */
static int wait_count(side_t *s, const int *counter, int target, double timeout_s)
{
    double end = dsi_now_s() + timeout_s;
    while (*counter < target && dsi_now_s() < end)
        uv_run(&s->loop, UV_RUN_ONCE);
    return *counter >= target;
}

static int side_create(side_t *s, const char *tls)
{
    memset(s, 0, sizeof(*s));
    uv_loop_init(&s->loop);
    uv_timer_init(&s->loop, &s->tick);
    s->tick.data = s;
    uv_timer_start(&s->tick, on_tick, 1, 1);
    dst_ucx_config_t cfg;
    dst_ucx_config_default(&cfg);
    cfg.self_id = 0;
    cfg.max_peers = 4;
    cfg.epoch = EPOCH;
    cfg.tls = tls;
    cfg.on_message = side_on_message;
    cfg.on_peer_error = side_on_peer_error;
    cfg.user = s;
    return dst_ucx_create(&s->loop, &cfg, &s->ucx) == DSI_OK ? 0 : -1;
}

static void side_destroy(side_t *s)
{
    dst_ucx_destroy(s->ucx);
    uv_close((uv_handle_t *)&s->tick, NULL);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    DSI_CHECK_INT_EQ(uv_loop_close(&s->loop), 0);
    free(s->last_payload);
}

typedef struct {
    pid_t pid;
    int rd, wr;         /* our ends of the pipes */
    uint8_t addr[4096]; /* the server's UCX address */
    size_t addr_len;
} child_t;

/* Forks the server and connects both ways; returns 0 when the server is ready. */
static int child_start(child_t *c, side_t *s, const char *tls, const char *log_path)
{
    int p2c[2], c2p[2];
    if (pipe(p2c) != 0 || pipe(c2p) != 0)
        return -1;
    fflush(stderr);
    c->pid = fork();
    if (c->pid == 0) {
        /*
         * A fresh image, not just a fork: UCX's async thread (which accepts tcp connections)
         * exists only in the process that started it, so a forked copy of a process that already
         * used UCX never accepts a connection.
         */
        char rd[16], wr[16];
        close(p2c[1]);
        close(c2p[0]);
        snprintf(rd, sizeof(rd), "%d", p2c[0]);
        snprintf(wr, sizeof(wr), "%d", c2p[1]);
        execl("/proc/self/exe", "test_unit_ucx", "--server", rd, wr, tls ? tls : "-",
              log_path ? log_path : "-", (char *)NULL);
        _exit(127);
    }
    close(p2c[0]);
    close(c2p[1]);
    c->rd = c2p[0];
    c->wr = p2c[1];
    char ready;
    const void *mine;
    size_t len;
    int n = pipe_read(c->rd, c->addr, sizeof(c->addr), 10000);
    dst_ucx_address(s->ucx, &mine, &len);
    if (n <= 0 || pipe_write(c->wr, mine, (uint32_t)len) != 0)
        return -1;
    c->addr_len = (size_t)n;
    if (pipe_read(c->rd, &ready, 1, 10000) != 1)
        return -1;
    if (dst_ucx_connect(s->ucx, 1, c->addr, c->addr_len) != DSI_OK)
        return -1;
    return 0;
}

/* Our side and a forked server, connected both ways; 0 when both are ready. */
static int pair_start(side_t *s, child_t *c, const char *tls, const char *log_path)
{
    DSI_CHECK_INT_EQ(side_create(s, tls), 0);
    if (child_start(c, s, tls, log_path) != 0) {
        DSI_CHECK(!"server start");
        return -1;
    }
    return 0;
}

/* Sends a DISPATCH and checks the COMBINE bit for bit. */
static void round_trip(side_t *s, uint32_t tokens, uint32_t width, uint64_t step)
{
    msg_t m;
    make_dispatch(&m, tokens, width, step);
    int before = s->combines, sends = s->sends_ok;
    DSI_CHECK_INT_EQ(dst_ucx_send(s->ucx, 1, &m.hdr, m.payload, m.bytes, side_send_done, s),
                     DSI_OK);
    DSI_CHECK(wait_count(s, &s->combines, before + 1, 10.0));
    DSI_CHECK(wait_count(s, &s->sends_ok, sends + 1, 10.0));
    size_t rows = m.hdr.n_pairs, expect_bytes = rows * width * sizeof(float);
    float *expect = malloc(expect_bytes);
    compute_combine(&m.hdr, m.payload, expect);
    DSI_CHECK_INT_EQ(s->last.type, DST_WIRE_COMBINE);
    DSI_CHECK_INT_EQ(s->last.src, 1);
    DSI_CHECK_INT_EQ(s->last.step, step);
    DSI_CHECK_INT_EQ(s->last.n_rows, rows);
    DSI_CHECK_INT_EQ(s->last_bytes, expect_bytes);
    if (s->last_bytes == expect_bytes)
        DSI_CHECK(memcmp(s->last_payload, expect, expect_bytes) == 0);
    free(expect);
    msg_free(&m);
}

/* ---------- garbage from a raw UCX endpoint ---------- */

typedef struct {
    ucp_context_h ctx;
    ucp_worker_h worker;
    ucp_ep_h ep;
    int done;
    int errors;
} raw_t;

static int raw_create(raw_t *r, const char *tls, const void *addr)
{
    ucp_config_t *config;
    memset(r, 0, sizeof(*r));
    if (ucp_config_read(NULL, NULL, &config) != UCS_OK)
        return -1;
    if (tls != NULL)
        ucp_config_modify(config, "TLS", tls);
    ucp_params_t params = {.field_mask = UCP_PARAM_FIELD_FEATURES, .features = UCP_FEATURE_AM};
    ucs_status_t st = ucp_init(&params, config, &r->ctx);
    ucp_config_release(config);
    ucp_worker_params_t wp = {.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE,
                              .thread_mode = UCS_THREAD_MODE_SINGLE};
    if (st != UCS_OK || ucp_worker_create(r->ctx, &wp, &r->worker) != UCS_OK)
        return -1;
    ucp_ep_params_t ep = {.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS, .address = addr};
    return ucp_ep_create(r->worker, &ep, &r->ep) == UCS_OK ? 0 : -1;
}

static void raw_done_cb(void *req, ucs_status_t status, void *user)
{
    raw_t *r = user;
    r->done++;
    r->errors += status != UCS_OK;
    ucp_request_free(req);
}

static void raw_send(raw_t *r, const void *hdr, size_t hlen, const void *data, size_t bytes,
                     uint32_t flags)
{
    ucp_request_param_t p = {.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK |
                                             UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_FLAGS,
                             .cb.send = raw_done_cb,
                             .user_data = r,
                             .flags = flags};
    void *req = ucp_am_send_nbx(r->ep, DST_UCX_AM_ID, hdr, hlen, data, bytes, &p);
    if (!UCS_PTR_IS_PTR(req)) {
        r->done++;
        r->errors += UCS_PTR_IS_ERR(req);
    }
}

static void raw_destroy(raw_t *r)
{
    ucp_request_param_t p = {.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
                             .flags = UCP_EP_CLOSE_FLAG_FORCE};
    void *req = ucp_ep_close_nbx(r->ep, &p);
    while (UCS_PTR_IS_PTR(req) && ucp_request_check_status(req) == UCS_INPROGRESS)
        ucp_worker_progress(r->worker);
    if (UCS_PTR_IS_PTR(req))
        ucp_request_free(req);
    ucp_worker_destroy(r->worker);
    ucp_cleanup(r->ctx);
}

/* Sends N_GARBAGE invalid messages; the big one (rendezvous) must fail on our side. */
static void send_garbage(side_t *s, raw_t *r, void *big, size_t big_bytes)
{
    static uint8_t hdrs[N_GARBAGE][DST_WIRE_HDR_MAX];
    size_t hl[N_GARBAGE];
    msg_t m;
    make_dispatch(&m, 2, 16, 99);
    m.hdr.src = 0;
    for (int i = 0; i < 32; i++)
        hdrs[0][i] = (uint8_t)dsi_test_randu();
    hl[0] = 32;
    for (int i = 1; i < N_GARBAGE; i++) {
        dst_wire_hdr_t h = m.hdr;
        if (i == 2)
            h.type = 9;
        if (i == 3)
            h.epoch = EPOCH + 1;
        if (i == 7)
            h.src = 3; /* not a connected peer of the server */
        dst_wire_hdr_encode(&h, hdrs[i], DST_WIRE_HDR_MAX, &hl[i]);
    }
    for (int i = 0; i < 32; i++)
        hdrs[5][i] = (uint8_t)dsi_test_randu();
    hl[5] = 32;
    /* Pairs out of order: passes the header checks, fails the side check. */
    msg_t bad_pairs = m;
    bad_pairs.payload = malloc(m.bytes);
    memcpy(bad_pairs.payload, m.payload, m.bytes);
    dst_wire_pair_t *p = (dst_wire_pair_t *)dst_wire_pairs(&m.hdr, bad_pairs.payload);
    p[0].token = 1;
    raw_send(r, hdrs[0], hl[0], m.payload, 64, 0);                      /* random header bytes */
    raw_send(r, hdrs[1], hl[1], m.payload, m.bytes - 1, 0);             /* size mismatch */
    raw_send(r, hdrs[2], hl[2], m.payload, m.bytes, 0);                 /* unknown type */
    raw_send(r, hdrs[3], hl[3], m.payload, m.bytes, 0);                 /* unknown epoch */
    raw_send(r, hdrs[4], hl[4], bad_pairs.payload, m.bytes, 0);         /* pairs out of order */
    raw_send(r, hdrs[5], hl[5], big, big_bytes, UCP_AM_SEND_FLAG_RNDV); /* rendezvous garbage */
    raw_send(r, NULL, 0, m.payload, 16, 0);                             /* no header */
    raw_send(r, hdrs[7], hl[7], m.payload, m.bytes, 0);                 /* unknown src */
    s->raw = r->worker;
    DSI_CHECK(wait_count(s, &r->done, N_GARBAGE, 10.0));
    DSI_CHECK_INT_EQ(r->errors, 1); /* the rejected rendezvous send */
    s->raw = NULL;
    free(bad_pairs.payload);
    msg_free(&m);
}

static int count_lines(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    char line[4096];
    int n = 0;
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof(line), f) != NULL) {
        fputs(line, stderr); /* the server's log, for whoever reads the test output */
        n += strstr(line, needle) != NULL;
    }
    fclose(f);
    return n;
}

static void child_stop(side_t *s, child_t *c, dst_ucx_stats_t *st)
{
    msg_t stop = {.hdr = {.type = DST_WIRE_ACTIVATION,
                          .dtype = DST_WIRE_F32,
                          .epoch = EPOCH,
                          .layer = STOP_LAYER,
                          .n_rows = 1,
                          .width = 4}};
    msg_alloc(&stop);
    int sends = s->sends_ok;
    DSI_CHECK_INT_EQ(
        dst_ucx_send(s->ucx, 1, &stop.hdr, stop.payload, stop.bytes, side_send_done, s), DSI_OK);
    DSI_CHECK(wait_count(s, &s->sends_ok, sends + 1, 10.0));
    /* Keep progressing while the server flushes and closes its endpoint to us. */
    double end = dsi_now_s() + 10.0;
    struct pollfd pfd = {c->rd, POLLIN, 0};
    while (poll(&pfd, 1, 1) == 0 && dsi_now_s() < end)
        uv_run(&s->loop, UV_RUN_NOWAIT);
    int got = pipe_read(c->rd, st, sizeof(*st), 5000);
    DSI_CHECK_INT_EQ(got, sizeof(*st));
    int status = 0;
    DSI_CHECK_INT_EQ(waitpid(c->pid, &status, 0), c->pid);
    DSI_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    close(c->rd);
    close(c->wr);
    msg_free(&stop);
}

static void scenario_serve(const char *tls)
{
    fprintf(stderr, "--- serve, garbage, serve again (tls %s)\n", tls ? tls : "default");
    side_t s;
    child_t c;
    char log_path[512];
    snprintf(log_path, sizeof(log_path), "%s/server.log", tmpdir);
    if (pair_start(&s, &c, tls, log_path) != 0)
        return;
    round_trip(&s, 2, 64, 1);    /* 512 B + pairs: eager */
    round_trip(&s, 40, 7168, 2); /* 1.1 MiB DISPATCH, 2.2 MiB COMBINE: rendezvous */
    dst_ucx_stats_t mine;
    dst_ucx_stats(s.ucx, &mine);
    DSI_CHECK_INT_EQ(mine.rx_rndv, 1);

    /* Our own API refuses what the wire would reject. */
    msg_t m;
    make_dispatch(&m, 2, 16, 7);
    DSI_CHECK_INT_EQ(dst_ucx_send(s.ucx, 1, &m.hdr, m.payload, m.bytes - 4, NULL, NULL),
                     DSI_ERR_INVALID_ARG);
    DSI_CHECK_INT_EQ(dst_ucx_send(s.ucx, 2, &m.hdr, m.payload, m.bytes, NULL, NULL), DSI_ERR_PEER);
    DSI_CHECK_INT_EQ(dst_ucx_send(s.ucx, 99, &m.hdr, m.payload, m.bytes, NULL, NULL), DSI_ERR_PEER);
    DSI_CHECK_INT_EQ(dst_ucx_connect(s.ucx, 1, m.payload, 16), DSI_ERR_INVALID_ARG);
    msg_free(&m);

    /* Garbage from an endpoint the server does not know, then a valid request again. */
    raw_t r;
    size_t big_bytes = (size_t)2 << 20;
    void *big = calloc(1, big_bytes);
    DSI_CHECK_INT_EQ(raw_create(&r, tls, c.addr), 0);
    send_garbage(&s, &r, big, big_bytes);
    round_trip(&s, 3, 128, 3);

    dst_ucx_stats_t server;
    child_stop(&s, &c, &server);
    raw_destroy(&r);
    free(big);
    DSI_CHECK_INT_EQ(server.rx_rejected, N_GARBAGE);
    DSI_CHECK_INT_EQ(server.rx_messages, 4);
    DSI_CHECK_INT_EQ(server.tx_messages, 3);
    DSI_CHECK_INT_EQ(count_lines(log_path, "rejected a message"), N_GARBAGE);
    side_destroy(&s);
}

/* A peer killed with SIGKILL is reported through on_peer_error within a few seconds. */
static void scenario_kill(const char *tls)
{
    fprintf(stderr, "--- peer killed (tls %s)\n", tls ? tls : "default");
    side_t s;
    child_t c;
    if (pair_start(&s, &c, tls, NULL) != 0)
        return;
    round_trip(&s, 1, 32, 1);
    kill(c.pid, SIGKILL);
    waitpid(c.pid, NULL, 0);
    double t0 = dsi_now_s();
    DSI_CHECK(wait_count(&s, &s.peer_errors, 1, 10.0));
    double took = dsi_now_s() - t0;
    fprintf(stderr, "peer failure reported after %.3f s\n", took);
    DSI_CHECK(took < 5.0);
    DSI_CHECK_INT_EQ(s.error_peer, 1);
    DSI_CHECK_INT_EQ(s.peer_errors, 1);
    msg_t m;
    make_dispatch(&m, 1, 16, 2);
    DSI_CHECK_INT_EQ(dst_ucx_send(s.ucx, 1, &m.hdr, m.payload, m.bytes, NULL, NULL), DSI_ERR_PEER);
    msg_free(&m);
    close(c.rd);
    close(c.wr);
    side_destroy(&s);
}

/*
 * A peer stopped with SIGSTOP while DISPATCHes to it are in flight must not hold our loop: the
 * daemon's heartbeats run on it, and a node whose loop stalls is declared lost with the stopped
 * one. The loop's timer keeps running throughout; once the peer continues, every reply arrives.
 */
static void scenario_stopped(const char *tls)
{
    fprintf(stderr, "--- peer stopped (tls %s)\n", tls ? tls : "default");
    side_t s;
    child_t c;
    if (pair_start(&s, &c, tls, NULL) != 0)
        return;
    round_trip(&s, 1, 32, 1);
    kill(c.pid, SIGSTOP);
    /*
     * Send until a send no longer completes: the stopped peer's queue (shared memory) or the
     * socket buffers (tcp) are full, and UCX holds what it accepted.
     */
    enum { MAX_SENT = 4096 };
    static msg_t m[MAX_SENT];
    int before = s.combines, n_sent = 0;
    while (n_sent < MAX_SENT) {
        msg_t *q = &m[n_sent];
        make_dispatch(q, 8, 128, 2 + (uint64_t)n_sent);
        int sends = s.sends_ok;
        DSI_CHECK_INT_EQ(dst_ucx_send(s.ucx, 1, &q->hdr, q->payload, q->bytes, side_send_done, &s),
                         DSI_OK);
        n_sent++;
        if (!wait_count(&s, &s.sends_ok, sends + 1, 0.05))
            break;
    }
    fprintf(stderr, "%d sends before one stayed pending\n", n_sent);
    s.last_tick_s = 0, s.max_tick_gap_s = 0;
    double end = dsi_now_s() + 1.5;
    while (dsi_now_s() < end)
        uv_run(&s.loop, UV_RUN_ONCE);
    fprintf(stderr, "longest the loop held its timer while the peer was stopped: %.3f s\n",
            s.max_tick_gap_s);
    DSI_CHECK(s.last_tick_s > 0);
    DSI_CHECK(s.max_tick_gap_s < 0.5);
    kill(c.pid, SIGCONT);
    DSI_CHECK(wait_count(&s, &s.combines, before + n_sent, 20.0));
    for (int i = 0; i < n_sent; i++)
        msg_free(&m[i]);
    dst_ucx_stats_t server;
    child_stop(&s, &c, &server);
    DSI_CHECK_INT_EQ(server.rx_messages, (uint64_t)n_sent + 2);
    side_destroy(&s);
}

int main(int argc, char **argv)
{
    if (argc == 6 && strcmp(argv[1], "--server") == 0)
        return run_server(atoi(argv[2]), atoi(argv[3]), strcmp(argv[4], "-") ? argv[4] : NULL,
                          strcmp(argv[5], "-") ? argv[5] : NULL);
    setenv("UCX_WARN_UNUSED_ENV_VARS", "n", 0);
    setenv("UCX_NET_DEVICES", "lo", 0); /* tcp stays on loopback */
    setenv("UCX_KEEPALIVE_INTERVAL", "1s", 0);
    dsi_test_seed(1);
    snprintf(tmpdir, sizeof(tmpdir), "%s", dsi_test_tmpdir());
    const char *tls[] = {NULL, "tcp"};          /* UCX's default picks shared memory here */
    const char *only = getenv("TEST_UCX_ONLY"); /* "0" or "1" while debugging */
    for (int i = 0; i < 2; i++) {
        if (only != NULL && atoi(only) != i)
            continue;
        scenario_serve(tls[i]);
        scenario_stopped(tls[i]);
        scenario_kill(tls[i]);
    }
    dsi_test_rmtree(tmpdir);
    return dsi_test_finish();
}
