/*
 * dsn_config.c - config.json of DeepSeek-V3 / R1 and of the V2 family into dsn_config_t.
 *
 * Strict about types (an integer field must be a JSON integer; float fields accept integers, as
 * the release writes "factor": 40), lenient only where Hugging Face has documented defaults for
 * absent fields. Every range and cross-field rule the engine relies on is checked here, so later
 * code may trust the struct.
 */
#include "dsn_config.h"

#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dsi_log.h"

/* Caps keep every product of two widths inside int64 and every width inside int. */
#define CFG_MAX_WIDTH  (1 << 20)
#define CFG_MAX_VOCAB  (1 << 24)
#define CFG_MAX_LAYERS 4096

typedef struct {
    const char *origin;
    const json_t *obj;
    const char *prefix; /* "" or "rope_scaling." for nested fields */
    dsi_status_t status;
} reader_t;

static void fail(reader_t *r, dsi_status_t st, const char *field, const char *why)
{
    if (r->status == DSI_OK) {
        DSI_ERROR("%s: field '%s%s': %s", r->origin, r->prefix, field, why);
        r->status = st;
    }
}

/* An integer field in [min, max]; `def` is used when absent unless `required`. */
static int read_int(reader_t *r, const char *field, int required, long long def, long long min,
                    long long max)
{
    const json_t *v = json_object_get(r->obj, field);
    if (v == NULL) {
        if (required)
            fail(r, DSI_ERR_CONFIG, field, "missing");
        return (int)def;
    }
    if (!json_is_integer(v)) {
        fail(r, DSI_ERR_CONFIG, field, "not an integer");
        return (int)def;
    }
    long long x = json_integer_value(v);
    if (x < min || x > max) {
        char why[128];
        snprintf(why, sizeof(why), "%lld is outside [%lld, %lld]", x, min, max);
        fail(r, DSI_ERR_CONFIG, field, why);
        return (int)def;
    }
    return (int)x;
}

/* A finite number (integer or real) in [min, max]. */
static double read_num(reader_t *r, const char *field, int required, double def, double min,
                       double max)
{
    const json_t *v = json_object_get(r->obj, field);
    if (v == NULL) {
        if (required)
            fail(r, DSI_ERR_CONFIG, field, "missing");
        return def;
    }
    if (!json_is_number(v)) {
        fail(r, DSI_ERR_CONFIG, field, "not a number");
        return def;
    }
    double x = json_number_value(v);
    if (!isfinite(x) || x < min || x > max) {
        char why[128];
        snprintf(why, sizeof(why), "%g is outside [%g, %g]", x, min, max);
        fail(r, DSI_ERR_CONFIG, field, why);
        return def;
    }
    return x;
}

static int read_bool(reader_t *r, const char *field, int def)
{
    const json_t *v = json_object_get(r->obj, field);
    if (v == NULL)
        return def;
    if (!json_is_boolean(v)) {
        fail(r, DSI_ERR_CONFIG, field, "not a boolean");
        return def;
    }
    return json_is_true(v);
}

/* A string field that must equal `want` when present (absent means the HF default, `want`). */
static void expect_string(reader_t *r, const char *field, const char *want)
{
    const json_t *v = json_object_get(r->obj, field);
    if (v == NULL)
        return;
    if (!json_is_string(v)) {
        fail(r, DSI_ERR_CONFIG, field, "not a string");
        return;
    }
    if (strcmp(json_string_value(v), want) != 0) {
        char why[160];
        snprintf(why, sizeof(why), "'%.64s' is not supported (only '%s')", json_string_value(v),
                 want);
        fail(r, DSI_ERR_UNSUPPORTED, field, why);
    }
}

static const char *const scoring_names[] = {"sigmoid", "softmax"};
static const char *const topk_method_names[] = {"noaux_tc", "greedy", "group_limited_greedy"};

/* A string field that must be one of names[0..n) when present; returns its index (def if absent).
 */
