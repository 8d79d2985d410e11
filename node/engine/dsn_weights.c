#include "dsn_weights.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "dsi_log.h"
#include "dsn_quant.h"

static const char *wfmt_names[DSN_WFMT_COUNT] = {"auto", "fp8",  "bf16",
                                                 "int8", "int4", "int4-g128"};

const char *dsn_weight_format_name(dsn_weight_format_t f)
{
    return (unsigned)f < DSN_WFMT_COUNT ? wfmt_names[f] : "?";
}

dsi_status_t dsn_weight_format_parse(const char *name, dsn_weight_format_t *out)
{
    for (int f = 0; name != NULL && f < DSN_WFMT_COUNT; f++) {
        if (strcmp(name, wfmt_names[f]) == 0) {
            *out = (dsn_weight_format_t)f;
            return DSI_OK;
        }
    }
    return DSI_ERR_INVALID_ARG;
}

dsn_slice_t dsn_slice_all(const dsn_config_t *cfg)
{
    dsn_slice_t s = {0, cfg->num_hidden_layers, 1, 1, NULL};
    return s;
}

static uint64_t matrix_bytes(const dsk_matrix_t *m)
{
    return m->data != NULL ? dsk_matrix_bytes(m->dtype, m->rows, m->cols) : 0;
}

/*
 * Ask the kernel to start reading a matrix's pages now (the mapping is lazy): a node then faults in
 * its slice while it loads, before it answers READY, not during its first steps. Advice only.
 */
static void prefetch(const dsk_matrix_t *m, uint64_t bytes)
{
    long page = sysconf(_SC_PAGESIZE);
    uintptr_t start = (uintptr_t)m->data & ~(uintptr_t)(page - 1);
    uintptr_t end = (uintptr_t)m->data + bytes;
    madvise((void *)start, end - start, MADV_WILLNEED);
}

void dsn_weights_release_pages(const void *p, size_t bytes)
{
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t start = ((uintptr_t)p + page - 1) & ~(page - 1);
    uintptr_t end = ((uintptr_t)p + bytes) & ~(page - 1);
    if (end > start)
        madvise((void *)start, end - start, MADV_DONTNEED);
}

/* Loader state: one place to record the first failure and sum the bytes. */
typedef struct {
    const dsn_checkpoint_t *ckpt;
    dsi_status_t status;
    uint64_t bytes;
} loader_t;

static void load_matrix(loader_t *ld, dsk_matrix_t *m, int64_t rows, int64_t cols, const char *fmt,
                        int a, int b)
{
    char prefix[256];
    snprintf(prefix, sizeof(prefix), fmt, a, b);
    if (ld->status != DSI_OK)
        return;
    ld->status = dsn_checkpoint_matrix(ld->ckpt, prefix, rows, cols, m);
    if (ld->status == DSI_OK) {
        ld->bytes += matrix_bytes(m);
        prefetch(m, (uint64_t)rows * (uint64_t)dsk_dtype_row_bytes(m->dtype, cols));
    }
}

static float *load_vector(loader_t *ld, int64_t n, const char *fmt, int a)
{
    char name[256];
    snprintf(name, sizeof(name), fmt, a);
    if (ld->status != DSI_OK)
        return NULL;
    float *v = malloc((size_t)n * sizeof(float));
    if (v == NULL) {
        DSI_ERROR("out of memory loading %s", name);
        ld->status = DSI_ERR_NOMEM;
        return NULL;
    }
    ld->status = dsn_checkpoint_vector_f32(ld->ckpt, name, n, v);
    if (ld->status != DSI_OK) {
        free(v);
        return NULL;
    }
    return v;
}

static int expert_held(const dsn_config_t *cfg, const dsn_slice_t *slice, int layer, int e)
{
    if (slice->expert_mask == NULL)
        return 1;
    size_t i =
        (size_t)(layer - cfg->first_k_dense_replace) * (size_t)cfg->n_routed_experts + (size_t)e;
    return slice->expert_mask[i] != 0;
}

