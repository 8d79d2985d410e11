/*
 * test_unit_config.c - dsn_config_parse on the fixture configs and on edited copies: accepted
 * variants (q_lora_rank null, rope_scaling absent/null/rope_type, no MTP or quantization fields),
 * the V2-family fixtures' configs (softmax routers) and one rejected edit per rule, each checked
 * for its status and for a log line naming the field.
 */
#include "ckpt_test_helpers.h"
#include "dsn_config.h"

static json_t *base; /* tiny-v3/config.json */

/* Parse `root` dumped to text; return the status and, on success, *out. */
static dsi_status_t parse_json(const json_t *root, dsn_config_t *out, const char **log)
{
    char *text = json_dumps(root, 0);
    capture_begin();
    dsi_status_t st = dsn_config_parse(text, strlen(text), "edited.json", out);
    *log = capture_end();
    free(text);
    return st;
}

/* Apply one edit (set `field` to `value`, or delete it when value is NULL) to a copy of the base
 * config and expect `want` with `needle` in the log. `value` is JSON text; it is consumed. */
static void expect_edit(const char *field, const char *value, dsi_status_t want, const char *needle)
{
    json_t *root = json_deep_copy(base);
    json_t *target = root;
    char key[128];
    snprintf(key, sizeof(key), "%s", field);
    char *dot = strchr(key, '.');
    if (dot != NULL) {
        *dot = '\0';
        target = json_object_get(root, key);
        memmove(key, dot + 1, strlen(dot + 1) + 1);
    }
    if (value == NULL) {
        json_object_del(target, key);
    } else {
        json_error_t err;
        json_t *v = json_loads(value, JSON_DECODE_ANY, &err);
        if (v == NULL) {
            fprintf(stderr, "bad test value %s\n", value);
            exit(1);
        }
        json_object_set_new(target, key, v);
    }
    dsn_config_t cfg;
    memset(&cfg, 0x5a, sizeof(cfg));
    const char *log;
    dsi_status_t st = parse_json(root, &cfg, &log);
    if (st != want)
        fprintf(stderr, "edit %s = %s\n", field, value ? value : "(deleted)");
    DSI_CHECK_INT_EQ(st, want);
    if (needle != NULL)
        CHECK_LOGGED(log, needle);
    if (want != DSI_OK)
        DSI_CHECK_INT_EQ(cfg.hidden_size, 0x5a5a5a5a); /* output untouched on error */
    json_decref(root);
}

