/*
 * dst_ucx.h - the UCX data plane of one daemon: one UCP context and worker, active messages
 * carrying dst_wire messages (ACTIVATION, DISPATCH, COMBINE), progress driven from a libuv loop.
 *
 * Threading: everything runs on the loop thread. No function here may be called from another
 * thread; compute threads hand their results to the loop thread (uv_async) and it sends them.
 *
 * Progress: the worker's event fd is polled by a uv_poll handle. When it fires (or after a send
 * was posted), the transport runs progress -> deliver -> arm until ucp_worker_arm() says the
 * worker is idle (after spin_us of polling without activity), so an idle daemon sleeps in epoll.
 * User callbacks (on_message, on_peer_error, send completions) are delivered from that loop, never
 * from inside ucp_worker_progress() and never from inside dst_ucx_send(), so they may call
 * dst_ucx_send() themselves.
 *
 * Receiving: every message's header is decoded and validated (dst_wire_check, dst_wire_check_side,
 * the current epoch, a known sending peer) before on_message sees it; invalid messages are logged
 * with the peer and the reason, counted (stats.rx_rejected) and dropped, and a rejected
 * rendezvous send completes on its sender with an error. Large payloads arrive by rendezvous
 * into buffers of a size-class pool (bounded by pool_bytes; steady state allocates nothing).
 *
 * Peer failure: endpoints use UCX peer error handling. Set UCX_MM_ERROR_HANDLING=y (the default
 * this module applies unless the environment says otherwise) to keep shared memory, and
 * UCX_KEEPALIVE_INTERVAL to bound detection time. A failed peer is reported once through
 * on_peer_error; its endpoint is closed and sends to it fail with DSI_ERR_PEER.
 */
#ifndef DST_UCX_H
#define DST_UCX_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "dsi_status.h"
#include "dst_wire.h"

/* The UCX active-message id of all data-plane messages. */
#define DST_UCX_AM_ID 17u

typedef struct dst_ucx dst_ucx_t;

/*
 * A validated message from peer_id. hdr and payload (bytes long; at least 8-byte aligned, 64-byte
 * aligned when it came by rendezvous) are valid only during the call; copy what must outlive it.
 */
typedef void (*dst_ucx_message_cb)(dst_ucx_t *ucx, uint32_t peer_id, const dst_wire_hdr_t *hdr,
                                   const void *payload, size_t bytes, void *user);
/* peer_id's endpoint failed (status DSI_ERR_PEER; the UCX status is logged). */
typedef void (*dst_ucx_peer_error_cb)(dst_ucx_t *ucx, uint32_t peer_id, dsi_status_t status,
                                      void *user);
/* A send finished: DSI_OK once the payload may be reused, or the error that ended it. */
typedef void (*dst_ucx_send_cb)(dst_ucx_t *ucx, dsi_status_t status, void *arg);

typedef struct {
    uint32_t self_id;         /* this daemon's node id, written into every header's src */
    uint32_t max_peers;       /* peer ids are [0, max_peers) */
    uint64_t epoch;           /* the plan epoch accepted at start (dst_ucx_set_epoch changes it) */
    size_t max_message_bytes; /* larger payloads are rejected; default 256 MiB */
    size_t pool_bytes;        /* cap on receive-buffer memory; default 1 GiB */
    const char *tls;          /* UCX_TLS for this context ("shm", "tcp", ...) or NULL: env/UCX */
    const char *net_devices;  /* UCX_NET_DEVICES ("lo", "eth0", ...) unless the environment
                                 sets it; NULL: every device. Network transports then listen
                                 and connect only there (a loopback cluster stays off eth0).
                                 Read during dst_ucx_create only. */
    uint32_t spin_us;         /* after activity, keep polling this long before sleeping (the
                                 reply to a DISPATCH usually comes sooner than a wake-up from
                                 epoll on a busy host); 0 sleeps at once. Default 100. */
    dst_ucx_message_cb on_message;       /* required */
    dst_ucx_peer_error_cb on_peer_error; /* optional */
    void *user;                          /* passed to on_message and on_peer_error */
} dst_ucx_config_t;