static int read_choice(reader_t *r, const char *field, const char *const *names, int n, int def)
{
    const json_t *v = json_object_get(r->obj, field);
    if (v == NULL)
        return def;
    if (!json_is_string(v)) {
        fail(r, DSI_ERR_CONFIG, field, "not a string");
        return def;
    }
    for (int i = 0; i < n; i++)
        if (strcmp(json_string_value(v), names[i]) == 0)
            return i;
    char why[256], list[120] = ""; /* why: 28 + 64 + 119 bytes at most */
    for (int i = 0; i < n; i++)
        snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s'%s'", i ? ", " : "",
                 names[i]);
    snprintf(why, sizeof(why), "'%.64s' is not supported (only %s)", json_string_value(v), list);
    fail(r, DSI_ERR_UNSUPPORTED, field, why);
    return def;
}

/*
 * The router fields together. V3 routes with sigmoid scores and noaux_tc; the V2 family with
 * softmax scores and greedy or group_limited_greedy (the two codes support nothing else).
 * Softmax with norm_topk_prob true is refused unless routed_scaling_factor is 1: DeepSeek's V2
 * code then skips the scaling and Hugging Face's applies it, so no one answer is right.
 */
static void read_router(reader_t *r, dsn_config_t *c)
{
    /* Absent fields take each family's code default, chosen by model_type. */
    const json_t *mt = json_object_get(r->obj, "model_type");
    int v2 = json_is_string(mt) && strcmp(json_string_value(mt), "deepseek_v2") == 0;
    c->scoring_func = (dsk_score_t)read_choice(r, "scoring_func", scoring_names, 2,
                                               v2 ? DSK_SCORE_SOFTMAX : DSK_SCORE_SIGMOID);
    c->topk_method = (dsk_topk_method_t)read_choice(r, "topk_method", topk_method_names, 3,
                                                    v2 ? DSK_TOPK_GREEDY : DSK_TOPK_NOAUX_TC);
    if (r->status != DSI_OK)
        return;
    char why[200];
    if (c->scoring_func == DSK_SCORE_SIGMOID && c->topk_method != DSK_TOPK_NOAUX_TC) {
        snprintf(why, sizeof(why),
                 "'%s' with scoring_func 'sigmoid' is not supported (only "
                 "'noaux_tc')",
                 topk_method_names[c->topk_method]);
        fail(r, DSI_ERR_UNSUPPORTED, "topk_method", why);
    } else if (c->scoring_func == DSK_SCORE_SOFTMAX && c->topk_method == DSK_TOPK_NOAUX_TC) {
        fail(r, DSI_ERR_UNSUPPORTED, "topk_method",
             "'noaux_tc' with scoring_func 'softmax' is not supported (only 'greedy' or "
             "'group_limited_greedy')");
    } else if (c->scoring_func == DSK_SCORE_SOFTMAX && c->norm_topk_prob &&
               c->routed_scaling_factor != 1.0f) {
        snprintf(why, sizeof(why),
                 "true with scoring_func 'softmax' and routed_scaling_factor %g "
                 "is not supported (the reference codes disagree on it)",
                 (double)c->routed_scaling_factor);
        fail(r, DSI_ERR_UNSUPPORTED, "norm_topk_prob", why);
    }
}

static void read_rope_scaling(reader_t *top, dsn_config_t *c)
{
    const json_t *rs = json_object_get(top->obj, "rope_scaling");
    c->has_yarn = 0;
    memset(&c->yarn, 0, sizeof(c->yarn));
    if (rs == NULL || json_is_null(rs))
        return;
    if (!json_is_object(rs)) {
        fail(top, DSI_ERR_CONFIG, "rope_scaling", "neither null nor an object");
        return;
    }
    reader_t r = {top->origin, rs, "rope_scaling.", DSI_OK};
    const json_t *type = json_object_get(rs, "type");
    const char *type_field = "type";
    if (type == NULL) {
        type = json_object_get(rs, "rope_type");
        type_field = "rope_type";
    }
    if (type == NULL) {
        fail(&r, DSI_ERR_CONFIG, "type", "missing (neither 'type' nor 'rope_type')");
    } else {
        expect_string(&r, type_field, "yarn");
    }
    c->yarn.factor = read_num(&r, "factor", 1, 1, 1, 1e6);
    c->yarn.original_max_pos = read_int(&r, "original_max_position_embeddings", 1, 0, 1, INT32_MAX);
    c->yarn.beta_fast = read_num(&r, "beta_fast", 0, 32, 1e-6, 1e6);
    c->yarn.beta_slow = read_num(&r, "beta_slow", 0, 1, 1e-6, 1e6);
    c->yarn.mscale = read_num(&r, "mscale", 0, 1, 0, 1e6);
    c->yarn.mscale_all_dim = read_num(&r, "mscale_all_dim", 0, 0, 0, 1e6);
    if (r.status == DSI_OK && c->yarn.beta_slow > c->yarn.beta_fast)
        fail(&r, DSI_ERR_CONFIG, "beta_slow", "greater than beta_fast");
    if (r.status != DSI_OK) {
        top->status = r.status;
        return;
    }
    c->has_yarn = 1;
}

