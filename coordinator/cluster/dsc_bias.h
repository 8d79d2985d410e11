/*
 * dsc_bias.h - the routers' e_score_correction_bias as the coordinator tracks them.
 *
 * DeepSeek-V3 chooses a token's experts by sigmoid score + bias (group-limited top-k), but weighs
 * the chosen experts by the score alone: the bias only decides *which* experts run. Training
 * balanced the load with the auxiliary-loss-free rule b_i += gamma * sign(mean_load - load_i)
 * applied after every step. The coordinator holds every MoE layer's bias as the checkpoint has it
 * (b0) and, only when asked (gamma > 0), keeps applying that rule to the observed load, one
 * window at a time. Any change alters which experts tokens reach, and so the outputs: that is why
 * it is off by default (docs/ELASTICITY.md).
 *
 * Not thread-safe: the coordinator's loop thread owns the table.
 */
#ifndef DSC_BIAS_H
#define DSC_BIAS_H

#include <stdint.h>

#include "dsi_status.h"

typedef struct dsc_bias dsc_bias_t;

/*
 * Reads model.layers.L.mlp.gate.e_score_correction_bias (f32 or bf16, [n_routed_experts]) of
 * every MoE layer of the checkpoint in `model_dir`. The checkpoint is closed again before the
 * call returns. *out owned by the caller: dsc_bias_destroy(). Errors of dsn_checkpoint_open (the
 * file named) and DSI_ERR_MISSING_TENSOR / _BAD_TENSOR naming the tensor, DSI_ERR_NOMEM.
 */
dsi_status_t dsc_bias_load(const char *model_dir, dsc_bias_t **out);
/* A table of n_layers x n_experts from b0 (copied), for tests and tools. */
dsi_status_t dsc_bias_create(uint32_t first_layer, uint32_t n_layers, uint32_t n_experts,
                             const float *b0, dsc_bias_t **out);
void dsc_bias_destroy(dsc_bias_t *b);

uint32_t dsc_bias_first_layer(const dsc_bias_t *b); /* model index of the first MoE layer */
uint32_t dsc_bias_layers(const dsc_bias_t *b);      /* MoE layers */
uint32_t dsc_bias_experts(const dsc_bias_t *b);
/* [n_experts]: the current biases of MoE layer `moe_index` (from the first MoE layer). */
const float *dsc_bias_get(const dsc_bias_t *b, uint32_t moe_index);

/*
 * The aux-loss-free rule on one layer: b[i] += gamma * sign(mean - load[i]) with mean the average
 * of load[0..n). Experts with less than the mean load gain, those above lose, those exactly at it
 * keep their bias. Nothing changes when every load is 0. Returns 1 when a value changed.
 */
int dsc_bias_rule(float *b, const uint64_t *load, uint32_t n, float gamma);

/*
 * Applies the rule with gamma to every layer of counts[n_layers * n_experts] (one window's
 * pairs); changed[i] (optional, [n_layers]) is set to 1 for the layers whose biases moved.
 * Returns how many moved.
 */
uint32_t dsc_bias_update(dsc_bias_t *b, const uint64_t *counts, float gamma, uint8_t *changed);

/* Distance of layer `moe_index` from the checkpoint: max and mean of |b - b0| over experts. */
void dsc_bias_drift(const dsc_bias_t *b, uint32_t moe_index, double *max_abs, double *mean_abs);

#endif
