/*
 * dsn_replan.c - the compute thread's side of a re-plan (docs/ELASTICITY.md). All of it runs on
 * the compute thread, between micro-batches, so the loop thread never waits for a slice to load
 * (heartbeats go on) and never touches what the compute thread owns.
 *
 *   RELOAD   a restart: drop the sequences, micro-batches and slice of the current epoch, load the
 *            plan's slice, then READY (or FAILED: the node stops).
 *
 * A make-before-break switch (docs/ELASTICITY.md, "The live switch"): the node keeps serving the
 * plan of epoch e while a live plan e+1 goes out:
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
    size_t slots = dst_plan_slots(p);
    uint8_t *mask = calloc(slots > 0 ? slots : 1, 1);
    if (mask == NULL)
        return NULL;
    size_t n = 0;
    for (size_t i = 0; i < slots; i++) {
        mask[i] = (uint8_t)dst_plan_holds(p, i, id);
        n += mask[i];
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

/* Expert-load counters for the stage's MoE layers, and the engine hook that fills them on the
 * single-node path (the expert-parallel path counts in dsn_stage.c). */
static dsi_status_t load_counts_create(dsn_node_t *node, const dst_plan_t *p)
{
    int first =
        node->first_layer > (int)p->first_moe_layer ? node->first_layer : (int)p->first_moe_layer;
    node->load_first = first;
    node->load_layers = node->end_layer > first ? node->end_layer - first : 0;
    node->load_experts = (int)p->n_experts;
    if (node->load_layers == 0 || p->n_experts == 0)
        return DSI_OK;
    node->load_counts = calloc((size_t)node->load_layers * p->n_experts, sizeof(uint32_t));
    if (node->load_counts == NULL) {
        DSI_ERROR("out of memory for the expert-load counters");
        return DSI_ERR_NOMEM;
    }
    dsn_trace_t tr = {.on_route = dsn_stage_count_route, .ctx = node};
    dsn_engine_set_trace(node->engine, &tr);
    return DSI_OK;
}

static dsi_status_t load_slice(dsn_node_t *node, const dst_plan_t *p)
{
    const dsn_config_t *cfg = dsn_checkpoint_config(node->ckpt);
    int idx = -1;
    for (uint32_t i = 0; i < p->n_nodes; i++) {
        if (p->nodes[i].node_id == node->node_id)
            idx = (int)i;
    }
    if (idx < 0) {
        DSI_ERROR("the plan of epoch %llu has no place for this node (id %u)",
                  (unsigned long long)p->epoch, node->node_id);
        return DSI_ERR_PROTOCOL;
    }
    if (p->n_layers != (uint32_t)cfg->num_hidden_layers ||
        p->first_moe_layer != (uint32_t)cfg->first_k_dense_replace ||
        p->n_experts != (uint32_t)cfg->n_routed_experts || p->n_stages > DSN_MAX_STAGES) {
        DSI_ERROR("the plan (%u layers, first MoE %u, %u experts, %u stages) does not match the "
                  "model in %s",
                  p->n_layers, p->first_moe_layer, p->n_experts, p->n_stages, node->opts.model_dir);
        return DSI_ERR_PROTOCOL;
    }
    node->stage = (int)p->nodes[idx].stage;
    node->n_stages = (int)p->n_stages;
    node->first_layer = (int)p->stages[node->stage].first_layer;
    node->end_layer = (int)p->stages[node->stage].end_layer;
    node->is_first = node->stage == 0;
    node->is_last = node->stage == node->n_stages - 1;
    node->route_epoch = p->epoch;
    node->route_stage_nodes = dsn_plan_stage_nodes(p, node->stage);
    node->retiring = 0;
    node->switch_pending = 0;

    size_t held = 0;
    node->expert_mask = dsn_plan_expert_mask(p, node->node_id, &held);
    if (node->expert_mask == NULL)
        return DSI_ERR_NOMEM;
    dsn_slice_t slice = {node->first_layer, node->end_layer, node->is_first, node->is_last,
                         node->expert_mask};
    dsi_status_t st = dsn_weights_load_as(node->ckpt, &slice, node->opts.weight_format,
                                          node->opts.threads, &node->weights);
    if (st != DSI_OK)
        return st;
    st = dsn_engine_create(node->weights, dsk_level_detect(), node->opts.threads, &node->engine);
    if (st != DSI_OK)
        return st;
    st = load_counts_create(node, p);
    if (st != DSI_OK)
        return st;
    DSI_INFO("plan epoch %llu: stage %d of %d, layers %d..%d, %zu routed experts, %.1f MiB of "
             "weights",
             (unsigned long long)p->epoch, node->stage, node->n_stages, node->first_layer,
             node->end_layer - 1, held, (double)node->weights->weight_bytes / (1 << 20));
    return DSI_OK;
}

