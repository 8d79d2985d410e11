/*
 * bench_serve_monitor.c - the server's view during a `dsinfer bench serve` run: a thread samples
 * `GET /metrics` every interval (queue depth, running sequences, cluster nodes by state, re-plans,
 * rebalances, live switches, expert-load imbalance: what dsinfer exports, see docs/API.md) and,
 * given the coordinator's control address, `dsinfer cluster status --json` (per-node state).
 * Changes between two samples become events: join, drain, left, failure, replan, rebalance,
 * live_switch, degraded, serving. Against a server that is not dsinfer the samples stay empty.
 */
#include "bench_serve.h"
#include "dsi_clock.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_NODES 256

typedef bs_node_state_t node_view_t; /* a node as cluster status last showed it */

struct bs_monitor {
    const bs_target_t *target;
    const char *coordinator, *self;
    double t0, interval_s;
    pthread_t thread;
    atomic_int stop;
    pthread_mutex_t lock; /* samples and events: the thread appends, bs_monitor_note too */
    bs_sample_t *samples;
    int n_samples, cap_samples;
    bs_event_t *events;
    int n_events, cap_events;
    bs_cluster_snap_t *snaps; /* every cluster status answer */
    int n_snaps, cap_snaps;
    int has_metrics, has_cluster, metrics_misses;
    node_view_t nodes[MAX_NODES];
    int n_nodes;
    long long epoch;
    int drained[MAX_NODES]; /* by index in nodes[]: gone by a drain; snapshots say "left" */
};

static void add_event(bs_monitor_t *m, double t, const char *kind, const char *source,
                      const char *detail)
{
    pthread_mutex_lock(&m->lock);
    if (m->n_events == m->cap_events) {
        int cap = m->cap_events ? m->cap_events * 2 : 32;
        bs_event_t *e = realloc(m->events, sizeof(*e) * (size_t)cap);
        if (e == NULL) {
            pthread_mutex_unlock(&m->lock);
            return; /* an event lost to memory: the run goes on */
        }
        m->events = e;
        m->cap_events = cap;
    }
    bs_event_t *e = &m->events[m->n_events++];
    e->t = t;
    snprintf(e->kind, sizeof(e->kind), "%s", kind);
    snprintf(e->source, sizeof(e->source), "%s", source);
    snprintf(e->detail, sizeof(e->detail), "%s", detail);
    pthread_mutex_unlock(&m->lock);
}

void bs_monitor_note(bs_monitor_t *m, double t, const char *kind, const char *detail)
{
    if (m != NULL)
        add_event(m, t, kind, "bench", detail);
}

/* ---- /metrics ------------------------------------------------------------------------------- */

/* Events from the difference of two /metrics samples. */
static void metrics_events(bs_monitor_t *m, const bs_sample_t *a, const bs_sample_t *b)
{
    char d[BS_EVENT_DETAIL];
    struct {
        double before, after;
        const char *kind, *what;
    } counters[] = {
        {a->replans, b->replans, "replan", "re-plans"},
        {a->rebalances, b->rebalances, "rebalance", "rebalances"},
        {a->live_switches, b->live_switches, "live_switch", "live switches"},
    };
    for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++) {
        if (counters[i].before >= 0 && counters[i].after > counters[i].before) {
            snprintf(d, sizeof(d), "%s %.0f -> %.0f", counters[i].what, counters[i].before,
                     counters[i].after);
            add_event(m, b->t, counters[i].kind, "metrics", d);
        }
    }
    if (a->cluster_ready >= 0 && b->cluster_ready >= 0 && a->cluster_ready != b->cluster_ready)
        add_event(m, b->t, b->cluster_ready > 0 ? "serving" : "degraded", "metrics",
                  b->cluster_ready > 0 ? "every node of the plan ready"
                                       : "a node of the plan is not ready");
    if (m->has_cluster || m->coordinator != NULL)
        return; /* cluster status names the nodes: its events say more */
    if (a->nodes_joined >= 0 && b->nodes_joined > a->nodes_joined) {
        snprintf(d, sizeof(d), "%.0f node(s) joined, %.0f in all",
                 b->nodes_joined - a->nodes_joined, b->nodes_joined);
        add_event(m, b->t, "join", "metrics", d);
    }
    if (a->nodes_dead >= 0 && b->nodes_dead > a->nodes_dead) {
        snprintf(d, sizeof(d), "%.0f node(s) lost", b->nodes_dead - a->nodes_dead);
        add_event(m, b->t, "failure", "metrics", d);
    }
}

