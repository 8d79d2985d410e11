/*
 * dsn_synth.c - options, the config.json of a synthetic checkpoint, and its tensor plan.
 *
 * The config is produced as JSON text and then read back through dsn_config_parse(), so a
 * synthetic checkpoint can never carry a configuration the loader would refuse.
 */
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsi_log.h"
#include "dsn_synth_impl.h"

typedef struct {
    int vocab, hidden, intermediate, moe_intermediate, layers, dense_layers, experts, shared;
    int heads, q_lora, kv_lora, nope, rope, v_head;
    int max_groups, max_topk; /* routing is scaled down from these for small expert counts */
} preset_t;

static const preset_t presets[] = {
    [DSN_SYNTH_TINY] = {1024, 256, 384, 96, 4, 1, 32, 1, 4, 192, 64, 32, 16, 32, 4, 4},
    [DSN_SYNTH_V3] = {129280, 7168, 18432, 2048, 3, 3, 16, 1, 128, 1536, 512, 128, 64, 128, 8, 8},
};

/* Ids the tokenizer needs below the vocab: 3 specials + 256 bytes + 15 markers. */
#define SYN_MIN_VOCAB 274

void dsn_synth_opts_init(dsn_synth_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    o->preset = DSN_SYNTH_TINY;
    o->fp8 = 1;
}

/* Group-limited routing for E experts: the most groups (<= max) of at least 2 experts each. */
static void routing_for(const preset_t *p, int experts, int *n_group, int *topk_group, int *top_k)
{
    int g = 1;
    for (int d = p->max_groups; d >= 1; d--) {
        if (experts % d == 0 && experts / d >= 2) {
            g = d;
            break;
        }
    }
    *n_group = g;
    *topk_group = g / 2 > 0 ? g / 2 : 1;
    int reachable = *topk_group * (experts / g);
    *top_k = p->max_topk < reachable ? p->max_topk : reachable;
}

static dsi_status_t check_opts(const dsn_synth_opts_t *o)
{
    if (o->preset != DSN_SYNTH_TINY && o->preset != DSN_SYNTH_V3) {
        DSI_ERROR("synth: unknown preset %d", (int)o->preset);
        return DSI_ERR_INVALID_ARG;
    }
    if (o->layers < 0 || o->layers > 256) {
        DSI_ERROR("synth: --layers %d outside [1, 256]", o->layers);
        return DSI_ERR_INVALID_ARG;
    }
    if (o->experts != 0 && (o->experts < 2 || o->experts > DSK_ROUTER_MAX_EXPERTS)) {
        DSI_ERROR("synth: --experts %d outside [2, %d]", o->experts, DSK_ROUTER_MAX_EXPERTS);
        return DSI_ERR_INVALID_ARG;
    }
    if (o->vocab != 0 && (o->vocab < SYN_MIN_VOCAB || o->vocab > (1 << 24))) {
        DSI_ERROR("synth: --vocab %d outside [%d, %d] (the tokenizer needs %d ids)", o->vocab,
                  SYN_MIN_VOCAB, 1 << 24, SYN_MIN_VOCAB);
        return DSI_ERR_INVALID_ARG;
    }
    if (!(o->router_skew >= 0 && o->router_skew <= 100)) {
        DSI_ERROR("synth: --router-skew %g outside [0, 100]", o->router_skew);
        return DSI_ERR_INVALID_ARG;
    }
    if (o->shard_size != 0 && o->shard_size < 4096) {
        DSI_ERROR("synth: --shard-size %llu below 4096 bytes", (unsigned long long)o->shard_size);
        return DSI_ERR_INVALID_ARG;
    }
    return DSI_OK;
}

