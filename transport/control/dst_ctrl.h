/*
 * dst_ctrl.h - framed control-protocol connections over TCP on a libuv loop.
 *
 * A frame is an 8-byte header and a msgpack body (dst_msg.h):
 *   bytes 0-2  magic "DSC"
 *   byte  3    frame version (DST_CTRL_FRAME_VERSION)
 *   bytes 4-7  body length, unsigned 32-bit big-endian, 1..max_frame
 *
 * Everything runs on the caller's loop, in its thread, without blocking it: sends are queued and
 * written asynchronously, reads are decoded as they complete, connects retry on a timer. None of
 * these functions may be called from another thread.
 *
 * Bad input from a peer never crashes or hangs: the cause is logged once with the peer's address
 * and the peer gets an ERROR reply. A well-framed body that fails to decode (unknown type, bad
 * field) keeps the connection; broken framing (bad magic or version, oversized length, a frame not
 * completed within frame_timeout_ms, a connection closed mid-frame) closes it after the reply.
 */
#ifndef DST_CTRL_H
#define DST_CTRL_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "dsi_status.h"
#include "dst_msg.h"

#define DST_CTRL_MAGIC         "DSC"
#define DST_CTRL_FRAME_VERSION 1
#define DST_CTRL_HEADER_LEN    8

typedef struct {
    size_t max_frame;              /* largest body accepted or sent; default 64 MiB */
    uint32_t frame_timeout_ms;     /* a started frame must complete within this; 0 = never */
    uint32_t idle_timeout_ms;      /* close when no frame arrives for this long; 0 = never */
    uint32_t connect_retry_min_ms; /* first retry delay of dst_ctrl_connect; doubles each time */
    uint32_t connect_retry_max_ms; /* cap of the retry delay */
    uint32_t connect_attempts;     /* give up after this many failed attempts; 0 = never */
    size_t max_send_queue;         /* bytes queued unsent before dst_ctrl_send refuses */
} dst_ctrl_opts_t;

/* Defaults: 64 MiB frames, 10 s frame timeout, no idle timeout, retries 100 ms .. 5 s forever,
 * 256 MiB send queue. */
void dst_ctrl_opts_default(dst_ctrl_opts_t *opts);

typedef struct dst_ctrl_conn dst_ctrl_conn_t;
typedef struct dst_ctrl_listener dst_ctrl_listener_t;

/*
 * Callbacks, all optional (NULL), all called on the loop thread.
 * on_open:  the connection is established (accepted, or connected after any retries). Messages
 *           may be sent from here on (dst_ctrl_send also queues before).
 * on_msg:   one decoded, validated message. It is freed when the callback returns; to keep it,
 *           move it (copy *msg and zero it). The callback may send and may close the connection.
 * on_close: the connection is finished: `why` is DSI_OK for a local dst_ctrl_conn_close, else
 *           the cause (DSI_ERR_CONNECTION for a peer's close or a failed connect, DSI_ERR_PROTOCOL,
 *           DSI_ERR_TIMEOUT, ...). Called exactly once per connection, also for a connect that
 *           never succeeded; the conn is freed after it returns.
 */
typedef struct {
    void (*on_open)(dst_ctrl_conn_t *conn, void *arg);
    void (*on_msg)(dst_ctrl_conn_t *conn, dst_msg_t *msg, void *arg);
    void (*on_close)(dst_ctrl_conn_t *conn, dsi_status_t why, void *arg);
    void *arg;
} dst_ctrl_cb_t;

/* Counters of a listener over all its connections, for tests and metrics. */
typedef struct {
    uint64_t accepted;    /* connections accepted */
    uint64_t closed;      /* connections finished */
    uint64_t msgs_in;     /* messages delivered to on_msg */
    uint64_t bad_msgs;    /* well-framed bodies refused (connection kept) */
    uint64_t bad_frames;  /* framing errors and timeouts (connection closed) */
    uint64_t errors_sent; /* ERROR replies queued by the transport itself */
} dst_ctrl_stats_t;