static void load_attention(loader_t *ld, const dsn_config_t *c, int l, dsn_layer_t *ly)
{
    int64_t H = c->hidden_size, heads = c->num_attention_heads;
    int64_t qk = dsn_config_qk_head_dim(c);
    if (c->q_lora_rank > 0) {
        load_matrix(ld, &ly->q_a, c->q_lora_rank, H, "model.layers.%d.self_attn.q_a_proj", l, 0);
        ly->q_a_norm =
            load_vector(ld, c->q_lora_rank, "model.layers.%d.self_attn.q_a_layernorm.weight", l);
        load_matrix(ld, &ly->q_b, heads * qk, c->q_lora_rank, "model.layers.%d.self_attn.q_b_proj",
                    l, 0);
    } else {
        load_matrix(ld, &ly->q_proj, heads * qk, H, "model.layers.%d.self_attn.q_proj", l, 0);
    }
    load_matrix(ld, &ly->kv_a, c->kv_lora_rank + c->qk_rope_head_dim, H,
                "model.layers.%d.self_attn.kv_a_proj_with_mqa", l, 0);
    ly->kv_a_norm =
        load_vector(ld, c->kv_lora_rank, "model.layers.%d.self_attn.kv_a_layernorm.weight", l);
    load_matrix(ld, &ly->kv_b, heads * (c->qk_nope_head_dim + c->v_head_dim), c->kv_lora_rank,
                "model.layers.%d.self_attn.kv_b_proj", l, 0);
    load_matrix(ld, &ly->o_proj, H, heads * c->v_head_dim, "model.layers.%d.self_attn.o_proj", l,
                0);
}

/* Routed expert e of layer l; present only when all three matrices loaded. */
static void load_expert(loader_t *ld, const dsn_config_t *c, int l, int e, dsn_expert_t *x)
{
    int64_t H = c->hidden_size, I = c->moe_intermediate_size;
    load_matrix(ld, &x->gate, I, H, "model.layers.%d.mlp.experts.%d.gate_proj", l, e);
    load_matrix(ld, &x->up, I, H, "model.layers.%d.mlp.experts.%d.up_proj", l, e);
    load_matrix(ld, &x->down, H, I, "model.layers.%d.mlp.experts.%d.down_proj", l, e);
    x->present = ld->status == DSI_OK;
}

static void load_ffn(loader_t *ld, const dsn_config_t *c, const dsn_slice_t *slice, int l,
                     dsn_layer_t *ly)
{
    int64_t H = c->hidden_size;
    ly->is_moe = dsn_config_is_moe_layer(c, l);
    if (!ly->is_moe) {
        load_matrix(ld, &ly->gate, c->intermediate_size, H, "model.layers.%d.mlp.gate_proj", l, 0);
        load_matrix(ld, &ly->up, c->intermediate_size, H, "model.layers.%d.mlp.up_proj", l, 0);
        load_matrix(ld, &ly->down, H, c->intermediate_size, "model.layers.%d.mlp.down_proj", l, 0);
        return;
    }
    int64_t E = c->n_routed_experts, I = c->moe_intermediate_size;
    int64_t SI = (int64_t)c->n_shared_experts * I;
    load_matrix(ld, &ly->router, E, H, "model.layers.%d.mlp.gate", l, 0);
    if (dsn_config_has_router_bias(c)) /* the V2 family's softmax routers have none */
        ly->router_bias = load_vector(ld, E, "model.layers.%d.mlp.gate.e_score_correction_bias", l);
    if (SI > 0) {
        load_matrix(ld, &ly->shared_gate, SI, H, "model.layers.%d.mlp.shared_experts.gate_proj", l,
                    0);
        load_matrix(ld, &ly->shared_up, SI, H, "model.layers.%d.mlp.shared_experts.up_proj", l, 0);
        load_matrix(ld, &ly->shared_down, H, SI, "model.layers.%d.mlp.shared_experts.down_proj", l,
                    0);
    }
    ly->experts = calloc((size_t)E, sizeof(dsn_expert_t));
    if (ly->experts == NULL) {
        if (ld->status == DSI_OK)
            ld->status = DSI_ERR_NOMEM;
        return;
    }
    for (int e = 0; e < E && ld->status == DSI_OK; e++) {
        if (!expert_held(c, slice, l, e))
            continue;
        load_expert(ld, c, l, e, &ly->experts[e]);
    }
}

