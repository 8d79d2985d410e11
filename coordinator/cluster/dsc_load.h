/*
 * dsc_load.h - expert-load statistics: a sliding window of (token, slot) pairs routed to every
 * (MoE layer, routed expert), and the imbalance of a plan under those counts.
 *
 * Nodes count what their routing sent to each expert and report it every window (LOAD_STATS).
 * The coordinator adds the reports into the current window and closes it every window length: the
 * sums always cover the last n_windows windows (the open one included). Routing decisions do not
 * depend on where experts are placed, so the same counts judge any plan, the current one or a
 * candidate.
 *
 * Imbalance of MoE layer l under a plan: every node of l's stage has an expected load, the sum
 * over the experts it holds of count(l, e) / holders(l, e) (tokens of a replicated expert are
 * spread over its copies); the layer's figure is max / mean of those loads over the stage's nodes
 * (1 = perfectly even; a stage of one node is always 1). The cluster's figure is the mean over
 * the layers that have counts. Without counts a figure is 0 ("no data").
 *
 * Not thread-safe: the coordinator's loop thread owns a window.
 */
#ifndef DSC_LOAD_H
#define DSC_LOAD_H

#include <stdint.h>

#include "dsi_status.h"
#include "dst_plan.h"

typedef struct dsc_load dsc_load_t;

/*
 * A window of n_layers MoE layers x n_experts experts (both >= 1), summing the last n_windows
 * (>= 1) windows. *out owned by the caller: dsc_load_destroy(). DSI_ERR_INVALID_ARG, _NOMEM.
 */
dsi_status_t dsc_load_create(uint32_t n_layers, uint32_t n_experts, uint32_t n_windows,
                             dsc_load_t **out);
void dsc_load_destroy(dsc_load_t *w);

/*
 * Adds counts[n_layers][n_experts] (row-major) for MoE layers [first, first + n_layers) (indices
 * counted from the first MoE layer) to the open window. 0, or -1 when the rows do not fit the
 * window (nothing added).
 */
int dsc_load_add(dsc_load_t *w, uint32_t first, uint32_t n_layers, uint32_t n_experts,
                 const uint32_t *counts);
/* Closes the open window: it becomes the latest closed one; the oldest leaves the sums. */
void dsc_load_rotate(dsc_load_t *w);
/* Forgets every count (all windows). */
void dsc_load_clear(dsc_load_t *w);

/* [n_layers * n_experts]: pairs per (layer, expert) over the sliding window. Valid until the next
 * call that changes w. */
const uint64_t *dsc_load_counts(const dsc_load_t *w);
/* [n_layers * n_experts]: the pairs of the last closed window alone (zeros before the first). */
const uint64_t *dsc_load_last(const dsc_load_t *w);
/* Pairs over the sliding window, all layers. */
uint64_t dsc_load_total(const dsc_load_t *w);
uint32_t dsc_load_layers(const dsc_load_t *w);
uint32_t dsc_load_experts(const dsc_load_t *w);
uint32_t dsc_load_windows(const dsc_load_t *w);

/*
 * The imbalance of MoE layer `moe_index` (0-based from plan->first_moe_layer) under `plan`, with
 * row[plan->n_experts] the layer's counts: max / mean expected load of the stage's nodes, or 0
 * when the row is all zeros. Never fails: a holder outside the stage counts for nothing.
 */
double dsc_load_layer_imbalance(const dst_plan_t *plan, uint32_t moe_index, const uint64_t *row);

/*
 * The cluster's figure under `plan` for counts[(n_layers - first_moe_layer) * n_experts]: the
 * mean of the layers' figures over the layers with counts (0 when none). per_layer, when not
 * NULL, gets every layer's figure ([n_layers - first_moe_layer]).
 */
double dsc_load_imbalance(const dst_plan_t *plan, const uint64_t *counts, double *per_layer);

#endif
