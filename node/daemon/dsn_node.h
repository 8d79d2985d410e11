/*
 * dsn_node.h - the node daemon (dsinfer-node): joins a coordinator, loads the slice the plan gives
 * it, and serves it as a stage worker and an expert server until told to shut down.
 *
 * Protocol flow (docs/PROTOCOL.md, "Cluster flow"): connect (retrying: a node may start before its
 * coordinator) -> HELLO -> REGISTER (HMAC proof of the shared secret) -> WELCOME -> PLAN + PEERS ->
 * load the slice, connect UCX endpoints to the peers -> READY -> SUBMIT / TOKENS / CANCEL for
 * sequences, DISPATCH / COMBINE / ACTIVATION with peers -> SHUTDOWN.
 */
#ifndef DSN_NODE_H
#define DSN_NODE_H

#include <stddef.h>
#include <stdint.h>

#include "dsi_status.h"
#include "dsn_kvpool.h"
#include "dsn_weights.h"

typedef struct {
    const char *coordinator; /* "host:port" of the coordinator's control listener */
    const char *model_dir;   /* the checkpoint; every node reads only its slice */
    const char *name;        /* unique node name (default: hostname-pid) */
    const char *secret_file; /* NULL: DSINFER_SECRET */
    uint64_t mem_budget;     /* bytes offered for weights and KV cache */
    int threads;             /* compute threads (<= 0: all CPUs) */
    int max_batch_tokens;    /* tokens per micro-batch at stage 0 (prefill chunking) */
    int64_t max_context;     /* context limit per sequence (0: the model's positions) */
    /* Speculative decoding with the checkpoint's MTP layer (docs/SPECULATIVE.md): drafts per step
     * on a node that is the plan's only stage, 0..DSN_SPEC_MAX_K; 0 (the default): off. */
    int speculative_tokens;
    /* Debugging and tests: the last stage appends every sampled step's logits (f32 [vocab]) to
     * <logits_dir>/seq-<id>.f32. NULL: off. */
    const char *logits_dir;
    dsn_weight_format_t weight_format; /* re-quantize the slice's projections at load (AUTO: no) */
    dsn_kv_dtype_t kv_dtype;           /* storage of the latent KV cache (default bf16) */
    uint64_t kv_pool_bytes;            /* KV block pool; 0: mem_budget less weights (dsn_replan) */
    int prefix_cache;                  /* reuse cached prompt prefixes (default 1) */
    int numa_node; /* >= 0: bind threads and memory to this NUMA node (dsn_numa.h); -1: no */
    /* A node that loses its coordinator keeps its slice and connects again for this long, so a
     * restarted coordinator finds it serving; 0: stop at once. */
    uint32_t coordinator_wait_ms;
    /*
     * Static clusters (mpirun): called once the UCX worker exists, before connecting; it shares
     * the worker address with the other ranks and writes the coordinator's "host:port" into
     * coordinator_out (used instead of `coordinator`). NULL: not used.
     */
    dsi_status_t (*bootstrap)(void *arg, const void *ucx_addr, size_t len, char *coordinator_out,
                              size_t cap);
    void *bootstrap_arg;
} dsn_node_opts_t;

void dsn_node_opts_default(dsn_node_opts_t *opts);
/* Runs the daemon until SHUTDOWN (DSI_OK), or a fatal error. */
dsi_status_t dsn_node_run(const dsn_node_opts_t *opts);

#endif
