/*
 * dsc_load_admin.c - operators' ADMIN requests (status, rebalance, drain), authenticated with
 * the shared secret over the connection's HELLO nonce, and the cluster's status as JSON.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "dsc_cluster_impl.h"
#include "dsi_log.h"
#include "dst_msg_admin.h"

static const char *node_state_name(const node_t *n)
{
    if (n->state == NODE_DEAD)
        return n->draining ? "drained" : "dead"; /* drained: left as asked, not a failure */
    if (n->draining)
        return "draining";
    return n->state == NODE_READY ? "ready" : "joined";
}

/* Expert copies node `id` holds in the current plan. */
static uint64_t experts_held(const dst_plan_t *p, uint32_t id)
{
    uint64_t k = 0;
    for (size_t i = 0; p->expert_offsets != NULL && i < dst_plan_slots(p); i++)
        k += (uint64_t)dst_plan_holds(p, i, id);
    return k;
}

/* A figure, or null when there is no data (0). */
static json_t *figure(double x)
{
    return x > 0 ? json_real(x) : json_null();
}

static json_t *nodes_json(dsc_cluster_t *cl)
{
    json_t *arr = json_array();
    for (uint32_t i = 0; arr != NULL && i < cl->n_nodes; i++) {
        const node_t *n = &cl->nodes[i];
        int j = cl->planned ? dsc_plan_node_index(&cl->plan, n->id) : -1;
        json_t *o = json_pack("{s:I, s:s, s:s, s:o, s:I, s:I, s:I, s:I}", "id", (json_int_t)n->id,
                              "name", n->name, "state", node_state_name(n), "stage",
                              j >= 0 ? json_integer(cl->plan.nodes[j].stage) : json_null(),
                              "experts", (json_int_t)(j >= 0 ? experts_held(&cl->plan, n->id) : 0),
                              "memory_budget", (json_int_t)n->mem_budget, "memory_planned",
                              (json_int_t)(j >= 0 ? cl->plan.nodes[j].mem_planned : 0), "cores",
                              (json_int_t)n->cores);
        if (o != NULL) {
            json_object_set_new(o, "kv_blocks_used", json_integer((json_int_t)n->kv_used));
            json_object_set_new(o, "kv_blocks_total", json_integer((json_int_t)n->kv_total));
            json_object_set_new(o, "preemptions", json_integer((json_int_t)n->preemptions));
            json_object_set_new(o, "kv_blocks_cached", json_integer((json_int_t)n->kv_cached));
            json_object_set_new(o, "prompt_tokens", json_integer((json_int_t)n->prompt_tokens));
            json_object_set_new(o, "prefix_hit_tokens", json_integer((json_int_t)n->hit_tokens));
        }
        json_array_append_new(arr, o);
    }
    return arr;
}

char *dsc_cluster_nodes_json(dsc_cluster_t *cl)
{
    json_t *arr = json_array();
    for (uint32_t i = 0; arr != NULL && i < cl->n_nodes; i++) {
        const node_t *n = &cl->nodes[i];
        json_array_append_new(arr, json_pack("{s:I, s:s, s:s, s:I}", "id", (json_int_t)n->id,
                                             "name", n->name, "state", node_state_name(n),
                                             "memory_budget", (json_int_t)n->mem_budget));
    }
    char *text = arr != NULL ? json_dumps(arr, JSON_COMPACT) : NULL;
    json_decref(arr);
    return text;
}

static json_t *stages_json(const dsc_cluster_t *cl)
{
    json_t *arr = json_array();
    for (uint32_t s = 0; arr != NULL && cl->planned && s < cl->plan.n_stages; s++) {
        json_t *ids = json_array();
        for (uint32_t i = 0; ids != NULL && i < cl->plan.n_nodes; i++) {
            if (cl->plan.nodes[i].stage == s)
                json_array_append_new(ids, json_integer(cl->plan.nodes[i].node_id));
        }
        json_array_append_new(arr,
                              json_pack("{s:I, s:I, s:o}", "first_layer",
                                        (json_int_t)cl->plan.stages[s].first_layer, "end_layer",
                                        (json_int_t)cl->plan.stages[s].end_layer, "nodes", ids));
    }
    return arr;
}

