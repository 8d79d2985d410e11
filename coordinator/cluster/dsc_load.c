/* dsc_load.c - the sliding window of expert loads and the imbalance of a plan (dsc_load.h). */
#include "dsc_load.h"

#include <stdlib.h>
#include <string.h>

#include "dsi_log.h"

struct dsc_load {
    uint32_t n_layers, n_experts, n_windows;
    size_t slots;   /* n_layers * n_experts */
    uint64_t *ring; /* [n_windows][slots]: per-window counts; ring[cur] is open */
    uint64_t *sum;  /* [slots]: the sum of every window in the ring */
    uint64_t *last; /* [slots]: the last closed window */
    uint32_t cur;   /* the open window */
    uint64_t total; /* sum of `sum` */
};

dsi_status_t dsc_load_create(uint32_t n_layers, uint32_t n_experts, uint32_t n_windows,
                             dsc_load_t **out)
{
    if (n_layers == 0 || n_experts == 0 || n_windows == 0 || n_windows > 100000 ||
        (uint64_t)n_layers * n_experts > (1u << 24)) {
        DSI_ERROR("load window of %u layers x %u experts x %u windows: out of range", n_layers,
                  n_experts, n_windows);
        return DSI_ERR_INVALID_ARG;
    }
    dsc_load_t *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return DSI_ERR_NOMEM;
    w->n_layers = n_layers;
    w->n_experts = n_experts;
    w->n_windows = n_windows;
    w->slots = (size_t)n_layers * n_experts;
    w->ring = calloc((size_t)n_windows * w->slots, sizeof(uint64_t));
    w->sum = calloc(w->slots, sizeof(uint64_t));
    w->last = calloc(w->slots, sizeof(uint64_t));
    if (w->ring == NULL || w->sum == NULL || w->last == NULL) {
        DSI_ERROR("out of memory for a load window of %u windows", n_windows);
        dsc_load_destroy(w);
        return DSI_ERR_NOMEM;
    }
    *out = w;
    return DSI_OK;
}

void dsc_load_destroy(dsc_load_t *w)
{
    if (w == NULL)
        return;
    free(w->ring);
    free(w->sum);
    free(w->last);
    free(w);
}

int dsc_load_add(dsc_load_t *w, uint32_t first, uint32_t n_layers, uint32_t n_experts,
                 const uint32_t *counts)
{
    if (n_experts != w->n_experts || first > w->n_layers || n_layers > w->n_layers - first)
        return -1;
    uint64_t *open = w->ring + (size_t)w->cur * w->slots;
    size_t base = (size_t)first * w->n_experts, n = (size_t)n_layers * n_experts;
    for (size_t i = 0; i < n; i++) {
        open[base + i] += counts[i];
        w->sum[base + i] += counts[i];
        w->total += counts[i];
    }
    return 0;
}

void dsc_load_rotate(dsc_load_t *w)
{
    uint64_t *open = w->ring + (size_t)w->cur * w->slots;
    memcpy(w->last, open, w->slots * sizeof(uint64_t));
    w->cur = (w->cur + 1) % w->n_windows;
    /* The next window's slot holds the oldest counts: they leave the sums. */
    uint64_t *oldest = w->ring + (size_t)w->cur * w->slots;
    for (size_t i = 0; i < w->slots; i++) {
        w->sum[i] -= oldest[i];
        w->total -= oldest[i];
    }
    memset(oldest, 0, w->slots * sizeof(uint64_t));
}

void dsc_load_clear(dsc_load_t *w)
{
    memset(w->ring, 0, (size_t)w->n_windows * w->slots * sizeof(uint64_t));
    memset(w->sum, 0, w->slots * sizeof(uint64_t));
    memset(w->last, 0, w->slots * sizeof(uint64_t));
    w->total = 0;
}

const uint64_t *dsc_load_counts(const dsc_load_t *w)
{
    return w->sum;
}

const uint64_t *dsc_load_last(const dsc_load_t *w)
{
    return w->last;
}

uint64_t dsc_load_total(const dsc_load_t *w)
{
    return w->total;
}

uint32_t dsc_load_layers(const dsc_load_t *w)
{
    return w->n_layers;
}

uint32_t dsc_load_experts(const dsc_load_t *w)
{
    return w->n_experts;
}

uint32_t dsc_load_windows(const dsc_load_t *w)
{
    return w->n_windows;
}

/* ---- imbalance ---- */

/* The stage whose layer range holds `layer`, or -1. */
static int stage_of_layer(const dst_plan_t *plan, uint32_t layer)
{
    for (uint32_t s = 0; s < plan->n_stages; s++) {
        if (layer >= plan->stages[s].first_layer && layer < plan->stages[s].end_layer)
            return (int)s;
    }
    return -1;
}

double dsc_load_layer_imbalance(const dst_plan_t *plan, uint32_t moe_index, const uint64_t *row)
{
    uint32_t E = plan->n_experts, layer = plan->first_moe_layer + moe_index;
    int s = stage_of_layer(plan, layer);
    if (s < 0 || E == 0)
        return 0;
    uint32_t k = 0;
    for (uint32_t i = 0; i < plan->n_nodes; i++)
        k += plan->nodes[i].stage == (uint32_t)s;
    if (k == 0)
        return 0;
    /* Expected load per node of the stage, indexed like the stage's nodes in plan order. */
    double *nload = calloc(k, sizeof(double));
    uint32_t *ids = calloc(k, sizeof(uint32_t));
    double result = 0;
    if (nload == NULL || ids == NULL)
        goto out;
    k = 0;
    for (uint32_t i = 0; i < plan->n_nodes; i++) {
        if (plan->nodes[i].stage == (uint32_t)s)
            ids[k++] = plan->nodes[i].node_id;
    }
    double total = 0;
    size_t base = (size_t)moe_index * E;
    for (uint32_t e = 0; e < E; e++) {
        uint32_t a = plan->expert_offsets[base + e], b = plan->expert_offsets[base + e + 1];
        if (row[e] == 0 || b <= a)
            continue;
        double share = (double)row[e] / (double)(b - a);
        for (uint32_t h = a; h < b; h++) {
            for (uint32_t j = 0; j < k; j++) {
                if (ids[j] == plan->expert_holders[h]) {
                    nload[j] += share;
                    total += share;
                    break;
                }
            }
        }
    }
    if (total > 0) {
        double max = 0;
        for (uint32_t j = 0; j < k; j++)
            max = nload[j] > max ? nload[j] : max;
        result = max / (total / k);
    }
out:
    free(nload);
    free(ids);
    return result;
}

double dsc_load_imbalance(const dst_plan_t *plan, const uint64_t *counts, double *per_layer)
{
    uint32_t M =
        plan->n_layers > plan->first_moe_layer ? plan->n_layers - plan->first_moe_layer : 0;
    double sum = 0;
    uint32_t with_data = 0;
    for (uint32_t i = 0; i < M; i++) {
        double x = dsc_load_layer_imbalance(plan, i, counts + (size_t)i * plan->n_experts);
        if (per_layer != NULL)
            per_layer[i] = x;
        if (x > 0) {
            sum += x;
            with_data++;
        }
    }
    return with_data > 0 ? sum / with_data : 0;
}
