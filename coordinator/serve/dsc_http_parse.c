/*
 * dsc_http_parse.c - http-parser callbacks that build a dsc_http_req_t, enforcing the header and
 * body size limits as bytes arrive (a request over a limit is refused before it is read whole).
 */
#include "dsc_http_impl.h"

#include <stdio.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dsi_log.h"

dsc_http_req_t *dsc_http_req_new(dsc_http_conn_t *conn)
{
    dsc_http_req_t *req = calloc(1, sizeof(*req));
    if (req != NULL)
        req->conn = conn;
    return req;
}

void dsc_http_req_free(dsc_http_req_t *req)
{
    if (req == NULL)
        return;
    dsc_http_buf_free(&req->url);
    dsc_http_buf_free(&req->headers);
    dsc_http_buf_free(&req->body);
    free(req->path);
    free(req->query);
    free(req);
}

static dsc_http_conn_t *conn_of(http_parser *p)
{
    return p->data;
}

/* Refuse the request with `status`; returning nonzero stops the parser. */
static int reject(dsc_http_conn_t *conn, int status)
{
    conn->error_status = status;
    return -1;
}

static int add_head_bytes(dsc_http_conn_t *conn, size_t n)
{
    dsc_http_req_t *req = conn->req;
    req->head_bytes += n;
    return req->head_bytes > conn->server->cfg.max_header_bytes;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    dsc_http_conn_t *conn = conn_of(p);
    if (add_head_bytes(conn, len))
        return reject(conn, 431);
    if (dsc_http_buf_append(&conn->req->url, at, len) != DSI_OK)
        return reject(conn, 503);
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    dsc_http_conn_t *conn = conn_of(p);
    dsc_http_req_t *req = conn->req;
    if (add_head_bytes(conn, len + 2))
        return reject(conn, 431);
    /* A header name is an RFC 9110 token: "Content Length" or "Host :" are refused, not read as
     * some other header. */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)at[i];
        if (c <= 32 || c >= 127 || strchr("\"(),/:;<=>?@[\\]{}", c) != NULL)
            return reject(conn, 400);
    }
    /* A new name starts after a value: terminate the value first. */
    if (req->header_state == 2 && dsc_http_buf_append(&req->headers, "", 1) != DSI_OK)
        return reject(conn, 503);
    req->header_state = 1;
    if (dsc_http_buf_append(&req->headers, at, len) != DSI_OK)
        return reject(conn, 503);
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    dsc_http_conn_t *conn = conn_of(p);
    dsc_http_req_t *req = conn->req;
    if (add_head_bytes(conn, len))
        return reject(conn, 431);
    if (req->header_state == 1 && dsc_http_buf_append(&req->headers, "", 1) != DSI_OK)
        return reject(conn, 503);
    req->header_state = 2;
    if (dsc_http_buf_append(&req->headers, at, len) != DSI_OK)
        return reject(conn, 503);
    return 0;
}

static int split_url(dsc_http_req_t *req)
{
    const char *url = req->url.data ? req->url.data : "";
    const char *q = strchr(url, '?');
    size_t path_len = q ? (size_t)(q - url) : strlen(url);
    req->path = strndup(url, path_len);
    req->query = strdup(q ? q + 1 : "");
    return req->path != NULL && req->query != NULL;
}

static int on_headers_complete(http_parser *p)
{
    dsc_http_conn_t *conn = conn_of(p);
    dsc_http_req_t *req = conn->req;
    if (req->header_state == 2 && dsc_http_buf_append(&req->headers, "", 1) != DSI_OK)
        return reject(conn, 503);
    req->header_state = 0;
    if (!split_url(req))
        return reject(conn, 503);
    snprintf(req->method, sizeof(req->method), "%s", http_method_str(p->method));
    req->http_major = p->http_major;
    req->http_minor = p->http_minor;
    /* HTTP/0.9 (a request line without a version) has no headers or status line to answer
     * with; HTTP/2 and later are not spoken here. */
    if (p->http_major != 1)
        return reject(conn, p->http_major == 0 ? 400 : 505);
    /* content_length is ULLONG_MAX when absent (chunked or no body): checked in on_body then. */
    if (p->content_length != ULLONG_MAX && p->content_length > conn->server->cfg.max_body_bytes)
        return reject(conn, 413);
    const char *expect = dsc_http_req_header(req, "Expect");
    if (expect != NULL) {
        if (strcasecmp(expect, "100-continue") != 0)
            return reject(conn, 417);
        /* curl waits for this before sending bodies over 1 KiB. */
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        if (dsc_http_conn_write(conn, cont, sizeof(cont) - 1, NULL, 0) != DSI_OK)
            return reject(conn, 503);
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    dsc_http_conn_t *conn = conn_of(p);
    dsc_http_req_t *req = conn->req;
    if (req->body.len + len > conn->server->cfg.max_body_bytes)
        return reject(conn, 413);
    if (dsc_http_buf_append(&req->body, at, len) != DSI_OK)
        return reject(conn, 503);
    return 0;
}

static int on_message_complete(http_parser *p)
{
    dsc_http_conn_t *conn = conn_of(p);
    conn->req->keep_alive = http_should_keep_alive(p);
    if (conn->req->body.data == NULL && dsc_http_buf_append(&conn->req->body, "", 0) != DSI_OK)
        return reject(conn, 503);
    /* Stop here: bytes of a pipelined next request wait until this one is answered. */
    http_parser_pause(p, 1);
    return 0;
}

const http_parser_settings dsc_http_parser_settings = {
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};
