/*
 * bench_serve_html.c - the reports for people: --html writes one self-contained page (inline SVG
 * and CSS, no script, nothing fetched) with the timeline and its cluster events, latency
 * percentiles against load, and the summary, error, server and event tables; --svg writes the
 * per-level chart alone.
 *
 * Every number of the summary table carries data-key, the JSON path of the value it shows, so a
 * test can check the rendered page against the JSON.
 */
#include "bench_serve.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define WIDTH 1000

static const char *event_color(const char *kind)
{
    if (strcmp(kind, "join") == 0)
        return "#2ca02c";
    if (strcmp(kind, "drain") == 0 || strcmp(kind, "left") == 0)
        return "#ff7f0e";
    if (strcmp(kind, "failure") == 0 || strcmp(kind, "degraded") == 0)
        return "#d62728";
    if (strcmp(kind, "level") == 0)
        return "#999999";
    return "#9467bd"; /* replan, rebalance, live_switch, serving */
}

static const char *state_color(const char *state)
{
    if (strcmp(state, "ready") == 0)
        return "#98df8a";
    if (strcmp(state, "draining") == 0)
        return "#ffbb78";
    if (strcmp(state, "dead") == 0)
        return "#ff9896";
    return "#c7c7c7"; /* joined: loading its slice */
}

#define MAX_ROWS 32

/* The nodes cluster status showed, in order of first appearance (ids into rows). */
static int node_rows(const bs_cluster_snap_t *snaps, int n, int *ids, char names[][32])
{
    int rows = 0;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < snaps[i].n_nodes; k++) {
            int r = 0;
            while (r < rows && ids[r] != snaps[i].nodes[k].id)
                r++;
            if (r == rows && rows < MAX_ROWS) {
                ids[rows] = snaps[i].nodes[k].id;
                snprintf(names[rows++], 32, "%s", snaps[i].nodes[k].name);
            }
        }
    return rows;
}

/* One row per node, coloured by its state between two cluster status answers. */
static void nodes_strip(FILE *f, const bs_chart_t *c, const bs_cluster_snap_t *snaps, int n,
                        const int *ids, char names[][32], int rows, double end)
{
    double row_h = 18;
    fprintf(f,
            "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"14\">Nodes "
            "(cluster status): grey joined, green ready, orange draining, red lost</text>\n",
            c->x + c->w / 2, c->y - 10);
    for (int r = 0; r < rows; r++) {
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" font-size=\"11\">", c->x - 6,
                c->y + r * row_h + 13);
        bs_xml_text(f, names[r]);
        fprintf(f, "</text>\n");
    }
    for (int i = 0; i < n; i++) {
        double t1 = i + 1 < n ? snaps[i + 1].t : end;
        for (int k = 0; k < snaps[i].n_nodes; k++) {
            int r = 0;
            while (r < rows && ids[r] != snaps[i].nodes[k].id)
                r++;
            if (r == rows || strcmp(snaps[i].nodes[k].state, "left") == 0)
                continue; /* a drained node is simply gone */
            double x0 = bs_chart_px(c, snaps[i].t), x1 = bs_chart_px(c, t1);
            fprintf(f,
                    "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                    "fill=\"%s\"/>\n",
                    x0, c->y + r * row_h + 2, x1 - x0 + 0.3, row_h - 4,
                    state_color(snaps[i].nodes[k].state));
        }
    }
    fprintf(f,
            "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
            "stroke=\"#333\"/>\n",
            c->x, c->y, c->w, c->h);
}

/* ---- the timeline --------------------------------------------------------------------------- */

typedef struct {
    const char *title, *ylabel;
    int n_series;
    struct {
        const char *name, *color;
        int style;
        double *y;
    } s[4];
} panel_t;

