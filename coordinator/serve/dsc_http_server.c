/*
 * dsc_http_server.c - listening, accepting, connection lifecycle, timeouts and the read loop of
 * the HTTP server. See dsc_http_impl.h for the connection states.
 */
#include "dsi_signal.h"
#include "dsc_http_impl.h"

#include <stdlib.h>
#include <string.h>

#include "dsi_log.h"

/* Pipelined bytes buffered while a request is handled; beyond this we stop reading. */
#define PENDING_CAP (64u * 1024u)
/* How long a connection closing behind a shutdown may linger (client not reading). */
#define LINGER_MS 2000u

static void conn_process(dsc_http_conn_t *conn);

dsi_status_t dsc_http_server_create(uv_loop_t *loop, const dsc_http_config_t *cfg,
                                    dsc_http_server_t **out)
{
    dsc_http_server_t *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        DSI_ERROR("http: out of memory");
        return DSI_ERR_NOMEM;
    }
    s->loop = loop;
    s->cfg = *cfg;
    s->port = -1;
    dsi_list_init(&s->conns);
    *out = s;
    return DSI_OK;
}

dsi_status_t dsc_http_server_route(dsc_http_server_t *s, const char *method, const char *path,
                                   dsc_http_handler_cb handler, void *arg)
{
    dsc_http_route_t *routes = realloc(s->routes, (s->n_routes + 1) * sizeof(*routes));
    if (routes == NULL)
        goto nomem;
    s->routes = routes;
    dsc_http_route_t *r = &routes[s->n_routes];
    r->method = strdup(method);
    r->path = strdup(path);
    if (r->method == NULL || r->path == NULL) {
        free(r->method);
        free(r->path);
        goto nomem;
    }
    r->handler = handler;
    r->arg = arg;
    s->n_routes++;
    return DSI_OK;
nomem:
    DSI_ERROR("http: out of memory adding route %s %s", method, path);
    return DSI_ERR_NOMEM;
}

void dsc_http_server_on_answer(dsc_http_server_t *s, dsc_http_answer_cb cb, void *arg)
{
    s->answer_cb = cb;
    s->answer_arg = arg;
}

/* A route's path matches exactly, or, ending in a slash and '*', any longer path under it. */
static int route_matches(const char *route, const char *path)
{
    size_t n = strlen(route);
    if (n >= 2 && route[n - 1] == '*' && route[n - 2] == '/')
        return strncmp(route, path, n - 1) == 0 && path[n - 1] != '\0';
    return strcmp(route, path) == 0;
}

void dsc_http_server_answered(dsc_http_server_t *s, const dsc_http_req_t *req, int status)
{
    if (s->answer_cb == NULL)
        return;
    const char *path = "";
    for (size_t i = 0; req != NULL && req->path != NULL && i < s->n_routes; i++) {
        if (route_matches(s->routes[i].path, req->path))
            path = s->routes[i].path;
    }
    s->answer_cb(s->answer_arg, path, status);
}

int dsc_http_server_port(const dsc_http_server_t *s)
{
    return s->port;
}

uint32_t dsc_http_server_connections(const dsc_http_server_t *s)
{
    return s->n_conns;
}

/* Frees the server when nothing of it is open any more. */
static void server_maybe_free(dsc_http_server_t *s)
{
    if (!s->destroying || s->listener_open || !dsi_list_is_empty(&s->conns))
        return;
    void (*done_cb)(void *) = s->done_cb;
    void *done_arg = s->done_arg;
    for (size_t i = 0; i < s->n_routes; i++) {
        free(s->routes[i].method);
        free(s->routes[i].path);
    }
    free(s->routes);
    free(s);
    if (done_cb != NULL)
        done_cb(done_arg);
}

