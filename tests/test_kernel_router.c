/*
 * test_kernel_router.c - dsk_router_topk against a brute-force reference built from sorts (MODEL.md
 * sections 5 and 9), on random and deliberately tied logits for V3's, V2's, V2-Lite's and the tiny
 * fixtures' configs, plus hand-made cases: group exclusion removing the single best expert, ties,
 * bias used only for the choice, no normalisation, V2's groups scored by their best expert, greedy
 * ignoring groups, and configurations out of range.
 */
#include <stdlib.h>

#include "dsi_test.h"
#include "dsk.h"

#define SIG DSK_SCORE_SIGMOID
#define SMX DSK_SCORE_SOFTMAX
#define NTC DSK_TOPK_NOAUX_TC
#define GRD DSK_TOPK_GREEDY
#define GLG DSK_TOPK_GROUP_LIMITED

static const dsk_router_cfg_t v3_cfg = {256, 8, 4, 8, 1, 2.5f, SIG, NTC};
static const dsk_router_cfg_t tiny_cfg = {32, 4, 2, 4, 1, 2.5f, SIG, NTC};
/* DeepSeek-V2 (236B) and V2-Lite, and the v2-tiny / v2-lite-tiny fixtures. */
static const dsk_router_cfg_t v2_cfg = {160, 8, 3, 6, 0, 16.0f, SMX, GLG};
static const dsk_router_cfg_t v2_lite_cfg = {64, 1, 1, 6, 0, 1.0f, SMX, GRD};
static const dsk_router_cfg_t v2_tiny_cfg = {12, 3, 2, 4, 0, 16.0f, SMX, GLG};
static const dsk_router_cfg_t v2_lite_tiny_cfg = {12, 1, 1, 2, 0, 1.0f, SMX, GRD};
/* Greedy with groups in the config: the groups must be ignored. */
static const dsk_router_cfg_t greedy_grouped_cfg = {64, 8, 1, 6, 1, 1.0f, SMX, GRD};

static const float *sort_keys;

/* Descending key, ties to the lower index. */
static int by_key_desc(const void *pa, const void *pb)
{
    int a = *(const int *)pa, b = *(const int *)pb;
    if (sort_keys[a] != sort_keys[b])
        return sort_keys[a] > sort_keys[b] ? -1 : 1;
    return a - b;
}

static void ref_route(const dsk_router_cfg_t *cfg, const float *logits, const float *bias,
                      int32_t *experts, float *weights)
{
    int greedy = cfg->method == GRD;
    int n_group = greedy ? 1 : cfg->n_group, topk_group = greedy ? 1 : cfg->topk_group;
    int ne = cfg->n_experts, gs = ne / n_group;
    float s[DSK_ROUTER_MAX_EXPERTS], b[DSK_ROUTER_MAX_EXPERTS], gscore[DSK_ROUTER_MAX_EXPERTS];
    int idx[DSK_ROUTER_MAX_EXPERTS];
    double z = 0, mx = logits[0];
    for (int e = 1; e < ne; e++)
        mx = logits[e] > mx ? logits[e] : mx;
    for (int e = 0; e < ne; e++)
        z += exp(logits[e] - mx);
    for (int e = 0; e < ne; e++) {
        s[e] = cfg->scoring == SMX ? (float)(exp(logits[e] - mx) / z)
                                   : 1.0f / (1.0f + expf(-logits[e]));
        b[e] = s[e] + (bias ? bias[e] : 0.0f);
    }
    for (int g = 0; g < n_group; g++) {
        for (int i = 0; i < gs; i++)
            idx[i] = g * gs + i;
        sort_keys = b;
        qsort(idx, (size_t)gs, sizeof(int), by_key_desc);
        gscore[g] = cfg->method == GLG || gs == 1 ? b[idx[0]] : b[idx[0]] + b[idx[1]];
    }
    int gidx[DSK_ROUTER_MAX_EXPERTS];
    for (int g = 0; g < n_group; g++)
        gidx[g] = g;
    sort_keys = gscore;
    qsort(gidx, (size_t)n_group, sizeof(int), by_key_desc);
    int nc = 0;
    for (int e = 0; e < ne; e++)
        for (int k = 0; k < topk_group; k++)
            if (e / gs == gidx[k])
                idx[nc++] = e;
    sort_keys = b;
    qsort(idx, (size_t)nc, sizeof(int), by_key_desc);
    double sum = 0;
    for (int k = 0; k < cfg->top_k; k++)
        sum += s[idx[k]];
    for (int k = 0; k < cfg->top_k; k++) {
        experts[k] = idx[k];
        weights[k] = (float)(s[idx[k]] / (cfg->norm_topk ? sum + 1e-20 : 1.0) * cfg->scaling);
    }
}

