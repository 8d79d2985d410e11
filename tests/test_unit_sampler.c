/*
 * test_unit_sampler.c - dsn_sampler's candidate set (top_k, then top_p) against a full sort of the
 * vocabulary, the reference it replaced: the same ids in the same order on peaked, flat, tied and
 * underflowing distributions, vocabularies from 1 to V3's 129 280, every combination of
 * temperature, top_k and top_p; and the seeded draws are reproducible.
 *
 * `--bench`: microseconds per sampled token at V3's vocabulary, the full sort against dsn_sampler
 * (printed, not asserted; docs/PERFORMANCE.md).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dsi_clock.h"
#include "dsi_test.h"
#include "dsn_sampler.h"

/* The reference: sort all ids by (probability desc, id asc), take top_k, then the top_p prefix. */
static const float *ref_probs;
static int ref_cmp(const void *a, const void *b)
{
    int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    if (ref_probs[i] != ref_probs[j])
        return ref_probs[i] > ref_probs[j] ? -1 : 1;
    return (i > j) - (i < j);
}

static int ref_candidates(const dsn_sampling_t *p, const float *logits, int V, float *probs,
                          int32_t *order)
{
    float max = logits[dsn_argmax(logits, V)];
    double total_all = 0;
    for (int i = 0; i < V; i++) {
        probs[i] = expf((logits[i] - max) / p->temperature);
        total_all += probs[i];
        order[i] = i;
    }
    int n = p->top_k > 0 && p->top_k < V ? p->top_k : V;
    if (n == V && p->top_p >= 1.0f)
        return V; /* no restriction: the ids in id order */
    ref_probs = probs;
    qsort(order, (size_t)V, sizeof(int32_t), ref_cmp);
    if (p->top_p >= 1.0f)
        return n;
    double total = 0, kept = 0;
    if (n < V)
        for (int i = 0; i < n; i++)
            total += probs[order[i]];
    else
        total = total_all;
    for (int j = 0; j < n; j++) {
        kept += probs[order[j]];
        if (kept >= (double)p->top_p * total)
            return j + 1;
    }
    return n;
}

enum { PEAKED, FLAT, TIED_TOP, UNIFORM, UNDERFLOW, N_SHAPES };
static const char *shape_names[] = {"peaked", "flat", "tied top", "uniform", "underflow"};

static void make_logits(int shape, int V, float *logits)
{
    for (int i = 0; i < V; i++) {
        float u = dsi_test_randf();
        switch (shape) {
        case PEAKED: /* a few clear winners over a long tail, like a language model's */
            logits[i] = 3.0f * u + (dsi_test_randu() % 500 == 0 ? 12.0f : 0.0f);
            break;
        case FLAT:
            logits[i] = 1.5f;
            break;
        case TIED_TOP: /* groups of equal values, ties across the top_k / top_p boundaries */
            logits[i] = (float)(dsi_test_randu() % 8);
            break;
        case UNIFORM:
            logits[i] = u;
            break;
        default: /* most probabilities underflow to 0, some are subnormal */
            logits[i] = i % 97 == 0 ? 0.0f : -90.0f - 20.0f * u;
            break;
        }
    }
}

static void test_same_candidates(int V, int trials)
{
    static const float temps[] = {0.3f, 1.0f, 2.5f};
    static const float top_ps[] = {1.0f, 0.95f, 0.5f, 0.01f};
    const int top_ks[] = {0, 50, V + 3, 1, 5, V};
    const size_t n_top_ks = V > 10000 ? 3 : 6; /* the full sort of the reference is the slow part */
    float *logits = malloc((size_t)V * sizeof(float)), *probs = malloc((size_t)V * sizeof(float));
    int32_t *order = malloc((size_t)V * sizeof(int32_t));
    int bad = 0;
    for (int shape = 0; shape < N_SHAPES; shape++)
        for (int trial = 0; trial < trials; trial++) {
            make_logits(shape, V, logits);
            for (size_t a = 0; a < sizeof(temps) / sizeof(temps[0]); a++)
                for (size_t b = 0; b < sizeof(top_ps) / sizeof(top_ps[0]); b++)
                    for (size_t c = 0; c < n_top_ks; c++) {
                        dsn_sampling_t p = {temps[a], top_ps[b], top_ks[c], 1};
                        dsn_sampler_t s;
                        if (dsn_sampler_init(&s, &p, V) != 0) {
                            DSI_CHECK(0);
                            continue;
                        }
                        int n = dsn_sampler_candidates(&s, logits);
                        int m = ref_candidates(&p, logits, V, probs, order);
                        int same = n == m && memcmp(s.order, order, (size_t)n * 4) == 0;
                        if (!same && bad++ < 5)
                            fprintf(stderr,
                                    "V %d %s T %g top_p %g top_k %d: %d candidates, "
                                    "reference %d\n",
                                    V, shape_names[shape], temps[a], top_ps[b], top_ks[c], n, m);
                        DSI_CHECK(same);
                        dsn_sampler_cleanup(&s);
                    }
        }
    free(logits);
    free(probs);
    free(order);
}

