/*
 * bench_model.c - `dsinfer bench model`: the single-node engine on a real checkpoint against this
 * machine's memory bandwidth, measured in the same run (issue 6 item 2).
 *
 * 1. Memory read bandwidth: the engine's own pool streams 512 MiB (bench_probe.h), once before
 *    each decode repetition, so that every decode measurement has a bandwidth measured next to it
 *    (on a shared machine both drift by 2x within a minute).
 * 2. Prefill: one sequence of --prompt-len tokens in one forward call; tokens/s, median of --reps.
 * 3. Decode: after an untimed prefill, --decode-steps greedy steps of one token; tokens/s over the
 *    steps, median of --reps.
 * 4. Weight bytes read per decode token: every matrix a step touches (attention, dense MLP,
 *    router, shared experts, lm_head, one embedding row) plus the routed experts actually chosen,
 *    counted from the engine's on_route hook during the timed steps.
 * 5. The ratio decode tok/s / (bandwidth / bytes per token), per repetition with its own
 *    bandwidth, median over repetitions: 1.0 means the step streams its weights at the probe's
 *    bandwidth, everything else (attention over the cache, routing, norms, hand-offs) hidden.
 * 6. With the MTP layer in the checkpoint: a verify step of K + 1 tokens and a draft of K tokens
 *    against a one-token step, interleaved, and the decode speed-up they imply (bench_spec.h).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "bench_opt.h"
#include "bench_probe.h"
#include "bench_spec.h"
#include "cli_args.h"
#include "dsi_log.h"
#include "dsn_checkpoint.h"
#include "dsn_engine.h"
#include "dsn_mtp.h"
#include "dsn_sampler.h"

#define MAX_REPS 32

typedef struct {
    const char *model;
    long long threads, prompt_len, decode_steps, reps;
    dsn_weight_format_t format;
    dsn_kv_dtype_t kv_dtype;
    int json;
} opts_t;

/* Weight bytes of the parts one decode step reads. */
typedef struct {
    uint64_t attention, dense_mlp, router, shared, experts, head, embed;
} parts_t;

typedef struct {
    const dsn_weights_t *w;
    uint64_t expert_bytes; /* routed experts used, summed over the counted steps */
    int64_t routed;        /* (token, expert) pairs seen */
} route_count_t;

static uint64_t mbytes(const dsk_matrix_t *m)
{
    return m->data != NULL ? dsk_matrix_bytes(m->dtype, m->rows, m->cols) : 0;
}

static void on_route(void *ctx, int layer, const int32_t *experts, const float *weights,
                     int64_t n_tokens)
{
    (void)weights;
    route_count_t *rc = ctx;
    const dsn_layer_t *ly = &rc->w->layers[layer];
    const int K = rc->w->cfg.num_experts_per_tok;
    /* Distinct experts of the batch: each is streamed once for all its tokens. */
    for (int64_t i = 0; i < n_tokens * K; i++) {
        int dup = 0;
        for (int64_t j = 0; j < i && !dup; j++)
            dup = experts[j] == experts[i];
        const dsn_expert_t *x = &ly->experts[experts[i]];
        if (!dup && x->present)
            rc->expert_bytes += mbytes(&x->gate) + mbytes(&x->up) + mbytes(&x->down);
        rc->routed++;
    }
}

/* Everything a decode step reads except the routed experts. */
static parts_t fixed_parts(const dsn_weights_t *w)
{
    parts_t p = {0};
    for (int l = w->slice.first_layer; l < w->slice.end_layer; l++) {
        const dsn_layer_t *ly = &w->layers[l];
        p.attention += mbytes(&ly->q_a) + mbytes(&ly->q_b) + mbytes(&ly->q_proj) +
                       mbytes(&ly->kv_a) + mbytes(&ly->kv_b) + mbytes(&ly->o_proj);
        p.dense_mlp += mbytes(&ly->gate) + mbytes(&ly->up) + mbytes(&ly->down);
        p.router += mbytes(&ly->router);
        p.shared += mbytes(&ly->shared_gate) + mbytes(&ly->shared_up) + mbytes(&ly->shared_down);
    }
    p.head = mbytes(&w->lm_head);
    p.embed = (uint64_t)dsk_dtype_row_bytes(w->embed.dtype, w->embed.cols);
    return p;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: dsinfer bench model --model DIR [--threads N] [--prompt-len L]\n"
                 "                           [--decode-steps S] [--reps R]\n"
                 "                           [--weight-format " DSN_WFMT_NAMES "]\n"
                 "                           [--kv-dtype bf16|f32|fp8] [--json]\n"
                 "  measures memory bandwidth, prefill and decode tokens/s of the engine on the\n"
                 "  checkpoint, the weight bytes a decode step reads, and decode tok/s against\n"
                 "  bandwidth / bytes per token (defaults: all CPUs, L 64, S 16, R 3, auto,\n"
                 "  bf16); with the checkpoint's MTP layer also a verify step of K+1 tokens and a\n"
                 "  draft of K against a one-token step (K 1..3), and the decode speed-up they imply\n"
                 "  DSINFER_KERNELS=scalar|avx2|avx512 lowers the kernel level\n");
}