static void conn_handle_closed(uv_handle_t *h)
{
    dsc_http_conn_t *conn = h->data;
    if (--conn->open_handles > 0)
        return;
    dsc_http_server_t *s = conn->server;
    dsc_http_req_t *req = conn->req;
    if (req != NULL && req->handed) {
        /* The handler still owns the request: unlink it and say so (from here, never from
           inside one of the handler's own calls). */
        req->conn = NULL;
        if (req->close_cb != NULL)
            req->close_cb(req->close_arg, req);
    } else {
        dsc_http_req_free(req);
    }
    dsi_list_remove(&conn->link);
    s->n_conns--;
    dsc_http_buf_free(&conn->pending);
    free(conn);
    server_maybe_free(s);
}

void dsc_http_conn_close(dsc_http_conn_t *conn)
{
    if (conn->open_handles == 0 || uv_is_closing((uv_handle_t *)&conn->tcp))
        return;
    conn->closing = 1;
    uv_close((uv_handle_t *)&conn->timer, conn_handle_closed);
    uv_close((uv_handle_t *)&conn->tcp, conn_handle_closed);
}

static void on_linger_timeout(uv_timer_t *t)
{
    dsc_http_conn_close(t->data);
}

static void on_shutdown(uv_shutdown_t *sreq, int status)
{
    (void)status;
    dsc_http_conn_t *conn = sreq->data;
    free(sreq);
    dsc_http_conn_close(conn);
}

void dsc_http_conn_close_after_write(dsc_http_conn_t *conn)
{
    if (conn->closing || conn->shutting_down)
        return;
    conn->shutting_down = 1;
    /* A client that neither reads nor closes must not keep us waiting forever. */
    uv_timer_start(&conn->timer, on_linger_timeout, LINGER_MS, 0);
    uv_shutdown_t *sreq = malloc(sizeof(*sreq));
    if (sreq == NULL || uv_shutdown(sreq, (uv_stream_t *)&conn->tcp, on_shutdown) != 0) {
        free(sreq);
        dsc_http_conn_close(conn);
        return;
    }
    sreq->data = conn;
}

static void on_request_timeout(uv_timer_t *t)
{
    dsc_http_conn_t *conn = t->data;
    DSI_DEBUG("http: request not received within %u ms: 408", conn->server->cfg.request_timeout_ms);
    dsc_http_conn_fail(conn, 408, "request not received in time");
}

static void on_idle_timeout(uv_timer_t *t)
{
    dsc_http_conn_close(t->data);
}

static void conn_set_idle(dsc_http_conn_t *conn)
{
    conn->state = DSC_HTTP_CONN_IDLE;
    conn->error_status = 0;
    http_parser_init(&conn->parser, HTTP_REQUEST);
    conn->parser.data = conn;
    uv_timer_start(&conn->timer, on_idle_timeout, conn->server->cfg.idle_timeout_ms, 0);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    dsc_http_conn_t *conn = h->data;
    buf->base = conn->server->readbuf;
    buf->len = sizeof(conn->server->readbuf);
}

static void conn_read_start(dsc_http_conn_t *conn);

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    dsc_http_conn_t *conn = stream->data;
    if (nread == 0)
        return;
    if (nread == UV_EOF && conn->state == DSC_HTTP_CONN_HANDLING && !conn->closing) {
        /* A half-close (shutdown(SHUT_WR) after the request) still wants its answer: it goes
         * out, then the connection closes. A client that closed entirely is seen when a write
         * fails, which cancels its request. */
        uv_read_stop(stream);
        conn->reading = 0;
        conn->peer_eof = 1;
        return;
    }
    if (nread < 0) {
        /* Reset, or EOF with no request to answer: a handled request's client is gone, which
         * cancels it. */
        dsc_http_conn_close(conn);
        return;
    }
    if (conn->closing || conn->shutting_down)
        return;
    if (dsc_http_buf_append(&conn->pending, buf->base, (size_t)nread) != DSI_OK) {
        DSI_ERROR("http: out of memory buffering %zd received bytes", nread);
        dsc_http_conn_close(conn);
        return;
    }
    conn_process(conn);
    if (!conn->closing && conn->reading && conn->pending.len > PENDING_CAP) {
        uv_read_stop(stream); /* resumed when the handled request is finished */
        conn->reading = 0;
    }
}

