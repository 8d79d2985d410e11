/*
 * dsn_compute_impl.h - the compute thread's state and the files that work on it:
 *   dsn_worker.c    the thread: tasks first, then the stage-0 scheduler, sleep when idle;
 *   dsn_stage.c     sequences, the task dispatcher, the stage-0 scheduler, expert-load counting;
 *   dsn_stage_mb.c  micro-batches through the layers, the head and the sampler, ACTIVATIONs;
 *   dsn_dispatch.c  expert parallelism: DISPATCH to the holders of remote experts, serving other
 *                   nodes' DISPATCHes, their COMBINE replies;
 *   dsn_replan.c    re-plans: loading a slice, the live switch.
 *
 * Only the compute thread touches a dsn_compute_t once the thread runs (the loop thread creates it
 * before and destroys it after); it reaches the loop thread only through its dsn_queue_t. It never
 * waits for the network: a micro-batch whose expert replies are outstanding is parked, and the
 * thread serves other tasks (other nodes' DISPATCHes first of all) until the replies arrive.
 */
#ifndef DSN_COMPUTE_IMPL_H
#define DSN_COMPUTE_IMPL_H

#include <stdlib.h>

#include "dsn_checkpoint.h"
#include "dsn_engine.h"
#include "dsn_node.h"
#include "dsn_queue_impl.h"
#include "dsn_sampler.h"
#include "dst_plan.h"

#define DSN_MAX_PEERS       1024 /* node ids are below this */
#define DSN_MAX_STAGES      64
#define DSN_MAX_BATCH_SEQS  256 /* sequences in one stage-0 micro-batch */
#define DSN_SEQ_BUCKETS     1024

/* A sequence as this node sees it. */
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

/*
 * A micro-batch travelling through this node's layers. Micro-batches come from a pool: each holds
 * buffers for `cap` tokens and `cap_seqs` sequences, made once (for the batch-token limit) and
 * reused, so running one allocates nothing.
 */
typedef struct dsn_mb {
    dsi_list_t link; /* in the parked or the free micro-batches */
    uint64_t id;     /* unique on this node: the `step` of its DISPATCHes */
    int64_t cap;     /* tokens its buffers hold */
    int cap_seqs;
    int n_seqs;
    dsn_seq_t **seq;        /* [cap_seqs] */
    dsn_seq_batch_t *batch; /* [cap_seqs] */
    int64_t n;              /* tokens */
    int layer;              /* the layer being computed; -1 after a failure */
    int32_t *tokens;        /* [cap] stage 0: the token ids fed */
    float *h;               /* [cap, H] residual stream */
    dsn_ffn_step_t ffn;     /* the feed-forward step in flight: [cap] tokens of buffers */
    /* expert dispatch (dsn_dispatch.c), for the layer being computed */
    uint32_t *pair_dest;  /* [cap * K] node computing pair i */
    int32_t *pair_slot;   /* [cap * K] pair indices (t * K + k) grouped by destination */
    int32_t *dest_off;    /* [DSN_MAX_PEERS + 1] offsets into pair_slot per destination */
    uint8_t *answered;    /* [DSN_MAX_PEERS] the destination's COMBINE came */
    int pending;          /* COMBINE replies outstanding */
    uint64_t epoch;       /* the plan its outstanding DISPATCHes were routed by */
} dsn_mb_t;

typedef struct dsn_compute {
    const dsn_node_opts_t *opts; /* the daemon's options: read-only */
    dsn_queue_t *queue;          /* to and from the loop thread */
    dsn_checkpoint_t *ckpt;      /* opened before the thread starts, closed after it stopped */
    uint32_t node_id;            /* this node's id (from RELOAD) */
    uint64_t gen;                /* tasks of an older generation are dropped (RELOAD raises it) */

    /* the slice */
    int stage, n_stages;
    int first_layer, end_layer;
    int is_first, is_last;
    dsn_weights_t *weights;
    dsn_engine_t *engine;
    uint8_t *expert_mask;
    /* Expert load of the current window: load_counts[(l - load_first) * load_experts + e] for the
     * stage's MoE layers [load_first, load_first + load_layers). */
    uint32_t *load_counts;
    int load_first, load_layers, load_experts;

    /* Plans (PLAN messages this thread owns, see dsn_replan.c): the one DISPATCHes are routed by,
     * a live plan prepared beside it, and the one switched away from (its experts are held until
     * RELEASE). */
    dst_msg_t *route_msg, *prepared_msg, *previous_msg;
    const dst_plan_t *route_plan; /* &route_msg->plan.plan */
    uint64_t route_epoch;         /* its epoch: stamped on data-plane messages, LOAD_STATS */
    int route_stage_nodes;        /* nodes of our stage in it: 1 means every expert is local */
    int retiring;                 /* switched to a plan without this node: no new work */
    uint64_t switch_epoch;        /* SWITCH of this epoch handled ... */
    int switch_pending;           /* ... and SWITCHED not sent yet */

    dsn_seq_t *seq_buckets[DSN_SEQ_BUCKETS];
    dsi_list_t parked;   /* dsn_mb_t waiting for COMBINE replies */
    dsi_list_t free_mbs; /* dsn_mb_t to reuse */
    dsi_list_t deferred; /* dsn_task_t: ACTIVATIONs waiting for their sequences (dsn_stage.c) */
    uint64_t next_mb_id;

    /* scratch that grows to the largest use and stays */
    float *logits;     /* [logits_rows, vocab]: the last stage's sampled rows */
    int64_t *rows;     /* [logits_rows] */
    int *which;        /* [logits_rows] */
    int64_t logits_rows;
    int32_t *serve_token; /* [serve_cap] a served DISPATCH's pairs */
    int32_t *serve_expert;
    float *serve_weight;
    int64_t serve_cap;
} dsn_compute_t;

