/*
 * dsc_planner_impl.h - what the planner's files share internally (not a public header):
 * dsc_planner.c chooses stages, layer ranges and per-node expert counts (the layout);
 * dsc_planner_experts.c chooses which experts each node holds; dsc_plan.c has plan utilities.
 */
#ifndef DSC_PLANNER_IMPL_H
#define DSC_PLANNER_IMPL_H

#include "dsc_planner.h"

/* The inputs of one planning run, validated, with derived tables. */
typedef struct {
    const dsn_config_t *cfg;
    const dsc_plan_opts_t *opts;
    const dsc_node_desc_t *nodes; /* [n] */
    uint32_t n;
    dsc_memory_t mem;
    uint32_t n_layers, first_moe, n_experts;
    uint64_t *fixed_prefix; /* [n_layers + 1]: non-expert bytes of layers [0, i) */
} planner_t;

/* A candidate layout: stages, their layer ranges and node sets, expert copies per node. */
typedef struct {
    uint32_t n_stages;
    uint32_t *cuts;      /* [n_stages + 1]: stage s has layers [cuts[s], cuts[s + 1]) */
    uint32_t *stage_of;  /* [n]: stage of each node (index into planner_t.nodes) */
    uint32_t *copies;    /* [n]: routed expert copies each node is to hold */
    uint32_t *redundant; /* [n_stages]: extra copies per MoE layer used in stage s */
    double max_use;      /* largest planned / budget over nodes */
    uint32_t worst;      /* node index with that use */
    uint32_t n_last;     /* nodes in the last stage (they share the MTP layer's experts) */
} layout_t;

/* Non-expert bytes a node of stage s carries: weights of its layers, embed/head, KV, overhead. */
uint64_t dsc_planner_stage_fixed(const planner_t *p, const layout_t *lay, uint32_t s);
/* MoE layers in [first, end). */
uint32_t dsc_planner_moe_layers(const planner_t *p, uint32_t first, uint32_t end);

/*
 * Choose the experts of every node for the layout (steps 3-4 of dsc_planner.h) and write
 * plan->expert_offsets / expert_holders; updates node mem_planned for copies actually placed and
 * fills the report's expert fields. plan->nodes and stages must be filled.
 */
dsi_status_t dsc_planner_place_experts(const planner_t *p, const layout_t *lay, dst_plan_t *plan,
                                       dsc_plan_report_t *rep);

#endif
