/*
 * bench_serve_json.c - the files `dsinfer bench serve` writes for programs: --json (the run's
 * summary per level, the server's view, the events and every request's record) and --timeline
 * (per-bucket throughput and latency, /metrics samples, events). docs/API.md documents both;
 * keys are only ever added, so older readers keep working.
 */
#include "bench_serve.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 9 significant digits: nanoseconds for a second; bs_round9 rounds the samples the same way. */
#define JSON_PRECISION JSON_REAL_PRECISION(9)

static json_t *num_or_null(double v)
{
    return v >= 0 && isfinite(v) ? json_real(v) : json_null();
}

static json_t *pct_json(const bs_pct_t *p, int with_mean)
{
    json_t *o = json_object();
    json_object_set_new(o, "p50", num_or_null(p->p50));
    json_object_set_new(o, "p90", num_or_null(p->p90));
    json_object_set_new(o, "p99", num_or_null(p->p99));
    if (with_mean)
        json_object_set_new(o, "mean", num_or_null(p->mean));
    return o;
}

static const char *mode_name(bs_mode_t m)
{
    return m == BS_MODE_RATE ? "rate" : m == BS_MODE_RAMP ? "ramp" : "concurrency";
}

static json_t *level_json(const bs_level_t *l)
{
    json_t *o = json_object(), *errors = json_object();
    const bs_level_spec_t *s = &l->spec;
    char name[64];
    bs_level_name(s, name, sizeof(name));
    json_object_set_new(o, "name", json_string(name));
    json_object_set_new(o, "mode", json_string(mode_name(s->mode)));
    json_object_set_new(o, "concurrency",
                        s->mode == BS_MODE_RAMP ? json_null() : json_integer(s->concurrency));
    if (s->mode == BS_MODE_RATE) {
        json_object_set_new(o, "request_rate", json_real(s->rate));
        json_object_set_new(o, "burstiness", json_real(s->burstiness));
    }
    if (s->mode == BS_MODE_RAMP)
        json_object_set_new(o, "ramp",
                            json_pack("{s:i, s:i, s:f}", "from", s->ramp_from, "to", s->ramp_to,
                                      "duration_s", s->ramp_s));
    json_object_set_new(o, "requests", json_integer(l->requests));
    json_object_set_new(o, "ok", json_integer(l->ok));
    for (int e = 0; e < l->n_errors; e++)
        json_object_set_new(errors, l->errors[e].what, json_integer(l->errors[e].count));
    json_object_set_new(o, "errors", errors);
    json_object_set_new(o, "failed", json_integer(l->requests - l->ok));
    json_object_set_new(o, "start_s", json_real(l->start));
    json_object_set_new(o, "duration_s", json_real(l->duration_s));
    json_object_set_new(o, "requests_per_s", json_real(l->req_per_s));
    json_object_set_new(o, "output_tokens", json_integer(l->tokens));
    json_object_set_new(o, "output_tokens_per_s", json_real(l->tok_per_s));
    json_object_set_new(o, "prompt_tokens", json_integer(l->prompt_tokens));
    json_object_set_new(o, "slo_met", json_integer(l->slo_met));
    json_object_set_new(o, "goodput_per_s", json_real(l->goodput));
    json_object_set_new(o, "ttft_s", pct_json(&l->ttft, 1));
    json_object_set_new(o, "tpot_s", pct_json(&l->tpot, 1));
    json_object_set_new(o, "itl_s", pct_json(&l->itl, 1));
    json_object_set_new(o, "e2el_s", pct_json(&l->e2el, 1));
    json_object_set_new(o, "latency_s", pct_json(&l->e2el, 0)); /* the name of version 1 */
    return o;
}

static json_t *record_json(const bs_result_t *r)
{
    json_t *o = json_object(), *itl = json_array();
    char what[16];
    json_object_set_new(o, "level", json_integer(r->level));
    json_object_set_new(o, "start_s", json_real(r->start));
    json_object_set_new(o, "status", json_integer(r->status));
    if (bs_result_ok(r)) {
        json_object_set_new(o, "error", json_null());
    } else {
        bs_error_kind(r, what);
        json_object_set_new(o, "error", json_string(what));
    }
    json_object_set_new(o, "prompt_words", json_integer(r->prompt_words));
    json_object_set_new(o, "prompt_tokens",
                        r->prompt_tokens >= 0 ? json_integer(r->prompt_tokens) : json_null());
    json_object_set_new(o, "max_tokens", json_integer(r->max_tokens));
    json_object_set_new(o, "output_tokens", json_integer(r->tokens));
    json_object_set_new(o, "ttft_s", num_or_null(r->ttft));
    json_object_set_new(o, "tpot_s", num_or_null(r->tpot));
    json_object_set_new(o, "e2el_s", json_real(r->latency));
    for (int j = 1; bs_result_ok(r) && j < r->n_events; j++)
        json_array_append_new(
            itl, json_real(bs_round9((double)r->events[j] - (double)r->events[j - 1])));
    json_object_set_new(o, "itl_s", itl);
    return o;
}

