/*
 * bench_serve_charts.c - the charts of `dsinfer bench serve`'s reports, as inline SVG: the
 * timeline (throughput, requests, TTFT, TPOT, load and the server's view, one strip per node,
 * every event marked) and latency and throughput against load (per level, or per second of a
 * ramp).
 */
#include "bench_serve.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *bs_event_color(const char *kind)
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

void bs_svg_timeline(FILE *f, const bs_report_t *r)
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
            BS_CHART_WIDTH, height, BS_CHART_WIDTH, height, BS_CHART_WIDTH, height);
    for (int p = 0; p < n_panels; p++) {
        bs_chart_t c = {.x = 90,
                        .y = top + p * (ph + gap),
                        .w = BS_CHART_WIDTH - 120,
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
            bs_chart_marker(f, &c, ev[i].t, bs_event_color(ev[i].kind),
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
                        .w = BS_CHART_WIDTH - 120,
                        .h = rows * 18,
                        .xmin = 0,
                        .xmax = fmax(r->duration_s, r->bucket_s),
                        .ymax = 1};
        nodes_strip(f, &c, snaps, n_snaps, ids, names, rows, r->duration_s);
        for (int i = 0; i < n_events; i++)
            if (strcmp(ev[i].kind, "level") != 0)
                bs_chart_marker(f, &c, ev[i].t, bs_event_color(ev[i].kind), NULL, 0);
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
void bs_svg_load(FILE *f, const bs_report_t *r, const char *id)
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
            BS_CHART_WIDTH, BS_CHART_WIDTH, id, BS_CHART_WIDTH);
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