static void timeline_svg(FILE *f, const bs_report_t *r)
{
    int nb = r->n_buckets, n_samples, n_events;
    const bs_sample_t *samples = bs_monitor_samples(r->monitor, &n_samples);
    const bs_event_t *ev = bs_monitor_events(r->monitor, &n_events);
    double *x = calloc((size_t)nb + 1, sizeof(double)),
           *buf = calloc((size_t)nb * 9 + 1, sizeof(double));
    double *sx = calloc((size_t)n_samples + 1, sizeof(double));
    double *sbuf = calloc((size_t)n_samples * 3 + 1, sizeof(double));
    if (x == NULL || buf == NULL || sx == NULL || sbuf == NULL)
        goto out;
    double *tok = buf, *req = buf + nb, *err = buf + 2 * nb, *ttft50 = buf + 3 * nb,
           *ttft99 = buf + 4 * nb, *tpot50 = buf + 5 * nb, *tpot99 = buf + 6 * nb,
           *inflight = buf + 7 * nb, *e2el50 = buf + 8 * nb;
    for (int i = 0; i < nb; i++) {
        const bs_bucket_t *b = &r->buckets[i];
        x[i] = b->t + r->bucket_s / 2;
        tok[i] = b->output_tokens / r->bucket_s;
        req[i] = b->ok / r->bucket_s;
        err[i] = b->errors / r->bucket_s;
        ttft50[i] = b->ttft.n ? b->ttft.p50 * 1e3 : -1;
        ttft99[i] = b->ttft.n ? b->ttft.p99 * 1e3 : -1;
        tpot50[i] = b->tpot.n ? b->tpot.p50 * 1e3 : -1;
        tpot99[i] = b->tpot.n ? b->tpot.p99 * 1e3 : -1;
        e2el50[i] = b->e2el.n ? b->e2el.p50 * 1e3 : -1;
        inflight[i] = b->in_flight;
    }
    double *queue = sbuf, *running = sbuf + n_samples, *ready = sbuf + 2 * n_samples;
    for (int i = 0; i < n_samples; i++) {
        sx[i] = samples[i].t;
        queue[i] = samples[i].queue_depth;
        running[i] = samples[i].running;
        ready[i] = samples[i].nodes_ready;
    }
    panel_t panels[] = {
        {"Output tokens per second", "tokens/s", 1, {{"output tokens/s", "#1f77b4", 0, tok}}},
        {"Requests completed per second",
         "requests/s",
         2,
         {{"ok", "#2ca02c", 0, req}, {"failed", "#d62728", 0, err}}},
        {"Time to first token (requests completed in each second)",
         "ms",
         3,
         {{"TTFT p50", "#ff7f0e", 0, ttft50},
          {"TTFT p99", "#ff7f0e", 1, ttft99},
          {"E2EL p50", "#8c564b", 0, e2el50}}},
        {"Time per output token",
         "ms",
         2,
         {{"TPOT p50", "#9467bd", 0, tpot50}, {"TPOT p99", "#9467bd", 1, tpot99}}},
        {"Load: requests in flight (client) and the server's view", "requests / nodes", 0, {{0}}},
    };
    int n_panels = sizeof(panels) / sizeof(panels[0]);
    double ph = 150, gap = 62, top = 40;
    int n_snaps, ids[MAX_ROWS];
    char names[MAX_ROWS][32];
    const bs_cluster_snap_t *snaps = bs_monitor_cluster(r->monitor, &n_snaps);
    int rows = node_rows(snaps, n_snaps, ids, names);
    double strip_h = rows > 0 ? rows * 18 + 40 : 0;
    double height = top + n_panels * (ph + gap) + strip_h + 10;
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%.0f\" "
            "viewBox=\"0 0 %d %.0f\" font-family=\"sans-serif\" id=\"timeline\">\n"
            "<rect width=\"%d\" height=\"%.0f\" fill=\"white\"/>\n",
            WIDTH, height, WIDTH, height, WIDTH, height);
    for (int p = 0; p < n_panels; p++) {
        bs_chart_t c = {.x = 90,
                        .y = top + p * (ph + gap),
                        .w = WIDTH - 120,
                        .h = ph,
                        .xmin = 0,
                        .xmax = fmax(r->duration_s, r->bucket_s)};
        double ymax = 0;
        for (int s = 0; s < panels[p].n_series; s++)
            for (int i = 0; i < nb; i++)
                ymax = fmax(ymax, panels[p].s[s].y[i]);
        if (p == n_panels - 1) {
            for (int i = 0; i < nb; i++)
                ymax = fmax(ymax, inflight[i]);
            for (int i = 0; i < n_samples; i++)
                ymax = fmax(ymax, fmax(queue[i], fmax(running[i], ready[i])));
        }
        c.ymax = bs_nice_max(ymax);
        bs_chart_axes(f, &c, panels[p].title, p == n_panels - 1 ? "seconds since the start" : NULL,
                      panels[p].ylabel);
        for (int i = 0; i < n_events; i++) /* events under the series */
            bs_chart_marker(f, &c, ev[i].t, event_color(ev[i].kind),
                            p == 0 && strcmp(ev[i].kind, "level") != 0 ? ev[i].kind : NULL, i % 3);
        for (int s = 0; s < panels[p].n_series; s++)
            bs_chart_line(f, &c, x, panels[p].s[s].y, nb, panels[p].s[s].color, panels[p].s[s].name,
                          s, panels[p].s[s].style);
        if (p == n_panels - 1) {
            bs_chart_line(f, &c, x, inflight, nb, "#1f77b4", "in flight (client)", 0, 0);
            if (n_samples > 0) {
                bs_chart_line(f, &c, sx, running, n_samples, "#2ca02c", "running (server)", 1, 0);
                bs_chart_line(f, &c, sx, queue, n_samples, "#ff7f0e", "queue depth (server)", 2, 0);
                bs_chart_line(f, &c, sx, ready, n_samples, "#7f7f7f", "nodes ready", 3, 1);
            }
        }
    }
    if (rows > 0) {
        bs_chart_t c = {.x = 90,
                        .y = top + n_panels * (ph + gap) + 10,
                        .w = WIDTH - 120,
                        .h = rows * 18,
                        .xmin = 0,
                        .xmax = fmax(r->duration_s, r->bucket_s),
                        .ymax = 1};
        nodes_strip(f, &c, snaps, n_snaps, ids, names, rows, r->duration_s);
        for (int i = 0; i < n_events; i++)
            if (strcmp(ev[i].kind, "level") != 0)
                bs_chart_marker(f, &c, ev[i].t, event_color(ev[i].kind), NULL, 0);
    }
    fprintf(f, "</svg>\n");
