/*
 * dsc_metrics.h - a registry of Prometheus metrics: counters, gauges and histograms with labels,
 * rendered in the text exposition format (version 0.0.4) for GET /metrics.
 *
 * Structure: a registry holds families (name, help, type, label names); a family holds series,
 * one per tuple of label values. Look a series up once (it takes the registry's mutex and may
 * allocate) and keep the pointer: it stays valid until the registry is destroyed. Updating a
 * series is lock-free (atomics), so any thread may update while another renders; a rendering
 * sees each value atomically but the set of values is not one snapshot.
 *
 * Names must match [a-zA-Z_:][a-zA-Z0-9_:]*, label names [a-zA-Z_][a-zA-Z0-9_]*; label values
 * are any UTF-8 and are escaped when rendered.
 */
#ifndef DSC_METRICS_H
#define DSC_METRICS_H

#include <stddef.h>

#include "dsi_status.h"

#define DSC_METRICS_MAX_LABELS  8  /* label names per family */
#define DSC_METRICS_MAX_BUCKETS 32 /* histogram upper bounds per family (+Inf is implicit) */

typedef struct dsc_metrics dsc_metrics_t;
typedef struct dsc_metric_family dsc_metric_family_t;
typedef struct dsc_metric_series dsc_metric_series_t;

typedef enum {
    DSC_METRIC_COUNTER = 0,
    DSC_METRIC_GAUGE,
    DSC_METRIC_HISTOGRAM,
} dsc_metric_type_t;

dsi_status_t dsc_metrics_create(dsc_metrics_t **out);
/* Frees the registry, its families and series. No update may run concurrently. */
void dsc_metrics_destroy(dsc_metrics_t *metrics);

/*
 * Register a family, or return the existing one of that name when its type, label names and
 * buckets are the same (so that two modules may share one). NULL (logged) on an invalid name, a
 * clash with an existing family of another shape, or out of memory. Strings are copied.
 * `bounds` (histograms only): n_bounds strictly increasing finite upper bounds.
 */
dsc_metric_family_t *dsc_metrics_counter(dsc_metrics_t *metrics, const char *name, const char *help,
                                         const char *const *label_names, int n_labels);
dsc_metric_family_t *dsc_metrics_gauge(dsc_metrics_t *metrics, const char *name, const char *help,
                                       const char *const *label_names, int n_labels);
dsc_metric_family_t *dsc_metrics_histogram(dsc_metrics_t *metrics, const char *name,
                                           const char *help, const char *const *label_names,
                                           int n_labels, const double *bounds, int n_bounds);

/*
 * The series of `family` with these label values (n_labels of them, as registered; NULL for a
 * family without labels), created at 0 on first use. NULL only when out of memory (logged).
 */
dsc_metric_series_t *dsc_metric_series(dsc_metric_family_t *family,
                                       const char *const *label_values);

/* Counters and gauges: add `v` (counters: v >= 0; a negative v on a counter is ignored). */
void dsc_metric_add(dsc_metric_series_t *series, double v);
/* Gauges: set the value. */
void dsc_metric_set(dsc_metric_series_t *series, double v);
/* Histograms: record one observation. */
void dsc_metric_observe(dsc_metric_series_t *series, double v);
/* Counters and gauges: the current value; histograms: the number of observations. */
double dsc_metric_value(const dsc_metric_series_t *series);

/*
 * The whole registry as Prometheus text, families in registration order, series in creation
 * order. malloc'ed, NUL-terminated (caller frees); NULL when out of memory.
 */
char *dsc_metrics_render(dsc_metrics_t *metrics, size_t *len_out);

#endif
