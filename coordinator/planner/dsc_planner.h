/*
 * dsc_planner.h - the planner: from the model config and the registered nodes (each with a memory
 * budget) it chooses pipeline stages (contiguous layer ranges, nodes divided among them) and the
 * nodes that hold every (MoE layer, routed expert), within every budget, balancing bytes.
 *
 * What a node of stage s holds (dsc_memory.h has the byte counts): the non-expert weights of every
 * layer of s (attention, norms, dense MLP or router + shared expert; the nodes of a stage split
 * its sequences, data-parallel attention, so each needs them all), the embedding on stage 0, the
 * final norm and lm_head on the last stage, a latent-KV reserve of kv_tokens tokens for the
 * layers of s, a fixed runtime overhead, and its share of the routed experts of the layers of s;
 * with speculative decoding (opts.mtp), the MTP layer's non-expert part and its cache on every
 * node of the last stage, and a share of the MTP layer's routed experts (plan->mtp_offsets).
 * Experts stay inside their layer's stage, so a stage's expert traffic stays among its nodes.
 *
 * The algorithm, in order (docs/PLANNING.md explains it with examples):
 *   1. Stage count: the given one, else the previous plan's when it still fits, else the fewest
 *      stages that fit. A node is in exactly one stage; stages get equal node counts (+-1).
 *   2. Layer ranges: dynamic programming over the cut points minimising the largest expected
 *      memory use (planned / budget) of any node.
 *   3. Expert copies per node: one at a time to the node whose use grows least (water filling,
 *      which balances bytes across unequal budgets), then per layer so that each node has an even
 *      share of every layer (a layer's tokens spread over all nodes of the stage).
 *   4. Which experts: kept where the previous plan had them when the quotas allow (fewest bytes
 *      moved); with load counts, EPLB-style: extra replicas go one by one to the expert with the
 *      highest load per copy, and copies are packed heaviest first onto the least-loaded node
 *      (when the stage's node count divides n_group and nothing is kept from a previous plan,
 *      whole expert groups are first packed onto nodes by group load: the hierarchical policy);
 *      without load counts each node gets a contiguous run of every layer's experts, which keeps
 *      expert groups together.
 *
 * A plan that cannot fit is refused with DSI_ERR_CAPACITY and an explanation naming the node and
 * how much memory it lacks, or the whole cluster's shortfall.
 */
#ifndef DSC_PLANNER_H
#define DSC_PLANNER_H

#include <stdint.h>

#include "dsc_memory.h"
#include "dsi_status.h"
#include "dsn_config.h"
#include "dst_plan.h"

/* A registered node as the planner sees it. */
typedef struct {
    uint32_t id;         /* unique node id */
    uint64_t mem_budget; /* bytes the node offers, at most 2^50 */
    uint32_t cores;      /* informational: not used for placement yet */
    const char *name;    /* its name for messages, or NULL; not owned, read during the call */
} dsc_node_desc_t;

typedef struct {
    dsc_weight_format_t format; /* memory model of the weights */
    uint64_t kv_tokens;         /* latent-KV tokens reserved on every node for its layers */
    uint64_t kv_token_layer;    /* their bytes per token per layer (--kv-dtype); 0: the memory
                                   model's f32 figure */
    uint64_t overhead;          /* fixed bytes per node: activations, buffers, the runtime */
    /*
     * 1: speculative decoding is on (--speculative-tokens > 0): every node of the last stage
     * holds the config's MTP layer's non-expert weights and its f32 latent cache of kv_tokens
     * tokens (mtp_kv_token); the layer's routed experts are spread over the last stage's nodes
     * like a MoE layer's (plan->mtp_offsets; one copy each, contiguous runs). Nothing for a
     * config without the layer.
     */
    uint8_t mtp;
    uint32_t n_stages; /* 0: choose (see step 1); else exactly this many */
    /*
     * Extra expert copies per MoE layer (EPLB's redundant experts), at most n_experts *
     * (nodes in the stage - 1) are used. Needs `load`.
     */
    uint32_t redundant_experts;
    /*
     * Tokens routed to each (layer, expert) over a recent window, or NULL: load[(l -
     * first_moe_layer) * n_experts + e], (n_layers - first_moe_layer) * n_experts entries.
     * Not owned; read during the call only.
     */
    const uint64_t *load;
    /* A plan to stay close to (fewest experts moved), or NULL. Not owned. */
    const dst_plan_t *previous;
    uint64_t epoch; /* written into the plan */
} dsc_plan_opts_t;

/* fp8, 32768 KV tokens, 2 GiB overhead, stages chosen, no replicas, no load, no previous plan,
 * no MTP layer. */
void dsc_plan_opts_default(dsc_plan_opts_t *opts);
/* Bytes the MTP layer (all its experts included) and its cache add to a node of the last stage
 * that holds the whole layer (0 without opts->mtp). */
