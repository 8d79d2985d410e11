/*
 * dsi_test_cluster.h - the cluster half of the tests that compare a real cluster with the
 * single-process engine: greedy generation on a coordinator in the test process and local
 * dsinfer-node processes, checked token for token and logit for logit.
 */
#ifndef DSI_TEST_CLUSTER_H
#define DSI_TEST_CLUSTER_H

#include <stdint.h>
#include <uv.h>

#include "dsc_cluster.h"

/* What the single-process engine produced for the prompts (dsi_test_greedy). */
typedef struct {
    int n;                        /* prompts */
    const int32_t *const *prompt; /* [n] -> [len[i]] */
    const uint32_t *len;          /* [n] */
    uint32_t steps;               /* greedy steps of each */
    const int32_t *tokens;        /* [n, steps] */
    float *const *logits;         /* [n] -> [steps, vocab] */
    int64_t vocab;
} dsi_test_cluster_ref_t;

/*
 * Runs ref's prompts greedily on `nodes` local node processes in `stages` pipeline stages; the
 * tokens must equal ref->tokens and the last stage's logits of every step (dumped through
 * DSINFER_LOGITS_DIR) be within 1e-5 of ref->logits; afterwards no node process may be left.
 * Failures are counted by the dsi_test checks.
 */
void dsi_test_cluster_greedy(const char *model, int nodes, int stages,
                             const dsi_test_cluster_ref_t *ref);

/*
 * The fixture `name`'s first n_prompts prompts, `steps` greedy tokens each: the single-process
 * engine must give the reference's tokens, then every plan configs[i] = {nodes, stages} must give
 * the engine's (dsi_test_cluster_greedy).
 */
void dsi_test_cluster_fixture(const char *name, int n_prompts, int steps, const int (*configs)[2],
                              int n_configs);

/*
 * The options of the coordinators the in-process cluster tests run on `loop`: `model`'s config
 * into cfg, `nodes` expected, `stages` pipeline stages, a KV reserve of 4096 tokens, 64 MiB of
 * overhead per node and the environment's secret. Tests set their own timings after it.
 */
void dsi_test_coordinator_opts(const char *model, uint32_t nodes, uint32_t stages,
                               dsn_config_t *cfg, dsc_cluster_opts_t *co);
/* Closes every handle of loop, runs it until they are closed, and closes it. */
void dsi_test_loop_close(uv_loop_t *loop);

#endif
