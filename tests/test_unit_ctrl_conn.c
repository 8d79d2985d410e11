/*
 * Control connections on a real libuv loop over 127.0.0.1: a server and a client exchange the
 * handshake (HELLO / REGISTER with the HMAC proof / WELCOME) and traffic both ways; raw sockets
 * send garbage, an oversized length, a wrong version, truncated frames, slow frames, unknown and
 * invalid messages; the server answers ERROR, closes only when framing is broken, and keeps
 * serving a well-behaved client. Also: connect retry before the listener exists, giving up, the
 * send queue before open, a 671B-sized PLAN, and closing the listener; writing to a peer that
 * vanished (an error that closes the connection).
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dsi_log.h"
#include "dsi_test.h"
#include "dst_ctrl.h"
#include "dst_secret.h"

static uv_loop_t *loop;
static dst_secret_t secret;

/* ---- loop driving ------------------------------------------------------------------------ */

static void tick_cb(uv_timer_t *t)
{
    (void)t;
}

/* Runs the loop until *flag becomes true or timeout_ms passes; returns *flag. */
static int run_until(const int *flag, uint32_t timeout_ms)
{
    uv_timer_t tick;
    uv_timer_init(loop, &tick);
    uv_timer_start(&tick, tick_cb, 2, 2);
    uint64_t end = uv_now(loop) + timeout_ms;
    while (!*flag && uv_now(loop) < end) {
        uv_run(loop, UV_RUN_ONCE);
        uv_update_time(loop);
    }
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return *flag;
}

static void run_for(uint32_t ms)
{
    int never = 0;
    run_until(&never, ms);
}

/* ---- the server: a miniature coordinator ----------------------------------------------------- */

typedef struct {
    int opened, closed, registered, auth_failed, msgs;
    int last_type;
    uint8_t nonce[DST_MSG_NONCE_LEN];
    dsi_status_t last_close;
} server_t;

static server_t srv;
static dst_ctrl_conn_t *srv_last; /* the server side of the newest connection */

static void srv_open(dst_ctrl_conn_t *c, void *arg)
{
    (void)arg;
    srv.opened++;
    srv_last = c;
    dst_msg_t hello = {.type = DST_MSG_HELLO};
    dst_secret_nonce(hello.hello.nonce);
    memcpy(srv.nonce, hello.hello.nonce, sizeof(srv.nonce));
    DSI_CHECK_INT_EQ(dst_ctrl_send(c, &hello), DSI_OK);
}

static void srv_msg(dst_ctrl_conn_t *c, dst_msg_t *m, void *arg)
{
    (void)arg;
    srv.msgs++;
    srv.last_type = m->type;
    switch (m->type) {
    case DST_MSG_REGISTER:
        if (!dst_secret_register_verify(&secret, srv.nonce, m->reg.name, m->reg.auth)) {
            srv.auth_failed++;
            dst_ctrl_send_error(c, DSI_ERR_AUTH, DST_MSG_REGISTER, "bad proof for %s", m->reg.name);
            dst_ctrl_conn_close(c);
            return;
        }
        srv.registered++;
        dst_msg_t w = {.type = DST_MSG_WELCOME, .welcome = {.node_id = 7, .heartbeat_ms = 250}};
        dst_ctrl_send(c, &w);
        break;
    case DST_MSG_HEARTBEAT: {
        dst_msg_t h = *m; /* echo: same seq */
        dst_ctrl_send(c, &h);
        break;
    }
    case DST_MSG_SUBMIT: {
        /* answer with the prompt reversed, finished */
        int32_t *rev = malloc(m->submit.n_tokens * sizeof(int32_t));
        for (uint32_t i = 0; i < m->submit.n_tokens; i++)
            rev[i] = m->submit.tokens[m->submit.n_tokens - 1 - i];
        dst_msg_t t = {.type = DST_MSG_TOKENS};
        t.tokens = (dst_msg_tokens_t){.seq_id = m->submit.seq_id,
                                      .n_tokens = m->submit.n_tokens,
                                      .tokens = rev,
                                      .finish = DST_FINISH_STOP};
        DSI_CHECK_INT_EQ(dst_ctrl_send(c, &t), DSI_OK);
        free(rev); /* send copied it */
        break;
    }
    case DST_MSG_PLAN: {
        dst_msg_t r = {.type = DST_MSG_READY,
                       .ready = {.node_id = m->plan.plan.n_nodes, .epoch = m->plan.plan.epoch}};
        dst_ctrl_send(c, &r);
        break;
    }
    default:
        break;
    }
}

