/*
 * test_unit_estimate.c - dsc_estimate against hand computations on the tiny-v3 shape with a fixed
 * profile: one node (decode at 1 and 4 streams, a 2-chunk prefill), the packed GEMM's prefill
 * rates above 64 tokens, an expert's own rates (expert_gbs) for its products, two nodes in one
 * stage (expert dispatch over the network), nodes sharing a machine, and two stages (hops); the
 * profile parser's errors name the field.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dsc_estimate.h"
#include "dsc_planner.h"
#include "dsi_test.h"
#include "dsi_test_plan.h"

#define GiB (1ULL << 30)

/*
 * fp8 10 GB/s and bf16 5 GB/s at every batch, memory 12.5 GB/s (so 80% of a matmul's time is
 * weights, 20% compute), attention 10 us at 100 tokens of context and 20 us at 200 for 4 heads
 * x 80 (the tiny shape: scale 1), network 1 GB/s and 50 us.
 */
static const char *profile_text =
    "{\"threads\": 2, \"memory_bw_gbs\": 12.5, \"fma_gflops\": 100,"
    " \"matmul_gbs\": {\"batches\": [1, 4, 16, 64], \"fp8\": [10, 10, 10, 10],"
    "  \"bf16\": [5, 5, 5, 5]},"
    " \"attention\": {\"heads\": 4, \"width\": 80, \"context\": [100, 200],"
    "  \"us_per_token_layer\": [10, 20]},"
    " \"network\": {\"latency_us\": 50, \"bandwidth_gbs\": 1}}";

static dsc_profile_t profile(void)
{
    dsc_profile_t p;
    char err[256];
    dsi_status_t st = dsc_profile_parse(profile_text, "test", &p, err, sizeof(err));
    DSI_CHECK(st == DSI_OK);
    return p;
}

static int plan(const dsn_config_t *cfg, uint32_t nodes, uint32_t stages, dst_plan_t *out,
                dsc_plan_report_t *rep)
{
    dsc_node_desc_t n[4];
    dsi_test_plan_nodes(n, nodes, 4 * GiB);
    dsc_plan_opts_t o;
    dsi_test_plan_opts_small(&o);
    o.n_stages = stages;
    return dsc_planner_plan(cfg, n, nodes, &o, out, rep) == DSI_OK ? 0 : -1;
}

/* A stage of layers [l0, l1) by hand: t tokens, n on the node, share of the experts, rate(b). */
/*
 * A stage of layers [l0, l1) by hand: t tokens, n on the node, share of the experts, rate(b);
 * the matmuls of the attention and non-expert weights `slow_dense` times, the experts'
 * `slow_experts` times as long (nodes sharing a machine).
 */
static double by_hand_shared(const dsc_memory_t *m, int l0, int l1, int last, double t, double n,
                             double share, double ctx, int nodes, double *lat, double slow_dense,
                             double slow_experts)
{
    const double fp8 = 10e9, bf16 = 5e9, N = 32, K = 4;
    double s = 0;
    for (int l = l0; l < l1; l++) {
        const double attn_us = 10 + (ctx - 100) * 0.1; /* linear through the two points */
        s += slow_dense * ((double)m->attn / fp8 + n * attn_us * 1e-6);
        if (l < 1) {
            s += slow_dense * (double)m->dense_mlp / fp8;
            continue;
        }
        const double hit = 1 - pow(1 - K / N, t);
        s += slow_dense * ((double)m->router / bf16 + (double)m->shared_experts / fp8) +
             slow_experts * N * hit * share * (double)m->expert / fp8;
        if (nodes > 1) {
            /* DISPATCH: a row per token and other node reached; COMBINE: a row per pair away */
            const double e = nodes;
            const double rows = n * (e - 1) * (1 - pow(1 - 1 / e, K)) + n * K * (e - 1) / e;
            s += 2 * 50e-6 + rows * 256 * 4 / 1e9;
            *lat += 2 * 50e-6;
        }
    }
    if (last)
        s += slow_dense * (double)m->head / bf16;
    return s;
}

