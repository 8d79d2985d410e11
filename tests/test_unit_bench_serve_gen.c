/*
 * test_unit_bench_serve_gen.c - the pieces of `dsinfer bench serve` that need no server: the
 * arrival processes match their rate (mean gap, coefficient of variation, dispersion of counts
 * per second) for Poisson and gamma gaps over seeded runs and are repeatable; lengths stay in
 * their range with the right mean; the plan's requests depend on (seed, index) only; chats load
 * from JSON lines and a JSON array; SLO and length parsing; nearest-rank percentiles; goodput's
 * rule; the /metrics parser.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_serve.h"
#include "dsi_test.h"

#define N_ARRIVALS 20000

/* Mean gap, coefficient of variation of the gaps and the index of dispersion (variance / mean) of
 * the counts per window of `window` seconds. */
static void arrival_stats(const double *t, int n, double window, double *mean, double *cv,
                          double *dispersion)
{
    double sum = 0, sum2 = 0, prev = 0;
    for (int i = 0; i < n; i++) {
        double g = t[i] - prev;
        prev = t[i];
        sum += g;
        sum2 += g * g;
    }
    *mean = sum / n;
    *cv = sqrt(sum2 / n - *mean * *mean) / *mean;
    int windows = (int)floor(t[n - 1] / window);
    int *count = calloc((size_t)windows, sizeof(int));
    DSI_CHECK(count != NULL);
    for (int i = 0; i < n; i++) {
        int w = (int)floor(t[i] / window);
        if (w < windows)
            count[w]++;
    }
    double cs = 0, cs2 = 0;
    for (int w = 0; w < windows; w++) {
        cs += count[w];
        cs2 += (double)count[w] * count[w];
    }
    double cm = cs / windows;
    *dispersion = (cs2 / windows - cm * cm) / cm;
    free(count);
}

static void test_arrivals(void)
{
    static double t[N_ARRIVALS], u[N_ARRIVALS];
    const struct {
        double rate, burstiness, cv; /* gamma(k) gaps: CV = 1 / sqrt(k) */
    } cases[] = {{5, 1, 1}, {5, 0.5, 1.41421356}, {20, 4, 0.5}, {0.5, 1, 1}};
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        bs_arrivals(42, cases[c].rate, cases[c].burstiness, N_ARRIVALS, t);
        double mean, cv, disp;
        /* Windows that hold about 10 arrivals each on average. */
        arrival_stats(t, N_ARRIVALS, 10 / cases[c].rate, &mean, &cv, &disp);
        printf("rate %g burstiness %g: mean gap %.5f (want %.5f), CV %.4f (want %.4f), "
               "dispersion %.3f\n",
               cases[c].rate, cases[c].burstiness, mean, 1 / cases[c].rate, cv, cases[c].cv, disp);
        DSI_CHECK_NEAR(mean * cases[c].rate, 1.0, 0.03);
        DSI_CHECK_NEAR(cv / cases[c].cv, 1.0, 0.06);
        /* Counts of a renewal process: variance / mean tends to CV^2 (1 for Poisson). */
        DSI_CHECK_NEAR(disp / (cases[c].cv * cases[c].cv), 1.0, 0.15);
        for (int i = 1; i < N_ARRIVALS; i++)
            if (!(t[i] >= t[i - 1])) {
                DSI_CHECK(t[i] >= t[i - 1]);
                break;
            }
    }
    /* Repeatable with one seed, different with another. */
    bs_arrivals(42, 5, 1, N_ARRIVALS, t);
    bs_arrivals(42, 5, 1, N_ARRIVALS, u);
    DSI_CHECK(memcmp(t, u, sizeof(t)) == 0);
    bs_arrivals(43, 5, 1, N_ARRIVALS, u);
    DSI_CHECK(memcmp(t, u, sizeof(t)) != 0);
}

static void test_rng(void)
{
    bs_rng_t r;
    bs_rng_init(&r, 1, 0);
    double sum = 0, gsum = 0;
    int n = 100000;
    for (int i = 0; i < n; i++) {
        double x = bs_rng_uniform(&r);
        DSI_CHECK(x > 0 && x < 1);
        if (!(x > 0 && x < 1))
            break;
        sum += x;
        gsum += bs_rng_gamma(&r, 3);
    }
    DSI_CHECK_NEAR(sum / n, 0.5, 0.005);
    DSI_CHECK_NEAR(gsum / n, 3.0, 0.03); /* gamma(k, 1) has mean k */
}

