/*
 * dst_ucx_impl.h - state shared by the dst_ucx_*.c files. Not a public header.
 *
 * Ownership: dst_ucx_t owns its peers array, the receive-buffer pool, and the free lists of send
 * slots and receive records. Records move between a free list and one of the two FIFO queues
 * (completed sends, ready messages) that the deliver phase drains; all on the loop thread.
 */
#ifndef DST_UCX_IMPL_H
#define DST_UCX_IMPL_H

#include <ucp/api/ucp.h>

#include "dsi_list.h"
#include "dst_ucx.h"

/* Receive buffers come in power-of-two classes from 4 KiB up; each class keeps a free list. */
#define POOL_MIN_SHIFT 12
#define POOL_CLASSES   40

typedef struct pool_buf {
    struct pool_buf *next; /* free-list link while cached */
} pool_buf_t;

typedef struct {
    pool_buf_t *free[POOL_CLASSES]; /* cached buffers of 2^(POOL_MIN_SHIFT + class) bytes */
    size_t cached_bytes;            /* bytes on the free lists */
    size_t total_bytes;             /* cached + handed out */
    size_t cap_bytes;               /* total_bytes never exceeds this */
} pool_t;

typedef enum {
    PEER_NONE = 0,  /* never connected, or closed */
    PEER_CONNECTED, /* endpoint usable */
    PEER_FAILED,    /* error callback seen, report pending or delivered; endpoint closing */
    PEER_CLOSING,   /* dst_ucx_disconnect: endpoint flushing */
} peer_state_t;

typedef struct {
    dst_ucx_t *ucx;
    uint32_t id;
    peer_state_t state;
    ucp_ep_h ep;
    void *close_req;        /* pending ucp_ep_close_nbx request, or NULL */
    int error_pending;      /* error callback seen, on_peer_error not yet called */
    ucs_status_t ucs_error; /* the status the error callback got */
} peer_t;

/* One outstanding send: its encoded header must live until UCX completes the send. */
typedef struct send_slot {
    dsi_list_t link; /* in ucx->free_slots or ucx->done_sends */
    dst_ucx_t *ucx;
    dst_ucx_send_cb cb;
    void *arg;
    size_t bytes;
    dsi_status_t status;
    uint8_t hdr[DST_WIRE_HDR_MAX];
} send_slot_t;

/* One received message, from the AM callback until on_message returned. */
typedef struct rx_msg {
    dsi_list_t link; /* in ucx->free_msgs or ucx->ready_msgs */
    dst_ucx_t *ucx;
    uint32_t peer;
    int rndv;
    dsi_status_t status; /* rendezvous receive result */
    dst_wire_hdr_t hdr;
    void *data;     /* the payload */
    size_t bytes;   /* payload bytes */
    void *ucp_data; /* UCX-owned data kept with UCS_INPROGRESS, released after delivery */
    void *buf;      /* pool buffer holding the payload, or NULL */
    size_t buf_size;
} rx_msg_t;

struct dst_ucx {
    uv_loop_t *loop;
    uv_poll_t *poll; /* on the worker's event fd; malloc'ed, freed by its close callback */
    uv_idle_t *idle; /* runs the progress loop soon after a send was posted */
    int efd;
    dst_ucx_config_t cfg;
    uint64_t epoch_lo; /* accepted epochs: [epoch_lo, cfg.epoch] */
    char tls[64];
    ucp_context_h context;
    ucp_worker_h worker;
    ucp_address_t *address;
    size_t address_len;
    peer_t *peers;           /* [cfg.max_peers] */
    uint32_t errors_pending; /* peers with error_pending set */
    pool_t pool;
    dsi_list_t free_slots;    /* of send_slot_t, most recently freed first */
    dsi_list_t free_msgs;     /* of rx_msg_t, most recently freed first */
    dsi_list_t done_sends;    /* of send_slot_t: completed, callbacks not yet called (FIFO) */
    dsi_list_t ready_msgs;    /* of rx_msg_t: complete, not yet delivered (FIFO) */
    uint32_t rndv_pending;    /* rendezvous receives in flight */
    uint32_t sends_pending;   /* sends not yet completed by UCX */
    int in_drive;             /* drive() on the stack: nested sends need no idle kick */
    int64_t last_activity_ns; /* monotonic time progress or delivery last did something */
    int destroying;
    dst_ucx_stats_t stats;
};

/* dst_ucx_pool.c */
void *pool_get(pool_t *pool, size_t bytes, size_t *size_out);
void pool_put(pool_t *pool, void *buf, size_t size);
void pool_cleanup(pool_t *pool);
send_slot_t *slot_get(dst_ucx_t *ucx);
void slot_put(dst_ucx_t *ucx, send_slot_t *slot);
rx_msg_t *msg_get(dst_ucx_t *ucx);
void msg_put(dst_ucx_t *ucx, rx_msg_t *msg);

/* dst_ucx_recv.c */
ucs_status_t dst_ucx_am_recv_cb(void *arg, const void *header, size_t header_length, void *data,
                                size_t length, const ucp_am_recv_param_t *param);
void dst_ucx_deliver(dst_ucx_t *ucx);

/* dst_ucx.c */
void dst_ucx_kick(dst_ucx_t *ucx);
void dst_ucx_peer_close(dst_ucx_t *ucx, peer_t *peer, int force);
dsi_status_t dst_ucx_status_from_ucs(ucs_status_t status);

#endif
