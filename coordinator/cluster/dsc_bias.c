/* dsc_bias.c - router biases: read from the checkpoint, the aux-loss-free rule, drift. */
#include "dsc_bias.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsi_log.h"
#include "dsn_checkpoint.h"

struct dsc_bias {
    uint32_t first_layer, n_layers, n_experts;
    float *b0; /* [n_layers][n_experts] the checkpoint's values */
    float *b;  /* [n_layers][n_experts] the current values */
};

dsi_status_t dsc_bias_create(uint32_t first_layer, uint32_t n_layers, uint32_t n_experts,
                             const float *b0, dsc_bias_t **out)
{
    if (n_layers == 0 || n_experts == 0 || (uint64_t)n_layers * n_experts > (1u << 24)) {
        DSI_ERROR("bias table of %u layers x %u experts: out of range", n_layers, n_experts);
        return DSI_ERR_INVALID_ARG;
    }
    size_t n = (size_t)n_layers * n_experts;
    dsc_bias_t *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return DSI_ERR_NOMEM;
    t->b0 = malloc(n * sizeof(float));
    t->b = malloc(n * sizeof(float));
    if (t->b0 == NULL || t->b == NULL) {
        dsc_bias_destroy(t);
        return DSI_ERR_NOMEM;
    }
    t->first_layer = first_layer;
    t->n_layers = n_layers;
    t->n_experts = n_experts;
    memcpy(t->b0, b0, n * sizeof(float));
    memcpy(t->b, b0, n * sizeof(float));
    *out = t;
    return DSI_OK;
}

dsi_status_t dsc_bias_load(const char *model_dir, dsc_bias_t **out)
{
    dsn_checkpoint_t *ckpt;
    dsi_status_t st = dsn_checkpoint_open(model_dir, &ckpt);
    if (st != DSI_OK)
        return st;
    const dsn_config_t *cfg = dsn_checkpoint_config(ckpt);
    int first = cfg->first_k_dense_replace, L = cfg->num_hidden_layers, E = cfg->n_routed_experts;
    float *b0 = NULL;
    if (first >= L || E <= 0) {
        DSI_ERROR("%s: the model has no MoE layers: no router biases to track", model_dir);
        st = DSI_ERR_CONFIG;
        goto out;
    }
    b0 = malloc((size_t)(L - first) * (size_t)E * sizeof(float));
    if (b0 == NULL) {
        st = DSI_ERR_NOMEM;
        goto out;
    }
    for (int l = first; l < L && st == DSI_OK; l++) {
        char name[128];
        snprintf(name, sizeof(name), "model.layers.%d.mlp.gate.e_score_correction_bias", l);
        st = dsn_checkpoint_vector_f32(ckpt, name, E, b0 + (size_t)(l - first) * (size_t)E);
    }
    if (st == DSI_OK)
        st = dsc_bias_create((uint32_t)first, (uint32_t)(L - first), (uint32_t)E, b0, out);
out:
    free(b0);
    dsn_checkpoint_close(ckpt);
    return st;
}

void dsc_bias_destroy(dsc_bias_t *b)
{
    if (b == NULL)
        return;
    free(b->b0);
    free(b->b);
    free(b);
}

uint32_t dsc_bias_first_layer(const dsc_bias_t *b)
{
    return b->first_layer;
}

uint32_t dsc_bias_layers(const dsc_bias_t *b)
{
    return b->n_layers;
}

uint32_t dsc_bias_experts(const dsc_bias_t *b)
{
    return b->n_experts;
}

const float *dsc_bias_get(const dsc_bias_t *b, uint32_t moe_index)
{
    return b->b + (size_t)moe_index * b->n_experts;
}

int dsc_bias_rule(float *b, const uint64_t *load, uint32_t n, float gamma)
{
    uint64_t total = 0;
    for (uint32_t i = 0; i < n; i++)
        total += load[i];
    if (total == 0 || gamma == 0)
        return 0;
    /* Compare load[i] * n with the total rather than with a rounded mean. */
    int changed = 0;
    for (uint32_t i = 0; i < n; i++) {
        double scaled = (double)load[i] * n, t = (double)total;
        float step = scaled < t ? gamma : scaled > t ? -gamma : 0.0f;
        if (step != 0) {
            b[i] += step;
            changed = 1;
        }
    }
    return changed;
}

uint32_t dsc_bias_update(dsc_bias_t *b, const uint64_t *counts, float gamma, uint8_t *changed)
{
    uint32_t moved = 0;
    for (uint32_t l = 0; l < b->n_layers; l++) {
        size_t off = (size_t)l * b->n_experts;
        int c = dsc_bias_rule(b->b + off, counts + off, b->n_experts, gamma);
        if (changed != NULL)
            changed[l] = (uint8_t)c;
        moved += (uint32_t)c;
    }
    return moved;
}

void dsc_bias_drift(const dsc_bias_t *b, uint32_t moe_index, double *max_abs, double *mean_abs)
{
    size_t off = (size_t)moe_index * b->n_experts;
    double max = 0, sum = 0;
    for (uint32_t e = 0; e < b->n_experts; e++) {
        double d = fabs((double)b->b[off + e] - (double)b->b0[off + e]);
        max = d > max ? d : max;
        sum += d;
    }
    *max_abs = max;
    *mean_abs = sum / b->n_experts;
}