static void test_fixture_configs(void)
{
    dsn_config_t c;
    char path[512];
    snprintf(path, sizeof(path), "%s/config.json", dsi_test_fixture("tiny-v3"));
    DSI_CHECK_INT_EQ(dsn_config_load(path, &c), DSI_OK);
    DSI_CHECK_INT_EQ(c.vocab_size, 1024);
    DSI_CHECK_INT_EQ(c.hidden_size, 256);
    DSI_CHECK_INT_EQ(c.intermediate_size, 384);
    DSI_CHECK_INT_EQ(c.moe_intermediate_size, 96);
    DSI_CHECK_INT_EQ(c.num_hidden_layers, 4);
    DSI_CHECK_INT_EQ(c.num_nextn_predict_layers, 0);
    DSI_CHECK_INT_EQ(c.first_k_dense_replace, 1);
    DSI_CHECK_INT_EQ(c.n_routed_experts, 32);
    DSI_CHECK_INT_EQ(c.n_shared_experts, 1);
    DSI_CHECK_INT_EQ(c.num_experts_per_tok, 4);
    DSI_CHECK_INT_EQ(c.n_group, 4);
    DSI_CHECK_INT_EQ(c.topk_group, 2);
    DSI_CHECK_NEAR(c.routed_scaling_factor, 2.5, 0);
    DSI_CHECK_INT_EQ(c.norm_topk_prob, 1);
    DSI_CHECK_INT_EQ(c.num_attention_heads, 4);
    DSI_CHECK_INT_EQ(c.q_lora_rank, 192);
    DSI_CHECK_INT_EQ(c.kv_lora_rank, 64);
    DSI_CHECK_INT_EQ(c.qk_nope_head_dim, 32);
    DSI_CHECK_INT_EQ(c.qk_rope_head_dim, 16);
    DSI_CHECK_INT_EQ(c.v_head_dim, 32);
    DSI_CHECK_NEAR(c.rms_norm_eps, 1e-6, 1e-12);
    DSI_CHECK_NEAR(c.rope_theta, 10000, 0);
    DSI_CHECK_INT_EQ(c.max_position_embeddings, 163840);
    DSI_CHECK_INT_EQ(c.has_yarn, 1);
    DSI_CHECK_NEAR(c.yarn.factor, 40, 0);
    DSI_CHECK_INT_EQ(c.yarn.original_max_pos, 4096);
    DSI_CHECK_NEAR(c.yarn.beta_fast, 32, 0);
    DSI_CHECK_NEAR(c.yarn.beta_slow, 1, 0);
    DSI_CHECK_NEAR(c.yarn.mscale, 1, 0);
    DSI_CHECK_NEAR(c.yarn.mscale_all_dim, 1, 0);
    DSI_CHECK_INT_EQ(c.bos_token_id, 0);
    DSI_CHECK_INT_EQ(c.eos_token_id, 1);
    DSI_CHECK_INT_EQ(c.fp8, 1);
    DSI_CHECK_INT_EQ(dsn_config_is_moe_layer(&c, 0), 0);
    DSI_CHECK_INT_EQ(dsn_config_is_moe_layer(&c, 1), 1);
    DSI_CHECK_INT_EQ(dsn_config_is_moe_layer(&c, 3), 1);
    DSI_CHECK_INT_EQ(dsn_config_is_moe_layer(&c, 4), 0);
    DSI_CHECK_INT_EQ(dsn_config_qk_head_dim(&c), 48);
    dsk_router_cfg_t r = dsn_config_router(&c);
    DSI_CHECK_INT_EQ(r.n_experts, 32);
    DSI_CHECK_INT_EQ(r.n_group, 4);
    DSI_CHECK_INT_EQ(r.topk_group, 2);
    DSI_CHECK_INT_EQ(r.top_k, 4);
    DSI_CHECK_INT_EQ(r.norm_topk, 1);
    DSI_CHECK_NEAR(r.scaling, 2.5, 0);

    snprintf(path, sizeof(path), "%s/config.json", dsi_test_fixture("deepseek-v3-671b"));
    DSI_CHECK_INT_EQ(dsn_config_load(path, &c), DSI_OK);
    DSI_CHECK_INT_EQ(c.num_hidden_layers, 61);
    DSI_CHECK_INT_EQ(c.num_nextn_predict_layers, 1);
    DSI_CHECK_INT_EQ(c.n_routed_experts, 256);
    DSI_CHECK_INT_EQ(c.q_lora_rank, 1536);
    DSI_CHECK_INT_EQ(dsn_config_qk_head_dim(&c), 192);
    DSI_CHECK_INT_EQ(dsn_config_is_moe_layer(&c, 2), 0);
    DSI_CHECK_INT_EQ(dsn_config_is_moe_layer(&c, 3), 1);

    capture_begin();
    DSI_CHECK_INT_EQ(dsn_config_load("/nonexistent/config.json", &c), DSI_ERR_CONFIG);
    CHECK_LOGGED(capture_end(), "/nonexistent/config.json: cannot open");
}

