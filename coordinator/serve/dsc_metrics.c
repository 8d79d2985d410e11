/*
 * dsc_metrics.c - the metric registry: families, series lookup (a hash table per family under the
 * registry mutex) and lock-free updates (doubles kept as bit patterns in atomic 64-bit words).
 * Rendering is in dsc_metrics_render.c.
 */
#include "dsc_metrics_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dsi_log.h"

static double bits_to_double(uint64_t bits)
{
    double v;
    memcpy(&v, &bits, sizeof(v));
    return v;
}

static uint64_t double_to_bits(double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof(bits));
    return bits;
}

/* Atomically *word += v, where *word holds a double's bits. */
static void atomic_add_double(_Atomic uint64_t *word, double v)
{
    uint64_t old = atomic_load_explicit(word, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(word, &old,
                                                  double_to_bits(bits_to_double(old) + v),
                                                  memory_order_relaxed, memory_order_relaxed)) {
    }
}

double dsc_metrics_load_double(const _Atomic uint64_t *word)
{
    return bits_to_double(atomic_load_explicit((_Atomic uint64_t *)word, memory_order_relaxed));
}

dsi_status_t dsc_metrics_create(dsc_metrics_t **out)
{
    dsc_metrics_t *m = calloc(1, sizeof(*m));
    if (m == NULL) {
        DSI_ERROR("metrics: out of memory");
        return DSI_ERR_NOMEM;
    }
    if (pthread_mutex_init(&m->lock, NULL) != 0) {
        DSI_ERROR("metrics: pthread_mutex_init failed");
        free(m);
        return DSI_ERR_INTERNAL;
    }
    dsi_list_init(&m->families);
    *out = m;
    return DSI_OK;
}

static void series_free(dsc_metric_series_t *s, int n_labels)
{
    for (int i = 0; i < n_labels; i++)
        free(s->values[i]);
    free(s->buckets);
    free(s);
}

static void family_free(dsc_metric_family_t *f)
{
    dsi_list_for_each_safe(s, &f->series, dsc_metric_series_t, link)
        series_free(s, f->n_labels);
    for (int i = 0; i < f->n_labels; i++)
        free(f->label_names[i]);
    free(f->table);
    free(f->name);
    free(f->help);
    free(f);
}

void dsc_metrics_destroy(dsc_metrics_t *m)
{
    if (m == NULL)
        return;
    dsi_list_for_each_safe(f, &m->families, dsc_metric_family_t, link)
        family_free(f);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

static int valid_name(const char *s, int allow_colon)
{
    if (s == NULL || s[0] == '\0' || (s[0] >= '0' && s[0] <= '9'))
        return 0;
    for (const char *p = s; *p != '\0'; p++) {
        int ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                 *p == '_' || (allow_colon && *p == ':');
        if (!ok)
            return 0;
    }
    return 1;
}

/* 1 when an existing family has exactly this shape. */
static int same_shape(const dsc_metric_family_t *f, dsc_metric_type_t type,
                      const char *const *label_names, int n_labels, const double *bounds,
                      int n_bounds)
{
    if (f->type != type || f->n_labels != n_labels || f->n_bounds != n_bounds)
        return 0;
    for (int i = 0; i < n_labels; i++) {
        if (strcmp(f->label_names[i], label_names[i]) != 0)
            return 0;
    }
    for (int i = 0; i < n_bounds; i++) {
        if (f->bounds[i] != bounds[i])
            return 0;
    }
    return 1;
}

static int check_shape(const char *name, const char *const *label_names, int n_labels,
                       const double *bounds, int n_bounds)
{
    if (!valid_name(name, 1)) {
        DSI_ERROR("metrics: invalid metric name '%s'", name ? name : "(null)");
        return 0;
    }
    if (n_labels < 0 || n_labels > DSC_METRICS_MAX_LABELS || (n_labels > 0 && !label_names)) {
        DSI_ERROR("metrics: %s: %d label names (at most %d)", name, n_labels,
                  DSC_METRICS_MAX_LABELS);
        return 0;
    }
    for (int i = 0; i < n_labels; i++) {
        if (!valid_name(label_names[i], 0) || strcmp(label_names[i], "le") == 0) {
            DSI_ERROR("metrics: %s: invalid label name '%s'", name,
                      label_names[i] ? label_names[i] : "(null)");
            return 0;
        }
    }
    if (n_bounds < 0 || n_bounds > DSC_METRICS_MAX_BUCKETS) {
        DSI_ERROR("metrics: %s: %d buckets (at most %d)", name, n_bounds, DSC_METRICS_MAX_BUCKETS);
        return 0;
    }
    for (int i = 0; i < n_bounds; i++) {
        if (!isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1]))) {
            DSI_ERROR("metrics: %s: bucket bounds must be finite and increasing (bound %d)", name,
                      i);
            return 0;
        }
    }
    return 1;
}