static void conn_read_start(dsc_http_conn_t *conn)
{
    if (conn->reading || conn->closing)
        return;
    if (uv_read_start((uv_stream_t *)&conn->tcp, on_alloc, on_read) != 0) {
        dsc_http_conn_close(conn);
        return;
    }
    conn->reading = 1;
}

static const dsc_http_route_t *route_find(const dsc_http_server_t *s, const dsc_http_req_t *req,
                                          int *path_known)
{
    *path_known = 0;
    for (size_t i = 0; i < s->n_routes; i++) {
        if (!route_matches(s->routes[i].path, req->path))
            continue;
        *path_known = 1;
        if (strcmp(s->routes[i].method, req->method) == 0)
            return &s->routes[i];
    }
    return NULL;
}

static void conn_dispatch(dsc_http_conn_t *conn)
{
    dsc_http_req_t *req = conn->req;
    conn->state = DSC_HTTP_CONN_HANDLING;
    uv_timer_stop(&conn->timer);
    req->handed = 1;
    int path_known;
    const dsc_http_route_t *r = route_find(conn->server, req, &path_known);
    if (r != NULL) {
        r->handler(r->arg, req);
        return;
    }
    int status = path_known ? 405 : 404;
    dsc_http_server_answered(conn->server, req, status);
    char body[160];
    int n = snprintf(body, sizeof(body),
                     "{\"error\":{\"message\":\"%s\",\"type\":\"invalid_request_error\","
                     "\"param\":null,\"code\":null}}",
                     path_known ? "method not allowed on this path" : "no such endpoint");
    dsc_http_respond(req, status, "application/json", NULL, body, (size_t)n);
}

/* Parse the pending bytes while the connection is not busy with a handled request. */
static void conn_process(dsc_http_conn_t *conn)
{
    if (conn->in_process)
        return;
    conn->in_process = 1;
    while (!conn->closing && !conn->shutting_down && conn->state != DSC_HTTP_CONN_HANDLING &&
           conn->pending.len > 0) {
        if (conn->state == DSC_HTTP_CONN_IDLE) {
            conn->req = dsc_http_req_new(conn);
            if (conn->req == NULL) {
                dsc_http_conn_fail(conn, 503, "out of memory");
                break;
            }
            conn->state = DSC_HTTP_CONN_READING;
            uv_timer_start(&conn->timer, on_request_timeout, conn->server->cfg.request_timeout_ms,
                           0);
        }
        size_t n = http_parser_execute(&conn->parser, &dsc_http_parser_settings, conn->pending.data,
                                       conn->pending.len);
        enum http_errno err = HTTP_PARSER_ERRNO(&conn->parser);
        dsc_http_buf_consume(&conn->pending, n);
        if (err == HPE_PAUSED) {
            conn_dispatch(conn);
        } else if (err != HPE_OK) {
            int status = conn->error_status           ? conn->error_status
                         : err == HPE_HEADER_OVERFLOW ? 431
                                                      : 400;
            DSI_DEBUG("http: refusing request: %d (%s)", status, http_errno_name(err));
            dsc_http_conn_fail(conn, status,
                               status == 413   ? "request body too large"
                               : status == 431 ? "request head too large"
                               : status == 417 ? "unsupported Expect header"
                               : status == 505 ? "only HTTP/1.0 and HTTP/1.1 are spoken here"
                                               : "malformed HTTP request");
        }
    }
    conn->in_process = 0;
}

void dsc_http_conn_request_done(dsc_http_conn_t *conn, int keep_alive)
{
    conn->req = NULL;
    if (conn->closing || conn->shutting_down)
        return;
    if (!keep_alive || conn->peer_eof || conn->server->destroying) {
        dsc_http_conn_close_after_write(conn);
        return;
    }
    conn_set_idle(conn);
    conn_read_start(conn);
    conn_process(conn); /* a no-op when called from inside conn_process: its loop goes on */
}

/* One WARN at most every this many ms for refused connections, with the count since the last. */
#define REFUSED_WARN_MS 10000u

