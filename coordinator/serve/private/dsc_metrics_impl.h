/*
 * dsc_metrics_impl.h - the registry's internal layout, shared by dsc_metrics.c (registration,
 * updates) and dsc_metrics_render.c. Not for other modules.
 *
 * Locking: `lock` guards the family list, each family's series list and hash table. Values are
 * updated without it (atomics). Families and series are only freed by dsc_metrics_destroy.
 */
#ifndef DSC_METRICS_IMPL_H
#define DSC_METRICS_IMPL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "dsc_metrics.h"
#include "dsi_list.h"

struct dsc_metric_series {
    dsi_list_t link;                /* in family->series */
    dsc_metric_series_t *hash_next; /* chain of the family's hash table */
    dsc_metric_family_t *family;
    uint64_t hash;                        /* of the label values */
    char *values[DSC_METRICS_MAX_LABELS]; /* [family->n_labels] label values, owned */
    _Atomic uint64_t value;               /* bits of a double: the value, or a histogram's sum */
    _Atomic uint64_t *buckets;            /* histograms: [n_bounds + 1] counts per bucket (not
                                             cumulative); the last one counts v > every bound */
};

struct dsc_metric_family {
    dsi_list_t link; /* in registry->families */
    dsc_metrics_t *registry;
    char *name;
    char *help;
    dsc_metric_type_t type;
    int n_labels;
    char *label_names[DSC_METRICS_MAX_LABELS];
    int n_bounds;
    double bounds[DSC_METRICS_MAX_BUCKETS]; /* [n_bounds] increasing upper bounds */
    /* of dsc_metric_series_t, in creation order */
    dsi_list_t series;
    dsc_metric_series_t **table; /* [n_table] hash chains, n_table a power of two */
    size_t n_table;
    size_t n_series;
};

struct dsc_metrics {
    pthread_mutex_t lock;
    dsi_list_t families; /* of dsc_metric_family_t, in registration order */
};

/* The double whose bits *word holds (relaxed load). */
double dsc_metrics_load_double(const _Atomic uint64_t *word);

#endif
