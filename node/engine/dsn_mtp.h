/*
 * dsn_mtp.h - DeepSeek-V3/R1's multi-token-prediction (MTP) module: the draft model of
 * speculative decoding (dsn_spec.h).
 *
 * The module is stored after the main layers, as layer N = num_hidden_layers: its own copy of the
 * embedding, enorm, hnorm, eh_proj [H, 2H], one complete MoE decoder layer with a latent KV cache
 * of its own, and shared_head (norm + head [V, H]). For position i it takes the main model's hidden
 * state h_i (after model.norm) and the next token t_{i+1}:
 *
 *     x_i = eh_proj [enorm(Emb(t_{i+1})) ; hnorm(h_i)]     (embedding half first)
 *     y_i = decoder layer N (x_i at RoPE position i, causal over the module's cache)
 *     logits_i = shared_head.head(shared_head.norm(y_i))   (the draft of t_{i+2})
 *
 * Its decoder layer is loaded as a one-layer slice (layers[N] of a dsn_weights_t whose embed,
 * final_norm and lm_head are the module's), so the engine's attention and MoE run it unchanged,
 * in every weight format and kernel level the main model uses.
 */
#ifndef DSN_MTP_H
#define DSN_MTP_H

#include <stdint.h>

#include "dsn_checkpoint.h"
#include "dsn_engine.h"

typedef struct {
    int layer;            /* N = num_hidden_layers: the module's layer index */
    dsn_weights_t *w;     /* the decoder layer, embed, shared_head (final_norm, lm_head) */
    float *enorm, *hnorm; /* [H] f32 */
    dsk_matrix_t eh_proj; /* [H, 2H] */
} dsn_mtp_weights_t;

/* 1 when the checkpoint declares an MTP layer (num_nextn_predict_layers > 0) and holds its
 * eh_proj: a checkpoint without it runs without speculation. */
int dsn_mtp_present(const dsn_checkpoint_t *ckpt);

/*
 * Loads the first MTP module: shapes and dtypes checked (errors name the tensor), projections
 * re-quantized into `format` as the main model's (n_threads as dsn_weights_load_as). expert_mask:
 * the module's routed experts held here ([n_routed_experts], NULL = all). *out:
 * dsn_mtp_weights_destroy.
 */
dsi_status_t dsn_mtp_weights_load(const dsn_checkpoint_t *ckpt, dsn_weight_format_t format,
                                  int n_threads, const uint8_t *expert_mask,
                                  dsn_mtp_weights_t **out);
void dsn_mtp_weights_destroy(dsn_mtp_weights_t *m);

typedef struct dsn_mtp dsn_mtp_t;

/* The module beside the main model's engine: its kernel level and thread pool (main must outlive
 * it). */
dsi_status_t dsn_mtp_create(const dsn_mtp_weights_t *w, dsn_engine_t *main, dsn_mtp_t **out);
void dsn_mtp_destroy(dsn_mtp_t *m);
/* Its engine (one layer: N); the phase clock and trace hooks apply to it as to any engine. */
dsn_engine_t *dsn_mtp_engine(dsn_mtp_t *m);
/*
 * Routed experts of the module held on other nodes (the node daemon's expert dispatch, when the
 * plan spreads the layer's experts over the last stage). The module's feed-forward step takes
 * its buffers from `begin` (n tokens; *remote: the hook that sends the pairs of experts held
 * elsewhere, as dsn_engine_ffn_start's), calls `wait` when replies are due (0 once they are all
 * in step->slots, -1 when they cannot come), and `end` after either. begin: 0, or -1.
 */
typedef struct {
    int (*begin)(void *ctx, int64_t n, dsn_ffn_step_t **step, dsn_ffn_remote_t *remote);
    int (*wait)(void *ctx);
    void (*end)(void *ctx);
    void *ctx;
} dsn_mtp_remote_t;

/* From now on the module's MoE step uses r (copied; NULL: every expert is local again). */
void dsn_mtp_set_remote(dsn_mtp_t *m, const dsn_mtp_remote_t *r);

/* The module's own KV cache for one sequence (one layer), at most max_tokens positions. */
dsi_status_t dsn_mtp_kvcache_create(const dsn_mtp_t *m, int64_t max_tokens, dsn_kvcache_t **out);

/*
 * One batch through the module, laid out as dsn_engine_forward's: token t of the batch pairs
 * next_tokens[t] (t_{i+1}) with hidden[t] ([H], the main model's h_i after model.norm) at the
 * sequence's position i; appends to the module's caches (advancing kv->length). logits
 * [n_rows, V]: one row per sequence for its last token, or with all_logits one per token.
 * h_out (may be NULL): [n_tokens, H] shared_head.norm(y): what the module feeds itself as the
 * hidden state when it drafts a second token from its own output.
 */
dsi_status_t dsn_mtp_forward(dsn_mtp_t *m, const int32_t *next_tokens, const float *hidden,
                             const dsn_seq_batch_t *seqs, int n_seqs, int all_logits, float *logits,
                             float *h_out);

#endif
