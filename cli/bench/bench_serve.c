/*
 * bench_serve.c - `dsinfer bench serve`: load an OpenAI-compatible server with streamed requests
 * under an arrival process (fixed concurrency levels, a request rate, or a ramp), with prompt and
 * output lengths from a distribution or a dataset of chats, and report throughput, goodput under
 * SLOs, latency percentiles, errors and (from a dsinfer server) the cluster's view and events;
 * as a table, JSON, a timeline, an SVG chart and an HTML report. The options are in
 * bench_serve_opts.c.
 */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "bench_serve.h"
#include "dsi_clock.h"

#define CMD "bench serve"

#define DATASET_MAX_OUTPUT 4096 /* a dataset's answer lengths are capped at this */

volatile sig_atomic_t bs_interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    bs_interrupted = 1;
    signal(SIGINT, SIG_DFL); /* a second ^C ends the program */
}

static void ms3(char *out, size_t cap, const bs_pct_t *p)
{
    if (p->n == 0) {
        snprintf(out, cap, "-");
        return;
    }
    snprintf(out, cap, "%.1f/%.1f/%.1f", p->p50 * 1e3, p->p90 * 1e3, p->p99 * 1e3);
}

static void print_table(const bs_level_t *levels, int n, const bs_slo_t *slo)
{
    int with_slo = slo->ttft > 0 || slo->tpot > 0 || slo->e2el > 0;
    printf("%-12s %8s %6s %9s %11s%s  %-20s %-20s %-20s %-20s %s\n", "level", "requests", "ok",
           "req/s", "out tok/s", with_slo ? "   goodput" : "", "TTFT p50/90/99 ms",
           "TPOT p50/90/99 ms", "ITL p50/90/99 ms", "E2EL p50/90/99 ms", "errors");
    for (int i = 0; i < n; i++) {
        const bs_level_t *l = &levels[i];
        char name[64], ttft[64], tpot[64], itl[64], e2el[64], errors[256] = "-", good[32] = "";
        bs_level_name(&l->spec, name, sizeof(name));
        ms3(ttft, sizeof(ttft), &l->ttft);
        ms3(tpot, sizeof(tpot), &l->tpot);
        ms3(itl, sizeof(itl), &l->itl);
        ms3(e2el, sizeof(e2el), &l->e2el);
        size_t off = 0;
        for (int e = 0; e < l->n_errors && off < sizeof(errors); e++)
            off += (size_t)snprintf(errors + off, sizeof(errors) - off, "%s%s:%d", e ? " " : "",
                                    l->errors[e].what, l->errors[e].count);
        if (with_slo)
            snprintf(good, sizeof(good), " %9.2f", l->goodput);
        printf("%-12s %8d %6d %9.2f %11.1f%s  %-20s %-20s %-20s %-20s %s\n", name, l->requests,
               l->ok, l->req_per_s, l->tok_per_s, good, ttft, tpot, itl, e2el, errors);
    }
}

static void print_server(const bs_monitor_t *m)
{
    int n_s, n_e;
    const bs_sample_t *s = bs_monitor_samples(m, &n_s);
    const bs_event_t *e = bs_monitor_events(m, &n_e);
    if (n_s > 0) {
        double q = 0, run = 0;
        for (int i = 0; i < n_s; i++) {
            q = fmax(q, s[i].queue_depth);
            run = fmax(run, s[i].running);
        }
        printf("server (/metrics, %d samples): queue depth max %.0f, running sequences max %.0f",
               n_s, q, run);
        if (s[n_s - 1].nodes_ready >= 0)
            printf(", nodes ready %.0f -> %.0f", s[0].nodes_ready, s[n_s - 1].nodes_ready);
        if (s[n_s - 1].imbalance > 0)
            printf(", expert-load imbalance %.3f", s[n_s - 1].imbalance);
        double steps = s[n_s - 1].spec_steps - s[0].spec_steps;
        if (s[0].spec_steps >= 0 && steps > 0)
            printf(", speculative decoding %.2f tokens per step",
                   (s[n_s - 1].spec_tokens - s[0].spec_tokens) / steps);
        printf("\n");
    }
    for (int i = 0; i < n_e; i++)
        if (strcmp(e[i].source, "bench") != 0)
            printf("event %8.1f s  %-11s %s\n", e[i].t, e[i].kind, e[i].detail);
}

/* Runs every level; results[] collects every request's record in order. */
static int run_levels(const bs_target_t *t, const bs_plan_t *plan, const bs_level_spec_t *specs,
                      int n_levels, const bs_slo_t *slo, double t0, bs_monitor_t *mon,
                      bs_level_t *levels, bs_result_t **results, int *n_results)
{
    int show = isatty(2), first_index = 0, total = 0, rc = 0;
    for (int i = 0; i < n_levels && !bs_interrupted; i++) {
        const bs_level_spec_t *s = &specs[i];
        bs_run_t run = {
            .target = t, .plan = plan, .spec = s, .level = i, .first_index = first_index, .t0 = t0};
        double *arrivals = NULL;
        run.results = calloc((size_t)s->n_requests, sizeof(*run.results));
        if (s->mode == BS_MODE_RATE && (arrivals = malloc(sizeof(double) * s->n_requests)))
            bs_arrivals(plan->seed + (uint64_t)i, s->rate, s->burstiness, s->n_requests, arrivals);
        run.arrivals = arrivals;
        bs_result_t *grown = realloc(*results, sizeof(**results) * (size_t)(total + s->n_requests));
        if (run.results == NULL || grown == NULL || (s->mode == BS_MODE_RATE && !arrivals)) {
            fprintf(stderr, "dsinfer " CMD ": out of memory\n");
            if (grown != NULL)
                *results = grown;
            free(run.results);
            free(arrivals);
            rc = -1;
            break;
        }
        *results = grown;
        char name[64];
        bs_level_name(s, name, sizeof(name));
        bs_monitor_note(mon, dsi_now_s() - t0, "level", name);
        int sent = 0;
        if (bs_level_run(&run, show, &sent) != 0)
            rc = -1;
        double end = dsi_now_s();
        levels[i].spec = *s;
        bs_level_summarise(&levels[i], run.results, sent, slo, run.level_t0 - t0,
                           end - run.level_t0);
        memcpy(*results + total, run.results, sizeof(**results) * (size_t)sent);
        total += sent;
        first_index += s->n_requests;
        free(run.results);
        free(arrivals);
        if (rc != 0)
            break;
    }
    *n_results = total;
    return rc;
}

