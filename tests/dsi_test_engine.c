#include "dsi_test_engine.h"

#include <stdio.h>
#include <stdlib.h>

#include "dsn_checkpoint.h"
#include "dsn_engine.h"
#include "dsn_sampler.h"

/* Greedy when sampling is NULL. */
static int64_t generate(const char *model, int n_prompts, const int32_t *const *prompts,
                        const uint32_t *lens, int steps, const dsn_sampling_t *sampling,
                        int32_t *tokens, float **logits)
{
    dsn_checkpoint_t *ckpt;
    dsn_weights_t *w;
    dsn_engine_t *e;
    if (dsn_checkpoint_open(model, &ckpt) != DSI_OK) {
        fprintf(stderr, "cannot open %s\n", model);
        exit(1);
    }
    const dsn_config_t *cfg = dsn_checkpoint_config(ckpt);
    int64_t V = cfg->vocab_size;
    dsn_slice_t all = dsn_slice_all(cfg);
    if (dsn_weights_load(ckpt, &all, &w) != DSI_OK ||
        dsn_engine_create(w, dsk_level_detect(), 1, &e) != DSI_OK) {
        fprintf(stderr, "cannot load %s\n", model);
        exit(1);
    }
    float *scratch = malloc((size_t)V * sizeof(float));
    for (int r = 0; r < n_prompts; r++) {
        float *lg = logits != NULL ? malloc((size_t)(steps * V) * sizeof(float)) : NULL;
        int32_t *out = tokens + (int64_t)r * steps;
        dsn_kvcache_t *kv;
        dsn_sampler_t sampler;
        dsn_sampling_t greedy = {0, 1, 0, 0};
        if (scratch == NULL || (logits != NULL && lg == NULL) ||
            dsn_engine_kvcache_create(e, lens[r] + steps, &kv) != DSI_OK ||
            dsn_sampler_init(&sampler, sampling != NULL ? sampling : &greedy, (int)V) != 0) {
            fprintf(stderr, "out of memory\n");
            exit(1);
        }
        for (int s = 0; s < steps; s++) {
            float *dst = lg != NULL ? lg + s * V : scratch;
            dsn_seq_batch_t seq = s == 0 ? (dsn_seq_batch_t){kv, 0, (int)lens[r]}
                                         : (dsn_seq_batch_t){kv, kv->length, 1};
            const int32_t *in = s == 0 ? prompts[r] : &out[s - 1];
            if (dsn_engine_forward(e, in, &seq, 1, 0, dst) != DSI_OK) {
                fprintf(stderr, "reference forward failed\n");
                exit(1);
            }
            out[s] = dsn_sampler_next(&sampler, dst);
        }
        if (logits != NULL)
            logits[r] = lg;
        dsn_sampler_cleanup(&sampler);
        dsn_kvcache_destroy(kv);
    }
    free(scratch);
    dsn_engine_destroy(e);
    dsn_weights_destroy(w);
    dsn_checkpoint_close(ckpt);
    return V;
}

int64_t dsi_test_greedy(const char *model, int n_prompts, const int32_t *const *prompts,
                        const uint32_t *lens, int steps, int32_t *tokens, float **logits)
{
    return generate(model, n_prompts, prompts, lens, steps, NULL, tokens, logits);
}

int64_t dsi_test_sample(const char *model, int n_prompts, const int32_t *const *prompts,
                        const uint32_t *lens, int steps, const dsn_sampling_t *sampling,
                        int32_t *tokens)
{
    return generate(model, n_prompts, prompts, lens, steps, sampling, tokens, NULL);
}

uint32_t dsi_test_prompt(int r, int32_t out[8])
{
    uint32_t n = 3 + (uint32_t)r % 6;
    for (uint32_t i = 0; i < n; i++)
        out[i] = (int32_t)(((uint32_t)r * 131 + i * 17 + 5) % 1000);
    return n;
}