/* The V2-family fixtures: softmax routers, plain or group-limited greedy, no q_lora (V2-Lite). */
static void test_v2_configs(void)
{
    dsn_config_t c;
    char path[512];
    snprintf(path, sizeof(path), "%s/config.json", dsi_test_fixture("v2-lite-tiny"));
    DSI_CHECK_INT_EQ(dsn_config_load(path, &c), DSI_OK);
    DSI_CHECK_INT_EQ(c.scoring_func, DSK_SCORE_SOFTMAX);
    DSI_CHECK_INT_EQ(c.topk_method, DSK_TOPK_GREEDY);
    DSI_CHECK_INT_EQ(c.q_lora_rank, 0);
    DSI_CHECK_INT_EQ(c.norm_topk_prob, 0);
    DSI_CHECK_INT_EQ(c.n_shared_experts, 2);
    DSI_CHECK_INT_EQ(dsn_config_has_router_bias(&c), 0);
    DSI_CHECK_NEAR(c.yarn.mscale, 0.707, 1e-12);
    DSI_CHECK_NEAR(c.yarn.mscale_all_dim, 0.707, 1e-12);
    snprintf(path, sizeof(path), "%s/config.json", dsi_test_fixture("v2-tiny"));
    DSI_CHECK_INT_EQ(dsn_config_load(path, &c), DSI_OK);
    DSI_CHECK_INT_EQ(c.scoring_func, DSK_SCORE_SOFTMAX);
    DSI_CHECK_INT_EQ(c.topk_method, DSK_TOPK_GROUP_LIMITED);
    DSI_CHECK_INT_EQ(c.q_lora_rank, 64);
    DSI_CHECK_NEAR(c.routed_scaling_factor, 16, 0);
    dsk_router_cfg_t r = dsn_config_router(&c);
    DSI_CHECK_INT_EQ(r.scoring, DSK_SCORE_SOFTMAX);
    DSI_CHECK_INT_EQ(r.method, DSK_TOPK_GROUP_LIMITED);
    DSI_CHECK_INT_EQ(r.n_group, 3);
    DSI_CHECK_INT_EQ(r.topk_group, 2);

    /* Edits of a V2 config: what the V2 codes cannot run is refused, naming field and value. */
    json_error_t err;
    json_t *v2 = json_load_file(path, 0, &err);
    DSI_CHECK(v2 != NULL);
    if (v2 == NULL)
        return;
    const char *log;
    json_t *root = json_deep_copy(v2);
    json_object_set_new(root, "norm_topk_prob", json_true());
    DSI_CHECK_INT_EQ(parse_json(root, &c, &log), DSI_ERR_UNSUPPORTED);
    CHECK_LOGGED(log, "field 'norm_topk_prob': true with scoring_func 'softmax' and "
                      "routed_scaling_factor 16 is not supported");
    json_object_set_new(root, "routed_scaling_factor", json_real(1.0));
    DSI_CHECK_INT_EQ(parse_json(root, &c, &log), DSI_OK); /* both codes agree at scaling 1 */
    json_decref(root);
    root = json_deep_copy(v2);
    json_object_set_new(root, "scoring_func", json_string("sigmoid"));
    DSI_CHECK_INT_EQ(parse_json(root, &c, &log), DSI_ERR_UNSUPPORTED);
    CHECK_LOGGED(log, "field 'topk_method': 'group_limited_greedy' with scoring_func 'sigmoid'");
    json_decref(root);
    /* group_limited_greedy: groups of one expert are fine (a group's score is its best) */
    root = json_deep_copy(v2);
    json_object_set_new(root, "n_group", json_integer(12));
    json_object_set_new(root, "topk_group", json_integer(4));
    DSI_CHECK_INT_EQ(parse_json(root, &c, &log), DSI_OK);
    json_object_set_new(root, "n_group", json_integer(5));
    DSI_CHECK_INT_EQ(parse_json(root, &c, &log), DSI_ERR_CONFIG);
    CHECK_LOGGED(log, "field 'n_group': n_routed_experts 12 is not divisible by n_group 5");
    /* greedy ignores the groups (V2-Lite writes n_group 1, others may write anything) */
    json_object_set_new(root, "topk_method", json_string("greedy"));
    DSI_CHECK_INT_EQ(parse_json(root, &c, &log), DSI_OK);
    /* absent router fields of a deepseek_v2 config take the V2 code's defaults */
    json_object_del(root, "topk_method");
    json_object_del(root, "scoring_func");
    DSI_CHECK_INT_EQ(parse_json(root, &c, &log), DSI_OK);
    DSI_CHECK_INT_EQ(c.scoring_func, DSK_SCORE_SOFTMAX);
    DSI_CHECK_INT_EQ(c.topk_method, DSK_TOPK_GREEDY);
    json_decref(root);
    json_decref(v2);
}

