/*
 * The single-node engine against the Hugging Face reference outputs of ../shared/fixtures/tiny-v3:
 * prefill logits at every position, hidden states after every layer, expert sets and weights at
 * every MoE layer, and the 16-token greedy continuation with each step's logits; per prompt and
 * with all four prompts in one batched call; at every kernel level this CPU has, the scalar one
 * included.
 */
#include "dsi_test.h"
#include "dsi_test_fixture.h"

#define N_PROMPTS 4
#define GEN_STEPS 16

int main(void)
{
    dsi_fixture_t fx;
    dsi_fixture_open(&fx, "tiny-v3");
    dsn_slice_t all = dsn_slice_all(fx.cfg);
    dsn_weights_t *w;
    DSI_CHECK_INT_EQ(dsn_weights_load(fx.ckpt, &all, &w), DSI_OK);

    dsk_level_t top = dsk_level_cpu();
    for (int level = 0; level <= (int)top; level++) {
        if (level != DSK_LEVEL_SCALAR && level != (int)top)
            continue;
        const char *name = dsk_level_name((dsk_level_t)level);
        dsn_engine_t *eng;
        DSI_CHECK_INT_EQ(dsn_engine_create(w, (dsk_level_t)level, 2, &eng), DSI_OK);
        for (int p = 0; p < N_PROMPTS; p++) {
            dsi_fixture_check_prefill(&fx, eng, p, name);
            /* The scalar references are slow: one-prompt generation only at the top level. */
            if (level != DSK_LEVEL_SCALAR)
                dsi_fixture_check_generation(&fx, eng, p, 1, GEN_STEPS, name);
        }
        dsi_fixture_check_generation(&fx, eng, 0, N_PROMPTS, GEN_STEPS, name);
        dsn_engine_destroy(eng);
    }
    dsn_weights_destroy(w);
    dsi_fixture_close(&fx);
    return dsi_test_finish();
}
