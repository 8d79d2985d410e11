/*
 * dsc_load_cluster.c - the cluster's expert-load statistics: LOAD_STATS from nodes into the
 * sliding window, the window clock, the online router-bias rule and its BIAS messages, the
 * automatic rebalance, and the snapshot for exporters.
 */
#include <stdlib.h>
#include <string.h>

#include "dsc_cluster_impl.h"
#include "dsi_log.h"

static uint32_t moe_layers(const dsc_cluster_t *cl)
{
    int M = cl->cfg.num_hidden_layers - cl->cfg.first_k_dense_replace;
    return M > 0 && cl->cfg.n_routed_experts > 0 ? (uint32_t)M : 0;
}

/* The stage whose layers hold model layer `layer` in the current plan, or -1. */
static int stage_of_layer(const dsc_cluster_t *cl, uint32_t layer)
{
    for (uint32_t s = 0; s < cl->plan.n_stages; s++) {
        if (layer >= cl->plan.stages[s].first_layer && layer < cl->plan.stages[s].end_layer)
            return (int)s;
    }
    return -1;
}

/* BIAS for MoE layer `moe_index` to every node of its stage. */
static void send_bias(dsc_cluster_t *cl, uint32_t moe_index)
{
    uint32_t layer = (uint32_t)cl->cfg.first_k_dense_replace + moe_index;
    int s = stage_of_layer(cl, layer);
    if (s < 0)
        return;
    dst_msg_t m = {.type = DST_MSG_BIAS};
    m.bias.epoch = cl->plan.epoch;
    m.bias.layer = layer;
    m.bias.n_biases = dsc_bias_experts(cl->bias);
    m.bias.biases = (float *)dsc_bias_get(cl->bias, moe_index);
    for (uint32_t i = 0; i < cl->plan.n_nodes; i++) {
        if (cl->plan.nodes[i].stage == (uint32_t)s)
            dsc_cluster_send_node(cl, cl->plan.nodes[i].node_id, &m);
    }
}

void dsc_cluster_push_biases(dsc_cluster_t *cl)
{
    if (cl->bias == NULL)
        return;
    for (uint32_t i = 0; i < dsc_bias_layers(cl->bias); i++) {
        double max, mean;
        dsc_bias_drift(cl->bias, i, &max, &mean);
        if (max > 0)
            send_bias(cl, i);
    }
}

/* The online rule on the window just closed; changed layers go to the nodes when serving (a
 * new epoch gets them all through dsc_cluster_push_biases). */
static void update_biases(dsc_cluster_t *cl)
{
    if (cl->bias == NULL || cl->opts.online_bias_gamma <= 0)
        return;
    uint32_t M = dsc_bias_layers(cl->bias);
    uint8_t changed[M];
    if (dsc_bias_update(cl->bias, dsc_load_last(cl->load), cl->opts.online_bias_gamma, changed) ==
        0)
        return;
    cl->stats.bias_updates++;
    if (!cl->ready)
        return;
    for (uint32_t i = 0; i < M; i++) {
        if (changed[i])
            send_bias(cl, i);
    }
}

/* Past the threshold, with enough data (one pair per expert on average) and not too soon after
 * the previous one: rebalance by itself. */
static void maybe_rebalance(dsc_cluster_t *cl)
{
    double threshold = cl->opts.rebalance_threshold;
    if (threshold <= 0 || !cl->ready || cl->shut_down)
        return;
    uint64_t now = dsc_now_ns(), gap = (uint64_t)cl->opts.rebalance_interval_ms * 1000000ULL;
    if (cl->last_rebalance_ns != 0 && now - cl->last_rebalance_ns < gap)
        return;
    if (dsc_load_total(cl->load) < (uint64_t)dsc_load_layers(cl->load) * dsc_load_experts(cl->load))
        return;
    double x = dsc_load_imbalance(&cl->plan, dsc_load_counts(cl->load), NULL);
    if (x <= threshold)
        return;
    DSI_INFO("expert-load imbalance %.3f is over the threshold %.3f: rebalancing", x, threshold);
    if (dsc_cluster_rebalance(cl, "imbalance over the threshold", NULL) != DSI_OK)
        cl->last_rebalance_ns = now; /* logged; do not retry at every window */
}

static void on_window(uv_timer_t *t)
{
    dsc_cluster_t *cl = t->data;
    dsc_load_rotate(cl->load);
    update_biases(cl);
    maybe_rebalance(cl);
}

