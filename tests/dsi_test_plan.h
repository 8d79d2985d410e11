/*
 * dsi_test_plan.h - the model shapes, nodes and plan options the memory model, planner and
 * estimate unit tests plan with.
 */
#ifndef DSI_TEST_PLAN_H
#define DSI_TEST_PLAN_H

#include <stdint.h>

#include "dsc_planner.h"

/* DeepSeek-V3 671B as in MODEL.md section 1. */
dsn_config_t dsi_test_cfg_671b(void);
/* The tiny-v3 fixture's shape (fixtures/README.md). */
dsn_config_t dsi_test_cfg_tiny(void);
/* n nodes with ids 0 .. n - 1, `budget` bytes and 2 cores each. */
void dsi_test_plan_nodes(dsc_node_desc_t *nodes, uint32_t n, uint64_t budget);
/* The planner's defaults with a KV reserve of 1024 tokens and 1 MiB of overhead per node. */
void dsi_test_plan_opts_small(dsc_plan_opts_t *o);

#endif
