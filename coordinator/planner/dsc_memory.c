#include "dsc_memory.h"

#include <stdio.h>
#include <string.h>

#include "dsi_log.h"

/*
 * The layout of each format: bits per value, the block one scale covers (rows x cols; 0 = no
 * scales) and the bytes of one scale.
 */
typedef struct {
    const char *name;
    uint32_t bits;
    uint32_t block_rows, block_cols;
    uint32_t scale_bytes;
    const char *describe;
} format_info_t;

static const format_info_t formats[DSC_WEIGHT_N_FORMATS] = {
    [DSC_WEIGHT_FP8] = {"fp8", 8, 128, 128, 4, "fp8 e4m3 + f32 scale per 128x128 block (release)"},
    [DSC_WEIGHT_BF16] = {"bf16", 16, 0, 0, 0, "bf16, no scales (release's BF16 cast)"},
    [DSC_WEIGHT_INT8] = {"int8", 8, 1, 128, 4, "int8 + f32 scale per 128 inputs of a row"},
    [DSC_WEIGHT_INT4] = {"int4", 4, 1, 32, 4, "int4 + f32 scale per 32 inputs of a row"},
    [DSC_WEIGHT_INT4_G128] = {"int4-g128", 4, 1, 128, 4,
                              "int4 + f32 scale per 128 inputs of a row"},
};

/* Bounds that keep every product below in uint64_t; real models are far inside them. */
#define MAX_DIM      (1 << 20) /* hidden, intermediate widths, ranks */
#define MAX_VOCAB    (1 << 22)
#define MAX_LAYERS   1024
#define MAX_EXPERTS  4096
#define MAX_HEADS    1024
#define MAX_HEAD_DIM 4096

const char *dsc_weight_format_name(dsc_weight_format_t format)
{
    if ((unsigned)format >= DSC_WEIGHT_N_FORMATS)
        return "?";
    return formats[format].name;
}

const char *dsc_weight_format_describe(dsc_weight_format_t format)
{
    if ((unsigned)format >= DSC_WEIGHT_N_FORMATS)
        return "?";
    return formats[format].describe;
}

dsi_status_t dsc_weight_format_parse(const char *name, dsc_weight_format_t *out)
{
    for (int f = 0; f < DSC_WEIGHT_N_FORMATS; f++) {
        if (name != NULL && strcmp(name, formats[f].name) == 0) {
            *out = (dsc_weight_format_t)f;
            return DSI_OK;
        }
    }
    return DSI_ERR_INVALID_ARG;
}

static uint64_t ceil_div(uint64_t a, uint64_t b)
{
    return (a + b - 1) / b;
}

uint64_t dsc_memory_matrix_bytes(dsc_weight_format_t format, uint64_t rows, uint64_t cols)
{
    const format_info_t *f = &formats[(unsigned)format < DSC_WEIGHT_N_FORMATS ? format : 0];
    /*
     * Sub-byte formats pack each row separately so that rows start on a byte; int4 rows are whole
     * 16-byte chunks of 32 values (kernels/dsk.h, DSK_DTYPE_I4_*), which V3's widths fill exactly.
     */
    uint64_t packed = f->bits == 4 ? ceil_div(cols, 32) * 32 : cols;
    uint64_t bytes = rows * ceil_div(packed * f->bits, 8);
    if (f->block_rows != 0)
        bytes += ceil_div(rows, f->block_rows) * ceil_div(cols, f->block_cols) * f->scale_bytes;
    return bytes;
}

/* Checks one config field against [lo, hi]; logs and returns nonzero when outside. */
static int field_bad(const char *name, long long value, long long lo, long long hi)
{
    if (value >= lo && value <= hi)
        return 0;
    DSI_ERROR("model config: field '%s' = %lld is outside the planner's range [%lld, %lld]", name,
              value, lo, hi);
    return 1;
}