static void sample_metrics(bs_monitor_t *m, double t)
{
    if (m->metrics_misses >= 3 && !m->has_metrics)
        return; /* not a dsinfer server: stop asking */
    char *body = NULL;
    int status = bs_http_get(m->target, "/metrics", 1000, &body);
    bs_sample_t s = {.t = t};
    int found = status == 200 && body != NULL ? bs_metrics_parse(body, &s) : 0;
    free(body);
    if (found == 0) {
        m->metrics_misses++;
        return;
    }
    m->has_metrics = 1;
    pthread_mutex_lock(&m->lock);
    if (m->n_samples == m->cap_samples) {
        int cap = m->cap_samples ? m->cap_samples * 2 : 256;
        bs_sample_t *g = realloc(m->samples, sizeof(*g) * (size_t)cap);
        if (g == NULL) {
            pthread_mutex_unlock(&m->lock);
            return;
        }
        m->samples = g;
        m->cap_samples = cap;
    }
    m->samples[m->n_samples++] = s;
    bs_sample_t prev = m->n_samples > 1 ? m->samples[m->n_samples - 2] : s;
    pthread_mutex_unlock(&m->lock);
    if (m->n_samples > 1)
        metrics_events(m, &prev, &s);
}

/* ---- dsinfer cluster status ----------------------------------------------------------------- */

static node_view_t *find_node(bs_monitor_t *m, int id)
{
    for (int i = 0; i < m->n_nodes; i++)
        if (m->nodes[i].id == id)
            return &m->nodes[i];
    return NULL;
}

/* The last snapshot shows node `id` as "left" rather than "dead": it drained. */
static void mark_left(bs_monitor_t *m, int id)
{
    pthread_mutex_lock(&m->lock);
    bs_cluster_snap_t *last = m->n_snaps > 0 ? &m->snaps[m->n_snaps - 1] : NULL;
    for (int k = 0; last != NULL && k < last->n_nodes; k++)
        if (last->nodes[k].id == id && strcmp(last->nodes[k].state, "dead") == 0)
            snprintf(last->nodes[k].state, sizeof(last->nodes[k].state), "left");
    pthread_mutex_unlock(&m->lock);
}

/* Keeps the states of one answer for the timeline's node chart. */
static void add_snapshot(bs_monitor_t *m, double t, const json_t *nodes)
{
    size_t n = json_array_size(nodes);
    bs_node_state_t *v = calloc(n ? n : 1, sizeof(*v));
    if (v == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        const json_t *x = json_array_get(nodes, i);
        const char *name = json_string_value(json_object_get(x, "name"));
        const char *state = json_string_value(json_object_get(x, "state"));
        v[i].id = (int)json_integer_value(json_object_get(x, "id"));
        snprintf(v[i].name, sizeof(v[i].name), "%s", name ? name : "?");
        snprintf(v[i].state, sizeof(v[i].state), "%s", state ? state : "?");
        const node_view_t *known = find_node(m, v[i].id);
        if (known != NULL && m->drained[known - m->nodes] && strcmp(v[i].state, "dead") == 0)
            snprintf(v[i].state, sizeof(v[i].state), "left");
    }
    pthread_mutex_lock(&m->lock);
    if (m->n_snaps == m->cap_snaps) {
        int cap = m->cap_snaps ? m->cap_snaps * 2 : 256;
        bs_cluster_snap_t *g = realloc(m->snaps, sizeof(*g) * (size_t)cap);
        if (g == NULL) {
            pthread_mutex_unlock(&m->lock);
            free(v);
            return;
        }
        m->snaps = g;
        m->cap_snaps = cap;
    }
    m->snaps[m->n_snaps++] = (bs_cluster_snap_t){.t = t, .n_nodes = (int)n, .nodes = v};
    pthread_mutex_unlock(&m->lock);
}