static void read_quantization(reader_t *top, dsn_config_t *c)
{
    const json_t *q = json_object_get(top->obj, "quantization_config");
    c->fp8 = 0;
    if (q == NULL || json_is_null(q))
        return;
    if (!json_is_object(q)) {
        fail(top, DSI_ERR_CONFIG, "quantization_config", "neither null nor an object");
        return;
    }
    reader_t r = {top->origin, q, "quantization_config.", DSI_OK};
    if (!json_is_string(json_object_get(q, "quant_method")))
        fail(&r, DSI_ERR_CONFIG, "quant_method", "missing or not a string");
    expect_string(&r, "quant_method", "fp8");
    expect_string(&r, "fmt", "e4m3");
    const json_t *bs = json_object_get(q, "weight_block_size");
    if (bs != NULL &&
        (!json_is_array(bs) || json_array_size(bs) != 2 ||
         !json_is_integer(json_array_get(bs, 0)) || !json_is_integer(json_array_get(bs, 1)) ||
         json_integer_value(json_array_get(bs, 0)) != DSK_FP8_BLOCK ||
         json_integer_value(json_array_get(bs, 1)) != DSK_FP8_BLOCK))
        fail(&r, DSI_ERR_UNSUPPORTED, "weight_block_size", "only [128, 128] is supported");
    if (r.status != DSI_OK) {
        top->status = r.status;
        return;
    }
    c->fp8 = 1;
}

/* Cross-field rules, checked once every field has parsed. */
static void check_consistency(reader_t *r, const dsn_config_t *c)
{
    char why[160];
    if (c->topk_method == DSK_TOPK_GREEDY) {
        /* Plain top-k ignores n_group and topk_group. */
    } else if (c->n_routed_experts % c->n_group != 0) {
        snprintf(why, sizeof(why), "n_routed_experts %d is not divisible by n_group %d",
                 c->n_routed_experts, c->n_group);
        fail(r, DSI_ERR_CONFIG, "n_group", why);
    } else if (c->topk_method == DSK_TOPK_NOAUX_TC && c->n_routed_experts / c->n_group < 2) {
        snprintf(why, sizeof(why), "groups of %d expert(s): group scores need at least 2",
                 c->n_routed_experts / c->n_group);
        fail(r, DSI_ERR_CONFIG, "n_group", why);
    }
    if (c->topk_method != DSK_TOPK_GREEDY && c->topk_group > c->n_group) {
        snprintf(why, sizeof(why), "%d is greater than n_group %d", c->topk_group, c->n_group);
        fail(r, DSI_ERR_CONFIG, "topk_group", why);
    }
    if (c->num_experts_per_tok > c->n_routed_experts) {
        snprintf(why, sizeof(why), "%d is greater than n_routed_experts %d", c->num_experts_per_tok,
                 c->n_routed_experts);
        fail(r, DSI_ERR_CONFIG, "num_experts_per_tok", why);
    }
    if (c->topk_method != DSK_TOPK_GREEDY && c->n_group > 0 && c->topk_group > 0 &&
        c->num_experts_per_tok > c->topk_group * (c->n_routed_experts / c->n_group)) {
        snprintf(why, sizeof(why), "%d is more than the %d experts of the kept groups",
                 c->num_experts_per_tok, c->topk_group * (c->n_routed_experts / c->n_group));
        fail(r, DSI_ERR_CONFIG, "num_experts_per_tok", why);
    }
    if (c->first_k_dense_replace > c->num_hidden_layers) {
        snprintf(why, sizeof(why), "%d is greater than num_hidden_layers %d",
                 c->first_k_dense_replace, c->num_hidden_layers);
        fail(r, DSI_ERR_CONFIG, "first_k_dense_replace", why);
    }
    if (c->qk_rope_head_dim % 2 != 0)
        fail(r, DSI_ERR_CONFIG, "qk_rope_head_dim", "must be even (RoPE rotates pairs)");
}

