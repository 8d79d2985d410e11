/*
 * bench_serve_html.c - the reports for people: --html writes one self-contained page (inline SVG
 * and CSS, no script, nothing fetched) with the timeline and its cluster events, latency
 * percentiles against load (both drawn by bench_serve_charts.c), and the summary, error, server
 * and event tables; --svg writes the latency-against-load chart alone.
 *
 * Every number of the summary table carries data-key, the JSON path of the value it shows, so a
 * test can check the rendered page against the JSON.
 */
#include "bench_serve.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

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
                bs_event_color(ev[i].kind), ev[i].kind, ev[i].source);
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
            BS_CHART_WIDTH);
    describe(f, r);
    fprintf(f, "<h2>Summary</h2>\n");
    summary_table(f, r);
    fprintf(f, "<h2>Timeline</h2>\n<p>Per second of the run; dashed lines mark cluster events "
               "(green join, orange drain, red failure, purple re-plan) and grey the start of "
               "each level.</p>\n");
    bs_svg_timeline(f, r);
    fprintf(f, "<h2>Latency against load</h2>\n");
    bs_svg_load(f, r, "load");
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
    bs_svg_load(f, r, "load");
    int rc = ferror(f) ? -1 : 0;
    if (fclose(f) != 0 || rc != 0) {
        fprintf(stderr, "dsinfer bench serve: --svg: error writing %s\n", path);
        return -1;
    }
    return 0;
}
