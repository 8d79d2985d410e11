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
#include <string.h>

#include "dsi_log.h"
#include "dsi_settings.h"
#include "dsn_compute_impl.h"
#include "dsn_moe.h"
#include "dsn_mtp.h"

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

/* Expert-load counters for the stage's MoE layers, and the engine hook that fills them (every
 * MoE step routes through the engine, whether its experts are local or not). */
static dsi_status_t load_counts_create(dsn_compute_t *c, const dst_plan_t *p)
{
    int first =
        c->first_layer > (int)p->first_moe_layer ? c->first_layer : (int)p->first_moe_layer;
    c->load_first = first;
    c->load_layers = c->end_layer > first ? c->end_layer - first : 0;
    c->load_experts = (int)p->n_experts;
    if (c->load_layers == 0 || p->n_experts == 0)
        return DSI_OK;
    c->load_counts = calloc((size_t)c->load_layers * p->n_experts, sizeof(uint32_t));
    if (c->load_counts == NULL) {
        DSI_ERROR("out of memory for the expert-load counters");
        return DSI_ERR_NOMEM;
    }
    dsn_trace_t tr = {.on_route = dsn_stage_count_route, .ctx = c};
    dsn_engine_set_trace(c->engine, &tr);
    return DSI_OK;
}

/* Bytes a node keeps for everything but weights and KV blocks (scratch, buffers, the runtime). */
#define KV_POOL_OVERHEAD (64ULL << 20)

/*
 * Blocks of the node's KV pool: --kv-pool, else the memory budget less the slice's weights and
 * KV_POOL_OVERHEAD, and never fewer than one sequence of the context limit needs with its open
 * tail (what the planner reserved). The open tails are charged to the pool, not set aside. 0 (no
 * limit) when neither is known.
 */
static int64_t kv_pool_blocks(const dsn_compute_t *c)
{
    int n_layers = c->end_layer - c->first_layer;
    const dsn_config_t *cfg = &c->weights->cfg;
    uint64_t block = dsn_kvpool_block_bytes(n_layers, cfg->kv_lora_rank + cfg->qk_rope_head_dim,
                                            c->opts->kv_dtype);
    if (block == 0)
        return 0;
    int64_t ctx = c->opts->max_context > 0 ? c->opts->max_context : cfg->max_position_embeddings;
    /* and its open tail (dsn_kvpool.h, "Open tails") */
    int64_t one_seq =
        (ctx + DSN_KV_BLOCK - 1) / DSN_KV_BLOCK +
        dsn_kvpool_tail_k(n_layers, cfg->kv_lora_rank + cfg->qk_rope_head_dim, c->opts->kv_dtype);
    if (c->opts->kv_pool_bytes > 0) {
        int64_t b = (int64_t)(c->opts->kv_pool_bytes / block);
        return b > 0 ? b : 1;
    }
    if (c->opts->mem_budget == 0)
        return 0;
    uint64_t used = c->weights->weight_bytes + KV_POOL_OVERHEAD;
    int64_t b = c->opts->mem_budget > used ? (int64_t)((c->opts->mem_budget - used) / block) : 0;
    return b > one_seq ? b : one_seq;
}

