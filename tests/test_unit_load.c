/*
 * Expert-load statistics and router biases: the sliding window, the imbalance figure of a plan
 * (checked by hand and against the planner's own estimate), EPLB placement lowering it, the
 * aux-loss-free bias rule and drift, the biases read from a checkpoint, and the BIAS / ADMIN
 * messages' rules and proof.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dsc_bias.h"
#include "dsc_load.h"
#include "dsc_planner.h"
#include "dsi_test.h"
#include "dsn_checkpoint.h"
#include "dst_msg_admin.h"

static void test_window(void)
{
    dsc_load_t *w;
    DSI_CHECK_INT_EQ(dsc_load_create(0, 4, 3, &w), DSI_ERR_INVALID_ARG);
    DSI_CHECK_INT_EQ(dsc_load_create(2, 4, 0, &w), DSI_ERR_INVALID_ARG);
    DSI_CHECK_INT_EQ(dsc_load_create(2, 4, 3, &w), DSI_OK);
    uint32_t a[8] = {1, 2, 3, 4, 5, 6, 7, 8}, one[4] = {10, 0, 0, 0};
    DSI_CHECK_INT_EQ(dsc_load_add(w, 0, 2, 4, a), 0);
    DSI_CHECK_INT_EQ(dsc_load_add(w, 1, 1, 4, one), 0); /* layer 1 only */
    /* Rows that do not fit are refused whole. */
    DSI_CHECK_INT_EQ(dsc_load_add(w, 1, 2, 4, a), -1);
    DSI_CHECK_INT_EQ(dsc_load_add(w, 0, 1, 5, a), -1);
    DSI_CHECK_INT_EQ(dsc_load_add(w, 3, 0, 4, a), -1);
    DSI_CHECK_INT_EQ(dsc_load_total(w), 46);
    DSI_CHECK_INT_EQ(dsc_load_counts(w)[4], 15);
    DSI_CHECK_INT_EQ(dsc_load_last(w)[4], 0); /* nothing closed yet */
    dsc_load_rotate(w);
    DSI_CHECK_INT_EQ(dsc_load_last(w)[4], 15);
    DSI_CHECK_INT_EQ(dsc_load_add(w, 0, 1, 4, one), 0);
    DSI_CHECK_INT_EQ(dsc_load_total(w), 56);
    dsc_load_rotate(w);
    DSI_CHECK_INT_EQ(dsc_load_last(w)[0], 10);
    DSI_CHECK_INT_EQ(dsc_load_last(w)[4], 0);
    /* Three windows: the first leaves at the third rotation. */
    dsc_load_rotate(w);
    DSI_CHECK_INT_EQ(dsc_load_total(w), 10);
    DSI_CHECK_INT_EQ(dsc_load_counts(w)[0], 10);
    DSI_CHECK_INT_EQ(dsc_load_counts(w)[4], 0);
    dsc_load_rotate(w);
    DSI_CHECK_INT_EQ(dsc_load_total(w), 0);
    DSI_CHECK_INT_EQ(dsc_load_add(w, 0, 2, 4, a), 0);
    dsc_load_clear(w);
    DSI_CHECK_INT_EQ(dsc_load_total(w), 0);
    DSI_CHECK_INT_EQ(dsc_load_counts(w)[7], 0);
    dsc_load_destroy(w);
    /* One window: the sums are the open window only. */
    DSI_CHECK_INT_EQ(dsc_load_create(1, 4, 1, &w), DSI_OK);
    DSI_CHECK_INT_EQ(dsc_load_add(w, 0, 1, 4, one), 0);
    dsc_load_rotate(w);
    DSI_CHECK_INT_EQ(dsc_load_total(w), 0);
    DSI_CHECK_INT_EQ(dsc_load_last(w)[0], 10);
    dsc_load_destroy(w);
}

/* 3 layers (layer 0 dense), 4 experts; stage 0 = layers 0-1 on nodes 5, 6, 7; stage 1 = layer 2
 * on node 8. Layer 1: e0 {5}, e1 {6}, e2 {7}, e3 {5, 6}; layer 2: every expert on 8. */
static dst_plan_stage_t stages[2] = {{0, 2}, {2, 3}};
static dst_plan_node_t nodes[4] = {{5, 0, 1, 1}, {6, 0, 1, 1}, {7, 0, 1, 1}, {8, 1, 1, 1}};
static uint32_t offsets[9] = {0, 1, 2, 3, 5, 6, 7, 8, 9};
static uint32_t holders[9] = {5, 6, 7, 5, 6, 8, 8, 8, 8};