static void sample_cluster(bs_monitor_t *m, double t)
{
    char *text = bs_cluster_status(m->self, m->coordinator);
    json_error_t err;
    json_t *root = text ? json_loads(text, 0, &err) : NULL;
    free(text);
    json_t *nodes = json_object_get(root, "nodes");
    if (!json_is_array(nodes)) {
        json_decref(root);
        return;
    }
    int first = !m->has_cluster;
    m->has_cluster = 1;
    add_snapshot(m, t, nodes);
    char d[BS_EVENT_DETAIL];
    long long epoch = json_integer_value(json_object_get(root, "epoch"));
    if (!first && epoch != m->epoch && !m->has_metrics) {
        snprintf(d, sizeof(d), "epoch %lld -> %lld", m->epoch, epoch);
        add_event(m, t, "replan", "cluster", d);
    }
    m->epoch = epoch;
    int seen[MAX_NODES] = {0};
    for (size_t i = 0; i < json_array_size(nodes); i++) {
        json_t *n = json_array_get(nodes, i);
        int id = (int)json_integer_value(json_object_get(n, "id"));
        const char *name = json_string_value(json_object_get(n, "name"));
        const char *state = json_string_value(json_object_get(n, "state"));
        if (state == NULL)
            continue;
        node_view_t *v = find_node(m, id);
        if (v == NULL && m->n_nodes < MAX_NODES) {
            v = &m->nodes[m->n_nodes++];
            v->id = id;
            snprintf(v->name, sizeof(v->name), "%s", name ? name : "?");
            v->state[0] = '\0';
            if (!first) {
                snprintf(d, sizeof(d), "node %d (%s) joined", id, v->name);
                add_event(m, t, "join", "cluster", d);
            }
        }
        if (v == NULL)
            continue;
        seen[v - m->nodes] = 1;
        if (!first && strcmp(v->state, state) != 0) {
            if (strcmp(state, "draining") == 0) {
                snprintf(d, sizeof(d), "node %d (%s) draining", id, v->name);
                add_event(m, t, "drain", "cluster", d);
            } else if (strcmp(state, "drained") == 0) {
                /* cluster status names a drained node: no need to tell it from a failure */
                snprintf(d, sizeof(d), "node %d (%s) drained and left", id, v->name);
                add_event(m, t, strcmp(v->state, "draining") == 0 ? "left" : "drain", "cluster",
                          d);
                m->drained[v - m->nodes] = 1;
            } else if (strcmp(state, "dead") == 0 && strcmp(v->state, "draining") == 0) {
                snprintf(d, sizeof(d), "node %d (%s) drained and left", id, v->name);
                add_event(m, t, "left", "cluster", d);
                m->drained[v - m->nodes] = 1;
                mark_left(m, id);
            } else if (strcmp(state, "dead") == 0) {
                /* cluster status says "drained" for a node that left as asked: "dead" is a loss */
                snprintf(d, sizeof(d), "node %d (%s) lost", id, v->name);
                add_event(m, t, "failure", "cluster", d);
            }
        }
        snprintf(v->state, sizeof(v->state), "%s", state);
    }
    for (int i = 0; i < m->n_nodes; i++) { /* gone from the list: drained and released */
        if (!seen[i] && strcmp(m->nodes[i].state, "gone") != 0) {
            snprintf(d, sizeof(d), "node %d (%s) left", m->nodes[i].id, m->nodes[i].name);
            add_event(m, t, "left", "cluster", d);
            snprintf(m->nodes[i].state, sizeof(m->nodes[i].state), "gone");
        }
    }
    json_decref(root);
}

/* ---- the thread ----------------------------------------------------------------------------- */

static void *monitor_main(void *arg)
{
    bs_monitor_t *m = arg;
    double next = dsi_now_s();
    while (!atomic_load(&m->stop)) {
        double now = dsi_now_s();
        if (now < next) {
            usleep((useconds_t)(fmin(next - now, 0.05) * 1e6));
            continue;
        }
        next += m->interval_s;
        if (next < now)
            next = now + m->interval_s; /* a slow sample: skip, don't burst */
        if (m->coordinator != NULL)
            sample_cluster(m, now - m->t0);
        sample_metrics(m, dsi_now_s() - m->t0);
    }
    return NULL;
}

bs_monitor_t *bs_monitor_start(const bs_target_t *t, const char *coordinator, const char *self,
                               double t0, double interval_s)
{
    bs_monitor_t *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return NULL;
    m->target = t;
    m->coordinator = coordinator;
    m->self = self;
    m->t0 = t0;
    m->interval_s = interval_s;
    atomic_init(&m->stop, 0);
    pthread_mutex_init(&m->lock, NULL);
    if (pthread_create(&m->thread, NULL, monitor_main, m) != 0) {
        fprintf(stderr, "dsinfer bench serve: cannot start the /metrics sampler: %s\n",
                strerror(errno));
        pthread_mutex_destroy(&m->lock);
        free(m);
        return NULL;
    }
    return m;
}

void bs_monitor_stop(bs_monitor_t *m)
{
    if (m == NULL || atomic_exchange(&m->stop, 1))
        return;
    pthread_join(m->thread, NULL);
}

const bs_sample_t *bs_monitor_samples(const bs_monitor_t *m, int *n)
{
    *n = m ? m->n_samples : 0;
    return m ? m->samples : NULL;
}

const bs_event_t *bs_monitor_events(const bs_monitor_t *m, int *n)
{
    *n = m ? m->n_events : 0;
    return m ? m->events : NULL;
}

int bs_monitor_has_metrics(const bs_monitor_t *m)
{
    return m != NULL && m->has_metrics;
}

const bs_cluster_snap_t *bs_monitor_cluster(const bs_monitor_t *m, int *n)
{
    *n = m ? m->n_snaps : 0;
    return m ? m->snaps : NULL;
}

int bs_monitor_has_cluster(const bs_monitor_t *m)
{
    return m != NULL && m->has_cluster;
}

void bs_monitor_destroy(bs_monitor_t *m)
{
    if (m == NULL)
        return;
    bs_monitor_stop(m);
    pthread_mutex_destroy(&m->lock);
    for (int i = 0; i < m->n_snaps; i++)
        free(m->snaps[i].nodes);
    free(m->snaps);
    free(m->samples);
    free(m->events);
    free(m);
}