dsi_status_t dsn_weights_load(const dsn_checkpoint_t *ckpt, const dsn_slice_t *slice,
                              dsn_weights_t **out)
{
    return dsn_weights_load_layers(ckpt, dsn_checkpoint_config(ckpt), slice, out);
}

dsi_status_t dsn_weights_load_layers(const dsn_checkpoint_t *ckpt, const dsn_config_t *c,
                                     const dsn_slice_t *slice, dsn_weights_t **out)
{
    if (slice->first_layer < 0 || slice->end_layer > c->num_hidden_layers ||
        slice->first_layer >= slice->end_layer) {
        DSI_ERROR("slice layers [%d, %d) outside the model's %d layers", slice->first_layer,
                  slice->end_layer, c->num_hidden_layers);
        return DSI_ERR_INVALID_ARG;
    }
    dsn_weights_t *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return DSI_ERR_NOMEM;
    w->cfg = *c;
    w->slice = *slice;
    w->slice.expert_mask = NULL;
    w->layers = calloc((size_t)c->num_hidden_layers, sizeof(dsn_layer_t));
    loader_t ld = {ckpt, w->layers ? DSI_OK : DSI_ERR_NOMEM, 0};
    int64_t H = c->hidden_size;
    if (slice->has_embed)
        load_matrix(&ld, &w->embed, c->vocab_size, H, "model.embed_tokens", 0, 0);
    if (slice->has_head) {
        w->final_norm = load_vector(&ld, H, "model.norm.weight", 0);
        load_matrix(&ld, &w->lm_head, c->vocab_size, H, "lm_head", 0, 0);
    }
    for (int l = slice->first_layer; l < slice->end_layer && ld.status == DSI_OK; l++) {
        dsn_layer_t *ly = &w->layers[l];
        ly->input_norm = load_vector(&ld, H, "model.layers.%d.input_layernorm.weight", l);
        ly->post_attn_norm =
            load_vector(&ld, H, "model.layers.%d.post_attention_layernorm.weight", l);
        load_attention(&ld, c, l, ly);
        load_ffn(&ld, c, slice, l, ly);
    }
    if (ld.status != DSI_OK) {
        dsn_weights_destroy(w);
        return ld.status;
    }
    w->weight_bytes = ld.bytes;
    *out = w;
    return DSI_OK;
}

dsi_status_t dsn_weights_load_as(const dsn_checkpoint_t *ckpt, const dsn_slice_t *slice,
                                 dsn_weight_format_t format, int n_threads, dsn_weights_t **out)
{
    dsn_weights_t *w;
    dsi_status_t st = dsn_weights_load(ckpt, slice, &w);
    if (st != DSI_OK)
        return st;
    st = dsn_quant_convert(w, format, n_threads);
    if (st != DSI_OK) {
        dsn_weights_destroy(w);
        return st;
    }
    *out = w;
    return DSI_OK;
}

void dsn_weights_for_each_projection(dsn_weights_t *w, void (*fn)(void *ctx, dsk_matrix_t *m),
                                     void *ctx)
{
    for (int l = w->slice.first_layer; l < w->slice.end_layer; l++) {
        dsn_layer_t *ly = &w->layers[l];
        dsk_matrix_t *mats[] = {&ly->q_a,  &ly->q_b,         &ly->q_proj,    &ly->kv_a,
                                &ly->kv_b, &ly->o_proj,      &ly->gate,      &ly->up,
                                &ly->down, &ly->shared_gate, &ly->shared_up, &ly->shared_down};
        for (size_t i = 0; i < sizeof(mats) / sizeof(mats[0]); i++) {
            if (mats[i]->data != NULL)
                fn(ctx, mats[i]);
        }
        for (int e = 0; ly->is_moe && ly->experts != NULL && e < w->cfg.n_routed_experts; e++) {
            dsn_expert_t *x = &ly->experts[e];
            if (!x->present)
                continue;
            fn(ctx, &x->gate);
            fn(ctx, &x->up);
            fn(ctx, &x->down);
        }
    }
}

