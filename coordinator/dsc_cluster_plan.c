/* dsc_cluster_plan.c - planning and re-planning the cluster (epochs), and its lanes. */
#include <stdlib.h>
#include <string.h>

#include "dsc_cluster_impl.h"
#include "dsi_log.h"

static dsi_status_t build_lanes(dsc_cluster_t *cl)
{
    const dst_plan_t *p = &cl->plan;
    uint32_t lanes = 0;
    for (uint32_t s = 0; s < p->n_stages; s++) {
        uint32_t k = 0;
        for (uint32_t i = 0; i < p->n_nodes; i++)
            k += p->nodes[i].stage == s;
        lanes = k > lanes ? k : lanes;
    }
    uint32_t *table = calloc((size_t)p->n_stages * lanes, sizeof(uint32_t));
    if (table == NULL)
        return DSI_ERR_NOMEM;
    for (uint32_t s = 0; s < p->n_stages; s++) {
        uint32_t ids[DSC_MAX_NODES], k = 0;
        for (uint32_t i = 0; i < p->n_nodes; i++) {
            if (p->nodes[i].stage == s)
                ids[k++] = p->nodes[i].node_id;
        }
        for (uint32_t l = 0; l < lanes; l++)
            table[s * lanes + l] = ids[l % k];
    }
    free(cl->lane_nodes);
    cl->lane_nodes = table;
    cl->n_lanes = lanes;
    return DSI_OK;
}

static void send_plan(dsc_cluster_t *cl)
{
    const dst_plan_t *p = &cl->plan;
    dst_msg_peer_t *peers = calloc(p->n_nodes, sizeof(*peers));
    if (peers == NULL)
        return;
    for (uint32_t i = 0; i < p->n_nodes; i++) {
        const node_t *n = &cl->nodes[p->nodes[i].node_id];
        peers[i].node_id = n->id;
        peers[i].ucx_addr = n->ucx_addr;
        peers[i].ucx_addr_len = n->ucx_addr_len;
    }
    dst_msg_t pm = {.type = DST_MSG_PLAN};
    pm.plan.plan = *p;
    dst_msg_t pe = {.type = DST_MSG_PEERS};
    pe.peers.epoch = p->epoch;
    pe.peers.n_peers = p->n_nodes;
    pe.peers.peers = peers;
    for (uint32_t i = 0; i < p->n_nodes; i++) {
        node_t *n = &cl->nodes[p->nodes[i].node_id];
        n->state = NODE_JOINED; /* until it is READY in this epoch */
        dsc_cluster_send_node(cl, n->id, &pm);
        dsc_cluster_send_node(cl, n->id, &pe);
    }
    free(peers);
}

int dsc_cluster_replan(dsc_cluster_t *cl, const char *why)
{
    if (cl->shut_down)
        return -1;
    if (cl->ready)
        cl->unready_since_ns = dsc_now_ns();
    cl->ready = 0;
    /* Nothing runs across epochs: open sequences are withdrawn and re-submitted when the new
     * plan serves. */
    dsc_seq_withdraw_all(cl);

    dsc_node_desc_t descs[DSC_MAX_NODES];
    uint32_t n_live = 0;
    for (uint32_t i = 0; i < cl->n_nodes; i++) {
        const node_t *n = &cl->nodes[i];
        if (dsc_node_live(n))
            descs[n_live++] = (dsc_node_desc_t){n->id, n->mem_budget, n->cores};
    }
    dsc_plan_opts_t po = cl->opts.plan;
    po.previous = cl->planned ? &cl->plan : NULL;
    po.epoch = cl->planned ? cl->plan.epoch + 1 : 1;
    /* A stage count chosen for the old membership may not divide the new one: let the planner
     * choose again unless the user fixed it and it still fits (the planner checks). */
    dst_plan_t plan;
    dsc_plan_report_t report;
    memset(&report, 0, sizeof(report));
    dsi_status_t st = n_live > 0 ? dsc_planner_plan(&cl->cfg, descs, n_live, &po, &plan, &report)
                                 : DSI_ERR_CAPACITY;
    if (st != DSI_OK) {
        DSI_ERROR("cannot plan the model over the %u live nodes (%s): %s; requests stay queued "
                  "until nodes join",
                  n_live, why, report.reason[0] ? report.reason : "no live node");
        dsc_cluster_set_state(cl, DSI_ERR_CAPACITY);
        return -1;
    }
    dsc_plan_cleanup(&cl->plan);
    cl->plan = plan;
    if (build_lanes(cl) != DSI_OK) {
        DSI_ERROR("out of memory building lanes");
        return -1;
    }
    DSI_INFO("plan epoch %llu (%s): %u stages over %u nodes, %u lanes, busiest node %.0f%%, "
             "%llu expert copies moved (%.1f MiB)",
             (unsigned long long)cl->plan.epoch, why, cl->plan.n_stages, cl->plan.n_nodes,
             cl->n_lanes, report.max_use * 100,
             (unsigned long long)(cl->planned ? report.experts_moved : 0),
             (double)(cl->planned ? report.bytes_moved : 0) / (1 << 20));
    cl->stats.replans += cl->planned;
    cl->stats.bytes_moved += cl->planned ? report.bytes_moved : 0;
    cl->planned = 1;
    send_plan(cl);
    return 0;
}

void dsc_cluster_node_ready(dsc_cluster_t *cl, node_t *n)
{
    n->state = NODE_READY;
    for (uint32_t i = 0; i < cl->plan.n_nodes; i++) {
        if (cl->nodes[cl->plan.nodes[i].node_id].state != NODE_READY)
            return;
    }
    cl->ready = 1;
    DSI_INFO("epoch %llu: all %u nodes ready: serving", (unsigned long long)cl->plan.epoch,
             cl->plan.n_nodes);
    /* Draining nodes are out of this plan: they may go now. */
    for (uint32_t i = 0; i < cl->n_nodes; i++) {
        node_t *d = &cl->nodes[i];
        if (d->draining && d->state != NODE_DEAD && d->cs != NULL) {
            dst_msg_t m = {.type = DST_MSG_SHUTDOWN};
            snprintf(m.shutdown.reason, sizeof(m.shutdown.reason), "drained");
            dsc_cluster_send(d->cs->conn, &m);
            DSI_INFO("node %u '%s' drained: released", d->id, d->name);
        }
    }
    dsc_seq_submit_all(cl);
    dsc_cluster_set_state(cl, DSI_OK);
}
