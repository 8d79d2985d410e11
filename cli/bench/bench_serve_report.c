/*
 * bench_serve_report.c - what `dsinfer bench serve` makes of its samples: per-level aggregates
 * and percentiles, the JSON file, and a hand-written SVG chart (throughput and p50 latencies
 * against concurrency).
 */
#include "bench_serve.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bs_percentile(const double *sorted, int n, double p)
{
    if (n <= 0)
        return -1;
    int rank = (int)ceil(p / 100.0 * n); /* nearest rank: a value that was measured */
    if (rank < 1)
        rank = 1;
    return sorted[rank > n ? n - 1 : rank - 1];
}

/* p50/p90/p99 of the values >= 0 among `field` of the results. */
static void percentiles(const bs_result_t *res, int n, size_t field, double out[3])
{
    double *v = malloc(sizeof(double) * (size_t)(n > 0 ? n : 1));
    int k = 0;
    for (int i = 0; v != NULL && i < n; i++) {
        double x = *(const double *)((const char *)&res[i] + field);
        if (res[i].status == 200 && !res[i].stream_error && x >= 0)
            v[k++] = x;
    }
    if (v != NULL)
        qsort(v, (size_t)k, sizeof(double), cmp_double);
    out[0] = v ? bs_percentile(v, k, 50) : -1;
    out[1] = v ? bs_percentile(v, k, 90) : -1;
    out[2] = v ? bs_percentile(v, k, 99) : -1;
    free(v);
}

static void count_error(bs_level_t *l, const char *what)
{
    for (int i = 0; i < l->n_errors; i++) {
        if (strcmp(l->errors[i].what, what) == 0) {
            l->errors[i].count++;
            return;
        }
    }
    int i = l->n_errors < 16 ? l->n_errors++ : 15; /* more kinds than slots: lump the rest */
    snprintf(l->errors[i].what, sizeof(l->errors[i].what), "%s", i == 15 ? "other" : what);
    l->errors[i].count++;
}

void bs_level_summarise(bs_level_t *l, const bs_result_t *res, int n, double duration_s)
{
    l->requests = n;
    l->duration_s = duration_s;
    for (int i = 0; i < n; i++) {
        char what[16];
        if (res[i].status == 200 && !res[i].stream_error) {
            l->ok++;
            l->tokens += res[i].tokens;
            continue;
        }
        if (res[i].status == 200)
            snprintf(what, sizeof(what), "stream");
        else if (res[i].timed_out)
            snprintf(what, sizeof(what), "timeout");
        else if (res[i].status == 0)
            snprintf(what, sizeof(what), "conn");
        else
            snprintf(what, sizeof(what), "%d", res[i].status);
        count_error(l, what);
    }
    l->req_per_s = duration_s > 0 ? l->ok / duration_s : 0;
    l->tok_per_s = duration_s > 0 ? (double)l->tokens / duration_s : 0;
    percentiles(res, n, offsetof(bs_result_t, ttft), l->ttft);
    percentiles(res, n, offsetof(bs_result_t, tpot), l->tpot);
    percentiles(res, n, offsetof(bs_result_t, latency), l->latency);
}

static json_t *pct_json(const double p[3])
{
    json_t *o = json_object();
    const char *names[3] = {"p50", "p90", "p99"};
    for (int i = 0; i < 3; i++)
        json_object_set_new(o, names[i], p[i] >= 0 ? json_real(p[i]) : json_null());
    return o;
}

int bs_write_json(const char *path, const bs_target_t *t, const bs_level_t *levels, int n)
{
    json_t *root = json_object();
    json_object_set_new(root, "url", json_string(t->url));
    json_object_set_new(root, "endpoint", json_string(t->path));
    json_object_set_new(root, "model", json_string(t->model));
    json_object_set_new(root, "prompt_len", json_integer(t->prompt_len));
    json_object_set_new(root, "max_tokens", json_integer(t->max_tokens));
    json_t *arr = json_array();
    for (int i = 0; i < n; i++) {
        const bs_level_t *l = &levels[i];
        json_t *o = json_object(), *errors = json_object();
        json_object_set_new(o, "concurrency", json_integer(l->concurrency));
        json_object_set_new(o, "requests", json_integer(l->requests));
        json_object_set_new(o, "ok", json_integer(l->ok));
        for (int e = 0; e < l->n_errors; e++)
            json_object_set_new(errors, l->errors[e].what, json_integer(l->errors[e].count));
        json_object_set_new(o, "errors", errors);
        json_object_set_new(o, "duration_s", json_real(l->duration_s));
        json_object_set_new(o, "requests_per_s", json_real(l->req_per_s));
        json_object_set_new(o, "output_tokens", json_integer(l->tokens));
        json_object_set_new(o, "output_tokens_per_s", json_real(l->tok_per_s));
        json_object_set_new(o, "ttft_s", pct_json(l->ttft));
        json_object_set_new(o, "tpot_s", pct_json(l->tpot));
        json_object_set_new(o, "latency_s", pct_json(l->latency));
        json_array_append_new(arr, o);
    }
    json_object_set_new(root, "levels", arr);
    int rc = json_dump_file(root, path, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
    json_decref(root);
    if (rc != 0)
        fprintf(stderr, "dsinfer bench serve: --json: cannot write %s\n", path);
    return rc == 0 ? 0 : -1;
}

/* ---- SVG ---------------------------------------------------------------------------------- */

/* XML text with &, <, >, " escaped. */
static void xml_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&':
            fputs("&amp;", f);
            break;
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        case '"':
            fputs("&quot;", f);
            break;
        default:
            fputc(*s, f);
        }
    }
}