out:
    free(x);
    free(buf);
    free(sx);
    free(sbuf);
}

/* ---- latency against load ------------------------------------------------------------------- */

/* Per level (a sweep), or per timeline bucket (a ramp, whose load changes every second). */
static void load_svg(FILE *f, const bs_report_t *r, const char *id)
{
    int ramp = r->n_levels == 1 && r->levels[0].spec.mode == BS_MODE_RAMP;
    int n = ramp ? r->n_buckets : r->n_levels;
    double *buf = calloc((size_t)n * 8 + 1, sizeof(double));
    if (buf == NULL)
        return;
    double *x = buf, *ttft[3] = {buf + n, buf + 2 * n, buf + 3 * n},
           *tpot[3] = {buf + 4 * n, buf + 5 * n, buf + 6 * n}, *tok = buf + 7 * n;
    double xmax = 0, ymax_t = 0, ymax_p = 0, ymax_k = 0;
    for (int i = 0; i < n; i++) {
        const bs_pct_t *a, *b;
        if (ramp) {
            const bs_bucket_t *k = &r->buckets[i];
            x[i] = k->in_flight;
            a = &k->ttft;
            b = &k->tpot;
            tok[i] = k->output_tokens / r->bucket_s;
        } else {
            x[i] = bs_level_load(&r->levels[i]);
            a = &r->levels[i].ttft;
            b = &r->levels[i].tpot;
            tok[i] = r->levels[i].tok_per_s;
        }
        const double pa[3] = {a->p50, a->p90, a->p99}, pb[3] = {b->p50, b->p90, b->p99};
        for (int q = 0; q < 3; q++) {
            ttft[q][i] = a->n ? pa[q] * 1e3 : -1;
            tpot[q][i] = b->n ? pb[q] * 1e3 : -1;
            ymax_t = fmax(ymax_t, ttft[q][i]);
            ymax_p = fmax(ymax_p, tpot[q][i]);
        }
        if (ramp && a->n == 0)
            tok[i] = -1; /* an idle second says nothing about this load */
        ymax_k = fmax(ymax_k, tok[i]);
        xmax = fmax(xmax, x[i]);
    }
    int rate = !ramp && r->n_levels > 0 && r->levels[0].spec.mode == BS_MODE_RATE;
    const char *xlabel = ramp   ? "requests in flight (mean over each second)"
                         : rate ? "request rate sent (requests/s)"
                                : "concurrency (parallel requests)";
    int log_x = !ramp && !rate && n > 1;
    double xmin = log_x ? x[0] : 0;
    for (int i = 0; log_x && i < n; i++)
        xmin = fmin(xmin, x[i]);
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"330\" "
            "viewBox=\"0 0 %d 330\" font-family=\"sans-serif\" id=\"%s\">\n"
            "<rect width=\"%d\" height=\"330\" fill=\"white\"/>\n",
            WIDTH, WIDTH, id, WIDTH);
    const char *colors[3] = {"#2ca02c", "#ff7f0e", "#d62728"},
               *names_t[3] = {"TTFT p50", "TTFT p90", "TTFT p99"},
               *names_p[3] = {"TPOT p50", "TPOT p90", "TPOT p99"};
    bs_chart_t c[3];
    for (int k = 0; k < 3; k++)
        c[k] = (bs_chart_t){.x = 75 + k * 330,
                            .y = 40,
                            .w = 250,
                            .h = 230,
                            .xmin = log_x ? xmin : 0,
                            .xmax = log_x ? xmax : bs_nice_max(xmax),
                            .log_x = log_x};
    c[0].ymax = bs_nice_max(ymax_k);
    c[1].ymax = bs_nice_max(ymax_t);
    c[2].ymax = bs_nice_max(ymax_p);
    int style = ramp ? 2 : 0;
    bs_chart_axes(f, &c[0], "Throughput", xlabel, "output tokens/s");
    bs_chart_line(f, &c[0], x, tok, n, "#1f77b4", "output tokens/s", 0, style);
    bs_chart_axes(f, &c[1], "Time to first token", xlabel, "ms");
    bs_chart_axes(f, &c[2], "Time per output token", xlabel, "ms");
    for (int q = 0; q < 3; q++) {
        bs_chart_line(f, &c[1], x, ttft[q], n, colors[q], names_t[q], q, style);
        bs_chart_line(f, &c[2], x, tpot[q], n, colors[q], names_p[q], q, style);
    }
    fprintf(f, "</svg>\n");
    free(buf);
}

