/*
 * dsn_engine.h - the forward pass of one slice of DeepSeek-V3 on the CPU.
 *
 * An engine binds a slice's weights to a kernel table, a thread pool and scratch memory that grows
 * to the largest batch seen (never per token). A batch is several sequences, each with some new
 * tokens at its own positions (prefill chunks and decode steps mixed); tokens are laid out
 * sequence after sequence. Attention reads and appends each sequence's latent KV cache.
 *
 * The whole-model call (dsn_engine_forward) is composed of the stage pieces (embed, layer, head)
 * that the distributed node runtime calls separately; MoE layers are further split into route /
 * experts / combine so that experts can live on other nodes (dsn_moe.h).
 *
 * One compute thread uses an engine at a time (it owns the pool); engines share nothing mutable.
 */
#ifndef DSN_ENGINE_H
#define DSN_ENGINE_H

#include <stdint.h>

#include "dsi_pool.h"
#include "dsk.h"
#include "dsn_kvcache.h"
#include "dsn_weights.h"

typedef struct {
    dsn_kvcache_t *kv; /* the sequence's cache on this node; kv->length == pos before the call */
    int64_t pos;       /* position of the sequence's first token in this batch */
    int n_tokens;      /* its tokens in this batch (>= 1) */
} dsn_seq_batch_t;

/* Observation hooks for tests and tools; any member may be NULL. */
typedef struct {
    /*
     * k = 0: token embeddings; 0 < k < num_hidden_layers: residual stream after layer k - 1;
     * k = num_hidden_layers: after the last layer and the final norm (HF's last hidden state).
     * h is [n_tokens, H].
     */
    void (*on_hidden)(void *ctx, int k, const float *h, int64_t n_tokens);
    /* Routing of MoE layer `layer`: experts/weights [n_tokens, top_k] in canonical slot order. */
    void (*on_route)(void *ctx, int layer, const int32_t *experts, const float *weights,
                     int64_t n_tokens);
    void *ctx;
} dsn_trace_t;

typedef struct dsn_engine dsn_engine_t;

/* The parts of a forward pass whose wall time dsn_engine_set_phase_clock() adds up. */
typedef enum {
    DSN_PHASE_ATTENTION, /* norm, projections, rotary, the attention itself, o_proj */
    DSN_PHASE_DENSE,     /* a dense layer's MLP */
    DSN_PHASE_ROUTER,    /* router logits and top-k */
    DSN_PHASE_EXPERTS,   /* the routed experts this engine holds */
    DSN_PHASE_SHARED,    /* the shared expert */
    DSN_PHASE_HEAD,      /* final norm and lm_head */
    DSN_PHASE_COUNT
} dsn_phase_t;

/*
 * weights: not owned, must outlive the engine. level: kernel level (dsk_level_detect() for the
 * default). n_threads: pool size including the caller (<= 0: all CPUs).
 */
dsi_status_t dsn_engine_create(const dsn_weights_t *weights, dsk_level_t level, int n_threads,
                               dsn_engine_t **out);
/* An engine for other weights (the MTP module's) on the kernel level and thread pool of `other`,
 * which must outlive it; the two are used by one thread, one at a time. */
dsi_status_t dsn_engine_create_beside(const dsn_weights_t *weights, dsn_engine_t *other,
                                      dsn_engine_t **out);
void dsn_engine_destroy(dsn_engine_t *e);
const dsn_weights_t *dsn_engine_weights(const dsn_engine_t *e);
const dsk_ops_t *dsn_engine_ops(const dsn_engine_t *e);
dsi_pool_t *dsn_engine_pool(dsn_engine_t *e);
void dsn_engine_set_trace(dsn_engine_t *e, const dsn_trace_t *trace);
/*
 * While ns is not NULL, every forward pass (whole or by layer) adds the nanoseconds of each phase
 * to ns[phase]; the rest of a step (embedding, norms, the MoE combine) is not in any. NULL: off.
 */
void dsn_engine_set_phase_clock(dsn_engine_t *e, int64_t ns[DSN_PHASE_COUNT]);
const char *dsn_phase_name(dsn_phase_t phase);

/*
 * The KV storage of the caches made from now on: a new pool of `dtype` blocks, at most max_blocks
 * of them (0: no limit). Caches made before keep their pool. The engine starts with f32 and no
 * limit; the programs set --kv-dtype (bf16 by default).
 */
dsi_status_t dsn_engine_set_kv(dsn_engine_t *e, dsn_kv_dtype_t dtype, int64_t max_blocks);
/* The pool the engine's caches draw from (for its counters and limit). */
dsn_kvpool_t *dsn_engine_kvpool(const dsn_engine_t *e);
/* A KV cache for this engine's slice, from its pool, holding at most max_tokens positions. */
dsi_status_t dsn_engine_kvcache_create(const dsn_engine_t *e, int64_t max_tokens,
                                       dsn_kvcache_t **out);

