/*
 * dsc_estimate.h - what a plan should run at: decode tokens/s per stream and in aggregate at a
 * concurrency, prefill tokens/s and time to first token for a prompt length, from a machine
 * profile (`dsinfer bench profile --json`, or a written one such as a JSON of deploy/profiles) and
 * the network between nodes. docs/PERFORMANCE.md and docs/DEPLOY.md show it against measurements.
 *
 * The model (every node of the plan is assumed to be a machine of the profile):
 * - A matrix of B bytes in format f multiplied with b tokens takes B / rate(f, b), rate being the
 *   profile's measured weight-streaming GB/s of that kernel at 1, 4, 16, 64 tokens, and above 64
 *   at the packed GEMM's 128 and 512 (prefill_gbs; the integer formats, which run the same GEMM
 *   after dequantizing, take fp8's where they have none), log rate interpolated linearly in
 *   log b (a constant rate and a compute-bound one, in proportion to 1 / b, stay exact). Above
 *   the last point the flop rate, rate x b, is held; without prefill_gbs from 64 tokens.
 *   It takes at least B / memory_bw (the weights are streamed from memory: a kernel rate above
 *   the probed bandwidth, as a noisy machine can give, is not reached by a whole step); its part
 *   above B / memory_bw is reported as compute, the rest as weights bandwidth.
 * - A routed expert's products run at the profile's expert_gbs where it has them (optional: the
 *   same kernels timed on an expert's own shapes at 4, 8, 16 and 32 tokens, the counts a prompt
 *   chunk gives each expert): log-log between (1, matmul_gbs at 1 token), those points and
 *   (64, matmul_gbs at 64), the rest as above. The dense-shape points alone overrate these
 *   products (measured in one thread's CPU time on Zen 4, fp8: an expert's product at 5-8 tokens
 *   runs 10-20% below the log-log line between the 4- and 16-token points, and an expert's
 *   shape 5-10% below the dense MLP's). Without expert_gbs, the rates above.
 * - Attention over the latent cache costs, per query token and layer, the profile's measured time
 *   at that context length (interpolated linearly, extrapolated from the last two points above
 *   the last one and in proportion to the first point below it), scaled
 *   by heads x (kv_lora_rank + qk_rope_head_dim) against the profile's.
 * - A stage's nodes split its sequences (data-parallel attention): each runs the attention and
 *   the non-expert weights of the stage's layers for its share. The routed experts of a MoE layer
 *   are spread evenly over the stage's nodes; m tokens touch N (1 - (1 - K/N)^m) distinct experts
 *   of a layer, each multiplied with the tokens routed to it. With more than one node in a stage
 *   each MoE layer adds one DISPATCH + COMBINE round trip (2 x latency; f32 rows of hidden_size:
 *   DISPATCH one row per token and other node its experts reach, e - 1 nodes each reached with
 *   probability 1 - (1 - 1/e)^K, COMBINE one row per (token, expert) pair leaving the node);
 *   each stage boundary adds one latency and the activation rows.
 * - Nodes sharing a machine (opts.nodes_per_machine > 1, as `--local-nodes` does): the phases
 *   that several of them run at once (the routed experts of a stage; the attention and
 *   non-expert weights when each has sequences) take min(threads, E) / min(threads, E / busy)
 *   times as long, busy being the nodes of one machine running them together and E the CPUs'
 *   worth of time the machine gives them in all: the profile's cpus_effective (optional; without
 *   it `cpus`, which makes the factor max(1, busy x threads / cpus)). The profile's rates were
 *   measured with `threads` threads, which got min(threads, E) CPUs; busy nodes split E. On a
 *   machine shared with other sessions' work E is below `cpus` (Linux's autogroup scheduling
 *   shares the CPUs between sessions, then between a session's threads): measured 0.3-1.0 of 2
 *   vCPUs with two other sessions busy, where 4 local nodes of 1 thread ran their experts at
 *   about 1/4 of one thread's speed each, not the 1/2 that cpus = 2 gives.
 * - The weights are resident in memory (a node that pages them in from disk runs slower than
 *   any of this: docs/PERFORMANCE.md shows both).
 * - Decode: min(C, stages) micro-batches of ceil(C / that) sequences go round the pipeline; a
 *   cycle takes max(micro-batches x the slowest stage, the sum of the stages plus the hops), and
 *   every sequence gains one token per cycle.
 * - The last stage multiplies lm_head with one token per sequence (prefill: its last token).
 * - Prefill: one sequence of L tokens in chunks of max-batch-tokens, pipelined over the stages:
 *   the sum of the stages for the first chunk plus (chunks - 1) x the slowest stage. TTFT is that
 *   time (the first token is sampled from the last chunk's logits).
 */
#ifndef DSC_ESTIMATE_H
#define DSC_ESTIMATE_H

#include <stdint.h>

#include "dsc_memory.h"
#include "dsi_status.h"
#include "dsn_config.h"
#include "dst_plan.h"