static dsi_status_t load_slice(dsn_compute_t *c, const dst_plan_t *p)
{
    const dsn_config_t *cfg = dsn_checkpoint_config(c->ckpt);
    int idx = -1;
    for (uint32_t i = 0; i < p->n_nodes; i++) {
        if (p->nodes[i].node_id == c->node_id)
            idx = (int)i;
    }
    if (idx < 0) {
        DSI_ERROR("the plan of epoch %llu has no place for this node (id %u)",
                  (unsigned long long)p->epoch, c->node_id);
        return DSI_ERR_PROTOCOL;
    }
    if (p->n_layers != (uint32_t)cfg->num_hidden_layers ||
        p->first_moe_layer != (uint32_t)cfg->first_k_dense_replace ||
        p->n_experts != (uint32_t)cfg->n_routed_experts || p->n_stages > DSN_MAX_STAGES) {
        DSI_ERROR("the plan (%u layers, first MoE %u, %u experts, %u stages) does not match the "
                  "model in %s",
                  p->n_layers, p->first_moe_layer, p->n_experts, p->n_stages, c->opts->model_dir);
        return DSI_ERR_PROTOCOL;
    }
    c->stage = (int)p->nodes[idx].stage;
    c->n_stages = (int)p->n_stages;
    c->first_layer = (int)p->stages[c->stage].first_layer;
    c->end_layer = (int)p->stages[c->stage].end_layer;
    c->is_first = c->stage == 0;
    c->is_last = c->stage == c->n_stages - 1;
    c->route_epoch = p->epoch;
    c->route_stage_nodes = dsn_plan_stage_nodes(p, c->stage);
    c->retiring = 0;
    c->switch_pending = 0;

    size_t held = 0;
    c->expert_mask = dsn_plan_expert_mask(p, c->node_id, &held);
    if (c->expert_mask == NULL)
        return DSI_ERR_NOMEM;
    dsn_slice_t slice = {c->first_layer, c->end_layer, c->is_first, c->is_last,
                         c->expert_mask};
    dsi_status_t st = dsn_weights_load_as(c->ckpt, &slice, c->opts->weight_format,
                                          c->opts->threads, &c->weights);
    if (st != DSI_OK)
        return st;
    st = dsn_engine_create(c->weights, dsk_level_detect(), c->opts->threads, &c->engine);
    if (st == DSI_OK)
        st = dsn_engine_set_kv(c->engine, c->opts->kv_dtype, kv_pool_blocks(c));
    if (st != DSI_OK)
        return st;
    c->prefix = c->opts->prefix_cache;
    c->spec_later = c->is_first && !c->is_last && c->opts->speculative_tokens > 0 &&
                    dsn_mtp_present(c->ckpt);
    const char *drop = dsi_env("DSINFER_TEST_PREFIX_DROP");
    c->test_drop_prefix = !c->is_first && drop != NULL && drop[0] == '1';
    if (c->test_drop_prefix)
        DSI_WARN("DSINFER_TEST_PREFIX_DROP: this later stage drops its cached KV blocks before "
                 "every lookup (a test setting)");
    dsn_kvpool_set_prefix_cache(dsn_engine_kvpool(c->engine), c->prefix);
    st = load_counts_create(c, p);
    if (st == DSI_OK)
        st = dsn_stage_spec_load(c, p);
    if (st != DSI_OK)
        return st;
    dsn_kvpool_stats_t ps;
    dsn_kvpool_stats(dsn_engine_kvpool(c->engine), &ps);
    DSI_INFO("plan epoch %llu: stage %d of %d, layers %d..%d, %zu routed experts, %.1f MiB of "
             "weights; KV pool %lld blocks of %d tokens (%s, %.1f MiB)",
             (unsigned long long)p->epoch, c->stage, c->n_stages, c->first_layer,
             c->end_layer - 1, held, (double)c->weights->weight_bytes / (1 << 20),
             (long long)ps.total, DSN_KV_BLOCK, dsn_kv_dtype_name(c->opts->kv_dtype),
             (double)ps.total * (double)ps.block_bytes / (1 << 20));
    return DSI_OK;
}

/* The slice of the epoch being left, and its plans; the checkpoint stays mapped, so pages of
 * weights the node keeps stay in the page cache. */
static void release_slice(dsn_compute_t *c)
{
    dsn_stage_spec_release(c);
    dsn_engine_destroy(c->engine);
    dsn_weights_destroy(c->weights);
    free(c->expert_mask);
    free(c->load_counts);
    c->engine = NULL;
    c->weights = NULL;
    c->expert_mask = NULL;
    c->load_counts = NULL;
    c->load_layers = 0;
    dsn_plan_msg_free(&c->route_msg);
    dsn_plan_msg_free(&c->prepared_msg);
    dsn_plan_msg_free(&c->previous_msg);
    c->route_plan = NULL;
}

void dsn_replan_release(dsn_compute_t *c)
{
    release_slice(c);
}

static void emit(dsn_compute_t *c, dsn_out_type_t type, uint64_t epoch)
{
    dsn_out_t *o = dsn_queue_out_get(c->queue);
    if (o == NULL) {
        /* Without the answer the coordinator would wait for ever: stop instead (it re-plans). */
        DSI_ERROR("out of memory answering the re-plan of epoch %llu", (unsigned long long)epoch);
        abort();
    }
    o->type = type;
    o->epoch = epoch;
    dsn_queue_emit(c->queue, o);
}

/*
 * Whether plan p gives node `id` exactly the slice loaded here: the same layers, the same ends
 * (embeddings, head), and for every MoE layer of them the same routed experts as the weights hold
 * now (after any live switch's additions and releases).
 */
