/* dsc_cluster_replan.c - planning and re-planning the cluster (epochs), and its lanes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsc_cluster_impl.h"
#include "dsi_log.h"

dsi_status_t dsc_cluster_build_lanes(dsc_cluster_t *cl)
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
    dsc_prefix_route_reset(cl->prefix_route); /* lanes renumbered: the record is stale */
    return DSI_OK;
}

/* A draining node that p leaves out but that is still there: in a live switch or a restart that
 * keeps the KV caches it may send its sequences' rows to p's nodes. */
static int leaving(const node_t *n, const dst_plan_t *p)
{
    return n->draining && n->state != NODE_DEAD && n->cs != NULL &&
           dsc_plan_node_index(p, n->id) < 0;
}

void dsc_cluster_send_plan(dsc_cluster_t *cl, const dst_plan_t *p, int live)
{
    if (p->epoch > cl->last_epoch)
        cl->last_epoch = p->epoch;
    /* PEERS: p's nodes and, unless this is a plain restart, the nodes leaving that may still
     * send KV rows (every node of p can then take them, a node that joins with p too). */
    dst_msg_peer_t *peers = calloc((size_t)p->n_nodes + cl->n_nodes, sizeof(*peers));
    if (peers == NULL)
        return;
    uint32_t n_peers = 0;
    for (uint32_t i = 0; i < p->n_nodes + cl->n_nodes; i++) {
        const node_t *n =
            i < p->n_nodes ? &cl->nodes[p->nodes[i].node_id] : &cl->nodes[i - p->n_nodes];
        if (i >= p->n_nodes && (live == 0 || !leaving(n, p)))
            continue;
        peers[n_peers].node_id = n->id;
        peers[n_peers].ucx_addr = n->ucx_addr;
        peers[n_peers].ucx_addr_len = n->ucx_addr_len;
        n_peers++;
    }
    dst_msg_t pm = {.type = DST_MSG_PLAN};
    pm.plan.plan = *p;
    pm.plan.live = (uint8_t)live;
    dst_msg_t pe = {.type = DST_MSG_PEERS};
    pe.peers.epoch = p->epoch;
    pe.peers.n_peers = n_peers;
    pe.peers.peers = peers;
    for (uint32_t i = 0; i < p->n_nodes; i++) {
        node_t *n = &cl->nodes[p->nodes[i].node_id];
        if (live != 1)
            n->state = NODE_JOINED; /* until it is READY in this epoch */
        dsc_cluster_send_node(cl, n->id, &pm);
        dsc_cluster_send_node(cl, n->id, &pe);
    }
    /* The nodes leaving get the PEERS alone: they connect to nodes that joined with p. */
    for (uint32_t i = 0; i < cl->n_nodes && live != 0; i++) {
        if (leaving(&cl->nodes[i], p))
            dsc_cluster_send_node(cl, cl->nodes[i].id, &pe);
    }
    free(peers);
}

uint32_t dsc_cluster_live_descs(const dsc_cluster_t *cl, dsc_node_desc_t *descs)
{
    uint32_t n_live = 0;
    for (uint32_t i = 0; i < cl->n_nodes; i++) {
        const node_t *n = &cl->nodes[i];
        if (dsc_node_live(n))
            descs[n_live++] = (dsc_node_desc_t){n->id, n->mem_budget, n->cores, n->name};
    }
    return n_live;
}

/*
 * Plans the live nodes with `po`. Replicas are a luxury: when the plan does not fit with
 * po->redundant_experts of them, fewer are tried, down to none. *used gets the count that fit.
 */
static dsi_status_t plan_live(dsc_cluster_t *cl, const dsc_plan_opts_t *po, dst_plan_t *plan,
                              dsc_plan_report_t *report, uint32_t *used)
{
    dsc_node_desc_t descs[DSC_MAX_NODES];
    uint32_t n_live = dsc_cluster_live_descs(cl, descs);
    memset(report, 0, sizeof(*report));
    if (n_live == 0) {
        snprintf(report->reason, sizeof(report->reason), "no live node");
        return DSI_ERR_CAPACITY;
    }
    dsc_plan_opts_t o = *po;
    for (;;) {
        memset(report, 0, sizeof(*report));
        dsi_status_t st = dsc_planner_plan(&cl->cfg, descs, n_live, &o, plan, report);
        if (st != DSI_ERR_CAPACITY || o.redundant_experts == 0) {
            if (used != NULL)
                *used = o.redundant_experts;
            return st;
        }
        DSI_WARN("%u replicas per layer do not fit the live nodes: trying %u", o.redundant_experts,
                 o.redundant_experts / 2);
        o.redundant_experts /= 2;
    }
}