/*
 * Listens on `addr` ("127.0.0.1:7000", "[::1]:0", "0.0.0.0:7000"; port 0 picks a free port, see
 * dst_ctrl_listener_port). `opts` and `cb` are copied; NULL opts means defaults. Every accepted
 * connection uses `cb`. On success *out is owned by the caller until dst_ctrl_listener_close.
 * DSI_ERR_INVALID_ARG for a bad address, DSI_ERR_CONNECTION when bind/listen fails.
 */
dsi_status_t dst_ctrl_listen(uv_loop_t *loop, const char *addr, const dst_ctrl_opts_t *opts,
                             const dst_ctrl_cb_t *cb, dst_ctrl_listener_t **out);

/* The bound port (useful after listening on port 0). */
uint16_t dst_ctrl_listener_port(const dst_ctrl_listener_t *listener);

void dst_ctrl_listener_stats(const dst_ctrl_listener_t *listener, dst_ctrl_stats_t *out);

/*
 * Stops listening and closes every connection it accepted that is still open (their on_close
 * runs with DSI_OK). The listener is freed once libuv has closed its handle; the loop must run.
 */
void dst_ctrl_listener_close(dst_ctrl_listener_t *listener);

/*
 * Connects to `addr` (numeric IPv4 "a.b.c.d:port" or IPv6 "[::1]:port", or "hostname:port"
 * resolved asynchronously), retrying with backoff as `opts` says, so a node started before its
 * coordinator keeps trying. Returns the connection at once (it opens later: on_open); messages
 * sent before it opens are queued. Owned by the transport: it is freed after on_close.
 * DSI_ERR_INVALID_ARG for an unparsable address.
 */
dsi_status_t dst_ctrl_connect(uv_loop_t *loop, const char *addr, const dst_ctrl_opts_t *opts,
                              const dst_ctrl_cb_t *cb, dst_ctrl_conn_t **out);

/*
 * Encodes `msg` into a frame at once and queues it; the caller keeps ownership of `msg` and may
 * free it on return. DSI_ERR_INVALID_ARG (msg fails dst_msg_check), DSI_ERR_TOO_LARGE (body over
 * max_frame), DSI_ERR_CAPACITY (send queue full: the peer does not read), DSI_ERR_CONNECTION
 * (closing or closed).
 */
dsi_status_t dst_ctrl_send(dst_ctrl_conn_t *conn, const dst_msg_t *msg);

/* Sends an ERROR message; failures are logged and otherwise ignored (it is a best-effort reply). */
void dst_ctrl_send_error(dst_ctrl_conn_t *conn, dsi_status_t code, uint32_t ref_type,
                         const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/*
 * Closes the connection after the frames already queued are written (bounded by a short grace
 * timeout). on_close runs later with DSI_OK unless another cause came first. Idempotent; safe from
 * inside on_msg and on_open.
 */
void dst_ctrl_conn_close(dst_ctrl_conn_t *conn);

/* "127.0.0.1:54321" of the peer (or of the target while connecting); valid while conn lives. */
const char *dst_ctrl_conn_peer(const dst_ctrl_conn_t *conn);

/* A pointer the application attaches to the connection (NULL initially). */
void dst_ctrl_conn_set_data(dst_ctrl_conn_t *conn, void *data);
void *dst_ctrl_conn_data(const dst_ctrl_conn_t *conn);

/* Bytes queued and not yet written. */
size_t dst_ctrl_conn_queued(const dst_ctrl_conn_t *conn);

/*
 * Parses "host:port" / "[v6]:port" into host (NUL-terminated, brackets removed) and port.
 * DSI_ERR_INVALID_ARG when malformed, the host does not fit, or the port is not 0..65535.
 */
dsi_status_t dst_ctrl_addr_parse(const char *addr, char *host, size_t hostlen, uint16_t *port);
/*
 * The name of this host's network interface that reaches "host:port" directly: the loopback
 * interface for a loopback address, else the one whose subnet holds the address (the first
 * address getaddrinfo gives). DSI_ERR_NOT_FOUND when none does (a routed address).
 */
dsi_status_t dst_ctrl_addr_netdev(const char *addr, char *ifname, size_t cap);

#endif
