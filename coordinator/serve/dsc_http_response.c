/*
 * dsc_http_response.c - writing responses: complete ones, chunked streams, and the server's own
 * error answers. Writes go out at once with uv_try_write when nothing is queued (no copy, no
 * allocation on the common path); what the socket does not take is copied into one queued
 * uv_write. More than max_unsent_bytes queued drops the connection.
 */
#include "dsc_http_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsi_log.h"

typedef struct {
    uv_write_t w;
    dsc_http_conn_t *conn;
    size_t len;
    char data[];
} write_req_t;

static void on_write(uv_write_t *w, int status)
{
    write_req_t *wr = (write_req_t *)w;
    dsc_http_conn_t *conn = wr->conn;
    conn->unsent -= wr->len;
    free(wr);
    if (status < 0 && status != UV_ECANCELED)
        dsc_http_conn_close(conn);
}

/* Queue bufs[0..n) skipping the first `skip` bytes (already written). */
static dsi_status_t queue_rest(dsc_http_conn_t *conn, const uv_buf_t *bufs, int n, size_t skip,
                               size_t total)
{
    size_t len = total - skip;
    if (conn->unsent + len > conn->server->cfg.max_unsent_bytes) {
        DSI_WARN("http: client is not reading (%zu bytes unsent): dropping the connection",
                 conn->unsent + len);
        dsc_http_conn_close(conn);
        return DSI_ERR_CONNECTION;
    }
    write_req_t *wr = malloc(sizeof(*wr) + len);
    if (wr == NULL) {
        DSI_ERROR("http: out of memory queueing %zu bytes", len);
        dsc_http_conn_close(conn);
        return DSI_ERR_CONNECTION;
    }
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        size_t b = bufs[i].len;
        if (skip >= b) {
            skip -= b;
            continue;
        }
        memcpy(wr->data + off, bufs[i].base + skip, b - skip);
        off += b - skip;
        skip = 0;
    }
    wr->conn = conn;
    wr->len = len;
    uv_buf_t one = uv_buf_init(wr->data, (unsigned)len);
    if (uv_write(&wr->w, (uv_stream_t *)&conn->tcp, &one, 1, on_write) != 0) {
        free(wr);
        dsc_http_conn_close(conn);
        return DSI_ERR_CONNECTION;
    }
    conn->unsent += len;
    return DSI_OK;
}

static dsi_status_t conn_writev(dsc_http_conn_t *conn, const uv_buf_t *bufs, int n)
{
    if (conn == NULL || conn->closing || conn->shutting_down)
        return DSI_ERR_CONNECTION;
    size_t total = 0;
    for (int i = 0; i < n; i++)
        total += bufs[i].len;
    if (total == 0)
        return DSI_OK;
    size_t done = 0;
    if (conn->unsent == 0) { /* nothing queued: order is kept if we write directly */
        int rc = uv_try_write((uv_stream_t *)&conn->tcp, bufs, (unsigned)n);
        if (rc >= 0)
            done = (size_t)rc;
        else if (rc != UV_EAGAIN) {
            dsc_http_conn_close(conn);
            return DSI_ERR_CONNECTION;
        }
    }
    if (done == total)
        return DSI_OK;
    return queue_rest(conn, bufs, n, done, total);
}

dsi_status_t dsc_http_conn_write(dsc_http_conn_t *conn, const char *a, size_t alen, const char *b,
                                 size_t blen)
{
    uv_buf_t bufs[2] = {uv_buf_init((char *)a, (unsigned)alen),
                        uv_buf_init((char *)b, (unsigned)blen)};
    return conn_writev(conn, bufs, 2);
}

/*
 * The response head in `buf` (or a malloc'ed one when it does not fit: *heap set, caller frees).
 * content_length < 0: chunked when `chunked`, else close-delimited.
 */
static char *head_format(char *buf, size_t cap, int status, const char *ctype, const char *extra,
                         long long content_length, int chunked, int keep_alive, size_t *len,
                         char **heap)
{
    char length[48] = "";
    if (content_length >= 0)
        snprintf(length, sizeof(length), "Content-Length: %lld\r\n", content_length);
    else if (chunked)
        snprintf(length, sizeof(length), "Transfer-Encoding: chunked\r\n");
    const char *fmt = "HTTP/1.1 %d %s\r\nServer: dsinfer\r\nContent-Type: %s\r\n%s"
                      "Connection: %s\r\n%s\r\n";
    const char *conn_value = keep_alive ? "keep-alive" : "close";
    int n = snprintf(buf, cap, fmt, status, dsc_http_status_text(status), ctype, length, conn_value,
                     extra ? extra : "");
    *heap = NULL;
    if (n < 0)
        return NULL;
    if ((size_t)n >= cap) {
        *heap = malloc((size_t)n + 1);
        if (*heap == NULL)
            return NULL;
        snprintf(*heap, (size_t)n + 1, fmt, status, dsc_http_status_text(status), ctype, length,
                 conn_value, extra ? extra : "");
        buf = *heap;
    }
    *len = (size_t)n;
    return buf;
}

