#include "dsn_sampler.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

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

double dsn_sampler_uniform(dsn_sampler_t *s)
{
    return uniform01(s->rng);
}

static int has_penalty(const dsn_controls_t *p)
{
    return p->presence_penalty != 0.0f || p->frequency_penalty != 0.0f ||
           (p->repetition_penalty > 0.0f && p->repetition_penalty != 1.0f);
}

/* A malloc'ed copy of n items of size sz, or NULL when n is 0; *fail set on OOM. */
static void *dup_array(const void *src, size_t n, size_t sz, int *fail)
{
    if (n == 0)
        return NULL;
    void *d = malloc(n * sz);
    if (d == NULL)
        *fail = 1;
    else
        memcpy(d, src, n * sz);
    return d;
}

int dsn_sampler_init(dsn_sampler_t *s, const dsn_sampling_t *params, int vocab)
{
    memset(s, 0, sizeof(*s));
    s->params = *params;
    s->vocab = vocab;
    uint64_t x = params->seed;
    for (int i = 0; i < 4; i++)
        s->rng[i] = splitmix64(&x);
    s->ctl.eos_id = -1;
    s->probs = malloc((size_t)vocab * sizeof(float));
    s->order = malloc((size_t)vocab * sizeof(int32_t));
    if (s->probs == NULL || s->order == NULL) {
        dsn_sampler_cleanup(s);
        return -1;
    }
    return 0;
}

int dsn_sampler_controls(dsn_sampler_t *s, const dsn_controls_t *ctl)
{
    int fail = 0;
    const int vocab = s->vocab;
    s->ctl = *ctl;
    s->bias_ids = dup_array(ctl->bias_ids, ctl->n_bias, sizeof(int32_t), &fail);
    s->bias_values = dup_array(ctl->bias_values, ctl->n_bias, sizeof(float), &fail);
    s->stop_ids = dup_array(ctl->stop_ids, ctl->n_stop_ids, sizeof(int32_t), &fail);
    s->ctl.bias_ids = s->bias_ids;
    s->ctl.bias_values = s->bias_values;
    s->ctl.stop_ids = s->stop_ids;
    if (has_penalty(ctl)) {
        s->counts = calloc((size_t)vocab, sizeof(uint32_t));
        s->seen = calloc((size_t)vocab, 1);
        s->seen_ids = malloc((size_t)vocab * sizeof(int32_t));
        fail |= s->counts == NULL || s->seen == NULL || s->seen_ids == NULL;
    }
    return fail ? -1 : 0;
}

void dsn_sampler_cleanup(dsn_sampler_t *s)
{
    free(s->probs);
    free(s->order);
    free(s->bias_ids);
    free(s->bias_values);
    free(s->stop_ids);
    free(s->counts);
    free(s->seen);
    free(s->seen_ids);
    s->probs = s->bias_values = NULL;
    s->order = s->bias_ids = s->stop_ids = s->seen_ids = NULL;
    s->counts = NULL;
    s->seen = NULL;
}

static void see(dsn_sampler_t *s, int32_t t)
{
    if (t < 0 || t >= s->vocab || s->seen[t])
        return;
    s->seen[t] = 1;
    s->seen_ids[s->n_seen++] = t;
}

void dsn_sampler_history(dsn_sampler_t *s, const int32_t *tokens, uint32_t n, uint32_t n_output)
{
    if (s->seen == NULL)
        return;
    for (uint32_t i = 0; i < n; i++) {
        see(s, tokens[i]);
        if (i + n_output >= n && tokens[i] >= 0 && tokens[i] < s->vocab)
            s->counts[tokens[i]]++;
    }
}

void dsn_sampler_accept(dsn_sampler_t *s, int32_t token)
{
    if (s->seen == NULL || token < 0 || token >= s->vocab)
        return;
    see(s, token);
    s->counts[token]++;
}