static int holds_slice_of(const dsn_compute_t *c, const dst_plan_t *p, uint32_t id)
{
    if (c->weights == NULL || c->engine == NULL || p->n_layers != c->route_plan->n_layers ||
        p->first_moe_layer != c->route_plan->first_moe_layer ||
        p->n_experts != c->route_plan->n_experts)
        return 0;
    int idx = -1;
    for (uint32_t i = 0; i < p->n_nodes; i++) {
        if (p->nodes[i].node_id == id)
            idx = (int)i;
    }
    if (idx < 0)
        return 0;
    uint32_t stage = p->nodes[idx].stage;
    const dst_plan_stage_t *r = &p->stages[stage];
    if ((int)r->first_layer != c->first_layer || (int)r->end_layer != c->end_layer ||
        (stage == 0) != c->is_first || (stage == p->n_stages - 1) != c->is_last)
        return 0;
    size_t slots = dst_plan_slots(p);
    for (size_t i = 0; i < slots; i++) {
        int l = (int)(p->first_moe_layer + i / p->n_experts), e = (int)(i % p->n_experts);
        if (l < c->first_layer || l >= c->end_layer)
            continue;
        if (dst_plan_holds(p, i, id) != dsn_moe_holds(c->engine, l, e))
            return 0;
    }
    return 1;
}

/* RELOAD of a plan that gives this node the slice it holds: start the epoch without loading
 * weights; only the router biases go back to the checkpoint's (the coordinator pushes its own
 * again once every node is READY). */
static dsi_status_t keep_slice(dsn_compute_t *c, const dst_plan_t *p)
{
    dsi_status_t st = dsn_weights_reset_biases(c->weights, c->ckpt);
    if (st != DSI_OK)
        return st;
    for (uint32_t i = 0; i < p->n_nodes; i++) {
        if (p->nodes[i].node_id == c->node_id)
            c->stage = (int)p->nodes[i].stage;
    }
    c->n_stages = (int)p->n_stages;
    c->route_epoch = p->epoch;
    c->route_stage_nodes = dsn_plan_stage_nodes(p, c->stage);
    c->retiring = 0;
    c->switch_pending = 0;
    if (c->load_counts != NULL)
        memset(c->load_counts, 0,
               (size_t)c->load_layers * (size_t)c->load_experts * sizeof(uint32_t));
    DSI_INFO("plan epoch %llu: stage %d of %d, layers %d..%d: the slice held here already, no "
             "weights loaded",
             (unsigned long long)p->epoch, c->stage, c->n_stages, c->first_layer,
             c->end_layer - 1);
    return DSI_OK;
}

/* RELOAD: the task's plan (taken) replaces everything of the current epoch. */
static void reload(dsn_compute_t *c, dsn_task_t *t)
{
    /* A PLAN that keeps the KV caches (live = 2): the open sequences' rows stay here until the
     * coordinator has them sent to their holders in the new plan (dsn_kvstash.c). */
    if (t->plan->plan.live == 2 && c->engine != NULL)
        dsn_kvstash_keep(c);
    else if (t->plan->plan.live != 2)
        dsn_kvstash_clear(c);
    dsn_stage_cleanup(c);
    dsi_status_t st;
    if (c->route_plan != NULL && holds_slice_of(c, &t->plan->plan.plan, t->node_id)) {
        dsn_plan_msg_free(&c->route_msg);
        dsn_plan_msg_free(&c->prepared_msg);
        dsn_plan_msg_free(&c->previous_msg);
        c->node_id = t->node_id;
        c->route_msg = t->plan;
        t->plan = NULL;
        c->route_plan = &c->route_msg->plan.plan;
        st = keep_slice(c, c->route_plan);
    } else {
        release_slice(c);
        c->node_id = t->node_id;
        c->route_msg = t->plan;
        t->plan = NULL;
        c->route_plan = &c->route_msg->plan.plan;
        st = load_slice(c, c->route_plan);
    }
    if (st != DSI_OK) {
        DSI_ERROR("cannot serve the plan of epoch %llu: %s", (unsigned long long)t->epoch,
                  dsi_status_message(st));
        emit(c, DSN_OUT_FAILED, t->epoch);
        return;
    }
    emit(c, DSN_OUT_READY, t->epoch);
}

