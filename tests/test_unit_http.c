/*
 * test_unit_http.c - the HTTP server (dsc_http) over real sockets on 127.0.0.1: keep-alive,
 * pipelining, routing, bodies, streaming, and every defence: size limits, slow clients, idle
 * and excess connections, clients that disconnect or do not read.
 *
 * The server runs its loop on a second thread; the test is the client, with blocking sockets.
 */
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <uv.h>

#include "dsc_http.h"
#include "dsi_clock.h"
#include "dsi_test.h"
#include "test_unit_http_client.h"

typedef struct {
    uv_loop_t loop;
    uv_async_t stop;
    dsc_http_config_t cfg;
    dsc_http_server_t *server;
    pthread_t thread;
    sem_t ready;
    int port;
    atomic_int closes; /* close callbacks of handed requests */
    atomic_int drops;  /* stream writes refused (client gone or not reading) */
    atomic_int streams_ended;
} srv_t;

typedef struct {
    uv_timer_t timer;
    dsc_http_req_t *req;
    srv_t *srv;
    int i, n, big;
} stream_t;

static void on_hello(void *arg, dsc_http_req_t *req)
{
    (void)arg;
    dsc_http_respond(req, 200, "text/plain", NULL, "hello", 5);
}

static void on_echo(void *arg, dsc_http_req_t *req)
{
    (void)arg;
    size_t len;
    const char *body = dsc_http_req_body(req, &len);
    dsc_http_respond(req, 200, "application/octet-stream", NULL, body, len);
}

static void stream_timer_closed(uv_handle_t *h)
{
    free(h->data);
}

static void stream_finish(stream_t *st)
{
    dsc_http_stream_end(st->req);
    atomic_fetch_add(&st->srv->streams_ended, 1);
    uv_close((uv_handle_t *)&st->timer, stream_timer_closed);
}

static void stream_tick(uv_timer_t *t)
{
    stream_t *st = t->data;
    dsi_status_t rc;
    if (st->big) {
        static char block[64 * 1024];
        memset(block, 'x', sizeof(block));
        rc = dsc_http_stream_write(st->req, block, sizeof(block));
    } else {
        char line[32];
        int n = snprintf(line, sizeof(line), "chunk %d\n", st->i);
        rc = dsc_http_stream_write(st->req, line, (size_t)n);
    }
    if (rc != DSI_OK) {
        atomic_fetch_add(&st->srv->drops, 1);
        uv_timer_stop(t);
        return; /* the close callback finishes the request */
    }
    if (++st->i == st->n) {
        uv_timer_stop(t);
        stream_finish(st);
    }
}

static void stream_client_gone(void *arg, dsc_http_req_t *req)
{
    (void)req;
    stream_t *st = arg;
    atomic_fetch_add(&st->srv->closes, 1);
    uv_timer_stop(&st->timer);
    stream_finish(st);
}

/* GET /stream?n=N&ms=M (or /big?n=N: 64 KiB blocks every ms). */
static void start_stream(srv_t *srv, dsc_http_req_t *req, int big)
{
    stream_t *st = calloc(1, sizeof(*st));
    int n = 5, ms = 5;
    sscanf(dsc_http_req_query(req), "n=%d&ms=%d", &n, &ms);
    st->req = req;
    st->srv = srv;
    st->n = n;
    st->big = big;
    uv_timer_init(&srv->loop, &st->timer);
    st->timer.data = st;
    dsc_http_req_on_close(req, stream_client_gone, st);
    dsc_http_stream_begin(req, 200, "text/event-stream", "Cache-Control: no-cache\r\n");
    uv_timer_start(&st->timer, stream_tick, (uint64_t)(big ? 1 : ms), (uint64_t)(big ? 1 : ms));
}

static void on_stream(void *arg, dsc_http_req_t *req)
{
    start_stream(arg, req, 0);
}

static void on_big(void *arg, dsc_http_req_t *req)
{
    start_stream(arg, req, 1);
}

static void on_stop(uv_async_t *a)
{
    srv_t *srv = a->data;
    dsc_http_server_destroy(srv->server, NULL, NULL);
    uv_close((uv_handle_t *)a, NULL);
}

static void *srv_main(void *arg)
{
    srv_t *srv = arg;
    uv_run(&srv->loop, UV_RUN_DEFAULT);
    return NULL;
}