/*
 * The whole model (the slice must have every layer, the embeddings and the head). Runs the batch,
 * appends to every sequence's cache (advancing kv->length), and writes logits [n_rows, V]: one row
 * per sequence for its last token, or with all_logits one row per token.
 */
dsi_status_t dsn_engine_forward(dsn_engine_t *e, const int32_t *tokens, const dsn_seq_batch_t *seqs,
                                int n_seqs, int all_logits, float *logits);

/* ---- stage pieces ---- */

/* Total tokens of a batch. */
int64_t dsn_batch_tokens(const dsn_seq_batch_t *seqs, int n_seqs);
/* h[n, H] = embeddings of tokens (ids must be < vocab_size: checked by the caller). */
void dsn_engine_embed(dsn_engine_t *e, const int32_t *tokens, int64_t n, float *h);
/*
 * One decoder layer on the residual stream h[n, H] in place: attention (reserving and appending
 * the caches; kv->length is advanced by dsn_engine_commit) then the dense or MoE feed-forward with
 * every expert local.
 */
dsi_status_t dsn_engine_layer(dsn_engine_t *e, int layer, const dsn_seq_batch_t *seqs, int n_seqs,
                              float *h);
/* Attention half of a layer: h += MLA(RMSNorm(h)). */
dsi_status_t dsn_engine_attention(dsn_engine_t *e, int layer, const dsn_seq_batch_t *seqs,
                                  int n_seqs, float *h);
/*
 * The same, with the output of only some tokens: every token's latent KV goes into the caches,
 * but the queries, the attention and o_proj run for the n_rows batch rows `rows` (ascending)
 * alone, and only those rows of h change (the others keep their input). rows NULL: every token.
 * For a last layer whose other rows nobody reads (a prefill that wants the last token's logits).
 */
dsi_status_t dsn_engine_attention_rows(dsn_engine_t *e, int layer, const dsn_seq_batch_t *seqs,
                                       int n_seqs, float *h, const int64_t *rows, int64_t n_rows);
/* Feed-forward half of a layer with every expert local: h += FFN(RMSNorm(h)). The step of
 * dsn_engine_ffn_start with the engine's own buffers and no remote experts. */
dsi_status_t dsn_engine_ffn(dsn_engine_t *e, int layer, int64_t n, float *h);

/*
 * The buffers of one feed-forward step of n tokens in flight (shapes for top_k = K). A caller that
 * may have several steps waiting for remote experts at once (the node daemon's micro-batches)
 * owns one set per step; dsn_engine_ffn uses the engine's scratch.
 */
typedef struct {
    float *u;            /* [n, H] RMSNorm(h) with post_attention_layernorm: the FFN's input */
    int32_t *experts;    /* [n, K] routed experts, canonical slot order */
    float *weights;      /* [n, K] their gate weights */
    int32_t *pair_token; /* [n * K] token of pair i (= i / K) */
    float *slots;        /* [n * K, H] weighted expert rows w_k * E_k(u_t), local and remote */
    float *shared;       /* [n, H] shared expert output */
} dsn_ffn_step_t;

/*
 * Routed experts held elsewhere (the node daemon's expert dispatch). `send` is called after
 * routing and before the local experts run, so remote experts compute meanwhile; it sends every
 * pair whose expert is not held here and returns how many replies to wait for (0: none), or -1
 * on failure. The replies must write their pairs' rows of step->slots.
 */
typedef struct {
    int (*send)(void *ctx, int layer, const dsn_ffn_step_t *step, int64_t n);
    void *ctx;
} dsn_ffn_remote_t;

/*
 * The feed-forward half of layer `layer` on h[n, H], as far as it goes without remote experts:
 * RMSNorm, then either the dense MLP, or the MoE: route (the trace's on_route hook), remote->send
 * (remote may be NULL: every expert is local), the local experts, the shared expert. Phase times
 * go to the phase clock. *pending gets the replies still to come: 0 means h is updated; otherwise
 * call dsn_engine_ffn_finish once they are in step->slots.
 */
dsi_status_t dsn_engine_ffn_start(dsn_engine_t *e, int layer, int64_t n, float *h,
                                  const dsn_ffn_step_t *step, const dsn_ffn_remote_t *remote,
                                  int *pending);
/* h[t] += sum of the step's slot rows in slot order + its shared expert row (dsn_moe_combine). */
void dsn_engine_ffn_finish(dsn_engine_t *e, int64_t n, const dsn_ffn_step_t *step, float *h);
/* Reserve cache room for the batch on every sequence (before the first layer). */
dsi_status_t dsn_engine_reserve(dsn_engine_t *e, const dsn_seq_batch_t *seqs, int n_seqs);
/* After the last layer of the slice: advance every sequence's kv->length by its tokens. */
void dsn_engine_commit(const dsn_seq_batch_t *seqs, int n_seqs);
/* logits[n_rows, V] = lm_head(RMSNorm(h[rows])) for the given token rows of h. */
void dsn_engine_head(dsn_engine_t *e, const float *h, const int64_t *rows, int64_t n_rows,
                     float *logits);

#endif
