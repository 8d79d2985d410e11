/*
 * dsc_cluster_condition.c - what the cluster is doing, in one sentence with its numbers: what
 * /health, refused requests and `dsinfer cluster status` tell an operator.
 */
#include <stdio.h>

#include "dsc_cluster_impl.h"

const char *dsc_cluster_phase_name(dsc_cluster_phase_t phase)
{
    static const char *const names[] = {"serving",           "waiting_for_nodes", "loading",
                                        "plan_does_not_fit", "no_nodes",          "shut_down"};
    return (unsigned)phase < sizeof(names) / sizeof(names[0]) ? names[phase] : "unknown";
}

void dsc_cluster_condition(const dsc_cluster_t *cl, dsc_cluster_condition_t *out)
{
    dsc_cluster_condition_t c = {.nodes_expected = cl->opts.expect_nodes};
    for (uint32_t i = 0; i < cl->n_nodes; i++)
        c.nodes_live += dsc_node_live(&cl->nodes[i]);
    for (uint32_t i = 0; cl->planned && i < cl->plan.n_nodes; i++)
        c.nodes_ready += cl->nodes[cl->plan.nodes[i].node_id].state == NODE_READY;
    c.nodes_planned = cl->planned ? cl->plan.n_nodes : 0;
    if (cl->shut_down) {
        c.phase = DSC_CLUSTER_SHUT_DOWN;
        snprintf(c.message, sizeof(c.message), "the cluster was shut down");
    } else if (cl->plan_error[0] != '\0' && cl->plan_missing > 0) {
        c.phase = DSC_CLUSTER_PLAN_DOES_NOT_FIT;
        c.missing_bytes = cl->plan_missing;
        snprintf(c.message, sizeof(c.message),
                 "the model does not fit the memory of the %u live nodes: %s; start nodes with "
                 "more --mem, or more nodes",
                 c.nodes_live, cl->plan_error);
    } else if (cl->plan_error[0] != '\0') {
        c.phase = DSC_CLUSTER_NO_NODES;
        snprintf(c.message, sizeof(c.message), "no plan: %s; waiting for nodes to join",
                 cl->plan_error);
    } else if (cl->ready) {
        c.phase = DSC_CLUSTER_SERVING;
        snprintf(c.message, sizeof(c.message), "serving on %u nodes", c.nodes_planned);
    } else if (!cl->planned) {
        c.phase = DSC_CLUSTER_WAITING_NODES;
        snprintf(c.message, sizeof(c.message),
                 "waiting for nodes: %u of the %u expected have joined", c.nodes_live,
                 c.nodes_expected);
    } else {
        c.phase = DSC_CLUSTER_LOADING;
        snprintf(c.message, sizeof(c.message),
                 "the nodes are loading plan epoch %llu: %u of %u ready",
                 (unsigned long long)cl->plan.epoch, c.nodes_ready, c.nodes_planned);
    }
    *out = c;
}