int dsinfer_bench_serve(int argc, char **argv)
{
    bs_opts_t o;
    int rc = bs_opts_parse(argc, argv, &o);
    if (rc != 0)
        return rc == 1 ? 0 : rc;
    bs_target_t t = {
        .api_key = o.key, .chat = strcmp(o.api, "chat") == 0, .timeout_s = (int)o.timeout};
    bs_plan_t plan = {.seed = (uint64_t)o.seed, .max_output = DATASET_MAX_OUTPUT};
    bs_slo_t slo = {0};
    bs_level_spec_t *specs = NULL;
    int n_levels = 0;
    if (bs_parse_len("--prompt-len", o.prompt_len, 1000000, &plan.prompt_len) != 0 ||
        bs_parse_len("--output-len", o.output_len, 1000000, &plan.output_len) != 0 ||
        (o.slo != NULL && bs_parse_slo(o.slo, &slo) != 0) ||
        bs_levels_make(&o, &specs, &n_levels) != 0 || bs_parse_url(o.url, t.chat, &t) != 0)
        return 2;
    plan.output_len_set = o.output_len_set; /* with a dataset, an explicit --output-len wins */
    plan.shared_prefix = (int)o.shared_prefix;
    bs_dataset_t dataset = {0};
    char *model = NULL, self[4096];
    bs_level_t *levels = calloc((size_t)n_levels, sizeof(*levels));
    bs_result_t *results = NULL;
    bs_bucket_t *buckets = NULL;
    bs_monitor_t *mon = NULL;
    int n_results = 0, n_buckets = 0;
    rc = 1;
    if (levels == NULL)
        goto out;
    if (o.dataset != NULL) {
        if (bs_dataset_load(o.dataset, &dataset) != 0)
            goto out;
        plan.dataset = &dataset;
    }
    t.model = o.model ? o.model : (model = bs_first_model(&t));
    if (t.model == NULL)
        goto out;
    ssize_t sl = readlink("/proc/self/exe", self, sizeof(self) - 1);
    self[sl > 0 ? sl : 0] = '\0';
    fprintf(stderr, "dsinfer bench serve: %s%s, model %s, seed %lld%s%s\n", o.url, t.path, t.model,
            o.seed, o.dataset ? ", chats from " : "", o.dataset ? o.dataset : "");
    double t0 = dsi_now_s();
    if (!o.no_metrics || o.coordinator != NULL)
        mon = bs_monitor_start(&t, o.coordinator, self, t0, fmin(o.bucket, 0.5));
    signal(SIGINT, on_sigint);
    if (run_levels(&t, &plan, specs, n_levels, &slo, t0, mon, levels, &results, &n_results) != 0)
        goto out;
    signal(SIGINT, SIG_DFL);
    double duration = dsi_now_s() - t0;
    bs_monitor_stop(mon);
    if (bs_interrupted)
        fprintf(stderr, "dsinfer bench serve: interrupted: reporting what was sent\n");
    int n_done = 0, any_ok = 0;
    while (n_done < n_levels && (levels[n_done].requests > 0 || !bs_interrupted))
        any_ok |= levels[n_done++].ok > 0;
    if (bs_timeline_build(results, n_results, o.bucket, duration, &buckets, &n_buckets) != 0) {
        fprintf(stderr, "dsinfer bench serve: out of memory\n");
        goto out;
    }
    print_table(levels, n_done, &slo);
    print_server(mon);
    bs_report_t report = {.target = &t,
                          .plan = &plan,
                          .dataset_path = o.dataset,
                          .slo = &slo,
                          .levels = levels,
                          .n_levels = n_done,
                          .results = results,
                          .n_results = n_results,
                          .buckets = buckets,
                          .n_buckets = n_buckets,
                          .bucket_s = o.bucket,
                          .duration_s = duration,
                          .monitor = o.no_metrics && !o.coordinator ? NULL : mon};
    rc = 0;
    if (o.json != NULL && bs_write_json(o.json, &report) != 0)
        rc = 1;
    if (o.timeline != NULL && bs_write_timeline(o.timeline, &report) != 0)
        rc = 1;
    if (o.html != NULL && bs_write_html(o.html, &report) != 0)
        rc = 1;
    if (o.svg != NULL && bs_write_svg(o.svg, &report) != 0)
        rc = 1;
    if (!any_ok) {
        fprintf(stderr, "dsinfer bench serve: no request succeeded\n");
        rc = 1;
    }
out:
    signal(SIGINT, SIG_DFL);
    bs_monitor_destroy(mon);
    for (int i = 0; i < n_results; i++)
        free(results[i].events);
    free(results);
    free(buckets);
    free(model);
    free(levels);
    free(specs);
    bs_dataset_free(&dataset);
    return rc;
}