uint64_t dsc_planner_mtp_bytes(const dsc_memory_t *mem, const dsc_plan_opts_t *opts);
/* Routed experts of the MTP layer that node k of n nodes in the last stage holds (contiguous
 * runs, the first E mod n nodes one more); 0 without opts->mtp or without the layer's experts. */
uint32_t dsc_planner_mtp_share(const dsc_memory_t *mem, const dsc_plan_opts_t *opts,
                               uint32_t n_experts, uint32_t k, uint32_t n);

typedef struct {
    dsc_memory_t mem;       /* the memory model used */
    uint64_t expert_copies; /* (layer, expert, node) triples in the plan, replicas included */
    uint64_t replicas;      /* expert_copies - experts: redundant copies placed */
    uint64_t experts_moved; /* copies on a node that the previous plan did not have there */
    uint64_t bytes_moved;   /* weight bytes nodes must load that the previous plan did not
                               put there (with no previous plan: every weight byte planned) */
    double load_imbalance;  /* with load: mean over MoE layers of (max / mean) expected load
                               per node of the layer's stage, 1 = perfect; 0 without load */
    double max_use;         /* largest mem_planned / mem_budget of any node */
    char reason[512];       /* on DSI_ERR_CAPACITY: why; otherwise "" */
    /* On DSI_ERR_CAPACITY: bytes missing, and the node that lacks them (its id), or
     * DSC_PLAN_NO_NODE when the nodes together are short (reason names each node's share). */
    uint64_t missing_bytes;
    uint32_t missing_node;
} dsc_plan_report_t;

#define DSC_PLAN_NO_NODE UINT32_MAX

/*
 * Plan `n_nodes` nodes for the model `cfg`. On success *out is filled (the caller owns its arrays:
 * dsc_plan_cleanup()) and, when `report` is not NULL, *report. Errors (logged once, naming the
 * node, field or option): DSI_ERR_CAPACITY (report->reason says why; *out untouched),
 * DSI_ERR_INVALID_ARG (bad node list, options or a previous plan of another model shape),
 * DSI_ERR_CONFIG (config outside the memory model's ranges), DSI_ERR_NOMEM.
 */
dsi_status_t dsc_planner_plan(const dsn_config_t *cfg, const dsc_node_desc_t *nodes,
                              uint32_t n_nodes, const dsc_plan_opts_t *opts, dst_plan_t *out,
                              dsc_plan_report_t *report);

/* Free the arrays of a plan made by dsc_planner_plan() (or any plan whose arrays are malloc'ed)
 * and zero it. NULL and a zeroed plan are fine. */
void dsc_plan_cleanup(dst_plan_t *plan);

/*
 * Check a plan's invariants: stages contiguous, non-empty and covering [0, n_layers); every node
 * in a valid stage with mem_planned <= mem_budget and a unique id; every stage with a node; every
 * (layer, expert) held by >= 1 node, holders listed once each, existing, and in the stage that
 * owns the layer. Logs the first violation; DSI_ERR_INVALID_ARG. For plans from the network too.
 */
dsi_status_t dsc_plan_check(const dst_plan_t *plan);

/* Index into plan->nodes of the node with id `node_id`, or -1. */
int dsc_plan_node_index(const dst_plan_t *plan, uint32_t node_id);

/*
 * A live switch from `cur` to `next` (docs/ELASTICITY.md) has each node of next hold its experts
 * of both plans for a while: its mem_planned in next plus mem->expert per copy it holds only in
 * cur. The id of the first node of next that this puts over its mem_budget, or -1 when all fit.
 */
int64_t dsc_plan_switch_overflow(const dst_plan_t *cur, const dst_plan_t *next,
                                 const dsc_memory_t *mem);

/* What one node of a plan holds, by part, in bytes. */
typedef struct {
    uint64_t weights;     /* non-expert weights of its stage (embedding / head included) */
    uint64_t experts;     /* its routed expert copies */
    uint32_t n_experts;   /* how many copies */
    uint64_t kv;          /* latent-KV reserve */
    uint64_t mtp;         /* the MTP layer and its cache (last stage, dsc_plan_opts_t.mtp): its
                             non-expert part, and the layer's routed experts this node holds
                             (all of them when the plan does not place them) */
    uint32_t mtp_experts; /* how many of those experts, when the plan places them */
    uint64_t overhead;
    uint64_t total; /* the sum: what the planner writes into mem_planned */
} dsc_node_usage_t;

/* The usage of plan->nodes[index] under `mem` and `opts` (kv_tokens, overhead). */
void dsc_plan_node_usage(const dst_plan_t *plan, uint32_t index, const dsn_config_t *cfg,
                         const dsc_memory_t *mem, const dsc_plan_opts_t *opts,
                         dsc_node_usage_t *out);

#endif
