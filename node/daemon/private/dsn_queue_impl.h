/*
 * dsn_queue_impl.h - what both threads of a node daemon touch, and nothing else: the task queue
 * (loop thread -> compute thread: decoded control messages and data-plane payloads), the outbox
 * (compute thread -> loop thread: messages to send, woken by a uv_async), and the pools their
 * records and payload buffers come from. Every function takes the queue's mutex for a few
 * pointer moves; none allocates once the pools hold what a steady stream of steps needs.
 */
#ifndef DSN_QUEUE_IMPL_H
#define DSN_QUEUE_IMPL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "dsi_list.h"
#include "dsn_sampler.h"
#include "dsi_status.h"
#include "dst_msg.h"
#include "dst_wire.h"

typedef enum {
    DSN_TASK_SUBMIT,   /* msg: SUBMIT (a sequence for this node's stage) */
    DSN_TASK_FEEDBACK, /* msg: TOKENS sampled by the last stage, for stage 0 */
    DSN_TASK_CANCEL,   /* msg: CANCEL */
    DSN_TASK_WIRE,     /* a data-plane message: hdr, payload */
    DSN_TASK_BIAS,     /* msg: BIAS (new router biases of one layer) */
    DSN_TASK_LOAD,     /* the load window ended: report the counts (LOAD_STATS) */
    DSN_TASK_RELOAD,   /* plan: leave the epoch, load the plan's slice, then READY (dsn_replan.c) */
    DSN_TASK_PREPARE,  /* plan: load the experts a live plan adds, then READY */
    DSN_TASK_SWITCH,   /* plan (NULL: not in it): route by it; SWITCHED when the old work is done */
    DSN_TASK_RELEASE,  /* plan: drop the experts only the previous plan needed */
    DSN_TASK_ORPHAN,   /* the coordinator was lost: drop every sequence, keep the slice */
    DSN_TASK_KV_MOVE,  /* msg: KV_MOVE (send a sequence's KV rows to its new node) */
    DSN_TASK_STOP,
} dsn_task_type_t;

typedef struct dsn_task {
    dsi_list_t link; /* in the queue, the deferred ACTIVATIONs, or the free records */
    dsn_task_type_t type;
    dst_msg_t msg;      /* moved decoded message (owned) */
    uint32_t peer;      /* WIRE: sending node */
    dst_wire_hdr_t hdr; /* WIRE */
    void *payload;      /* WIRE: a pool buffer (dsn_queue_buf_get), owned */
    size_t bytes;
    dst_msg_t *plan;   /* RELOAD, PREPARE: a copy of the PLAN for the compute thread */
    uint64_t epoch;    /* RELOAD .. RELEASE */
    uint32_t node_id;  /* RELOAD: this node's id */
    uint64_t gen;      /* the loop's restart count when queued: older ones are stale */
    uint64_t since_ns; /* a deferred KV chunk: when it was first deferred */
} dsn_task_t;

typedef enum {
    DSN_OUT_WIRE,
    DSN_OUT_TOKENS,
    DSN_OUT_LOAD,
    DSN_OUT_READY,    /* epoch: the slice is loaded (restart) or the added experts (live) */
    DSN_OUT_SWITCHED, /* epoch: nothing routed by the previous plan is in flight */
    DSN_OUT_FAILED,   /* epoch: the plan cannot be served (logged): the node stops */
    DSN_OUT_KV_DONE,  /* seq_id, finish (1: ok), kv_bytes, text: a KV move ended here */
} dsn_out_type_t;

#define DSN_OUT_TEXT 160 /* bytes of dsn_out_t.text */

typedef struct dsn_out {
    dsi_list_t link; /* in the outbox or the free records */
    dsn_out_type_t type;
    uint32_t peer;      /* WIRE: destination node */
    dst_wire_hdr_t hdr; /* WIRE */
    void *payload;      /* WIRE: a pool buffer, owned; returned when the send completes */
    size_t bytes;
    uint64_t seq_id; /* TOKENS */
    int32_t token;   /* TOKENS: one sampled token, or none when n_tokens is 0 */
    uint32_t n_tokens;
    uint8_t finish; /* dst_finish_t */
    /* TOKENS with logprobs (has_logprob): the token's, and those of the n_top most likely */
    uint8_t has_logprob, n_top;
    float logprob;
    int32_t top_ids[DSN_MAX_TOP_LOGPROBS];
    float top_logprobs[DSN_MAX_TOP_LOGPROBS];
    /* TOKENS.spec (has_spec): the last token of a speculative step on a plan of several stages */
    uint8_t has_spec, rollback, n_drafts;
    int32_t drafts[DST_MSG_SPEC_MAX_K];
    /* LOAD: (token, slot) pairs routed to each expert of the stage's MoE layers in a window */
    uint32_t *counts; /* [load_layers, load_experts], owned (malloc) */
    uint32_t load_first, load_layers, load_experts;
    uint64_t epoch;          /* LOAD, READY, SWITCHED, FAILED */
    uint64_t kv_bytes;       /* KV_DONE: bytes received */
    uint32_t session;        /* the queue's session when emitted (dsn_queue_emit) */
    char text[DSN_OUT_TEXT]; /* KV_DONE: why it failed */
} dsn_out_t;