/* Per-layer imbalance and pairs, with the bias drift when the biases are known. */
static json_t *layers_json(const dsc_cluster_load_t *ld)
{
    json_t *arr = json_array();
    for (uint32_t i = 0; arr != NULL && i < ld->n_layers; i++) {
        uint64_t pairs = 0;
        for (uint32_t e = 0; e < ld->n_experts; e++)
            pairs += ld->counts[(size_t)i * ld->n_experts + e];
        json_t *o =
            json_pack("{s:I, s:I, s:o}", "layer", (json_int_t)(ld->first_layer + i), "pairs",
                      (json_int_t)pairs, "imbalance", figure(ld->layer_imbalance[i]));
        if (o != NULL && ld->bias_available) {
            json_object_set_new(o, "bias_drift_max", json_real(ld->bias_drift_max[i]));
            json_object_set_new(o, "bias_drift_mean", json_real(ld->bias_drift_mean[i]));
        }
        json_array_append_new(arr, o);
    }
    return arr;
}

static json_t *bias_json(const dsc_cluster_load_t *ld)
{
    double max = 0, mean = 0;
    for (uint32_t i = 0; ld->bias_available && i < ld->n_layers; i++) {
        max = ld->bias_drift_max[i] > max ? ld->bias_drift_max[i] : max;
        mean += ld->bias_drift_mean[i] / ld->n_layers;
    }
    return json_pack("{s:b, s:f, s:o, s:o}", "available", ld->bias_available, "gamma",
                     (double)ld->bias_gamma, "max_drift",
                     ld->bias_available ? json_real(max) : json_null(), "mean_drift",
                     ld->bias_available ? json_real(mean) : json_null());
}

char *dsc_cluster_status_json(dsc_cluster_t *cl)
{
    dsc_cluster_load_t ld;
    dsc_cluster_load_snapshot(cl, &ld);
    dsc_cluster_stats_t st;
    dsc_cluster_stats(cl, &st);
    json_t *root = json_pack(
        "{s:I, s:b, s:o, s:o, s:{s:I, s:I, s:I, s:o, s:o}, s:o, s:I, s:I, s:I, s:I, s:I, s:I}",
        "epoch", (json_int_t)(cl->planned ? cl->plan.epoch : 0), "serving", cl->ready, "nodes",
        nodes_json(cl), "stages", stages_json(cl), "load", "window_ms", (json_int_t)ld.window_ms,
        "windows", (json_int_t)ld.n_windows, "pairs", (json_int_t)ld.total, "imbalance",
        figure(ld.imbalance), "layers", layers_json(&ld), "bias", bias_json(&ld), "replans",
        (json_int_t)st.replans, "rebalances", (json_int_t)st.rebalances, "bytes_moved",
        (json_int_t)st.bytes_moved, "sequences_active", (json_int_t)st.sequences_active,
        "nodes_lost", (json_int_t)st.nodes_dead, "bias_updates", (json_int_t)st.bias_updates);
    if (root == NULL)
        return NULL;
    json_object_set_new(root, "replicas_per_layer",
                        cl->eplb_active ? json_integer(cl->eplb_redundant) : json_integer(0));
    static const char *phases[] = {"none", "preparing", "draining"};
    json_object_set_new(root, "live_switches", json_integer((json_int_t)st.live_switches));
    json_object_set_new(root, "preemptions", json_integer((json_int_t)st.preemptions));
    json_object_set_new(root, "prefix_prompt_tokens",
                        json_integer((json_int_t)st.prefix_prompt_tokens));
    json_object_set_new(root, "prefix_hit_tokens", json_integer((json_int_t)st.prefix_hit_tokens));
    json_object_set_new(root, "prefix_misses", json_integer((json_int_t)st.prefix_misses));
    json_object_set_new(root, "kv_moved_sequences",
                        json_integer((json_int_t)st.kv_moved_sequences));
    json_object_set_new(root, "kv_moved_bytes", json_integer((json_int_t)st.kv_moved_bytes));
    json_object_set_new(root, "kv_move_failures", json_integer((json_int_t)st.kv_move_failures));
    json_object_set_new(root, "reprefilled", json_integer((json_int_t)st.reprefilled));
    json_object_set_new(root, "switch", json_string(phases[cl->switch_phase]));
    dsc_cluster_condition_t cond;
    dsc_cluster_condition(cl, &cond);
    json_object_set_new(root, "state", json_string(dsc_cluster_phase_name(cond.phase)));
    json_object_set_new(root, "message", json_string(cond.message));
    if (cond.missing_bytes > 0)
        json_object_set_new(root, "missing_bytes", json_integer((json_int_t)cond.missing_bytes));
    char *text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return text;
}

/* ---- ADMIN ---- */

static void reply(conn_state_t *cs, uint32_t command, json_t *body)
{
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (text == NULL) {
        dst_ctrl_send_error(cs->conn, DSI_ERR_NOMEM, DST_MSG_ADMIN, "out of memory");
        return;
    }
    dst_msg_t m = {.type = DST_MSG_ADMIN_REPLY};
    m.admin_reply.command = command;
    m.admin_reply.json = text;
    dsc_cluster_send(cs->conn, &m);
    free(text);
}