static double by_hand(const dsc_memory_t *m, int l0, int l1, int last, double t, double n,
                      double share, double ctx, int nodes, double *lat)
{
    return by_hand_shared(m, l0, l1, last, t, n, share, ctx, nodes, lat, 1, 1);
}

static void test_one_node(void)
{
    dsn_config_t cfg = dsi_test_cfg_tiny();
    dsc_profile_t p = profile();
    dst_plan_t pl;
    dsc_plan_report_t rep;
    DSI_CHECK(plan(&cfg, 1, 0, &pl, &rep) == 0);
    const dsc_memory_t *m = &rep.mem;
    dsc_estimate_t e;
    char err[256];
    dsc_estimate_opts_t o = {1, 100, 256, 1};
    DSI_CHECK(dsc_estimate(&cfg, m, &pl, &p, &o, &e, err, sizeof(err)) == DSI_OK);
    double lat = 0;
    const double t1 = by_hand(m, 0, 4, 1, 1, 1, 1, 100, 1, &lat);
    DSI_CHECK_NEAR(e.decode_cycle_s, t1, t1 * 1e-9);
    DSI_CHECK_NEAR(e.decode_tok_s, 1 / t1, 1e-9 / t1);
    DSI_CHECK_NEAR(e.decode_aggregate, 1 / t1, 1e-9 / t1);
    DSI_CHECK(e.decode_bound == DSC_TERM_WEIGHTS);
    /* the weights term: every byte a step multiplies at the bandwidth (12.5 GB/s) */
    const double bytes = 4.0 * (double)m->attn + (double)m->dense_mlp +
                         3.0 * ((double)m->router + (double)m->shared_experts + 4.0 * m->expert) +
                         (double)m->head;
    DSI_CHECK_NEAR(e.decode_terms[DSC_TERM_WEIGHTS], bytes / 12.5e9, t1 * 1e-9);
    DSI_CHECK_NEAR(e.decode_terms[DSC_TERM_COMPUTE], t1 - 4 * 10e-6 - bytes / 12.5e9, t1 * 1e-9);
    DSI_CHECK_NEAR(e.decode_terms[DSC_TERM_ATTENTION], 4 * 10e-6, 1e-12);
    DSI_CHECK(e.decode_terms[DSC_TERM_NET_LATENCY] == 0);

    /* 4 streams: one micro-batch of 4 (one stage), each token its attention */
    o.concurrency = 4;
    DSI_CHECK(dsc_estimate(&cfg, m, &pl, &p, &o, &e, err, sizeof(err)) == DSI_OK);
    const double t4 = by_hand(m, 0, 4, 1, 4, 4, 1, 100, 1, &lat);
    DSI_CHECK_NEAR(e.decode_cycle_s, t4, t4 * 1e-9);
    DSI_CHECK_NEAR(e.decode_aggregate, 4 / t4, 4e-9 / t4);
    DSI_CHECK_INT_EQ(e.micro_batches, 1);
    DSI_CHECK_INT_EQ(e.micro_batch_seqs, 4);

    /* prefill of 300 tokens in chunks of 256: two chunks of 256 one after the other, mean
     * context 150; above 64 tokens a matmul's time grows with the tokens (rate x 64 / b) */
    o.concurrency = 1;
    o.prompt_len = 300;
    DSI_CHECK(dsc_estimate(&cfg, m, &pl, &p, &o, &e, err, sizeof(err)) == DSI_OK);
    const double b = 256, N = 32, K = 4, hit = 1 - pow(1 - K / N, b),
                 per_expert = b * K / (N * hit);
    double chunk = 0;
    for (int l = 0; l < 4; l++) {
        chunk += (double)m->attn / 10e9 * b / 64 + b * 15e-6;
        if (l < 1)
            chunk += (double)m->dense_mlp / 10e9 * b / 64;
        else
            chunk += (double)m->router / 5e9 * b / 64 + (double)m->shared_experts / 10e9 * b / 64 +
                     N * hit * (double)m->expert / (10e9 * (per_expert < 64 ? 1 : 64 / per_expert));
    }
    chunk += (double)m->head / 5e9; /* lm_head for the last token only */
    DSI_CHECK_NEAR(e.ttft_s, 2 * chunk, chunk * 1e-9);
    DSI_CHECK_NEAR(e.prefill_tok_s, 300 / (2 * chunk), 1e-6);
    /* the tiny shape's weights are small: 4 layers x 256 tokens x 15 us of attention dominate */
    DSI_CHECK(e.prefill_bound == DSC_TERM_ATTENTION);
    DSI_CHECK_NEAR(e.prefill_terms[DSC_TERM_ATTENTION], 2 * 4 * 256 * 15e-6, 1e-12);
    /* below the first attention point: in proportion (50 tokens: 5 us a layer) */
    o.prompt_len = 50;
    DSI_CHECK(dsc_estimate(&cfg, m, &pl, &p, &o, &e, err, sizeof(err)) == DSI_OK);
    DSI_CHECK_NEAR(e.decode_terms[DSC_TERM_ATTENTION], 4 * 5e-6, 1e-12);
    dsc_plan_cleanup(&pl);
}