void dsn_weights_destroy(dsn_weights_t *w)
{
    if (w == NULL)
        return;
    dsn_quant_release(w);
    if (w->layers != NULL) {
        for (int l = 0; l < w->cfg.num_hidden_layers; l++) {
            dsn_layer_t *ly = &w->layers[l];
            free(ly->input_norm);
            free(ly->post_attn_norm);
            free(ly->q_a_norm);
            free(ly->kv_a_norm);
            free(ly->router_bias);
            free(ly->experts);
        }
    }
    free(w->layers);
    free(w->final_norm);
    free(w);
}

dsi_status_t dsn_weights_add_experts(dsn_weights_t *w, const dsn_checkpoint_t *ckpt,
                                     const uint8_t *mask, int n_threads, size_t *added)
{
    const dsn_config_t *c = &w->cfg;
    dsn_slice_t slice = w->slice;
    slice.expert_mask = mask;
    loader_t ld = {ckpt, DSI_OK, 0};
    size_t n = 0;
    for (int l = w->slice.first_layer; l < w->slice.end_layer && ld.status == DSI_OK; l++) {
        dsn_layer_t *ly = &w->layers[l];
        for (int e = 0; ly->is_moe && e < c->n_routed_experts && ld.status == DSI_OK; e++) {
            if (ly->experts[e].present || !expert_held(c, &slice, l, e))
                continue;
            load_expert(&ld, c, l, e, &ly->experts[e]);
            n += ly->experts[e].present;
        }
    }
    w->weight_bytes += ld.bytes;
    *added = n;
    if (ld.status != DSI_OK)
        return ld.status;
    return dsn_quant_convert(w, w->format, n_threads);
}

size_t dsn_weights_drop_experts(dsn_weights_t *w, const uint8_t *mask)
{
    const dsn_config_t *c = &w->cfg;
    dsn_slice_t slice = w->slice;
    slice.expert_mask = mask;
    size_t n = 0;
    for (int l = w->slice.first_layer; l < w->slice.end_layer; l++) {
        dsn_layer_t *ly = &w->layers[l];
        for (int e = 0; ly->is_moe && e < c->n_routed_experts; e++) {
            dsn_expert_t *x = &ly->experts[e];
            if (!x->present || expert_held(c, &slice, l, e))
                continue;
            dsk_matrix_t *mats[] = {&x->gate, &x->up, &x->down};
            for (int i = 0; i < 3; i++) {
                uint64_t bytes = matrix_bytes(mats[i]);
                w->weight_bytes -= bytes;
                dsn_weights_release_pages(
                    mats[i]->data, (size_t)mats[i]->rows *
                                       (size_t)dsk_dtype_row_bytes(mats[i]->dtype, mats[i]->cols));
            }
            memset(x, 0, sizeof(*x));
            n++;
        }
    }
    return n;
}

dsi_status_t dsn_weights_reset_biases(dsn_weights_t *w, const dsn_checkpoint_t *ckpt)
{
    const dsn_config_t *c = &w->cfg;
    for (int l = w->slice.first_layer; l < w->slice.end_layer; l++) {
        dsn_layer_t *ly = &w->layers[l];
        if (!ly->is_moe || ly->router_bias == NULL)
            continue;
        char name[256];
        snprintf(name, sizeof(name), "model.layers.%d.mlp.gate.e_score_correction_bias", l);
        dsi_status_t st = dsn_checkpoint_vector_f32(ckpt, name, c->n_routed_experts, ly->router_bias);
        if (st != DSI_OK)
            return st;
    }
    return DSI_OK;
}