static dsc_metric_family_t *family_new(const char *name, const char *help, dsc_metric_type_t type,
                                       const char *const *label_names, int n_labels,
                                       const double *bounds, int n_bounds)
{
    dsc_metric_family_t *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return NULL;
    dsi_list_init(&f->series);
    f->type = type;
    f->n_bounds = n_bounds;
    if (n_bounds > 0)
        memcpy(f->bounds, bounds, (size_t)n_bounds * sizeof(double));
    f->name = strdup(name);
    f->help = strdup(help ? help : "");
    f->n_table = 16;
    f->table = calloc(f->n_table, sizeof(*f->table));
    int ok = f->name && f->help && f->table;
    for (int i = 0; i < n_labels && ok; i++) {
        f->label_names[i] = strdup(label_names[i]);
        ok = f->label_names[i] != NULL;
        f->n_labels = i + 1;
    }
    if (!ok) {
        family_free(f);
        return NULL;
    }
    return f;
}

/* The family registered as `name`, or NULL. Called with the registry's lock held. */
static dsc_metric_family_t *family_find(dsc_metrics_t *m, const char *name)
{
    dsi_list_for_each(f, &m->families, dsc_metric_family_t, link) {
        if (strcmp(f->name, name) == 0)
            return f;
    }
    return NULL;
}

static dsc_metric_family_t *family_register(dsc_metrics_t *m, const char *name, const char *help,
                                            dsc_metric_type_t type, const char *const *label_names,
                                            int n_labels, const double *bounds, int n_bounds)
{
    if (!check_shape(name, label_names, n_labels, bounds, n_bounds))
        return NULL;
    pthread_mutex_lock(&m->lock);
    dsc_metric_family_t *f = family_find(m, name);
    if (f != NULL) {
        if (!same_shape(f, type, label_names, n_labels, bounds, n_bounds)) {
            DSI_ERROR("metrics: %s is already registered with another type, labels or buckets",
                      name);
            f = NULL;
        }
        goto unlock;
    }
    f = family_new(name, help, type, label_names, n_labels, bounds, n_bounds);
    if (f == NULL) {
        DSI_ERROR("metrics: %s: out of memory", name);
        goto unlock;
    }
    f->registry = m;
    dsi_list_push_back(&m->families, &f->link);
unlock:
    pthread_mutex_unlock(&m->lock);
    return f;
}

dsc_metric_family_t *dsc_metrics_counter(dsc_metrics_t *m, const char *name, const char *help,
                                         const char *const *label_names, int n_labels)
{
    return family_register(m, name, help, DSC_METRIC_COUNTER, label_names, n_labels, NULL, 0);
}

dsc_metric_family_t *dsc_metrics_gauge(dsc_metrics_t *m, const char *name, const char *help,
                                       const char *const *label_names, int n_labels)
{
    return family_register(m, name, help, DSC_METRIC_GAUGE, label_names, n_labels, NULL, 0);
}

dsc_metric_family_t *dsc_metrics_histogram(dsc_metrics_t *m, const char *name, const char *help,
                                           const char *const *label_names, int n_labels,
                                           const double *bounds, int n_bounds)
{
    if (n_bounds > 0 && bounds == NULL)
        return NULL;
    return family_register(m, name, help, DSC_METRIC_HISTOGRAM, label_names, n_labels, bounds,
                           n_bounds);
}

static uint64_t hash_values(const char *const *values, int n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (int i = 0; i < n; i++) {
        for (const unsigned char *p = (const unsigned char *)values[i]; *p != '\0'; p++)
            h = (h ^ *p) * 1099511628211ull;
        h = (h ^ 0xff) * 1099511628211ull; /* separator: 0xff never occurs in UTF-8 */
    }
    return h;
}