static void test_two_nodes(void)
{
    dsn_config_t cfg = dsi_test_cfg_tiny();
    dsc_profile_t p = profile();
    dst_plan_t pl;
    dsc_plan_report_t rep;
    char err[256];
    dsc_estimate_t e;
    /* one stage of 2 nodes: half the experts each, a DISPATCH + COMBINE per MoE layer */
    DSI_CHECK(plan(&cfg, 2, 1, &pl, &rep) == 0);
    dsc_estimate_opts_t o = {2, 100, 256, 1};
    DSI_CHECK(dsc_estimate(&cfg, &rep.mem, &pl, &p, &o, &e, err, sizeof(err)) == DSI_OK);
    double lat = 0;
    const double t = by_hand(&rep.mem, 0, 4, 1, 2, 1, 0.5, 100, 2, &lat);
    DSI_CHECK_NEAR(e.decode_cycle_s, t, t * 1e-9);
    DSI_CHECK_NEAR(e.decode_terms[DSC_TERM_NET_LATENCY], 3 * 2 * 50e-6, 1e-12);
    dsc_plan_cleanup(&pl);

    /* two stages of one node: C = 1 goes through both, plus the hop and the token back */
    DSI_CHECK(plan(&cfg, 2, 2, &pl, &rep) == 0);
    o.concurrency = 1;
    DSI_CHECK(dsc_estimate(&cfg, &rep.mem, &pl, &p, &o, &e, err, sizeof(err)) == DSI_OK);
    const int cut = (int)pl.stages[0].end_layer;
    const double s0 = by_hand(&rep.mem, 0, cut, 0, 1, 1, 1, 100, 1, &lat) + 50e-6 + 256 * 4 / 1e9;
    const double s1 = by_hand(&rep.mem, cut, 4, 1, 1, 1, 1, 100, 1, &lat) + 50e-6;
    DSI_CHECK_NEAR(e.decode_cycle_s, s0 + s1, (s0 + s1) * 1e-9);
    /* 2 streams: two micro-batches of one; the cycle is the larger of 2 x the slower stage and
     * the way round */
    o.concurrency = 2;
    DSI_CHECK(dsc_estimate(&cfg, &rep.mem, &pl, &p, &o, &e, err, sizeof(err)) == DSI_OK);
    const double full = 2 * (s0 > s1 ? s0 : s1), cyc = full > s0 + s1 ? full : s0 + s1;
    DSI_CHECK_NEAR(e.decode_cycle_s, cyc, cyc * 1e-9);
    DSI_CHECK_NEAR(e.decode_aggregate, 2 / cyc, 2e-9 / cyc);
    DSI_CHECK_INT_EQ(e.micro_batches, 2);
    dsc_plan_cleanup(&pl);
}

/*
 * With prefill_gbs, a matmul above 64 tokens runs at the rate interpolated (log-log) between 64
 * (fp8: 10 GB/s), 128 (8) and 512 (4) tokens, the flop rate held above 512. bf16 has no prefill
 * points here: it keeps the 64-token flop rate.
 */