/* The slice of the epoch being left, and its plans; the checkpoint stays mapped, so pages of
 * weights the node keeps stay in the page cache. */
static void release_slice(dsn_node_t *node)
{
    dsn_engine_destroy(node->engine);
    dsn_weights_destroy(node->weights);
    free(node->expert_mask);
    free(node->load_counts);
    node->engine = NULL;
    node->weights = NULL;
    node->expert_mask = NULL;
    node->load_counts = NULL;
    node->load_layers = 0;
    dsn_plan_msg_free(&node->route_msg);
    dsn_plan_msg_free(&node->prepared_msg);
    dsn_plan_msg_free(&node->previous_msg);
    node->route_plan = NULL;
}

void dsn_replan_release(dsn_node_t *node)
{
    release_slice(node);
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

/* RELOAD: the task's plan (taken) replaces everything of the current epoch. */
static void reload(dsn_node_t *node, dsn_task_t *t)
{
    dsn_stage_cleanup(node);
    release_slice(node);
    node->route_msg = t->plan;
    t->plan = NULL;
    node->route_plan = &node->route_msg->plan.plan;
    dsi_status_t st = load_slice(node, node->route_plan);
    if (st != DSI_OK) {
        DSI_ERROR("cannot serve the plan of epoch %llu: %s", (unsigned long long)t->epoch,
                  dsi_status_message(st));
        emit(node, DSN_OUT_FAILED, t->epoch);
        return;
    }
    emit(node, DSN_OUT_READY, t->epoch);
}

/* PREPARE: the experts the task's plan (taken) adds are loaded beside the current ones. */
static void prepare(dsn_node_t *node, dsn_task_t *t)
{
    dsn_plan_msg_free(&node->prepared_msg);
    node->prepared_msg = t->plan;
    t->plan = NULL;
    size_t held = 0, added = 0;
    uint8_t *mask = dsn_plan_expert_mask(&node->prepared_msg->plan.plan, node->node_id, &held);
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

/* SWITCH: route by the prepared plan of that epoch; a node that joined with it routes by it
 * already; a node without it is not in the plan. */
static void switch_plan(dsn_node_t *node, const dsn_task_t *t)
{
    const char *how = "";
    if (node->prepared_msg != NULL && node->prepared_msg->plan.plan.epoch == t->epoch) {
        dsn_plan_msg_free(&node->previous_msg);
        node->previous_msg = node->route_msg;
        node->route_msg = node->prepared_msg;
        node->prepared_msg = NULL;
        node->route_plan = &node->route_msg->plan.plan;
        node->route_epoch = t->epoch;
        node->route_stage_nodes = dsn_plan_stage_nodes(node->route_plan, node->stage);
    } else if (node->route_epoch != t->epoch) {
        retire(node);
        how = " (this node is not in it: retiring)";
    }
    node->switch_epoch = t->epoch;
    node->switch_pending = 1;
    DSI_INFO("switched to plan epoch %llu%s", (unsigned long long)t->epoch, how);
}

/* RELEASE: what only the previous plan needed goes. */
static void release(dsn_node_t *node, const dsn_task_t *t)
{
    dsn_plan_msg_free(&node->previous_msg);
    size_t held = 0;
    uint8_t *mask = dsn_plan_expert_mask(node->route_plan, node->node_id, &held);
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

void dsn_replan_handle(dsn_node_t *node, dsn_task_t *task)
{
    switch (task->type) {
    case DSN_TASK_RELOAD:
        reload(node, task);
        break;
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

void dsn_replan_check(dsn_node_t *node)
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
