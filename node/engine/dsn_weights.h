/*
 * dsn_weights.h - the weights of one node's slice of the model, as kernel matrices pointing into
 * the checkpoint's mappings (never a dequantized copy). Only norms and router biases, which are
 * tiny, are converted to f32 at load.
 *
 * A weight format other than DSN_WFMT_AUTO re-quantizes the projections at load (node/engine/dsn_quant.h)
 * into one arena the weights own; the checkpoint's pages of those matrices are then released and
 * never read again. Embeddings, lm_head and the router gate stay as stored (bf16 in the release),
 * norms and router biases f32: the planner's memory model (coordinator/planner/dsc_memory.h) assumes the
 * same.
 *
 * A slice is a layer range [first_layer, end_layer) of the main model, whether this node embeds
 * tokens (stage 0) and applies the head (last stage), and which routed experts of its MoE layers
 * it holds. The single-process engine loads the whole model as one slice.
 */
#ifndef DSN_WEIGHTS_H
#define DSN_WEIGHTS_H

#include <stdint.h>

#include "dsk.h"
#include "dsn_checkpoint.h"

/* How the projections are held (names as `dsinfer plan --weight-format`). */
typedef enum {
    DSN_WFMT_AUTO = 0,  /* as stored in the checkpoint ("auto") */
    DSN_WFMT_FP8,       /* e4m3 + f32 scale per 128x128 block ("fp8") */
    DSN_WFMT_BF16,      /* bf16 ("bf16") */
    DSN_WFMT_INT8,      /* int8 + f32 scale per 128 inputs of a row ("int8") */
    DSN_WFMT_INT4,      /* int4 + f32 scale per 32 inputs of a row ("int4") */
    DSN_WFMT_INT4_G128, /* int4 + f32 scale per 128 inputs of a row ("int4-g128") */
    DSN_WFMT_COUNT
} dsn_weight_format_t;

/* "auto", "fp8", "bf16", "int8", "int4", "int4-g128"; "?" outside the enum. Static. */
const char *dsn_weight_format_name(dsn_weight_format_t f);
/* Format by name; unknown: DSI_ERR_INVALID_ARG, nothing logged (the caller names the option). */
dsi_status_t dsn_weight_format_parse(const char *name, dsn_weight_format_t *out);
/* "auto|fp8|bf16|int8|int4|int4-g128" for usage texts. */
#define DSN_WFMT_NAMES "auto|fp8|bf16|int8|int4|int4-g128"

typedef struct {
    int present;       /* this node holds the expert */
    dsk_matrix_t gate; /* [moe_I, H] */
    dsk_matrix_t up;   /* [moe_I, H] */
    dsk_matrix_t down; /* [H, moe_I] */
} dsn_expert_t;

typedef struct {
    float *input_norm;     /* [H] f32 */
    float *post_attn_norm; /* [H] f32 */
    /* attention (MLA) */
    dsk_matrix_t q_a;    /* [q_lora, H]; when q_lora_rank > 0 */
    float *q_a_norm;     /* [q_lora] f32 */
    dsk_matrix_t q_b;    /* [heads * (nope + rope), q_lora] */
    dsk_matrix_t q_proj; /* [heads * (nope + rope), H]; when q_lora_rank == 0 */
    dsk_matrix_t kv_a;   /* [kv_lora + rope, H]: rows [0, kv_lora) latent, then shared k_pe */
    float *kv_a_norm;    /* [kv_lora] f32 */
    dsk_matrix_t kv_b;   /* [heads * (nope + v), kv_lora]: per head W_UK rows then W_UV rows */
    dsk_matrix_t o_proj; /* [H, heads * v] */
    /* feed-forward: dense SwiGLU or MoE */
    int is_moe;
    dsk_matrix_t gate, up, down;         /* dense: [I, H], [I, H], [H, I] */
    dsk_matrix_t router;                 /* MoE: [E, H] (bf16 in the release) */
    float *router_bias;                  /* MoE: [E] f32 e_score_correction_bias, or NULL (V2) */
    dsk_matrix_t shared_gate, shared_up; /* MoE: [n_shared * moe_I, H] */
    dsk_matrix_t shared_down;            /* MoE: [H, n_shared * moe_I] */
    dsn_expert_t *experts;               /* MoE: [E] */
} dsn_layer_t;

