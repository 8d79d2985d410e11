/*
 * dsn_synth_impl.h - internals shared by dsn_synth.c (configuration and tensor plan) and
 * dsn_synth_write.c (the streaming writer). Not a public header.
 */
#ifndef DSN_SYNTH_IMPL_H
#define DSN_SYNTH_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "dsn_safetensors.h"
#include "dsn_synth.h"

/* What a planned tensor holds, which decides how its values are drawn. */
typedef enum {
    SYN_PROJ,  /* projection weight [rows, cols]: uniform, std 1/sqrt(cols); F8_E4M3 or BF16 */
    SYN_SCALE, /* weight_scale_inv [ceil(rows/128), ceil(cols/128)] F32 of the projection */
    SYN_NORM,  /* RMSNorm weight [n] BF16 in [0.8, 1.2] */
    SYN_EMBED, /* embed_tokens [V, H] BF16, std 1 */
    SYN_HEAD,  /* lm_head [V, H] BF16, std 1/sqrt(H) */
    SYN_GATE,  /* router gate [E, H] BF16, std 1/sqrt(H); favoured rows scaled by 1 + skew */
    SYN_BIAS,  /* e_score_correction_bias [E] F32, uniform +-0.05; favoured + skew */
} syn_kind_t;

typedef struct {
    char name[128];
    syn_kind_t kind;
    dsn_st_dtype_t dtype;
    int n_dims;          /* 1 or 2 */
    int64_t rows, cols;  /* shape [rows] or [rows, cols] */
    int64_t in_features; /* SYN_PROJ / SYN_SCALE: the projection's cols */
    uint64_t nbytes;
    int shard; /* set by the writer */
} syn_tensor_t;

typedef struct {
    syn_tensor_t *t; /* [n] in plan order: a projection's scale follows its weight */
    size_t n, cap;
} syn_plan_t;

/* The plan of every tensor of the checkpoint for `cfg`. plan_free() releases it. */
dsi_status_t syn_plan_build(const dsn_config_t *cfg, int fp8, syn_plan_t *plan);
void syn_plan_free(syn_plan_t *plan);

/* Whether routed expert e is one of those --router-skew favours (top_k of them, spread out). */
int syn_expert_favoured(const dsn_config_t *cfg, int64_t e);

/* The config.json text the options give (malloc'ed, caller frees), validated into *cfg. */
dsi_status_t syn_config_text(const dsn_synth_opts_t *opts, char **text, dsn_config_t *cfg);

#endif
