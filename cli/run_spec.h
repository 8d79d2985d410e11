/*
 * run_spec.h - `dsinfer run` in one process with speculative decoding (node/engine/dsn_spec.h):
 * the checkpoint's MTP layer drafts, the main model verifies, the same tokens come out.
 */
#ifndef RUN_SPEC_H
#define RUN_SPEC_H

#include <stdint.h>
#include <stdio.h>

#include "dsn_engine.h"
#include "dsn_mtp.h"
#include "dsn_sampler.h"
#include "dsn_spec.h"
#include "run_text.h"

typedef struct {
    const int32_t *prompt;
    int n_prompt;
    long long max_tokens, prefill_chunk;
    dsn_sampling_t sampling;
    int k;              /* drafts per step */
    FILE *logits_file;  /* --logits-out, or NULL */
    run_text_t *stream; /* print text as it comes, or NULL */
    int eos;            /* the model's eos id */
} run_spec_opts_t;

typedef struct {
    int32_t *tokens; /* malloc'ed */
    int n_tokens;
    const char *finish_reason;
    double prefill_s, decode_s;
    dsn_spec_stats_t stats;
} run_spec_result_t;

/* Generates with speculation. 0, or 1 after printing the cause. */
int run_spec_generate(dsn_engine_t *eng, dsn_mtp_t *mtp, const run_spec_opts_t *o,
                      run_spec_result_t *r);
/* --mtp-logits-out: the MTP layer's logits over the prompt, [n - 1, vocab] f32. 0 or 1. */
int run_spec_mtp_logits(dsn_engine_t *eng, dsn_mtp_t *mtp, const int32_t *prompt, int n,
                        const char *path);
/* The speculation figures as a JSON object's members (no braces) into out. */
void run_spec_json(const dsn_spec_stats_t *st, int k, FILE *out);
/* One line for stderr. */
void run_spec_summary(const dsn_spec_stats_t *st, int k, FILE *out);

#endif