static void test_lengths(void)
{
    bs_len_t l;
    DSI_CHECK_INT_EQ(bs_parse_len("--prompt-len", "128:2048", 100000, &l), 0);
    DSI_CHECK_INT_EQ(l.min, 128);
    DSI_CHECK_INT_EQ(l.max, 2048);
    DSI_CHECK_INT_EQ(bs_parse_len("--prompt-len", "64", 100000, &l), 0);
    DSI_CHECK(l.min == 64 && l.max == 64);
    const char *bad[] = {"", "0", "5:4", "x", "1:", ":5", "3:9x", "1:200001"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        DSI_CHECK_INT_EQ(bs_parse_len("--prompt-len", bad[i], 200000, &l), -1);

    bs_plan_t plan = {.seed = 9, .prompt_len = {128, 2048}, .output_len = {16, 32}};
    double sum = 0;
    int n = 4000, lo = 1 << 30, hi = 0;
    for (int i = 0; i < n; i++) {
        bs_req_t a, b;
        DSI_CHECK_INT_EQ(bs_plan_request(&plan, i, &a), 0);
        DSI_CHECK_INT_EQ(bs_plan_request(&plan, i, &b), 0);
        /* (seed, index) alone decide a request */
        DSI_CHECK(a.prompt_words == b.prompt_words && a.max_tokens == b.max_tokens &&
                  strcmp(a.prompt, b.prompt) == 0);
        int words = 1;
        for (const char *p = a.prompt; *p; p++)
            words += *p == ' ';
        DSI_CHECK_INT_EQ(words, a.prompt_words);
        DSI_CHECK(a.max_tokens >= 16 && a.max_tokens <= 32);
        lo = a.prompt_words < lo ? a.prompt_words : lo;
        hi = a.prompt_words > hi ? a.prompt_words : hi;
        sum += a.prompt_words;
        free(a.prompt);
        free(b.prompt);
    }
    DSI_CHECK(lo >= 128 && hi <= 2048 && lo < 200 && hi > 1950);
    DSI_CHECK_NEAR(sum / n / 1088.0, 1.0, 0.03); /* uniform over [128, 2048] */
    /* Different indices, different prompts (no shared prefix to cache). */
    char *p0 = bs_prompt(9, 0, 32), *p1 = bs_prompt(9, 1, 32), *q0 = bs_prompt(10, 0, 32);
    DSI_CHECK(strncmp(p0, p1, 12) != 0 && strcmp(p0, q0) != 0);
    free(p0);
    free(p1);
    free(q0);
}

static void test_dataset(void)
{
    char path[] = "/tmp/dsinfer-chats-XXXXXX";
    int fd = mkstemp(path);
    DSI_CHECK(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fprintf(f, "{\"id\":\"a\",\"conversations\":[{\"from\":\"human\",\"value\":\"one two "
               "three\"},{\"from\":\"gpt\",\"value\":\"a b c d e\"}]}\n"
               "\n"
               "{\"id\":\"b\",\"conversations\":[{\"from\":\"gpt\",\"value\":\"hello\"}]}\n"
               "{\"id\":\"c\",\"conversations\":[{\"from\":\"system\",\"value\":\"s\"},"
               "{\"from\":\"user\",\"value\":\"why\"},{\"from\":\"assistant\",\"value\":"
               "\"because so\"}]}\n");
    fclose(f);
    bs_dataset_t d;
    DSI_CHECK_INT_EQ(bs_dataset_load(path, &d), 0);
    DSI_CHECK_INT_EQ(d.n, 2); /* "b" has no user turn */
    DSI_CHECK_STR_EQ(d.chats[0].prompt, "one two three");
    DSI_CHECK_INT_EQ(d.chats[0].answer_words, 5);
    DSI_CHECK_STR_EQ(d.chats[1].prompt, "why");
    DSI_CHECK_INT_EQ(d.chats[1].answer_words, 2);
    bs_plan_t plan = {.seed = 1, .dataset = &d, .output_len = {64, 64}, .max_output = 4};
    for (int i = 0; i < 20; i++) {
        bs_req_t r;
        DSI_CHECK_INT_EQ(bs_plan_request(&plan, i, &r), 0);
        int first = strcmp(r.prompt, "one two three") == 0;
        DSI_CHECK(first || strcmp(r.prompt, "why") == 0);
        DSI_CHECK_INT_EQ(r.max_tokens, first ? 4 : 2); /* the answer's words, capped */
        free(r.prompt);
    }
    bs_dataset_free(&d);

    f = fopen(path, "w"); /* the same as one JSON array */
    fprintf(f, "[{\"conversations\":[{\"from\":\"human\",\"value\":\"x y\"}]}]");
    fclose(f);
    DSI_CHECK_INT_EQ(bs_dataset_load(path, &d), 0);
    DSI_CHECK_INT_EQ(d.n, 1);
    DSI_CHECK_INT_EQ(d.chats[0].answer_words, 0);
    bs_dataset_free(&d);

    f = fopen(path, "w");
    fprintf(f, "{\"conversations\": [\n"); /* broken */
    fclose(f);
    DSI_CHECK_INT_EQ(bs_dataset_load(path, &d), -1);
    remove(path);
    DSI_CHECK_INT_EQ(bs_dataset_load(path, &d), -1);
}

static void test_slo_and_percentiles(void)
{
    bs_slo_t slo;
    DSI_CHECK_INT_EQ(bs_parse_slo("ttft=2s,tpot=100ms,e2el=1500", &slo), 0);
    DSI_CHECK_NEAR(slo.ttft, 2.0, 1e-12);
    DSI_CHECK_NEAR(slo.tpot, 0.1, 1e-12);
    DSI_CHECK_NEAR(slo.e2el, 1.5, 1e-12);
    const char *bad[] = {"ttft", "ttft=", "ttft=-1s", "foo=1s", "ttft=2h", "ttft=0"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        DSI_CHECK_INT_EQ(bs_parse_slo(bad[i], &slo), -1);

    bs_slo_t s = {.ttft = 1, .tpot = 0.1};
    bs_result_t r = {.status = 200, .ttft = 1, .tpot = 0.1, .latency = 5};
    DSI_CHECK_INT_EQ(bs_slo_met(&s, &r), 1); /* at the limit counts */
    r.ttft = 1.0001;
    DSI_CHECK_INT_EQ(bs_slo_met(&s, &r), 0);
    r.ttft = 0.5;
    r.tpot = -1; /* one token: no TPOT, the TPOT objective holds */
    DSI_CHECK_INT_EQ(bs_slo_met(&s, &r), 1);
    r.stream_error = 1;
    DSI_CHECK_INT_EQ(bs_slo_met(&s, &r), 0);
    r.stream_error = 0;
    r.status = 429;
    DSI_CHECK_INT_EQ(bs_slo_met(&s, &r), 0);

    double v[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    DSI_CHECK_NEAR(bs_percentile(v, 10, 50), 5, 0);
    DSI_CHECK_NEAR(bs_percentile(v, 10, 90), 9, 0);
    DSI_CHECK_NEAR(bs_percentile(v, 10, 99), 10, 0);
    DSI_CHECK_NEAR(bs_percentile(v, 1, 50), 1, 0);
    DSI_CHECK_NEAR(bs_percentile(v, 0, 50), -1, 0);
    double w[100];
    for (int i = 0; i < 100; i++)
        w[i] = i + 1;
    DSI_CHECK_NEAR(bs_percentile(w, 100, 99), 99, 0); /* rank 99 exactly, no float slip */
    DSI_CHECK_NEAR(bs_percentile(w, 7, 90), 7, 0);    /* ceil(6.3) = 7 */
}

static void test_metrics_parse(void)
{
    const char *text = "# HELP dsinfer_queue_depth x\n# TYPE dsinfer_queue_depth gauge\n"
                       "dsinfer_queue_depth 3\n"
                       "dsinfer_running_sequences 7\n"
                       "dsinfer_cluster_nodes{state=\"joined\"} 4\n"
                       "dsinfer_cluster_nodes{state=\"ready\"} 3\n"
                       "dsinfer_cluster_nodes{state=\"dead\"} 1\n"
                       "dsinfer_cluster_replans 2\n"
                       "dsinfer_cluster_replans_total 99\n"
                       "dsinfer_expert_load_imbalance 1.25\n";
    bs_sample_t s;
    DSI_CHECK_INT_EQ(bs_metrics_parse(text, &s), 7);
    DSI_CHECK_NEAR(s.queue_depth, 3, 0);
    DSI_CHECK_NEAR(s.running, 7, 0);
    DSI_CHECK_NEAR(s.nodes_joined, 4, 0);
    DSI_CHECK_NEAR(s.nodes_ready, 3, 0);
    DSI_CHECK_NEAR(s.nodes_dead, 1, 0);
    DSI_CHECK_NEAR(s.replans, 2, 0);
    DSI_CHECK_NEAR(s.imbalance, 1.25, 0);
    DSI_CHECK_NEAR(s.live_switches, -1, 0); /* not exported: -1 */
    DSI_CHECK_INT_EQ(bs_metrics_parse("vllm:num_requests_running 4\n", &s), 0);
}

/* --shared-prefix: every prompt starts with the same words, then its own. */
static void test_shared_prefix(void)
{
    bs_plan_t plan = {.seed = 3, .prompt_len = {5, 9}, .output_len = {4, 4}, .shared_prefix = 40};
    bs_plan_t plain = plan;
    plain.shared_prefix = 0;
    char *first = NULL;
    for (int i = 0; i < 50; i++) {
        bs_req_t a, b;
        DSI_CHECK_INT_EQ(bs_plan_request(&plan, i, &a), 0);
        DSI_CHECK_INT_EQ(bs_plan_request(&plain, i, &b), 0);
        DSI_CHECK_INT_EQ(a.prompt_words, b.prompt_words + 40);
        size_t la = strlen(a.prompt), lb = strlen(b.prompt);
        /* the prefix, a space, then the request's own prompt */
        DSI_CHECK(la > lb && strcmp(a.prompt + la - lb, b.prompt) == 0 &&
                  a.prompt[la - lb - 1] == ' ');
        int words = 1;
        for (const char *p = a.prompt; *p; p++)
            words += *p == ' ';
        DSI_CHECK_INT_EQ(words, a.prompt_words);
        if (first == NULL)
            first = strndup(a.prompt, la - lb);
        else
            DSI_CHECK(strncmp(first, a.prompt, la - lb) == 0 && strlen(first) == la - lb);
        free(a.prompt);
        free(b.prompt);
    }
    free(first);
}

int main(void)
{
    test_shared_prefix();
    test_rng();
    test_arrivals();
    test_lengths();
    test_dataset();
    test_slo_and_percentiles();
    test_metrics_parse();
    return dsi_test_finish();
}