/* dsn_worker.c */
/* A compute state for the daemon (nothing loaded yet); NULL when out of memory. */
dsn_compute_t *dsn_compute_create(const dsn_node_opts_t *opts, dsn_queue_t *queue,
                                  dsn_checkpoint_t *ckpt);
/* After the thread stopped (or never ran): frees everything it holds. */
void dsn_compute_destroy(dsn_compute_t *c);
/* The thread's body (arg: the dsn_compute_t): returns after a STOP task. */
void *dsn_worker_main(void *arg);

/* dsn_stage.c */
/* Handles a task; returns 1 when it kept the task (a deferred ACTIVATION), 0 when the caller
 * gives it back to the pool. */
int dsn_stage_handle(dsn_compute_t *c, dsn_task_t *task);
/* Start a micro-batch of the sequences ready at stage 0; 1 if it started one. */
int dsn_stage_schedule(dsn_compute_t *c);
/* Drops the sequences, micro-batches and deferred tasks (a restart, or the thread's end). */
void dsn_stage_cleanup(dsn_compute_t *c);
/* Counts a MoE layer's routing, experts[n, top_k], into c->load_counts (engine trace hook: ctx
 * is the dsn_compute_t). */
void dsn_stage_count_route(void *ctx, int layer, const int32_t *experts, const float *weights,
                           int64_t n);
/* Node id of the stage after ours for a sequence, from its route. */
uint32_t dsn_route_next(const dsn_compute_t *c, const dsn_seq_t *seq);
dsn_seq_t *dsn_seq_find(dsn_compute_t *c, uint64_t id);
void dsn_seq_remove(dsn_compute_t *c, uint64_t id);
/* TOKENS for the coordinator (n = 0 with a finish reason reports a failure). */
void dsn_stage_emit_tokens(dsn_compute_t *c, uint64_t seq_id, int32_t token, uint32_t n,
                           uint8_t finish);
/* Queues a data-plane message for the loop thread; it owns the payload (a pool buffer) from now
 * on. Returns -1 when out of memory (the payload is returned). */
int dsn_stage_emit_wire(dsn_compute_t *c, uint32_t peer, const dst_wire_hdr_t *hdr, void *payload,
                        size_t bytes);

/* dsn_stage_mb.c */
/* A micro-batch for n_seqs sequences and n tokens, from the pool; NULL when out of memory. */
dsn_mb_t *dsn_mb_get(dsn_compute_t *c, int n_seqs, int64_t n);
/* Back to the pool. */
void dsn_mb_put(dsn_compute_t *c, dsn_mb_t *mb);
/* Frees the pooled and parked micro-batches (the slice is being released). */
void dsn_mb_pool_cleanup(dsn_compute_t *c);
/* Runs a micro-batch's layers until it must wait for COMBINE replies (parked) or leaves the
 * node's slice (sampled or forwarded, then back to the pool). */
void dsn_mb_run(dsn_compute_t *c, dsn_mb_t *mb);
/* All COMBINE replies of a parked micro-batch are in: finish its layer and go on. */
void dsn_mb_resume(dsn_compute_t *c, dsn_mb_t *mb);
/* An ACTIVATION from the previous stage: 1 when it must wait (its sequence is unknown yet or an
 * earlier chunk has not arrived), 0 when consumed. */
int dsn_stage_activation(dsn_compute_t *c, const dsn_task_t *t);

/* dsn_dispatch.c */
/* The remote-expert hook of a micro-batch's MoE step (dsn_ffn_remote_t.send, ctx a
 * dsn_dispatch_ctx_t): one DISPATCH per node holding experts of its pairs; returns the replies to
 * wait for, -1 when out of memory. */
typedef struct {
    dsn_compute_t *c;
    dsn_mb_t *mb;
} dsn_dispatch_ctx_t;
int dsn_dispatch_send(void *ctx, int layer, const dsn_ffn_step_t *step, int64_t n);
/* Serve another node's DISPATCH: compute the pairs with our experts and answer with COMBINE. */
void dsn_dispatch_serve(dsn_compute_t *c, const dsn_task_t *t);
/* A COMBINE reply for a parked micro-batch; resumes it when it was the last one. */
void dsn_dispatch_combine(dsn_compute_t *c, const dsn_task_t *t);

/* dsn_replan.c */
/*
 * The routed experts plan p gives node `id`, as a dsn_slice_t expert_mask (calloc'ed, caller
 * frees); *held gets how many. NULL when out of memory.
 */
uint8_t *dsn_plan_expert_mask(const dst_plan_t *p, uint32_t id, size_t *held);
/* Nodes of plan p in stage `stage`. */
int dsn_plan_stage_nodes(const dst_plan_t *p, int stage);
/* The RELOAD, PREPARE, SWITCH and RELEASE tasks, and the SWITCHED check after any task. */
void dsn_replan_handle(dsn_compute_t *c, dsn_task_t *task);
void dsn_replan_check(dsn_compute_t *c);
/* Frees the slice (the thread has stopped, or a RELOAD replaces it). */
void dsn_replan_release(dsn_compute_t *c);

/* Frees a heap PLAN message; *m = NULL. */
static inline void dsn_plan_msg_free(dst_msg_t **m)
{
    if (*m != NULL) {
        dst_msg_free(*m);
        free(*m);
        *m = NULL;
    }
}

#endif
