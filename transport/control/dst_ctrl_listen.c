/*
 * dst_ctrl_listen.c - the listening socket: accepts connections, tracks them so that closing the
 * listener closes them, and counts what happened on them.
 */
#include <stdlib.h>
#include <string.h>

#include "dsi_signal.h"
#include "dsi_log.h"
#include "dst_ctrl_impl.h"

static void listener_maybe_free(dst_ctrl_listener_t *l)
{
    if (l->closing && l->handle_closed && dsi_list_is_empty(&l->conns))
        free(l);
}

static void listener_closed_cb(uv_handle_t *h)
{
    dst_ctrl_listener_t *l = h->data;
    l->handle_closed = 1;
    listener_maybe_free(l);
}

void dst_ctrl_listener_forget(dst_ctrl_listener_t *l, dst_ctrl_conn_t *c)
{
    dsi_list_remove(&c->link);
    c->listener = NULL;
    l->stats.closed++;
    listener_maybe_free(l);
}

static void on_connection(uv_stream_t *server, int status)
{
    dst_ctrl_listener_t *l = server->data;
    if (status < 0) {
        DSI_WARN("control listener on port %u: accept failed: %s", (unsigned)l->port,
                 uv_strerror(status));
        return;
    }
    if (l->closing)
        return;
    dst_ctrl_conn_t *c = dst_ctrl_conn_new(l->loop, &l->opts, &l->cb);
    if (c == NULL)
        return;
    uv_tcp_init(l->loop, &c->tcp);
    c->tcp.data = c;
    c->tcp_inited = 1;
    c->state = CONN_OPEN;
    c->listener = l;
    dsi_list_push_front(&l->conns, &c->link);
    l->stats.accepted++;
    int rc = uv_accept(server, (uv_stream_t *)&c->tcp);
    if (rc != 0) {
        DSI_WARN("control listener on port %u: accept failed: %s", (unsigned)l->port,
                 uv_strerror(rc));
        dst_ctrl_conn_teardown(c, DSI_ERR_CONNECTION);
        return;
    }
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0)
        dst_ctrl_sockaddr_str((struct sockaddr *)&ss, c->peer, sizeof(c->peer));
    DSI_DEBUG("control listener on port %u: connection from %s", (unsigned)l->port, c->peer);
    dst_ctrl_conn_opened(c);
}

dsi_status_t dst_ctrl_listen(uv_loop_t *loop, const char *addr, const dst_ctrl_opts_t *opts,
                             const dst_ctrl_cb_t *cb, dst_ctrl_listener_t **out)
{
    dsi_ignore_sigpipe(); /* a peer that went away is an error, not the end */
    char host[DST_MSG_ADDR_MAX];
    uint16_t port;
    struct sockaddr_storage ss;
    if (dst_ctrl_addr_parse(addr, host, sizeof(host), &port) != DSI_OK)
        return DSI_ERR_INVALID_ARG;
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) != 0) {
        DSI_ERROR("control listener: \"%s\" is not a numeric IPv4 or [IPv6] address", addr);
        return DSI_ERR_INVALID_ARG;
    }
    dst_ctrl_listener_t *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return DSI_ERR_NOMEM;
    dsi_list_init(&l->conns);
    l->loop = loop;
    if (opts != NULL)
        l->opts = *opts;
    else
        dst_ctrl_opts_default(&l->opts);
    if (cb != NULL)
        l->cb = *cb;
    uv_tcp_init(loop, &l->tcp);
    l->tcp.data = l;
    int rc = uv_tcp_bind(&l->tcp, (const struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&l->tcp, 128, on_connection);
    if (rc != 0) {
        DSI_ERROR("control listener on %s: %s", addr, uv_strerror(rc));
        l->closing = 1;
        uv_close((uv_handle_t *)&l->tcp, listener_closed_cb); /* frees l on the loop */
        return DSI_ERR_CONNECTION;
    }
    struct sockaddr_storage bound;
    int len = sizeof(bound);
    uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&bound, &len);
    l->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                : ((struct sockaddr_in *)&bound)->sin_port);
    DSI_INFO("control listener on %s, port %u", addr, (unsigned)l->port);
    *out = l;
    return DSI_OK;
}

uint16_t dst_ctrl_listener_port(const dst_ctrl_listener_t *l)
{
    return l->port;
}

void dst_ctrl_listener_stats(const dst_ctrl_listener_t *l, dst_ctrl_stats_t *out)
{
    *out = l->stats;
}

void dst_ctrl_listener_close(dst_ctrl_listener_t *l)
{
    if (l->closing)
        return;
    l->closing = 1;
    uv_close((uv_handle_t *)&l->tcp, listener_closed_cb);
    dsi_list_for_each(c, &l->conns, dst_ctrl_conn_t, link)
        dst_ctrl_conn_close(c);
}