typedef struct {
    int first_layer, end_layer; /* [first, end) of the main model's layers */
    int has_embed;              /* stage 0: token embeddings */
    int has_head;               /* last stage: final norm + lm_head */
    /*
     * Routed experts held, indexed (layer - first_k_dense_replace) * n_routed_experts + expert
     * over all MoE layers of the model; NULL = every expert of the slice's layers. Not owned.
     */
    const uint8_t *expert_mask;
} dsn_slice_t;

typedef struct {
    dsn_config_t cfg;
    dsn_slice_t slice;          /* expert_mask not kept (NULL after load) */
    dsk_matrix_t embed;         /* [V, H] when has_embed */
    float *final_norm;          /* [H] f32 when has_head */
    dsk_matrix_t lm_head;       /* [V, H] when has_head */
    dsn_layer_t *layers;        /* [num_hidden_layers]; only [first_layer, end_layer) filled */
    uint64_t weight_bytes;      /* bytes of all matrices of the slice (what one full pass reads) */
    dsn_weight_format_t format; /* what the projections were converted to (AUTO: as stored) */
    struct dsn_qarena *qarenas; /* re-quantized projections, one arena per conversion (owned) */
} dsn_weights_t;

/* The whole main model as one slice. */
dsn_slice_t dsn_slice_all(const dsn_config_t *cfg);

/*
 * Take the slice's tensors from the checkpoint, checking every shape and dtype (errors name the
 * tensor). The checkpoint must stay open while the weights are used. *out owned by the caller:
 * dsn_weights_destroy().
 */
dsi_status_t dsn_weights_load(const dsn_checkpoint_t *ckpt, const dsn_slice_t *slice,
                              dsn_weights_t **out);
/*
 * dsn_weights_load with the layers counted by `cfg` instead of the checkpoint's config: the MTP
 * module (dsn_mtp.h) loads its decoder layer, stored after the main ones, as layer
 * num_hidden_layers of a config that counts it.
 */
dsi_status_t dsn_weights_load_layers(const dsn_checkpoint_t *ckpt, const dsn_config_t *cfg,
                                     const dsn_slice_t *slice, dsn_weights_t **out);
/*
 * dsn_weights_load, then the projections re-quantized into `format` (DSN_WFMT_AUTO: none) by
 * n_threads threads (<= 0: all CPUs), which also first-touch the new copies' pages.
 */
dsi_status_t dsn_weights_load_as(const dsn_checkpoint_t *ckpt, const dsn_slice_t *slice,
                                 dsn_weight_format_t format, int n_threads, dsn_weights_t **out);
/*
 * Calls fn on every projection matrix of the slice (attention, dense MLP, shared and held routed
 * experts): the set a weight format converts. Not embeddings, lm_head, router gates.
 */
void dsn_weights_for_each_projection(dsn_weights_t *w, void (*fn)(void *ctx, dsk_matrix_t *m),
                                     void *ctx);
void dsn_weights_destroy(dsn_weights_t *w);

/*
 * Make-before-break re-plans change which routed experts a live slice holds. `mask` is indexed as
 * dsn_slice_t.expert_mask. dsn_weights_add_experts loads every expert of the slice's MoE layers
 * that mask holds and w does not (into w->format, as the rest: n_threads as for load_as) and
 * counts them in *added; on failure (logged) the experts added before it stay. Call it on the
 * thread that computes with w, between steps. dsn_weights_drop_experts forgets the held experts
 * mask does not hold and releases their pages; returns how many.
 */
/* The whole pages inside [p, p + bytes) leave this process (MADV_DONTNEED): never read again. */
void dsn_weights_release_pages(const void *p, size_t bytes);
dsi_status_t dsn_weights_add_experts(dsn_weights_t *w, const dsn_checkpoint_t *ckpt,
                                     const uint8_t *mask, int n_threads, size_t *added);
size_t dsn_weights_drop_experts(dsn_weights_t *w, const uint8_t *mask);
/* Every MoE layer's router bias (e_score_correction_bias) back to the checkpoint's values: a slice
 * kept across a restart forgets the biases pushed to it since it loaded. */
dsi_status_t dsn_weights_reset_biases(dsn_weights_t *w, const dsn_checkpoint_t *ckpt);

#endif
