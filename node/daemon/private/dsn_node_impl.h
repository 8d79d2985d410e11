/*
 * dsn_node_impl.h - private to the node daemon's files:
 *   dsn_node.c     the loop thread: control connection, UCX, heartbeats, the outbox;
 *   dsn_worker.c   the compute thread and the queues between the two threads;
 *   dsn_stage.c    what the compute thread does: sequences, the dispatcher, the scheduler;
 *   dsn_stage_mb.c micro-batches through the layers, expert serving, the data-plane messages;
 *   dsn_replan.c   re-plans: loading a slice, the live switch.
 *
 * Threads: the loop thread owns every network object; the compute thread owns the engine, the
 * sequences and the micro-batches. They talk only through two queues: tasks (loop -> compute,
 * decoded messages and copied data-plane payloads) and the outbox (compute -> loop, messages to
 * send, woken by a uv_async). The compute thread never waits for the network: a micro-batch whose
 * expert replies are outstanding is parked, and the thread serves other tasks (other nodes'
 * DISPATCHes first of all) until the replies arrive as tasks.
 */
#ifndef DSN_NODE_IMPL_H
#define DSN_NODE_IMPL_H

#include <pthread.h>
#include <stdlib.h>
#include <uv.h>

#include "dsn_checkpoint.h"
#include "dsn_engine.h"
#include "dsn_node.h"
#include "dsn_sampler.h"
#include "dst_ctrl.h"
#include "dst_msg.h"
#include "dst_secret.h"
#include "dst_ucx.h"

#define DSN_MAX_PEERS         1024 /* node ids are below this */
#define DSN_MAX_STAGES        64
#define DSN_DRAIN_DEADLINE_MS 60000 /* a draining node stops by itself after this */
#define DSN_LOAD_WINDOW_MS    1000  /* expert-load counting window (DSINFER_LOAD_WINDOW_MS) */

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
    DSN_TASK_STOP,
} dsn_task_type_t;

typedef struct dsn_task {
    struct dsn_task *next;
    dsn_task_type_t type;
    dst_msg_t msg;      /* moved decoded message (owned) */
    uint32_t peer;      /* WIRE: sending node */
    dst_wire_hdr_t hdr; /* WIRE */
    void *payload;      /* WIRE: 64-byte aligned copy, owned */
    size_t bytes;
    dst_msg_t *plan; /* RELOAD, PREPARE: a copy of the PLAN for the compute thread */
    uint64_t epoch;  /* RELOAD .. RELEASE */
    uint64_t gen;    /* the loop's restart count when queued: older ones are stale */
} dsn_task_t;

typedef enum {
    DSN_OUT_WIRE,
    DSN_OUT_TOKENS,
    DSN_OUT_LOAD,
    DSN_OUT_READY,    /* epoch: the slice is loaded (restart) or the added experts (live) */
    DSN_OUT_SWITCHED, /* epoch: nothing routed by the previous plan is in flight */
    DSN_OUT_FAILED,   /* epoch: the plan cannot be served (logged): the node stops */
} dsn_out_type_t;

typedef struct dsn_out {
    struct dsn_out *next;
    dsn_out_type_t type;
    uint32_t peer;      /* WIRE: destination node */
    dst_wire_hdr_t hdr; /* WIRE */
    void *payload;      /* WIRE: owned, freed when the send completes */
    size_t bytes;
    uint64_t seq_id; /* TOKENS */
    int32_t token;   /* TOKENS: one sampled token, or none when n_tokens is 0 */
    uint32_t n_tokens;
    uint8_t finish; /* dst_finish_t */
    /* LOAD: (token, slot) pairs routed to each expert of the stage's MoE layers in a window */
    uint32_t *counts; /* [load_layers, load_experts], owned */
    uint32_t load_first, load_layers, load_experts;
    uint64_t epoch; /* LOAD, READY, SWITCHED, FAILED */
} dsn_out_t;

