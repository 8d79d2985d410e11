#include "run_spec.h"

#include <stdlib.h>
#include <string.h>

#include "dsi_clock.h"

int run_spec_generate(dsn_engine_t *eng, dsn_mtp_t *mtp, const run_spec_opts_t *o,
                      run_spec_result_t *r)
{
    const dsn_config_t *cfg = &dsn_engine_weights(eng)->cfg;
    int V = cfg->vocab_size, W = o->k + 1;
    /* The steps near the end verify fewer drafts (dsn_spec.h): no room beyond the tokens. */
    int64_t max_ctx = o->n_prompt + o->max_tokens;
    if (max_ctx > cfg->max_position_embeddings) {
        fprintf(stderr,
                "dsinfer run: %d prompt tokens + --max-tokens %lld = %lld tokens, more than the "
                "model's max_position_embeddings (%d)\n",
                o->n_prompt, o->max_tokens, (long long)max_ctx, cfg->max_position_embeddings);
        return 1;
    }
    dsn_spec_t *spec = NULL;
    dsn_kvcache_t *kv = NULL, *mkv = NULL;
    dsn_sampler_t sampler;
    dsn_spec_seq_t seq;
    int rc = 1, have_sampler = 0;
    float *logits = malloc((size_t)V * (size_t)W * sizeof(float));
    int32_t out[DSN_SPEC_MAX_K + 1];
    r->tokens = malloc((size_t)(o->max_tokens + W) * sizeof(int32_t));
    memset(&seq, 0, sizeof(seq));
    if (logits == NULL || r->tokens == NULL || dsn_sampler_init(&sampler, &o->sampling, V) != 0)
        goto out;
    have_sampler = 1;
    if (dsn_spec_create(eng, mtp, o->k, &spec) != DSI_OK ||
        dsn_engine_kvcache_create(eng, max_ctx, &kv) != DSI_OK ||
        dsn_mtp_kvcache_create(mtp, max_ctx, &mkv) != DSI_OK)
        goto out;
    dsn_spec_seq_init(&seq, kv, mkv, &sampler);
    double t0 = dsi_now_s();
    for (int done = 0; done < o->n_prompt;) {
        int chunk = o->n_prompt - done;
        if (chunk > o->prefill_chunk)
            chunk = (int)o->prefill_chunk;
        if (dsn_spec_prefill(spec, &seq, o->prompt + done, chunk, logits) != DSI_OK)
            goto out;
        done += chunk;
    }
    double t1 = dsi_now_s();
    r->prefill_s = t1 - t0;
    r->finish_reason = "length";
    int n_emit = 0, stop = 0;
    /* logits row j chose out[j]: the prefill's row for the first token, then each step's. */
    if (o->max_tokens > 0) {
        int32_t tok = dsn_spec_first(spec, &seq, logits);
        if (tok < 0)
            goto not_finite;
        out[0] = tok;
        n_emit = 1;
    }
    while (!stop) {
        for (int j = 0; j < n_emit && !stop; j++) {
            if (o->logits_file != NULL &&
                fwrite(logits + (size_t)j * V, sizeof(float), (size_t)V, o->logits_file) !=
                    (size_t)V)
                goto write_failed;
            r->tokens[r->n_tokens++] = out[j];
            if (o->stream != NULL)
                run_text_stream(o->stream, out[j], stdout);
            if (out[j] == o->eos) {
                r->finish_reason = "stop";
                stop = 1;
            } else if (r->n_tokens >= o->max_tokens) {
                stop = 1;
            }
        }
        if (stop || n_emit == 0)
            break;
        dsn_spec_seq_t *one = &seq;
        dsi_status_t st = dsn_spec_step(spec, &one, 1, out, &n_emit, logits);
        if (st == DSI_ERR_INVALID_ARG)
            goto not_finite;
        if (st != DSI_OK)
            goto out;
    }
    r->decode_s = dsi_now_s() - t1;
    r->stats = *dsn_spec_stats(spec);
    rc = 0;
    goto out;
write_failed:
    fprintf(stderr, "dsinfer run: --logits-out: write failed: %m\n");
    goto out;
not_finite:
    fprintf(stderr, "dsinfer run: step %d: the logits hold NaN or infinite values (broken weights "
                    "or scales in the checkpoint?)\n",
            r->n_tokens);
out:
    dsn_spec_seq_cleanup(&seq);
    dsn_kvcache_destroy(kv);
    dsn_kvcache_destroy(mkv);
    dsn_spec_destroy(spec);
    if (have_sampler)
        dsn_sampler_cleanup(&sampler);
    free(logits);
    return rc;
}

int run_spec_mtp_logits(dsn_engine_t *eng, dsn_mtp_t *mtp, const int32_t *prompt, int n,
                        const char *path)
{
    size_t V = (size_t)dsn_engine_weights(eng)->cfg.vocab_size;
    size_t rows = n > 1 ? (size_t)(n - 1) : 0;
    float *logits = malloc((rows > 0 ? rows : 1) * V * sizeof(float));
    FILE *f = NULL;
    int rc = 1;
    if (logits == NULL)
        goto out;
    if (dsn_spec_mtp_logits(eng, mtp, prompt, n, logits) != DSI_OK)
        goto out;
    if ((f = fopen(path, "wb")) == NULL) {
        fprintf(stderr, "dsinfer run: --mtp-logits-out %s: %m\n", path);
        goto out;
    }
    if (fwrite(logits, sizeof(float), rows * V, f) != rows * V || fclose(f) != 0) {
        f = NULL;
        fprintf(stderr, "dsinfer run: --mtp-logits-out %s: write failed: %m\n", path);
        goto out;
    }
    f = NULL;
    rc = 0;
out:
    if (f != NULL)
        fclose(f);
    free(logits);
    return rc;
}

void run_spec_json(const dsn_spec_stats_t *st, int k, FILE *out)
{
    fprintf(out, "\"draft_tokens\":%d,\"steps\":%llu,\"tokens_per_step\":%.4f,\"acceptance\":[", k,
            (unsigned long long)st->steps,
            st->steps > 0 ? (double)st->emitted / (double)st->steps : 0.0);
    for (int j = 0; j < k; j++)
        fprintf(out, j ? ",%.4f" : "%.4f",
                st->drafted[j] > 0 ? (double)st->accepted[j] / (double)st->drafted[j] : 0.0);
    fprintf(out, "],\"draft_s\":%.6f,\"verify_s\":%.6f", (double)st->draft_ns * 1e-9,
            (double)st->verify_ns * 1e-9);
}

void run_spec_summary(const dsn_spec_stats_t *st, int k, FILE *out)
{
    fprintf(out, "speculative decoding: %d draft token%s, %llu steps, %.2f tokens per step, "
                 "acceptance",
            k, k == 1 ? "" : "s", (unsigned long long)st->steps,
            st->steps > 0 ? (double)st->emitted / (double)st->steps : 0.0);
    for (int j = 0; j < k; j++)
        fprintf(out, " %.2f",
                st->drafted[j] > 0 ? (double)st->accepted[j] / (double)st->drafted[j] : 0.0);
    fprintf(out, " (by draft position)\n");
}
