/*
 * dsinfer bench transport: a DISPATCH -> COMBINE round trip through dst_ucx (msgpack header,
 * validation, pools, progress from a sleeping libuv loop) against a raw UCX active-message
 * ping-pong of the same byte counts (busy-polling, no header work), in the same run, for
 * decode-sized batches of width 7168 f32, over shared memory and over tcp (loopback).
 *
 * The peer is this program again (fork + exec: a forked copy of a process that already used UCX
 * lacks UCX's async thread and never accepts tcp connections). Both sides walk the same list of
 * (batch, variant) phases, so no control messages are needed beyond the address exchange.
 */
#include <getopt.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <ucp/api/ucp.h>
#include <unistd.h>

#include "bench.h"
#include "bench_opt.h"
#include "cli_args.h"
#include "dsi_clock.h"
#include "dst_ucx.h"

#define RAW_AM_ID 1
#define WARMUP    5
#define WAIT_NS   (30 * 1000000000ll) /* a reply later than this means the run is broken */

static const uint32_t batch_tokens[] = {1, 4, 16, 64, 256};
#define N_BATCHES (sizeof(batch_tokens) / sizeof(batch_tokens[0]))

typedef struct {
    int iters;
    uint32_t width;
    uint32_t pairs_per_token;
    uint32_t spin_us;
} plan_t;

/* Byte counts of one batch: the DISPATCH payload and the COMBINE payload. */
static dst_wire_hdr_t dispatch_hdr(const plan_t *p, uint32_t tokens)
{
    dst_wire_hdr_t h = {.type = DST_WIRE_DISPATCH,
                        .dtype = DST_WIRE_F32,
                        .layer = 3,
                        .n_rows = tokens,
                        .width = p->width,
                        .n_pairs = tokens * p->pairs_per_token};
    return h;
}

static dst_wire_hdr_t combine_hdr(const dst_wire_hdr_t *d)
{
    dst_wire_hdr_t c = *d;
    c.type = DST_WIRE_COMBINE;
    c.n_rows = d->n_pairs;
    c.n_pairs = 0;
    return c;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static double median_us(int64_t *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_i64);
    return (n % 2 ? (double)v[n / 2] : 0.5 * (double)(v[n / 2 - 1] + v[n / 2])) / 1e3;
}

/* ---------- pipes ---------- */

static int blob_write(int fd, const void *buf, uint32_t len)
{
    if (write(fd, &len, sizeof(len)) != (ssize_t)sizeof(len))
        return -1;
    return write(fd, buf, len) == (ssize_t)len ? 0 : -1;
}

