/*
 * bench_serve_stats.c - what `dsinfer bench serve` makes of its samples: nearest-rank
 * percentiles, the SLOs and goodput, per-level summaries and the per-second timeline.
 *
 * Every latency is rounded to the 9 significant digits the JSON keeps before it is counted, so a
 * percentile or a goodput recomputed from the JSON's per-request records is exactly the summary's.
 */
#include "bench_serve.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

double bs_round9(double x)
{
    char buf[32];
    snprintf(buf, sizeof(buf), "%.9g", x);
    return strtod(buf, NULL);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bs_percentile(const double *sorted, int n, int p)
{
    if (n <= 0)
        return -1;
    long long rank = ((long long)p * n + 99) / 100; /* ceil(p n / 100) without rounding error */
    if (rank < 1)
        rank = 1;
    return sorted[rank > n ? n - 1 : rank - 1];
}

void bs_pct_compute(double *v, int n, bs_pct_t *out)
{
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    double sum = 0;
    for (int i = 0; i < n; i++)
        sum += v[i];
    out->n = n;
    out->p50 = bs_percentile(v, n, 50);
    out->p90 = bs_percentile(v, n, 90);
    out->p99 = bs_percentile(v, n, 99);
    out->mean = n > 0 ? sum / n : -1;
}

/* ---- SLOs ----------------------------------------------------------------------------------- */

int bs_parse_slo(const char *text, bs_slo_t *out)
{
    bs_slo_t slo = {0};
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", text);
    char *save = NULL;
    for (char *item = strtok_r(buf, ",", &save); item != NULL; item = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(item, '='), *end;
        double v = eq ? strtod(eq + 1, &end) : -1, scale = 1e-3; /* bare numbers are ms */
        if (eq != NULL && strcmp(end, "s") == 0)
            scale = 1;
        else if (eq != NULL && strcmp(end, "us") == 0)
            scale = 1e-6;
        else if (eq != NULL && *end != '\0' && strcmp(end, "ms") != 0)
            v = -1;
        double *slot = NULL;
        if (eq != NULL) {
            *eq = '\0';
            slot = strcmp(item, "ttft") == 0                                   ? &slo.ttft
                   : strcmp(item, "tpot") == 0                                 ? &slo.tpot
                   : strcmp(item, "e2el") == 0 || strcmp(item, "latency") == 0 ? &slo.e2el
                                                                               : NULL;
        }
        if (slot == NULL || !(v > 0) || !isfinite(v)) {
            fprintf(stderr,
                    "dsinfer bench serve: --slo: '%s' is not a list of ttft|tpot|e2el=TIME "
                    "(TIME a positive number with s, ms or us; ms when bare)\n",
                    text);
            return -1;
        }
        *slot = v * scale;
    }
    *out = slo;
    return 0;
}

int bs_slo_met(const bs_slo_t *slo, const bs_result_t *r)
{
    if (!bs_result_ok(r))
        return 0;
    if (slo->ttft > 0 && !(r->ttft >= 0 && r->ttft <= slo->ttft))
        return 0;
    if (slo->tpot > 0 && r->tpot >= 0 && r->tpot > slo->tpot)
        return 0;
    if (slo->e2el > 0 && r->latency > slo->e2el)
        return 0;
    return 1;
}

/* ---- levels --------------------------------------------------------------------------------- */

void bs_error_kind(const bs_result_t *r, char what[16])
{
    if (r->status == 200)
        snprintf(what, 16, "stream");
    else if (r->timed_out)
        snprintf(what, 16, "timeout");
    else if (r->status == 0)
        snprintf(what, 16, "conn");
    else
        snprintf(what, 16, "%d", r->status);
}

static void count_error(bs_level_t *l, const char *what)
{
    for (int i = 0; i < l->n_errors; i++) {
        if (strcmp(l->errors[i].what, what) == 0) {
            l->errors[i].count++;
            return;
        }
    }
    /* More kinds than slots: the last one counts the rest. */
    int i = l->n_errors < BS_MAX_ERROR_KINDS ? l->n_errors++ : BS_MAX_ERROR_KINDS - 1;
    snprintf(l->errors[i].what, sizeof(l->errors[i].what), "%s",
             i == BS_MAX_ERROR_KINDS - 1 ? "other" : what);
    l->errors[i].count++;
}

void bs_level_summarise(bs_level_t *l, const bs_result_t *res, int n, const bs_slo_t *slo,
                        double start, double duration_s)
{
    l->requests = n;
    l->start = start;
    l->duration_s = duration_s;
    int64_t n_gaps = 0;
    for (int i = 0; i < n; i++)
        n_gaps += bs_result_ok(&res[i]) && res[i].n_events > 1 ? res[i].n_events - 1 : 0;
    size_t m = (size_t)(n > 0 ? n : 1);
    double *v = malloc(sizeof(double) * 3 * m); /* TTFT, TPOT and E2EL side by side */
    double *gaps = malloc(sizeof(double) * (size_t)(n_gaps > 0 ? n_gaps : 1));
    double *ttft = v, *tpot = v + m, *e2el = v + 2 * m;
    int k_ttft = 0, k_tpot = 0, k_e2el = 0;
    int64_t k_gap = 0;
    if (v == NULL || gaps == NULL) {
        fprintf(stderr, "dsinfer bench serve: out of memory summarising\n");
        free(v);
        free(gaps);
        return;
    }
    for (int i = 0; i < n; i++) {
        const bs_result_t *r = &res[i];
        if (!bs_result_ok(r)) {
            char what[16];
            bs_error_kind(r, what);
            count_error(l, what);
            continue;
        }
        l->ok++;
        l->tokens += r->tokens;
        l->prompt_tokens += r->prompt_tokens > 0 ? r->prompt_tokens : 0;
        l->slo_met += bs_slo_met(slo, r);
        if (r->ttft >= 0)
            ttft[k_ttft++] = r->ttft;
        if (r->tpot >= 0)
            tpot[k_tpot++] = r->tpot;
        e2el[k_e2el++] = r->latency;
        for (int j = 1; j < r->n_events; j++)
            gaps[k_gap++] = bs_round9((double)r->events[j] - (double)r->events[j - 1]);
    }
    bs_pct_compute(ttft, k_ttft, &l->ttft);
    bs_pct_compute(tpot, k_tpot, &l->tpot);
    bs_pct_compute(e2el, k_e2el, &l->e2el);
    bs_pct_compute(gaps, (int)k_gap, &l->itl);
    l->req_per_s = duration_s > 0 ? l->ok / duration_s : 0;
    l->tok_per_s = duration_s > 0 ? (double)l->tokens / duration_s : 0;
    l->goodput = duration_s > 0 ? l->slo_met / duration_s : 0;
    free(v);
    free(gaps);
}

void bs_level_name(const bs_level_spec_t *s, char *out, size_t cap)
{
    if (s->mode == BS_MODE_RATE)
        snprintf(out, cap, "rate=%g/s", s->rate);
    else if (s->mode == BS_MODE_RAMP)
        snprintf(out, cap, "ramp %d..%d", s->ramp_from, s->ramp_to);
    else
        snprintf(out, cap, "c=%d", s->concurrency);
}

double bs_level_load(const bs_level_t *l)
{
    return l->spec.mode == BS_MODE_RATE ? l->spec.rate : l->spec.concurrency;
}

/* ---- the timeline --------------------------------------------------------------------------- */

static int bucket_of(double t, double width, int n)
{
    int b = (int)floor(t / width);
    return b < 0 ? 0 : b >= n ? n - 1 : b;
}

int bs_timeline_build(const bs_result_t *res, int n, double width, double end, bs_bucket_t **out,
                      int *n_out)
{
    int nb = (int)ceil(end / width);
    if (nb < 1)
        nb = 1;
    bs_bucket_t *b = calloc((size_t)nb, sizeof(*b));
    double *scratch = malloc(sizeof(double) * (size_t)(n > 0 ? n : 1));
    if (b == NULL || scratch == NULL) {
        free(b);
        free(scratch);
        return -1;
    }
    for (int i = 0; i < nb; i++)
        b[i].t = i * width;
    for (int i = 0; i < n; i++) {
        const bs_result_t *r = &res[i];
        double t_end = r->start + r->latency;
        b[bucket_of(r->start, width, nb)].started++;
        bs_bucket_t *e = &b[bucket_of(t_end, width, nb)];
        e->completed++;
        if (bs_result_ok(r))
            e->ok++;
        else
            e->errors++;
        for (int k = bucket_of(r->start, width, nb); k <= bucket_of(t_end, width, nb); k++) {
            double lo = fmax(r->start, k * width), hi = fmin(t_end, (k + 1) * width);
            if (hi > lo)
                b[k].in_flight += (hi - lo) / width;
        }
        if (bs_result_ok(r) && r->n_events > 0) {
            double per_event = (double)r->tokens / r->n_events; /* a chunk may hold several */
            for (int j = 0; j < r->n_events; j++)
                b[bucket_of(r->start + r->events[j], width, nb)].output_tokens += per_event;
        }
    }
    for (int k = 0; k < nb; k++) {
        size_t offs[3] = {offsetof(bs_result_t, ttft), offsetof(bs_result_t, tpot),
                          offsetof(bs_result_t, latency)};
        bs_pct_t *dst[3] = {&b[k].ttft, &b[k].tpot, &b[k].e2el};
        for (int f = 0; f < 3; f++) {
            int m = 0;
            for (int i = 0; i < n; i++) {
                const bs_result_t *r = &res[i];
                double x = *(const double *)((const char *)r + offs[f]);
                if (bs_result_ok(r) && x >= 0 && bucket_of(r->start + r->latency, width, nb) == k)
                    scratch[m++] = x;
            }
            bs_pct_compute(scratch, m, dst[f]);
        }
    }
    free(scratch);
    *out = b;
    *n_out = nb;
    return 0;
}