static int cmp_event(const void *a, const void *b)
{
    double x = ((const bs_event_t *)a)->t, y = ((const bs_event_t *)b)->t;
    return (x > y) - (x < y);
}

static json_t *events_json(const bs_monitor_t *m)
{
    int n;
    const bs_event_t *ev = bs_monitor_events(m, &n);
    bs_event_t *sorted = malloc(sizeof(*sorted) * (size_t)(n > 0 ? n : 1));
    json_t *arr = json_array();
    if (sorted == NULL)
        return arr;
    memcpy(sorted, ev, sizeof(*sorted) * (size_t)n);
    qsort(sorted, (size_t)n, sizeof(*sorted), cmp_event); /* stable enough: distinct times */
    for (int i = 0; i < n; i++)
        json_array_append_new(arr, json_pack("{s:f, s:s, s:s, s:s}", "t_s", sorted[i].t, "kind",
                                             sorted[i].kind, "source", sorted[i].source, "detail",
                                             sorted[i].detail));
    free(sorted);
    return arr;
}

/* mean and max of one sample field over the samples that have it; NULL when none does */
static json_t *field_stats(const bs_sample_t *s, int n, size_t off)
{
    double sum = 0, max = -1, last = -1;
    int k = 0;
    for (int i = 0; i < n; i++) {
        double v = *(const double *)((const char *)&s[i] + off);
        if (v < 0)
            continue;
        sum += v;
        max = fmax(max, v);
        last = v;
        k++;
    }
    if (k == 0)
        return json_null();
    return json_pack("{s:f, s:f, s:f}", "mean", sum / k, "max", max, "last", last);
}

static json_t *counter_delta(const bs_sample_t *s, int n, size_t off)
{
    double first = -1, last = -1;
    for (int i = 0; i < n; i++) {
        double v = *(const double *)((const char *)&s[i] + off);
        if (v >= 0 && first < 0)
            first = v;
        if (v >= 0)
            last = v;
    }
    return first >= 0 ? json_integer((json_int_t)(last - first)) : json_null();
}

/* The server's view: null when /metrics gave nothing dsinfer exports. */
static json_t *server_json(const bs_monitor_t *m)
{
    int n;
    const bs_sample_t *s = bs_monitor_samples(m, &n);
    if (!bs_monitor_has_metrics(m) || n == 0)
        return json_null();
    json_t *o = json_object();
    json_object_set_new(o, "samples", json_integer(n));
    json_object_set_new(o, "queue_depth", field_stats(s, n, offsetof(bs_sample_t, queue_depth)));
    json_object_set_new(o, "running_sequences", field_stats(s, n, offsetof(bs_sample_t, running)));
    json_object_set_new(o, "active_generations",
                        field_stats(s, n, offsetof(bs_sample_t, active_generations)));
    json_object_set_new(o, "nodes_ready", field_stats(s, n, offsetof(bs_sample_t, nodes_ready)));
    json_object_set_new(o, "nodes_dead", field_stats(s, n, offsetof(bs_sample_t, nodes_dead)));
    json_object_set_new(o, "expert_load_imbalance",
                        field_stats(s, n, offsetof(bs_sample_t, imbalance)));
    json_object_set_new(o, "replans", counter_delta(s, n, offsetof(bs_sample_t, replans)));
    json_object_set_new(o, "rebalances", counter_delta(s, n, offsetof(bs_sample_t, rebalances)));
    json_object_set_new(o, "live_switches",
                        counter_delta(s, n, offsetof(bs_sample_t, live_switches)));
    json_object_set_new(o, "spec_steps", counter_delta(s, n, offsetof(bs_sample_t, spec_steps)));
    json_object_set_new(o, "spec_tokens",
                        counter_delta(s, n, offsetof(bs_sample_t, spec_tokens)));
    json_object_set_new(o, "cluster_status", json_boolean(bs_monitor_has_cluster(m)));
    return o;
}

static json_t *len_json(bs_len_t l)
{
    return json_pack("{s:i, s:i}", "min", l.min, "max", l.max);
}

/* The results file is compact (its records hold every inter-token gap); the timeline indented. */
static int dump(json_t *root, const char *path, const char *opt, size_t flags)
{
    int rc = json_dump_file(root, path, flags | JSON_PRECISION);
    json_decref(root);
    if (rc != 0)
        fprintf(stderr, "dsinfer bench serve: %s: cannot write %s\n", opt, path);
    return rc == 0 ? 0 : -1;
}

