/*
 * dsc_memory.h - the memory model of DeepSeek-V3 / R1 for the planner: how many bytes each part
 * of the model takes on a node in a given weight format, computed from the config alone (no
 * checkpoint needed).
 *
 * What a node holds (see node/engine/dsn_weights.h): projection matrices in the weight format (scales
 * included); token embeddings and lm_head in bf16 whatever the format (they are bf16 in the
 * release and re-quantizing them costs accuracy for little memory); the router gate in bf16 and
 * its e_score_correction_bias in f32; every norm vector in f32 (the loader converts them). The
 * latent KV cache keeps kv_lora_rank + qk_rope_head_dim f32 values per token per layer
 * (dsn_kvcache.h).
 *
 * The weight formats and the layout this model assumes for each, as node/engine/dsn_quant.c stores
 * them (bytes per parameter of a large matrix in brackets):
 * - fp8: e4m3, one f32 scale per 128x128 block, partial edge blocks counted (the release)
 *   [~1.0002];
 * - bf16: no scales (the release's BF16 cast) [2];
 * - int8: one f32 scale per 128 consecutive inputs of a row [1.031];
 * - int4: two values per byte, rows padded to whole chunks of 32 values, one f32 scale per 32
 *   inputs of a row [0.625];
 * - int4-g128: the same with one f32 scale per 128 inputs of a row [0.531].
 * When a re-quantizer stores something else, change its row in dsc_memory.c's table.
 */
#ifndef DSC_MEMORY_H
#define DSC_MEMORY_H

#include <stddef.h>
#include <stdint.h>

#include "dsi_status.h"
#include "dsn_config.h"

typedef enum {
    DSC_WEIGHT_FP8 = 0,
    DSC_WEIGHT_BF16,
    DSC_WEIGHT_INT8,
    DSC_WEIGHT_INT4,
    DSC_WEIGHT_INT4_G128,
    DSC_WEIGHT_N_FORMATS
} dsc_weight_format_t;

/* Static name of a format ("fp8", "int4-g128"); "?" outside the enum. */
const char *dsc_weight_format_name(dsc_weight_format_t format);
/* One line describing the format's layout (static). */
const char *dsc_weight_format_describe(dsc_weight_format_t format);
/* Format by name. Unknown name: DSI_ERR_INVALID_ARG, nothing logged (the caller names the option).
 */
dsi_status_t dsc_weight_format_parse(const char *name, dsc_weight_format_t *out);

/* Bytes of one [rows, cols] projection matrix stored in `format`, scales included. */
uint64_t dsc_memory_matrix_bytes(dsc_weight_format_t format, uint64_t rows, uint64_t cols);

/* The model's parts in bytes (and parameter counts) for one weight format. */
typedef struct {
    dsc_weight_format_t format;
    uint64_t embed;          /* embed_tokens [V, H] bf16: nodes of stage 0 */
    uint64_t head;           /* model.norm [H] f32 + lm_head [V, H] bf16: nodes of the last stage */
    uint64_t attn;           /* one layer: its two norms and the MLA projections with their norms */
    uint64_t dense_mlp;      /* one dense layer's SwiGLU: gate, up [I, H], down [H, I] */
    uint64_t router;         /* one MoE layer: gate [E, H] bf16 + e_score_correction_bias [E] f32 */
    uint64_t shared_experts; /* one MoE layer: SwiGLU of width n_shared_experts * moe_I */
    uint64_t expert;         /* one routed expert: gate, up [moe_I, H], down [H, moe_I] */
    uint64_t kv_token_layer; /* latent cache per token per layer: (kv_lora + rope) f32 */
    uint64_t kv_f32_token_layer; /* the same, f32 always (a rounded cache's open tail) */
    uint64_t mtp;         /* all MTP layers (num_nextn_predict_layers), their routed experts
                             included: on the last stage when the plan has dsc_plan_opts_t.mtp */
    uint64_t mtp_experts; /* of which routed experts */
    uint64_t mtp_kv_token; /* the MTP layers' latent cache per token (f32, outside the KV pool) */
    uint64_t total_main;  /* main model: embed + head + every layer with each expert once */
    uint64_t params_main; /* parameters of the main model (norms and biases included) */
    uint64_t params_mtp;  /* parameters of the MTP layers */
    uint32_t n_layers;    /* main-model layers */
    uint32_t n_moe_layers; /* of which MoE */
} dsc_memory_t;

/*
 * Compute the model for `cfg` in `format`. A config outside the ranges the model supports
 * (non-positive or implausibly large sizes, moe_layer_freq other than 1) gets DSI_ERR_CONFIG
 * with the field named in the log; *out is set only on success.
 */
/* A sequence's open tail: the f32 rows of its open block (DSN_KV_BLOCK positions) beside a
 * rounded (bf16 / fp8) cache. */
#define DSC_KV_TAIL_TOKENS 64
/*
 * Bytes per layer of a KV reserve of kv_tokens tokens of kv_token_layer bytes each (one
 * sequence), with its open tail when the cache is rounded (kv_token_layer below the f32 figure):
 * DSC_KV_TAIL_TOKENS f32 rows, rounded up to whole blocks of the cache's type as a node's pool
 * charges them (2 blocks for bf16, 4 for fp8).
 */
uint64_t dsc_memory_kv_layer(const dsc_memory_t *m, uint64_t kv_tokens, uint64_t kv_token_layer);
dsi_status_t dsc_memory_compute(const dsn_config_t *cfg, dsc_weight_format_t format,
                                dsc_memory_t *out);

/* Whether main-model layer `layer` is a MoE layer (layer >= first_k_dense_replace). */
int dsc_memory_is_moe_layer(const dsc_memory_t *mem, const dsn_config_t *cfg, uint32_t layer);
/* Non-expert weight bytes of one layer: attention + dense MLP, or attention + router + shared. */
uint64_t dsc_memory_layer_fixed(const dsc_memory_t *mem, const dsn_config_t *cfg, uint32_t layer);

/* "212.4 GiB", "9.1 MiB", "512 B" into buf (always NUL-terminated); returns buf. */
char *dsc_memory_format_bytes(uint64_t bytes, char *buf, size_t size);

#endif
