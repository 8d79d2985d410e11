/*
 * dst_ctrl_impl.h - the connection and listener objects shared by the dst_ctrl_*.c files.
 */
#ifndef DST_CTRL_IMPL_H
#define DST_CTRL_IMPL_H

#include "dsi_list.h"
#include "dst_ctrl.h"

/* A connection that sends this many refused messages is closed: a peer that speaks the
 * protocol wrongly this often is broken or hostile, and each refusal costs a log line. */
#define DST_CTRL_MAX_BAD_MSGS 16
/* How long a closing connection waits for its queued frames to be written. */
#define DST_CTRL_CLOSE_GRACE_MS 1000
#define DST_CTRL_READ_CHUNK     65536

typedef enum {
    CONN_CONNECTING, /* dst_ctrl_connect: resolving, connecting or waiting to retry */
    CONN_OPEN,
    CONN_CLOSING, /* reads stopped, flushing queued frames */
    CONN_CLOSED,  /* handles closing; freed once they are */
} conn_state_t;

typedef struct dst_ctrl_frame {
    uv_write_t req;
    dsi_list_t link; /* in conn->pending while connecting */
    dst_ctrl_conn_t *conn;
    uv_buf_t buf; /* header + body, malloc'd by msgpack's sbuffer */
} dst_ctrl_frame_t;

struct dst_ctrl_conn {
    uv_tcp_t tcp;     /* valid while tcp_inited */
    uv_timer_t timer; /* frame / idle timeout, close grace, connect backoff */
    uv_loop_t *loop;
    dst_ctrl_listener_t *listener; /* NULL for an outgoing connection */
    dsi_list_t link;               /* in listener->conns while listener is set */
    dst_ctrl_opts_t opts;
    dst_ctrl_cb_t cb;
    void *data;
    conn_state_t state;
    dsi_status_t why; /* first cause of closing, reported to on_close */
    char peer[DST_MSG_ADDR_MAX + 16];

    /* outgoing connects */
    char host[DST_MSG_ADDR_MAX];
    uint16_t port;
    uint32_t attempts;
    uint32_t delay_ms;
    uv_connect_t creq;
    uv_getaddrinfo_t gai;
    int gai_pending;

    /* handle bookkeeping: the conn is freed when no handle close and no request is pending */
    int tcp_inited;
    int tcp_closing;
    int closes_pending;

    /* reading one frame: header, then a body buffer grown as bytes arrive (never sized by the
     * peer's claim alone, so a peer announcing 64 MiB and sending 10 bytes costs 10 bytes) */
    uint8_t hdr[DST_CTRL_HEADER_LEN];
    size_t hdr_got;
    char *body;
    size_t body_len, body_got, body_cap;
    uint32_t bad_msgs;
    char rbuf[DST_CTRL_READ_CHUNK];

    /* writing */
    size_t queued;      /* bytes handed to uv_write or pending, not yet written */
    dsi_list_t pending; /* of dst_ctrl_frame_t queued before the connection opened, FIFO */
};

struct dst_ctrl_listener {
    uv_tcp_t tcp;
    uv_loop_t *loop;
    dst_ctrl_opts_t opts;
    dst_ctrl_cb_t cb;
    dst_ctrl_stats_t stats;
    dsi_list_t conns; /* of dst_ctrl_conn_t accepted and not yet finished, newest first */
    uint16_t port;
    int closing;
    int handle_closed;
};

/* dst_ctrl_conn.c */
dst_ctrl_conn_t *dst_ctrl_conn_new(uv_loop_t *loop, const dst_ctrl_opts_t *opts,
                                   const dst_ctrl_cb_t *cb);
/* The socket is connected: start reading, flush pending frames, call on_open. */
void dst_ctrl_conn_opened(dst_ctrl_conn_t *conn);
/* Close now (no flush): stop everything, close the handles, then on_close and free. */
void dst_ctrl_conn_teardown(dst_ctrl_conn_t *conn, dsi_status_t why);
/* Flush queued frames, then tear down with `why`. */
void dst_ctrl_conn_close_why(dst_ctrl_conn_t *conn, dsi_status_t why);
/* Frees the conn (after on_close) once no handle close and no request is pending. */
void dst_ctrl_conn_maybe_finish(dst_ctrl_conn_t *conn);
void dst_ctrl_conn_handle_closed_cb(uv_handle_t *h);
void dst_ctrl_conn_timer_cb(uv_timer_t *t);
/* "a.b.c.d:port" / "[v6]:port" of a socket address. */
void dst_ctrl_sockaddr_str(const struct sockaddr *sa, char *out, size_t outlen);

/* dst_ctrl_connect.c: timer expiry while connecting (start the next attempt). */
void dst_ctrl_connect_retry_cb(dst_ctrl_conn_t *conn);
/* A tcp handle closed between attempts. */
void dst_ctrl_connect_tcp_closed(dst_ctrl_conn_t *conn);

/* dst_ctrl_listen.c: a finished accepted connection leaves its listener. */
void dst_ctrl_listener_forget(dst_ctrl_listener_t *l, dst_ctrl_conn_t *conn);

/* dst_ctrl_frame.c: checks a complete header; DSI_OK and *len, or the framing error in err. */
dsi_status_t dst_ctrl_frame_parse(const uint8_t hdr[DST_CTRL_HEADER_LEN], size_t max_frame,
                                  uint32_t *len, char *err, size_t errlen);
/* Writes the header for a body of len bytes. */
void dst_ctrl_frame_header(uint8_t hdr[DST_CTRL_HEADER_LEN], uint32_t len);

#endif