static int parse(int argc, char **argv, opts_t *o)
{
    static const struct option opts[] = {{"model", required_argument, NULL, 'm'},
                                         {"threads", required_argument, NULL, 't'},
                                         {"prompt-len", required_argument, NULL, 'p'},
                                         {"decode-steps", required_argument, NULL, 's'},
                                         {"reps", required_argument, NULL, 'r'},
                                         {"weight-format", required_argument, NULL, 'f'},
                                         {"kv-dtype", required_argument, NULL, 'k'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    o->prompt_len = 64;
    o->kv_dtype = DSN_KV_BF16;
    o->decode_steps = 16;
    o->reps = 3;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'm':
            o->model = optarg;
            break;
        case 't':
            if (cli_parse_int("bench model", "--threads", optarg, 1, 1024, &o->threads) != 0)
                return 2;
            break;
        case 'p':
            if (cli_parse_int("bench model", "--prompt-len", optarg, 1, 1 << 16, &o->prompt_len))
                return 2;
            break;
        case 's':
            if (cli_parse_int("bench model", "--decode-steps", optarg, 1, 1 << 16,
                              &o->decode_steps))
                return 2;
            break;
        case 'r':
            if (cli_parse_int("bench model", "--reps", optarg, 1, MAX_REPS, &o->reps) != 0)
                return 2;
            break;
        case 'f':
            if (dsn_weight_format_parse(optarg, &o->format) != DSI_OK) {
                fprintf(stderr, "dsinfer bench model: --weight-format: '%s' is not one of %s\n",
                        optarg, DSN_WFMT_NAMES);
                return 2;
            }
            break;
        case 'k':
            if (dsn_kv_dtype_parse(optarg, &o->kv_dtype) != DSI_OK) {
                fprintf(stderr, "dsinfer bench model: --kv-dtype: '%s' is not one of bf16, f32, "
                                "fp8\n",
                        optarg);
                return 2;
            }
            break;
        case 'j':
            o->json = 1;
            break;
        default:
            return bench_opt_usage(c == 'h', usage) == 0 ? -1 : 2;
        }
    }
    if (bench_opt_rest("model", argc, argv, usage) != 0)
        return 2;
    if (o->model == NULL) {
        fprintf(stderr, "dsinfer bench model: --model is required\n");
        usage(stderr);
        return 2;
    }
    return 0;
}

typedef struct {
    double bw_gbs; /* median of the probes */
    double ratio;  /* median of the per-repetition ratios */
    double prefill_tok_s, decode_tok_s, step_ms;
    double bytes_per_token; /* routed experts included */
    double kv_bytes_per_token;
    double routed_per_step;
    double phase_ms[DSN_PHASE_COUNT]; /* mean wall time per decode step in each engine phase */
    double other_ms;                  /* the rest of the mean step */
    double prefill_phase_ms[DSN_PHASE_COUNT]; /* mean wall time per prefill in each phase */
    double prefill_other_ms;                  /* the rest of the mean prefill */
} result_t;

/* Prefill `len` tokens into a fresh sequence; returns seconds, < 0 on failure. */
static double prefill(dsn_engine_t *eng, dsn_kvcache_t *kv, const int32_t *prompt, int64_t len,
                      float *logits)
{
    kv->length = 0;
    dsn_seq_batch_t seq = {kv, 0, (int)len};
    double t0 = dsi_now_s();
    if (dsn_engine_forward(eng, prompt, &seq, 1, 0, logits) != DSI_OK)
        return -1;
    return dsi_now_s() - t0;
}

