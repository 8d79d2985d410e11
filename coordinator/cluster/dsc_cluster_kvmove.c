/*
 * dsc_cluster_kvmove.c - in a live switch, a sequence whose lane lost a node (a drain) moves to
 * a lane of the new plan with its KV cache instead of being prefilled again
 * (docs/ELASTICITY.md, "KV moves with its sequence"); dsc_cluster_kvcarry.c does the same after
 * a restart that moved stage boundaries, with dsc_kvmove_send below.
 *
 *   before SWITCH  the sequence gets its new lane and wire id; for every stage whose node
 *                  changes, KV_MOVE asks the old node (alive: a drained one serves until
 *                  RELEASE) to send the rows of all but the last token the coordinator holds
 *                  (every stage has computed those) to the new node, which may have joined with
 *                  this plan (it loaded its slice in PREPARE; a draining sender got its PEERS).
 *                  It goes before the SWITCH that retires a draining node, on the same
 *                  connection, so the rows leave first.
 *   after SWITCH   SUBMIT with kv_move (fork_of: the old id, fork_len: the moved positions) to
 *                  the new lane, then CANCEL of the old id (a node of both lanes copies first).
 *   KV_DONE        each node of the new lane says whether it holds the rows (received, or
 *                  copied on a node that keeps its stage); when all did, the sequence moved.
 *                  A failure on either side (or no answer within DSC_KV_MOVE_TIMEOUT_MS) falls
 *                  back: the sequence is submitted again and prefilled from its tokens.
 *
 * RELEASE waits for moves in flight, so a drained node stays until its rows arrived.
 */
#include <stdio.h>
#include <string.h>

#include "dsc_cluster_impl.h"
#include "dsi_log.h"

#define DSC_KV_MOVE_TIMEOUT_MS 30000

int dsc_seq_lost(const dsc_cluster_t *cl, const seq_t *s)
{
    const dst_plan_t *p = &cl->plan, *q = &cl->prev_plan;
    if (!s->submitted)
        return 0;
    if (s->n_route != p->n_stages || s->n_route != q->n_stages)
        return 1;
    for (uint32_t i = 0; i < s->n_route; i++) {
        int j = dsc_plan_node_index(p, s->route[i]);
        if (j < 0 || p->nodes[j].stage != i ||
            p->stages[i].first_layer != q->stages[i].first_layer ||
            p->stages[i].end_layer != q->stages[i].end_layer)
            return 1; /* gone, or its cache there holds other layers now */
    }
    return 0;
}

/* Why s cannot move with its cache to move_route (NULL: it can). */
static const char *cannot_move(const dsc_cluster_t *cl, const seq_t *s, char *why, size_t cap)
{
    if (s->n_generated == 0)
        return "its prompt was still being prefilled";
    for (uint32_t i = 0; i < s->n_route; i++) {
        const node_t *n = &cl->nodes[s->route[i]];
        if (n->state == NODE_DEAD || n->cs == NULL) {
            snprintf(why, cap, "node %u, which held its stage %u, is gone", n->id, i);
            return why;
        }
    }
    return NULL;
}

int dsc_kvmove_send(dsc_cluster_t *cl, seq_t *s, const uint32_t *first, const uint32_t *end,
                    int copy)
{
    const dst_plan_t *p = &cl->plan;
    uint32_t n_tokens = s->n_prompt + s->n_generated - 1;
    s->kv_pending = 0;
    s->kv_bytes = 0;
    s->kv_deadline_ns = dsc_now_ns() + (uint64_t)DSC_KV_MOVE_TIMEOUT_MS * 1000000ULL;
    for (uint32_t j = 0; j < p->n_stages; j++) {
        uint32_t a = p->stages[j].first_layer, b = p->stages[j].end_layer;
        uint32_t to = s->move_route[j];
        s->kv_pending++; /* every node of the new lane answers KV_DONE */
        for (uint32_t i = 0; i < s->n_route; i++) {
            uint32_t lo = first[i] > a ? first[i] : a, hi = end[i] < b ? end[i] : b;
            if (lo >= hi)
                continue; /* old stage i held none of these layers */
            if (copy && s->route[i] == to && first[i] == a && end[i] == b)
                continue; /* the node keeps the rows: it copies them at the SUBMIT */
            dst_msg_t m = {.type = DST_MSG_KV_MOVE};
            m.kv_move = (dst_msg_kv_move_t){.seq_id = s->wire_id,
                                            .n_tokens = n_tokens,
                                            .to = to,
                                            .to_seq = s->move_wire,
                                            .epoch = p->epoch};
            if (first[i] != a || end[i] != b) {
                m.kv_move.first_layer = lo; /* some of its layers, from some of the sender's */
                m.kv_move.end_layer = hi;
            }
            if (dsc_cluster_send_node(cl, s->route[i], &m) != DSI_OK)
                return -1;
        }
    }
    return 0;
}

