/*
 * dsc_http_impl.h - internals of the HTTP server shared by its files: dsc_http_server.c
 * (listening, connections, timers, reading), dsc_http_parse.c (http-parser callbacks building a
 * request), dsc_http_response.c (writing responses). Not for other modules.
 *
 * A connection moves IDLE -> READING (first byte of a request; the request deadline runs) ->
 * HANDLING (the request is complete and handed to its handler; the parser is paused so that
 * pipelined bytes wait in `pending`) -> IDLE when the handler finishes it (keep-alive), or to
 * closing. Errors found while reading are answered by the server itself, which then closes.
 *
 * Memory: the connection owns its pending input and, while READING, the request being parsed.
 * Once handed to a handler the request belongs to it; the connection only points at it
 * (conn->req, req->conn), and the two are unlinked when either ends.
 */
#ifndef DSC_HTTP_IMPL_H
#define DSC_HTTP_IMPL_H

#include <http_parser.h>

#include "dsc_http.h"
#include "dsi_list.h"

typedef struct dsc_http_conn dsc_http_conn_t;

typedef struct {
    char *data;
    size_t len, cap;
} dsc_http_buf_t;

typedef enum {
    DSC_HTTP_CONN_IDLE = 0,
    DSC_HTTP_CONN_READING,
    DSC_HTTP_CONN_HANDLING,
} dsc_http_conn_state_t;

typedef struct {
    char *method;
    char *path;
    dsc_http_handler_cb handler;
    void *arg;
} dsc_http_route_t;

struct dsc_http_req {
    dsc_http_conn_t *conn; /* NULL once the connection is gone */
    char method[16];
    dsc_http_buf_t url;     /* raw request target, NUL-terminated */
    char *path, *query;     /* split copies of url (owned) */
    dsc_http_buf_t headers; /* "name\0value\0" pairs */
    int header_state;       /* 0 none yet, 1 in a name, 2 in a value */
    size_t head_bytes;      /* url + header bytes so far, for max_header_bytes */
    dsc_http_buf_t body;
    int http_major, http_minor;
    int keep_alive; /* the client allows another request on this connection */
    int handed;     /* given to a handler */
    int streaming;  /* dsc_http_stream_begin was called */
    int chunked;    /* streaming with chunked transfer encoding */
    dsc_http_close_cb close_cb;
    void *close_arg;
};

struct dsc_http_conn {
    uv_tcp_t tcp; /* handle.data = this */
    uv_timer_t timer;
    dsc_http_server_t *server;
    dsi_list_t link; /* in server->conns */
    http_parser parser;
    dsc_http_conn_state_t state;
    dsc_http_req_t *req;    /* being parsed (owned) or handled (the handler's) */
    dsc_http_buf_t pending; /* received bytes not yet parsed */
    int error_status;       /* set by a parser callback that rejects the request */
    size_t unsent;          /* bytes queued in uv_write and not yet written */
    int closing;            /* uv_close called or a close is queued behind a shutdown */
    int shutting_down;      /* uv_shutdown in flight: no more writes */
    int reading;            /* uv_read_start active */
    int peer_eof;           /* the client shut its side down: answer, then close */
    int in_process;         /* inside conn_process: finishing a request must not recurse */
    int open_handles;       /* of tcp and timer, until both close callbacks ran */
};

struct dsc_http_server {
    uv_loop_t *loop;
    dsc_http_config_t cfg;
    uv_tcp_t listener;
    int listener_open; /* uv_tcp_init done, not closed yet */
    int port;          /* bound port, -1 before listen */
    dsc_http_route_t *routes;
    size_t n_routes;
    dsi_list_t conns; /* of dsc_http_conn_t: all open connections, newest first */
    uint32_t n_conns;
    int destroying;
    void (*done_cb)(void *arg);
    void *done_arg;
    dsc_http_answer_cb answer_cb; /* answers given without a handler (metrics) */
    void *answer_arg;
    uint64_t refused_busy;    /* connections refused for max_connections since the last WARN */
    uint64_t refused_warn_ms; /* when that WARN was logged (loop time) */
    char readbuf[64 * 1024]; /* shared by all reads: each read is consumed before the next */
};

/* Growable buffers (always NUL-terminated after data[len]). DSI_ERR_NOMEM on failure. */
dsi_status_t dsc_http_buf_append(dsc_http_buf_t *b, const char *data, size_t len);
void dsc_http_buf_consume(dsc_http_buf_t *b, size_t n);
void dsc_http_buf_free(dsc_http_buf_t *b);

/* dsc_http_parse.c */
extern const http_parser_settings dsc_http_parser_settings;
dsc_http_req_t *dsc_http_req_new(dsc_http_conn_t *conn);
void dsc_http_req_free(dsc_http_req_t *req);

/* dsc_http_server.c */
/* Close the connection (idempotent); a handed request learns it in the close callback. */
void dsc_http_conn_close(dsc_http_conn_t *conn);
/* After the last response bytes are queued: shut the write side down, then close. */
void dsc_http_conn_close_after_write(dsc_http_conn_t *conn);
/* The handler finished the connection's request: back to IDLE or closed, then parse on. */
void dsc_http_conn_request_done(dsc_http_conn_t *conn, int keep_alive);

/* dsc_http_response.c */
/* Queue bytes a then b (either may be empty) as one write; DSI_ERR_CONNECTION if not possible. */
dsi_status_t dsc_http_conn_write(dsc_http_conn_t *conn, const char *a, size_t alen, const char *b,
                                 size_t blen);
/* Answer an error the server found itself (JSON error body, Connection: close) and close. */
void dsc_http_conn_fail(dsc_http_conn_t *conn, int status, const char *message);
/* Tell the server's answer callback about an answer given without a handler. */
void dsc_http_server_answered(dsc_http_server_t *s, const dsc_http_req_t *req, int status);

#endif