/* Payload buffers come in power-of-two classes from 4 KiB (class 0) to 2^(12 + 27) bytes. */
#define DSN_BUF_CLASSES 28

typedef struct {
    pthread_mutex_t mutex;
    pthread_cond_t cond; /* a task was queued */
    uv_async_t *wake;    /* the loop thread's: the outbox has records */
    dsi_list_t tasks;    /* dsn_task_t, FIFO */
    dsi_list_t outbox;   /* dsn_out_t, FIFO */
    uint32_t session; /* coordinator losses the compute thread has seen (dsn_queue_new_session) */
    dsi_list_t free_tasks, free_outs;
    dsi_list_t free_bufs[DSN_BUF_CLASSES];
    uint64_t misses;     /* records or buffers allocated because a pool was empty */
    dst_msg_spec_t spec; /* speculative decoding since the last HEARTBEAT (compute -> loop) */
    int has_spec;
} dsn_queue_t;

/*
 * Preallocates the record pools (enough for a steady stream of steps: see dsn_queue.c). wake: the
 * loop thread's async handle, signalled whenever the outbox gets a record.
 */
dsi_status_t dsn_queue_init(dsn_queue_t *q, uv_async_t *wake);
/* Frees the queued and pooled records and buffers (both threads have stopped using q). */
void dsn_queue_cleanup(dsn_queue_t *q);

/* Speculative decoding's counts of a step, added for the next HEARTBEAT (compute thread); and
 * taken, zeroed, by the loop thread for it: 1 when there were any. */
void dsn_queue_spec_add(dsn_queue_t *q, const dst_msg_spec_t *d);
int dsn_queue_spec_take(dsn_queue_t *q, dst_msg_spec_t *out);

/* A zeroed task record (loop thread) or out record (compute thread); NULL when out of memory. */
dsn_task_t *dsn_queue_task_get(dsn_queue_t *q);
dsn_out_t *dsn_queue_out_get(dsn_queue_t *q);
/* Back to the pool, with what they own (message, plan copy, payload, counts). */
void dsn_queue_task_put(dsn_queue_t *q, dsn_task_t *t);
void dsn_queue_out_put(dsn_queue_t *q, dsn_out_t *o);

/* A 64-byte aligned buffer of at least `bytes` bytes (either thread); NULL when out of memory. */
void *dsn_queue_buf_get(dsn_queue_t *q, size_t bytes);
/* Back to the pool it came from (either thread); NULL is ignored. */
void dsn_queue_buf_put(void *buf);

/* Loop thread: queue a task (owned by the queue from now on) at the end, or ahead of everything
 * queued (a restart or the stop). */
void dsn_queue_push(dsn_queue_t *q, dsn_task_t *t);
void dsn_queue_push_first(dsn_queue_t *q, dsn_task_t *t);
/* Compute thread: the next task; with wait 0 and nothing queued, NULL at once. */
dsn_task_t *dsn_queue_pop(dsn_queue_t *q, int wait);
/* Compute thread: the next task, waiting at most timeout_ms for one; NULL when none came. */
dsn_task_t *dsn_queue_pop_within(dsn_queue_t *q, int timeout_ms);
/* Compute thread: append to the outbox (owned by the queue from now on) and wake the loop. */
void dsn_queue_emit(dsn_queue_t *q, dsn_out_t *o);
/* Compute thread: the lost coordinator's work is dropped; what it emits from now on belongs to
 * the next session (records emitted before carry the old one, and the loop drops them). */
void dsn_queue_new_session(dsn_queue_t *q);
/* Loop thread: move the whole outbox onto `into` (an initialised list), in order. */
void dsn_queue_take_outbox(dsn_queue_t *q, dsi_list_t *into);

#endif
