/*
 * test_unit_api_metrics.c - the Prometheus registry (dsc_metrics): exact text of counters,
 * gauges and histograms with labels and escaping, family re-registration rules, a registry the
 * size of a full model's per-expert counters, and concurrent updates while rendering (run it
 * under TSan: -DDSINFER_TSAN=ON).
 */
#include <pthread.h>
#include <stdlib.h>

#include "dsc_metrics.h"
#include "dsi_test.h"

static void test_text(void)
{
    dsc_metrics_t *m;
    DSI_CHECK_INT_EQ(dsc_metrics_create(&m), DSI_OK);
    const char *labels[] = {"endpoint", "code"};
    dsc_metric_family_t *req =
        dsc_metrics_counter(m, "http_requests_total", "Requests\nby code", labels, 2);
    dsc_metric_family_t *q = dsc_metrics_gauge(m, "queue_depth", "Waiting", NULL, 0);
    const double bounds[] = {0.1, 1, 2.5};
    dsc_metric_family_t *h = dsc_metrics_histogram(m, "ttft_seconds", "TTFT", NULL, 0, bounds, 3);
    DSI_CHECK(req && q && h);

    const char *v1[] = {"/v1/chat", "200"}, *v2[] = {"a\"b\\c\nd", "404"};
    dsc_metric_series_t *s1 = dsc_metric_series(req, v1);
    DSI_CHECK(dsc_metric_series(req, v1) == s1); /* same labels, same series */
    dsc_metric_add(s1, 2);
    dsc_metric_add(s1, -5); /* ignored: counters only go up */
    dsc_metric_add(dsc_metric_series(req, v2), 1);
    dsc_metric_series_t *qs = dsc_metric_series(q, NULL);
    dsc_metric_set(qs, 7);
    dsc_metric_add(qs, -2.5);
    DSI_CHECK_NEAR(dsc_metric_value(qs), 4.5, 0);
    dsc_metric_series_t *hs = dsc_metric_series(h, NULL);
    const double obs[] = {0.05, 0.1, 0.5, 3, 100};
    for (int i = 0; i < 5; i++)
        dsc_metric_observe(hs, obs[i]);
    DSI_CHECK_NEAR(dsc_metric_value(hs), 5, 0);

    char *text = dsc_metrics_render(m, NULL);
    const char *want = "# HELP http_requests_total Requests\\nby code\n"
                       "# TYPE http_requests_total counter\n"
                       "http_requests_total{endpoint=\"/v1/chat\",code=\"200\"} 2\n"
                       "http_requests_total{endpoint=\"a\\\"b\\\\c\\nd\",code=\"404\"} 1\n"
                       "# HELP queue_depth Waiting\n"
                       "# TYPE queue_depth gauge\n"
                       "queue_depth 4.5\n"
                       "# HELP ttft_seconds TTFT\n"
                       "# TYPE ttft_seconds histogram\n"
                       "ttft_seconds_bucket{le=\"0.1\"} 2\n"
                       "ttft_seconds_bucket{le=\"1\"} 3\n"
                       "ttft_seconds_bucket{le=\"2.5\"} 3\n"
                       "ttft_seconds_bucket{le=\"+Inf\"} 5\n"
                       "ttft_seconds_sum 103.65\n"
                       "ttft_seconds_count 5\n";
    DSI_CHECK_STR_EQ(text, want);
    free(text);
    dsc_metrics_destroy(m);
}

static void test_registration(void)
{
    dsc_metrics_t *m;
    dsc_metrics_create(&m);
    const char *l1[] = {"node"}, *l2[] = {"stage"}, *bad_label[] = {"le"}, *bad2[] = {"a-b"};
    dsc_metric_family_t *f = dsc_metrics_gauge(m, "node_state", "h", l1, 1);
    DSI_CHECK(f != NULL);
    DSI_CHECK(dsc_metrics_gauge(m, "node_state", "other help", l1, 1) == f); /* shared */
    DSI_CHECK(dsc_metrics_gauge(m, "node_state", "h", l2, 1) == NULL);       /* other labels */
    DSI_CHECK(dsc_metrics_counter(m, "node_state", "h", l1, 1) == NULL);     /* other type */
    DSI_CHECK(dsc_metrics_counter(m, "9lives", "h", NULL, 0) == NULL);
    DSI_CHECK(dsc_metrics_counter(m, "has space", "h", NULL, 0) == NULL);
    DSI_CHECK(dsc_metrics_counter(m, "", "h", NULL, 0) == NULL);
    DSI_CHECK(dsc_metrics_counter(m, "ok:name_total", "h", bad_label, 1) == NULL);
    DSI_CHECK(dsc_metrics_counter(m, "ok2", "h", bad2, 1) == NULL);
    const double down[] = {1, 0.5}, nan_b[] = {NAN};
    DSI_CHECK(dsc_metrics_histogram(m, "h1", "h", NULL, 0, down, 2) == NULL);
    DSI_CHECK(dsc_metrics_histogram(m, "h2", "h", NULL, 0, nan_b, 1) == NULL);
    DSI_CHECK(dsc_metrics_counter(m, "ok:name_total", "h", NULL, 0) != NULL);
    dsc_metrics_destroy(m);
}