/* Free the request and let its connection go on (or close). */
static void req_finish(dsc_http_req_t *req, int keep_alive)
{
    dsc_http_conn_t *conn = req->conn;
    int linked = conn != NULL && conn->req == req;
    dsc_http_req_free(req);
    if (linked)
        dsc_http_conn_request_done(conn, keep_alive);
}

static int req_keep_alive(const dsc_http_req_t *req)
{
    return req->keep_alive && req->conn != NULL && !req->conn->server->destroying;
}

dsi_status_t dsc_http_respond(dsc_http_req_t *req, int status, const char *content_type,
                              const char *extra_headers, const char *body, size_t len)
{
    if (req->streaming) {
        DSI_ERROR("http: dsc_http_respond after dsc_http_stream_begin on %s", req->path);
        req_finish(req, 0);
        return DSI_ERR_INVALID_ARG;
    }
    dsi_status_t st = DSI_ERR_CONNECTION;
    int keep = req_keep_alive(req);
    if (dsc_http_req_connected(req)) {
        char small[512], *heap;
        size_t hlen;
        const char *head = head_format(small, sizeof(small), status, content_type, extra_headers,
                                       (long long)len, 0, keep, &hlen, &heap);
        if (head != NULL)
            st = dsc_http_conn_write(req->conn, head, hlen, body, len);
        else
            st = DSI_ERR_NOMEM;
        free(heap);
    }
    req_finish(req, keep && st == DSI_OK);
    return st;
}

dsi_status_t dsc_http_stream_begin(dsc_http_req_t *req, int status, const char *content_type,
                                   const char *extra_headers)
{
    if (req->streaming)
        return DSI_ERR_INVALID_ARG;
    req->streaming = 1;
    /* HTTP/1.0 has no chunked encoding: the end of the body is the end of the connection. */
    req->chunked = req->http_major > 1 || (req->http_major == 1 && req->http_minor >= 1);
    req->keep_alive = req->chunked && req_keep_alive(req);
    if (!dsc_http_req_connected(req))
        return DSI_ERR_CONNECTION;
    char small[512], *heap;
    size_t hlen;
    const char *head = head_format(small, sizeof(small), status, content_type, extra_headers, -1,
                                   req->chunked, req->keep_alive, &hlen, &heap);
    dsi_status_t st = head ? dsc_http_conn_write(req->conn, head, hlen, NULL, 0) : DSI_ERR_NOMEM;
    free(heap);
    return st;
}

dsi_status_t dsc_http_stream_write(dsc_http_req_t *req, const char *data, size_t len)
{
    if (!req->streaming)
        return DSI_ERR_INVALID_ARG;
    if (!dsc_http_req_connected(req))
        return DSI_ERR_CONNECTION;
    if (len == 0)
        return DSI_OK; /* an empty chunk would end the body */
    if (!req->chunked)
        return dsc_http_conn_write(req->conn, data, len, NULL, 0);
    char size[24];
    int n = snprintf(size, sizeof(size), "%zx\r\n", len);
    uv_buf_t bufs[3] = {uv_buf_init(size, (unsigned)n), uv_buf_init((char *)data, (unsigned)len),
                        uv_buf_init("\r\n", 2)};
    return conn_writev(req->conn, bufs, 3);
}

dsi_status_t dsc_http_stream_end(dsc_http_req_t *req)
{
    dsi_status_t st = DSI_ERR_CONNECTION;
    if (!req->streaming) {
        st = DSI_ERR_INVALID_ARG;
    } else if (dsc_http_req_connected(req)) {
        st = req->chunked ? dsc_http_conn_write(req->conn, "0\r\n\r\n", 5, NULL, 0) : DSI_OK;
    }
    req_finish(req, req->keep_alive && st == DSI_OK);
    return st;
}

void dsc_http_conn_fail(dsc_http_conn_t *conn, int status, const char *message)
{
    char body[256], small[512], *heap;
    int n =
        snprintf(body, sizeof(body),
                 "{\"error\":{\"message\":\"%s\",\"type\":\"%s\",\"param\":null,\"code\":null}}",
                 message, status >= 500 ? "server_error" : "invalid_request_error");
    size_t hlen;
    const char *head =
        head_format(small, sizeof(small), status, "application/json", NULL, n, 0, 0, &hlen, &heap);
    if (head != NULL)
        dsc_http_conn_write(conn, head, hlen, body, (size_t)n);
    free(heap);
    dsc_http_server_answered(conn->server, conn->req, status);
    dsc_http_conn_close_after_write(conn);
}