static void read_fields(reader_t *r, dsn_config_t *c)
{
    c->vocab_size = read_int(r, "vocab_size", 1, 0, 1, CFG_MAX_VOCAB);
    c->hidden_size = read_int(r, "hidden_size", 1, 0, 1, CFG_MAX_WIDTH);
    c->intermediate_size = read_int(r, "intermediate_size", 1, 0, 1, CFG_MAX_WIDTH);
    c->moe_intermediate_size = read_int(r, "moe_intermediate_size", 1, 0, 1, CFG_MAX_WIDTH);
    c->num_hidden_layers = read_int(r, "num_hidden_layers", 1, 0, 1, CFG_MAX_LAYERS);
    c->num_nextn_predict_layers = read_int(r, "num_nextn_predict_layers", 0, 0, 0, CFG_MAX_LAYERS);
    c->first_k_dense_replace = read_int(r, "first_k_dense_replace", 1, 0, 0, CFG_MAX_LAYERS);
    c->moe_layer_freq = read_int(r, "moe_layer_freq", 0, 1, 1, CFG_MAX_LAYERS);
    c->n_routed_experts = read_int(r, "n_routed_experts", 1, 0, 1, DSK_ROUTER_MAX_EXPERTS);
    c->n_shared_experts = read_int(r, "n_shared_experts", 1, 0, 0, 64);
    c->num_experts_per_tok = read_int(r, "num_experts_per_tok", 1, 0, 1, DSK_ROUTER_MAX_TOPK);
    c->n_group = read_int(r, "n_group", 1, 0, 1, DSK_ROUTER_MAX_EXPERTS);
    c->topk_group = read_int(r, "topk_group", 1, 0, 1, DSK_ROUTER_MAX_EXPERTS);
    c->routed_scaling_factor = (float)read_num(r, "routed_scaling_factor", 1, 1, 1e-6, 1e6);
    c->norm_topk_prob = read_bool(r, "norm_topk_prob", 0);
    c->num_attention_heads = read_int(r, "num_attention_heads", 1, 0, 1, 4096);
    const json_t *qlr = json_object_get(r->obj, "q_lora_rank");
    if (qlr != NULL && json_is_null(qlr))
        c->q_lora_rank = 0;
    else
        c->q_lora_rank = read_int(r, "q_lora_rank", 1, 0, 1, CFG_MAX_WIDTH);
    c->kv_lora_rank = read_int(r, "kv_lora_rank", 1, 0, 1, CFG_MAX_WIDTH);
    c->qk_nope_head_dim = read_int(r, "qk_nope_head_dim", 1, 0, 1, 4096);
    c->qk_rope_head_dim = read_int(r, "qk_rope_head_dim", 1, 0, 2, 4096);
    c->v_head_dim = read_int(r, "v_head_dim", 1, 0, 1, 4096);
    c->rms_norm_eps = (float)read_num(r, "rms_norm_eps", 1, 1e-6, 1e-30, 1);
    c->rope_theta = read_num(r, "rope_theta", 0, 10000, 1, 1e12);
    c->max_position_embeddings = read_int(r, "max_position_embeddings", 1, 0, 1, INT32_MAX);
    c->bos_token_id = read_int(r, "bos_token_id", 0, 0, 0, CFG_MAX_VOCAB - 1);
    c->eos_token_id = read_int(r, "eos_token_id", 0, 1, 0, CFG_MAX_VOCAB - 1);
    read_router(r, c);
    expect_string(r, "hidden_act", "silu");
    if (read_bool(r, "tie_word_embeddings", 0))
        fail(r, DSI_ERR_UNSUPPORTED, "tie_word_embeddings", "true is not supported");
    if (read_bool(r, "attention_bias", 0)) /* the projections would have bias vectors */
        fail(r, DSI_ERR_UNSUPPORTED, "attention_bias", "true is not supported");
    read_rope_scaling(r, c);
    read_quantization(r, c);
    if (r->status == DSI_OK && c->bos_token_id >= c->vocab_size)
        fail(r, DSI_ERR_CONFIG, "bos_token_id", "not below vocab_size");
    if (r->status == DSI_OK && c->eos_token_id >= c->vocab_size)
        fail(r, DSI_ERR_CONFIG, "eos_token_id", "not below vocab_size");
    if (r->status == DSI_OK)
        check_consistency(r, c);
    if (r->status == DSI_OK && c->topk_method == DSK_TOPK_GREEDY) {
        /* Plain top-k has no groups: hold it as one group, so that whatever reads the grouping
         * (the router table, expert placement) sees a consistent one. */
        c->n_group = 1;
        c->topk_group = 1;
    }
}

