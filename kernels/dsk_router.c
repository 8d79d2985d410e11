/*
 * dsk_router.c - the MoE routers of DeepSeek-V3 (noaux_tc, sigmoid scoring, MODEL.md section 5)
 * and of the V2 family (softmax scoring; greedy or group_limited_greedy, MODEL.md section 9).
 *
 * Every selection is a deterministic arg-max with ties to the lower index, so the chosen set and
 * its order do not depend on the summation order of anything. NaN never wins a comparison, but a
 * slot is always filled, so NaN logits give NaN weights rather than an out-of-range expert.
 */
#include <math.h>

#include "dsk_impl.h"

/* a (index ia) ranks before b (index ib): larger value, ties to the lower index. */
static int ranks_before(float a, int ia, float b, int ib)
{
    return a > b || (a == b && ia < ib);
}

static int router_cfg_valid(const dsk_router_cfg_t *cfg)
{
    if (cfg->n_experts < 1 || cfg->n_experts > DSK_ROUTER_MAX_EXPERTS)
        return 0;
    if (cfg->scoring != DSK_SCORE_SIGMOID && cfg->scoring != DSK_SCORE_SOFTMAX)
        return 0;
    if (cfg->method == DSK_TOPK_GREEDY)
        return cfg->top_k >= 1 && cfg->top_k <= DSK_ROUTER_MAX_TOPK && cfg->top_k <= cfg->n_experts;
    if (cfg->method != DSK_TOPK_NOAUX_TC && cfg->method != DSK_TOPK_GROUP_LIMITED)
        return 0;
    if (cfg->n_group < 1 || cfg->n_experts % cfg->n_group != 0)
        return 0;
    if (cfg->topk_group < 1 || cfg->topk_group > cfg->n_group)
        return 0;
    int group_size = cfg->n_experts / cfg->n_group;
    if (cfg->top_k < 1 || cfg->top_k > DSK_ROUTER_MAX_TOPK ||
        cfg->top_k > cfg->topk_group * group_size)
        return 0;
    return 1;
}

/* Sum of the two largest values of g[0..n) (the one value when n == 1); with `max_only`, the
 * largest value alone (group_limited_greedy). */
static float group_score(const float *g, int n, int max_only)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (ranks_before(g[i], i, g[best], best))
            best = i;
    if (n == 1 || max_only)
        return g[best];
    int second = best == 0 ? 1 : 0;
    for (int i = 0; i < n; i++)
        if (i != best && ranks_before(g[i], i, g[second], second))
            second = i;
    return g[best] + g[second];
}

int dsk_router_topk(const dsk_router_cfg_t *cfg, const float *logits, const float *bias,
                    float *scratch, int32_t *experts, float *weights)
{
    if (!router_cfg_valid(cfg))
        return -1;
    int ne = cfg->n_experts;
    /* Plain greedy top-k is group-limited routing with one group, kept. */
    int greedy = cfg->method == DSK_TOPK_GREEDY;
    int n_group = greedy ? 1 : cfg->n_group, topk_group = greedy ? 1 : cfg->topk_group;
    int group_size = ne / n_group;
    float *score = scratch;       /* [ne] sigmoid or softmax of the logits, the weights' source */
    float *choice = scratch + ne; /* [ne] score + bias, -inf once excluded or taken */
    if (cfg->scoring == DSK_SCORE_SOFTMAX) {
        float mx = logits[0];
        for (int e = 1; e < ne; e++)
            mx = logits[e] > mx ? logits[e] : mx;
        double sum = 0;
        for (int e = 0; e < ne; e++) {
            score[e] = expf(logits[e] - mx);
            sum += score[e];
        }
        for (int e = 0; e < ne; e++) /* divided in double, rounded once */
            score[e] = (float)((double)score[e] / sum);
    } else {
        for (int e = 0; e < ne; e++)
            score[e] = 1.0f / (1.0f + expf(-logits[e]));
    }
    for (int e = 0; e < ne; e++)
        choice[e] = score[e] + (bias != NULL ? bias[e] : 0.0f);

    /* Keep the topk_group best groups: mark the others' experts -inf. */
    float gscore[DSK_ROUTER_MAX_EXPERTS];
    unsigned char kept[DSK_ROUTER_MAX_EXPERTS] = {0};
    int max_only = cfg->method == DSK_TOPK_GROUP_LIMITED;
    for (int g = 0; g < n_group; g++)
        gscore[g] = group_score(choice + g * group_size, group_size, max_only);
    for (int k = 0; k < topk_group; k++) {
        int best = -1;
        for (int g = 0; g < n_group; g++)
            if (!kept[g] && (best < 0 || ranks_before(gscore[g], g, gscore[best], best)))
                best = g;
        kept[best] = 1;
    }
    for (int g = 0; g < n_group; g++)
        if (!kept[g])
            for (int i = 0; i < group_size; i++)
                choice[g * group_size + i] = -INFINITY;

    /* top_k arg-max passes over the kept experts give the canonical slot order directly. */
    unsigned char taken[DSK_ROUTER_MAX_EXPERTS] = {0};
    double sum = 0;
    for (int k = 0; k < cfg->top_k; k++) {
        int best = -1;
        for (int e = 0; e < ne; e++) {
            if (taken[e] || !kept[e / group_size])
                continue;
            if (best < 0 || ranks_before(choice[e], e, choice[best], best))
                best = e;
        }
        taken[best] = 1;
        experts[k] = best;
        weights[k] = score[best];
        sum += score[best];
    }
    float denom = cfg->norm_topk ? (float)sum + 1e-20f : 1.0f;
    for (int k = 0; k < cfg->top_k; k++)
        weights[k] = weights[k] / denom * cfg->scaling;
    return 0;
}
