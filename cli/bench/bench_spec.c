#include "bench_spec.h"

#include <stdlib.h>
#include <string.h>

#include "bench_probe.h"
#include "dsi_clock.h"
#include "dsn_spec.h"

#define MAX_SAMPLES 1024

int bench_spec_run(dsn_engine_t *eng, dsn_mtp_t *mtp, const int32_t *prompt, int64_t len,
                   int reps, int steps, bench_spec_t *out)
{
    const dsn_config_t *cfg = &dsn_engine_weights(eng)->cfg;
    const int64_t H = cfg->hidden_size, V = cfg->vocab_size, W = BENCH_SPEC_MAX_K + 1;
    int n = reps * steps > MAX_SAMPLES ? MAX_SAMPLES : reps * steps;
    float *h = malloc((size_t)(len + W) * (size_t)H * sizeof(float));
    float *hidden = malloc((size_t)(len + W) * (size_t)H * sizeof(float));
    float *logits = malloc((size_t)(len + W) * (size_t)V * sizeof(float));
    float *mh = malloc((size_t)H * sizeof(float));
    double *samples = malloc((size_t)(2 * W + 1) * MAX_SAMPLES * sizeof(double));
    dsn_kvcache_t *kv = NULL, *mkv = NULL;
    int rc = 1;
    memset(out, 0, sizeof(*out));
    if (h == NULL || hidden == NULL || logits == NULL || mh == NULL || samples == NULL ||
        dsn_engine_kvcache_create(eng, len + W + 1, &kv) != DSI_OK ||
        dsn_mtp_kvcache_create(mtp, len + W + 1, &mkv) != DSI_OK) {
        fprintf(stderr, "dsinfer bench model: out of memory\n");
        goto out;
    }
    /* The context: the prompt through the main model, its pairs through the module. */
    dsn_seq_batch_t b = {kv, 0, (int)len};
    if (dsn_spec_main_forward(eng, prompt, &b, 1, h, hidden, logits) != DSI_OK)
        goto fail;
    if (len > 1) {
        dsn_seq_batch_t mb = {mkv, 0, (int)len - 1};
        if (dsn_mtp_forward(mtp, prompt + 1, hidden, &mb, 1, 0, logits, NULL) != DSI_OK)
            goto fail;
    }
    memcpy(mh, hidden + (len - 1) * H, (size_t)H * sizeof(float));
    int32_t tokens[BENCH_SPEC_MAX_K + 1];
    for (int i = 0; i < W; i++)
        tokens[i] = (int32_t)((len * 31 + i * 7 + 5) % V);
    int idx = 0;
    for (int r = 0; r < reps; r++) {
        for (int s = 0; s < steps && idx < n; s++, idx++) {
            /* one-token decode step, as without speculation */
            dsn_seq_batch_t one = {kv, len, 1};
            double t0 = dsi_now_s();
            if (dsn_engine_forward(eng, tokens, &one, 1, 0, logits) != DSI_OK)
                goto fail;
            samples[idx] = (dsi_now_s() - t0) * 1e3;
            dsn_kvcache_truncate(kv, len);
            for (int k = 1; k < W; k++) {
                /* verify: k + 1 tokens, every row's logits and hidden state */
                dsn_seq_batch_t vb = {kv, len, k + 1};
                t0 = dsi_now_s();
                if (dsn_spec_main_forward(eng, tokens, &vb, 1, h, hidden, logits) != DSI_OK)
                    goto fail;
                samples[(size_t)(k * MAX_SAMPLES + idx)] = (dsi_now_s() - t0) * 1e3;
                dsn_kvcache_truncate(kv, len);
                /* draft: k passes of the module, each on its previous output */
                t0 = dsi_now_s();
                const float *src = mh;
                for (int j = 0; j < k; j++) {
                    dsn_seq_batch_t db = {mkv, mkv->length, 1};
                    if (dsn_mtp_forward(mtp, &tokens[j], src, &db, 1, 0, logits, h) != DSI_OK)
                        goto fail;
                    src = h;
                }
                samples[(size_t)((W + k) * MAX_SAMPLES + idx)] = (dsi_now_s() - t0) * 1e3;
                dsn_kvcache_truncate(mkv, len - 1);
            }
        }
    }
    out->step_ms = bench_median(samples, n);
    out->verify_ms[0] = out->step_ms;
    double a = BENCH_SPEC_ACCEPT;
    out->tokens_per_step[0] = out->speedup[0] = 1.0;
    for (int k = 1; k < W; k++) {
        out->verify_ms[k] = bench_median(samples + (size_t)k * MAX_SAMPLES, n);
        out->draft_ms[k] = bench_median(samples + (size_t)(W + k) * MAX_SAMPLES, n);
        /* each draft accepted with probability a once those before it were: 1 + a + ... + a^k */
        double e = 0, p = 1;
        for (int j = 0; j <= k; j++, p *= a)
            e += p;
        out->tokens_per_step[k] = e;
        out->speedup[k] = e * out->step_ms / (out->verify_ms[k] + out->draft_ms[k]);
    }
    rc = 0;
    goto out;
fail:
    fprintf(stderr, "dsinfer bench model: a speculative-decoding pass failed\n");
out:
    dsn_kvcache_destroy(kv);
    dsn_kvcache_destroy(mkv);
    free(h);
    free(hidden);
    free(logits);
    free(mh);
    free(samples);
    return rc;
}

void bench_spec_print(const bench_spec_t *r, int json, FILE *out)
{
    if (json) {
        fprintf(out, "\"speculative\": {\"acceptance\": %.2f, \"step_ms\": %.3f, \"k\": [",
                BENCH_SPEC_ACCEPT, r->step_ms);
        for (int k = 1; k <= BENCH_SPEC_MAX_K; k++)
            fprintf(out,
                    "%s{\"draft_tokens\": %d, \"verify_ms\": %.3f, \"draft_ms\": %.3f, "
                    "\"tokens_per_step\": %.3f, \"speedup\": %.3f}",
                    k > 1 ? ", " : "", k, r->verify_ms[k], r->draft_ms[k], r->tokens_per_step[k],
                    r->speedup[k]);
        fprintf(out, "]}");
        return;
    }
    fprintf(out, "speculative decoding (MTP layer; speed-up at %.0f%% acceptance per draft):\n",
            100 * BENCH_SPEC_ACCEPT);
    fprintf(out, "  one-token step %.2f ms\n", r->step_ms);
    for (int k = 1; k <= BENCH_SPEC_MAX_K; k++)
        fprintf(out,
                "  K=%d: verify of %d tokens %.2f ms (%.2fx a step), draft %.2f ms, %.2f tokens "
                "per step, decode speed-up %.2fx\n",
                k, k + 1, r->verify_ms[k], r->verify_ms[k] / r->step_ms, r->draft_ms[k],
                r->tokens_per_step[k], r->speedup[k]);
}