dsi_status_t dsn_config_parse(const char *text, size_t len, const char *origin, dsn_config_t *out)
{
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        DSI_ERROR("%s: invalid JSON at line %d column %d: %s", origin, jerr.line, jerr.column,
                  jerr.text);
        return DSI_ERR_CONFIG;
    }
    dsn_config_t c;
    memset(&c, 0, sizeof(c));
    reader_t r = {origin, root, "", DSI_OK};
    if (!json_is_object(root)) {
        DSI_ERROR("%s: not a JSON object", origin);
        r.status = DSI_ERR_CONFIG;
    } else {
        read_fields(&r, &c);
    }
    json_decref(root);
    if (r.status == DSI_OK)
        *out = c;
    return r.status;
}

dsi_status_t dsn_config_load(const char *path, dsn_config_t *out)
{
    /* O_NONBLOCK: a FIFO must not hang the open; it is refused as not a regular file. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0) {
        DSI_ERROR("%s: cannot open: %m", path);
        if (fd >= 0)
            close(fd);
        return DSI_ERR_CONFIG;
    }
    if (!S_ISREG(sb.st_mode)) {
        DSI_ERROR("%s: not a regular file", path);
        close(fd);
        return DSI_ERR_CONFIG;
    }
    FILE *fp = fdopen(fd, "rb");
    if (fp == NULL) {
        DSI_ERROR("%s: cannot open: %m", path);
        close(fd);
        return DSI_ERR_CONFIG;
    }
    /* A config is a few KB; anything over 16 MB is not one. */
    enum { MAX_CONFIG = 16 << 20 };
    char *buf = malloc(MAX_CONFIG + 1);
    dsi_status_t st = DSI_ERR_CONFIG;
    if (buf == NULL) {
        DSI_ERROR("%s: out of memory", path);
        st = DSI_ERR_NOMEM;
        goto out_fp;
    }
    size_t n = fread(buf, 1, MAX_CONFIG + 1, fp);
    if (ferror(fp)) {
        DSI_ERROR("%s: read error: %m", path);
        goto out_buf;
    }
    if (n > MAX_CONFIG) {
        DSI_ERROR("%s: larger than %d bytes: not a config", path, MAX_CONFIG);
        goto out_buf;
    }
    st = dsn_config_parse(buf, n, path, out);
out_buf:
    free(buf);
out_fp:
    fclose(fp);
    return st;
}

int dsn_config_is_moe_layer(const dsn_config_t *cfg, int layer)
{
    return layer >= cfg->first_k_dense_replace && layer < cfg->num_hidden_layers &&
           layer % cfg->moe_layer_freq == 0;
}

int dsn_config_qk_head_dim(const dsn_config_t *cfg)
{
    return cfg->qk_nope_head_dim + cfg->qk_rope_head_dim;
}

int dsn_config_has_router_bias(const dsn_config_t *cfg)
{
    return cfg->topk_method == DSK_TOPK_NOAUX_TC;
}

const char *dsn_config_scoring_name(dsk_score_t s)
{
    return (unsigned)s < 2 ? scoring_names[s] : "?";
}

const char *dsn_config_topk_method_name(dsk_topk_method_t m)
{
    return (unsigned)m < 3 ? topk_method_names[m] : "?";
}

dsk_router_cfg_t dsn_config_router(const dsn_config_t *cfg)
{
    dsk_router_cfg_t rc = {
        .n_experts = cfg->n_routed_experts,
        .n_group = cfg->n_group,
        .topk_group = cfg->topk_group,
        .top_k = cfg->num_experts_per_tok,
        .norm_topk = cfg->norm_topk_prob,
        .scaling = cfg->routed_scaling_factor,
        .scoring = cfg->scoring_func,
        .method = cfg->topk_method,
    };
    return rc;
}
