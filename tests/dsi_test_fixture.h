/*
 * dsi_test_fixture.h - a fixture checkpoint with its Hugging Face reference outputs, and the checks
 * the engine's fixture tests share: prefill (logits, hidden states, routes) and batched greedy
 * generation against the reference, and the accuracy of a teacher-forced run.
 */
#ifndef DSI_TEST_FIXTURE_H
#define DSI_TEST_FIXTURE_H

#include <stdint.h>

#include "dsn_checkpoint.h"
#include "dsn_engine.h"

#define DSI_FIXTURE_TOL_LOGITS 1e-3
#define DSI_FIXTURE_TOL_HIDDEN 1e-3
#define DSI_FIXTURE_TOL_WEIGHT 1e-4 /* routing weights are O(0.1) x the routed scaling */

typedef struct {
    const char *name; /* the fixture's folder name, for messages */
    dsn_checkpoint_t *ckpt;
    const dsn_config_t *cfg;
    dsn_st_file_t *ref; /* reference.safetensors */
} dsi_fixture_t;

/* Opens fixture `name` (dsi_test_fixture: a missing fixture skips, or fails under CI); exits 1
 * naming the folder when it cannot be read. */
void dsi_fixture_open(dsi_fixture_t *fx, const char *name);
void dsi_fixture_close(dsi_fixture_t *fx);

/* The reference tensor named by the printf format; exits 1 naming it when it is missing. */
const dsn_st_tensor_t *dsi_fixture_ref(const dsi_fixture_t *fx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prefills prompt p alone with the trace hooks on: logits at every position, hidden states after
 * every layer and each MoE layer's experts and weights against the reference. */
void dsi_fixture_check_prefill(const dsi_fixture_t *fx, dsn_engine_t *eng, int p,
                               const char *level);

/* Prefills prompts first..first+count-1 in one call, then decodes `steps` greedy steps with all
 * of them in each call (the reference token fed back, so one miss does not cascade): every step's
 * logits within tolerance and its greedy token equal to the reference's. */
void dsi_fixture_check_generation(const dsi_fixture_t *fx, dsn_engine_t *eng, int first, int count,
                                  int steps, const char *level);

/* Logit errors and greedy agreement of teacher-forced runs against the reference. */
typedef struct {
    double max_err; /* largest |logit - reference| (NaN counts as largest) */
    double sum_err; /* sum of |logit - reference| over n_err logits */
    int64_t n_err;
    int pre_agree; /* prefill positions whose argmax equals the reference's */
    int pre_total;
    int gen_agree; /* decode steps whose argmax equals the reference token */
    int gen_total;
} dsi_fixture_accuracy_t;

void dsi_fixture_accuracy_add(dsi_fixture_accuracy_t *acc, const float *got, const float *want,
                              int64_t n);
/* Prefills prompt p and decodes `steps` steps teacher-forced, adding to acc. */
void dsi_fixture_measure(const dsi_fixture_t *fx, dsn_engine_t *eng, int p, int steps,
                         dsi_fixture_accuracy_t *acc);

#endif