typedef struct {
    uint64_t rx_messages; /* delivered to on_message */
    uint64_t rx_bytes;    /* their payload bytes */
    uint64_t rx_rejected; /* invalid or undeliverable messages dropped */
    uint64_t rx_rndv;     /* delivered messages that came by rendezvous */
    uint64_t tx_messages; /* sends completed with DSI_OK */
    uint64_t tx_bytes;
    uint64_t tx_errors;   /* sends completed with an error */
    uint64_t peer_errors; /* endpoints reported failed */
} dst_ucx_stats_t;

/*
 * Fills defaults: max_peers 64, epoch 0, max_message_bytes 256 MiB, pool_bytes 1 GiB, tls NULL,
 * spin_us 100.
 */
void dst_ucx_config_default(dst_ucx_config_t *cfg);

/*
 * Creates the context and worker (UCP_FEATURE_AM | UCP_FEATURE_WAKEUP, single thread mode) and
 * starts polling its event fd on loop. cfg is copied (tls too). *out is set only on success.
 */
dsi_status_t dst_ucx_create(uv_loop_t *loop, const dst_ucx_config_t *cfg, dst_ucx_t **out);

/*
 * Flushes and closes every endpoint (progressing the worker, at most ~2 s, then forcing), frees
 * the worker, context and pools, and closes the libuv handles. Pending send callbacks are called
 * with DSI_ERR_CANCELLED. The caller must run the loop once more (uv_run) before uv_loop_close
 * so that the handles finish closing. Not from inside a dst_ucx callback. NULL is a no-op.
 */
void dst_ucx_destroy(dst_ucx_t *ucx);

/* The worker's address, to ship to peers (PEERS / MPI allgather). Owned by ucx. */
dsi_status_t dst_ucx_address(dst_ucx_t *ucx, const void **bytes, size_t *len);

/*
 * Creates the endpoint to peer_id from its worker address (not kept after the call). The address
 * must come from the authenticated control plane: UCX checks little of it (we check only its
 * length, 1..65536). DSI_ERR_CONNECTION if UCX refuses it. Peer error handling is on; a failure
 * later is reported through on_peer_error. DSI_ERR_INVALID_ARG if peer_id is out of range or
 * already has an endpoint (also while a previous one is still closing). Messages from peer_id are
 * accepted only once this side has connected to it.
 */
dsi_status_t dst_ucx_connect(dst_ucx_t *ucx, uint32_t peer_id, const void *addr, size_t len);

/* Starts closing peer_id's endpoint (flush); sends to it then fail. No-op if not connected. */
void dst_ucx_disconnect(dst_ucx_t *ucx, uint32_t peer_id);

/* The node id written into the src of every header sent from now on (a daemon learns its id at
 * WELCOME, after its worker address went out in REGISTER). */
void dst_ucx_set_self_id(dst_ucx_t *ucx, uint32_t self_id);
/* Messages whose epoch differs from this one are rejected from now on. */
void dst_ucx_set_epoch(dst_ucx_t *ucx, uint64_t epoch);
/* Messages of epochs in [lo, hi] are accepted from now on (a make-before-break switch serves two
 * plans at once); lo <= hi. */
void dst_ucx_set_epochs(dst_ucx_t *ucx, uint64_t lo, uint64_t hi);

/*
 * Sends one message to peer_id: hdr (hdr->src is replaced by self_id; the header is encoded at
 * once, so hdr may go away after the call) and payload (bytes long, which must equal
 * dst_wire_payload_bytes(hdr)). Large payloads go zero-copy (rendezvous): the caller keeps
 * payload alive and unmodified until cb runs. cb (may be NULL) runs exactly once, from the loop,
 * when DSI_OK is returned; never when an error is returned (DSI_ERR_INVALID_ARG for a bad header
 * or size, DSI_ERR_PEER for an unknown or failed peer).
 */
dsi_status_t dst_ucx_send(dst_ucx_t *ucx, uint32_t peer_id, const dst_wire_hdr_t *hdr,
                          const void *payload, size_t bytes, dst_ucx_send_cb cb, void *arg);

/* Counters since creation. */
void dst_ucx_stats(const dst_ucx_t *ucx, dst_ucx_stats_t *out);

#endif
