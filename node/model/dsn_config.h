/*
 * dsn_config.h - the model configuration (HF config.json of DeepSeek-V3 / R1 and the V2 family).
 *
 * Parsed with jansson. Every field the engine needs is checked for presence, type and range, and
 * for consistency (n_routed_experts divisible by n_group, top-k within bounds, ...); an error names
 * the file and the field and the loader returns DSI_ERR_CONFIG.
 */
#ifndef DSN_CONFIG_H
#define DSN_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "dsi_status.h"
#include "dsk.h"

typedef struct {
    int vocab_size;
    int hidden_size;              /* H */
    int intermediate_size;        /* dense SwiGLU width */
    int moe_intermediate_size;    /* routed expert SwiGLU width */
    int num_hidden_layers;        /* main-model layers (MTP layers excluded) */
    int num_nextn_predict_layers; /* MTP layers stored after the main ones (0 if absent) */
    int first_k_dense_replace;    /* layers [0, k) are dense */
    int moe_layer_freq;           /* 1 for V3 */
    int n_routed_experts;
    int n_shared_experts;
    int num_experts_per_tok;
    int n_group, topk_group;
    float routed_scaling_factor;
    int norm_topk_prob;
    dsk_score_t scoring_func;      /* sigmoid (V3) or softmax (V2 family) */
    dsk_topk_method_t topk_method; /* noaux_tc (V3), greedy or group_limited_greedy (V2) */
    int num_attention_heads;
    int q_lora_rank; /* 0 when config.json says null: q_proj instead of q_a/q_b */
    int kv_lora_rank;
    int qk_nope_head_dim, qk_rope_head_dim, v_head_dim;
    float rms_norm_eps;
    double rope_theta;
    int max_position_embeddings;
    int has_yarn;    /* rope_scaling present with type yarn */
    dsk_yarn_t yarn; /* valid when has_yarn */
    int bos_token_id, eos_token_id;
    int fp8; /* quantization_config says fp8 e4m3 with 128x128 blocks */
} dsn_config_t;

/* Parse config.json at `path`. On error logs "<path>: field '<name>': <why>" and fills nothing. */
dsi_status_t dsn_config_load(const char *path, dsn_config_t *out);
/* Same from memory; `origin` names the source in error messages. */
dsi_status_t dsn_config_parse(const char *text, size_t len, const char *origin, dsn_config_t *out);

/* Whether main-model layer `layer` is a MoE layer. */
int dsn_config_is_moe_layer(const dsn_config_t *cfg, int layer);
/* q/k head width: qk_nope_head_dim + qk_rope_head_dim. */
int dsn_config_qk_head_dim(const dsn_config_t *cfg);
/* Whether MoE layers carry mlp.gate.e_score_correction_bias (noaux_tc routing only). */
int dsn_config_has_router_bias(const dsn_config_t *cfg);
/* The config.json names of the scoring function and the top-k method. */
const char *dsn_config_scoring_name(dsk_score_t s);
const char *dsn_config_topk_method_name(dsk_topk_method_t m);
/* The router configuration of a MoE layer. */
dsk_router_cfg_t dsn_config_router(const dsn_config_t *cfg);

#endif