/* Expert copies and weight bytes that nodes of `next` must load that `prev` did not give them. */
static void count_moved(const dsc_cluster_t *cl, const dst_plan_t *prev, const dst_plan_t *next,
                        uint64_t *experts, uint64_t *bytes)
{
    dsc_memory_t mem;
    *experts = *bytes = 0;
    if (dsc_memory_compute(&cl->cfg, cl->opts.plan.format, &mem) != DSI_OK)
        return;
    size_t slots = dst_plan_slots(next);
    for (size_t i = 0; i < slots; i++) {
        for (uint32_t h = next->expert_offsets[i]; h < next->expert_offsets[i + 1]; h++)
            *experts += !dst_plan_holds(prev, i, next->expert_holders[h]);
    }
    *bytes = *experts * mem.expert;
    for (uint32_t i = 0; i < next->n_nodes; i++) {
        const dst_plan_stage_t *ns = &next->stages[next->nodes[i].stage];
        int j = dsc_plan_node_index(prev, next->nodes[i].node_id);
        const dst_plan_stage_t *ps = j >= 0 ? &prev->stages[prev->nodes[j].stage] : NULL;
        for (uint32_t l = ns->first_layer; l < ns->end_layer; l++) {
            if (ps == NULL || l < ps->first_layer || l >= ps->end_layer)
                *bytes += dsc_memory_layer_fixed(&mem, &cl->cfg, l);
        }
        if (ns->first_layer == 0 && (ps == NULL || ps->first_layer != 0))
            *bytes += mem.embed;
        if (ns->end_layer == next->n_layers && (ps == NULL || ps->end_layer != prev->n_layers))
            *bytes += mem.head;
    }
}

/* Serving stops until every node of the new plan is READY; open sequences wait for it. With
 * the live re-plans on, those whose nodes are all alive keep their KV rows there (the nodes keep
 * them across the restart, PLAN.live 2) and move with them once the new plan serves. */
static void stop_serving(dsc_cluster_t *cl)
{
    dsc_switch_abort(cl);
    if (cl->ready) {
        cl->unready_since_ns = dsc_now_ns();
        if (cl->opts.live_switch && cl->planned)
            dsc_kvcarry_hold(cl);
    }
    cl->ready = 0;
    cl->drain_hold = 0; /* the held requests wait for the next plan like the others */
    /* Nothing runs across epochs: the other open sequences are withdrawn and re-submitted when
     * the new plan serves. */
    dsc_seq_withdraw_all(cl);
}

/* Some sequence keeps its rows on the nodes across this restart. */
static int carrying(const dsc_cluster_t *cl)
{
    dsi_list_for_each(s, &cl->seqs, seq_t, link) {
        if (s->carry)
            return 1;
    }
    return 0;
}

/*
 * Makes `plan` (moved in) the current one and sends it: by a live switch when live_ok and the
 * plan allows one (the current plan serves meanwhile), else stopping the world.
 */
