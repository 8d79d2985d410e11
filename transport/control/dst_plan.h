/*
 * dst_plan.h - the cluster plan as data: what the coordinator's planner produces, what the PLAN
 * control message carries, what a node reads to know its slice. Plain structs, no behaviour
 * beyond lookup; encoding lives with the control protocol (dst_msg).
 *
 * Layers [0, n_layers) of the main model are cut into n_stages contiguous ranges. Each node works
 * in exactly one stage (several nodes of one stage split its sequences: data-parallel attention).
 * Stage 0 also embeds tokens; the last stage also applies the final norm, lm_head and sampling.
 * Every (MoE layer, routed expert) pair is held by one or more nodes (replicas of hot experts),
 * listed in CSR form. With speculative decoding the plan may place the routed experts of the MTP
 * layer too (mtp_offsets), among the nodes of the last stage.
 */
#ifndef DST_PLAN_H
#define DST_PLAN_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t first_layer; /* inclusive */
    uint32_t end_layer;   /* exclusive */
} dst_plan_stage_t;

typedef struct {
    uint32_t node_id;     /* as given by the coordinator at REGISTER */
    uint32_t stage;       /* index into stages */
    uint64_t mem_budget;  /* bytes the node offered */
    uint64_t mem_planned; /* bytes this plan puts on it (weights + KV reserve) */
} dst_plan_node_t;

typedef struct {
    uint64_t epoch;           /* increases with every new plan */
    uint32_t n_layers;        /* main-model layers */
    uint32_t first_moe_layer; /* first_k_dense_replace */
    uint32_t n_experts;       /* routed experts per MoE layer */
    uint32_t n_stages;
    dst_plan_stage_t *stages; /* [n_stages] */
    uint32_t n_nodes;
    dst_plan_node_t *nodes; /* [n_nodes] */
    /*
     * Holders of expert e of layer l (first_moe_layer <= l < n_layers), with
     * i = (l - first_moe_layer) * n_experts + e: node ids expert_holders[expert_offsets[i] ..
     * expert_offsets[i + 1]). expert_offsets has (n_layers - first_moe_layer) * n_experts + 1
     * entries.
     */
    uint32_t *expert_offsets;
    uint32_t *expert_holders;
    /*
     * The MTP layer's routed experts (layer n_layers, run by the nodes of the last stage for
     * speculative decoding), when the plan places them: holders of its expert e are
     * mtp_holders[mtp_offsets[e] .. mtp_offsets[e + 1]), nodes of the last stage; mtp_offsets has
     * n_experts + 1 entries. Both NULL: not placed (a node that runs the layer holds all of it).
     */
    uint32_t *mtp_offsets;
    uint32_t *mtp_holders;
} dst_plan_t;

/* Number of (MoE layer, expert) slots of a plan. */
static inline size_t dst_plan_slots(const dst_plan_t *p)
{
    return (size_t)(p->n_layers - p->first_moe_layer) * p->n_experts;
}

/* Whether node `id` holds slot i (= (layer - first_moe_layer) * n_experts + expert). */
static inline int dst_plan_holds(const dst_plan_t *p, size_t i, uint32_t id)
{
    for (uint32_t h = p->expert_offsets[i]; h < p->expert_offsets[i + 1]; h++) {
        if (p->expert_holders[h] == id)
            return 1;
    }
    return 0;
}

/* Whether node `id` holds routed expert e of the plan's MTP layer. */
static inline int dst_plan_holds_mtp(const dst_plan_t *p, uint32_t e, uint32_t id)
{
    for (uint32_t h = p->mtp_offsets[e]; h < p->mtp_offsets[e + 1]; h++) {
        if (p->mtp_holders[h] == id)
            return 1;
    }
    return 0;
}

#endif