static void srv_close(dst_ctrl_conn_t *c, dsi_status_t why, void *arg)
{
    (void)c;
    (void)arg;
    srv.closed++;
    srv.last_close = why;
}

/* ---- a well-behaved client: a miniature node ---------------------------------------------- */

typedef struct {
    const char *name;
    int opened, closed, welcomed, got_tokens, got_heartbeat, got_ready, errors;
    dsi_status_t close_why;
    int32_t last_token0;
    uint32_t n_tokens;
    uint64_t ready_epoch;
    int bad_auth;
} client_t;

static uint8_t ucx_addr[64] = {1, 2, 3};
static int32_t prompt[5] = {10, 20, 30, 40, 50};

static void cli_open(dst_ctrl_conn_t *c, void *arg)
{
    (void)c;
    ((client_t *)arg)->opened++;
}

static void cli_msg(dst_ctrl_conn_t *c, dst_msg_t *m, void *arg)
{
    client_t *cl = arg;
    switch (m->type) {
    case DST_MSG_HELLO: {
        dst_msg_t r = {.type = DST_MSG_REGISTER};
        snprintf(r.reg.name, sizeof(r.reg.name), "%s", cl->name);
        r.reg.mem_budget = 1ull << 30;
        r.reg.cores = 2;
        r.reg.ucx_addr = ucx_addr;
        r.reg.ucx_addr_len = sizeof(ucx_addr);
        dst_secret_register_auth(&secret, m->hello.nonce, cl->name, r.reg.auth);
        if (cl->bad_auth)
            r.reg.auth[0] ^= 1;
        DSI_CHECK_INT_EQ(dst_ctrl_send(c, &r), DSI_OK);
        break;
    }
    case DST_MSG_WELCOME: {
        cl->welcomed++;
        DSI_CHECK_INT_EQ(m->welcome.node_id, 7);
        static uint32_t route0 = 7;
        dst_msg_t s = {.type = DST_MSG_SUBMIT};
        s.submit = (dst_msg_submit_t){.seq_id = 99,
                                      .n_tokens = 5,
                                      .tokens = prompt,
                                      .max_tokens = 16,
                                      .temperature = 0.0f,
                                      .top_p = 1.0f,
                                      .n_route = 1,
                                      .route = &route0};
        DSI_CHECK_INT_EQ(dst_ctrl_send(c, &s), DSI_OK);
        dst_msg_t h = {.type = DST_MSG_HEARTBEAT, .heartbeat = {.node_id = 7, .seq = 1}};
        DSI_CHECK_INT_EQ(dst_ctrl_send(c, &h), DSI_OK);
        break;
    }
    case DST_MSG_TOKENS:
        cl->got_tokens++;
        cl->n_tokens = m->tokens.n_tokens;
        cl->last_token0 = m->tokens.tokens[0];
        break;
    case DST_MSG_HEARTBEAT:
        cl->got_heartbeat++;
        break;
    case DST_MSG_READY:
        cl->got_ready++;
        cl->ready_epoch = m->ready.epoch;
        break;
    case DST_MSG_ERROR:
        cl->errors++;
        break;
    default:
        break;
    }
}

static void cli_close(dst_ctrl_conn_t *c, dsi_status_t why, void *arg)
{
    (void)c;
    client_t *cl = arg;
    cl->closed++;
    cl->close_why = why;
}

static const dst_ctrl_cb_t server_cb = {srv_open, srv_msg, srv_close, NULL};