static json_t *config_json(const dsn_synth_opts_t *o)
{
    const preset_t *p = &presets[o->preset];
    int layers = o->layers ? o->layers : p->layers;
    int experts = o->experts ? o->experts : p->experts;
    int vocab = o->vocab ? o->vocab : p->vocab;
    /* At least one MoE layer whenever there is more than one layer. */
    int dense = p->dense_layers < layers - 1 ? p->dense_layers : layers - 1;
    int n_group, topk_group, top_k;
    routing_for(p, experts, &n_group, &topk_group, &top_k);
    json_t *c = json_pack(
        "{s:[s], s:s, s:b, s:f, s:i, s:i, s:i, s:s, s:i, s:f, s:i, s:i, s:i, s:i, s:i, s:i, s:i,"
        " s:i, s:b, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i}",
        "architectures", "DeepseekV3ForCausalLM", "model_type", "deepseek_v3", "attention_bias", 0,
        "attention_dropout", 0.0, "bos_token_id", 0, "eos_token_id", 1, "first_k_dense_replace",
        dense, "hidden_act", "silu", "hidden_size", p->hidden, "initializer_range", 0.02,
        "intermediate_size", p->intermediate, "kv_lora_rank", p->kv_lora, "max_position_embeddings",
        163840, "moe_intermediate_size", p->moe_intermediate, "moe_layer_freq", 1, "n_group",
        n_group, "n_routed_experts", experts, "n_shared_experts", p->shared, "norm_topk_prob", 1,
        "num_attention_heads", p->heads, "num_experts_per_tok", top_k, "num_hidden_layers", layers,
        "num_key_value_heads", p->heads, "num_nextn_predict_layers", o->mtp ? 1 : 0,
        "q_lora_rank", p->q_lora,
        "qk_nope_head_dim", p->nope, "qk_rope_head_dim", p->rope);
    if (c == NULL)
        return NULL;
    json_object_set_new(c, "rms_norm_eps", json_real(1e-6));
    json_object_set_new(c, "rope_scaling",
                        json_pack("{s:i, s:i, s:i, s:f, s:f, s:i, s:s}", "beta_fast", 32,
                                  "beta_slow", 1, "factor", 40, "mscale", 1.0, "mscale_all_dim",
                                  1.0, "original_max_position_embeddings", 4096, "type", "yarn"));
    json_object_set_new(c, "rope_theta", json_integer(10000));
    json_object_set_new(c, "routed_scaling_factor", json_real(2.5));
    json_object_set_new(c, "scoring_func", json_string("sigmoid"));
    json_object_set_new(c, "tie_word_embeddings", json_false());
    json_object_set_new(c, "topk_group", json_integer(topk_group));
    json_object_set_new(c, "topk_method", json_string("noaux_tc"));
    json_object_set_new(c, "torch_dtype", json_string("bfloat16"));
    json_object_set_new(c, "use_cache", json_true());
    json_object_set_new(c, "v_head_dim", json_integer(p->v_head));
    json_object_set_new(c, "vocab_size", json_integer(vocab));
    if (o->fp8)
        json_object_set_new(c, "quantization_config",
                            json_pack("{s:s, s:s, s:s, s:[i, i]}", "activation_scheme", "dynamic",
                                      "fmt", "e4m3", "quant_method", "fp8", "weight_block_size",
                                      DSK_FP8_BLOCK, DSK_FP8_BLOCK));
    return c;
}