/* logit_bias and the min_tokens mask: the part of the controls that needs no history. */
static void bias_and_mask(const dsn_controls_t *p, int vocab, uint32_t n_generated, float *logits)
{
    for (uint32_t i = 0; i < p->n_bias; i++) {
        if (p->bias_ids[i] >= 0 && p->bias_ids[i] < vocab)
            logits[p->bias_ids[i]] += p->bias_values[i];
    }
    if (n_generated >= p->min_tokens)
        return;
    if (p->eos_id >= 0 && p->eos_id < vocab)
        logits[p->eos_id] = -INFINITY;
    for (uint32_t i = 0; i < p->n_stop_ids; i++) {
        if (p->stop_ids[i] >= 0 && p->stop_ids[i] < vocab)
            logits[p->stop_ids[i]] = -INFINITY;
    }
}

/* The penalties of one token seen count times in the output (seen: in prompt or output). */
static float penalize(const dsn_controls_t *p, float logit, int seen, uint32_t count)
{
    float rp = p->repetition_penalty;
    if (seen && rp > 0.0f && rp != 1.0f)
        logit = logit > 0.0f ? logit / rp : logit * rp;
    logit -= p->frequency_penalty * (float)count;
    if (count > 0)
        logit -= p->presence_penalty;
    return logit;
}

void dsn_sampler_process(dsn_sampler_t *s, float *logits, uint32_t n_generated)
{
    bias_and_mask(&s->ctl, s->vocab, n_generated, logits);
    if (s->seen == NULL)
        return;
    for (int i = 0; i < s->n_seen; i++) {
        int32_t t = s->seen_ids[i];
        logits[t] = penalize(&s->ctl, logits[t], 1, s->counts[t]);
    }
}

void dsn_sampler_process_ref(const dsn_controls_t *p, int vocab, const int32_t *prompt,
                             uint32_t n_prompt, const int32_t *output, uint32_t n_output,
                             float *logits)
{
    bias_and_mask(p, vocab, n_output, logits);
    if (!has_penalty(p))
        return;
    for (int t = 0; t < vocab; t++) {
        uint32_t count = 0;
        int seen = 0;
        for (uint32_t i = 0; i < n_prompt; i++)
            seen |= prompt[i] == t;
        for (uint32_t i = 0; i < n_output; i++)
            count += output[i] == t;
        logits[t] = penalize(p, logits[t], seen || count > 0, count);
    }
}

float dsn_logprobs(const float *logits, int vocab, int32_t token, int k, int32_t *top_ids,
                   float *top_lp)
{
    float max = logits[dsn_argmax(logits, vocab)];
    double sum = 0;
    for (int i = 0; i < vocab; i++)
        sum += exp((double)logits[i] - max);
    const float log_z = max + (float)log(sum);
    if (k > DSN_MAX_TOP_LOGPROBS)
        k = DSN_MAX_TOP_LOGPROBS;
    int n = 0; /* top_ids[0, n) sorted by descending logit, ascending id on ties */
    for (int i = 0; i < vocab && k > 0; i++) {
        if (n == k && !(logits[i] > logits[top_ids[n - 1]]))
            continue;
        int j = n < k ? n++ : k - 1;
        while (j > 0 && logits[i] > logits[top_ids[j - 1]]) {
            top_ids[j] = top_ids[j - 1];
            j--;
        }
        top_ids[j] = i;
    }
    for (int j = 0; j < n; j++)
        top_lp[j] = fmaxf(logits[top_ids[j]] - log_z, -FLT_MAX);
    return fmaxf(logits[token] - log_z, -FLT_MAX);
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
        /* min_p: relative to the most likely token, whose probs[] is 1 */
        if (s->probs[i] < s->ctl.min_p)
            s->probs[i] = 0.0f;
        total += s->probs[i];
    }
    if ((p->top_k > 0 && p->top_k < V) || p->top_p < 1.0f)
        return top_candidates(s, total);
    for (int i = 0; i < V; i++)
        s->order[i] = i;
    return V;
}

int dsn_logits_finite(const float *logits, int vocab)
{
    float sum_check = 0.0f;
    for (int i = 0; i < vocab; i++)
        sum_check += logits[i] * 0.0f; /* 0 unless some logit is NaN or infinite */
    return sum_check == 0.0f;
}

int32_t dsn_sampler_next(dsn_sampler_t *s, const float *logits)
{
    if (!dsn_logits_finite(logits, s->vocab))
        return -1;
    return dsn_sampler_next_masked(s, logits);
}

int32_t dsn_sampler_next_masked(dsn_sampler_t *s, const float *logits)
{
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
