/*
 * dsc_cluster_switch.c - make-before-break re-plans (docs/ELASTICITY.md, "Live switch").
 *
 * When the new plan keeps every remaining node's stage exactly (same stage count and layer
 * ranges: joins into the same shape, drains, rebalances) and no node of the current plan is dead,
 * the cluster keeps serving the current plan while the new one loads:
 *
 *   PREPARE  PLAN(live) + PEERS to the new plan's nodes; they load what it adds beside what they
 *            hold and answer READY. Sequences keep running on the current plan's lanes.
 *   DRAIN    all READY: the new plan becomes current (lanes, biases), SWITCH goes to every node
 *            of both plans, and only sequences whose lane lost a node are re-submitted (their KV
 *            cache lived there). Nodes answer SWITCHED once nothing routed by the old plan waits.
 *   done     all SWITCHED: RELEASE to the new plan's nodes (they drop what only the old plan
 *            needed), SHUTDOWN to drained nodes, and a re-plan asked for meanwhile runs now.
 *
 * A node lost during a switch ends it: the stop-the-world re-plan of dsc_cluster_replan.c takes
 * over (every node leaves its epoch, every sequence is re-submitted).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsc_cluster_impl.h"
#include "dsi_log.h"

int dsc_cluster_involves(const dsc_cluster_t *cl, uint32_t id)
{
    return dsc_plan_node_index(&cl->plan, id) >= 0 ||
           (cl->switch_phase == SWITCH_PREPARE && dsc_plan_node_index(&cl->next_plan, id) >= 0) ||
           (cl->switch_phase == SWITCH_DRAIN && dsc_plan_node_index(&cl->prev_plan, id) >= 0);
}

/* Whether both plans give the MTP layer's experts the same holders (nodes load them with their
 * slice, so a live switch cannot move them). */
static int same_mtp(const dst_plan_t *cur, const dst_plan_t *next)
{
    if ((cur->mtp_offsets == NULL) != (next->mtp_offsets == NULL))
        return 0;
    if (cur->mtp_offsets == NULL)
        return 1;
    uint32_t E = cur->n_experts;
    return memcmp(cur->mtp_offsets, next->mtp_offsets, (E + 1) * sizeof(uint32_t)) == 0 &&
           memcmp(cur->mtp_holders, next->mtp_holders, cur->mtp_offsets[E] * sizeof(uint32_t)) == 0;
}

int dsc_switch_possible(const dsc_cluster_t *cl, const dst_plan_t *next)
{
    const dst_plan_t *cur = &cl->plan;
    if (!cl->opts.live_switch || !cl->ready || cl->switch_phase != SWITCH_NONE ||
        next->n_stages != cur->n_stages)
        return 0;
    for (uint32_t s = 0; s < cur->n_stages; s++) {
        if (next->stages[s].first_layer != cur->stages[s].first_layer ||
            next->stages[s].end_layer != cur->stages[s].end_layer)
            return 0;
    }
    for (uint32_t i = 0; i < cur->n_nodes; i++) {
        const node_t *n = &cl->nodes[cur->nodes[i].node_id];
        int j = dsc_plan_node_index(next, n->id);
        if (n->state == NODE_DEAD || n->cs == NULL)
            return 0; /* its experts have no live holder now: only a restart helps */
        if (j >= 0 && next->nodes[j].stage != cur->nodes[i].stage)
            return 0; /* its sequences' KV caches would be in the wrong stage */
    }
    if (!same_mtp(cur, next)) {
        DSI_INFO("the MTP layer's experts move to other nodes: restarting instead of a live "
                 "switch");
        return 0;
    }
    dsc_memory_t mem;
    int64_t full = dsc_memory_compute(&cl->cfg, cl->opts.plan.format, &mem) == DSI_OK
                       ? dsc_plan_switch_overflow(cur, next, &mem)
                       : -1;
    if (full >= 0) {
        DSI_WARN("node %lld cannot hold the experts of both plans at once: restarting instead of "
                 "a live switch",
                 (long long)full);
        return 0;
    }
    return 1;
}

void dsc_switch_begin(dsc_cluster_t *cl, dst_plan_t *next)
{
    cl->next_plan = *next;
    memset(next, 0, sizeof(*next));
    cl->switch_phase = SWITCH_PREPARE;
    for (uint32_t i = 0; i < cl->n_nodes; i++)
        cl->nodes[i].next_ready = cl->nodes[i].switched = 0;
    dsc_cluster_send_plan(cl, &cl->next_plan, 1);
    DSI_INFO("epoch %llu: loading beside epoch %llu, which keeps serving (live switch)",
             (unsigned long long)cl->next_plan.epoch, (unsigned long long)cl->plan.epoch);
}

/* Sequences whose lane lost a node continue on a lane of the new plan: with their KV cache when
 * dsc_kvmove_begin arranged it, else prefilled again from their tokens; all others continue where
 * they are. */