static double fp8_prefill_rate(double b) /* GB/s */
{
    if (b <= 64)
        return 10; /* the decode points, all 10 */
    if (b <= 128)  /* log rate linear in log b */
        return exp(log(10) + (log(8) - log(10)) * log(b / 64) / log(2));
    if (b <= 512)
        return exp(log(8) + (log(4) - log(8)) * log(b / 128) / log(4));
    return 4 * 512 / b; /* the flop rate held */
}

static void test_prefill_rates(void)
{
    dsn_config_t cfg = dsi_test_cfg_tiny();
    dsc_profile_t p;
    char err[256];
    char text[1024];
    snprintf(text, sizeof(text),
             "%.*s, \"prefill_gbs\": {\"batches\": [128, 512], \"fp8\": [8, 4]}}",
             (int)strlen(profile_text) - 1, profile_text);
    DSI_CHECK(dsc_profile_parse(text, "test", &p, err, sizeof(err)) == DSI_OK);
    DSI_CHECK_NEAR(p.prefill_gbs[DSC_WEIGHT_FP8][1], 4, 0);
    DSI_CHECK(p.prefill_gbs[DSC_WEIGHT_BF16][0] == 0);
    dst_plan_t pl;
    dsc_plan_report_t rep;
    DSI_CHECK(plan(&cfg, 1, 0, &pl, &rep) == 0);
    const dsc_memory_t *m = &rep.mem;
    const double N = 32, K = 4;
    /* b tokens in one chunk, each matrix at the interpolated flop rate fl(b) (GB/s x tokens) */
    const double bs[4] = {100, 256, 512, 1000};
    for (int i = 0; i < 4; i++) {
        const double b = bs[i];
        const double fp8 = fp8_prefill_rate(b) * 1e9, bf16 = 5e9 * 64 / b;
        const double hit = 1 - pow(1 - K / N, b), per_expert = b * K / (N * hit);
        double t = 0;
        for (int l = 0; l < 4; l++) {
            const double attn_us = 10 + (b / 2 - 100) * 0.1;
            t += (double)m->attn / fp8 + b * attn_us * 1e-6;
            if (l < 1)
                t += (double)m->dense_mlp / fp8;
            else
                t += (double)m->router / bf16 + (double)m->shared_experts / fp8 +
                     N * hit * (double)m->expert / (fp8_prefill_rate(per_expert) * 1e9);
        }
        t += (double)m->head / 5e9;
        dsc_estimate_opts_t o = {1, (uint32_t)b, (uint32_t)b, 1};
        dsc_estimate_t e;
        DSI_CHECK(dsc_estimate(&cfg, m, &pl, &p, &o, &e, err, sizeof(err)) == DSI_OK);
        if (fabs(e.ttft_s - t) > t * 1e-9) {
            fprintf(stderr, "prefill of %g tokens: %.9g s, by hand %.9g s\n", b, e.ttft_s, t);
            DSI_CHECK(0);
        }
    }
    /* the bf16 rate alone: the same as without prefill_gbs */
    dsc_profile_t q = profile();
    dsc_estimate_opts_t o = {1, 300, 256, 1};
    dsc_estimate_t e1, e2;
    DSI_CHECK(dsc_estimate(&cfg, m, &pl, &q, &o, &e1, err, sizeof(err)) == DSI_OK);
    memcpy(q.prefill_gbs[DSC_WEIGHT_BF16], (double[2]){5, 5}, sizeof(double[2]));
    DSI_CHECK(dsc_estimate(&cfg, m, &pl, &q, &o, &e2, err, sizeof(err)) == DSI_OK);
    DSI_CHECK(e2.ttft_s < e1.ttft_s); /* bf16 at 256 tokens: 5 x 512 / 256 > 5 x 64 / 256 */
    dsc_plan_cleanup(&pl);
}