static void test_accepted_variants(void)
{
    dsn_config_t c;
    const char *log;
    json_t *root = json_deep_copy(base);
    json_object_set_new(root, "q_lora_rank", json_null());
    json_object_del(root, "rope_scaling");
    json_object_del(root, "num_nextn_predict_layers");
    json_object_del(root, "quantization_config");
    json_object_del(root, "scoring_func");
    json_object_del(root, "topk_method");
    json_object_del(root, "moe_layer_freq");
    DSI_CHECK_INT_EQ(parse_json(root, &c, &log), DSI_OK);
    DSI_CHECK_INT_EQ(c.q_lora_rank, 0);
    DSI_CHECK_INT_EQ(c.has_yarn, 0);
    DSI_CHECK_INT_EQ(c.num_nextn_predict_layers, 0);
    DSI_CHECK_INT_EQ(c.fp8, 0);
    DSI_CHECK_INT_EQ(c.moe_layer_freq, 1);
    json_object_set_new(root, "rope_scaling", json_null());
    DSI_CHECK_INT_EQ(parse_json(root, &c, &log), DSI_OK);
    DSI_CHECK_INT_EQ(c.has_yarn, 0);
    /* Newer HF writes rope_type; optional YaRN fields take HF's defaults. */
    json_object_set_new(root, "rope_scaling",
                        json_pack("{s:s, s:i, s:i}", "rope_type", "yarn", "factor", 4,
                                  "original_max_position_embeddings", 2048));
    DSI_CHECK_INT_EQ(parse_json(root, &c, &log), DSI_OK);
    DSI_CHECK_INT_EQ(c.has_yarn, 1);
    DSI_CHECK_NEAR(c.yarn.factor, 4, 0);
    DSI_CHECK_NEAR(c.yarn.beta_fast, 32, 0);
    DSI_CHECK_NEAR(c.yarn.beta_slow, 1, 0);
    DSI_CHECK_NEAR(c.yarn.mscale, 1, 0);
    DSI_CHECK_NEAR(c.yarn.mscale_all_dim, 0, 0);
    /* Integers are accepted for float fields. */
    json_object_set_new(root, "routed_scaling_factor", json_integer(2));
    DSI_CHECK_INT_EQ(parse_json(root, &c, &log), DSI_OK);
    DSI_CHECK_NEAR(c.routed_scaling_factor, 2, 0);
    json_decref(root);
}