/* A sequence as this node sees it (compute thread only). */
typedef struct dsn_seq {
    struct dsn_seq *next_in_bucket;
    uint64_t id;
    dsn_kvcache_t *kv;
    uint32_t route[DSN_MAX_STAGES]; /* node of every stage */
    uint32_t n_route;
    /* stage 0: what to feed next */
    int32_t *prompt; /* [n_prompt], owned */
    uint32_t n_prompt;
    uint32_t fed;       /* prompt tokens fed so far */
    int32_t next_token; /* the last sampled token, to feed next */
    int has_next;
    int in_flight; /* part of a micro-batch now */
    /* last stage: sampling */
    dsn_sampler_t sampler;
    uint32_t max_tokens, generated;
    int done;         /* finished or failed: never scheduled again */
    int remove_after; /* CANCEL came while in flight: free when its micro-batch ends */
} dsn_seq_t;

/* A micro-batch travelling through this node's layers (compute thread only). */
typedef struct dsn_mb {
    struct dsn_mb *next;
    uint64_t id; /* unique on this node: the `step` of its DISPATCHes */
    int n_seqs;
    dsn_seq_t **seq;        /* [n_seqs] */
    dsn_seq_batch_t *batch; /* [n_seqs] */
    int64_t n;              /* tokens */
    int layer;              /* the layer being computed */
    float *h;               /* [n, H] residual stream */
    float *u;               /* [n, H] MoE input */
    int32_t *experts;       /* [n, K] */
    float *weights;         /* [n, K] */
    float *slots;           /* [n * K, H] weighted expert rows */
    float *shared;          /* [n, H] */
    int32_t *pair_slot;     /* [n * K] slot indices (t * K + k) grouped by destination */
    int32_t *pair_token;    /* [n * K] token of pair i: i / K */
    int32_t *dest_off;      /* [DSN_MAX_PEERS + 1] offsets into pair_slot per destination */
    uint8_t *answered;      /* [DSN_MAX_PEERS] the destination's COMBINE came */
    int pending;            /* COMBINE replies outstanding */
    uint64_t epoch;         /* the plan its outstanding DISPATCHes were routed by */
} dsn_mb_t;

typedef struct dsn_node {
    dsn_node_opts_t opts;
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
    uv_async_t wake; /* compute -> loop: the outbox has messages */
    uv_signal_t sigterm, sigint;
    uv_timer_t drain_timer;
    int draining;
    uint8_t connected[DSN_MAX_PEERS]; /* UCX endpoint open to that node */
    uv_timer_t load_timer;            /* every load_window_ms: DSN_TASK_LOAD */
    uint32_t load_window_ms;

    /* the plan (loop thread; the compute thread gets copies of its own) */
    dst_msg_t *plan;   /* the newest PLAN message (owned; NULL before the first) */
    int switching;     /* a live plan is on its way: until RELEASE */
    uint64_t epoch;    /* the newest plan's */
    uint64_t task_gen; /* restarts so far: stamped on every task */

    /* the slice (compute thread, once it runs) */
    int stage, n_stages;
    int first_layer, end_layer;
    int is_first, is_last;
    dsn_checkpoint_t *ckpt;
    dsn_weights_t *weights;
    dsn_engine_t *engine;
    uint8_t *expert_mask;
    /*
     * Expert load of the current window, counted by the compute thread only (allocated before
     * it starts, freed after it stopped): load_counts[(l - load_first) * n_experts + e] for the
     * stage's MoE layers [load_first, load_first + load_layers).
     */
    uint32_t *load_counts;
    int load_first, load_layers, load_experts;

    /* queues */
    pthread_t thread;
    int thread_started;
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    dsn_task_t *task_head, *task_tail;
    dsn_out_t *out_head, *out_tail;

    /* compute-thread state */
    uint64_t compute_gen; /* tasks of an older generation are dropped (RELOAD raises it) */
    /* Plans (PLAN messages the compute thread owns, see dsn_replan.c): the one DISPATCHes are
     * routed by, a live plan prepared beside it, and the one switched away from (its experts
     * are held until RELEASE). */
    dst_msg_t *route_msg, *prepared_msg, *previous_msg;
    const dst_plan_t *route_plan; /* &route_msg->plan.plan */
    uint64_t route_epoch;         /* its epoch: stamped on data-plane messages, LOAD_STATS */
    int route_stage_nodes;        /* nodes of our stage in it: 1 means every expert is local */
    int retiring;                 /* switched to a plan without this node: no new work */
    uint64_t switch_epoch;        /* SWITCH of this epoch handled ... */
    int switch_pending;           /* ... and SWITCHED not sent yet */
    dsn_seq_t *seq_buckets[1024];
    dsn_mb_t *parked;
    dsn_task_t *deferred; /* ACTIVATIONs waiting for their sequences (see dsn_stage.c) */
    uint64_t next_mb_id;
} dsn_node_t;