static int values_equal(const dsc_metric_series_t *s, const char *const *values, int n)
{
    for (int i = 0; i < n; i++) {
        if (strcmp(s->values[i], values[i]) != 0)
            return 0;
    }
    return 1;
}

/* Doubles the hash table when it gets crowded; on allocation failure keeps the old one. */
static void table_grow(dsc_metric_family_t *f)
{
    size_t n = f->n_table * 2;
    dsc_metric_series_t **t = calloc(n, sizeof(*t));
    if (t == NULL)
        return;
    dsi_list_for_each(s, &f->series, dsc_metric_series_t, link) {
        size_t b = s->hash & (n - 1);
        s->hash_next = t[b];
        t[b] = s;
    }
    free(f->table);
    f->table = t;
    f->n_table = n;
}

static dsc_metric_series_t *series_new(dsc_metric_family_t *f, const char *const *values,
                                       uint64_t hash)
{
    dsc_metric_series_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->hash = hash;
    int ok = 1;
    for (int i = 0; i < f->n_labels && ok; i++) {
        s->values[i] = strdup(values[i] ? values[i] : "");
        ok = s->values[i] != NULL;
    }
    if (ok && f->type == DSC_METRIC_HISTOGRAM) {
        s->buckets = calloc((size_t)f->n_bounds + 1, sizeof(*s->buckets));
        ok = s->buckets != NULL;
    }
    if (!ok) {
        series_free(s, f->n_labels);
        return NULL;
    }
    return s;
}

dsc_metric_series_t *dsc_metric_series(dsc_metric_family_t *f, const char *const *label_values)
{
    static const char *const no_values[1] = {""};
    if (f->n_labels == 0 || label_values == NULL)
        label_values = no_values;
    uint64_t h = f->n_labels ? hash_values(label_values, f->n_labels) : 0;
    pthread_mutex_lock(&f->registry->lock);
    dsc_metric_series_t *s;
    for (s = f->table[h & (f->n_table - 1)]; s != NULL; s = s->hash_next) {
        if (s->hash == h && values_equal(s, label_values, f->n_labels))
            goto unlock;
    }
    s = series_new(f, label_values, h);
    if (s == NULL) {
        DSI_ERROR("metrics: %s: out of memory for a new series", f->name);
        goto unlock;
    }
    if (f->n_series >= f->n_table * 2)
        table_grow(f);
    size_t b = h & (f->n_table - 1);
    s->hash_next = f->table[b];
    f->table[b] = s;
    dsi_list_push_back(&f->series, &s->link);
    f->n_series++;
    s->family = f;
unlock:
    pthread_mutex_unlock(&f->registry->lock);
    return s;
}

void dsc_metric_add(dsc_metric_series_t *s, double v)
{
    if (s->family->type == DSC_METRIC_HISTOGRAM)
        return;
    if (s->family->type == DSC_METRIC_COUNTER && !(v >= 0))
        return;
    atomic_add_double(&s->value, v);
}

void dsc_metric_set(dsc_metric_series_t *s, double v)
{
    if (s->family->type != DSC_METRIC_GAUGE)
        return;
    atomic_store_explicit(&s->value, double_to_bits(v), memory_order_relaxed);
}

void dsc_metric_observe(dsc_metric_series_t *s, double v)
{
    const dsc_metric_family_t *f = s->family;
    if (f->type != DSC_METRIC_HISTOGRAM || isnan(v))
        return;
    int b = 0;
    while (b < f->n_bounds && v > f->bounds[b]) /* Prometheus buckets are le (<=) */
        b++;
    atomic_fetch_add_explicit(&s->buckets[b], 1, memory_order_relaxed);
    atomic_add_double(&s->value, v);
}

double dsc_metric_value(const dsc_metric_series_t *s)
{
    const dsc_metric_family_t *f = s->family;
    if (f->type != DSC_METRIC_HISTOGRAM)
        return dsc_metrics_load_double(&s->value);
    uint64_t n = 0;
    for (int b = 0; b <= f->n_bounds; b++)
        n += atomic_load_explicit(&((dsc_metric_series_t *)s)->buckets[b], memory_order_relaxed);
    return (double)n;
}