int bs_write_json(const char *path, const bs_report_t *r)
{
    const bs_target_t *t = r->target;
    json_t *root = json_object();
    json_object_set_new(root, "schema", json_string("dsinfer-bench-serve/2"));
    json_object_set_new(root, "url", json_string(t->url));
    json_object_set_new(root, "endpoint", json_string(t->path));
    json_object_set_new(root, "model", json_string(t->model));
    json_object_set_new(root, "api", json_string(t->chat ? "chat" : "completions"));
    json_object_set_new(root, "seed", json_integer((json_int_t)r->plan->seed));
    json_object_set_new(root, "dataset",
                        r->dataset_path ? json_string(r->dataset_path) : json_null());
    json_object_set_new(root, "prompt_len", len_json(r->plan->prompt_len));
    json_object_set_new(root, "shared_prefix", json_integer(r->plan->shared_prefix));
    json_object_set_new(root, "output_len", len_json(r->plan->output_len));
    json_object_set_new(root, "slo",
                        json_pack("{s:o, s:o, s:o}", "ttft_s",
                                  num_or_null(r->slo->ttft ? r->slo->ttft : -1), "tpot_s",
                                  num_or_null(r->slo->tpot ? r->slo->tpot : -1), "e2el_s",
                                  num_or_null(r->slo->e2el ? r->slo->e2el : -1)));
    json_object_set_new(root, "duration_s", json_real(r->duration_s));
    json_t *levels = json_array();
    for (int i = 0; i < r->n_levels; i++)
        json_array_append_new(levels, level_json(&r->levels[i]));
    json_object_set_new(root, "levels", levels);
    json_object_set_new(root, "server", server_json(r->monitor));
    json_object_set_new(root, "events", events_json(r->monitor));
    json_t *records = json_array();
    for (int i = 0; i < r->n_results; i++)
        json_array_append_new(records, record_json(&r->results[i]));
    json_object_set_new(root, "records", records);
    return dump(root, path, "--json", JSON_COMPACT);
}

int bs_write_timeline(const char *path, const bs_report_t *r)
{
    json_t *root = json_object(), *buckets = json_array(), *samples = json_array();
    json_object_set_new(root, "schema", json_string("dsinfer-bench-serve-timeline/1"));
    json_object_set_new(root, "bucket_s", json_real(r->bucket_s));
    json_object_set_new(root, "duration_s", json_real(r->duration_s));
    for (int i = 0; i < r->n_buckets; i++) {
        const bs_bucket_t *b = &r->buckets[i];
        json_t *o = json_object();
        json_object_set_new(o, "t_s", json_real(b->t));
        json_object_set_new(o, "started", json_integer(b->started));
        json_object_set_new(o, "completed", json_integer(b->completed));
        json_object_set_new(o, "ok", json_integer(b->ok));
        json_object_set_new(o, "errors", json_integer(b->errors));
        json_object_set_new(o, "requests_per_s", json_real(b->ok / r->bucket_s));
        json_object_set_new(o, "output_tokens_per_s", json_real(b->output_tokens / r->bucket_s));
        json_object_set_new(o, "in_flight", json_real(b->in_flight));
        json_object_set_new(o, "ttft_s", pct_json(&b->ttft, 0));
        json_object_set_new(o, "tpot_s", pct_json(&b->tpot, 0));
        json_object_set_new(o, "e2el_s", pct_json(&b->e2el, 0));
        json_array_append_new(buckets, o);
    }
    json_object_set_new(root, "buckets", buckets);
    int n;
    const bs_sample_t *s = bs_monitor_samples(r->monitor, &n);
    for (int i = 0; i < n; i++)
        json_array_append_new(
            samples,
            json_pack("{s:f, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "t_s", s[i].t,
                      "queue_depth", num_or_null(s[i].queue_depth), "running_sequences",
                      num_or_null(s[i].running), "nodes_joined", num_or_null(s[i].nodes_joined),
                      "nodes_ready", num_or_null(s[i].nodes_ready), "nodes_dead",
                      num_or_null(s[i].nodes_dead), "cluster_ready",
                      num_or_null(s[i].cluster_ready), "replans", num_or_null(s[i].replans),
                      "live_switches", num_or_null(s[i].live_switches), "expert_load_imbalance",
                      num_or_null(s[i].imbalance)));
    json_object_set_new(root, "samples", samples);
    json_t *cluster = json_array();
    const bs_cluster_snap_t *snaps = bs_monitor_cluster(r->monitor, &n);
    for (int i = 0; i < n; i++) {
        json_t *nodes = json_array();
        for (int k = 0; k < snaps[i].n_nodes; k++)
            json_array_append_new(nodes, json_pack("{s:i, s:s, s:s}", "id", snaps[i].nodes[k].id,
                                                   "name", snaps[i].nodes[k].name, "state",
                                                   snaps[i].nodes[k].state));
        json_array_append_new(cluster, json_pack("{s:f, s:o}", "t_s", snaps[i].t, "nodes", nodes));
    }
    json_object_set_new(root, "cluster", cluster);
    json_object_set_new(root, "events", events_json(r->monitor));
    return dump(root, path, "--timeline", JSON_INDENT(1));
}