/* ---- tables --------------------------------------------------------------------------------- */

/* A cell showing value v (scaled) with the JSON path it comes from. */
static void cell(FILE *f, int level, const char *key, double v, double scale, int decimals)
{
    fprintf(f, "<td data-key=\"levels.%d.%s\">", level, key);
    if (v < 0)
        fprintf(f, "-");
    else
        fprintf(f, "%.*f", decimals, v * scale);
    fprintf(f, "</td>");
}

static void pct_cells(FILE *f, int level, const char *key, const bs_pct_t *p)
{
    char k[64];
    const double v[3] = {p->p50, p->p90, p->p99};
    const char *names[3] = {"p50", "p90", "p99"};
    for (int i = 0; i < 3; i++) {
        snprintf(k, sizeof(k), "%s.%s", key, names[i]);
        cell(f, level, k, p->n ? v[i] : -1, 1e3, 2);
    }
}

static void summary_table(FILE *f, const bs_report_t *r)
{
    fprintf(f, "<table id=\"summary\">\n<tr><th rowspan=\"2\">level</th><th rowspan=\"2\">"
               "requests</th><th rowspan=\"2\">ok</th><th rowspan=\"2\">failed</th><th "
               "rowspan=\"2\">requests/s</th><th rowspan=\"2\">output tokens/s</th><th "
               "rowspan=\"2\">goodput (requests/s)</th><th colspan=\"3\">TTFT (ms)</th><th "
               "colspan=\"3\">TPOT (ms)</th><th colspan=\"3\">ITL (ms)</th><th colspan=\"3\">"
               "E2E latency (ms)</th></tr>\n<tr>");
    for (int i = 0; i < 4; i++)
        fprintf(f, "<th>p50</th><th>p90</th><th>p99</th>");
    fprintf(f, "</tr>\n");
    for (int i = 0; i < r->n_levels; i++) {
        const bs_level_t *l = &r->levels[i];
        char name[64];
        bs_level_name(&l->spec, name, sizeof(name));
        fprintf(f, "<tr><td data-key=\"levels.%d.name\">", i);
        bs_xml_text(f, name);
        fprintf(f, "</td>");
        fprintf(f, "<td data-key=\"levels.%d.requests\">%d</td>", i, l->requests);
        fprintf(f, "<td data-key=\"levels.%d.ok\">%d</td>", i, l->ok);
        fprintf(f, "<td data-key=\"levels.%d.failed\">%d</td>", i, l->requests - l->ok);
        cell(f, i, "requests_per_s", l->req_per_s, 1, 2);
        cell(f, i, "output_tokens_per_s", l->tok_per_s, 1, 1);
        cell(f, i, "goodput_per_s", l->goodput, 1, 2);
        pct_cells(f, i, "ttft_s", &l->ttft);
        pct_cells(f, i, "tpot_s", &l->tpot);
        pct_cells(f, i, "itl_s", &l->itl);
        pct_cells(f, i, "e2el_s", &l->e2el);
        fprintf(f, "</tr>\n");
    }
    fprintf(f, "</table>\n");
}