static void admin_status(dsc_cluster_t *cl, conn_state_t *cs)
{
    char *text = dsc_cluster_status_json(cl);
    if (text == NULL || strlen(text) >= DST_MSG_JSON_MAX) {
        dst_ctrl_send_error(cs->conn, text ? DSI_ERR_TOO_LARGE : DSI_ERR_NOMEM, DST_MSG_ADMIN,
                            "the status does not fit one reply");
        free(text);
        return;
    }
    dst_msg_t m = {.type = DST_MSG_ADMIN_REPLY};
    m.admin_reply.command = DST_ADMIN_STATUS;
    m.admin_reply.json = text;
    dsc_cluster_send(cs->conn, &m);
    free(text);
}

static void admin_rebalance(dsc_cluster_t *cl, conn_state_t *cs)
{
    dsc_rebalance_report_t r;
    dsi_status_t st = dsc_cluster_rebalance(cl, "operator request", &r);
    if (st != DSI_OK) {
        dst_ctrl_send_error(cs->conn, st, DST_MSG_ADMIN, "rebalance refused: %s",
                            st == DSI_ERR_NOT_FOUND     ? "no expert load counted yet"
                            : st == DSI_ERR_UNSUPPORTED ? "the cluster is not serving a plan now"
                                                        : dsi_status_message(st));
        return;
    }
    reply(cs, DST_ADMIN_REBALANCE,
          json_pack("{s:I, s:f, s:f, s:I, s:I, s:I, s:I}", "epoch", (json_int_t)r.epoch,
                    "imbalance_before", r.imbalance_before, "imbalance_after", r.imbalance_after,
                    "replicas_per_layer", (json_int_t)r.redundant_experts, "replicas",
                    (json_int_t)r.replicas, "experts_moved", (json_int_t)r.experts_moved,
                    "bytes_moved", (json_int_t)r.bytes_moved));
}

static void admin_drain(dsc_cluster_t *cl, conn_state_t *cs, uint32_t id)
{
    dsi_status_t st = dsc_cluster_drain(cl, id);
    if (st == DSI_ERR_NOT_FOUND && id < cl->n_nodes) {
        dst_ctrl_send_error(cs->conn, st, DST_MSG_ADMIN,
                            "drain of node %u refused: node %u '%s' is %s already", id, id,
                            cl->nodes[id].name, node_state_name(&cl->nodes[id]));
        return;
    }
    if (st != DSI_OK) {
        dst_ctrl_send_error(cs->conn, st, DST_MSG_ADMIN, "drain of node %u refused: %s", id,
                            st == DSI_ERR_NOT_FOUND ? "no node has that id (see the ids of "
                                                      "`dsinfer cluster status`)"
                                                    : dsi_status_message(st));
        return;
    }
    reply(cs, DST_ADMIN_DRAIN,
          json_pack("{s:I, s:s, s:b}", "node", (json_int_t)id, "name", cl->nodes[id].name,
                    "draining", 1));
}

void dsc_cluster_on_admin(dsc_cluster_t *cl, conn_state_t *cs, const dst_msg_admin_t *m)
{
    const char *what = dst_msg_admin_name(m->command);
    if (cs->kind == PEER_NODE) {
        dst_ctrl_send_error(cs->conn, DSI_ERR_PROTOCOL, DST_MSG_ADMIN, "nodes do not administer");
        return;
    }
    if (!dst_msg_admin_verify(&cl->opts.secret, cs->nonce, m)) {
        DSI_ERROR("ADMIN %s from %s: authentication failed (wrong shared-secret proof): refused",
                  what, dst_ctrl_conn_peer(cs->conn));
        cl->stats.bad_admin++;
        dst_ctrl_send_error(cs->conn, DSI_ERR_AUTH, DST_MSG_ADMIN,
                            "authentication failed (wrong shared-secret proof)");
        dst_ctrl_conn_close(cs->conn);
        return;
    }
    DSI_INFO("ADMIN %s from %s", what, dst_ctrl_conn_peer(cs->conn));
    switch (m->command) {
    case DST_ADMIN_STATUS:
        admin_status(cl, cs);
        break;
    case DST_ADMIN_REBALANCE:
        admin_rebalance(cl, cs);
        break;
    case DST_ADMIN_DRAIN:
        admin_drain(cl, cs, m->arg);
        break;
    case DST_ADMIN_CLIENT:
        cs->client_ok = 1;
        reply(cs, DST_ADMIN_CLIENT, json_pack("{s:b}", "client", 1));
        break;
    default: /* the decoder refuses other commands */
        break;
    }
}
