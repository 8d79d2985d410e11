/*
 * dsc_http.c - configuration, request accessors, buffers and status texts of the HTTP server.
 */
#include "dsc_http_impl.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void dsc_http_config_default(dsc_http_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    snprintf(cfg->host, sizeof(cfg->host), "127.0.0.1");
    cfg->port = 8000;
    cfg->max_body_bytes = 4u << 20;
    cfg->max_header_bytes = 16u << 10;
    cfg->request_timeout_ms = 10000;
    cfg->idle_timeout_ms = 60000;
    cfg->max_connections = 1024;
    cfg->max_unsent_bytes = 4u << 20;
}

dsi_status_t dsc_http_config_set_listen(dsc_http_config_t *cfg, const char *addr)
{
    const char *colon = strrchr(addr, ':');
    if (colon == NULL || colon[1] == '\0')
        return DSI_ERR_INVALID_ARG;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end != '\0' || port < 0 || port > 65535)
        return DSI_ERR_INVALID_ARG;
    const char *host = addr;
    size_t host_len = (size_t)(colon - addr);
    if (host_len >= 2 && host[0] == '[' && host[host_len - 1] == ']') {
        host++;
        host_len -= 2;
    } else if (memchr(host, ':', host_len) != NULL) {
        return DSI_ERR_INVALID_ARG; /* an IPv6 literal needs brackets */
    }
    if (host_len >= sizeof(cfg->host))
        return DSI_ERR_INVALID_ARG;
    if (host_len > 0) {
        memcpy(cfg->host, host, host_len);
        cfg->host[host_len] = '\0';
    }
    cfg->port = (int)port;
    return DSI_OK;
}

const char *dsc_http_status_text(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 413:
        return "Payload Too Large";
    case 415:
        return "Unsupported Media Type";
    case 417:
        return "Expectation Failed";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    case 505:
        return "HTTP Version Not Supported";
    }
    return "Unknown";
}

dsi_status_t dsc_http_buf_append(dsc_http_buf_t *b, const char *data, size_t len)
{
    if (b->len + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + len + 1)
            cap *= 2;
        char *p = realloc(b->data, cap);
        if (p == NULL)
            return DSI_ERR_NOMEM;
        b->data = p;
        b->cap = cap;
    }
    if (len > 0)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return DSI_OK;
}

void dsc_http_buf_consume(dsc_http_buf_t *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
    } else {
        memmove(b->data, b->data + n, b->len - n);
        b->len -= n;
    }
    if (b->data != NULL)
        b->data[b->len] = '\0';
}

void dsc_http_buf_free(dsc_http_buf_t *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}

const char *dsc_http_req_method(const dsc_http_req_t *req)
{
    return req->method;
}

const char *dsc_http_req_path(const dsc_http_req_t *req)
{
    return req->path ? req->path : "";
}

const char *dsc_http_req_query(const dsc_http_req_t *req)
{
    return req->query ? req->query : "";
}

const char *dsc_http_req_header(const dsc_http_req_t *req, const char *name)
{
    if (req->headers.data == NULL) /* no header yet: NULL + 0 is undefined */
        return NULL;
    const char *p = req->headers.data, *end = p + req->headers.len;
    while (p != NULL && p < end) {
        const char *value = p + strlen(p) + 1;
        if (value >= end)
            break;
        if (strcasecmp(p, name) == 0)
            return value;
        p = value + strlen(value) + 1;
    }
    return NULL;
}

const char *dsc_http_req_body(const dsc_http_req_t *req, size_t *len)
{
    if (len != NULL)
        *len = req->body.len;
    return req->body.data ? req->body.data : "";
}

int dsc_http_req_connected(const dsc_http_req_t *req)
{
    return req->conn != NULL && !req->conn->closing;
}

void dsc_http_req_on_close(dsc_http_req_t *req, dsc_http_close_cb cb, void *arg)
{
    req->close_cb = cb;
    req->close_arg = arg;
}