static int srv_start(srv_t *srv, const dsc_http_config_t *cfg)
{
    memset(srv, 0, sizeof(*srv));
    srv->cfg = *cfg;
    uv_loop_init(&srv->loop);
    uv_async_init(&srv->loop, &srv->stop, on_stop);
    srv->stop.data = srv;
    if (dsc_http_server_create(&srv->loop, cfg, &srv->server) != DSI_OK)
        return -1;
    dsc_http_server_route(srv->server, "GET", "/hello", on_hello, srv);
    dsc_http_server_route(srv->server, "POST", "/echo", on_echo, srv);
    dsc_http_server_route(srv->server, "GET", "/stream", on_stream, srv);
    dsc_http_server_route(srv->server, "GET", "/big", on_big, srv);
    if (dsc_http_server_listen(srv->server) != DSI_OK)
        return -1;
    srv->port = dsc_http_server_port(srv->server);
    pthread_create(&srv->thread, NULL, srv_main, srv);
    return 0;
}

static void srv_stop(srv_t *srv)
{
    uv_async_send(&srv->stop);
    pthread_join(srv->thread, NULL);
    DSI_CHECK_INT_EQ(uv_loop_close(&srv->loop), 0); /* every handle was closed */
}

static int wait_atomic(atomic_int *v, int want, int timeout_ms)
{
    for (int i = 0; i < timeout_ms && atomic_load(v) < want; i++)
        usleep(1000);
    return atomic_load(v);
}

static void test_basic(int port)
{
    tc_response_t r;
    DSI_CHECK_INT_EQ(tc_request(port, "GET", "/hello", NULL, NULL, 0, &r), 0);
    DSI_CHECK_INT_EQ(r.status, 200);
    DSI_CHECK_STR_EQ(r.body, "hello");
    tc_response_free(&r);
    tc_request(port, "GET", "/nothing", NULL, NULL, 0, &r);
    DSI_CHECK_INT_EQ(r.status, 404);
    DSI_CHECK(r.body && strstr(r.body, "\"error\"") != NULL);
    tc_response_free(&r);
    tc_request(port, "POST", "/hello", NULL, "x", 1, &r);
    DSI_CHECK_INT_EQ(r.status, 405);
    tc_response_free(&r);
    tc_request(port, "GET", "/hello?x=1", NULL, NULL, 0, &r);
    DSI_CHECK_INT_EQ(r.status, 200);
    tc_response_free(&r);
}

