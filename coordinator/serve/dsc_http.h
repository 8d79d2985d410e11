/*
 * dsc_http.h - a small HTTP/1.1 server on a libuv loop (http-parser underneath), for the API.
 *
 * What it does: keep-alive, a route table (method + exact path), whole-body requests, complete or
 * streamed (chunked) responses answered at any later time, and protection of the loop from bad
 * clients: body and header size limits (413 / 431), a deadline for a request's head and body
 * (408 and close; a client sending a byte at a time cannot hold a connection), an idle keep-alive
 * timeout, a connection limit (503 and close) and a cap on unsent response bytes per connection
 * (a client that does not read is dropped instead of growing our buffers).
 *
 * Threading: everything runs on the loop thread; no function here may be called from another.
 * Nothing blocks the loop.
 *
 * Request lifetime: a handler receives a dsc_http_req_t and owns it until it finishes it exactly
 * once, with dsc_http_respond() or dsc_http_stream_end(), which frees it. This holds even when
 * the client has gone away meanwhile: the request stays valid (its writes then fail with
 * DSI_ERR_CONNECTION) so that a handler answering later never touches freed memory. To learn that
 * the client went away (to cancel work), set a close callback with dsc_http_req_on_close().
 * While a request is unfinished the connection reads no further (pipelined) request.
 */
#ifndef DSC_HTTP_H
#define DSC_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "dsi_status.h"

typedef struct {
    char host[64];               /* listen address, IPv4 or IPv6 literal; default "127.0.0.1" */
    int port;                    /* default 8000; 0 = any free port (read back the bound one) */
    size_t max_body_bytes;       /* default 4 MiB; larger -> 413 and close */
    size_t max_header_bytes;     /* request line + headers; default 16 KiB; larger -> 431 */
    uint32_t request_timeout_ms; /* from a request's first byte to its last; default 10 s -> 408 */
    uint32_t idle_timeout_ms;    /* keep-alive connection without a request; default 60 s */
    uint32_t max_connections;    /* open at once; default 1024; more -> 503 and close */
    size_t max_unsent_bytes;     /* queued response bytes per connection; default 4 MiB */
} dsc_http_config_t;

void dsc_http_config_default(dsc_http_config_t *cfg);

/*
 * Parse "HOST:PORT", "[V6]:PORT" or ":PORT" (host kept) into cfg->host/port. Returns
 * DSI_ERR_INVALID_ARG (nothing changed) on a malformed address.
 */
dsi_status_t dsc_http_config_set_listen(dsc_http_config_t *cfg, const char *addr);

typedef struct dsc_http_server dsc_http_server_t;
typedef struct dsc_http_req dsc_http_req_t;

/* A route's handler. `arg` is the route's argument. */
typedef void (*dsc_http_handler_cb)(void *arg, dsc_http_req_t *req);
/* The client of an unfinished request went away (or the server is closing). */
typedef void (*dsc_http_close_cb)(void *arg, dsc_http_req_t *req);

/* Create a server on `loop` (not yet listening). `cfg` is copied. */
dsi_status_t dsc_http_server_create(uv_loop_t *loop, const dsc_http_config_t *cfg,
                                    dsc_http_server_t **out);
/*
 * Route `method` ("GET", "POST") + exact `path` (no query string) to `handler`; a path ending in
 * a slash and an asterisk routes every longer path under it (GET /v1/models/{id}). A path with no
 * route gets 404; a path routed for other methods gets 405. Both strings are copied.
 */
dsi_status_t dsc_http_server_route(dsc_http_server_t *server, const char *method, const char *path,
                                   dsc_http_handler_cb handler, void *arg);
/*
 * Called for every answer the server gives by itself, without a handler: a malformed or too large
 * request (400, 413, 417, 431), an unknown path or method (404, 405), a request not received in
 * time (408), too many connections or no memory (503). `path` is the request's path when it is
 * one of the routes' paths, else "" (so that a client cannot make up metric labels).
 */
typedef void (*dsc_http_answer_cb)(void *arg, const char *path, int status);
void dsc_http_server_on_answer(dsc_http_server_t *server, dsc_http_answer_cb cb, void *arg);
/* Bind and listen. DSI_ERR_IO (logged with the address) when the address cannot be bound. */
dsi_status_t dsc_http_server_listen(dsc_http_server_t *server);
/* The bound port (after listen), else -1. */
int dsc_http_server_port(const dsc_http_server_t *server);
/* Connections open now. */
uint32_t dsc_http_server_connections(const dsc_http_server_t *server);
/*
 * Stop listening and close every connection; unfinished requests get their close callback (their
 * handlers must still finish them). Frees the server once all handles are closed and then calls
 * done_cb(arg) (may be NULL).
 */
void dsc_http_server_destroy(dsc_http_server_t *server, void (*done_cb)(void *arg), void *arg);

/* Request accessors: strings owned by the request, NUL-terminated. */
const char *dsc_http_req_method(const dsc_http_req_t *req);
const char *dsc_http_req_path(const dsc_http_req_t *req);  /* without the query string */
const char *dsc_http_req_query(const dsc_http_req_t *req); /* after '?', or "" */
/* The value of header `name` (case-insensitive), NULL when absent. */
const char *dsc_http_req_header(const dsc_http_req_t *req, const char *name);
/* The whole body (NUL-terminated for convenience; may contain NUL bytes: use *len). */
const char *dsc_http_req_body(const dsc_http_req_t *req, size_t *len);
/* 1 while the client is connected. */
int dsc_http_req_connected(const dsc_http_req_t *req);
/* Set (or clear with NULL) the callback for the client going away before the request is finished.
 */
void dsc_http_req_on_close(dsc_http_req_t *req, dsc_http_close_cb cb, void *arg);

/*
 * Answer with one complete response and finish (free) the request. `extra_headers` is NULL or
 * lines of "Name: value\r\n". The body is copied. Returns DSI_ERR_CONNECTION if the client is
 * gone (the request is freed all the same).
 */
dsi_status_t dsc_http_respond(dsc_http_req_t *req, int status, const char *content_type,
                              const char *extra_headers, const char *body, size_t len);
/*
 * Start a streamed response (chunked transfer encoding; HTTP/1.0 clients get a close-delimited
 * body), then write pieces with dsc_http_stream_write and finish with dsc_http_stream_end (which
 * frees the request). Data is copied. Writes fail with DSI_ERR_CONNECTION once the client is
 * gone or was dropped for not reading (more than max_unsent_bytes queued).
 */
dsi_status_t dsc_http_stream_begin(dsc_http_req_t *req, int status, const char *content_type,
                                   const char *extra_headers);
dsi_status_t dsc_http_stream_write(dsc_http_req_t *req, const char *data, size_t len);
dsi_status_t dsc_http_stream_end(dsc_http_req_t *req);

/* The reason phrase of a status code ("Not Found"); "Unknown" for others. */
const char *dsc_http_status_text(int status);

#endif