static int install_plan(dsc_cluster_t *cl, dst_plan_t *plan, const dsc_plan_report_t *report,
                        uint64_t experts_moved, uint64_t bytes_moved, const char *why, int live_ok)
{
    int live = live_ok && dsc_switch_possible(cl, plan);
    DSI_INFO("plan epoch %llu (%s): %u stages over %u nodes, busiest node %.0f%%, %llu expert "
             "copies (%llu replicas), %llu moved (%.1f MiB), %s",
             (unsigned long long)plan->epoch, why, plan->n_stages, plan->n_nodes,
             report->max_use * 100, (unsigned long long)report->expert_copies,
             (unsigned long long)report->replicas,
             (unsigned long long)(cl->planned ? experts_moved : 0),
             (double)(cl->planned ? bytes_moved : 0) / (1 << 20),
             live          ? "live switch"
             : cl->planned ? "restarting requests"
                           : "first plan");
    cl->stats.replans += cl->planned;
    cl->stats.bytes_moved += cl->planned ? bytes_moved : 0;
    cl->plan_error[0] = '\0';
    cl->plan_missing = 0;
    if (live) {
        int held = cl->drain_hold != 0;
        cl->drain_hold = 0;
        dsc_switch_begin(cl, plan);
        if (held && cl->ready)
            dsc_seq_submit_all(cl); /* the requests a drain hold kept back */
        return 0;
    }
    stop_serving(cl);
    dsc_plan_cleanup(&cl->plan);
    cl->plan = *plan;
    memset(plan, 0, sizeof(*plan));
    if (dsc_cluster_build_lanes(cl) != DSI_OK) {
        DSI_ERROR("out of memory building lanes");
        return -1;
    }
    cl->planned = 1;
    int keep = carrying(cl);
    dsc_cluster_send_plan(cl, &cl->plan, keep ? 2 : 0);
    return 0;
}

/* ---- a plan that outlived its coordinator ---- */

/* A deep copy of p with every node id mapped through map (old id -> new id, UINT32_MAX: none);
 * DSI_ERR_NOT_FOUND when an id has no image. */
static dsi_status_t plan_remap(const dst_plan_t *p, const uint32_t *old_ids,
                               const uint32_t *new_ids, uint32_t n_map, dst_plan_t *out)
{
    dst_plan_t q = *p;
    size_t slots = dst_plan_slots(p), holders = p->expert_offsets[slots];
    size_t mtp = p->mtp_offsets != NULL ? p->mtp_offsets[p->n_experts] : 0;
    q.stages = malloc((size_t)p->n_stages * sizeof(*q.stages));
    q.nodes = malloc((size_t)p->n_nodes * sizeof(*q.nodes));
    q.expert_offsets = malloc((slots + 1) * sizeof(uint32_t));
    q.expert_holders = malloc((holders > 0 ? holders : 1) * sizeof(uint32_t));
    q.mtp_offsets = p->mtp_offsets != NULL ? malloc((p->n_experts + 1) * sizeof(uint32_t)) : NULL;
    q.mtp_holders = p->mtp_offsets != NULL ? malloc((mtp > 0 ? mtp : 1) * sizeof(uint32_t)) : NULL;
    if (!q.stages || !q.nodes || !q.expert_offsets || !q.expert_holders ||
        (p->mtp_offsets != NULL && (!q.mtp_offsets || !q.mtp_holders))) {
        dsc_plan_cleanup(&q);
        return DSI_ERR_NOMEM;
    }
    memcpy(q.stages, p->stages, (size_t)p->n_stages * sizeof(*q.stages));
    memcpy(q.nodes, p->nodes, (size_t)p->n_nodes * sizeof(*q.nodes));
    memcpy(q.expert_offsets, p->expert_offsets, (slots + 1) * sizeof(uint32_t));
    memcpy(q.expert_holders, p->expert_holders, holders * sizeof(uint32_t));
    if (p->mtp_offsets != NULL) {
        memcpy(q.mtp_offsets, p->mtp_offsets, (p->n_experts + 1) * sizeof(uint32_t));
        memcpy(q.mtp_holders, p->mtp_holders, mtp * sizeof(uint32_t));
    }
    for (size_t i = 0; i < p->n_nodes + holders + mtp; i++) {
        uint32_t *id = i < p->n_nodes             ? &q.nodes[i].node_id
                       : i < p->n_nodes + holders ? &q.expert_holders[i - p->n_nodes]
                                                  : &q.mtp_holders[i - p->n_nodes - holders];
        uint32_t k = 0;
        while (k < n_map && old_ids[k] != *id)
            k++;
        if (k == n_map) {
            dsc_plan_cleanup(&q);
            return DSI_ERR_NOT_FOUND;
        }
        *id = new_ids[k];
    }
    *out = q;
    return DSI_OK;
}