static dsi_status_t config_check(const dsn_config_t *c)
{
    int bad = 0;
    bad |= field_bad("vocab_size", c->vocab_size, 1, MAX_VOCAB);
    bad |= field_bad("hidden_size", c->hidden_size, 1, MAX_DIM);
    bad |= field_bad("intermediate_size", c->intermediate_size, 0, MAX_DIM);
    bad |= field_bad("moe_intermediate_size", c->moe_intermediate_size, 0, MAX_DIM);
    bad |= field_bad("num_hidden_layers", c->num_hidden_layers, 1, MAX_LAYERS);
    bad |= field_bad("num_nextn_predict_layers", c->num_nextn_predict_layers, 0, MAX_LAYERS);
    bad |= field_bad("first_k_dense_replace", c->first_k_dense_replace, 0, c->num_hidden_layers);
    bad |= field_bad("n_routed_experts", c->n_routed_experts, 0, MAX_EXPERTS);
    bad |= field_bad("n_shared_experts", c->n_shared_experts, 0, 64);
    bad |= field_bad("num_attention_heads", c->num_attention_heads, 1, MAX_HEADS);
    bad |= field_bad("q_lora_rank", c->q_lora_rank, 0, MAX_DIM);
    bad |= field_bad("kv_lora_rank", c->kv_lora_rank, 1, MAX_DIM);
    bad |= field_bad("qk_nope_head_dim", c->qk_nope_head_dim, 0, MAX_HEAD_DIM);
    bad |= field_bad("qk_rope_head_dim", c->qk_rope_head_dim, 0, MAX_HEAD_DIM);
    bad |= field_bad("v_head_dim", c->v_head_dim, 1, MAX_HEAD_DIM);
    if (bad)
        return DSI_ERR_CONFIG;
    if (c->first_k_dense_replace < c->num_hidden_layers) {
        /* The plan lists experts for every layer from first_moe_layer on (dst_plan.h). */
        if (c->moe_layer_freq != 1 || c->n_routed_experts < 1) {
            DSI_ERROR("model config: moe_layer_freq %d with %d routed experts: the planner needs "
                      "every layer from first_k_dense_replace on to be MoE (moe_layer_freq 1)",
                      c->moe_layer_freq, c->n_routed_experts);
            return DSI_ERR_CONFIG;
        }
    }
    return DSI_OK;
}

/* Parameters of a SwiGLU block of width `inter` on hidden size h. */
static uint64_t swiglu_params(uint64_t h, uint64_t inter)
{
    return 3 * h * inter;
}

static uint64_t swiglu_bytes(dsc_weight_format_t f, uint64_t h, uint64_t inter)
{
    return 2 * dsc_memory_matrix_bytes(f, inter, h) + dsc_memory_matrix_bytes(f, h, inter);
}

/* Attention of one layer (norms included): bytes in *bytes, parameters returned. */
static uint64_t attn_model(const dsn_config_t *c, dsc_weight_format_t f, uint64_t *bytes)
{
    uint64_t h = (uint64_t)c->hidden_size, heads = (uint64_t)c->num_attention_heads;
    uint64_t qk = (uint64_t)c->qk_nope_head_dim + (uint64_t)c->qk_rope_head_dim;
    uint64_t kvl = (uint64_t)c->kv_lora_rank, rope = (uint64_t)c->qk_rope_head_dim;
    uint64_t vdim = (uint64_t)c->v_head_dim, ql = (uint64_t)c->q_lora_rank;
    uint64_t norms = 2 * h + kvl + ql; /* input, post-attention, kv_a, q_a (0 without q_lora) */
    uint64_t params = norms, b = norms * 4;
    if (ql > 0) {
        params += ql * h + heads * qk * ql;
        b += dsc_memory_matrix_bytes(f, ql, h) + dsc_memory_matrix_bytes(f, heads * qk, ql);
    } else {
        params += heads * qk * h;
        b += dsc_memory_matrix_bytes(f, heads * qk, h);
    }
    uint64_t kv_b_rows = heads * ((uint64_t)c->qk_nope_head_dim + vdim);
    params += (kvl + rope) * h + kv_b_rows * kvl + h * heads * vdim;
    b += dsc_memory_matrix_bytes(f, kvl + rope, h) + dsc_memory_matrix_bytes(f, kv_b_rows, kvl) +
         dsc_memory_matrix_bytes(f, h, heads * vdim);
    *bytes = b;
    return params;
}

