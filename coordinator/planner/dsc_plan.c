/* dsc_plan.c - utilities on a dst_plan_t: freeing, checking its invariants, per-node usage. */
#include <stdlib.h>
#include <string.h>

#include "dsc_planner.h"
#include "dsi_log.h"

void dsc_plan_cleanup(dst_plan_t *plan)
{
    if (plan == NULL)
        return;
    free(plan->stages);
    free(plan->nodes);
    free(plan->expert_offsets);
    free(plan->expert_holders);
    free(plan->mtp_offsets);
    free(plan->mtp_holders);
    memset(plan, 0, sizeof(*plan));
}

int dsc_plan_node_index(const dst_plan_t *plan, uint32_t node_id)
{
    for (uint32_t i = 0; plan->nodes != NULL && i < plan->n_nodes; i++) {
        if (plan->nodes[i].node_id == node_id)
            return (int)i;
    }
    return -1;
}

static dsi_status_t check_stages(const dst_plan_t *plan)
{
    if (plan->n_stages == 0 || plan->stages == NULL || plan->n_layers == 0) {
        DSI_ERROR("plan check: %u stages over %u layers", plan->n_stages, plan->n_layers);
        return DSI_ERR_INVALID_ARG;
    }
    uint32_t next = 0;
    for (uint32_t s = 0; s < plan->n_stages; s++) {
        const dst_plan_stage_t *st = &plan->stages[s];
        if (st->first_layer != next || st->end_layer <= st->first_layer ||
            st->end_layer > plan->n_layers) {
            DSI_ERROR("plan check: stage %u has layers [%u, %u); expected to start at %u, be "
                      "non-empty and end by %u",
                      s, st->first_layer, st->end_layer, next, plan->n_layers);
            return DSI_ERR_INVALID_ARG;
        }
        next = st->end_layer;
    }
    if (next != plan->n_layers) {
        DSI_ERROR("plan check: stages cover layers [0, %u) of %u", next, plan->n_layers);
        return DSI_ERR_INVALID_ARG;
    }
    if (plan->first_moe_layer > plan->n_layers) {
        DSI_ERROR("plan check: first MoE layer %u beyond %u layers", plan->first_moe_layer,
                  plan->n_layers);
        return DSI_ERR_INVALID_ARG;
    }
    return DSI_OK;
}

static int id_cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static dsi_status_t check_nodes(const dst_plan_t *plan)
{
    if (plan->n_nodes == 0 || plan->nodes == NULL) {
        DSI_ERROR("plan check: no nodes");
        return DSI_ERR_INVALID_ARG;
    }
    uint32_t *ids = malloc(plan->n_nodes * sizeof(uint32_t));
    uint8_t *staffed = calloc(plan->n_stages, 1);
    dsi_status_t st = DSI_ERR_INVALID_ARG;
    if (ids == NULL || staffed == NULL) {
        DSI_ERROR("plan check: out of memory for %u nodes", plan->n_nodes);
        st = DSI_ERR_NOMEM;
        goto out;
    }
    for (uint32_t i = 0; i < plan->n_nodes; i++) {
        const dst_plan_node_t *n = &plan->nodes[i];
        if (n->stage >= plan->n_stages) {
            DSI_ERROR("plan check: node %u is in stage %u of %u", n->node_id, n->stage,
                      plan->n_stages);
            goto out;
        }
        if (n->mem_planned > n->mem_budget) {
            DSI_ERROR("plan check: node %u is planned %llu bytes over its budget of %llu",
                      n->node_id, (unsigned long long)(n->mem_planned - n->mem_budget),
                      (unsigned long long)n->mem_budget);
            goto out;
        }
        staffed[n->stage] = 1;
        ids[i] = n->node_id;
    }
    qsort(ids, plan->n_nodes, sizeof(uint32_t), id_cmp);
    for (uint32_t i = 1; i < plan->n_nodes; i++) {
        if (ids[i] == ids[i - 1]) {
            DSI_ERROR("plan check: node id %u appears twice", ids[i]);
            goto out;
        }
    }
    for (uint32_t s = 0; s < plan->n_stages; s++) {
        if (!staffed[s]) {
            DSI_ERROR("plan check: stage %u has no node", s);
            goto out;
        }
    }
    st = DSI_OK;
out:
    free(ids);
    free(staffed);
    return st;
}