static void errors_table(FILE *f, const bs_report_t *r)
{
    fprintf(f, "<h2>Errors</h2>\n<table id=\"errors\"><tr><th>level</th><th>kind (HTTP status, "
               "conn, timeout, stream)</th><th>requests</th></tr>\n");
    int any = 0;
    for (int i = 0; i < r->n_levels; i++) {
        const bs_level_t *l = &r->levels[i];
        char name[64];
        bs_level_name(&l->spec, name, sizeof(name));
        for (int e = 0; e < l->n_errors; e++, any++) {
            fprintf(f, "<tr><td>");
            bs_xml_text(f, name);
            fprintf(f, "</td><td>%s</td><td data-key=\"levels.%d.errors.%s\">%d</td></tr>\n",
                    l->errors[e].what, i, l->errors[e].what, l->errors[e].count);
        }
    }
    if (!any)
        fprintf(f, "<tr><td colspan=\"3\">none</td></tr>\n");
    fprintf(f, "</table>\n");
}

static void server_table(FILE *f, const bs_report_t *r)
{
    int n, n_e;
    const bs_sample_t *s = bs_monitor_samples(r->monitor, &n);
    const bs_event_t *ev = bs_monitor_events(r->monitor, &n_e);
    fprintf(f, "<h2>The server's view</h2>\n");
    if (n == 0) {
        fprintf(f, "<p>No dsinfer <code>/metrics</code> during the run.</p>\n");
    } else {
        double q = 0, run = 0, imb = -1;
        for (int i = 0; i < n; i++) {
            q = fmax(q, s[i].queue_depth);
            run = fmax(run, s[i].running);
            imb = fmax(imb, s[i].imbalance);
        }
        char imb_text[32] = "no data", ready[48] = "-", replans[16] = "-", live[16] = "-";
        if (imb > 0)
            snprintf(imb_text, sizeof(imb_text), "%.3f", imb);
        if (s[0].nodes_ready >= 0 && s[n - 1].nodes_ready >= 0)
            snprintf(ready, sizeof(ready), "%.0f, %.0f", s[0].nodes_ready, s[n - 1].nodes_ready);
        if (s[0].replans >= 0)
            snprintf(replans, sizeof(replans), "%.0f", s[n - 1].replans - s[0].replans);
        if (s[0].live_switches >= 0)
            snprintf(live, sizeof(live), "%.0f", s[n - 1].live_switches - s[0].live_switches);
        fprintf(f,
                "<table id=\"server\"><tr><th>samples</th><th>queue depth (max)</th>"
                "<th>running sequences (max)</th><th>nodes ready (first, last)</th>"
                "<th>re-plans</th><th>live switches</th><th>expert-load imbalance (max)</th>"
                "</tr>\n<tr><td>%d</td><td>%.0f</td><td>%.0f</td><td>%s</td><td>%s</td>"
                "<td>%s</td><td>%s</td></tr></table>\n",
                n, q, run, ready, replans, live, imb_text);
    }
    fprintf(f, "<h2>Events</h2>\n<table id=\"events\"><tr><th>time (s)</th><th>kind</th>"
               "<th>source</th><th>detail</th></tr>\n");
    for (int i = 0; i < n_e; i++) {
        fprintf(f, "<tr><td>%.1f</td><td style=\"color:%s\">%s</td><td>%s</td><td>", ev[i].t,
                event_color(ev[i].kind), ev[i].kind, ev[i].source);
        bs_xml_text(f, ev[i].detail);
        fprintf(f, "</td></tr>\n");
    }
    if (n_e == 0)
        fprintf(f, "<tr><td colspan=\"4\">none</td></tr>\n");
    fprintf(f, "</table>\n");
}

