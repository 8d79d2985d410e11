/*
 * bench_spec.h - the speculative-decoding part of `dsinfer bench model`: on a checkpoint with the
 * MTP layer, the time of a verify step of K + 1 tokens against a one-token decode step, the time
 * to draft K tokens, and the decode speed-up they imply at a given acceptance rate.
 */
#ifndef BENCH_SPEC_H
#define BENCH_SPEC_H

#include <stdint.h>
#include <stdio.h>

#include "dsn_engine.h"
#include "dsn_mtp.h"

#define BENCH_SPEC_MAX_K 3
#define BENCH_SPEC_ACCEPT 0.85 /* the acceptance the speed-up is computed at */

typedef struct {
    double step_ms;                          /* a one-token decode step (median) */
    double verify_ms[BENCH_SPEC_MAX_K + 1];  /* [k]: the main model on k + 1 tokens (median) */
    double draft_ms[BENCH_SPEC_MAX_K + 1];   /* [k]: the module drafting k tokens (median) */
    double tokens_per_step[BENCH_SPEC_MAX_K + 1]; /* expected at BENCH_SPEC_ACCEPT */
    double speedup[BENCH_SPEC_MAX_K + 1];    /* tokens_per_step * step / (draft + verify) */
} bench_spec_t;

/*
 * After a prefill of `prompt` (len tokens), `reps` rounds, each timing `steps` of every kind one
 * after the other (interleaved, so a drifting machine affects them alike). 0, or 1 after printing
 * the cause.
 */
int bench_spec_run(dsn_engine_t *eng, dsn_mtp_t *mtp, const int32_t *prompt, int64_t len,
                   int reps, int steps, bench_spec_t *out);
/* Text lines, or the members of a JSON object ("speculative": {...}) */
void bench_spec_print(const bench_spec_t *r, int json, FILE *out);

#endif
