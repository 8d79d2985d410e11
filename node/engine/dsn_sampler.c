#include "dsn_sampler.h"

#include <math.h>
#include <stdlib.h>

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t xoshiro_next(uint64_t *s)
{
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* Uniform in [0, 1) with 53 random bits. */
static double uniform01(uint64_t *s)
{
    return (double)(xoshiro_next(s) >> 11) * (1.0 / 9007199254740992.0);
}

int dsn_sampler_init(dsn_sampler_t *s, const dsn_sampling_t *params, int vocab)
{
    s->params = *params;
    s->vocab = vocab;
    uint64_t x = params->seed;
    for (int i = 0; i < 4; i++)
        s->rng[i] = splitmix64(&x);
    s->probs = malloc((size_t)vocab * sizeof(float));
    s->order = malloc((size_t)vocab * sizeof(int32_t));
    if (s->probs == NULL || s->order == NULL) {
        dsn_sampler_cleanup(s);
        return -1;
    }
    return 0;
}

void dsn_sampler_cleanup(dsn_sampler_t *s)
{
    free(s->probs);
    free(s->order);
    s->probs = NULL;
    s->order = NULL;
}

int32_t dsn_argmax(const float *logits, int n)
{
    int32_t best = 0;
    for (int i = 1; i < n; i++) {
        if (logits[i] > logits[best])
            best = i;
    }
    return best;
}

/* Sort order: descending probability, ascending id on ties (a total order: deterministic). */
static int cmp_desc(const void *a, const void *b, void *arg)
{
    const float *probs = arg;
    int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    if (probs[i] != probs[j])
        return probs[i] > probs[j] ? -1 : 1;
    return (i > j) - (i < j);
}

void dsn_sampler_skip(dsn_sampler_t *s, uint32_t n)
{
    for (uint32_t i = 0; i < n && s->params.temperature > 0.0f; i++)
        xoshiro_next(s->rng);
}

/*
 * The ids of probability >= theta, sorted, are a prefix of the sorted vocabulary (every id below
 * theta sorts after them), so only that prefix is sorted: theta starts at 2^-10 of the largest
 * probability (which is 1) and drops by 2^10 per pass until the prefix holds the top_k ids and
 * the top_p cut (0 at last: the whole vocabulary, what a flat distribution needs). A peaked
 * distribution sorts a few hundred ids instead of the vocabulary (129 280 for V3).
 */
static int top_candidates(dsn_sampler_t *s, double total_all)
{
    const dsn_sampling_t *p = &s->params;
    const int V = s->vocab, k = p->top_k > 0 && p->top_k < V ? p->top_k : V;
    for (float theta = 0x1p-10f;; theta = theta > 0x1p-120f ? theta * 0x1p-10f : 0.0f) {
        int m = 0;
        for (int i = 0; i < V; i++)
            if (s->probs[i] >= theta)
                s->order[m++] = i;
        if (k < V && m < k && theta > 0.0f)
            continue; /* the prefix must hold the top_k ids */
        qsort_r(s->order, (size_t)m, sizeof(int32_t), cmp_desc, s->probs);
        const int n = m < k ? m : k;
        if (p->top_p >= 1.0f)
            return n;
        double total = total_all, kept = 0;
        if (k < V) { /* top_p within the top_k: the total over those, in their order */
            total = 0;
            for (int i = 0; i < n; i++)
                total += s->probs[s->order[i]];
        }
        for (int j = 0; j < n; j++) {
            kept += s->probs[s->order[j]];
            if (kept >= (double)p->top_p * total)
                return j + 1;
        }
        if (theta == 0.0f)
            return n;
    }
}

int dsn_sampler_candidates(dsn_sampler_t *s, const float *logits)
{
    const dsn_sampling_t *p = &s->params;
    const int V = s->vocab;
    const float max = logits[dsn_argmax(logits, V)];
    double total = 0;
    for (int i = 0; i < V; i++) {
        s->probs[i] = expf((logits[i] - max) / p->temperature);
        total += s->probs[i];
    }
    if ((p->top_k > 0 && p->top_k < V) || p->top_p < 1.0f)
        return top_candidates(s, total);
    for (int i = 0; i < V; i++)
        s->order[i] = i;
    return V;
}

int32_t dsn_sampler_next(dsn_sampler_t *s, const float *logits)
{
    float sum_check = 0.0f;
    for (int i = 0; i < s->vocab; i++)
        sum_check += logits[i] * 0.0f; /* 0 unless some logit is NaN or infinite */
    if (sum_check != 0.0f)
        return -1;
    if (s->params.temperature <= 0.0f)
        return dsn_argmax(logits, s->vocab);
    const int n = dsn_sampler_candidates(s, logits);
    if (n <= 0) /* every logit NaN */
        return dsn_argmax(logits, s->vocab);
    double sum = 0;
    for (int i = 0; i < n; i++)
        sum += s->probs[s->order[i]];
    double r = uniform01(s->rng) * sum, acc = 0;
    for (int i = 0; i < n; i++) {
        acc += s->probs[s->order[i]];
        if (r < acc)
            return s->order[i];
    }
    return s->order[n - 1];
}