static int compare_route(const dsk_router_cfg_t *cfg, const float *logits, const float *bias)
{
    float scratch[2 * DSK_ROUTER_MAX_EXPERTS], w[DSK_ROUTER_MAX_TOPK], rw[DSK_ROUTER_MAX_TOPK];
    int32_t e[DSK_ROUTER_MAX_TOPK], re[DSK_ROUTER_MAX_TOPK];
    if (dsk_router_topk(cfg, logits, bias, scratch, e, w) != 0)
        return 0;
    ref_route(cfg, logits, bias, re, rw);
    for (int k = 0; k < cfg->top_k; k++)
        if (e[k] != re[k] || fabsf(w[k] - rw[k]) > 2e-6f * fabsf(rw[k]) + 1e-30f)
            return 0;
    return 1;
}

static void test_random(const dsk_router_cfg_t *cfg, int trials, int tied)
{
    float logits[DSK_ROUTER_MAX_EXPERTS], bias[DSK_ROUTER_MAX_EXPERTS];
    int bad = 0;
    for (int t = 0; t < trials; t++) {
        for (int e = 0; e < cfg->n_experts; e++) {
            /* tied: few distinct values, so experts and groups tie all the time */
            logits[e] = tied ? 0.5f * (float)(dsi_test_randu() % 4) : 4.0f * dsi_test_randf();
            bias[e] = tied ? 0.0f : 0.1f * dsi_test_randf();
        }
        if (!compare_route(cfg, logits, t % 3 == 0 ? NULL : bias))
            bad++;
    }
    DSI_CHECK_INT_EQ(bad, 0);
}

static void test_group_exclusion(void)
{
    float logits[256], scratch[512], w[8];
    int32_t e[8];
    for (int i = 0; i < 256; i++)
        logits[i] = -5.0f;
    logits[5] = 10.0f; /* the best single expert, alone in group 0 */
    for (int g = 1; g < 8; g++) {
        logits[g * 32 + 3] = 2.0f;
        logits[g * 32 + 9] = 2.0f;
    }
    DSI_CHECK_INT_EQ(dsk_router_topk(&v3_cfg, logits, NULL, scratch, e, w), 0);
    int has5 = 0, outside = 0;
    for (int k = 0; k < 8; k++) {
        has5 |= e[k] == 5;
        outside += e[k] / 32 < 1 || e[k] / 32 > 4; /* ties keep groups 1..4 */
    }
    DSI_CHECK_INT_EQ(has5, 0);
    DSI_CHECK_INT_EQ(outside, 0);
    /* canonical order: the eight 2.0 experts of groups 1..4, by index */
    static const int32_t want[8] = {35, 41, 67, 73, 99, 105, 131, 137};
    for (int k = 0; k < 8; k++)
        DSI_CHECK_INT_EQ(e[k], want[k]);
    DSI_CHECK(compare_route(&v3_cfg, logits, NULL));
}

static void test_ties_and_bias(void)
{
    float logits[256] = {0}, bias[256], scratch[512], w[8];
    int32_t e[8];
    DSI_CHECK_INT_EQ(dsk_router_topk(&v3_cfg, logits, NULL, scratch, e, w), 0);
    for (int k = 0; k < 8; k++) {
        DSI_CHECK_INT_EQ(e[k], k); /* all tied: group 0, lowest indices */
        DSI_CHECK_NEAR(w[k], 2.5 / 8, 1e-7);
    }
    /* the bias decides the choice, the weights stay the unbiased (equal) sigmoids */
    for (int i = 0; i < 256; i++)
        bias[i] = 0.001f * (float)(i % 32) + (i / 32 == 6 ? 0.5f : 0.0f);
    DSI_CHECK_INT_EQ(dsk_router_topk(&v3_cfg, logits, bias, scratch, e, w), 0);
    for (int k = 0; k < 8; k++) {
        DSI_CHECK_INT_EQ(e[k], 6 * 32 + 31 - k);
        DSI_CHECK_NEAR(w[k], 2.5 / 8, 1e-7);
    }
    /* without normalisation: sigmoid(0) * scaling */
    dsk_router_cfg_t raw = v3_cfg;
    raw.norm_topk = 0;
    DSI_CHECK_INT_EQ(dsk_router_topk(&raw, logits, NULL, scratch, e, w), 0);
    DSI_CHECK_NEAR(w[0], 0.5 * 2.5, 1e-7);
    /* normalised weights sum to the scaling factor */
    for (int i = 0; i < 256; i++)
        logits[i] = 3.0f * dsi_test_randf();
    DSI_CHECK_INT_EQ(dsk_router_topk(&v3_cfg, logits, NULL, scratch, e, w), 0);
    double sum = 0;
    for (int k = 0; k < 8; k++)
        sum += w[k];
    DSI_CHECK_NEAR(sum, 2.5, 1e-6);
}