static void conn_reject_busy(dsc_http_conn_t *conn)
{
    dsc_http_server_t *s = conn->server;
    uint64_t now = uv_now(s->loop);
    s->refused_busy++;
    if (s->refused_warn_ms == 0 || now - s->refused_warn_ms >= REFUSED_WARN_MS) {
        DSI_WARN("http: %u connections open, the limit: refused %llu connection(s) with 503 "
                 "(logged at most every %u s)",
                 s->cfg.max_connections, (unsigned long long)s->refused_busy,
                 REFUSED_WARN_MS / 1000);
        s->refused_busy = 0;
        s->refused_warn_ms = now ? now : 1;
    }
    dsc_http_conn_fail(conn, 503, "too many connections");
}

static void on_connection(uv_stream_t *listener, int status)
{
    dsc_http_server_t *s = listener->data;
    if (status < 0) {
        DSI_WARN("http: accept: %s", uv_strerror(status));
        return;
    }
    dsc_http_conn_t *conn = calloc(1, sizeof(*conn));
    if (conn == NULL) {
        DSI_ERROR("http: out of memory accepting a connection");
        return;
    }
    conn->server = s;
    uv_tcp_init(s->loop, &conn->tcp);
    uv_timer_init(s->loop, &conn->timer);
    conn->tcp.data = conn->timer.data = conn;
    conn->open_handles = 2;
    dsi_list_push_front(&s->conns, &conn->link);
    s->n_conns++;
    if (uv_accept(listener, (uv_stream_t *)&conn->tcp) != 0) {
        dsc_http_conn_close(conn);
        return;
    }
    uv_tcp_nodelay(&conn->tcp, 1); /* SSE chunks are small and must not wait */
    conn_set_idle(conn);
    conn_read_start(conn);
    if (s->n_conns > s->cfg.max_connections)
        conn_reject_busy(conn);
}

dsi_status_t dsc_http_server_listen(dsc_http_server_t *s)
{
    dsi_ignore_sigpipe(); /* a peer that went away is an error, not the end */
    struct sockaddr_storage addr;
    int rc = uv_ip4_addr(s->cfg.host, s->cfg.port, (struct sockaddr_in *)&addr);
    if (rc != 0)
        rc = uv_ip6_addr(s->cfg.host, s->cfg.port, (struct sockaddr_in6 *)&addr);
    if (rc != 0) {
        DSI_ERROR("http: listen address '%s' is not an IPv4 or IPv6 literal", s->cfg.host);
        return DSI_ERR_INVALID_ARG;
    }
    uv_tcp_init(s->loop, &s->listener);
    s->listener.data = s;
    s->listener_open = 1;
    rc = uv_tcp_bind(&s->listener, (const struct sockaddr *)&addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&s->listener, 512, on_connection);
    if (rc != 0) {
        DSI_ERROR("http: cannot listen on %s:%d: %s", s->cfg.host, s->cfg.port, uv_strerror(rc));
        return DSI_ERR_IO; /* the listener is closed by dsc_http_server_destroy */
    }
    struct sockaddr_storage bound;
    int len = sizeof(bound);
    uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &len);
    s->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                : ((struct sockaddr_in *)&bound)->sin_port);
    DSI_INFO("http: listening on %s:%d", s->cfg.host, s->port);
    return DSI_OK;
}

static void on_listener_closed(uv_handle_t *h)
{
    dsc_http_server_t *s = h->data;
    s->listener_open = 0;
    server_maybe_free(s);
}

void dsc_http_server_destroy(dsc_http_server_t *s, void (*done_cb)(void *arg), void *arg)
{
    if (s == NULL)
        return;
    s->destroying = 1;
    s->done_cb = done_cb;
    s->done_arg = arg;
    dsi_list_for_each(c, &s->conns, dsc_http_conn_t, link)
        dsc_http_conn_close(c);
    if (s->listener_open)
        uv_close((uv_handle_t *)&s->listener, on_listener_closed);
    else
        server_maybe_free(s);
}