/* PREPARE: the experts the task's plan (taken) adds are loaded beside the current ones. */
static void prepare(dsn_compute_t *c, dsn_task_t *t)
{
    dsn_plan_msg_free(&c->prepared_msg);
    c->prepared_msg = t->plan;
    t->plan = NULL;
    size_t held = 0, added = 0;
    uint8_t *mask = dsn_plan_expert_mask(&c->prepared_msg->plan.plan, c->node_id, &held);
    dsi_status_t st = mask == NULL ? DSI_ERR_NOMEM
                                   : dsn_weights_add_experts(c->weights, c->ckpt, mask,
                                                             c->opts->threads, &added);
    free(mask);
    if (st != DSI_OK) {
        DSI_ERROR("cannot load the experts of plan epoch %llu: %s", (unsigned long long)t->epoch,
                  dsi_status_message(st));
        emit(c, DSN_OUT_FAILED, t->epoch);
        return;
    }
    DSI_INFO("plan epoch %llu prepared beside epoch %llu: %zu routed experts, %zu loaded now, "
             "%.1f MiB of weights held",
             (unsigned long long)t->epoch, (unsigned long long)c->route_epoch, held, added,
             (double)c->weights->weight_bytes / (1 << 20));
    emit(c, DSN_OUT_READY, t->epoch);
}

/* A node the new plan leaves out: its sequences end here (the coordinator re-submits them
 * elsewhere); micro-batches in flight finish, nothing new starts. */
static void retire(dsn_compute_t *c)
{
    c->retiring = 1;
    for (int b = 0; b < DSN_SEQ_BUCKETS; b++) {
        dsn_seq_t **p = &c->seq_buckets[b];
        while (*p != NULL) {
            dsn_seq_t *s = *p;
            s->done = 1;
            if (s->in_flight) {
                s->remove_after = 1;
                p = &s->next_in_bucket;
            } else {
                dsn_seq_remove(c, s->id);
            }
        }
    }
}

/* SWITCH: route by the prepared plan of that epoch; a node that joined with it routes by it
 * already; a node without it is not in the plan. */
static void switch_plan(dsn_compute_t *c, const dsn_task_t *t)
{
    const char *how = "";
    if (c->prepared_msg != NULL && c->prepared_msg->plan.plan.epoch == t->epoch) {
        dsn_plan_msg_free(&c->previous_msg);
        c->previous_msg = c->route_msg;
        c->route_msg = c->prepared_msg;
        c->prepared_msg = NULL;
        c->route_plan = &c->route_msg->plan.plan;
        c->route_epoch = t->epoch;
        c->route_stage_nodes = dsn_plan_stage_nodes(c->route_plan, c->stage);
    } else if (c->route_epoch != t->epoch) {
        retire(c);
        how = " (this node is not in it: retiring)";
    }
    c->switch_epoch = t->epoch;
    c->switch_pending = 1;
    DSI_INFO("switched to plan epoch %llu%s", (unsigned long long)t->epoch, how);
}

/* RELEASE: what only the previous plan needed goes. The next live plan may be prepared already
 * (PREPARE goes ahead of everything queued, a RELEASE too, when a re-plan follows a switch at
 * once): its experts stay. */
static void release(dsn_compute_t *c, const dsn_task_t *t)
{
    dsn_plan_msg_free(&c->previous_msg);
    size_t held = 0, next = 0;
    uint8_t *mask = dsn_plan_expert_mask(c->route_plan, c->node_id, &held);
    uint8_t *keep = c->prepared_msg != NULL
                        ? dsn_plan_expert_mask(&c->prepared_msg->plan.plan, c->node_id, &next)
                        : NULL;
    if (mask == NULL || (c->prepared_msg != NULL && keep == NULL)) {
        free(mask);
        free(keep);
        DSI_WARN("out of memory releasing the experts of the previous plan: kept");
        return;
    }
    for (size_t i = 0; keep != NULL && i < dst_plan_slots(c->route_plan); i++)
        mask[i] |= keep[i];
    free(keep);
    size_t dropped = dsn_weights_drop_experts(c->weights, mask);
    free(mask);
    DSI_INFO("plan epoch %llu: %zu routed experts of the previous plan released, %.1f MiB of "
             "weights held",
             (unsigned long long)t->epoch, dropped,
             (double)c->weights->weight_bytes / (1 << 20));
}

void dsn_replan_handle(dsn_compute_t *c, dsn_task_t *task)
{
    switch (task->type) {
    case DSN_TASK_RELOAD:
        reload(c, task);
        break;
    case DSN_TASK_PREPARE:
        prepare(c, task);
        break;
    case DSN_TASK_SWITCH:
        switch_plan(c, task);
        break;
    case DSN_TASK_RELEASE:
        release(c, task);
        break;
    default:
        break;
    }
}

void dsn_replan_check(dsn_compute_t *c)
{
    if (!c->switch_pending)
        return;
    dsi_list_for_each(mb, &c->parked, dsn_mb_t, link) {
        if (mb->epoch < c->switch_epoch)
            return;
    }
    c->switch_pending = 0;
    emit(c, DSN_OUT_SWITCHED, c->switch_epoch);
}