void dsc_cluster_held_plan(dsc_cluster_t *cl, const node_t *n, const dst_plan_t *p)
{
    if (cl->planned || n->held_epoch == 0 || p->epoch != n->held_epoch ||
        (cl->has_held && cl->held_plan.epoch >= p->epoch))
        return;
    if (p->n_layers != (uint32_t)cl->cfg.num_hidden_layers ||
        p->first_moe_layer != (uint32_t)cl->cfg.first_k_dense_replace ||
        p->n_experts != (uint32_t)cl->cfg.n_routed_experts || dsc_plan_check(p) != DSI_OK) {
        DSI_WARN("node %u '%s' holds a plan of epoch %llu that does not fit this model: ignored",
                 n->id, n->name, (unsigned long long)p->epoch);
        return;
    }
    /* A copy that outlives the message (ids unchanged: mapped when adopted). */
    uint32_t *ids = malloc((size_t)p->n_nodes * sizeof(uint32_t));
    if (ids == NULL)
        return;
    for (uint32_t i = 0; i < p->n_nodes; i++)
        ids[i] = p->nodes[i].node_id;
    dst_plan_t held;
    dsi_status_t st = plan_remap(p, ids, ids, p->n_nodes, &held);
    free(ids);
    if (st != DSI_OK)
        return;
    dsc_plan_cleanup(&cl->held_plan);
    cl->held_plan = held;
    cl->has_held = 1;
    DSI_INFO("node %u '%s' still serves plan epoch %llu (its id there: %u)", n->id, n->name,
             (unsigned long long)p->epoch, n->held_id);
}

/* A live node announced (REGISTER's held_epoch) a plan newer than any it sent back so far: it
 * sends it right after WELCOME. */
static int held_plan_pending(const dsc_cluster_t *cl)
{
    uint64_t have = cl->has_held ? cl->held_plan.epoch : 0;
    for (uint32_t i = 0; i < cl->n_nodes; i++) {
        if (dsc_node_live(&cl->nodes[i]) && cl->nodes[i].held_epoch > have)
            return 1;
    }
    return 0;
}

/*
 * The first plan of a restarted coordinator: when every node of the plan the nodes still serve
 * is live again with that plan's epoch, that plan, ids mapped to the new ones, under a new epoch:
 * every node finds its slice unchanged and loads nothing. 1 when *out was made.
 */
static int adopt_held_plan(dsc_cluster_t *cl, dst_plan_t *out)
{
    const dst_plan_t *h = &cl->held_plan;
    if (cl->planned || !cl->has_held)
        return 0;
    uint32_t old_ids[DSC_MAX_NODES], new_ids[DSC_MAX_NODES], n_map = 0;
    for (uint32_t i = 0; i < cl->n_nodes && n_map < DSC_MAX_NODES; i++) {
        const node_t *n = &cl->nodes[i];
        if (dsc_node_live(n) && n->held_epoch == h->epoch) {
            old_ids[n_map] = n->held_id;
            new_ids[n_map++] = n->id;
        }
    }
    if (n_map != h->n_nodes || plan_remap(h, old_ids, new_ids, n_map, out) != DSI_OK)
        return 0;
    out->epoch = cl->last_epoch + 1;
    return 1;
}

/*
 * A drain no plan can absorb: the nodes left would be too few for the stages or lack the memory,
 * so a draining node of the current plan cannot leave without the service stopping. Rather than
 * serve new requests it would not finish until its own deadline (60 s), the cluster holds new
 * requests back (queued in order) while the running ones end, then releases the draining nodes;
 * it then waits for nodes to join, with the held requests queued (the stall timeout bounds
 * their wait). A plan found meanwhile (a node joined) ends the hold.
 */
static void drain_hold_begin(dsc_cluster_t *cl)
{
    if (cl->drain_hold != 0)
        return;
    for (uint32_t i = 0; i < cl->n_nodes; i++) {
        const node_t *d = &cl->nodes[i];
        if (d->draining && d->state != NODE_DEAD && d->cs != NULL &&
            dsc_plan_node_index(&cl->plan, d->id) >= 0) {
            cl->drain_hold = 1;
            break;
        }
    }
    if (cl->drain_hold == 0)
        return;
    uint32_t running = 0;
    dsi_list_for_each(s, &cl->seqs, seq_t, link)
        running += s->submitted != 0;
    DSI_WARN("no plan without the draining node(s): new requests are held until the %u "
             "running ones end, then the node(s) leave and the cluster waits for nodes to join",
             running);
    dsc_cluster_drain_hold_tick(cl);
}