static void describe(FILE *f, const bs_report_t *r)
{
    const bs_target_t *t = r->target;
    fprintf(f, "<p>");
    bs_xml_text(f, t->url);
    fprintf(f, " &middot; <code>");
    bs_xml_text(f, t->path);
    fprintf(f, "</code> &middot; model <b>");
    bs_xml_text(f, t->model);
    fprintf(f, "</b> &middot; seed %llu &middot; ", (unsigned long long)r->plan->seed);
    if (r->dataset_path != NULL) {
        fprintf(f, "chats from ");
        bs_xml_text(f, r->dataset_path);
    } else {
        fprintf(f, "prompts %d..%d words, output %d..%d tokens", r->plan->prompt_len.min,
                r->plan->prompt_len.max, r->plan->output_len.min, r->plan->output_len.max);
    }
    fprintf(f, " &middot; %.1f s", r->duration_s);
    if (r->slo->ttft > 0 || r->slo->tpot > 0 || r->slo->e2el > 0) {
        fprintf(f, " &middot; SLO");
        if (r->slo->ttft > 0)
            fprintf(f, " TTFT &le; %g ms", r->slo->ttft * 1e3);
        if (r->slo->tpot > 0)
            fprintf(f, " TPOT &le; %g ms", r->slo->tpot * 1e3);
        if (r->slo->e2el > 0)
            fprintf(f, " E2EL &le; %g ms", r->slo->e2el * 1e3);
    }
    fprintf(f, "</p>\n");
}

int bs_write_html(const char *path, const bs_report_t *r)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "dsinfer bench serve: --html: cannot write %s: %m\n", path);
        return -1;
    }
    fprintf(f,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
            "<title>dsinfer bench serve</title>\n<style>\n"
            "body{font-family:sans-serif;margin:16px;max-width:%dpx;color:#222}\n"
            "table{border-collapse:collapse;margin:8px 0;font-size:12px}\n"
            "td,th{border:1px solid #bbb;padding:2px 4px;text-align:right}\n"
            "th{background:#f0f0f0}\nh1{font-size:20px}h2{font-size:16px;margin-top:20px}\n"
            "</style></head><body>\n<h1>dsinfer bench serve</h1>\n",
            WIDTH);
    describe(f, r);
    fprintf(f, "<h2>Summary</h2>\n");
    summary_table(f, r);
    fprintf(f, "<h2>Timeline</h2>\n<p>Per second of the run; dashed lines mark cluster events "
               "(green join, orange drain, red failure, purple re-plan) and grey the start of "
               "each level.</p>\n");
    timeline_svg(f, r);
    fprintf(f, "<h2>Latency against load</h2>\n");
    load_svg(f, r, "load");
    errors_table(f, r);
    server_table(f, r);
    fprintf(f, "</body></html>\n");
    int rc = ferror(f) ? -1 : 0;
    if (fclose(f) != 0 || rc != 0) {
        fprintf(stderr, "dsinfer bench serve: --html: error writing %s\n", path);
        return -1;
    }
    return 0;
}

int bs_write_svg(const char *path, const bs_report_t *r)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "dsinfer bench serve: --svg: cannot write %s: %m\n", path);
        return -1;
    }
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    load_svg(f, r, "load");
    int rc = ferror(f) ? -1 : 0;
    if (fclose(f) != 0 || rc != 0) {
        fprintf(stderr, "dsinfer bench serve: --svg: error writing %s\n", path);
        return -1;
    }
    return 0;
}