/*
 * With expert_gbs (fp8 8, 6, 4, 2 GB/s at 4, 8, 16, 32 tokens), a routed expert's products run at
 * the rate interpolated (log-log) through (1, 10), those points and (64, 10); every other matrix
 * keeps matmul_gbs (all 10). A format without expert_gbs (bf16 here) keeps matmul_gbs for its
 * experts too.
 */
static double fp8_expert_rate(double b) /* GB/s */
{
    static const double x[6] = {1, 4, 8, 16, 32, 64}, y[6] = {10, 8, 6, 4, 2, 10};
    if (b <= 1 || b >= 64)
        return 10;
    int i = 0;
    while (b > x[i + 1])
        i++;
    return exp(log(y[i]) + (log(y[i + 1]) - log(y[i])) * log(b / x[i]) / log(x[i + 1] / x[i]));
}

static void test_expert_rates(void)
{
    dsn_config_t cfg = dsi_test_cfg_tiny();
    dsc_profile_t p;
    char err[256];
    char text[1024];
    snprintf(text, sizeof(text),
             "%.*s, \"expert_gbs\": {\"batches\": [4, 8, 16, 32], \"fp8\": [8, 6, 4, 2]}}",
             (int)strlen(profile_text) - 1, profile_text);
    DSI_CHECK(dsc_profile_parse(text, "test", &p, err, sizeof(err)) == DSI_OK);
    DSI_CHECK_NEAR(p.expert_gbs[DSC_WEIGHT_FP8][3], 2, 0);
    DSI_CHECK(p.expert_gbs[DSC_WEIGHT_BF16][0] == 0);
    dst_plan_t pl;
    dsc_plan_report_t rep;
    DSI_CHECK(plan(&cfg, 1, 0, &pl, &rep) == 0);
    const dsc_memory_t *m = &rep.mem;
    const double N = 32, K = 4;
    /* a prefill of b tokens in one chunk: b K / (N hit) tokens per expert touched; below 64
     * tokens every other matrix at 10 GB/s, above it at 10 x 64 / b (no prefill_gbs) */
    const double bs[5] = {8, 30, 60, 100, 500};
    for (int i = 0; i < 5; i++) {
        const double b = bs[i], hit = 1 - pow(1 - K / N, b), per_expert = b * K / (N * hit);
        const double fp8 = 10e9 * (b > 64 ? 64 / b : 1), bf16 = 5e9 * (b > 64 ? 64 / b : 1);
        double t = 0;
        for (int l = 0; l < 4; l++) {
            const double attn_us = b / 2 < 100 ? 10 * (b / 2) / 100 : 10 + (b / 2 - 100) * 0.1;
            t += (double)m->attn / fp8 + b * attn_us * 1e-6;
            if (l < 1)
                t += (double)m->dense_mlp / fp8;
            else
                t += (double)m->router / bf16 + (double)m->shared_experts / fp8 +
                     N * hit * (double)m->expert / (fp8_expert_rate(per_expert) * 1e9);
        }
        t += (double)m->head / 5e9;
        dsc_estimate_opts_t o = {1, (uint32_t)b, (uint32_t)b, 1};
        dsc_estimate_t e;
        DSI_CHECK(dsc_estimate(&cfg, m, &pl, &p, &o, &e, err, sizeof(err)) == DSI_OK);
        if (fabs(e.ttft_s - t) > t * 1e-9) {
            fprintf(stderr, "prefill of %g tokens (%.3g per expert): %.9g s, by hand %.9g s\n", b,
                    per_expert, e.ttft_s, t);
            DSI_CHECK(0);
        }
    }
    /* one stream's decode: one token per expert, the 1-token rate as without expert_gbs */
    dsc_profile_t q = profile();
    dsc_estimate_opts_t o = {1, 100, 256, 1};
    dsc_estimate_t e1, e2;
    DSI_CHECK(dsc_estimate(&cfg, m, &pl, &p, &o, &e1, err, sizeof(err)) == DSI_OK);
    DSI_CHECK(dsc_estimate(&cfg, m, &pl, &q, &o, &e2, err, sizeof(err)) == DSI_OK);
    DSI_CHECK_NEAR(e1.decode_cycle_s, e2.decode_cycle_s, e2.decode_cycle_s * 1e-12);
    /* slower expert products, a slower prefill; bf16 weights ignore the fp8 points */
    o.prompt_len = 200;
    DSI_CHECK(dsc_estimate(&cfg, m, &pl, &p, &o, &e1, err, sizeof(err)) == DSI_OK);
    DSI_CHECK(dsc_estimate(&cfg, m, &pl, &q, &o, &e2, err, sizeof(err)) == DSI_OK);
    DSI_CHECK(e1.ttft_s > e2.ttft_s);
    dsc_plan_cleanup(&pl);
}