/*
 * SHUTDOWN ("drained") to the draining nodes still connected: those the current plan leaves out,
 * or with in_plan_too every one (no plan goes without them and nothing runs); `how` ends the log
 * line.
 */
static void release_draining(dsc_cluster_t *cl, int in_plan_too, const char *how)
{
    for (uint32_t i = 0; i < cl->n_nodes; i++) {
        node_t *d = &cl->nodes[i];
        if (d->draining && d->state != NODE_DEAD && d->cs != NULL &&
            (in_plan_too || dsc_plan_node_index(&cl->plan, d->id) < 0)) {
            dst_msg_t m = {.type = DST_MSG_SHUTDOWN};
            snprintf(m.shutdown.reason, sizeof(m.shutdown.reason), "drained");
            dsc_cluster_send(d->cs->conn, &m);
            DSI_INFO("node %u '%s' drained: released%s", d->id, d->name, how);
        }
    }
}

#define NO_PLAN_WITHOUT " with no request running (no plan without it)"

void dsc_cluster_drain_hold_tick(dsc_cluster_t *cl)
{
    if (cl->drain_hold != 1)
        return;
    dsi_list_for_each(s, &cl->seqs, seq_t, link) {
        if (s->submitted)
            return;
    }
    cl->drain_hold = 2;
    release_draining(cl, 1, NO_PLAN_WITHOUT);
}

int dsc_cluster_replan(dsc_cluster_t *cl, const char *why, int live_ok)
{
    if (cl->shut_down)
        return -1;
    if (cl->switch_phase != SWITCH_NONE && live_ok) {
        /* One switch at a time: this one plans from where the current switch ends. */
        snprintf(cl->deferred_why, sizeof(cl->deferred_why), "%s", why);
        DSI_INFO("re-plan (%s) deferred until the live switch in progress ends", why);
        return 0;
    }
    /* A loss (no live_ok) stops serving at once: work routed to the lost node cannot finish. */
    live_ok = live_ok && cl->ready;
    if (!live_ok)
        stop_serving(cl);
    dsc_plan_opts_t po = cl->opts.plan;
    po.previous = cl->planned ? &cl->plan : NULL;
    po.epoch = cl->last_epoch + 1;
    /* After a rebalance, membership changes keep placing by load (and keep replicas): experts
     * stay where they are when they can, the hot ones keep their copies. */
    if (cl->eplb_active && cl->load != NULL && dsc_load_total(cl->load) > 0) {
        po.load = dsc_load_counts(cl->load);
        po.redundant_experts = cl->eplb_redundant;
    }
    /* A stage count chosen for the old membership may not divide the new one: let the planner
     * choose again unless the user fixed it and it still fits (the planner checks). */
    dst_plan_t plan;
    dsc_plan_report_t report;
    if (!cl->planned && held_plan_pending(cl)) {
        DSI_INFO("first plan (%s): waiting for the plan a node still serves", why);
        return 0;
    }
    if (adopt_held_plan(cl, &plan)) {
        memset(&report, 0, sizeof(report));
        dsc_plan_cleanup(&cl->held_plan);
        cl->has_held = 0;
        return install_plan(cl, &plan, &report, 0, 0,
                            "the plan the nodes still serve, kept across a coordinator restart", 0);
    }
    dsi_status_t st = plan_live(cl, &po, &plan, &report, NULL);
    if (st != DSI_OK && live_ok) {
        DSI_ERROR("cannot plan the model over the live nodes (%s): %s; the current plan keeps "
                  "serving",
                  why, report.reason[0] ? report.reason : dsi_status_message(st));
        drain_hold_begin(cl);
        return -1;
    }
    if (st != DSI_OK) {
        DSI_ERROR("cannot plan the model over the live nodes (%s): %s; requests stay queued "
                  "until nodes join",
                  why, report.reason[0] ? report.reason : dsi_status_message(st));
        snprintf(cl->plan_error, sizeof(cl->plan_error), "%s",
                 report.reason[0] ? report.reason : dsi_status_message(st));
        cl->plan_missing = report.missing_bytes;
        dsc_kvcarry_drop(cl); /* no plan to move to: the nodes may drop the rows */
        /* Serving stopped and every sequence was withdrawn: a draining node has nothing left
         * to finish, and no plan will need it. */
        release_draining(cl, 1, NO_PLAN_WITHOUT);
        dsc_cluster_set_state(cl, DSI_ERR_CAPACITY);
        return -1;
    }
    return install_plan(cl, &plan, &report, report.experts_moved, report.bytes_moved, why, live_ok);
}