static void test_keepalive_and_pipelining(int port)
{
    int fd = tc_connect(port);
    tc_carry_t carry = {.len = 0};
    tc_response_t r;
    for (int i = 0; i < 3; i++) {
        tc_send_str(fd, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
        DSI_CHECK_INT_EQ(tc_read_response_carry(fd, &r, &carry), 0);
        DSI_CHECK_INT_EQ(r.status, 200);
        DSI_CHECK_INT_EQ(r.keep_alive, 1);
        tc_response_free(&r);
    }
    /* Three requests in one packet, answered in order. */
    tc_send_str(fd, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
                    "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"
                    "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "2\r\nde\r\n1\r\nf\r\n0\r\n\r\n");
    const char *want[3] = {"abc", "hello", "def"};
    for (int i = 0; i < 3; i++) {
        DSI_CHECK_INT_EQ(tc_read_response_carry(fd, &r, &carry), 0);
        DSI_CHECK_INT_EQ(r.status, 200);
        DSI_CHECK_STR_EQ(r.body, want[i]);
        tc_response_free(&r);
    }
    /* Connection: close is honoured. */
    tc_send_str(fd, "GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    DSI_CHECK_INT_EQ(tc_read_response_carry(fd, &r, &carry), 0);
    DSI_CHECK_INT_EQ(r.keep_alive, 0);
    tc_response_free(&r);
    DSI_CHECK(tc_wait_closed(fd, 2000));
    close(fd);
}

static void test_bodies(int port, size_t max_body)
{
    /* A body at the limit is echoed whole (curl-style Expect: 100-continue). */
    char *big = malloc(max_body);
    for (size_t i = 0; i < max_body; i++)
        big[i] = (char)('a' + i % 26);
    tc_response_t r;
    DSI_CHECK_INT_EQ(
        tc_request(port, "POST", "/echo", "Expect: 100-continue\r\n", big, max_body, &r), 0);
    DSI_CHECK_INT_EQ(r.status, 200);
    DSI_CHECK_INT_EQ(r.body_len, max_body);
    DSI_CHECK(r.body && memcmp(r.body, big, max_body) == 0);
    tc_response_free(&r);

    /* Over the limit by Content-Length: 413 before the body is read, then close. */
    int fd = tc_connect(port);
    char head[256];
    snprintf(head, sizeof(head), "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n",
             max_body + 1);
    tc_send_str(fd, head);
    DSI_CHECK_INT_EQ(tc_read_response(fd, &r), 0);
    DSI_CHECK_INT_EQ(r.status, 413);
    DSI_CHECK(r.body && strstr(r.body, "too large") != NULL);
    tc_response_free(&r);
    DSI_CHECK(tc_wait_closed(fd, 2000));
    close(fd);

    /* Over the limit in chunks (no Content-Length). */
    fd = tc_connect(port);
    tc_send_str(fd, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    char chunk_head[32];
    snprintf(chunk_head, sizeof(chunk_head), "%zx\r\n", max_body);
    tc_send_str(fd, chunk_head);
    tc_send(fd, big, max_body);
    tc_send_str(fd, "\r\n5\r\nabcde\r\n0\r\n\r\n");
    DSI_CHECK_INT_EQ(tc_read_response(fd, &r), 0);
    DSI_CHECK_INT_EQ(r.status, 413);
    tc_response_free(&r);
    close(fd);
    free(big);
}

static void test_bad_heads(int port, size_t max_header)
{
    tc_response_t r;
    int fd = tc_connect(port);
    tc_send_str(fd, "THIS IS NOT HTTP\r\n\r\n");
    DSI_CHECK_INT_EQ(tc_read_response(fd, &r), 0);
    DSI_CHECK_INT_EQ(r.status, 400);
    tc_response_free(&r);
    DSI_CHECK(tc_wait_closed(fd, 2000));
    close(fd);

    fd = tc_connect(port);
    tc_send_str(fd, "GET /hello HTTP/1.1\r\nHost: x\r\nX-Big: ");
    char *pad = malloc(max_header + 1);
    memset(pad, 'y', max_header);
    tc_send(fd, pad, max_header);
    free(pad);
    tc_send_str(fd, "\r\n\r\n");
    DSI_CHECK_INT_EQ(tc_read_response(fd, &r), 0);
    DSI_CHECK_INT_EQ(r.status, 431);
    tc_response_free(&r);
    close(fd);

    fd = tc_connect(port);
    tc_send_str(fd, "GET /hello HTTP/1.1\r\nHost: x\r\nExpect: something-else\r\n\r\n");
    DSI_CHECK_INT_EQ(tc_read_response(fd, &r), 0);
    DSI_CHECK_INT_EQ(r.status, 417);
    tc_response_free(&r);
    close(fd);
}

static void test_streaming(srv_t *srv)
{
    tc_response_t r;
    DSI_CHECK_INT_EQ(tc_request(srv->port, "GET", "/stream?n=5&ms=2", NULL, NULL, 0, &r), 0);
    DSI_CHECK_INT_EQ(r.status, 200);
    DSI_CHECK_STR_EQ(r.body, "chunk 0\nchunk 1\nchunk 2\nchunk 3\nchunk 4\n");
    DSI_CHECK_STR_EQ(r.content_type, "text/event-stream");
    DSI_CHECK(r.chunks >= 2); /* it really streamed */
    tc_response_free(&r);

    /* HTTP/1.0: no chunked encoding, the body ends with the connection. */
    int fd = tc_connect(srv->port);
    tc_send_str(fd, "GET /stream?n=3&ms=1 HTTP/1.0\r\n\r\n");
    DSI_CHECK_INT_EQ(tc_read_response(fd, &r), 0);
    DSI_CHECK_STR_EQ(r.body, "chunk 0\nchunk 1\nchunk 2\n");
    tc_response_free(&r);
    close(fd);

    /* A client that leaves mid-stream: the handler's close callback runs. */
    int before = atomic_load(&srv->closes);
    fd = tc_connect(srv->port);
    tc_send_str(fd, "GET /stream?n=100000&ms=2 HTTP/1.1\r\nHost: x\r\n\r\n");
    char buf[256];
    DSI_CHECK(recv(fd, buf, sizeof(buf), 0) > 0);
    close(fd);
    DSI_CHECK_INT_EQ(wait_atomic(&srv->closes, before + 1, 3000), before + 1);
}

static void test_slow_client(srv_t *srv)
{
    /* Head bytes trickle in slower than the request deadline; others are served meanwhile. */
    int slow = tc_connect(srv->port);
    const char *head = "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n";
    double worst = 0, t0 = dsi_now_s();
    int served = 0, sent = 0;
    for (size_t i = 0;
         i < strlen(head) && dsi_now_s() - t0 < 2.0 * srv->cfg.request_timeout_ms / 1000; i++) {
        if (tc_send(slow, head + i, 1) == 0)
            sent++;
        double t = dsi_now_s();
        tc_response_t r;
        if (tc_request(srv->port, "GET", "/hello", NULL, NULL, 0, &r) == 0 && r.status == 200)
            served++;
        tc_response_free(&r);
        if (dsi_now_s() - t > worst)
            worst = dsi_now_s() - t;
        usleep(60 * 1000);
    }
    tc_response_t r;
    tc_read_response(slow, &r);
    DSI_CHECK_INT_EQ(r.status, 408);
    tc_response_free(&r);
    DSI_CHECK(tc_wait_closed(slow, 2000));
    close(slow);
    DSI_CHECK(served >= 5);
    DSI_CHECK(worst < 0.5); /* nobody waited on the slow client */
    printf("slow client: %d bytes sent before 408, %d others served, worst %.1f ms\n", sent, served,
           worst * 1e3);
}

static void test_idle_connections(int port)
{
    enum { N = 200 };
    int fds[N], open_ok = 0;
    for (int i = 0; i < N; i++) {
        fds[i] = tc_connect(port);
        if (fds[i] >= 0)
            open_ok++;
        if (i % 2 == 1 && fds[i] >= 0)
            tc_send_str(fds[i], "GET /hel"); /* half a request line */
    }
    DSI_CHECK_INT_EQ(open_ok, N);
    double t = dsi_now_s();
    tc_response_t r;
    for (int i = 0; i < 10; i++) {
        DSI_CHECK_INT_EQ(tc_request(port, "GET", "/hello", NULL, NULL, 0, &r), 0);
        DSI_CHECK_INT_EQ(r.status, 200);
        tc_response_free(&r);
    }
    printf("10 requests beside %d idle connections: %.1f ms\n", N, (dsi_now_s() - t) * 1e3);
    DSI_CHECK(dsi_now_s() - t < 2.0);
    for (int i = 0; i < N; i++)
        if (fds[i] >= 0)
            close(fds[i]);
}

static void test_backpressure(srv_t *srv)
{
    /* A client that asks for an endless stream and never reads is dropped. */
    int before_drops = atomic_load(&srv->drops);
    int before_closes = atomic_load(&srv->closes);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)srv->port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    DSI_CHECK_INT_EQ(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    tc_send_str(fd, "GET /big?n=100000&ms=1 HTTP/1.1\r\nHost: x\r\n\r\n");
    DSI_CHECK_INT_EQ(wait_atomic(&srv->closes, before_closes + 1, 5000), before_closes + 1);
    DSI_CHECK(atomic_load(&srv->drops) > before_drops);
    close(fd);
}

static void test_limits_server(void)
{
    /* A server of 3 connections at most and a short idle timeout. */
    dsc_http_config_t cfg;
    dsc_http_config_default(&cfg);
    cfg.port = 0;
    cfg.max_connections = 3;
    cfg.idle_timeout_ms = 300;
    srv_t srv;
    DSI_CHECK_INT_EQ(srv_start(&srv, &cfg), 0);
    int fds[3];
    for (int i = 0; i < 3; i++)
        fds[i] = tc_connect(srv.port);
    int extra = tc_connect(srv.port);
    tc_response_t r;
    DSI_CHECK_INT_EQ(tc_read_response(extra, &r), 0);
    DSI_CHECK_INT_EQ(r.status, 503);
    tc_response_free(&r);
    close(extra);
    /* The idle ones are closed by the server after the idle timeout. */
    double t = dsi_now_s();
    for (int i = 0; i < 3; i++) {
        DSI_CHECK(tc_wait_closed(fds[i], 3000));
        close(fds[i]);
    }
    DSI_CHECK(dsi_now_s() - t < 2.0);
    /* And there is room again. */
    usleep(50 * 1000);
    DSI_CHECK_INT_EQ(tc_request(srv.port, "GET", "/hello", NULL, NULL, 0, &r), 0);
    DSI_CHECK_INT_EQ(r.status, 200);
    tc_response_free(&r);
    srv_stop(&srv);
}

static void test_config(void)
{
    dsc_http_config_t cfg;
    dsc_http_config_default(&cfg);
    DSI_CHECK_STR_EQ(cfg.host, "127.0.0.1");
    DSI_CHECK_INT_EQ(cfg.port, 8000);
    DSI_CHECK_INT_EQ(dsc_http_config_set_listen(&cfg, "0.0.0.0:9000"), DSI_OK);
    DSI_CHECK_STR_EQ(cfg.host, "0.0.0.0");
    DSI_CHECK_INT_EQ(cfg.port, 9000);
    DSI_CHECK_INT_EQ(dsc_http_config_set_listen(&cfg, "[::1]:81"), DSI_OK);
    DSI_CHECK_STR_EQ(cfg.host, "::1");
    DSI_CHECK_INT_EQ(dsc_http_config_set_listen(&cfg, ":82"), DSI_OK);
    DSI_CHECK_STR_EQ(cfg.host, "::1");
    DSI_CHECK_INT_EQ(cfg.port, 82);
    DSI_CHECK_INT_EQ(dsc_http_config_set_listen(&cfg, "localhost"), DSI_ERR_INVALID_ARG);
    DSI_CHECK_INT_EQ(dsc_http_config_set_listen(&cfg, "1.2.3.4:70000"), DSI_ERR_INVALID_ARG);
    DSI_CHECK_INT_EQ(dsc_http_config_set_listen(&cfg, "::1:80"), DSI_ERR_INVALID_ARG);
    DSI_CHECK_INT_EQ(cfg.port, 82);

    /* A host that is no address literal fails cleanly at listen. */
    uv_loop_t loop;
    uv_loop_init(&loop);
    dsc_http_server_t *s;
    dsc_http_config_default(&cfg);
    snprintf(cfg.host, sizeof(cfg.host), "not-an-address");
    DSI_CHECK_INT_EQ(dsc_http_server_create(&loop, &cfg, &s), DSI_OK);
    DSI_CHECK_INT_EQ(dsc_http_server_listen(s), DSI_ERR_INVALID_ARG);
    dsc_http_server_destroy(s, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    DSI_CHECK_INT_EQ(uv_loop_close(&loop), 0);
}

int main(void)
{
    test_config();

    dsc_http_config_t cfg;
    dsc_http_config_default(&cfg);
    cfg.port = 0;
    cfg.max_body_bytes = 256 * 1024;
    cfg.max_header_bytes = 4096;
    cfg.request_timeout_ms = 400;
    cfg.max_unsent_bytes = 256 * 1024;
    srv_t srv;
    if (srv_start(&srv, &cfg) != 0) {
        fprintf(stderr, "cannot start the server\n");
        return 1;
    }
    test_basic(srv.port);
    test_keepalive_and_pipelining(srv.port);
    test_bodies(srv.port, cfg.max_body_bytes);
    test_bad_heads(srv.port, cfg.max_header_bytes);
    test_streaming(&srv);
    test_slow_client(&srv);
    test_idle_connections(srv.port);
    test_backpressure(&srv);

    /* A stream still running when the server is destroyed is told, and finished. */
    int fd = tc_connect(srv.port);
    tc_send_str(fd, "GET /stream?n=100000&ms=5 HTTP/1.1\r\nHost: x\r\n\r\n");
    char buf[64];
    DSI_CHECK(recv(fd, buf, sizeof(buf), 0) > 0);
    int closes = atomic_load(&srv.closes);
    srv_stop(&srv);
    DSI_CHECK_INT_EQ(atomic_load(&srv.closes), closes + 1);
    /* 5 streams were started above; each ended exactly once (finished or told to). */
    DSI_CHECK_INT_EQ(atomic_load(&srv.streams_ended), 5);
    close(fd);

    test_limits_server();
    return dsi_test_finish();
}