/* A full session of a client against the server: handshake, SUBMIT -> TOKENS, heartbeat echo. */
static void good_client_session(uint16_t port, const char *name)
{
    client_t cl = {.name = name};
    dst_ctrl_cb_t cb = {cli_open, cli_msg, cli_close, &cl};
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", (unsigned)port);
    dst_ctrl_conn_t *c;
    DSI_CHECK_INT_EQ(dst_ctrl_connect(loop, addr, NULL, &cb, &c), DSI_OK);
    DSI_CHECK(run_until(&cl.got_heartbeat, 3000));
    DSI_CHECK_INT_EQ(cl.opened, 1);
    DSI_CHECK_INT_EQ(cl.welcomed, 1);
    DSI_CHECK_INT_EQ(cl.got_tokens, 1);
    DSI_CHECK_INT_EQ(cl.n_tokens, 5);
    DSI_CHECK_INT_EQ(cl.last_token0, 50);
    DSI_CHECK_INT_EQ(cl.errors, 0);
    dst_ctrl_conn_close(c);
    DSI_CHECK(run_until(&cl.closed, 2000));
    DSI_CHECK_INT_EQ(cl.close_why, DSI_OK);
}

/* ---- raw sockets ------------------------------------------------------------------------------
 */

typedef struct {
    int fd;
    char buf[1 << 16];
    size_t len;
    int eof;
} raw_t;

static int raw_connect(raw_t *r, uint16_t port)
{
    memset(r, 0, sizeof(*r));
    r->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return connect(r->fd, (struct sockaddr *)&sa, sizeof(sa));
}

static void raw_send(raw_t *r, const void *p, size_t n)
{
    DSI_CHECK_INT_EQ(send(r->fd, p, n, MSG_NOSIGNAL), (long long)n);
}

/* A frame with a valid header around body bytes. */
static void raw_send_frame(raw_t *r, const void *body, size_t n)
{
    uint8_t hdr[8] = {'D',
                      'S',
                      'C',
                      DST_CTRL_FRAME_VERSION,
                      (uint8_t)(n >> 24),
                      (uint8_t)(n >> 16),
                      (uint8_t)(n >> 8),
                      (uint8_t)n};
    raw_send(r, hdr, 8);
    if (n > 0)
        raw_send(r, body, n);
}

static void raw_send_msg(raw_t *r, const dst_msg_t *m)
{
    msgpack_sbuffer sb;
    char err[128];
    msgpack_sbuffer_init(&sb);
    DSI_CHECK_INT_EQ(dst_msg_encode(m, &sb, err, sizeof(err)), DSI_OK);
    raw_send_frame(r, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
}

static void raw_pump(raw_t *r)
{
    while (!r->eof && r->len < sizeof(r->buf)) {
        ssize_t n = recv(r->fd, r->buf + r->len, sizeof(r->buf) - r->len, MSG_DONTWAIT);
        if (n > 0)
            r->len += (size_t)n;
        else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
            r->eof = 1;
        else
            return;
    }
}

/* Pops one complete frame into *m (1), or 0 when none is complete. */
static int raw_pop(raw_t *r, dst_msg_t *m)
{
    if (r->len < 8)
        return 0;
    uint32_t n = (uint32_t)(uint8_t)r->buf[4] << 24 | (uint32_t)(uint8_t)r->buf[5] << 16 |
                 (uint32_t)(uint8_t)r->buf[6] << 8 | (uint8_t)r->buf[7];
    if (r->len < 8 + (size_t)n)
        return 0;
    char err[256];
    DSI_CHECK(memcmp(r->buf, "DSC\x01", 4) == 0);
    dsi_status_t st = dst_msg_decode(r->buf + 8, n, m, err, sizeof(err));
    DSI_CHECK_INT_EQ(st, DSI_OK);
    memmove(r->buf, r->buf + 8 + n, r->len - 8 - n);
    r->len -= 8 + n;
    return st == DSI_OK;
}

/* Runs the loop until the raw socket has a frame (1) or timeout. */
static int raw_wait_msg(raw_t *r, dst_msg_t *m, uint32_t timeout_ms)
{
    uint64_t end = uv_now(loop) + timeout_ms;
    while (uv_now(loop) < end) {
        raw_pump(r);
        if (raw_pop(r, m))
            return 1;
        if (r->eof)
            return 0;
        run_for(5);
    }
    return 0;
}

static int raw_wait_eof(raw_t *r, uint32_t timeout_ms)
{
    uint64_t end = uv_now(loop) + timeout_ms;
    while (!r->eof && uv_now(loop) < end) {
        raw_pump(r);
        r->len = 0;
        run_for(5);
    }
    return r->eof;
}

/* The raw client expects the server's HELLO first. */
static raw_t *raw_open(uint16_t port)
{
    raw_t *r = malloc(sizeof(*r));
    DSI_CHECK_INT_EQ(raw_connect(r, port), 0);
    dst_msg_t m;
    DSI_CHECK(raw_wait_msg(r, &m, 2000));
    DSI_CHECK_INT_EQ(m.type, DST_MSG_HELLO);
    dst_msg_free(&m);
    return r;
}

static void raw_close(raw_t *r)
{
    close(r->fd);
    free(r);
}

/* Expects an ERROR reply with `code`, then (if closes) EOF; else the connection still answers. */
static void expect_error_reply(const char *what, raw_t *r, dsi_status_t code, uint32_t ref_type,
                               int closes)
{
    dst_msg_t m;
    int got = raw_wait_msg(r, &m, 2000);
    if (!got)
        fprintf(stderr, "  %s: no reply\n", what);
    DSI_CHECK(got);
    if (!got)
        return;
    DSI_CHECK_INT_EQ(m.type, DST_MSG_ERROR);
    if (m.type == DST_MSG_ERROR) {
        if (m.error.code != code)
            fprintf(stderr, "  %s: ERROR %d \"%s\"\n", what, m.error.code, m.error.text);
        DSI_CHECK_INT_EQ(m.error.code, code);
        DSI_CHECK_INT_EQ(m.error.ref_type, ref_type);
        DSI_CHECK(m.error.text[0] != 0);
    }
    dst_msg_free(&m);
    if (closes) {
        DSI_CHECK(raw_wait_eof(r, 2000));
    } else {
        dst_msg_t hb = {.type = DST_MSG_HEARTBEAT, .heartbeat = {.node_id = 1, .seq = 42}};
        raw_send_msg(r, &hb);
        got = raw_wait_msg(r, &m, 2000);
        DSI_CHECK(got && m.type == DST_MSG_HEARTBEAT && m.heartbeat.seq == 42);
        if (got)
            dst_msg_free(&m);
    }
}

/* Runs fn with stderr captured into buf (for checking log lines). */
static void capture_stderr_begin(int *saved, char *path)
{
    fflush(stderr);
    *saved = dup(2);
    int fd = mkstemp(path);
    dup2(fd, 2);
    close(fd);
}

static void capture_stderr_end(int saved, const char *path, char *buf, size_t cap)
{
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, cap - 1, f) : 0;
    buf[n] = 0;
    if (f)
        fclose(f);
    unlink(path);
}