/* A "nice" axis maximum: 1, 2 or 5 x 10^k at or above v. */
static double nice_max(double v)
{
    if (!(v > 0))
        return 1;
    double p = pow(10, floor(log10(v)));
    for (int i = 0; i < 3; i++) {
        double m = (double[]){1, 2, 5}[i] * p;
        if (m >= v)
            return m;
    }
    return 10 * p;
}

typedef struct {
    double x, y, w, h; /* plot area in SVG units */
    double ymax;
    int n; /* points, evenly spaced along x */
} panel_t;

static double px(const panel_t *p, int i)
{
    return p->n == 1 ? p->x + p->w / 2 : p->x + p->w * i / (p->n - 1);
}

static double py(const panel_t *p, double v)
{
    return p->y + p->h - p->h * (v < 0 ? 0 : v) / p->ymax;
}

static void panel_axes(FILE *f, const panel_t *p, const bs_level_t *levels, const char *title,
                       const char *ylabel)
{
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"15\">",
            p->x + p->w / 2, p->y - 14);
    xml_text(f, title);
    fprintf(f, "</text>\n");
    fprintf(f,
            "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333\"/>\n"
            "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333\"/>\n",
            p->x, p->y + p->h, p->x + p->w, p->y + p->h, p->x, p->y, p->x, p->y + p->h);
    for (int t = 0; t <= 4; t++) { /* y ticks and grid */
        double v = p->ymax * t / 4, y = py(p, v);
        fprintf(f,
                "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n"
                "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" font-size=\"11\">%g</text>\n",
                p->x, y, p->x + p->w, y, p->x - 6, y + 4, v);
    }
    for (int i = 0; i < p->n; i++) /* x ticks: the concurrency levels */
        fprintf(f,
                "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"11\">%d</text>\n",
                px(p, i), p->y + p->h + 16, levels[i].concurrency);
    fprintf(f,
            "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"12\">concurrency "
            "(parallel requests)</text>\n",
            p->x + p->w / 2, p->y + p->h + 36);
    fprintf(f,
            "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"12\" "
            "transform=\"rotate(-90 %.1f %.1f)\">",
            p->x - 52, p->y + p->h / 2, p->x - 52, p->y + p->h / 2);
    xml_text(f, ylabel);
    fprintf(f, "</text>\n");
}

/* One series as a polyline with dots, and its legend entry at row `row`. */
static void panel_series(FILE *f, const panel_t *p, const double *v, const char *color,
                         const char *name, int row)
{
    fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", color);
    for (int i = 0; i < p->n; i++)
        if (v[i] >= 0)
            fprintf(f, "%.1f,%.1f ", px(p, i), py(p, v[i]));
    fprintf(f, "\"/>\n");
    for (int i = 0; i < p->n; i++)
        if (v[i] >= 0)
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", px(p, i),
                    py(p, v[i]), color);
    double lx = p->x + 10, ly = p->y + 12 + 16 * row;
    fprintf(f,
            "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
            "stroke-width=\"2\"/>\n<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\">",
            lx, ly, lx + 18, ly, color, lx + 24, ly + 4);
    xml_text(f, name);
    fprintf(f, "</text>\n");
}

int bs_write_svg(const char *path, const bs_target_t *t, const bs_level_t *levels, int n)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "dsinfer bench serve: --svg: cannot write %s\n", path);
        return -1;
    }
    double tok[64], req[64], ttft[64], tpot[64], ymax_t = 0, ymax_l = 0;
    n = n > 64 ? 64 : n;
    for (int i = 0; i < n; i++) {
        tok[i] = levels[i].tok_per_s;
        req[i] = levels[i].req_per_s;
        ttft[i] = levels[i].ttft[0] >= 0 ? levels[i].ttft[0] * 1e3 : -1;
        tpot[i] = levels[i].tpot[0] >= 0 ? levels[i].tpot[0] * 1e3 : -1;
        ymax_t = fmax(ymax_t, fmax(tok[i], req[i]));
        ymax_l = fmax(ymax_l, fmax(ttft[i], tpot[i]));
    }
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"960\" height=\"420\" "
               "viewBox=\"0 0 960 420\" font-family=\"sans-serif\">\n"
               "<rect width=\"960\" height=\"420\" fill=\"white\"/>\n");
    fprintf(f, "<text x=\"480\" y=\"24\" text-anchor=\"middle\" font-size=\"16\">dsinfer bench "
               "serve: ");
    char what[768];
    snprintf(what, sizeof(what), "%s %s, prompt %d words, max_tokens %d", t->url,
             t->model ? t->model : "", t->prompt_len, t->max_tokens);
    xml_text(f, what);
    fprintf(f, "</text>\n");
    panel_t left = {.x = 90, .y = 70, .w = 340, .h = 270, .ymax = nice_max(ymax_t), .n = n};
    panel_t right = {.x = 580, .y = 70, .w = 340, .h = 270, .ymax = nice_max(ymax_l), .n = n};
    panel_axes(f, &left, levels, "Throughput", "per second");
    panel_series(f, &left, tok, "#1f77b4", "output tokens/s", 0);
    panel_series(f, &left, req, "#ff7f0e", "requests/s", 1);
    panel_axes(f, &right, levels, "Latency (p50)", "milliseconds");
    panel_series(f, &right, ttft, "#2ca02c", "time to first token", 0);
    panel_series(f, &right, tpot, "#d62728", "time per output token", 1);
    fprintf(f, "</svg>\n");
    int rc = ferror(f) ? -1 : 0;
    if (fclose(f) != 0 || rc != 0) {
        fprintf(stderr, "dsinfer bench serve: --svg: error writing %s\n", path);
        return -1;
    }
    return 0;
}