dsi_status_t dsc_memory_compute(const dsn_config_t *cfg, dsc_weight_format_t format,
                                dsc_memory_t *out)
{
    if ((unsigned)format >= DSC_WEIGHT_N_FORMATS) {
        DSI_ERROR("memory model: weight format %d is not one of the known formats", (int)format);
        return DSI_ERR_INVALID_ARG;
    }
    dsi_status_t st = config_check(cfg);
    if (st != DSI_OK)
        return st;

    dsc_memory_t m;
    memset(&m, 0, sizeof(m));
    m.format = format;
    uint64_t h = (uint64_t)cfg->hidden_size, v = (uint64_t)cfg->vocab_size;
    uint64_t e = (uint64_t)cfg->n_routed_experts, mi = (uint64_t)cfg->moe_intermediate_size;
    uint64_t shared_w = (uint64_t)cfg->n_shared_experts * mi;
    m.n_layers = (uint32_t)cfg->num_hidden_layers;
    m.n_moe_layers = (uint32_t)(cfg->num_hidden_layers - cfg->first_k_dense_replace);

    m.embed = v * h * 2;
    m.head = h * 4 + v * h * 2;
    uint64_t attn_params = attn_model(cfg, format, &m.attn);
    m.dense_mlp = swiglu_bytes(format, h, (uint64_t)cfg->intermediate_size);
    /* bf16 gate, plus the f32 correction bias of noaux_tc routers (the V2 family has none) */
    uint64_t bias = dsn_config_has_router_bias(cfg) ? e : 0;
    m.router = e * h * 2 + bias * 4;
    m.shared_experts = shared_w > 0 ? swiglu_bytes(format, h, shared_w) : 0;
    m.expert = swiglu_bytes(format, h, mi);
    m.kv_token_layer = ((uint64_t)cfg->kv_lora_rank + (uint64_t)cfg->qk_rope_head_dim) * 4;
    m.kv_f32_token_layer = m.kv_token_layer;

    uint64_t dense_layers = m.n_layers - m.n_moe_layers;
    uint64_t moe_layer_bytes = m.attn + m.router + m.shared_experts + e * m.expert;
    uint64_t moe_layer_params =
        attn_params + e * h + bias + swiglu_params(h, shared_w) + e * swiglu_params(h, mi);
    m.total_main =
        m.embed + m.head + dense_layers * (m.attn + m.dense_mlp) + m.n_moe_layers * moe_layer_bytes;
    m.params_main =
        2 * v * h + h +
        dense_layers * (attn_params + swiglu_params(h, (uint64_t)cfg->intermediate_size)) +
        m.n_moe_layers * moe_layer_params;

    /*
     * An MTP layer (MODEL.md section 6): enorm, hnorm, eh_proj [H, 2H] bf16, one full MoE decoder
     * layer, shared_head norm + head [V, H] and its own embed_tokens [V, H], both bf16.
     */
    uint64_t n_mtp = (uint64_t)cfg->num_nextn_predict_layers;
    m.mtp = n_mtp * (2 * h * 4 + 2 * h * h * 2 + moe_layer_bytes + h * 4 + 2 * v * h * 2);
    m.params_mtp = n_mtp * (2 * h + 2 * h * h + moe_layer_params + h + 2 * v * h);
    m.mtp_experts = n_mtp * e * m.expert;
    m.mtp_kv_token = n_mtp * m.kv_token_layer;
    *out = m;
    return DSI_OK;
}

int dsc_memory_is_moe_layer(const dsc_memory_t *mem, const dsn_config_t *cfg, uint32_t layer)
{
    (void)mem;
    return layer >= (uint32_t)cfg->first_k_dense_replace &&
           layer < (uint32_t)cfg->num_hidden_layers;
}

uint64_t dsc_memory_layer_fixed(const dsc_memory_t *mem, const dsn_config_t *cfg, uint32_t layer)
{
    if (dsc_memory_is_moe_layer(mem, cfg, layer))
        return mem->attn + mem->router + mem->shared_experts;
    return mem->attn + mem->dense_mlp;
}

char *dsc_memory_format_bytes(uint64_t bytes, char *buf, size_t size)
{
    static const char *units[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
    if (bytes < 1024) {
        snprintf(buf, size, "%llu B", (unsigned long long)bytes);
        return buf;
    }
    double v = (double)bytes / 1024.0;
    int u = 0;
    while (v >= 1024.0 && u < 4) {
        v /= 1024.0;
        u++;
    }
    snprintf(buf, size, "%.1f %s", v, units[u]);
    return buf;
}

uint64_t dsc_memory_kv_layer(const dsc_memory_t *m, uint64_t kv_tokens, uint64_t kv_token_layer)
{
    /* charged to the pool in whole blocks of the cache's type */
    uint64_t tail = kv_token_layer < m->kv_f32_token_layer
                        ? (m->kv_f32_token_layer + kv_token_layer - 1) / kv_token_layer *
                              DSC_KV_TAIL_TOKENS * kv_token_layer
                        : 0;
    return kv_tokens * kv_token_layer + tail;
}