/* V2's group_limited_greedy scores a group by its best expert, not by its best two. */
static void test_v2_groups(void)
{
    float logits[12], scratch[24], w[4];
    int32_t e[4];
    /* group 0: one strong expert; groups 1 and 2: two good ones each (larger sums) */
    static const float l[12] = {3.0f, -4, -4, -4, 2.5f, 2.5f, -4, -4, 2.6f, 2.6f, -4, -4};
    for (int i = 0; i < 12; i++)
        logits[i] = l[i];
    DSI_CHECK_INT_EQ(dsk_router_topk(&v2_tiny_cfg, logits, NULL, scratch, e, w), 0);
    /* groups 0 (best 3.0) and 2 (best 2.6) kept; then the tied -4 experts by index */
    static const int32_t want[4] = {0, 8, 9, 1};
    for (int k = 0; k < 4; k++)
        DSI_CHECK_INT_EQ(e[k], want[k]);
    DSI_CHECK(compare_route(&v2_tiny_cfg, logits, NULL));
    /* weights: softmax probabilities times 16, not renormalised */
    double z = 0;
    for (int i = 0; i < 12; i++)
        z += exp((double)l[i]);
    DSI_CHECK_NEAR(w[0], 16.0 * exp(3.0) / z, 1e-5);
    /* V3's rule (sum of the best two) keeps groups 2 and 1 instead, dropping expert 0 */
    dsk_router_cfg_t v3like = v2_tiny_cfg;
    v3like.method = NTC;
    DSI_CHECK_INT_EQ(dsk_router_topk(&v3like, logits, NULL, scratch, e, w), 0);
    static const int32_t want_v3[4] = {8, 9, 4, 5};
    for (int k = 0; k < 4; k++)
        DSI_CHECK_INT_EQ(e[k], want_v3[k]);
    /* greedy ignores groups: the best 6 of 64 wherever they are */
    float big[64], s2[128], w6[6];
    int32_t e6[6];
    for (int i = 0; i < 64; i++)
        big[i] = i % 8 == 0 ? 5.0f - 0.01f * (float)i : 0.0f;
    DSI_CHECK_INT_EQ(dsk_router_topk(&greedy_grouped_cfg, big, NULL, s2, e6, w6), 0);
    for (int k = 0; k < 6; k++)
        DSI_CHECK_INT_EQ(e6[k], 8 * k);
}

static void test_bad_cfg(void)
{
    float logits[2048] = {0}, scratch[4096], w[64];
    int32_t e[64];
    static const dsk_router_cfg_t bad[] = {
        {0, 1, 1, 1, 1, 1, SIG, NTC},   {2048, 8, 4, 8, 1, 1, SIG, NTC},
        {256, 0, 1, 8, 1, 1, SIG, NTC}, {256, 7, 4, 8, 1, 1, SIG, NTC},
        {256, 8, 0, 8, 1, 1, SIG, NTC}, {256, 8, 9, 8, 1, 1, SIG, NTC},
        {256, 8, 4, 0, 1, 1, SIG, NTC}, {256, 8, 4, 33, 1, 1, SIG, NTC},
        {16, 8, 1, 3, 1, 1, SIG, NTC},  {-256, 8, 4, 8, 1, 1, SIG, NTC},
        {256, 8, 4, 8, 1, 1, 2, NTC},   {256, 8, 4, 8, 1, 1, SMX, 3},
        {8, 1, 1, 9, 0, 1, SMX, GRD},   {8, 1, 1, 0, 0, 1, SMX, GRD},
        {12, 5, 2, 4, 0, 16, SMX, GLG},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        DSI_CHECK_INT_EQ(dsk_router_topk(&bad[i], logits, NULL, scratch, e, w), -1);
    /* the edges that are valid: one group, groups of one expert, top_k = all kept experts */
    static const dsk_router_cfg_t edge[] = {
        {8, 1, 1, 8, 1, 1, SIG, NTC},
        {8, 8, 3, 3, 1, 1, SIG, NTC},
        {8, 8, 3, 3, 0, 16, SMX, GLG},
        {8, 7, 9, 8, 0, 1, SMX, GRD}, /* greedy: groups not checked */
    };
    for (size_t i = 0; i < sizeof(edge) / sizeof(edge[0]); i++)
        DSI_CHECK_INT_EQ(dsk_router_topk(&edge[i], logits, NULL, scratch, e, w), 0);
}

int main(void)
{
    dsi_test_seed(99);
    test_random(&v3_cfg, 2000, 0);
    test_random(&v3_cfg, 500, 1);
    test_random(&tiny_cfg, 2000, 0);
    test_random(&tiny_cfg, 500, 1);
    test_random(&v2_cfg, 2000, 0);
    test_random(&v2_cfg, 500, 1);
    test_random(&v2_lite_cfg, 2000, 0);
    test_random(&v2_lite_cfg, 500, 1);
    test_random(&v2_tiny_cfg, 2000, 0);
    test_random(&v2_tiny_cfg, 500, 1);
    test_random(&v2_lite_tiny_cfg, 2000, 0);
    test_random(&greedy_grouped_cfg, 1000, 0);
    test_group_exclusion();
    test_v2_groups();
    test_ties_and_bias();
    test_bad_cfg();
    return dsi_test_finish();
}
