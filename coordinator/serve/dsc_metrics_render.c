/*
 * dsc_metrics_render.c - the registry as Prometheus text exposition format 0.0.4:
 *   # HELP name help
 *   # TYPE name counter|gauge|histogram
 *   name{label="value",...} 42
 * Histograms give cumulative name_bucket{...,le="..."} lines, name_sum and name_count.
 */
#include "dsc_metrics_impl.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsi_log.h"

typedef struct {
    char *data;
    size_t len, cap;
    int failed; /* out of memory: the text is incomplete, render returns NULL */
} textbuf_t;

static void tb_reserve(textbuf_t *tb, size_t extra)
{
    if (tb->failed || tb->len + extra + 1 <= tb->cap)
        return;
    size_t cap = tb->cap ? tb->cap : 4096;
    while (cap < tb->len + extra + 1)
        cap *= 2;
    char *p = realloc(tb->data, cap);
    if (p == NULL) {
        tb->failed = 1;
        return;
    }
    tb->data = p;
    tb->cap = cap;
}

static void tb_put(textbuf_t *tb, const char *s, size_t n)
{
    tb_reserve(tb, n);
    if (tb->failed)
        return;
    memcpy(tb->data + tb->len, s, n);
    tb->len += n;
    tb->data[tb->len] = '\0';
}

static void tb_puts(textbuf_t *tb, const char *s)
{
    tb_put(tb, s, strlen(s));
}

static void tb_printf(textbuf_t *tb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tb_printf(textbuf_t *tb, const char *fmt, ...)
{
    char small[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof(small)) {
        tb_put(tb, small, (size_t)n);
        return;
    }
    tb_reserve(tb, (size_t)n);
    if (tb->failed)
        return;
    va_start(ap, fmt);
    vsnprintf(tb->data + tb->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    tb->len += (size_t)n;
}

/* Escapes backslash and newline (HELP text), and double quotes too in label values. */
static void tb_escaped(textbuf_t *tb, const char *s, int quote)
{
    for (const char *p = s; *p != '\0'; p++) {
        if (*p == '\\')
            tb_puts(tb, "\\\\");
        else if (*p == '\n')
            tb_puts(tb, "\\n");
        else if (quote && *p == '"')
            tb_puts(tb, "\\\"");
        else
            tb_put(tb, p, 1);
    }
}

/* The shortest of %.15g..%.17g that reads back as v exactly ("0.1", not "0.10000000000000001"). */
static void format_double(char *buf, size_t cap, double v)
{
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, cap, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            return;
    }
}

static void tb_value(textbuf_t *tb, double v)
{
    char buf[40];
    if (isnan(v))
        tb_puts(tb, "NaN");
    else if (isinf(v))
        tb_puts(tb, v > 0 ? "+Inf" : "-Inf");
    else if (v == floor(v) && fabs(v) < 1e15)
        tb_printf(tb, "%.0f", v);
    else {
        format_double(buf, sizeof(buf), v);
        tb_puts(tb, buf);
    }
}

/* {a="x",b="y"} with an optional extra le="..." label; nothing when there are no labels. */
static void tb_labels(textbuf_t *tb, const dsc_metric_family_t *f, const dsc_metric_series_t *s,
                      const char *le)
{
    if (f->n_labels == 0 && le == NULL)
        return;
    tb_puts(tb, "{");
    for (int i = 0; i < f->n_labels; i++) {
        tb_printf(tb, "%s%s=\"", i ? "," : "", f->label_names[i]);
        tb_escaped(tb, s->values[i], 1);
        tb_puts(tb, "\"");
    }
    if (le != NULL)
        tb_printf(tb, "%sle=\"%s\"", f->n_labels ? "," : "", le);
    tb_puts(tb, "}");
}

static void render_histogram(textbuf_t *tb, const dsc_metric_family_t *f, dsc_metric_series_t *s)
{
    uint64_t cumulative = 0;
    char le[40];
    for (int b = 0; b <= f->n_bounds; b++) {
        cumulative += atomic_load_explicit(&s->buckets[b], memory_order_relaxed);
        if (b < f->n_bounds)
            format_double(le, sizeof(le), f->bounds[b]);
        else
            snprintf(le, sizeof(le), "+Inf");
        tb_printf(tb, "%s_bucket", f->name);
        tb_labels(tb, f, s, le);
        tb_printf(tb, " %llu\n", (unsigned long long)cumulative);
    }
    tb_printf(tb, "%s_sum", f->name);
    tb_labels(tb, f, s, NULL);
    tb_puts(tb, " ");
    tb_value(tb, dsc_metrics_load_double(&s->value));
    tb_printf(tb, "\n%s_count", f->name);
    tb_labels(tb, f, s, NULL);
    tb_printf(tb, " %llu\n", (unsigned long long)cumulative);
}

static const char *type_name(dsc_metric_type_t type)
{
    switch (type) {
    case DSC_METRIC_COUNTER:
        return "counter";
    case DSC_METRIC_GAUGE:
        return "gauge";
    case DSC_METRIC_HISTOGRAM:
        return "histogram";
    }
    return "untyped";
}

static void render_family(textbuf_t *tb, const dsc_metric_family_t *f)
{
    tb_printf(tb, "# HELP %s ", f->name);
    tb_escaped(tb, f->help, 0);
    tb_printf(tb, "\n# TYPE %s %s\n", f->name, type_name(f->type));
    dsi_list_for_each(s, &f->series, dsc_metric_series_t, link) {
        if (f->type == DSC_METRIC_HISTOGRAM) {
            render_histogram(tb, f, s);
            continue;
        }
        tb_puts(tb, f->name);
        tb_labels(tb, f, s, NULL);
        tb_puts(tb, " ");
        tb_value(tb, dsc_metrics_load_double(&s->value));
        tb_puts(tb, "\n");
    }
}

char *dsc_metrics_render(dsc_metrics_t *m, size_t *len_out)
{
    textbuf_t tb = {0};
    tb_reserve(&tb, 0);
    pthread_mutex_lock(&m->lock);
    dsi_list_for_each(f, &m->families, const dsc_metric_family_t, link)
        render_family(&tb, f);
    pthread_mutex_unlock(&m->lock);
    if (tb.failed) {
        DSI_ERROR("metrics: out of memory rendering %zu bytes", tb.len);
        free(tb.data);
        return NULL;
    }
    if (len_out != NULL)
        *len_out = tb.len;
    return tb.data;
}