/*
 * Two nodes of one stage on one machine (nodes_per_machine 2) of a profile of 2 threads: the
 * experts, which both run at once, take twice as long; the attention and non-expert weights too
 * when both nodes have sequences (2 streams), not with one stream. With 4 CPUs in the profile
 * the two nodes of 2 threads fit: as on two machines, unless the 4 CPUs gave less than 4 CPUs'
 * worth of time (cpus_effective).
 */
static void test_shared_machine(void)
{
    dsn_config_t cfg = dsi_test_cfg_tiny();
    dsc_profile_t p = profile();
    dst_plan_t pl;
    dsc_plan_report_t rep;
    char err[256];
    dsc_estimate_t e;
    DSI_CHECK(plan(&cfg, 2, 1, &pl, &rep) == 0);
    double lat = 0;
    dsc_estimate_opts_t o = {1, 100, 256, 2};
    DSI_CHECK(dsc_estimate(&cfg, &rep.mem, &pl, &p, &o, &e, err, sizeof(err)) == DSI_OK);
    double t = by_hand_shared(&rep.mem, 0, 4, 1, 1, 1, 0.5, 100, 2, &lat, 1, 2);
    DSI_CHECK_NEAR(e.decode_cycle_s, t, t * 1e-9);
    o.concurrency = 2;
    DSI_CHECK(dsc_estimate(&cfg, &rep.mem, &pl, &p, &o, &e, err, sizeof(err)) == DSI_OK);
    t = by_hand_shared(&rep.mem, 0, 4, 1, 2, 1, 0.5, 100, 2, &lat, 2, 2);
    DSI_CHECK_NEAR(e.decode_cycle_s, t, t * 1e-9);
    p.cpus = 4;
    DSI_CHECK(dsc_estimate(&cfg, &rep.mem, &pl, &p, &o, &e, err, sizeof(err)) == DSI_OK);
    t = by_hand(&rep.mem, 0, 4, 1, 2, 1, 0.5, 100, 2, &lat);
    DSI_CHECK_NEAR(e.decode_cycle_s, t, t * 1e-9);
    /* the 4 CPUs gave the profile's threads 3 CPUs' worth in all (cpus_effective): the profile's
     * 2 threads had 2, two busy nodes 1.5 each: 4/3 times as long; one stream, only the experts
     * run on both nodes at once */
    p.cpus_effective = 3;
    DSI_CHECK(dsc_estimate(&cfg, &rep.mem, &pl, &p, &o, &e, err, sizeof(err)) == DSI_OK);
    t = by_hand_shared(&rep.mem, 0, 4, 1, 2, 1, 0.5, 100, 2, &lat, 4.0 / 3, 4.0 / 3);
    DSI_CHECK_NEAR(e.decode_cycle_s, t, t * 1e-9);
    o.concurrency = 1;
    DSI_CHECK(dsc_estimate(&cfg, &rep.mem, &pl, &p, &o, &e, err, sizeof(err)) == DSI_OK);
    t = by_hand_shared(&rep.mem, 0, 4, 1, 1, 1, 0.5, 100, 2, &lat, 1, 4.0 / 3);
    DSI_CHECK_NEAR(e.decode_cycle_s, t, t * 1e-9);
    /* 1 CPU's worth of the 4 (a busy shared machine): the profile's threads had 1, each of two
     * busy nodes 0.5: twice as long */
    p.cpus_effective = 1;
    DSI_CHECK(dsc_estimate(&cfg, &rep.mem, &pl, &p, &o, &e, err, sizeof(err)) == DSI_OK);
    t = by_hand_shared(&rep.mem, 0, 4, 1, 1, 1, 0.5, 100, 2, &lat, 1, 2);
    DSI_CHECK_NEAR(e.decode_cycle_s, t, t * 1e-9);
    dsc_plan_cleanup(&pl);
}