/* Frees a heap PLAN message (node->plan, a task's copy, the compute thread's plans); *m = NULL. */
static inline void dsn_plan_msg_free(dst_msg_t **m)
{
    if (*m != NULL) {
        dst_msg_free(*m);
        free(*m);
        *m = NULL;
    }
}

/* dsn_worker.c */
dsi_status_t dsn_worker_start(dsn_node_t *node);
void dsn_worker_stop(dsn_node_t *node);
void dsn_worker_push(dsn_node_t *node, dsn_task_t *task); /* loop thread; takes ownership */
/* Loop thread: ahead of everything queued (a restart or the stop). */
void dsn_worker_push_first(dsn_node_t *node, dsn_task_t *task);
void dsn_worker_emit(dsn_node_t *node, dsn_out_t *out); /* compute thread; takes ownership */
dsn_out_t *dsn_worker_take_outbox(dsn_node_t *node);    /* loop thread: the whole list */

/* dsn_stage.c (compute thread) */
void dsn_stage_handle(dsn_node_t *node, dsn_task_t *task);
/* Start a micro-batch of the sequences ready at stage 0; 1 if it started one. */
int dsn_stage_schedule(dsn_node_t *node);
void dsn_stage_cleanup(dsn_node_t *node);
/* Counts a MoE layer's routing, experts[n, top_k], into node->load_counts (engine trace hook:
 * ctx is the node). */
void dsn_stage_count_route(void *ctx, int layer, const int32_t *experts, const float *weights,
                           int64_t n);

/* Node id of the stage after ours for a sequence, from its route. */
uint32_t dsn_route_next(const dsn_node_t *node, const dsn_seq_t *seq);
dsn_seq_t *dsn_seq_find(dsn_node_t *node, uint64_t id);
void dsn_seq_remove(dsn_node_t *node, uint64_t id);
/* TOKENS for the coordinator (n = 0 with a finish reason reports a failure). */
void dsn_stage_emit_tokens(dsn_node_t *node, uint64_t seq_id, int32_t token, uint32_t n,
                           uint8_t finish);

/* dsn_replan.c */
/*
 * The routed experts plan p gives node `id`, as a dsn_slice_t expert_mask (calloc'ed, caller
 * frees); *held gets how many. NULL when out of memory.
 */
uint8_t *dsn_plan_expert_mask(const dst_plan_t *p, uint32_t id, size_t *held);
/* Nodes of plan p in stage `stage`. */
int dsn_plan_stage_nodes(const dst_plan_t *p, int stage);
/* Compute thread: the RELOAD, PREPARE, SWITCH and RELEASE tasks, and the SWITCHED check after
 * any task. */
void dsn_replan_handle(dsn_node_t *node, dsn_task_t *task);
void dsn_replan_check(dsn_node_t *node);
/* Frees the slice (the compute thread has stopped, or never ran). */
void dsn_replan_release(dsn_node_t *node);

/* dsn_stage_mb.c (compute thread) */
dsn_mb_t *dsn_mb_create(dsn_node_t *node, int n_seqs, int64_t n);
void dsn_mb_free(dsn_mb_t *mb);
/* Runs a micro-batch's layers until it must wait for COMBINE replies (parked) or leaves the
 * node's slice (sampled or forwarded, then freed). */
void dsn_mb_run(dsn_node_t *node, dsn_mb_t *mb);
/* Data-plane messages from other nodes. dsn_stage_activation returns 1 when the message must
 * wait (its sequence is unknown yet or an earlier chunk has not arrived), 0 when consumed. */
void dsn_stage_serve_dispatch(dsn_node_t *node, const dsn_task_t *t);
void dsn_stage_combine(dsn_node_t *node, const dsn_task_t *t);
int dsn_stage_activation(dsn_node_t *node, const dsn_task_t *t);

#endif