dsi_status_t syn_config_text(const dsn_synth_opts_t *o, char **text, dsn_config_t *cfg)
{
    dsi_status_t st = check_opts(o);
    if (st != DSI_OK)
        return st;
    json_t *c = config_json(o);
    char *s = c ? json_dumps(c, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
    json_decref(c);
    if (s == NULL) {
        DSI_ERROR("synth: out of memory building config.json");
        return DSI_ERR_NOMEM;
    }
    dsn_config_t parsed;
    st = dsn_config_parse(s, strlen(s), "synth config.json", &parsed);
    if (st != DSI_OK) {
        free(s);
        return DSI_ERR_INVALID_ARG;
    }
    if (text != NULL)
        *text = s;
    else
        free(s);
    if (cfg != NULL)
        *cfg = parsed;
    return DSI_OK;
}

dsi_status_t dsn_synth_config(const dsn_synth_opts_t *o, dsn_config_t *out)
{
    return syn_config_text(o, NULL, out);
}

int syn_expert_favoured(const dsn_config_t *cfg, int64_t e)
{
    int64_t stride = cfg->n_routed_experts / cfg->num_experts_per_tok;
    return e % stride == 0 && e / stride < cfg->num_experts_per_tok;
}

/* ---- the tensor plan ---- */

static syn_tensor_t *plan_add(syn_plan_t *p, syn_kind_t kind, dsn_st_dtype_t dtype, int64_t rows,
                              int64_t cols, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

static syn_tensor_t *plan_add(syn_plan_t *p, syn_kind_t kind, dsn_st_dtype_t dtype, int64_t rows,
                              int64_t cols, const char *fmt, ...)
{
    if (p->n == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 256;
        syn_tensor_t *t = realloc(p->t, cap * sizeof(*t));
        if (t == NULL)
            return NULL;
        p->t = t;
        p->cap = cap;
    }
    syn_tensor_t *t = &p->t[p->n++];
    memset(t, 0, sizeof(*t));
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->name, sizeof(t->name), fmt, ap);
    va_end(ap);
    t->kind = kind;
    t->dtype = dtype;
    t->n_dims = cols > 0 ? 2 : 1;
    t->rows = rows;
    t->cols = cols;
    t->in_features = cols;
    t->nbytes = (uint64_t)rows * (uint64_t)(cols > 0 ? cols : 1) * dsn_st_dtype_size(dtype);
    return t;
}

/* A projection `<prefix>.weight` [rows, cols] and, for FP8, its scale grid. */
static int plan_proj(syn_plan_t *p, int fp8, int64_t rows, int64_t cols, const char *prefix)
{
    if (!plan_add(p, SYN_PROJ, fp8 ? DSN_ST_F8_E4M3 : DSN_ST_BF16, rows, cols, "%s.weight", prefix))
        return -1;
    if (!fp8)
        return 0;
    int64_t b = DSK_FP8_BLOCK;
    syn_tensor_t *s = plan_add(p, SYN_SCALE, DSN_ST_F32, (rows + b - 1) / b, (cols + b - 1) / b,
                               "%s.weight_scale_inv", prefix);
    if (s == NULL)
        return -1;
    s->in_features = cols;
    return 0;
}

static int plan_mlp(syn_plan_t *p, int fp8, int64_t hidden, int64_t width, const char *prefix)
{
    char name[112];
    snprintf(name, sizeof(name), "%s.gate_proj", prefix);
    if (plan_proj(p, fp8, width, hidden, name))
        return -1;
    snprintf(name, sizeof(name), "%s.up_proj", prefix);
    if (plan_proj(p, fp8, width, hidden, name))
        return -1;
    snprintf(name, sizeof(name), "%s.down_proj", prefix);
    return plan_proj(p, fp8, hidden, width, name);
}

static int plan_layer(syn_plan_t *p, const dsn_config_t *c, int fp8, int L)
{
    char pre[32], name[96];
    int64_t H = c->hidden_size, heads = c->num_attention_heads;
    int64_t qk = dsn_config_qk_head_dim(c);
    snprintf(pre, sizeof(pre), "model.layers.%d", L);
    if (!plan_add(p, SYN_NORM, DSN_ST_BF16, H, 0, "%s.input_layernorm.weight", pre) ||
        !plan_add(p, SYN_NORM, DSN_ST_BF16, H, 0, "%s.post_attention_layernorm.weight", pre))
        return -1;
#define PROJ(rows, cols, sub)                            \
    do {                                                 \
        snprintf(name, sizeof(name), "%s.%s", pre, sub); \
        if (plan_proj(p, fp8, rows, cols, name))         \
            return -1;                                   \
    } while (0)
    if (c->q_lora_rank > 0) {
        PROJ(c->q_lora_rank, H, "self_attn.q_a_proj");
        if (!plan_add(p, SYN_NORM, DSN_ST_BF16, c->q_lora_rank, 0,
                      "%s.self_attn.q_a_layernorm.weight", pre))
            return -1;
        PROJ(heads * qk, c->q_lora_rank, "self_attn.q_b_proj");
    } else {
        PROJ(heads * qk, H, "self_attn.q_proj");
    }
    PROJ(c->kv_lora_rank + c->qk_rope_head_dim, H, "self_attn.kv_a_proj_with_mqa");
    if (!plan_add(p, SYN_NORM, DSN_ST_BF16, c->kv_lora_rank, 0,
                  "%s.self_attn.kv_a_layernorm.weight", pre))
        return -1;
    PROJ(heads * (c->qk_nope_head_dim + c->v_head_dim), c->kv_lora_rank, "self_attn.kv_b_proj");
    PROJ(H, heads * c->v_head_dim, "self_attn.o_proj");
#undef PROJ
    if (!dsn_config_is_moe_layer(c, L)) {
        snprintf(name, sizeof(name), "%s.mlp", pre);
        return plan_mlp(p, fp8, H, c->intermediate_size, name);
    }
    if (!plan_add(p, SYN_GATE, DSN_ST_BF16, c->n_routed_experts, H, "%s.mlp.gate.weight", pre) ||
        !plan_add(p, SYN_BIAS, DSN_ST_F32, c->n_routed_experts, 0,
                  "%s.mlp.gate.e_score_correction_bias", pre))
        return -1;
    for (int e = 0; e < c->n_routed_experts; e++) {
        snprintf(name, sizeof(name), "%s.mlp.experts.%d", pre, e);
        if (plan_mlp(p, fp8, H, c->moe_intermediate_size, name))
            return -1;
    }
    snprintf(name, sizeof(name), "%s.mlp.shared_experts", pre);
    return plan_mlp(p, fp8, H, (int64_t)c->moe_intermediate_size * c->n_shared_experts, name);
}

/* The MTP module as the release stores it after the main layers: one MoE decoder layer (fp8 like
 * the others) plus its embedding copy, enorm, hnorm, eh_proj (bf16) and shared_head. */
static int plan_mtp(syn_plan_t *p, const dsn_config_t *c, int fp8)
{
    int64_t V = c->vocab_size, H = c->hidden_size;
    int L = c->num_hidden_layers;
    dsn_config_t with = *c; /* the layer counted, so that it is a MoE layer */
    with.num_hidden_layers = L + 1;
    char name[64];
    snprintf(name, sizeof(name), "model.layers.%d.eh_proj", L);
    if (!plan_add(p, SYN_EMBED, DSN_ST_BF16, V, H, "model.layers.%d.embed_tokens.weight", L) ||
        !plan_add(p, SYN_NORM, DSN_ST_BF16, H, 0, "model.layers.%d.enorm.weight", L) ||
        !plan_add(p, SYN_NORM, DSN_ST_BF16, H, 0, "model.layers.%d.hnorm.weight", L) ||
        plan_proj(p, 0, H, 2 * H, name) != 0 || plan_layer(p, &with, fp8, L) != 0 ||
        !plan_add(p, SYN_NORM, DSN_ST_BF16, H, 0, "model.layers.%d.shared_head.norm.weight", L) ||
        !plan_add(p, SYN_HEAD, DSN_ST_BF16, V, H, "model.layers.%d.shared_head.head.weight", L))
        return -1;
    return 0;
}

dsi_status_t syn_plan_build(const dsn_config_t *c, int fp8, syn_plan_t *p)
{
    memset(p, 0, sizeof(*p));
    int64_t V = c->vocab_size, H = c->hidden_size;
    int bad = !plan_add(p, SYN_EMBED, DSN_ST_BF16, V, H, "model.embed_tokens.weight");
    for (int L = 0; !bad && L < c->num_hidden_layers; L++)
        bad = plan_layer(p, c, fp8, L) != 0;
    bad = bad || !plan_add(p, SYN_NORM, DSN_ST_BF16, H, 0, "model.norm.weight") ||
          !plan_add(p, SYN_HEAD, DSN_ST_BF16, V, H, "lm_head.weight");
    if (!bad && c->num_nextn_predict_layers > 0)
        bad = plan_mtp(p, c, fp8) != 0;
    if (bad) {
        DSI_ERROR("synth: out of memory planning %zu tensors", p->n);
        syn_plan_free(p);
        return DSI_ERR_NOMEM;
    }
    return DSI_OK;
}

void syn_plan_free(syn_plan_t *p)
{
    free(p->t);
    memset(p, 0, sizeof(*p));
}

dsi_status_t dsn_synth_estimate(const dsn_synth_opts_t *o, uint64_t *bytes, uint64_t *tensors)
{
    dsn_config_t cfg;
    dsi_status_t st = dsn_synth_config(o, &cfg);
    if (st != DSI_OK)
        return st;
    syn_plan_t plan;
    st = syn_plan_build(&cfg, o->fp8, &plan);
    if (st != DSI_OK)
        return st;
    uint64_t total = 0;
    for (size_t i = 0; i < plan.n; i++)
        total += plan.t[i].nbytes;
    if (bytes)
        *bytes = total;
    if (tensors)
        *tensors = plan.n;
    syn_plan_free(&plan);
    return DSI_OK;
}
