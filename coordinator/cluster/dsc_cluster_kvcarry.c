/*
 * dsc_cluster_kvcarry.c - a restart that keeps the KV caches (docs/ELASTICITY.md, "KV moves with
 * its sequence"). A re-plan that moves stage boundaries (a join that splits the model into more
 * stages, a drain that merges them, a rebalance that moves a node to another stage) cannot
 * switch live: every node of the new plan loads its new slice. The open sequences' KV rows are
 * still worth keeping:
 *
 *   stop      sequences whose nodes are all alive and that sampled a token are withdrawn without
 *             CANCEL (carry): their nodes keep them, and PLAN.live 2 tells the nodes of the new
 *             plan to copy their rows aside before dropping the old slice (node/daemon/
 *             dsn_kvstash.c). A draining node that leaves keeps serving its copy as it is.
 *   READY     every node serves the new plan: each carried sequence gets a lane and a wire id;
 *             for every layer, the node that held it sends its rows to the node that holds it
 *             now (KV_MOVE with the layer range; one receiver may hear from several senders,
 *             and a node that keeps some layers sends them to itself: the lane chosen is the
 *             one whose nodes keep the most), then SUBMIT with kv_move
 *             and CANCEL of the old id (which frees the kept rows). KV_DONE, timeouts and the
 *             fallback to a prefill are those of a live switch's moves (dsc_cluster_kvmove.c).
 *
 * A sequence of a lost node's lane is prefilled again: its rows there are gone.
 */
#include "dsc_cluster_impl.h"
#include "dsi_log.h"

int dsc_kvcarry_hold(dsc_cluster_t *cl)
{
    const dst_plan_t *p = &cl->plan;
    uint32_t held = 0;
    dsi_list_for_each(s, &cl->seqs, seq_t, link) {
        /* (a sequence whose rows are still on their way holds none yet where it runs) */
        if (!s->submitted || s->n_generated == 0 || s->n_route != p->n_stages || s->kv_pending > 0)
            continue;
        /* Its nodes are alive and hold the stages of the current plan (a live switch keeps
         * every stage's layers), so stage i holds the layers of p's stage i. */
        int alive = 1;
        for (uint32_t i = 0; i < s->n_route; i++) {
            const node_t *n = &cl->nodes[s->route[i]];
            int j = dsc_plan_node_index(p, n->id);
            alive &= n->state != NODE_DEAD && n->cs != NULL && j >= 0 && p->nodes[j].stage == i;
        }
        if (!alive)
            continue;
        for (uint32_t i = 0; i < s->n_route; i++) {
            s->carry_first[i] = p->stages[i].first_layer;
            s->carry_end[i] = p->stages[i].end_layer;
        }
        s->carry = 1;
        s->submitted = 0; /* no CANCEL: its nodes keep the rows */
        held++;
    }
    if (held > 0)
        DSI_INFO("epoch %llu: %u requests keep their KV cache on their nodes through the re-plan",
                 (unsigned long long)p->epoch, held);
    return held > 0;
}

/* The lane of the current plan whose nodes held the most of s's layers before (those rows stay
 * where they are), the next one in turn among equals: into route. */
static void carry_lane(dsc_cluster_t *cl, const seq_t *s, uint32_t *route)
{
    const dst_plan_t *p = &cl->plan;
    uint32_t start = cl->next_lane++ % cl->n_lanes, best = start, best_kept = 0;
    for (uint32_t k = 0; k < cl->n_lanes; k++) {
        uint32_t l = (start + k) % cl->n_lanes, kept = 0;
        for (uint32_t j = 0; j < p->n_stages; j++) {
            uint32_t id = cl->lane_nodes[j * cl->n_lanes + l];
            uint32_t a = p->stages[j].first_layer, b = p->stages[j].end_layer;
            for (uint32_t i = 0; i < s->n_route; i++) {
                uint32_t lo = s->carry_first[i] > a ? s->carry_first[i] : a;
                uint32_t hi = s->carry_end[i] < b ? s->carry_end[i] : b;
                if (s->route[i] == id && lo < hi)
                    kept += hi - lo;
            }
        }
        if (kept > best_kept) {
            best = l;
            best_kept = kept;
        }
    }
    for (uint32_t j = 0; j < p->n_stages; j++)
        route[j] = cl->lane_nodes[j * cl->n_lanes + best];
}

/* The old submission of s ends where it ran: CANCEL of its wire id to its old route. */
static void cancel_old(dsc_cluster_t *cl, seq_t *s)
{
    dst_msg_t m = {.type = DST_MSG_CANCEL};
    m.cancel.seq_id = s->wire_id;
    for (uint32_t i = 0; i < s->n_route; i++)
        dsc_cluster_send_node(cl, s->route[i], &m);
}

void dsc_kvcarry_begin(dsc_cluster_t *cl)
{
    uint32_t moved = 0, refused = 0;
    dsi_list_for_each_safe(s, &cl->seqs, seq_t, link) { /* s is freed when its SUBMIT fails */
        if (!s->carry)
            continue;
        s->carry = 0;
        const char *why = NULL;
        for (uint32_t i = 0; i < s->n_route && why == NULL; i++) {
            const node_t *n = &cl->nodes[s->route[i]];
            if (n->state == NODE_DEAD || n->cs == NULL)
                why = "a node that held its rows is gone";
        }
        if (why == NULL) {
            carry_lane(cl, s, s->move_route);
            s->move_wire = ++cl->next_wire;
            if (dsc_kvmove_send(cl, s, s->carry_first, s->carry_end, 0) != 0)
                why = "KV_MOVE could not be sent";
        }
        if (why != NULL) {
            DSI_INFO("request %llu is prefilled again: %s", (unsigned long long)s->handle, why);
            s->kv_pending = 0;
            cancel_old(cl, s);
            refused++;
            continue; /* dsc_seq_submit_all submits it */
        }
        moved++;
        dsc_seq_submit_moved(cl, s); /* SUBMIT with kv_move, then CANCEL of the old id */
    }
    if (moved + refused > 0)
        DSI_INFO("epoch %llu: %u requests move with their KV cache to their new lanes, %u are "
                 "prefilled again",
                 (unsigned long long)cl->plan.epoch, moved, refused);
}

void dsc_kvcarry_drop(dsc_cluster_t *cl)
{
    dsi_list_for_each(s, &cl->seqs, seq_t, link) {
        if (s->carry) {
            s->carry = 0;
            cancel_old(cl, s);
        }
    }
}