static void test_bad_peers(void)
{
    dst_ctrl_opts_t opts;
    dst_ctrl_opts_default(&opts);
    opts.frame_timeout_ms = 300;
    opts.max_frame = 1 << 20;
    dst_ctrl_listener_t *l;
    DSI_CHECK_INT_EQ(dst_ctrl_listen(loop, "127.0.0.1:0", &opts, &server_cb, &l), DSI_OK);
    uint16_t port = dst_ctrl_listener_port(l);
    DSI_CHECK(port != 0);

    /* A well-behaved client first. */
    good_client_session(port, "node-a");
    DSI_CHECK_INT_EQ(srv.registered, 1);

    /* Garbage (an HTTP request): bad magic, ERROR, closed, and a log line naming the peer. */
    raw_t *r = raw_open(port);
    struct sockaddr_in me;
    socklen_t mlen = sizeof(me);
    getsockname(r->fd, (struct sockaddr *)&me, &mlen);
    char path[] = "/tmp/dsinfer-ctrl-log-XXXXXX", log[8192], peer[64];
    int saved;
    capture_stderr_begin(&saved, path);
    raw_send(r, "GET / HTTP/1.1\r\n\r\n", 18);
    expect_error_reply("garbage", r, DSI_ERR_PROTOCOL, 0, 1);
    capture_stderr_end(saved, path, log, sizeof(log));
    snprintf(peer, sizeof(peer), "127.0.0.1:%u", (unsigned)ntohs(me.sin_port));
    DSI_CHECK(strstr(log, peer) != NULL);
    DSI_CHECK(strstr(log, "bad magic") != NULL);
    raw_close(r);

    /* Oversized length. */
    r = raw_open(port);
    raw_send(r, "DSC\x01\x00\x10\x00\x01", 8); /* 1 MiB + 1 */
    expect_error_reply("oversized", r, DSI_ERR_TOO_LARGE, 0, 1);
    raw_close(r);

    /* A frame version from the future. */
    r = raw_open(port);
    raw_send(r, "DSC\x02\x00\x00\x00\x01\x80", 9);
    expect_error_reply("version", r, DSI_ERR_UNSUPPORTED, 0, 1);
    raw_close(r);

    /* Truncated frame, then the write side closed: ERROR where possible, then closed. */
    r = raw_open(port);
    raw_send(r,
             "DSC\x01\x00\x00\x00\x64"
             "0123456789",
             18);
    shutdown(r->fd, SHUT_WR);
    expect_error_reply("truncated", r, DSI_ERR_PROTOCOL, 0, 1);
    raw_close(r);

    /* Truncated header, then a full close: nothing to reply to, but no crash or leak. */
    r = raw_open(port);
    raw_send(r, "DSC", 3);
    raw_close(r);
    run_for(50);

    /* Slowloris: half a header, then silence: timed out. */
    r = raw_open(port);
    raw_send(r, "DSC\x01\x00", 5);
    uint64_t t0 = uv_now(loop);
    expect_error_reply("slow frame", r, DSI_ERR_TIMEOUT, 0, 1);
    uint64_t waited = uv_now(loop) - t0;
    DSI_CHECK(waited >= 250 && waited < 1500);
    raw_close(r);

    /* Well-framed but unknown type, invalid field, empty body: ERROR, connection kept. */
    r = raw_open(port);
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "type", 4);
    msgpack_pack_uint32(&pk, 99);
    msgpack_pack_str_with_body(&pk, "v", 1);
    msgpack_pack_uint32(&pk, 1);
    raw_send_frame(r, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    expect_error_reply("unknown type", r, DSI_ERR_UNSUPPORTED, 99, 0);
    raw_send_frame(r, "\x81\xa4type\x0b", 7); /* SUBMIT without fields */
    expect_error_reply("invalid SUBMIT", r, DSI_ERR_PROTOCOL, DST_MSG_SUBMIT, 0);
    raw_send_frame(r, "", 0);
    expect_error_reply("empty body", r, DSI_ERR_PROTOCOL, 0, 0);
    raw_send_frame(r, "\xdd\xff\xff\xff\xff", 5); /* array claiming 2^32-1 items */
    expect_error_reply("huge array claim", r, DSI_ERR_PROTOCOL, 0, 0);
    /* Too many refused messages: closed. */
    int replies = 0;
    for (int i = 0; i < 20; i++)
        raw_send_frame(r, "\xc1", 1);
    dst_msg_t m;
    while (raw_wait_msg(r, &m, 1000)) {
        replies += m.type == DST_MSG_ERROR;
        dst_msg_free(&m);
    }
    DSI_CHECK(r->eof);
    DSI_CHECK_INT_EQ(replies, 13); /* 12 refusals until the limit of 16, then the closing one */
    raw_close(r);

    /* A client with a wrong proof is refused by the application and closed. */
    client_t bad = {.name = "intruder", .bad_auth = 1};
    dst_ctrl_cb_t bcb = {cli_open, cli_msg, cli_close, &bad};
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", (unsigned)port);
    dst_ctrl_conn_t *bc;
    DSI_CHECK_INT_EQ(dst_ctrl_connect(loop, addr, NULL, &bcb, &bc), DSI_OK);
    DSI_CHECK(run_until(&bad.closed, 2000));
    DSI_CHECK_INT_EQ(bad.errors, 1);
    DSI_CHECK_INT_EQ(bad.welcomed, 0);
    DSI_CHECK_INT_EQ(srv.auth_failed, 1);

    /* After all that, a second well-behaved client is served as the first was. */
    good_client_session(port, "node-b");
    DSI_CHECK_INT_EQ(srv.registered, 2);

    dst_ctrl_stats_t st;
    dst_ctrl_listener_stats(l, &st);
    printf("server stats: accepted %llu closed %llu msgs %llu bad msgs %llu bad frames %llu "
           "errors sent %llu\n",
           (unsigned long long)st.accepted, (unsigned long long)st.closed,
           (unsigned long long)st.msgs_in, (unsigned long long)st.bad_msgs,
           (unsigned long long)st.bad_frames, (unsigned long long)st.errors_sent);
    DSI_CHECK_INT_EQ(st.accepted, 10);
    DSI_CHECK_INT_EQ(st.closed, 10);
    /* garbage, oversized, version, truncated x2, slow, too many refused */
    DSI_CHECK_INT_EQ(st.bad_frames, 7);
    DSI_CHECK_INT_EQ(st.bad_msgs, 16); /* the limit per connection */
    DSI_CHECK_INT_EQ(srv.opened, 10);
    DSI_CHECK_INT_EQ(srv.closed, 10);
    dst_ctrl_listener_close(l);
    run_for(20);
}

