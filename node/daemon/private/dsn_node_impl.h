/*
 * dsn_node_impl.h - the node daemon's loop thread (dsn_node.c): the control connection, the UCX
 * data plane, heartbeats, signals, the plan as the coordinator sent it, and the outbox.
 *
 * Threads as types: the loop thread owns a dsn_node_t and every network object in it; the compute
 * thread owns a dsn_compute_t (dsn_compute_impl.h: the engine, sequences, micro-batches). The
 * dsn_queue_t between them (dsn_queue_impl.h) is the only thing both touch. The loop thread makes
 * the compute state before the thread starts and frees it after the thread stopped; in between it
 * reaches it only through tasks.
 */
#ifndef DSN_NODE_IMPL_H
#define DSN_NODE_IMPL_H

#include <pthread.h>
#include <uv.h>

#include "dsn_compute_impl.h"
#include "dsn_node.h"
#include "dsn_queue_impl.h"
#include "dst_ctrl.h"
#include "dst_msg.h"
#include "dst_secret.h"
#include "dst_ucx.h"

#define DSN_DRAIN_DEADLINE_MS 60000 /* a draining node stops by itself after this */
/* A control connection that opened but brought no WELCOME within this is not a coordinator's. */
#define DSN_WELCOME_DEADLINE_MS 10000
#define DSN_LOAD_WINDOW_MS    1000  /* expert-load counting window (DSINFER_LOAD_WINDOW_MS) */
#define DSN_COORDINATOR_WAIT_MS 300000 /* how long a node waits for a lost coordinator */

typedef struct dsn_node {
    dsn_node_opts_t opts; /* read-only once the compute thread runs (it reads them too) */
    uv_loop_t loop;
    dst_ctrl_conn_t *ctrl;
    dst_ucx_t *ucx;
    dst_secret_t secret;
    char name[DST_MSG_NAME_MAX];
    uint32_t node_id;
    int welcomed, ready, stopping;
    dsi_status_t exit_status;
    uv_timer_t heartbeat;
    uint32_t heartbeat_ms;
    uint64_t heartbeat_seq;
    uv_async_t wake; /* compute -> loop: the outbox has records */
    uv_signal_t sigterm, sigint;
    uv_timer_t drain_timer;
    int draining;
    uint8_t connected[DSN_MAX_PEERS]; /* UCX endpoint open to that node */
    uv_timer_t load_timer;            /* every load_window_ms: DSN_TASK_LOAD */
    uint32_t load_window_ms;

    /* Outliving the coordinator: the address to connect to again, the epoch this node last
     * answered READY in (its slice is that plan's), the id it had there, and the deadline for
     * the coordinator's return (opts.coordinator_wait_ms). */
    char coordinator[DST_MSG_ADDR_MAX];
    uint64_t ready_epoch;
    uint32_t held_id;
    int orphan; /* the coordinator was lost: connecting again */
    /* ORPHAN tasks queued so far: outbox records of an older session (dsn_queue_new_session) are
     * the lost coordinator's work (tokens, moves, DISPATCHes) and are dropped, not sent */
    uint32_t session;
    uv_timer_t orphan_timer;
    uv_timer_t welcome_timer; /* from the control connection's open to WELCOME */

    /* the plan (the compute thread gets copies of its own) */
    dst_msg_t *plan;   /* the newest PLAN message (owned; NULL before the first) */
    int switching;     /* a live plan is on its way: until RELEASE */
    uint64_t epoch;    /* the newest plan's */
    uint64_t task_gen; /* restarts so far: stamped on every task */

    dsn_checkpoint_t *ckpt; /* opened here; read by the compute thread's loads */
    dsn_queue_t queue;
    dsn_compute_t *compute; /* the compute thread's: not touched while it runs */
    pthread_t thread;
    int thread_started;
} dsn_node_t;

#endif