#define DSC_PROFILE_BATCHES 4 /* matmul rates at 1, 4, 16 and 64 tokens */
#define DSC_PROFILE_PREFILL 2 /* packed-GEMM rates at 128 and 512 tokens */
#define DSC_PROFILE_EXPERT  4 /* expert-shaped products at 4, 8, 16 and 32 tokens */
#define DSC_PROFILE_MAX_CTX 16

typedef struct {
    int threads;          /* informational */
    double memory_bw_gbs; /* streaming read, all threads */
    double fma_gflops;    /* f32 FMAs, all threads */
    /* weight GB/s of each format's matmul at 1, 4, 16, 64 tokens; 0: not in the profile */
    double matmul_gbs[DSC_WEIGHT_N_FORMATS][DSC_PROFILE_BATCHES];
    /* weight GB/s of the packed GEMM (prefill) at 128 and 512 tokens; 0: not in the profile
     * (optional: without it the time above 64 tokens grows with the tokens from the 64 point) */
    double prefill_gbs[DSC_WEIGHT_N_FORMATS][DSC_PROFILE_PREFILL];
    /* weight GB/s of a routed expert's products (its own shapes) at 4, 8, 16, 32 tokens; 0: not
     * in the profile (optional: without it the experts take matmul_gbs) */
    double expert_gbs[DSC_WEIGHT_N_FORMATS][DSC_PROFILE_EXPERT];
    int cpus; /* online CPUs of the machine measured; 0: not given (taken as `threads`) */
    /* CPUs' worth of time `cpus` busy threads got together while profiled; 0: not given (taken
     * as cpus) */
    double cpus_effective;
    /* attention: seconds per query token and layer at each context length, for `heads` heads of
     * a `width`-wide latent row (kv_lora_rank + qk_rope_head_dim) */
    int attn_heads, attn_width, n_attn;
    double attn_ctx[DSC_PROFILE_MAX_CTX];
    double attn_us[DSC_PROFILE_MAX_CTX];
    double net_latency_us; /* one way, between two nodes */
    double net_gbs;        /* GB/s (10^9 bytes) between two nodes */
} dsc_profile_t;

/* The batches of matmul_gbs, prefill_gbs and expert_gbs. */
extern const int dsc_profile_batches[DSC_PROFILE_BATCHES];
extern const int dsc_profile_prefill_batches[DSC_PROFILE_PREFILL];
extern const int dsc_profile_expert_batches[DSC_PROFILE_EXPERT];

/*
 * Read a profile JSON file (docs/PERFORMANCE.md lists the fields). Errors name the file and the
 * missing or bad field in `err` (DSI_ERR_IO when unreadable, DSI_ERR_CONFIG when a field is bad).
 */
dsi_status_t dsc_profile_load(const char *path, dsc_profile_t *out, char *err, size_t err_size);
/* The same from text in memory (`what` names it in errors). */
dsi_status_t dsc_profile_parse(const char *text, const char *what, dsc_profile_t *out, char *err,
                               size_t err_size);

typedef enum {
    DSC_TERM_WEIGHTS = 0, /* streaming the weights from memory */
    DSC_TERM_COMPUTE,     /* the kernels' arithmetic beyond the memory time */
    DSC_TERM_ATTENTION,   /* attention over the cached context */
    DSC_TERM_NET_LATENCY, /* round trips and hops */
    DSC_TERM_NET_BW,      /* bytes on the network */
    DSC_TERM_COUNT
} dsc_term_t;

const char *dsc_term_name(dsc_term_t t);

typedef struct {
    uint32_t concurrency;       /* decode streams */
    uint32_t prompt_len;        /* prefill length, and the decode's context */
    uint32_t max_batch_tokens;  /* prefill chunk */
    uint32_t nodes_per_machine; /* node processes sharing one machine of the profile (0: 1) */
} dsc_estimate_opts_t;

typedef struct {
    double decode_tok_s;                 /* per stream */
    double decode_aggregate;             /* all streams */
    double decode_cycle_s;               /* one token of every stream */
    double decode_terms[DSC_TERM_COUNT]; /* seconds of the cycle's critical path, by term */
    dsc_term_t decode_bound;
    double prefill_tok_s;
    double ttft_s;
    double prefill_terms[DSC_TERM_COUNT];
    dsc_term_t prefill_bound;
    uint32_t micro_batches, micro_batch_seqs;
} dsc_estimate_t;

/*
 * Estimate `plan` (from dsc_planner_plan for `cfg`, weights in `mem->format`) on machines of
 * `profile`. DSI_ERR_CONFIG (err says why) when the profile lacks the format's matmul rates or
 * the attention points.
 */
dsi_status_t dsc_estimate(const dsn_config_t *cfg, const dsc_memory_t *mem, const dst_plan_t *plan,
                          const dsc_profile_t *profile, const dsc_estimate_opts_t *opts,
                          dsc_estimate_t *out, char *err, size_t err_size);

#endif