/* ---- connect retry, queue before open, big PLAN, listener close -------------------------------
 */

static uint16_t free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(sa);
    bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    getsockname(fd, (struct sockaddr *)&sa, &len);
    close(fd);
    return ntohs(sa.sin_port);
}

static void test_retry_and_plan(void)
{
    uint16_t port = free_port();
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", (unsigned)port);

    /* Giving up after 3 attempts on a port nobody listens on. */
    dst_ctrl_opts_t opts;
    dst_ctrl_opts_default(&opts);
    opts.connect_retry_min_ms = 10;
    opts.connect_retry_max_ms = 40;
    opts.connect_attempts = 3;
    client_t gone = {.name = "x"};
    dst_ctrl_cb_t gcb = {cli_open, cli_msg, cli_close, &gone};
    dst_ctrl_conn_t *c;
    DSI_CHECK_INT_EQ(dst_ctrl_connect(loop, addr, &opts, &gcb, &c), DSI_OK);
    DSI_CHECK(run_until(&gone.closed, 2000));
    DSI_CHECK_INT_EQ(gone.close_why, DSI_ERR_CONNECTION);
    DSI_CHECK_INT_EQ(gone.opened, 0);

    /* A node started before its coordinator: retries until the listener appears. Messages sent
     * before the connection opens are queued and delivered in order. */
    opts.connect_attempts = 0;
    client_t early = {.name = "early"};
    dst_ctrl_cb_t ecb = {cli_open, cli_msg, cli_close, &early};
    DSI_CHECK_INT_EQ(dst_ctrl_connect(loop, addr, &opts, &ecb, &c), DSI_OK);
    dst_msg_t hb = {.type = DST_MSG_HEARTBEAT, .heartbeat = {.node_id = 3, .seq = 5}};
    DSI_CHECK_INT_EQ(dst_ctrl_send(c, &hb), DSI_OK);
    DSI_CHECK(dst_ctrl_conn_queued(c) > 0);
    run_for(120);
    DSI_CHECK_INT_EQ(early.opened, 0);
    dst_ctrl_listener_t *l;
    memset(&srv, 0, sizeof(srv));
    DSI_CHECK_INT_EQ(dst_ctrl_listen(loop, addr, NULL, &server_cb, &l), DSI_OK);
    DSI_CHECK(run_until(&early.got_heartbeat, 3000)); /* the echo of the queued heartbeat */
    DSI_CHECK_INT_EQ(early.opened, 1);
    DSI_CHECK_INT_EQ(early.welcomed, 1); /* HELLO -> REGISTER -> WELCOME also ran */

    /* A PLAN the size of DeepSeek-V3's: 61 layers, 58 MoE x 256 experts, 2 holders each. */
    enum { N_NODES = 16, SLOTS = 58 * 256 };
    dst_plan_stage_t stages[4] = {{0, 16}, {16, 31}, {31, 46}, {46, 61}};
    dst_plan_node_t nodes[N_NODES];
    uint32_t *offsets = malloc((SLOTS + 1) * sizeof(uint32_t));
    uint32_t *holders = malloc(2 * SLOTS * sizeof(uint32_t));
    for (int i = 0; i < N_NODES; i++)
        nodes[i] = (dst_plan_node_t){100 + i, (uint32_t)i % 4, 1ull << 40, 1ull << 39};
    for (int i = 0; i <= SLOTS; i++)
        offsets[i] = 2 * i;
    for (int i = 0; i < SLOTS; i++) {
        holders[2 * i] = 100 + i % N_NODES;
        holders[2 * i + 1] = 100 + (i + 1) % N_NODES;
    }
    dst_msg_t plan = {.type = DST_MSG_PLAN};
    plan.plan.plan = (dst_plan_t){.epoch = 12,
                                  .n_layers = 61,
                                  .first_moe_layer = 3,
                                  .n_experts = 256,
                                  .n_stages = 4,
                                  .stages = stages,
                                  .n_nodes = N_NODES,
                                  .nodes = nodes,
                                  .expert_offsets = offsets,
                                  .expert_holders = holders};
    uint64_t t0 = uv_hrtime();
    DSI_CHECK_INT_EQ(dst_ctrl_send(c, &plan), DSI_OK);
    DSI_CHECK(run_until(&early.got_ready, 3000));
    printf("671B-sized PLAN (%d slots): sent, decoded, validated and answered in %.2f ms\n", SLOTS,
           (double)(uv_hrtime() - t0) / 1e6);
    DSI_CHECK_INT_EQ(early.ready_epoch, 12);
    free(offsets);
    free(holders);

    /* A body over this side's max_frame is refused at send. */
    dst_ctrl_opts_t small;
    dst_ctrl_opts_default(&small);
    small.max_frame = 200; /* REGISTER fits, 300 token ids do not */
    client_t sm = {.name = "small"};
    dst_ctrl_cb_t scb = {cli_open, cli_msg, cli_close, &sm};
    dst_ctrl_conn_t *sc;
    DSI_CHECK_INT_EQ(dst_ctrl_connect(loop, addr, &small, &scb, &sc), DSI_OK);
    int32_t many[300] = {0};
    dst_msg_t big = {.type = DST_MSG_TOKENS,
                     .tokens = {.seq_id = 1, .n_tokens = 300, .tokens = many}};
    DSI_CHECK_INT_EQ(dst_ctrl_send(sc, &big), DSI_ERR_TOO_LARGE);
    dst_msg_t invalid = {.type = DST_MSG_WELCOME}; /* heartbeat_ms 0 */
    DSI_CHECK_INT_EQ(dst_ctrl_send(sc, &invalid), DSI_ERR_INVALID_ARG);
    DSI_CHECK(run_until(&sm.opened, 2000));

    /* Closing the listener closes what it accepted; the clients see the peer go away. */
    dst_ctrl_listener_close(l);
    int both = 0;
    uint64_t end = uv_now(loop) + 2000;
    while (!both && uv_now(loop) < end) {
        run_for(5);
        both = early.closed && sm.closed;
    }
    DSI_CHECK_INT_EQ(early.closed, 1);
    DSI_CHECK_INT_EQ(early.close_why, DSI_ERR_CONNECTION);
    DSI_CHECK_INT_EQ(sm.closed, 1);
    DSI_CHECK_INT_EQ(srv.closed, 2);
    DSI_CHECK_INT_EQ(srv.last_close, DSI_OK);
}