static int run(dsn_engine_t *eng, const opts_t *o, result_t *res)
{
    const dsn_weights_t *w = dsn_engine_weights(eng);
    const dsn_config_t *cfg = &w->cfg;
    const int64_t L = o->prompt_len, S = o->decode_steps, V = cfg->vocab_size;
    int32_t *prompt = malloc((size_t)L * sizeof(int32_t));
    float *logits = malloc((size_t)V * sizeof(float));
    double *step_s = malloc((size_t)S * sizeof(double));
    dsn_kvcache_t *kv = NULL;
    int rc = 1;
    if (prompt == NULL || logits == NULL || step_s == NULL ||
        dsn_engine_kvcache_create(eng, L + S + 1, &kv) != DSI_OK) {
        fprintf(stderr, "dsinfer bench model: out of memory\n");
        goto out;
    }
    for (int64_t i = 0; i < L; i++)
        prompt[i] = (int32_t)((i * 7919 + 13) % V);
    /* Warm-up: faults the weights in, grows the scratch to the prompt's size. */
    if (prefill(eng, kv, prompt, L, logits) < 0)
        goto fail;

    double pre[MAX_REPS], dec[MAX_REPS], med_step[MAX_REPS], bw[MAX_REPS], ratio[MAX_REPS];
    int64_t prefill_ns[DSN_PHASE_COUNT] = {0};
    double prefill_s = 0;
    dsn_engine_set_phase_clock(eng, prefill_ns);
    for (int r = 0; r < o->reps; r++) {
        double t = prefill(eng, kv, prompt, L, logits);
        if (t < 0)
            goto fail;
        pre[r] = (double)L / t;
        prefill_s += t;
    }
    dsn_engine_set_phase_clock(eng, NULL);
    res->prefill_other_ms = prefill_s / (double)o->reps * 1e3;
    for (int ph = 0; ph < DSN_PHASE_COUNT; ph++) {
        res->prefill_phase_ms[ph] = (double)prefill_ns[ph] / (double)o->reps * 1e-6;
        res->prefill_other_ms -= res->prefill_phase_ms[ph];
    }
    route_count_t rcount = {w, 0, 0};
    int64_t phase_ns[DSN_PHASE_COUNT] = {0};
    double decode_s = 0;
    parts_t p = fixed_parts(w);
    const uint64_t fixed = p.attention + p.dense_mlp + p.router + p.shared + p.head + p.embed;
    for (int r = 0; r < o->reps; r++) {
        bw[r] = bench_memory_bandwidth(dsn_engine_pool(eng), (size_t)512 << 20, 3);
        if (bw[r] <= 0)
            goto out;
        if (prefill(eng, kv, prompt, L, logits) < 0)
            goto fail;
        if (r == 0) { /* count the routing of one repetition's steps */
            dsn_trace_t tr = {NULL, on_route, &rcount};
            dsn_engine_set_trace(eng, &tr);
        }
        dsn_engine_set_phase_clock(eng, phase_ns);
        double t0 = dsi_now_s();
        for (int64_t s = 0; s < S; s++) {
            int32_t tok = dsn_argmax(logits, (int)V);
            dsn_seq_batch_t seq = {kv, kv->length, 1};
            double ts = dsi_now_s();
            if (dsn_engine_forward(eng, &tok, &seq, 1, 0, logits) != DSI_OK)
                goto fail;
            step_s[s] = dsi_now_s() - ts;
        }
        const double secs = dsi_now_s() - t0;
        dsn_engine_set_phase_clock(eng, NULL);
        decode_s += secs;
        dec[r] = (double)S / secs;
        med_step[r] = bench_median(step_s, (int)S) * 1e3;
        dsn_engine_set_trace(eng, NULL);
        /* Routing is deterministic: the counted repetition's bytes hold for all of them. */
        double bytes = (double)fixed + (double)rcount.expert_bytes / (double)S;
        ratio[r] = dec[r] * bytes / (bw[r] * 1e9);
    }
    res->bw_gbs = bench_median(bw, (int)o->reps);
    res->ratio = bench_median(ratio, (int)o->reps);
    res->prefill_tok_s = bench_median(pre, (int)o->reps);
    res->decode_tok_s = bench_median(dec, (int)o->reps);
    res->step_ms = bench_median(med_step, (int)o->reps);
    res->bytes_per_token = (double)fixed + (double)rcount.expert_bytes / (double)S;
    res->routed_per_step = (double)rcount.routed / (double)S;
    const double steps = (double)(o->reps * S);
    res->other_ms = decode_s / steps * 1e3;
    for (int ph = 0; ph < DSN_PHASE_COUNT; ph++) {
        res->phase_ms[ph] = (double)phase_ns[ph] / steps * 1e-6;
        res->other_ms -= res->phase_ms[ph];
    }
    /* Attention reads the cache of every layer up to the step's position: mean length L + S/2. */
    res->kv_bytes_per_token = (double)(w->slice.end_layer - w->slice.first_layer) *
                              ((double)L + (double)S / 2) *
                              (double)dsn_kvpool_block_bytes(1, cfg->kv_lora_rank +
                                                                       cfg->qk_rope_head_dim,
                                                             o->kv_dtype) /
                              DSN_KV_BLOCK;
    rc = 0;
    goto out;
fail:
    fprintf(stderr, "dsinfer bench model: the forward pass failed\n");
out:
    dsn_kvcache_destroy(kv);
    free(prompt);
    free(logits);
    free(step_s);
    return rc;
}