static void reroute(dsc_cluster_t *cl)
{
    uint32_t moved = 0;
    dsi_list_for_each_safe(s, &cl->seqs, seq_t, link) { /* s is freed when its SUBMIT fails */
        if (s->move_planned) {
            dsc_seq_submit_moved(cl, s);
            continue;
        }
        if (!dsc_seq_lost(cl, s))
            continue;
        dsc_seq_withdraw(cl, s);
        cl->stats.reprefilled++;
        dsc_seq_submit(cl, s);
        moved++;
    }
    if (moved > 0)
        DSI_INFO("epoch %llu: %u requests re-submitted to be prefilled (their lane left the plan)",
                 (unsigned long long)cl->plan.epoch, moved);
}

/* Sends `type` (SWITCH, RELEASE) for the current epoch to the nodes of plan p, but those also in
 * plan `skip` (NULL: none). */
static void send_epoch(dsc_cluster_t *cl, const dst_plan_t *p, const dst_plan_t *skip,
                       dst_msg_type_t type)
{
    for (uint32_t i = 0; i < p->n_nodes; i++) {
        uint32_t id = p->nodes[i].node_id;
        if (skip != NULL && dsc_plan_node_index(skip, id) >= 0)
            continue;
        dst_msg_t m = {.type = type};
        m.sw = (dst_msg_switch_t){id, cl->plan.epoch};
        dsc_cluster_send_node(cl, id, &m);
    }
}

static void do_switch(dsc_cluster_t *cl)
{
    cl->prev_plan = cl->plan;
    cl->plan = cl->next_plan;
    memset(&cl->next_plan, 0, sizeof(cl->next_plan));
    cl->switch_phase = SWITCH_DRAIN;
    if (dsc_cluster_build_lanes(cl) != DSI_OK) {
        DSI_ERROR("out of memory building lanes: restarting the plan");
        dsc_cluster_replan(cl, "out of memory switching plans", 0);
        return;
    }
    for (uint32_t i = 0; i < cl->plan.n_nodes; i++)
        cl->nodes[cl->plan.nodes[i].node_id].state = NODE_READY;
    /* KV_MOVE goes before the SWITCH that retires a draining node: its rows leave first. */
    dsc_kvmove_begin(cl);
    send_epoch(cl, &cl->plan, NULL, DST_MSG_SWITCH);
    send_epoch(cl, &cl->prev_plan, &cl->plan, DST_MSG_SWITCH); /* the nodes leaving: they retire */
    /* Nodes that joined loaded the checkpoint's biases: changed ones go out before any SUBMIT. */
    dsc_cluster_push_biases(cl);
    reroute(cl);
    DSI_INFO("epoch %llu: all %u nodes ready: switched", (unsigned long long)cl->plan.epoch,
             cl->plan.n_nodes);
}

void dsc_switch_on_ready(dsc_cluster_t *cl, node_t *n)
{
    n->next_ready = 1;
    for (uint32_t i = 0; i < cl->next_plan.n_nodes; i++) {
        if (!cl->nodes[cl->next_plan.nodes[i].node_id].next_ready)
            return;
    }
    do_switch(cl);
}

void dsc_switch_on_switched(dsc_cluster_t *cl, node_t *n)
{
    n->switched = 1;
    const dst_plan_t *plans[2] = {&cl->plan, &cl->prev_plan};
    for (int k = 0; k < 2; k++) {
        for (uint32_t i = 0; i < plans[k]->n_nodes; i++) {
            if (!cl->nodes[plans[k]->nodes[i].node_id].switched)
                return;
        }
    }
    uint32_t pending = dsc_kvmove_pending(cl);
    if (pending > 0) {
        cl->release_waits = 1;
        DSI_INFO("epoch %llu: every node switched; RELEASE waits for %u KV moves",
                 (unsigned long long)cl->plan.epoch, pending);
        return;
    }
    dsc_switch_release(cl);
}

void dsc_switch_release(dsc_cluster_t *cl)
{
    if (cl->switch_phase != SWITCH_DRAIN)
        return;
    send_epoch(cl, &cl->plan, NULL, DST_MSG_RELEASE);
    dsc_plan_cleanup(&cl->prev_plan);
    cl->switch_phase = SWITCH_NONE;
    cl->stats.live_switches++;
    dsc_cluster_release_drained(cl);
    DSI_INFO("epoch %llu: every node switched: the previous plan's experts are released",
             (unsigned long long)cl->plan.epoch);
    if (cl->deferred_why[0] != 0) {
        char why[sizeof(cl->deferred_why)];
        snprintf(why, sizeof(why), "%s", cl->deferred_why);
        cl->deferred_why[0] = 0;
        dsc_cluster_replan(cl, why, 1);
    }
}

void dsc_switch_abort(dsc_cluster_t *cl)
{
    if (cl->switch_phase == SWITCH_NONE)
        return;
    DSI_WARN("the live switch to epoch %llu is abandoned",
             (unsigned long long)(cl->switch_phase == SWITCH_PREPARE ? cl->next_plan.epoch
                                                                     : cl->plan.epoch));
    dsc_plan_cleanup(&cl->next_plan);
    dsc_plan_cleanup(&cl->prev_plan);
    cl->switch_phase = SWITCH_NONE;
    cl->release_waits = 0;
    cl->deferred_why[0] = 0;
}