/* 58 MoE layers x 256 experts, as the full model reports them. */
static void test_many_series(void)
{
    dsc_metrics_t *m;
    dsc_metrics_create(&m);
    const char *labels[] = {"layer", "expert"};
    dsc_metric_family_t *f = dsc_metrics_counter(m, "expert_tokens_total", "h", labels, 2);
    char layer[12], expert[12]; /* any int */
    const char *v[2] = {layer, expert};
    for (int l = 3; l < 61; l++) {
        for (int e = 0; e < 256; e++) {
            snprintf(layer, sizeof(layer), "%d", l);
            snprintf(expert, sizeof(expert), "%d", e);
            dsc_metric_add(dsc_metric_series(f, v), (double)(l + e));
        }
    }
    snprintf(layer, sizeof(layer), "60");
    snprintf(expert, sizeof(expert), "255");
    DSI_CHECK_NEAR(dsc_metric_value(dsc_metric_series(f, v)), 315, 0);
    size_t len;
    char *text = dsc_metrics_render(m, &len);
    int lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += text[i] == '\n';
    DSI_CHECK_INT_EQ(lines, 58 * 256 + 2);
    DSI_CHECK(strstr(text, "expert_tokens_total{layer=\"60\",expert=\"255\"} 315\n") != NULL);
    free(text);
    dsc_metrics_destroy(m);
}

typedef struct {
    dsc_metric_family_t *c, *h;
    int id;
} worker_t;

static void *worker(void *arg)
{
    worker_t *w = arg;
    char id[8];
    snprintf(id, sizeof(id), "%d", w->id % 2);
    const char *v[1] = {id};
    dsc_metric_series_t *c = dsc_metric_series(w->c, v), *h = dsc_metric_series(w->h, NULL);
    for (int i = 0; i < 20000; i++) {
        dsc_metric_add(c, 1);
        dsc_metric_observe(h, (double)(i % 10));
    }
    return NULL;
}

static void test_threads(void)
{
    dsc_metrics_t *m;
    dsc_metrics_create(&m);
    const char *labels[] = {"w"};
    const double b[] = {1, 5};
    worker_t w[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        w[i].c = dsc_metrics_counter(m, "work_total", "h", labels, 1);
        w[i].h = dsc_metrics_histogram(m, "work_seconds", "h", NULL, 0, b, 2);
        w[i].id = i;
        pthread_create(&t[i], NULL, worker, &w[i]);
    }
    for (int r = 0; r < 20; r++) /* render while they update */
        free(dsc_metrics_render(m, NULL));
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    const char *v0[] = {"0"}, *v1[] = {"1"};
    DSI_CHECK_NEAR(dsc_metric_value(dsc_metric_series(w[0].c, v0)), 40000, 0);
    DSI_CHECK_NEAR(dsc_metric_value(dsc_metric_series(w[0].c, v1)), 40000, 0);
    DSI_CHECK_NEAR(dsc_metric_value(dsc_metric_series(w[0].h, NULL)), 80000, 0);
    char *text = dsc_metrics_render(m, NULL);
    DSI_CHECK(strstr(text, "work_seconds_sum 360000\n") != NULL); /* 8000 x (0+..+9) */
    DSI_CHECK(strstr(text, "work_seconds_bucket{le=\"1\"} 16000\n") != NULL);
    free(text);
    dsc_metrics_destroy(m);
}

int main(void)
{
    test_text();
    test_registration();
    test_many_series();
    test_threads();
    return dsi_test_finish();
}
