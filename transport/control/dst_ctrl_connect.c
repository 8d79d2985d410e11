/*
 * dst_ctrl_connect.c - outgoing connections: resolve, connect, and on failure retry with
 * exponential backoff, so a node started before its coordinator keeps trying.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsi_signal.h"
#include "dsi_log.h"
#include "dst_ctrl_impl.h"

static void attempt(dst_ctrl_conn_t *c);

static void attempt_failed(dst_ctrl_conn_t *c, int status)
{
    c->attempts++;
    if (c->opts.connect_attempts != 0 && c->attempts >= c->opts.connect_attempts) {
        DSI_ERROR("control connection to %s: %s; giving up after %u attempts", c->peer,
                  uv_strerror(status), (unsigned)c->attempts);
        dst_ctrl_conn_teardown(c, DSI_ERR_CONNECTION);
        return;
    }
    /* The first failure is worth a line; the rest of a long wait for a coordinator is not. */
    if (c->attempts == 1)
        DSI_INFO("control connection to %s: %s; retrying every %u..%u ms", c->peer,
                 uv_strerror(status), (unsigned)c->opts.connect_retry_min_ms,
                 (unsigned)c->opts.connect_retry_max_ms);
    else
        DSI_DEBUG("control connection to %s: attempt %u: %s", c->peer, (unsigned)c->attempts,
                  uv_strerror(status));
    if (c->tcp_inited) {
        /* A failed socket cannot connect again: close it, retry when it is closed. */
        c->tcp_closing = 1;
        uv_close((uv_handle_t *)&c->tcp, dst_ctrl_conn_handle_closed_cb);
        return;
    }
    dst_ctrl_connect_tcp_closed(c);
}

void dst_ctrl_connect_tcp_closed(dst_ctrl_conn_t *c)
{
    uint32_t delay = c->delay_ms;
    uint64_t next = (uint64_t)c->delay_ms * 2;
    c->delay_ms =
        next > c->opts.connect_retry_max_ms ? c->opts.connect_retry_max_ms : (uint32_t)next;
    uv_timer_start(&c->timer, dst_ctrl_conn_timer_cb, delay, 0);
}

void dst_ctrl_connect_retry_cb(dst_ctrl_conn_t *c)
{
    attempt(c);
}

static void connect_cb(uv_connect_t *req, int status)
{
    dst_ctrl_conn_t *c = req->data;
    if (c->state != CONN_CONNECTING)
        return; /* closed meanwhile: the close sequence owns the handle */
    if (status < 0) {
        attempt_failed(c, status);
        return;
    }
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0)
        dst_ctrl_sockaddr_str((struct sockaddr *)&ss, c->peer, sizeof(c->peer));
    DSI_DEBUG("control connection to %s open after %u failed attempts", c->peer,
              (unsigned)c->attempts);
    dst_ctrl_conn_opened(c);
}

static void start_connect(dst_ctrl_conn_t *c, const struct sockaddr *sa)
{
    int rc = uv_tcp_init(c->loop, &c->tcp);
    if (rc == 0) {
        c->tcp.data = c;
        c->tcp_inited = 1;
        c->creq.data = c;
        rc = uv_tcp_connect(&c->creq, &c->tcp, sa, connect_cb);
    }
    if (rc != 0)
        attempt_failed(c, rc);
}

static void gai_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    dst_ctrl_conn_t *c = req->data;
    c->gai_pending = 0;
    if (c->state != CONN_CONNECTING) {
        uv_freeaddrinfo(res);
        dst_ctrl_conn_maybe_finish(c); /* closed meanwhile: this request was the last wait */
        return;
    }
    if (status < 0 || res == NULL) {
        uv_freeaddrinfo(res);
        attempt_failed(c, status < 0 ? status : UV_EAI_NONAME);
        return;
    }
    start_connect(c, res->ai_addr);
    uv_freeaddrinfo(res);
}

static void attempt(dst_ctrl_conn_t *c)
{
    struct sockaddr_in in4;
    struct sockaddr_in6 in6;
    if (uv_ip4_addr(c->host, c->port, &in4) == 0) {
        start_connect(c, (const struct sockaddr *)&in4);
        return;
    }
    if (uv_ip6_addr(c->host, c->port, &in6) == 0) {
        start_connect(c, (const struct sockaddr *)&in6);
        return;
    }
    char port[8];
    snprintf(port, sizeof(port), "%u", (unsigned)c->port);
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    c->gai.data = c;
    int rc = uv_getaddrinfo(c->loop, &c->gai, gai_cb, c->host, port, &hints);
    if (rc != 0) {
        attempt_failed(c, rc);
        return;
    }
    c->gai_pending = 1;
}

dsi_status_t dst_ctrl_connect(uv_loop_t *loop, const char *addr, const dst_ctrl_opts_t *opts,
                              const dst_ctrl_cb_t *cb, dst_ctrl_conn_t **out)
{
    dsi_ignore_sigpipe(); /* a peer that went away is an error, not the end */
    dst_ctrl_opts_t defaults;
    char host[DST_MSG_ADDR_MAX];
    uint16_t port;
    if (opts == NULL) {
        dst_ctrl_opts_default(&defaults);
        opts = &defaults;
    }
    if (dst_ctrl_addr_parse(addr, host, sizeof(host), &port) != DSI_OK)
        return DSI_ERR_INVALID_ARG;
    if (port == 0) {
        DSI_ERROR("control connection to %s: port 0 is not connectable", addr);
        return DSI_ERR_INVALID_ARG;
    }
    dst_ctrl_conn_t *c = dst_ctrl_conn_new(loop, opts, cb);
    if (c == NULL)
        return DSI_ERR_NOMEM;
    snprintf(c->host, sizeof(c->host), "%s", host);
    snprintf(c->peer, sizeof(c->peer), "%s", addr);
    c->port = port;
    c->state = CONN_CONNECTING;
    c->delay_ms = c->opts.connect_retry_min_ms ? c->opts.connect_retry_min_ms : 1;
    attempt(c);
    *out = c;
    return DSI_OK;
}