static void test_addresses(void)
{
    char host[64];
    uint16_t port;
    DSI_CHECK_INT_EQ(dst_ctrl_addr_parse("127.0.0.1:80", host, sizeof(host), &port), DSI_OK);
    DSI_CHECK_STR_EQ(host, "127.0.0.1");
    DSI_CHECK_INT_EQ(port, 80);
    DSI_CHECK_INT_EQ(dst_ctrl_addr_parse("[::1]:0", host, sizeof(host), &port), DSI_OK);
    DSI_CHECK_STR_EQ(host, "::1");
    DSI_CHECK_INT_EQ(dst_ctrl_addr_parse("coord.example:7000", host, sizeof(host), &port), DSI_OK);
    const char *bad[] = {"",       ":80",     "host", "host:", "host:65536",
                         "::1:80", "[::1]80", "h:8x", "[]:80"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        DSI_CHECK_INT_EQ(dst_ctrl_addr_parse(bad[i], host, sizeof(host), &port),
                         DSI_ERR_INVALID_ARG);
    /* The interface that reaches an address: loopback for loopback addresses, none for an
     * address outside every local subnet (TEST-NET-3). */
    char ifname[64];
    DSI_CHECK_INT_EQ(dst_ctrl_addr_netdev("127.0.0.1:80", ifname, sizeof(ifname)), DSI_OK);
    DSI_CHECK_STR_EQ(ifname, "lo");
    DSI_CHECK_INT_EQ(dst_ctrl_addr_netdev("127.0.0.2:80", ifname, sizeof(ifname)), DSI_OK);
    DSI_CHECK_STR_EQ(ifname, "lo");
    DSI_CHECK_INT_EQ(dst_ctrl_addr_netdev("203.0.113.1:80", ifname, sizeof(ifname)),
                     DSI_ERR_NOT_FOUND);
    DSI_CHECK_INT_EQ(dst_ctrl_addr_netdev("nonsense", ifname, sizeof(ifname)), DSI_ERR_INVALID_ARG);
    dst_ctrl_listener_t *l;
    DSI_CHECK_INT_EQ(dst_ctrl_listen(loop, "localhost:0", NULL, &server_cb, &l),
                     DSI_ERR_INVALID_ARG);
    dst_ctrl_conn_t *c;
    DSI_CHECK_INT_EQ(dst_ctrl_connect(loop, "127.0.0.1:0", NULL, &server_cb, &c),
                     DSI_ERR_INVALID_ARG);
    /* Listening twice on one port fails cleanly. */
    DSI_CHECK_INT_EQ(dst_ctrl_listen(loop, "127.0.0.1:0", NULL, &server_cb, &l), DSI_OK);
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", (unsigned)dst_ctrl_listener_port(l));
    dst_ctrl_listener_t *l2;
    DSI_CHECK_INT_EQ(dst_ctrl_listen(loop, addr, NULL, &server_cb, &l2), DSI_ERR_CONNECTION);
    dst_ctrl_listener_close(l);
    run_for(20);
}

/* A connection that never sends a frame is closed after idle_timeout_ms, when set. */
static void test_idle_timeout(void)
{
    dst_ctrl_opts_t opts;
    dst_ctrl_opts_default(&opts);
    opts.idle_timeout_ms = 150;
    dst_ctrl_listener_t *l;
    memset(&srv, 0, sizeof(srv));
    DSI_CHECK_INT_EQ(dst_ctrl_listen(loop, "127.0.0.1:0", &opts, &server_cb, &l), DSI_OK);
    raw_t *r = raw_open(dst_ctrl_listener_port(l)); /* reads HELLO, then stays silent */
    uint64_t t0 = uv_now(loop);
    expect_error_reply("idle", r, DSI_ERR_TIMEOUT, 0, 1);
    uint64_t waited = uv_now(loop) - t0;
    DSI_CHECK(waited >= 100 && waited < 1500);
    raw_close(r);
    run_for(20);
    DSI_CHECK_INT_EQ(srv.closed, 1);
    DSI_CHECK_INT_EQ(srv.last_close, DSI_ERR_TIMEOUT);
    dst_ctrl_listener_close(l);
    run_for(20);
}

/* The peer closes its connection; the server keeps writing to it without reading. The first
 * write reaches the peer's kernel, which answers with a reset; the next fails and the connection
 * closes with an error. (SIGPIPE, which a write after the reset could raise, is ignored by the
 * library: dsi_ignore_sigpipe.) */
static void test_peer_gone(void)
{
    dst_ctrl_listener_t *l;
    memset(&srv, 0, sizeof(srv));
    DSI_CHECK_INT_EQ(dst_ctrl_listen(loop, "127.0.0.1:0", NULL, &server_cb, &l), DSI_OK);
    raw_t *r = raw_open(dst_ctrl_listener_port(l));
    raw_close(r);
    usleep(20000);
    dst_msg_t h = {.type = DST_MSG_HEARTBEAT, .heartbeat = {.node_id = 1, .seq = 1}};
    for (int i = 0; i < 4; i++) { /* the loop does not run: no read sees the EOF first */
        dst_ctrl_send(srv_last, &h);
        usleep(20000);
    }
    run_until(&srv.closed, 2000);
    DSI_CHECK_INT_EQ(srv.closed, 1);
    DSI_CHECK(srv.last_close != DSI_OK);
    dst_ctrl_listener_close(l);
    run_for(20);
}

int main(void)
{
    uv_loop_t lp;
    uv_loop_init(&lp);
    loop = &lp;
    memcpy(secret.bytes, "test secret of the cluster", 26);
    secret.len = 26;

    test_addresses();
    test_bad_peers();
    test_retry_and_plan();
    test_idle_timeout();
    test_peer_gone();

    /* Everything closed: the loop has no handle left, so nothing leaked on it. */
    run_for(50);
    DSI_CHECK_INT_EQ(uv_loop_close(&lp), 0);
    return dsi_test_finish();
}