/* A kernel rate above the memory bandwidth (here bf16 at 20 GB/s, memory 12.5): the matrix takes
 * its bytes over the bandwidth, all of it the weights term. */
static void test_bandwidth_cap(void)
{
    dsn_config_t cfg = dsi_test_cfg_tiny();
    dsc_profile_t p = profile();
    dst_plan_t pl;
    dsc_plan_report_t rep;
    char err[256];
    dsc_estimate_t e1, e2;
    DSI_CHECK(plan(&cfg, 1, 0, &pl, &rep) == 0);
    const dsc_memory_t *m = &rep.mem;
    dsc_estimate_opts_t o = {1, 100, 256, 1};
    DSI_CHECK(dsc_estimate(&cfg, m, &pl, &p, &o, &e1, err, sizeof(err)) == DSI_OK);
    for (int i = 0; i < DSC_PROFILE_BATCHES; i++)
        p.matmul_gbs[DSC_WEIGHT_BF16][i] = 20;
    DSI_CHECK(dsc_estimate(&cfg, m, &pl, &p, &o, &e2, err, sizeof(err)) == DSI_OK);
    /* bf16 (router x 3 MoE layers, lm_head) went from 5 GB/s to the 12.5 GB/s bandwidth */
    const double bf16 = 3.0 * (double)m->router + (double)m->head;
    const double saved = bf16 / 5e9 - bf16 / 12.5e9;
    DSI_CHECK_NEAR(e2.decode_cycle_s, e1.decode_cycle_s - saved, e1.decode_cycle_s * 1e-9);
    DSI_CHECK_NEAR(e2.decode_terms[DSC_TERM_WEIGHTS], e1.decode_terms[DSC_TERM_WEIGHTS],
                   e1.decode_cycle_s * 1e-9);
    dsc_plan_cleanup(&pl);
}

static void expect_error(const char *text, const char *field)
{
    dsc_profile_t p;
    char err[256] = "";
    DSI_CHECK(dsc_profile_parse(text, "p.json", &p, err, sizeof(err)) == DSI_ERR_CONFIG);
    if (strstr(err, field) == NULL || strstr(err, "p.json") == NULL) {
        fprintf(stderr, "error '%s' does not name '%s'\n", err, field);
        DSI_CHECK(0);
    }
}