dsi_status_t dsc_cluster_rebalance(dsc_cluster_t *cl, const char *why, dsc_rebalance_report_t *out)
{
    if (cl->shut_down || !cl->planned || !cl->ready || cl->switch_phase != SWITCH_NONE) {
        DSI_ERROR("rebalance (%s) refused: the cluster is not serving one settled plan now", why);
        return DSI_ERR_UNSUPPORTED;
    }
    if (cl->load == NULL || dsc_load_total(cl->load) == 0) {
        DSI_ERROR("rebalance (%s) refused: no expert load counted in the window yet", why);
        return DSI_ERR_NOT_FOUND;
    }
    uint32_t E = cl->plan.n_experts;
    uint32_t want =
        cl->opts.redundant_experts == DSC_REDUNDANT_AUTO ? E / 8 : cl->opts.redundant_experts;
    const uint64_t *counts = dsc_load_counts(cl->load);
    /* EPLB from scratch over the same stages: the previous placement is not a constraint
     * (that is what makes group packing possible); what moves is counted against it below. */
    dsc_plan_opts_t po = cl->opts.plan;
    po.previous = NULL;
    po.epoch = cl->last_epoch + 1;
    if (po.n_stages == 0)
        po.n_stages = cl->plan.n_stages;
    po.load = counts;
    po.redundant_experts = want;
    dst_plan_t plan;
    dsc_plan_report_t report;
    uint32_t used = 0;
    dsi_status_t st = plan_live(cl, &po, &plan, &report, &used);
    if (st != DSI_OK) {
        DSI_ERROR("rebalance (%s) refused by the planner: %s", why,
                  report.reason[0] ? report.reason : dsi_status_message(st));
        return st;
    }
    dsc_rebalance_report_t r = {0};
    r.epoch = plan.epoch;
    r.imbalance_before = dsc_load_imbalance(&cl->plan, counts, NULL);
    r.imbalance_after = dsc_load_imbalance(&plan, counts, NULL);
    r.redundant_experts = used;
    r.replicas = report.replicas;
    count_moved(cl, &cl->plan, &plan, &r.experts_moved, &r.bytes_moved);
    DSI_INFO("rebalance (%s): imbalance %.3f -> %.3f with %u replicas per layer", why,
             r.imbalance_before, r.imbalance_after, used);
    cl->eplb_active = 1;
    cl->eplb_redundant = used;
    cl->last_rebalance_ns = dsc_now_ns();
    cl->stats.rebalances++;
    if (install_plan(cl, &plan, &report, r.experts_moved, r.bytes_moved, why, 1) != 0)
        return DSI_ERR_NOMEM;
    if (out != NULL)
        *out = r;
    return DSI_OK;
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
    /* The nodes loaded the checkpoint's router biases: changed ones go out before any SUBMIT
     * (the same connection keeps the order). */
    dsc_cluster_push_biases(cl);
    /* Sequences that kept their rows move first; a drained node that sends some is released
     * once every move ended (dsc_cluster_kvmove.c). */
    dsc_kvcarry_begin(cl);
    if (dsc_kvmove_pending(cl) == 0)
        dsc_cluster_release_drained(cl);
    else
        cl->carry_release = 1;
    dsc_seq_submit_all(cl);
    dsc_cluster_set_state(cl, DSI_OK);
}

void dsc_cluster_release_drained(dsc_cluster_t *cl)
{
    release_draining(cl, 0, "");
}
