/*
 * dsn_switch.c - the compute thread's side of a make-before-break re-plan (docs/ELASTICITY.md,
 * "Live switch"). The node keeps serving the plan of epoch e while a live plan e+1 goes out:
 *
 *   PREPARE  load the routed experts e+1 gives this node beside those it holds (the union serves
 *            DISPATCHes routed by either plan), then READY(e+1);
 *   SWITCH   route new DISPATCHes by e+1 (a node that e+1 leaves out stops its sequences instead);
 *            SWITCHED(e+1) once no micro-batch waits on DISPATCHes routed by e;
 *   RELEASE  every node switched, so nothing routed by e is in flight anywhere: drop the experts
 *            only e needed.
 *
 * No step ever sees an expert without a live holder: a DISPATCH routed by e reaches a node that
 * still holds e's experts until RELEASE, one routed by e+1 a node that loaded them before READY.
 */
#include <stdlib.h>

#include "dsi_log.h"
#include "dsn_node_impl.h"

uint8_t *dsn_plan_expert_mask(const dst_plan_t *p, uint32_t id, size_t *held)
{
    size_t slots = (size_t)(p->n_layers - p->first_moe_layer) * p->n_experts;
    uint8_t *mask = calloc(slots > 0 ? slots : 1, 1);
    if (mask == NULL)
        return NULL;
    size_t n = 0;
    for (size_t i = 0; i < slots; i++) {
        for (uint32_t j = p->expert_offsets[i]; j < p->expert_offsets[i + 1]; j++) {
            if (p->expert_holders[j] == id && !mask[i]) {
                mask[i] = 1;
                n++;
            }
        }
    }
    *held = n;
    return mask;
}

int dsn_plan_stage_nodes(const dst_plan_t *p, int stage)
{
    int n = 0;
    for (uint32_t i = 0; i < p->n_nodes; i++)
        n += p->nodes[i].stage == (uint32_t)stage;
    return n;
}

static void emit(dsn_node_t *node, dsn_out_type_t type, uint64_t epoch)
{
    dsn_out_t *o = calloc(1, sizeof(*o));
    if (o == NULL) {
        /* Without the answer the coordinator would wait for ever: stop instead (it re-plans). */
        DSI_ERROR("out of memory answering the re-plan of epoch %llu", (unsigned long long)epoch);
        abort();
    }
    o->type = type;
    o->epoch = epoch;
    dsn_worker_emit(node, o);
}

static void prepare(dsn_node_t *node, const dsn_task_t *t)
{
    size_t held = 0, added = 0;
    uint8_t *mask = dsn_plan_expert_mask(t->plan, node->node_id, &held);
    dsi_status_t st = mask == NULL ? DSI_ERR_NOMEM
                                   : dsn_weights_add_experts(node->weights, node->ckpt, mask,
                                                             node->opts.threads, &added);
    free(mask);
    if (st != DSI_OK) {
        DSI_ERROR("cannot load the experts of plan epoch %llu: %s", (unsigned long long)t->epoch,
                  dsi_status_message(st));
        emit(node, DSN_OUT_FAILED, t->epoch);
        return;
    }
    DSI_INFO("plan epoch %llu prepared beside epoch %llu: %zu routed experts, %zu loaded now, "
             "%.1f MiB of weights held",
             (unsigned long long)t->epoch, (unsigned long long)node->route_epoch, held, added,
             (double)node->weights->weight_bytes / (1 << 20));
    emit(node, DSN_OUT_READY, t->epoch);
}

/* A node the new plan leaves out: its sequences end here (the coordinator re-submits them
 * elsewhere); micro-batches in flight finish, nothing new starts. */
static void retire(dsn_node_t *node)
{
    node->retiring = 1;
    for (int b = 0; b < 1024; b++) {
        dsn_seq_t **p = &node->seq_buckets[b];
        while (*p != NULL) {
            dsn_seq_t *s = *p;
            s->done = 1;
            if (s->in_flight) {
                s->remove_after = 1;
                p = &s->next_in_bucket;
            } else {
                dsn_seq_remove(node, s->id);
            }
        }
    }
}

static void switch_plan(dsn_node_t *node, const dsn_task_t *t)
{
    if (t->plan != NULL) {
        node->route_plan = t->plan;
        node->route_epoch = t->epoch;
        node->route_stage_nodes = dsn_plan_stage_nodes(t->plan, node->stage);
    } else {
        retire(node);
    }
    node->switch_epoch = t->epoch;
    node->switch_pending = 1;
    DSI_INFO("switched to plan epoch %llu%s", (unsigned long long)t->epoch,
             t->plan != NULL ? "" : " (this node is not in it: retiring)");
}

static void release(dsn_node_t *node, const dsn_task_t *t)
{
    size_t held = 0;
    uint8_t *mask = dsn_plan_expert_mask(t->plan, node->node_id, &held);
    if (mask == NULL) {
        DSI_WARN("out of memory releasing the experts of the previous plan: kept");
        return;
    }
    size_t dropped = dsn_weights_drop_experts(node->weights, mask);
    free(mask);
    DSI_INFO("plan epoch %llu: %zu routed experts of the previous plan released, %.1f MiB of "
             "weights held",
             (unsigned long long)t->epoch, dropped,
             (double)node->weights->weight_bytes / (1 << 20));
}

void dsn_switch_handle(dsn_node_t *node, const dsn_task_t *task)
{
    switch (task->type) {
    case DSN_TASK_PREPARE:
        prepare(node, task);
        break;
    case DSN_TASK_SWITCH:
        switch_plan(node, task);
        break;
    case DSN_TASK_RELEASE:
        release(node, task);
        break;
    default:
        break;
    }
}

void dsn_switch_check(dsn_node_t *node)
{
    if (!node->switch_pending)
        return;
    for (const dsn_mb_t *mb = node->parked; mb != NULL; mb = mb->next) {
        if (mb->epoch < node->switch_epoch)
            return;
    }
    node->switch_pending = 0;
    emit(node, DSN_OUT_SWITCHED, node->switch_epoch);
}