static void test_imbalance(void)
{
    dst_plan_t p = {.epoch = 1,
                    .n_layers = 3,
                    .first_moe_layer = 1,
                    .n_experts = 4,
                    .n_stages = 2,
                    .stages = stages,
                    .n_nodes = 4,
                    .nodes = nodes,
                    .expert_offsets = offsets,
                    .expert_holders = holders};
    uint64_t counts[8] = {100, 0, 50, 50, 3, 0, 0, 9};
    /* node 5: 100 + 25, node 6: 25, node 7: 50; mean 200 / 3. */
    DSI_CHECK_NEAR(dsc_load_layer_imbalance(&p, 0, counts), 125.0 / (200.0 / 3), 1e-12);
    /* A stage of one node is always balanced. */
    DSI_CHECK_NEAR(dsc_load_layer_imbalance(&p, 1, counts + 4), 1.0, 1e-12);
    double per[2];
    DSI_CHECK_NEAR(dsc_load_imbalance(&p, counts, per), (1.875 + 1.0) / 2, 1e-12);
    DSI_CHECK_NEAR(per[0], 1.875, 1e-12);
    /* Layers without counts are "no data" (0) and left out of the mean. */
    uint64_t only_first[8] = {0, 0, 0, 8, 0, 0, 0, 0};
    DSI_CHECK_NEAR(dsc_load_imbalance(&p, only_first, per), 4.0 / (8.0 / 3), 1e-12);
    DSI_CHECK_NEAR(per[1], 0, 0);
    uint64_t none[8] = {0};
    DSI_CHECK_NEAR(dsc_load_imbalance(&p, none, NULL), 0, 0);
    /* Even load over every node of the stage. */
    uint64_t even[8] = {10, 10, 20, 20, 1, 1, 1, 1};
    DSI_CHECK_NEAR(dsc_load_layer_imbalance(&p, 0, even), 1.0, 1e-12);
}

/* The tiny model's shape: EPLB placement of a skewed load beats the contiguous one, and our
 * figure agrees with the planner's own estimate. */
static void test_eplb_plan(void)
{
    dsn_config_t cfg;
    char path[4200];
    snprintf(path, sizeof(path), "%s/config.json", dsi_test_fixture("tiny-v3"));
    DSI_CHECK_INT_EQ(dsn_config_load(path, &cfg), DSI_OK);
    uint32_t M = (uint32_t)(cfg.num_hidden_layers - cfg.first_k_dense_replace),
             E = (uint32_t)cfg.n_routed_experts;
    uint64_t *load = calloc((size_t)M * E, sizeof(uint64_t));
    for (uint32_t l = 0; l < M; l++) {
        for (uint32_t e = 0; e < E; e++)
            load[l * E + e] = e % 8 == 0 ? 1000 : 10 + e; /* one hot expert per group of 8 */
    }
    dsc_node_desc_t descs[3] = {
        {0, 4ull << 30, 1, NULL}, {1, 4ull << 30, 1, NULL}, {2, 4ull << 30, 1, NULL}};
    dsc_plan_opts_t po;
    dsc_plan_opts_default(&po);
    po.n_stages = 1;
    po.kv_tokens = 4096;
    po.overhead = 64ull << 20;
    dst_plan_t plain, eplb;
    dsc_plan_report_t rp, re;
    DSI_CHECK_INT_EQ(dsc_planner_plan(&cfg, descs, 3, &po, &plain, &rp), DSI_OK);
    po.load = load;
    po.redundant_experts = E / 8;
    DSI_CHECK_INT_EQ(dsc_planner_plan(&cfg, descs, 3, &po, &eplb, &re), DSI_OK);
    double before = dsc_load_imbalance(&plain, load, NULL),
           after = dsc_load_imbalance(&eplb, load, NULL);
    fprintf(stderr,
            "tiny-v3, 3 nodes, 4 hot experts per layer: imbalance %.3f -> %.3f with %u "
            "replicas per layer\n",
            before, after, E / 8);
    DSI_CHECK(before > 1.3);
    DSI_CHECK(after < before);
    DSI_CHECK(after < 1.1);
    DSI_CHECK_NEAR(after, re.load_imbalance, 1e-9);
    DSI_CHECK_INT_EQ(re.replicas, (uint64_t)M * (E / 8));
    dsc_plan_cleanup(&plain);
    dsc_plan_cleanup(&eplb);
    free(load);
}