/* The same seed and logits give the same tokens; every token is a candidate. */
static void test_draws_reproducible(void)
{
    const int V = 1000;
    float *logits = malloc(V * sizeof(float));
    make_logits(PEAKED, V, logits);
    dsn_sampling_t p = {0.8f, 0.9f, 40, 42};
    dsn_sampler_t a, b;
    DSI_CHECK(dsn_sampler_init(&a, &p, V) == 0 && dsn_sampler_init(&b, &p, V) == 0);
    for (int i = 0; i < 200; i++) {
        int32_t ta = dsn_sampler_next(&a, logits), tb = dsn_sampler_next(&b, logits);
        DSI_CHECK_INT_EQ(ta, tb);
        int n = dsn_sampler_candidates(&b, logits), found = 0;
        for (int j = 0; j < n; j++)
            found |= b.order[j] == ta;
        DSI_CHECK(found);
    }
    /* A row with one NaN or infinity (or all NaN): nothing to draw from, -1 (greedy or not),
     * where token 0 used to come out forever. */
    dsn_sampling_t greedy = {0.0f, 1.0f, 0, 1};
    dsn_sampler_t g;
    DSI_CHECK(dsn_sampler_init(&g, &greedy, V) == 0);
    const float bad[3] = {NAN, INFINITY, -INFINITY};
    for (int k = 0; k < 3; k++) {
        make_logits(PEAKED, V, logits);
        logits[V / 2] = bad[k];
        DSI_CHECK_INT_EQ(dsn_sampler_next(&a, logits), -1);
        DSI_CHECK_INT_EQ(dsn_sampler_next(&g, logits), -1);
    }
    for (int i = 0; i < V; i++)
        logits[i] = NAN;
    DSI_CHECK_INT_EQ(dsn_sampler_next(&a, logits), -1);
    dsn_sampler_cleanup(&g);
    dsn_sampler_cleanup(&a);
    dsn_sampler_cleanup(&b);
    free(logits);
}

static void bench(void)
{
    const int V = 129280, reps = 50;
    float *logits = malloc((size_t)V * sizeof(float)), *probs = malloc((size_t)V * sizeof(float));
    int32_t *order = malloc((size_t)V * sizeof(int32_t));
    for (int shape = 0; shape < N_SHAPES; shape++) {
        make_logits(shape, V, logits);
        dsn_sampling_t p = {0.6f, 0.95f, 0, 1};
        dsn_sampler_t s;
        if (dsn_sampler_init(&s, &p, V) != 0)
            break;
        int n = 0;
        double t0 = dsi_now_s();
        for (int r = 0; r < reps; r++)
            n = dsn_sampler_candidates(&s, logits);
        double t1 = dsi_now_s();
        for (int r = 0; r < reps; r++)
            ref_candidates(&p, logits, V, probs, order);
        double t2 = dsi_now_s();
        printf("V %d, %-9s T 0.6 top_p 0.95: %6d candidates, full sort %8.1f us, dsn_sampler "
               "%8.1f us per token\n",
               V, shape_names[shape], n, (t2 - t1) / reps * 1e6, (t1 - t0) / reps * 1e6);
        dsn_sampler_cleanup(&s);
    }
    free(logits);
    free(probs);
    free(order);
}

int main(int argc, char **argv)
{
    dsi_test_seed(11);
    if (argc > 1 && strcmp(argv[1], "--bench") == 0) {
        bench();
        return 0;
    }
    test_same_candidates(1, 2);
    test_same_candidates(2, 4);
    test_same_candidates(7, 8);
    test_same_candidates(1000, 3);
    test_same_candidates(129280, 1);
    test_draws_reproducible();
    return dsi_test_finish();
}