static void test_rejected(void)
{
    const char *text = "{\"hidden_size\": 256,";
    dsn_config_t c;
    capture_begin();
    DSI_CHECK_INT_EQ(dsn_config_parse(text, strlen(text), "broken.json", &c), DSI_ERR_CONFIG);
    CHECK_LOGGED(capture_end(), "broken.json: invalid JSON");
    capture_begin();
    DSI_CHECK_INT_EQ(dsn_config_parse("[]", 2, "arr.json", &c), DSI_ERR_CONFIG);
    CHECK_LOGGED(capture_end(), "arr.json: not a JSON object");

    expect_edit("hidden_size", NULL, DSI_ERR_CONFIG, "edited.json: field 'hidden_size': missing");
    expect_edit("hidden_size", "\"256\"", DSI_ERR_CONFIG, "field 'hidden_size': not an integer");
    expect_edit("hidden_size", "256.0", DSI_ERR_CONFIG, "field 'hidden_size': not an integer");
    expect_edit("hidden_size", "0", DSI_ERR_CONFIG, "field 'hidden_size': 0 is outside");
    expect_edit("vocab_size", "-5", DSI_ERR_CONFIG, "field 'vocab_size'");
    expect_edit("num_hidden_layers", "99999999999", DSI_ERR_CONFIG, "'num_hidden_layers'");
    expect_edit("q_lora_rank", "\"big\"", DSI_ERR_CONFIG, "field 'q_lora_rank'");
    expect_edit("n_routed_experts", "30", DSI_ERR_CONFIG,
                "field 'n_group': n_routed_experts 30 is not divisible by n_group 4");
    expect_edit("n_group", "32", DSI_ERR_CONFIG, "field 'n_group': groups of 1 expert");
    expect_edit("topk_group", "5", DSI_ERR_CONFIG, "field 'topk_group': 5 is greater than n_group");
    expect_edit("num_experts_per_tok", "33", DSI_ERR_CONFIG, "field 'num_experts_per_tok'");
    expect_edit("num_experts_per_tok", "20", DSI_ERR_CONFIG,
                "field 'num_experts_per_tok': 20 is more than the 16 experts of the kept groups");
    expect_edit("first_k_dense_replace", "5", DSI_ERR_CONFIG,
                "field 'first_k_dense_replace': 5 is greater than num_hidden_layers 4");
    expect_edit("qk_rope_head_dim", "15", DSI_ERR_CONFIG, "field 'qk_rope_head_dim'");
    expect_edit("rms_norm_eps", "\"tiny\"", DSI_ERR_CONFIG, "field 'rms_norm_eps': not a number");
    expect_edit("norm_topk_prob", "1", DSI_ERR_CONFIG, "field 'norm_topk_prob': not a boolean");
    expect_edit("eos_token_id", "1024", DSI_ERR_CONFIG, "field 'eos_token_id'");
    expect_edit("scoring_func", "\"sparsemax\"", DSI_ERR_UNSUPPORTED,
                "field 'scoring_func': 'sparsemax' is not supported (only 'sigmoid', 'softmax')");
    expect_edit("scoring_func", "\"softmax\"", DSI_ERR_UNSUPPORTED,
                "field 'topk_method': 'noaux_tc' with scoring_func 'softmax' is not supported");
    expect_edit("topk_method", "\"greedy\"", DSI_ERR_UNSUPPORTED,
                "field 'topk_method': 'greedy' with scoring_func 'sigmoid' is not supported");
    expect_edit("topk_method", "\"gready\"", DSI_ERR_UNSUPPORTED,
                "field 'topk_method': 'gready' is not supported");
    expect_edit("hidden_act", "\"gelu\"", DSI_ERR_UNSUPPORTED, "field 'hidden_act'");
    expect_edit("tie_word_embeddings", "true", DSI_ERR_UNSUPPORTED, "'tie_word_embeddings'");
    expect_edit("attention_bias", "true", DSI_ERR_UNSUPPORTED,
                "field 'attention_bias': true is not supported");
    expect_edit("rope_scaling", "[]", DSI_ERR_CONFIG, "field 'rope_scaling'");
    expect_edit("rope_scaling.type", "\"linear\"", DSI_ERR_UNSUPPORTED,
                "field 'rope_scaling.type': 'linear' is not supported");
    expect_edit("rope_scaling.factor", NULL, DSI_ERR_CONFIG,
                "field 'rope_scaling.factor': missing");
    expect_edit("rope_scaling.factor", "0.5", DSI_ERR_CONFIG, "field 'rope_scaling.factor'");
    expect_edit("rope_scaling.original_max_position_embeddings", "4096.5", DSI_ERR_CONFIG,
                "'rope_scaling.original_max_position_embeddings': not an integer");
    expect_edit("quantization_config.quant_method", "\"int4\"", DSI_ERR_UNSUPPORTED,
                "field 'quantization_config.quant_method'");
    expect_edit("quantization_config.weight_block_size", "[64, 64]", DSI_ERR_UNSUPPORTED,
                "field 'quantization_config.weight_block_size'");
}

int main(void)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/config.json", dsi_test_fixture("tiny-v3"));
    json_error_t err;
    base = json_load_file(path, 0, &err);
    DSI_CHECK(base != NULL);
    if (base == NULL)
        return dsi_test_finish();
    test_fixture_configs();
    test_accepted_variants();
    test_v2_configs();
    test_rejected();
    json_decref(base);
    return dsi_test_finish();
}