static void test_bias_rule(void)
{
    float b[4] = {0, 0, 0, 0};
    uint64_t load[4] = {10, 0, 5, 5}; /* mean 5 */
    DSI_CHECK_INT_EQ(dsc_bias_rule(b, load, 4, 0.25f), 1);
    DSI_CHECK_NEAR(b[0], -0.25, 0);
    DSI_CHECK_NEAR(b[1], 0.25, 0);
    DSI_CHECK_NEAR(b[2], 0, 0);
    DSI_CHECK_NEAR(b[3], 0, 0);
    uint64_t zero[4] = {0};
    DSI_CHECK_INT_EQ(dsc_bias_rule(b, zero, 4, 0.25f), 0);
    uint64_t even[4] = {7, 7, 7, 7};
    DSI_CHECK_INT_EQ(dsc_bias_rule(b, even, 4, 0.25f), 0);
    DSI_CHECK_INT_EQ(dsc_bias_rule(b, load, 4, 0), 0);
    /* A mean that is not an integer: 3 loads of 1, 1, 2 (mean 4/3). */
    float c[3] = {1, 1, 1};
    uint64_t odd[3] = {1, 1, 2};
    dsc_bias_rule(c, odd, 3, 0.5f);
    DSI_CHECK_NEAR(c[0], 1.5, 0);
    DSI_CHECK_NEAR(c[2], 0.5, 0);

    float b0[8] = {0.1f, 0.2f, 0.3f, 0.4f, 1, 1, 1, 1};
    dsc_bias_t *t;
    DSI_CHECK_INT_EQ(dsc_bias_create(1, 0, 4, b0, &t), DSI_ERR_INVALID_ARG);
    DSI_CHECK_INT_EQ(dsc_bias_create(1, 2, 4, b0, &t), DSI_OK);
    uint64_t counts[8] = {10, 0, 5, 5, 0, 0, 0, 0}; /* layer 2 without data */
    uint8_t changed[2];
    DSI_CHECK_INT_EQ(dsc_bias_update(t, counts, 0.01f, changed), 1);
    DSI_CHECK_INT_EQ(changed[0], 1);
    DSI_CHECK_INT_EQ(changed[1], 0);
    DSI_CHECK_INT_EQ(dsc_bias_update(t, counts, 0.01f, NULL), 1);
    double max, mean;
    dsc_bias_drift(t, 0, &max, &mean);
    DSI_CHECK_NEAR(max, 0.02, 1e-6);
    DSI_CHECK_NEAR(mean, 0.01, 1e-6);
    dsc_bias_drift(t, 1, &max, &mean);
    DSI_CHECK_NEAR(max, 0, 0);
    DSI_CHECK_NEAR(dsc_bias_get(t, 0)[1], 0.22, 1e-6);
    DSI_CHECK_INT_EQ(dsc_bias_first_layer(t), 1);
    dsc_bias_destroy(t);
}

static void test_bias_load(void)
{
    const char *model = dsi_test_fixture("tiny-v3");
    dsc_bias_t *t;
    DSI_CHECK_INT_EQ(dsc_bias_load(model, &t), DSI_OK);
    dsn_checkpoint_t *ckpt;
    DSI_CHECK_INT_EQ(dsn_checkpoint_open(model, &ckpt), DSI_OK);
    const dsn_config_t *cfg = dsn_checkpoint_config(ckpt);
    DSI_CHECK_INT_EQ(dsc_bias_layers(t), cfg->num_hidden_layers - cfg->first_k_dense_replace);
    DSI_CHECK_INT_EQ(dsc_bias_experts(t), cfg->n_routed_experts);
    float want[256];
    int same = 1;
    for (int l = cfg->first_k_dense_replace; l < cfg->num_hidden_layers; l++) {
        char name[128];
        snprintf(name, sizeof(name), "model.layers.%d.mlp.gate.e_score_correction_bias", l);
        DSI_CHECK_INT_EQ(dsn_checkpoint_vector_f32(ckpt, name, cfg->n_routed_experts, want),
                         DSI_OK);
        const float *got = dsc_bias_get(t, (uint32_t)(l - cfg->first_k_dense_replace));
        same &= memcmp(got, want, (size_t)cfg->n_routed_experts * sizeof(float)) == 0;
    }
    DSI_CHECK(same);
    dsn_checkpoint_close(ckpt);
    dsc_bias_destroy(t);
    DSI_CHECK(dsc_bias_load("/nonexistent/model", &t) != DSI_OK);
}