dsi_status_t dsc_cluster_load_init(dsc_cluster_t *cl)
{
    const dsc_cluster_opts_t *o = &cl->opts;
    uint32_t M = moe_layers(cl), E = (uint32_t)cl->cfg.n_routed_experts;
    if (o->load_window_ms < 10 || o->load_window_ms > 3600000 || o->load_windows < 1 ||
        o->load_windows > 100000 || !(o->online_bias_gamma >= 0) ||
        !(o->rebalance_threshold == 0 || o->rebalance_threshold > 1)) {
        DSI_ERROR("load options out of range: window %u ms (10..3600000), %u windows "
                  "(1..100000), bias gamma %g (>= 0), rebalance threshold %g (0 or > 1)",
                  o->load_window_ms, o->load_windows, (double)o->online_bias_gamma,
                  o->rebalance_threshold);
        return DSI_ERR_INVALID_ARG;
    }
    if (M == 0) {
        if (o->online_bias_gamma > 0 || o->rebalance_threshold > 0)
            DSI_WARN("the model has no MoE layers: no expert load to balance");
        return DSI_OK;
    }
    dsi_status_t st = dsc_load_create(M, E, o->load_windows, &cl->load);
    if (st != DSI_OK)
        return st;
    cl->layer_imb = calloc(M, sizeof(double));
    cl->drift_max = calloc(M, sizeof(double));
    cl->drift_mean = calloc(M, sizeof(double));
    if (cl->layer_imb == NULL || cl->drift_max == NULL || cl->drift_mean == NULL) {
        st = DSI_ERR_NOMEM;
        goto fail;
    }
    if (!dsn_config_has_router_bias(&cl->cfg)) {
        /* The V2 family's routers have no correction biases: load statistics only. */
        if (o->online_bias_gamma > 0) {
            DSI_ERROR("--online-bias-gamma: the model's router (topk_method '%s') has no "
                      "correction biases to move",
                      dsn_config_topk_method_name(cl->cfg.topk_method));
            st = DSI_ERR_INVALID_ARG;
            goto fail;
        }
    } else if (o->model_dir != NULL) {
        st = dsc_bias_load(o->model_dir, &cl->bias);
        if (st != DSI_OK && o->online_bias_gamma > 0) {
            DSI_ERROR("--online-bias-gamma needs the router biases of %s", o->model_dir);
            goto fail;
        }
        if (st != DSI_OK)
            DSI_WARN("router biases of %s unreadable: bias tracking unavailable", o->model_dir);
        if (cl->bias != NULL &&
            (dsc_bias_layers(cl->bias) != M || dsc_bias_experts(cl->bias) != E ||
             dsc_bias_first_layer(cl->bias) != (uint32_t)cl->cfg.first_k_dense_replace)) {
            DSI_ERROR("the checkpoint in %s has %u MoE layers x %u experts, the config %u x %u",
                      o->model_dir, dsc_bias_layers(cl->bias), dsc_bias_experts(cl->bias), M, E);
            st = DSI_ERR_CONFIG;
            goto fail;
        }
        st = DSI_OK;
    } else if (o->online_bias_gamma > 0) {
        DSI_ERROR("online bias tracking needs the checkpoint (its router biases), not only a "
                  "config: give --model");
        st = DSI_ERR_INVALID_ARG;
        goto fail;
    }
    if (o->online_bias_gamma > 0)
        DSI_WARN("online router-bias updates with gamma %g: expert choice, and so outputs, will "
                 "differ from the checkpoint's",
                 (double)o->online_bias_gamma);
    uv_timer_init(cl->loop, &cl->load_timer);
    cl->load_timer.data = cl;
    cl->load_timer_open = 1;
    uv_timer_start(&cl->load_timer, on_window, o->load_window_ms, o->load_window_ms);
    return DSI_OK;
fail:
    dsc_load_destroy(cl->load);
    dsc_bias_destroy(cl->bias);
    free(cl->layer_imb);
    free(cl->drift_max);
    free(cl->drift_mean);
    cl->load = NULL;
    cl->bias = NULL;
    cl->layer_imb = cl->drift_max = cl->drift_mean = NULL;
    return st;
}

static void load_timer_closed(uv_handle_t *h)
{
    dsc_cluster_t *cl = h->data;
    cl->load_timer_open = 0;
    if (cl->destroyed && !cl->timer_open && cl->open_conns == 0)
        free(cl);
}

void dsc_cluster_load_close(dsc_cluster_t *cl)
{
    if (cl->load_timer_open)
        uv_close((uv_handle_t *)&cl->load_timer, load_timer_closed);
    dsc_load_destroy(cl->load);
    dsc_bias_destroy(cl->bias);
    free(cl->layer_imb);
    free(cl->drift_max);
    free(cl->drift_mean);
    cl->load = NULL;
    cl->bias = NULL;
    cl->layer_imb = cl->drift_max = cl->drift_mean = NULL;
}

void dsc_cluster_on_load_stats(dsc_cluster_t *cl, conn_state_t *cs, const dst_msg_load_stats_t *m)
{
    node_t *n = &cl->nodes[cs->node];
    uint32_t first = (uint32_t)cl->cfg.first_k_dense_replace;
    /* Counts of any epoch are welcome: routing does not depend on where experts are. */
    if (cl->load == NULL || m->node_id != n->id || m->first_layer < first ||
        dsc_load_add(cl->load, m->first_layer - first, m->n_layers, m->n_experts, m->counts) != 0) {
        dst_ctrl_send_error(cs->conn, DSI_ERR_PROTOCOL, DST_MSG_LOAD_STATS,
                            "LOAD_STATS of node %u for layers [%u, +%u) x %u experts does not fit "
                            "the model",
                            m->node_id, m->first_layer, m->n_layers, m->n_experts);
        return;
    }
}

void dsc_cluster_load_snapshot(dsc_cluster_t *cl, dsc_cluster_load_t *out)
{
    memset(out, 0, sizeof(*out));
    out->window_ms = cl->opts.load_window_ms;
    out->n_windows = cl->opts.load_windows;
    out->bias_gamma = cl->opts.online_bias_gamma;
    if (cl->load == NULL)
        return;
    out->first_layer = (uint32_t)cl->cfg.first_k_dense_replace;
    out->n_layers = dsc_load_layers(cl->load);
    out->n_experts = dsc_load_experts(cl->load);
    out->counts = dsc_load_counts(cl->load);
    out->total = dsc_load_total(cl->load);
    if (cl->planned) {
        out->imbalance = dsc_load_imbalance(&cl->plan, out->counts, cl->layer_imb);
    } else {
        memset(cl->layer_imb, 0, out->n_layers * sizeof(double));
    }
    out->layer_imbalance = cl->layer_imb;
    if (cl->bias != NULL) {
        out->bias_available = 1;
        for (uint32_t i = 0; i < out->n_layers; i++)
            dsc_bias_drift(cl->bias, i, &cl->drift_max[i], &cl->drift_mean[i]);
        out->bias_drift_max = cl->drift_max;
        out->bias_drift_mean = cl->drift_mean;
    }
}