/* GB/s of `bytes` read in `ms` milliseconds; 0 for a phase that did not run. */
static double phase_gbs(double bytes, double ms)
{
    return ms > 0 ? bytes / (ms * 1e6) : 0;
}

static void print(const opts_t *o, const dsn_engine_t *eng, const result_t *r,
                  const bench_spec_t *spec)
{
    const dsn_weights_t *w = dsn_engine_weights(eng);
    parts_t p = fixed_parts(w);
    const double bw = r->bw_gbs, bound = bw * 1e9 / r->bytes_per_token, ratio = r->ratio;
    double experts = r->bytes_per_token -
                     (double)(p.attention + p.dense_mlp + p.router + p.shared + p.head + p.embed);
    /* the weight bytes each phase reads per token, in dsn_phase_t order */
    const double phase_bytes[DSN_PHASE_COUNT] = {(double)p.attention, (double)p.dense_mlp,
                                                 (double)p.router,    experts,
                                                 (double)p.shared,    (double)p.head};
    if (o->json) {
        printf("{\"model\": \"%s\", \"kv_dtype\": \"%s\", \"weight_format\": \"%s\", \"level\": \"%s\", \"threads\": %d, "
               "\"memory_bw_gbs\": %.2f, \"prompt_len\": %lld, \"decode_steps\": %lld, "
               "\"reps\": %lld, \"prefill_tok_s\": %.3f, \"decode_tok_s\": %.3f, "
               "\"decode_step_ms\": %.3f, \"weight_bytes\": %llu, \"bytes_per_token\": %.0f, "
               "\"bytes\": {\"attention\": %llu, \"dense_mlp\": %llu, \"router\": %llu, "
               "\"shared_experts\": %llu, \"routed_experts\": %.0f, \"lm_head\": %llu, "
               "\"embed_row\": %llu}, \"routed_per_step\": %.2f, \"kv_bytes_per_token\": %.0f, "
               "\"bound_tok_s\": %.3f, \"ratio\": %.3f, \"phases\": {",
               o->model, dsn_kv_dtype_name(o->kv_dtype), dsn_weight_format_name(w->format),
               dsk_level_name(dsn_engine_ops(eng)->level),
               dsi_pool_threads(dsn_engine_pool((dsn_engine_t *)eng)), bw, o->prompt_len,
               o->decode_steps, o->reps, r->prefill_tok_s, r->decode_tok_s, r->step_ms,
               (unsigned long long)w->weight_bytes, r->bytes_per_token,
               (unsigned long long)p.attention, (unsigned long long)p.dense_mlp,
               (unsigned long long)p.router, (unsigned long long)p.shared, experts,
               (unsigned long long)p.head, (unsigned long long)p.embed, r->routed_per_step,
               r->kv_bytes_per_token, bound, ratio);
        for (int ph = 0; ph < DSN_PHASE_COUNT; ph++)
            printf("\"%s\": {\"ms\": %.3f, \"gbs\": %.2f}, ", dsn_phase_name((dsn_phase_t)ph),
                   r->phase_ms[ph], phase_gbs(phase_bytes[ph], r->phase_ms[ph]));
        printf("\"other\": {\"ms\": %.3f}}, \"prefill_phases_ms\": {", r->other_ms);
        for (int ph = 0; ph < DSN_PHASE_COUNT; ph++)
            printf("\"%s\": %.3f, ", dsn_phase_name((dsn_phase_t)ph), r->prefill_phase_ms[ph]);
        printf("\"other\": %.3f}", r->prefill_other_ms);
        if (spec != NULL) {
            printf(", ");
            bench_spec_print(spec, 1, stdout);
        }
        printf("}\n");
        return;
    }
    const double MB = 1e6;
    printf("model %s, weights %s (%.1f MB), KV cache %s, kernels %s, %d threads\n", o->model,
           dsn_weight_format_name(w->format), (double)w->weight_bytes / MB,
           dsn_kv_dtype_name(o->kv_dtype),
           dsk_level_name(dsn_engine_ops(eng)->level),
           dsi_pool_threads(dsn_engine_pool((dsn_engine_t *)eng)));
    printf("memory read bandwidth: %.1f GB/s\n", bw);
    printf("prefill: %lld tokens, %.2f tok/s\n", o->prompt_len, r->prefill_tok_s);
    printf("decode: %lld steps, %.3f tok/s (median step %.2f ms)\n", o->decode_steps,
           r->decode_tok_s, r->step_ms);
    printf("weights read per decode token: %.1f MB (attention %.1f, dense %.1f, router %.1f, "
           "shared %.1f, routed experts %.1f for %.1f pairs, lm_head %.1f); cache %.2f MB\n",
           r->bytes_per_token / MB, (double)p.attention / MB, (double)p.dense_mlp / MB,
           (double)p.router / MB, (double)p.shared / MB, experts / MB, r->routed_per_step,
           (double)p.head / MB, r->kv_bytes_per_token / MB);
    printf("bandwidth bound: %.3f tok/s; decode reaches %.0f%% of it (median of the repetitions' "
           "ratios)\n",
           bound, 100 * ratio);
    printf("decode step by phase (mean ms, GB/s of the phase's weights):");
    for (int ph = 0; ph < DSN_PHASE_COUNT; ph++)
        printf(" %s %.2f (%.1f),", dsn_phase_name((dsn_phase_t)ph), r->phase_ms[ph],
               phase_gbs(phase_bytes[ph], r->phase_ms[ph]));
    printf(" other %.2f\n", r->other_ms);
    printf("prefill by phase (mean ms):");
    for (int ph = 0; ph < DSN_PHASE_COUNT; ph++)
        printf(" %s %.2f,", dsn_phase_name((dsn_phase_t)ph), r->prefill_phase_ms[ph]);
    printf(" other %.2f\n", r->prefill_other_ms);
    if (spec != NULL)
        bench_spec_print(spec, 0, stdout);
}