void dsc_kvmove_begin(dsc_cluster_t *cl)
{
    uint32_t planned = 0, refused = 0;
    uint32_t first[DST_MSG_MAX_STAGES], end[DST_MSG_MAX_STAGES];
    for (uint32_t i = 0; i < cl->prev_plan.n_stages && i < DST_MSG_MAX_STAGES; i++) {
        first[i] = cl->prev_plan.stages[i].first_layer;
        end[i] = cl->prev_plan.stages[i].end_layer;
    }
    dsi_list_for_each(s, &cl->seqs, seq_t, link) {
        s->move_planned = 0;
        if (!dsc_seq_lost(cl, s))
            continue;
        dsc_seq_next_lane(cl, s->move_route);
        char buf[160];
        const char *why = s->n_route != cl->prev_plan.n_stages
                              ? "it was submitted under another plan"
                              : cannot_move(cl, s, buf, sizeof(buf));
        if (why != NULL) {
            DSI_INFO("request %llu is prefilled again on its new lane: %s",
                     (unsigned long long)s->handle, why);
            refused++;
            continue;
        }
        s->move_wire = ++cl->next_wire;
        if (dsc_kvmove_send(cl, s, first, end, 1) != 0) {
            DSI_INFO("request %llu is prefilled again on its new lane: KV_MOVE could not be sent",
                     (unsigned long long)s->handle);
            s->kv_pending = 0; /* rows already sent for move_wire are dropped by the receiver */
            refused++;
            continue;
        }
        s->move_planned = 1;
        planned++;
    }
    if (planned + refused > 0)
        DSI_INFO("epoch %llu: %u requests move with their KV cache, %u are prefilled again",
                 (unsigned long long)cl->plan.epoch, planned, refused);
}

uint32_t dsc_kvmove_pending(const dsc_cluster_t *cl)
{
    uint32_t n = 0;
    dsi_list_for_each(s, &cl->seqs, seq_t, link)
        n += s->kv_pending;
    return n;
}

/* RELEASE that waited for the moves goes out once none is left, and after a restart that kept
 * the rows, the drained nodes' SHUTDOWN. */
static void settle(dsc_cluster_t *cl)
{
    if (cl->release_waits && dsc_kvmove_pending(cl) == 0) {
        cl->release_waits = 0;
        dsc_switch_release(cl);
    }
    if (cl->carry_release && dsc_kvmove_pending(cl) == 0) {
        cl->carry_release = 0;
        dsc_cluster_release_drained(cl);
    }
}

/* The move of s failed: it is prefilled again on a lane of the current plan. */
static void fall_back(dsc_cluster_t *cl, seq_t *s, const char *why)
{
    DSI_WARN("request %llu (sequence %llu): its KV cache did not move (%s): prefilled again",
             (unsigned long long)s->handle, (unsigned long long)s->wire_id, why);
    cl->stats.kv_move_failures++;
    cl->stats.reprefilled++;
    dsc_seq_withdraw(cl, s);
    dsc_seq_submit(cl, s);
}

void dsc_kvmove_on_done(dsc_cluster_t *cl, conn_state_t *cs, const dst_msg_kv_done_t *m)
{
    node_t *n = &cl->nodes[cs->node];
    seq_t *s = dsc_seq_by_wire(cl, m->seq_id);
    if (m->node_id != n->id || s == NULL || s->kv_pending == 0)
        return; /* of a submission that ended or fell back already */
    if (!m->ok) {
        char why[DST_MSG_TEXT_MAX + 32];
        snprintf(why, sizeof(why), "%s", m->text[0] != 0 ? m->text : "refused");
        fall_back(cl, s, why);
    } else if (--s->kv_pending == 0) {
        s->kv_bytes += m->bytes;
        cl->stats.kv_moved_sequences++;
        cl->stats.kv_moved_bytes += s->kv_bytes;
        DSI_INFO("request %llu moved to its new lane with its KV cache (%u positions, %.1f KiB): "
                 "no prefill",
                 (unsigned long long)s->handle, s->n_prompt + s->n_generated - 1,
                 (double)s->kv_bytes / 1024);
    } else {
        s->kv_bytes += m->bytes;
    }
    settle(cl);
}

void dsc_kvmove_tick(dsc_cluster_t *cl, uint64_t now)
{
    dsi_list_for_each_safe(s, &cl->seqs, seq_t, link) { /* fall_back may end s */
        if (s->kv_pending > 0 && now > s->kv_deadline_ns)
            fall_back(cl, s, "no answer from its nodes in time");
    }
    settle(cl);
}
