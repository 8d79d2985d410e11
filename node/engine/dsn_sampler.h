/*
 * dsn_sampler.h - choosing the next token from logits.
 *
 * temperature 0: greedy (argmax, lowest id on ties). Otherwise p = softmax(logits / T), restricted
 * to the top_k most likely tokens (0 = all) and then to the smallest set whose probability reaches
 * top_p (1 = all), renormalised, and sampled with a seeded generator: the same seed and logits give
 * the same tokens on every machine.
 *
 * Before that, dsn_sampler_process changes the logits of a sequence as OpenAI / vLLM / Hugging
 * Face define the controls, in this order: logit_bias added; EOS and the stop ids masked (-inf)
 * while fewer than min_tokens were generated; repetition_penalty (HF: a token seen in the prompt
 * or the output has a positive logit divided by it, a negative one multiplied); frequency_penalty
 * times the token's count in the output and presence_penalty once for a token in the output, both
 * subtracted. min_p then drops, after temperature, every token less likely than min_p times the
 * most likely one. The counts live in the sampler (sized at init, never per step).
 */
#ifndef DSN_SAMPLER_H
#define DSN_SAMPLER_H

#include <stdint.h>

typedef struct {
    float temperature; /* >= 0 */
    float top_p;       /* (0, 1] */
    int top_k;         /* >= 0; 0 = no limit */
    uint64_t seed;
} dsn_sampling_t;

/* The controls of dsn_sampler_process; zero = off. dsn_sampler_controls copies the arrays. */
typedef struct {
    float presence_penalty, frequency_penalty; /* [-2, 2] */
    float repetition_penalty;                  /* 0 or 1 = off, else > 0 */
    float min_p;                               /* [0, 1] */
    uint32_t min_tokens;
    int32_t eos_id;          /* masked below min_tokens; -1 = none */
    const int32_t *bias_ids; /* [n_bias] ids < vocab (others are ignored) */
    const float *bias_values;
    uint32_t n_bias;
    const int32_t *stop_ids; /* [n_stop_ids] masked below min_tokens */
    uint32_t n_stop_ids;
} dsn_controls_t;

/* Per-sequence sampler state: the random stream and scratch for the vocabulary. */
typedef struct {
    dsn_sampling_t params;
    dsn_controls_t ctl; /* zeroed by init; arrays owned */
    uint64_t rng[4];    /* xoshiro256** state */
    int vocab;
    float *probs;   /* [vocab] */
    int32_t *order; /* [vocab] */
    /* owned copies of params' arrays */
    int32_t *bias_ids, *stop_ids;
    float *bias_values;
    /* the token history, only when a penalty is on (else NULL) */
    uint32_t *counts;  /* [vocab] occurrences in the output */
    uint8_t *seen;     /* [vocab] 1 when in the prompt or the output */
    int32_t *seen_ids; /* [vocab] the distinct ids with seen set, [n_seen] */
    int n_seen;
} dsn_sampler_t;

/* One token's log-probabilities (dsn_logprobs). */
#define DSN_MAX_TOP_LOGPROBS 20

/* Returns 0, or -1 when out of memory. Release with dsn_sampler_cleanup(). */
int dsn_sampler_init(dsn_sampler_t *s, const dsn_sampling_t *params, int vocab);
/* Sets the controls after init (ctl's arrays are copied). 0, or -1 when out of memory: the
 * history's arrays (9 bytes per vocabulary entry) are allocated when a penalty is on. */
int dsn_sampler_controls(dsn_sampler_t *s, const dsn_controls_t *ctl);
void dsn_sampler_cleanup(dsn_sampler_t *s);
/* The next token from logits[vocab], or -1 when the row holds a NaN or an infinity (broken
 * weights or scales): nothing meaningful can be drawn, and the caller ends the sequence with an
 * error instead of emitting token 0 forever. */
int32_t dsn_sampler_next(dsn_sampler_t *s, const float *logits);
/* 1 when every logit is finite (no NaN, no infinity). */
int dsn_logits_finite(const float *logits, int vocab);
/* dsn_sampler_next of a row the controls already processed (dsn_sampler_process): -inf marks the
 * tokens they masked; the caller checked the raw row with dsn_logits_finite. */
int32_t dsn_sampler_next_masked(dsn_sampler_t *s, const float *logits);
/*
 * What dsn_sampler_next draws from (temperature > 0): fills probs (unnormalised softmax) and
 * order[0, n) with the candidates in descending probability, ascending id on ties; returns n.
 * top_p's total is the sum over the top_k candidates, or over the vocabulary in id order.
 */
int dsn_sampler_candidates(dsn_sampler_t *s, const float *logits);
/* The next uniform number in [0, 1) of the sequence's random stream (speculative decoding's
 * acceptance tests draw from the same seeded stream as the sampler). */
double dsn_sampler_uniform(dsn_sampler_t *s);
/* Advances the random stream past n tokens sampled elsewhere (a request resumed after a re-plan
 * continues the stream an uninterrupted run would have used): each sampled token takes one draw. */
void dsn_sampler_skip(dsn_sampler_t *s, uint32_t n);
/*
 * The sequence's tokens so far: tokens[0, n) of which the last n_output are generated output (a
 * re-submitted request). Call once after init; then dsn_sampler_accept for each sampled token.
 */
void dsn_sampler_history(dsn_sampler_t *s, const int32_t *tokens, uint32_t n, uint32_t n_output);
void dsn_sampler_accept(dsn_sampler_t *s, int32_t token);
/* Applies the controls to logits[vocab] in place; n_generated: output tokens so far. Only the
 * seen ids are visited for the penalties. */
void dsn_sampler_process(dsn_sampler_t *s, float *logits, uint32_t n_generated);
/*
 * The plain reference of dsn_sampler_process for tests: the same result from the sequence's
 * tokens given explicitly (prompt[n_prompt], output[n_output]), visiting the whole vocabulary.
 */
void dsn_sampler_process_ref(const dsn_controls_t *p, int vocab, const int32_t *prompt,
                             uint32_t n_prompt, const int32_t *output, uint32_t n_output,
                             float *logits);
/*
 * log_softmax of logits[vocab] computed in float with a double sum: the log-probability of
 * `token` (returned), and the k (<= DSN_MAX_TOP_LOGPROBS) most likely ids (lowest id on ties)
 * with theirs in top_ids[k] / top_lp[k]. Results are at least -FLT_MAX (never -inf).
 */
float dsn_logprobs(const float *logits, int vocab, int32_t token, int k, int32_t *top_ids,
                   float *top_lp);
/* Index of the largest logit (lowest on ties). */
int32_t dsn_argmax(const float *logits, int n);

#endif