/* Every (layer, expert) held at least once, by distinct existing nodes of the layer's stage. */
static dsi_status_t check_experts(const dst_plan_t *plan)
{
    uint64_t count = (uint64_t)(plan->n_layers - plan->first_moe_layer) * plan->n_experts;
    if (count == 0)
        return DSI_OK;
    if (plan->expert_offsets == NULL || plan->expert_holders == NULL ||
        plan->expert_offsets[0] != 0) {
        DSI_ERROR("plan check: expert holder lists missing or not starting at 0");
        return DSI_ERR_INVALID_ARG;
    }
    for (uint64_t i = 0; i < count; i++) {
        uint32_t layer = plan->first_moe_layer + (uint32_t)(i / plan->n_experts);
        uint32_t e = (uint32_t)(i % plan->n_experts);
        uint32_t a = plan->expert_offsets[i], b = plan->expert_offsets[i + 1];
        if (b <= a) {
            DSI_ERROR("plan check: expert %u of layer %u has no holder", e, layer);
            return DSI_ERR_INVALID_ARG;
        }
        for (uint32_t h = a; h < b; h++) {
            uint32_t id = plan->expert_holders[h];
            int n = dsc_plan_node_index(plan, id);
            if (n < 0) {
                DSI_ERROR("plan check: expert %u of layer %u is held by unknown node %u", e, layer,
                          id);
                return DSI_ERR_INVALID_ARG;
            }
            const dst_plan_stage_t *st = &plan->stages[plan->nodes[n].stage];
            if (layer < st->first_layer || layer >= st->end_layer) {
                DSI_ERROR("plan check: expert %u of layer %u is held by node %u of stage %u "
                          "(layers %u-%u)",
                          e, layer, id, plan->nodes[n].stage, st->first_layer, st->end_layer - 1);
                return DSI_ERR_INVALID_ARG;
            }
            for (uint32_t g = a; g < h; g++) {
                if (plan->expert_holders[g] == id) {
                    DSI_ERROR("plan check: expert %u of layer %u lists node %u twice", e, layer,
                              id);
                    return DSI_ERR_INVALID_ARG;
                }
            }
        }
    }
    return DSI_OK;
}

/* The MTP layer's experts, when placed: each held at least once, by distinct nodes of the last
 * stage. */
static dsi_status_t check_mtp(const dst_plan_t *plan)
{
    if (plan->mtp_offsets == NULL && plan->mtp_holders == NULL)
        return DSI_OK;
    if (plan->mtp_offsets == NULL || plan->mtp_holders == NULL || plan->n_experts == 0 ||
        plan->mtp_offsets[0] != 0) {
        DSI_ERROR("plan check: MTP expert holder lists incomplete or not starting at 0");
        return DSI_ERR_INVALID_ARG;
    }
    for (uint32_t e = 0; e < plan->n_experts; e++) {
        const uint32_t *off = plan->mtp_offsets;
        if (off[e + 1] <= off[e]) {
            DSI_ERROR("plan check: expert %u of the MTP layer has no holder", e);
            return DSI_ERR_INVALID_ARG;
        }
        for (uint32_t h = off[e]; h < off[e + 1]; h++) {
            uint32_t id = plan->mtp_holders[h];
            int n = dsc_plan_node_index(plan, id);
            if (n < 0 || plan->nodes[n].stage != plan->n_stages - 1) {
                DSI_ERROR("plan check: expert %u of the MTP layer is held by node %u, not a node "
                          "of the last stage",
                          e, id);
                return DSI_ERR_INVALID_ARG;
            }
            for (uint32_t g = off[e]; g < h; g++) {
                if (plan->mtp_holders[g] == id) {
                    DSI_ERROR("plan check: expert %u of the MTP layer lists node %u twice", e, id);
                    return DSI_ERR_INVALID_ARG;
                }
            }
        }
    }
    return DSI_OK;
}

dsi_status_t dsc_plan_check(const dst_plan_t *plan)
{
    if (plan == NULL) {
        DSI_ERROR("plan check: no plan");
        return DSI_ERR_INVALID_ARG;
    }
    dsi_status_t st = check_stages(plan);
    if (st == DSI_OK)
        st = check_nodes(plan);
    if (st == DSI_OK)
        st = check_experts(plan);
    if (st == DSI_OK)
        st = check_mtp(plan);
    return st;
}

void dsc_plan_node_usage(const dst_plan_t *plan, uint32_t index, const dsn_config_t *cfg,
                         const dsc_memory_t *mem, const dsc_plan_opts_t *opts,
                         dsc_node_usage_t *out)
{
    const dst_plan_node_t *node = &plan->nodes[index];
    const dst_plan_stage_t *st = &plan->stages[node->stage];
    dsc_node_usage_t u;
    memset(&u, 0, sizeof(u));
    for (uint32_t l = st->first_layer; l < st->end_layer; l++)
        u.weights += dsc_memory_layer_fixed(mem, cfg, l);
    if (node->stage == 0)
        u.weights += mem->embed;
    if (node->stage == plan->n_stages - 1) {
        u.weights += mem->head;
        u.mtp = dsc_planner_mtp_bytes(mem, opts);
        if (u.mtp > 0 && plan->mtp_offsets != NULL) {
            /* Placed: the layer's non-expert part, and the experts this node holds. */
            uint32_t held = 0;
            for (uint32_t e = 0; e < plan->n_experts; e++)
                held += (uint32_t)dst_plan_holds_mtp(plan, e, node->node_id);
            u.mtp_experts = held;
            u.mtp =
                u.mtp - mem->mtp_experts + (uint64_t)held * (mem->mtp_experts / plan->n_experts);
        }
    }
    uint64_t count = (uint64_t)(plan->n_layers - plan->first_moe_layer) * plan->n_experts;
    uint32_t n_holders = count > 0 ? plan->expert_offsets[count] : 0;
    for (uint32_t h = 0; h < n_holders; h++)
        u.n_experts += plan->expert_holders[h] == node->node_id;
    u.experts = (uint64_t)u.n_experts * mem->expert;
    uint64_t kvt = opts->kv_token_layer > 0 ? opts->kv_token_layer : mem->kv_token_layer;
    u.kv = dsc_memory_kv_layer(mem, opts->kv_tokens, kvt) * (st->end_layer - st->first_layer);
    u.overhead = opts->overhead;
    u.total = u.weights + u.experts + u.kv + u.mtp + u.overhead;
    *out = u;
}