int dsinfer_bench_model(int argc, char **argv)
{
    opts_t o = {0};
    int rc = parse(argc, argv, &o);
    if (rc != 0)
        return rc < 0 ? 0 : rc;
    dsn_checkpoint_t *ckpt = NULL;
    dsn_weights_t *w = NULL;
    dsn_engine_t *eng = NULL;
    dsn_mtp_weights_t *mw = NULL;
    dsn_mtp_t *mtp = NULL;
    int32_t *prompt = NULL;
    rc = 1;
    if (dsn_checkpoint_open(o.model, &ckpt) != DSI_OK)
        goto out;
    dsn_slice_t all = dsn_slice_all(dsn_checkpoint_config(ckpt));
    if (dsn_weights_load_as(ckpt, &all, o.format, (int)o.threads, &w) != DSI_OK)
        goto out;
    if (dsn_engine_create(w, dsk_level_detect(), (int)o.threads, &eng) != DSI_OK ||
        dsn_engine_set_kv(eng, o.kv_dtype, 0) != DSI_OK) {
        fprintf(stderr, "dsinfer bench model: cannot create the engine\n");
        goto out;
    }
    result_t res;
    if (run(eng, &o, &res) != 0)
        goto out;
    bench_spec_t spec, *have_spec = NULL;
    if (dsn_mtp_present(ckpt)) {
        int64_t V = w->cfg.vocab_size;
        prompt = malloc((size_t)o.prompt_len * sizeof(int32_t));
        if (prompt == NULL)
            goto out;
        for (int64_t i = 0; i < o.prompt_len; i++)
            prompt[i] = (int32_t)((i * 7919 + 13) % V);
        if (dsn_mtp_weights_load(ckpt, o.format, (int)o.threads, NULL, &mw) != DSI_OK ||
            dsn_mtp_create(mw, eng, &mtp) != DSI_OK ||
            bench_spec_run(eng, mtp, prompt, o.prompt_len, (int)o.reps, (int)o.decode_steps,
                           &spec) != 0)
            goto out;
        have_spec = &spec;
    }
    print(&o, eng, &res, have_spec);
    rc = 0;
out:
    free(prompt);
    dsn_mtp_destroy(mtp);
    dsn_mtp_weights_destroy(mw);
    dsn_engine_destroy(eng);
    dsn_weights_destroy(w);
    dsn_checkpoint_close(ckpt);
    return rc;
}
