/*
 * dsn_sampler.h - choosing the next token from logits.
 *
 * temperature 0: greedy (argmax, lowest id on ties). Otherwise p = softmax(logits / T), restricted
 * to the top_k most likely tokens (0 = all) and then to the smallest set whose probability reaches
 * top_p (1 = all), renormalised, and sampled with a seeded generator: the same seed and logits give
 * the same tokens on every machine.
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

/* Per-sequence sampler state: the random stream and scratch for the vocabulary. */
typedef struct {
    dsn_sampling_t params;
    uint64_t rng[4]; /* xoshiro256** state */
    int vocab;
    float *probs;   /* [vocab] */
    int32_t *order; /* [vocab] */
} dsn_sampler_t;

/* Returns 0, or -1 when out of memory. Release with dsn_sampler_cleanup(). */
int dsn_sampler_init(dsn_sampler_t *s, const dsn_sampling_t *params, int vocab);
void dsn_sampler_cleanup(dsn_sampler_t *s);
/* The next token from logits[vocab], or -1 when the row holds a NaN or an infinity (broken
 * weights or scales): nothing meaningful can be drawn, and the caller ends the sequence with an
 * error instead of emitting token 0 forever. */
int32_t dsn_sampler_next(dsn_sampler_t *s, const float *logits);
/*
 * What dsn_sampler_next draws from (temperature > 0): fills probs (unnormalised softmax) and
 * order[0, n) with the candidates in descending probability, ascending id on ties; returns n.
 * top_p's total is the sum over the top_k candidates, or over the vocabulary in id order.
 */
int dsn_sampler_candidates(dsn_sampler_t *s, const float *logits);
/* Advances the random stream past n tokens sampled elsewhere (a request resumed after a re-plan
 * continues the stream an uninterrupted run would have used): each sampled token takes one draw. */
void dsn_sampler_skip(dsn_sampler_t *s, uint32_t n);
/* Index of the largest logit (lowest on ties). */
int32_t dsn_argmax(const float *logits, int n);

#endif