static void test_bad_profiles(void)
{
    expect_error("not json", "not JSON");
    expect_error("[1]", "not a JSON object");
    expect_error("{\"fma_gflops\": 1}", "memory_bw_gbs is missing");
    expect_error("{\"memory_bw_gbs\": -3, \"fma_gflops\": 1}", "memory_bw_gbs must be a number");
    expect_error("{\"memory_bw_gbs\": 3, \"fma_gflops\": 1}", "matmul_gbs is missing");
    expect_error("{\"memory_bw_gbs\": 3, \"fma_gflops\": 1, \"matmul_gbs\": {\"batches\": [1, 4, "
                 "16, 64], \"fp8\": [1, 2]}}",
                 "matmul_gbs.fp8 must be an array of 4 numbers");
    expect_error("{\"memory_bw_gbs\": 3, \"fma_gflops\": 1, \"matmul_gbs\": {\"batches\": [1, 4, "
                 "16, 64], \"fp9\": [1, 2, 3, 4]}}",
                 "matmul_gbs.fp9 is not a weight format");
    expect_error("{\"memory_bw_gbs\": 3, \"fma_gflops\": 1, \"matmul_gbs\": {\"batches\": [1, 4, "
                 "16, 64], \"fp8\": [1, 2, 3, 4]}, \"attention\": {\"heads\": 4, \"width\": 80, "
                 "\"context\": [100, 50], \"us_per_token_layer\": [1, 2]}}",
                 "attention.context must be increasing");
    expect_error("{\"memory_bw_gbs\": 3, \"fma_gflops\": 1, \"matmul_gbs\": {\"batches\": [1, 4, "
                 "16, 64], \"fp8\": [1, 2, 3, 4]}, \"attention\": {\"heads\": 4, \"width\": 80, "
                 "\"context\": [100], \"us_per_token_layer\": [1]}, \"network\": {\"latency_us\": "
                 "5}}",
                 "network.bandwidth_gbs is missing");
    expect_error("{\"threads\": 2, \"cpus\": 0, \"memory_bw_gbs\": 3}", "cpus must be an integer");
    expect_error("{\"threads\": 2, \"cpus_effective\": 0, \"memory_bw_gbs\": 3}",
                 "cpus_effective must be a number > 0");
    expect_error("{\"memory_bw_gbs\": 3, \"fma_gflops\": 1, \"matmul_gbs\": {\"batches\": [1, 4, "
                 "16, 64], \"fp8\": [1, 2, 3, 4]}, \"prefill_gbs\": {\"batches\": [128, 256], "
                 "\"fp8\": [1, 2]}}",
                 "prefill_gbs.batches must be [128, 512]");
    expect_error("{\"memory_bw_gbs\": 3, \"fma_gflops\": 1, \"matmul_gbs\": {\"batches\": [1, 4, "
                 "16, 64], \"fp8\": [1, 2, 3, 4]}, \"prefill_gbs\": {\"batches\": [128, 512], "
                 "\"fp8\": [1, 0]}}",
                 "prefill_gbs.fp8[1] must be a number > 0");
    expect_error("{\"memory_bw_gbs\": 3, \"fma_gflops\": 1, \"matmul_gbs\": {\"batches\": [1, 4, "
                 "16, 64], \"fp8\": [1, 2, 3, 4]}, \"prefill_gbs\": [1]}",
                 "prefill_gbs must be an object");
    expect_error("{\"memory_bw_gbs\": 3, \"fma_gflops\": 1, \"matmul_gbs\": {\"batches\": [1, 4, "
                 "16, 64], \"fp8\": [1, 2, 3, 4]}, \"expert_gbs\": {\"batches\": [4, 8, 16, "
                 "64], \"fp8\": [1, 2, 3, 4]}}",
                 "expert_gbs.batches must be [4, 8, 16, 32]");
    expect_error("{\"memory_bw_gbs\": 3, \"fma_gflops\": 1, \"matmul_gbs\": {\"batches\": [1, 4, "
                 "16, 64], \"fp8\": [1, 2, 3, 4]}, \"expert_gbs\": {\"batches\": [4, 8, 16, "
                 "32], \"int4\": [1, 2, 3]}}",
                 "expert_gbs.int4 must be an array of 4 numbers");
    /* a profile without the plan's format: the estimate says so */
    dsn_config_t cfg = dsi_test_cfg_tiny();
    dsc_profile_t p = profile();
    p.matmul_gbs[DSC_WEIGHT_FP8][0] = 0;
    dst_plan_t pl;
    dsc_plan_report_t rep;
    DSI_CHECK(plan(&cfg, 1, 0, &pl, &rep) == 0);
    dsc_estimate_t e;
    char err[256] = "";
    dsc_estimate_opts_t o = {1, 100, 256, 1};
    DSI_CHECK(dsc_estimate(&cfg, &rep.mem, &pl, &p, &o, &e, err, sizeof(err)) == DSI_ERR_CONFIG);
    DSI_CHECK(strstr(err, "matmul_gbs.fp8") != NULL);
    dsc_plan_cleanup(&pl);
}

int main(void)
{
    test_one_node();
    test_two_nodes();
    test_prefill_rates();
    test_expert_rates();
    test_shared_machine();
    test_bandwidth_cap();
    test_bad_profiles();
    return dsi_test_finish();
}
