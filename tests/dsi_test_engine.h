/*
 * dsi_test_engine.h - the single-process engine as the reference of the cluster and fault tests:
 * greedy continuations of a set of prompts, and the prompt sets those tests share.
 */
#ifndef DSI_TEST_ENGINE_H
#define DSI_TEST_ENGINE_H

#include <stdint.h>

#include "dsn_sampler.h"

/*
 * Greedy continuation of each prompt r (prompts[r], lens[r] tokens) for `steps` tokens with the
 * single-process engine of `model`: tokens[r * steps + s]. With logits non-NULL, logits[r] gets a
 * malloc'ed [steps, vocab] array of the logits that chose each token (caller frees). Exits the
 * test with an error when the model cannot be loaded. Returns the vocabulary size.
 */
int64_t dsi_test_greedy(const char *model, int n_prompts, const int32_t *const *prompts,
                        const uint32_t *lens, int steps, int32_t *tokens, float **logits);
/* The same with sampling: each prompt gets a sampler of its own with `sampling` (its seed). */
int64_t dsi_test_sample(const char *model, int n_prompts, const int32_t *const *prompts,
                        const uint32_t *lens, int steps, const dsn_sampling_t *sampling,
                        int32_t *tokens);

/* Deterministic prompt r of the fault tests: 3 + r % 6 ids below 1000 (valid in every test model),
 * into out[8]. */
uint32_t dsi_test_prompt(int r, int32_t out[8]);

#endif