static int read_full(int fd, void *buf, size_t len)
{
    uint8_t *p = buf;
    while (len > 0) {
        struct pollfd pfd = {fd, POLLIN, 0};
        if (poll(&pfd, 1, 30000) <= 0)
            return -1;
        ssize_t n = read(fd, p, len);
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int blob_read(int fd, void *buf, uint32_t cap)
{
    uint32_t len;
    if (read_full(fd, &len, sizeof(len)) != 0 || len > cap || read_full(fd, buf, len) != 0)
        return -1;
    return (int)len;
}

/* ---------- raw UCX ping-pong ---------- */

typedef struct {
    ucp_context_h ctx;
    ucp_worker_h worker;
    ucp_ep_h ep;
    void *buf; /* receive buffer for rendezvous data */
    size_t buf_bytes;
    int received;         /* complete messages */
    uint64_t reply_bytes; /* the ping's header: bytes the pong must carry */
} raw_t;

static void raw_recv_done(void *req, ucs_status_t status, size_t len, void *user)
{
    raw_t *r = user;
    (void)status;
    (void)len;
    r->received++;
    ucp_request_free(req);
}

static ucs_status_t raw_am_cb(void *arg, const void *header, size_t hlen, void *data, size_t len,
                              const ucp_am_recv_param_t *param)
{
    raw_t *r = arg;
    if (hlen == sizeof(uint64_t))
        memcpy(&r->reply_bytes, header, sizeof(uint64_t));
    if (!(param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV)) {
        r->received++;
        return UCS_OK;
    }
    ucp_request_param_t p = {.op_attr_mask =
                                 UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA,
                             .cb.recv_am = raw_recv_done,
                             .user_data = r};
    void *req = ucp_am_recv_data_nbx(r->worker, data, r->buf, len, &p);
    if (!UCS_PTR_IS_PTR(req))
        r->received++;
    return UCS_OK;
}

static int raw_create(raw_t *r, const char *tls, size_t buf_bytes)
{
    ucp_config_t *config;
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
    ucp_am_handler_param_t am = {
        .field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_CB |
                      UCP_AM_HANDLER_PARAM_FIELD_ARG | UCP_AM_HANDLER_PARAM_FIELD_FLAGS,
        .id = RAW_AM_ID,
        .flags = UCP_AM_FLAG_WHOLE_MSG,
        .cb = raw_am_cb,
        .arg = r};
    r->buf = aligned_alloc(64, buf_bytes);
    r->buf_bytes = buf_bytes;
    return ucp_worker_set_am_recv_handler(r->worker, &am) == UCS_OK && r->buf != NULL ? 0 : -1;
}

static int raw_connect(raw_t *r, const void *addr)
{
    ucp_ep_params_t ep = {.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS, .address = addr};
    return ucp_ep_create(r->worker, &ep, &r->ep) == UCS_OK ? 0 : -1;
}

/*
 * Busy-polling, but yielding when nothing progressed: on shared cores a pure spin starves the
 * peer it waits for (ENVIRONMENT.md), which would make the baseline measure the scheduler.
 */
static void poll_once(ucp_worker_h w)
{
    if (ucp_worker_progress(w) == 0)
        sched_yield();
}

/* Sends and polls until the send completed. */
static void raw_send_wait(raw_t *r, const void *data, size_t bytes, uint64_t reply_bytes)
{
    ucp_request_param_t p = {.op_attr_mask = 0};
    void *req =
        ucp_am_send_nbx(r->ep, RAW_AM_ID, &reply_bytes, sizeof(reply_bytes), data, bytes, &p);
    if (UCS_PTR_IS_PTR(req)) {
        while (ucp_request_check_status(req) == UCS_INPROGRESS)
            poll_once(r->worker);
        ucp_request_free(req);
    }
}

static int raw_wait_received(raw_t *r, int target)
{
    int64_t end = dsi_now_ns() + WAIT_NS;
    while (r->received < target && dsi_now_ns() < end)
        poll_once(r->worker);
    return r->received >= target ? 0 : -1;
}

static void raw_destroy(raw_t *r)
{
    if (r->ep != NULL) {
        ucp_request_param_t p = {.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
                                 .flags = UCP_EP_CLOSE_FLAG_FORCE};
        void *req = ucp_ep_close_nbx(r->ep, &p);
        while (UCS_PTR_IS_PTR(req) && ucp_request_check_status(req) == UCS_INPROGRESS)
            ucp_worker_progress(r->worker);
        if (UCS_PTR_IS_PTR(req))
            ucp_request_free(req);
    }
    if (r->worker != NULL)
        ucp_worker_destroy(r->worker);
    if (r->ctx != NULL)
        ucp_cleanup(r->ctx);
    free(r->buf);
}

/* ---------- our data plane ---------- */

typedef struct {
    uv_loop_t loop;
    dst_ucx_t *ucx;
    int is_peer;
    int received; /* messages delivered */
    int replied;  /* sends completed (COMBINE on the peer, DISPATCH on the driver) */
    void *reply;  /* the peer's COMBINE payload (contents irrelevant) */
    int send_failed;
} ours_t;

static void reply_done(dst_ucx_t *ucx, dsi_status_t status, void *arg)
{
    ours_t *o = arg;
    (void)ucx;
    if (status != DSI_OK)
        o->send_failed = 1;
    o->replied++;
}

static void ours_on_message(dst_ucx_t *ucx, uint32_t peer, const dst_wire_hdr_t *hdr,
                            const void *payload, size_t bytes, void *user)
{
    ours_t *o = user;
    (void)payload;
    (void)bytes;
    o->received++;
    if (o->is_peer && hdr->type == DST_WIRE_DISPATCH) {
        dst_wire_hdr_t c = combine_hdr(hdr);
        if (dst_ucx_send(ucx, peer, &c, o->reply, dst_wire_payload_bytes(&c), reply_done, o) !=
            DSI_OK)
            o->send_failed = 1;
    }
}

static int ours_create(ours_t *o, const char *tls, int is_peer, size_t reply_bytes,
                       uint32_t spin_us)
{
    memset(o, 0, sizeof(*o));
    uv_loop_init(&o->loop);
    o->is_peer = is_peer;
    o->reply = calloc(1, reply_bytes);
    dst_ucx_config_t cfg;
    dst_ucx_config_default(&cfg);
    cfg.self_id = (uint32_t)is_peer;
    cfg.max_peers = 2;
    cfg.tls = tls;
    cfg.spin_us = spin_us;
    cfg.on_message = ours_on_message;
    cfg.user = o;
    return o->reply != NULL && dst_ucx_create(&o->loop, &cfg, &o->ucx) == DSI_OK ? 0 : -1;
}

static int ours_wait(ours_t *o, const int *counter, int target)
{
    int64_t end = dsi_now_ns() + WAIT_NS;
    while (*counter < target && dsi_now_ns() < end)
        uv_run(&o->loop, UV_RUN_ONCE);
    return *counter >= target ? 0 : -1;
}

static void ours_destroy(ours_t *o)
{
    dst_ucx_destroy(o->ucx);
    uv_run(&o->loop, UV_RUN_DEFAULT);
    uv_loop_close(&o->loop);
    free(o->reply);
}

/* ---------- one side of the benchmark ---------- */

static void raw_progress(void *arg)
{
    raw_t *r = arg;
    poll_once(r->worker);
}

static void ours_progress(void *arg)
{
    ours_t *o = arg;
    uv_run(&o->loop, UV_RUN_NOWAIT);
    sched_yield();
}

/*
 * Ends a phase: tell the other side we are done, and keep progressing the phase's worker until
 * it says the same. A side that stopped progressing while the other still waits for a
 * rendezvous acknowledgement from it would deadlock both.
 */
static int phase_sync(int rd, int wr, void (*progress)(void *), void *arg)
{
    char x = 'P';
    if (write(wr, &x, 1) != 1)
        return -1;
    int64_t end = dsi_now_ns() + WAIT_NS;
    while (dsi_now_ns() < end) {
        struct pollfd pfd = {rd, POLLIN, 0};
        if (poll(&pfd, 1, 0) == 1)
            return read(rd, &x, 1) == 1 ? 0 : -1;
        progress(arg);
    }
    return -1;
}

typedef struct {
    double raw_us[N_BATCHES];
    double ours_us[N_BATCHES];
} results_t;

/* Address exchange: ours then raw, each way; then a byte each way once both connected. */
static int connect_both(int rd, int wr, ours_t *o, raw_t *r, int is_peer)
{
    const void *addr;
    size_t len;
    ucp_address_t *raw_addr;
    size_t raw_len;
    uint8_t peer_ours[4096], peer_raw[4096];
    int ours_len, raw_peer_len;
    char ready = 'R';
    dst_ucx_address(o->ucx, &addr, &len);
    if (ucp_worker_get_address(r->worker, &raw_addr, &raw_len) != UCS_OK)
        return -1;
    int ok = blob_write(wr, addr, (uint32_t)len) == 0 &&
             blob_write(wr, raw_addr, (uint32_t)raw_len) == 0 &&
             (ours_len = blob_read(rd, peer_ours, sizeof(peer_ours))) > 0 &&
             (raw_peer_len = blob_read(rd, peer_raw, sizeof(peer_raw))) > 0;
    ucp_worker_release_address(r->worker, raw_addr);
    if (!ok || dst_ucx_connect(o->ucx, (uint32_t)!is_peer, peer_ours, (size_t)ours_len) != DSI_OK ||
        raw_connect(r, peer_raw) != 0)
        return -1;
    if (write(wr, &ready, 1) != 1 || read_full(rd, &ready, 1) != 0)
        return -1;
    return 0;
}

static int run_side(const plan_t *p, const char *tls, int rd, int wr, int is_peer, results_t *res)
{
    dst_wire_hdr_t big = dispatch_hdr(p, batch_tokens[N_BATCHES - 1]);
    dst_wire_hdr_t big_c = combine_hdr(&big);
    size_t max_bytes = dst_wire_payload_bytes(&big) > dst_wire_payload_bytes(&big_c)
                           ? dst_wire_payload_bytes(&big)
                           : dst_wire_payload_bytes(&big_c);
    max_bytes = (max_bytes + 63) / 64 * 64; /* aligned_alloc wants a multiple of 64 */
    ours_t o;
    raw_t r = {0};
    int64_t *t = calloc((size_t)p->iters, sizeof(*t));
    uint8_t *send_buf = aligned_alloc(64, max_bytes);
    int rc = -1;
    if (t == NULL || send_buf == NULL ||
        ours_create(&o, tls, is_peer, max_bytes, p->spin_us) != 0 ||
        raw_create(&r, tls, max_bytes) != 0 || connect_both(rd, wr, &o, &r, is_peer) != 0) {
        fprintf(stderr, "dsinfer bench transport: set-up failed (tls %s)\n", tls);
        goto out;
    }
    memset(send_buf, 0, max_bytes);
    for (size_t b = 0; b < N_BATCHES; b++) {
        dst_wire_hdr_t d = dispatch_hdr(p, batch_tokens[b]), c = combine_hdr(&d);
        size_t d_bytes = dst_wire_payload_bytes(&d), c_bytes = dst_wire_payload_bytes(&c);
        /* A valid pair list, so that the receiver's validation does its real work. */
        dst_wire_pair_t *pairs = (dst_wire_pair_t *)(send_buf + dst_wire_side_offset(&d));
        for (uint32_t i = 0; i < d.n_pairs; i++) {
            dst_wire_pair_t pr = {i / p->pairs_per_token, (uint16_t)(i % p->pairs_per_token),
                                  (uint16_t)i, 0.5f};
            pairs[i] = pr;
        }
        int n = WARMUP + p->iters;
        /* Raw: ping of d_bytes, pong of c_bytes. */
        int base = r.received;
        for (int i = 0; i < n; i++) {
            int64_t t0 = dsi_now_ns();
            if (is_peer) {
                if (raw_wait_received(&r, base + i + 1) != 0)
                    goto timeout;
                raw_send_wait(&r, r.buf, r.reply_bytes, 0);
            } else {
                raw_send_wait(&r, send_buf, d_bytes, c_bytes);
                if (raw_wait_received(&r, base + i + 1) != 0)
                    goto timeout;
                if (i >= WARMUP)
                    t[i - WARMUP] = dsi_now_ns() - t0;
            }
        }
        if (phase_sync(rd, wr, raw_progress, &r) != 0)
            goto timeout;
        if (!is_peer)
            res->raw_us[b] = median_us(t, p->iters);
        /* Ours: DISPATCH -> COMBINE. */
        base = o.received;
        for (int i = 0; i < n; i++) {
            int64_t t0 = dsi_now_ns();
            if (is_peer) {
                if (ours_wait(&o, &o.received, base + i + 1) != 0)
                    goto timeout;
            } else {
                if (dst_ucx_send(o.ucx, 1, &d, send_buf, d_bytes, reply_done, &o) != DSI_OK)
                    goto out;
                if (ours_wait(&o, &o.received, base + i + 1) != 0)
                    goto timeout;
                if (i >= WARMUP)
                    t[i - WARMUP] = dsi_now_ns() - t0;
            }
        }
        /* All our sends out before the raw phase stops progressing our worker. */
        if (ours_wait(&o, &o.replied, o.received) != 0 ||
            phase_sync(rd, wr, ours_progress, &o) != 0)
            goto timeout;
        if (!is_peer)
            res->ours_us[b] = median_us(t, p->iters);
        (void)c_bytes;
    }
    rc = o.send_failed ? -1 : 0;
    goto out;
timeout:
    fprintf(stderr, "dsinfer bench transport: no reply within %lld s (tls %s)\n",
            WAIT_NS / 1000000000ll, tls ? tls : "default");
out:
    raw_destroy(&r);
    if (o.ucx != NULL)
        ours_destroy(&o);
    free(send_buf);
    free(t);
    return rc;
}

/* ---------- driver ---------- */

static int run_tls(const plan_t *p, const char *tls, results_t *res)
{
    int p2c[2], c2p[2];
    if (pipe(p2c) != 0 || pipe(c2p) != 0)
        return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        char fds[32], iters[16], width[16], ppt[16], spin[16];
        close(p2c[1]);
        close(c2p[0]);
        snprintf(fds, sizeof(fds), "%d,%d", p2c[0], c2p[1]);
        snprintf(iters, sizeof(iters), "%d", p->iters);
        snprintf(width, sizeof(width), "%u", p->width);
        snprintf(ppt, sizeof(ppt), "%u", p->pairs_per_token);
        snprintf(spin, sizeof(spin), "%u", p->spin_us);
        execl("/proc/self/exe", "dsinfer", "bench", "transport", "--peer", fds, "--tls", tls,
              "--iters", iters, "--width", width, "--pairs-per-token", ppt, "--spin-us", spin,
              (char *)NULL);
        _exit(127);
    }
    close(p2c[0]);
    close(c2p[1]);
    int rc = run_side(p, strcmp(tls, "shm") == 0 ? NULL : tls, c2p[0], p2c[1], 0, res);
    close(c2p[0]);
    close(p2c[1]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        rc = -1;
    return rc;
}

static void print_results(const plan_t *p, const char *tls, const results_t *res, int json,
                          int first)
{
    for (size_t b = 0; b < N_BATCHES; b++) {
        dst_wire_hdr_t d = dispatch_hdr(p, batch_tokens[b]), c = combine_hdr(&d);
        size_t db = dst_wire_payload_bytes(&d), cb = dst_wire_payload_bytes(&c);
        double ratio = res->ours_us[b] / res->raw_us[b];
        if (json)
            printf("%s{\"tls\":\"%s\",\"tokens\":%u,\"width\":%u,\"dispatch_bytes\":%zu,"
                   "\"combine_bytes\":%zu,\"raw_us\":%.2f,\"dsinfer_us\":%.2f,\"ratio\":%.3f}",
                   first && b == 0 ? "" : ",\n ", tls, batch_tokens[b], p->width, db, cb,
                   res->raw_us[b], res->ours_us[b], ratio);
        else
            printf("%-4s %7u %12zu %12zu %10.1f %12.1f %7.2f\n", tls, batch_tokens[b], db, cb,
                   res->raw_us[b], res->ours_us[b], ratio);
    }
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: dsinfer bench transport [--json] [--tls shm|tcp|both] [--iters N]\n"
            "                               [--width W] [--pairs-per-token K]\n"
            "DISPATCH->COMBINE round trip through dst_ucx vs a raw UCX AM ping-pong of the\n"
            "same bytes, batches of 1..256 tokens, medians over N iterations (default 100).\n");
}

int dsinfer_bench_transport(int argc, char **argv)
{
    static const struct option opts[] = {
        {"json", no_argument, NULL, 'j'},
        {"tls", required_argument, NULL, 't'},
        {"iters", required_argument, NULL, 'n'},
        {"width", required_argument, NULL, 'w'},
        {"pairs-per-token", required_argument, NULL, 'k'},
        {"spin-us", required_argument, NULL, 's'},
        {"peer", required_argument, NULL, 'p'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    plan_t p = {.iters = 100, .width = 7168, .pairs_per_token = 1, .spin_us = 100};
    const char *tls = "both", *peer = NULL;
    int json = 0, c;
    long long v;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'j':
            json = 1;
            break;
        case 't':
            tls = optarg;
            break;
        case 'n':
            if (cli_parse_int("bench transport", "--iters", optarg, 1, 1000000, &v) != 0)
                return 2;
            p.iters = (int)v;
            break;
        case 'w':
            if (cli_parse_int("bench transport", "--width", optarg, 1, 16384, &v) != 0)
                return 2;
            p.width = (uint32_t)v;
            break;
        case 'k':
            if (cli_parse_int("bench transport", "--pairs-per-token", optarg, 1, 8, &v) != 0)
                return 2;
            p.pairs_per_token = (uint32_t)v;
            break;
        case 's':
            if (cli_parse_int("bench transport", "--spin-us", optarg, 0, 1000000, &v) != 0)
                return 2;
            p.spin_us = (uint32_t)v;
            break;
        case 'p':
            peer = optarg;
            break;
        default:
            return bench_opt_usage(c == 'h', usage);
        }
    }
    static const char *const tls_modes[] = {"shm", "tcp", "both", NULL};
    int tls_mode;
    if (cli_parse_choice("bench transport", "--tls", tls, tls_modes, &tls_mode) != 0)
        return 2;
    setenv("UCX_NET_DEVICES", "lo", 0); /* tcp measured over loopback only */
    if (peer != NULL) {
        int rd, wr;
        results_t unused;
        if (sscanf(peer, "%d,%d", &rd, &wr) != 2)
            return 2;
        return run_side(&p, strcmp(tls, "shm") == 0 ? NULL : tls, rd, wr, 1, &unused) ? 1 : 0;
    }
    if (json)
        printf("[");
    else
        printf("tls   tokens  dispatch_B   combine_B     raw_us  dsinfer_us   ratio\n");
    const char *modes[] = {"shm", "tcp"};
    int first = 1;
    for (int m = 0; m < 2; m++) {
        if (strcmp(tls, "both") && strcmp(tls, modes[m]))
            continue;
        results_t res;
        if (run_tls(&p, modes[m], &res) != 0) {
            fprintf(stderr, "dsinfer bench transport: the %s run failed\n", modes[m]);
            return 1;
        }
        print_results(&p, modes[m], &res, json, first);
        first = 0;
    }
    if (json)
        printf("]\n");
    return 0;
}