static dsi_status_t check_msg(const dst_msg_t *m)
{
    char err[256];
    return dst_msg_check(m, err, sizeof(err));
}

static void test_messages(void)
{
    float b[3] = {0.5f, NAN, 1};
    dst_msg_t m = {.type = DST_MSG_BIAS};
    m.bias = (dst_msg_bias_t){1, 3, 3, b};
    DSI_CHECK_INT_EQ(check_msg(&m), DSI_ERR_PROTOCOL);
    b[1] = INFINITY;
    DSI_CHECK_INT_EQ(check_msg(&m), DSI_ERR_PROTOCOL);
    b[1] = 0;
    DSI_CHECK_INT_EQ(check_msg(&m), DSI_OK);
    m.bias.layer = DST_MSG_MAX_LAYERS;
    DSI_CHECK_INT_EQ(check_msg(&m), DSI_ERR_PROTOCOL);
    m.bias.layer = 3;
    m.bias.n_biases = 0;
    DSI_CHECK_INT_EQ(check_msg(&m), DSI_ERR_PROTOCOL);
    m.bias.n_biases = DST_MSG_MAX_EXPERTS + 1;
    DSI_CHECK_INT_EQ(check_msg(&m), DSI_ERR_TOO_LARGE);

    dst_msg_t a = {.type = DST_MSG_ADMIN};
    a.admin.command = 0;
    DSI_CHECK_INT_EQ(check_msg(&a), DSI_ERR_PROTOCOL);
    a.admin.command = DST_ADMIN_END;
    DSI_CHECK_INT_EQ(check_msg(&a), DSI_ERR_PROTOCOL);
    a.admin.command = DST_ADMIN_STATUS;
    DSI_CHECK_INT_EQ(check_msg(&a), DSI_OK);

    char json[] = "{\"a\":\"x\ny\"}"; /* a raw newline: JSON output never has one */
    dst_msg_t r = {.type = DST_MSG_ADMIN_REPLY};
    r.admin_reply.command = DST_ADMIN_STATUS;
    r.admin_reply.json = json;
    DSI_CHECK_INT_EQ(check_msg(&r), DSI_ERR_PROTOCOL);
    r.admin_reply.json = NULL;
    DSI_CHECK_INT_EQ(check_msg(&r), DSI_ERR_PROTOCOL);
    char *big = malloc(DST_MSG_JSON_MAX + 1);
    memset(big, 'x', DST_MSG_JSON_MAX);
    big[DST_MSG_JSON_MAX] = 0;
    r.admin_reply.json = big;
    DSI_CHECK_INT_EQ(check_msg(&r), DSI_ERR_TOO_LARGE);
    free(big);

    /* The proof binds the secret, the nonce, the command and its argument. */
    dst_secret_t s1 = {.len = 16}, s2 = {.len = 16};
    memset(s1.bytes, 'a', 16);
    memset(s2.bytes, 'b', 16);
    uint8_t nonce[DST_MSG_NONCE_LEN] = {1, 2, 3}, other[DST_MSG_NONCE_LEN] = {1, 2, 4};
    dst_msg_admin_t ad = {DST_ADMIN_DRAIN, 7, {0}};
    dst_msg_admin_auth(&s1, nonce, ad.command, ad.arg, ad.auth);
    DSI_CHECK_INT_EQ(dst_msg_admin_verify(&s1, nonce, &ad), 1);
    DSI_CHECK_INT_EQ(dst_msg_admin_verify(&s2, nonce, &ad), 0);
    DSI_CHECK_INT_EQ(dst_msg_admin_verify(&s1, other, &ad), 0);
    ad.arg = 8;
    DSI_CHECK_INT_EQ(dst_msg_admin_verify(&s1, nonce, &ad), 0);
    ad.arg = 7;
    ad.command = DST_ADMIN_REBALANCE;
    DSI_CHECK_INT_EQ(dst_msg_admin_verify(&s1, nonce, &ad), 0);
    DSI_CHECK_STR_EQ(dst_msg_admin_name(DST_ADMIN_REBALANCE), "rebalance");
}

int main(void)
{
    test_window();
    test_imbalance();
    test_eplb_plan();
    test_bias_rule();
    test_bias_load();
    test_messages();
    return dsi_test_finish();
}
