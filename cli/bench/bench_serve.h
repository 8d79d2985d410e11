/*
 * bench_serve.h - internals of `dsinfer bench serve`, the load tool for OpenAI-compatible HTTP
 * servers. Files:
 *   bench_serve.c          the order of a run, the table printed
 *   bench_serve_opts.c     options, usage, the levels they ask for
 *   bench_serve_gen.c      the seeded random streams: arrivals, lengths, the chats of a dataset
 *   bench_serve_run.c      the arrival processes: fixed concurrency, a request rate, a ramp
 *   bench_serve_client.c   one keep-alive connection per worker thread; SSE events timed
 *   bench_serve_monitor.c  the server's view during the run: /metrics and cluster status, events
 *   bench_serve_scrape.c   reading /metrics text and running `dsinfer cluster status`
 *   bench_serve_stats.c    percentiles, SLOs and goodput, per-level summaries, the timeline
 *   bench_serve_json.c     the JSON results file (docs/API.md documents it) and --timeline
 *   bench_serve_svg.c      small SVG charts (axes, lines, event markers)
 *   bench_serve_charts.c   the timeline and latency-against-load charts (inline SVG)
 *   bench_serve_html.c     the self-contained HTML report and the --svg chart
 *   bench_serve_compare.c  `dsinfer bench compare A.json B.json`
 */
#ifndef BENCH_SERVE_H
#define BENCH_SERVE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- the target ----------------------------------------------------------------------------- */

typedef struct {
    char host[256];
    char port[8];
    char path[512]; /* the endpoint path: "/v1/completions" or "/v1/chat/completions" */
    const char *url;
    const char *model;
    const char *api_key; /* NULL: no Authorization header */
    int chat;            /* /v1/chat/completions instead of /v1/completions */
    int timeout_s;       /* per request */
} bs_target_t;

/* "http://host[:port][/base]" into t->host, t->port and the endpoint path; -1 with a message. */
int bs_parse_url(const char *url, int chat, bs_target_t *t);

/* ---- options (bench_serve_opts.c) ----------------------------------------------------------- */

typedef struct bs_level_spec bs_level_spec_t;

/* The command line, as given (parsed into plans and levels by the caller). */
typedef struct {
    const char *url, *model, *api, *key, *json, *svg, *html, *timeline, *levels, *rates, *ramp,
        *prompt_len, *output_len, *dataset, *slo, *coordinator;
    long long requests, timeout, max_concurrency, seed, shared_prefix;
    double burstiness, bucket;
    int requests_set, output_len_set, no_metrics;
} bs_opts_t;

void bs_usage(FILE *out);
/* 0, 1 after --help (usage printed), 2 for a usage error (message printed). */
int bs_opts_parse(int argc, char **argv, bs_opts_t *o);
/* The levels the options ask for; *out malloc'ed (caller frees). 0, or -1 with a message. */
int bs_levels_make(const bs_opts_t *o, bs_level_spec_t **out, int *n_out);

/* ---- random streams and the requests' contents (bench_serve_gen.c) -------------------------- */

typedef struct {
    uint64_t s[4];
} bs_rng_t;

/* Seeds a stream from (seed, stream): different streams of one seed are independent. */
void bs_rng_init(bs_rng_t *r, uint64_t seed, uint64_t stream);
uint64_t bs_rng_next(bs_rng_t *r);
/* Uniform in (0, 1): never 0, so log() of it is finite. */
double bs_rng_uniform(bs_rng_t *r);
/* Exponential with mean 1. */
double bs_rng_exponential(bs_rng_t *r);
/* Gamma with shape k > 0 and scale 1 (Marsaglia-Tsang; k < 1 by boosting). */
double bs_rng_gamma(bs_rng_t *r, double k);

/*
 * Arrival times (seconds from the start) of n requests at mean rate `rate` per second, as vLLM's
 * serving benchmark draws them: gaps are gamma with shape `burstiness` and mean 1/rate
 * (burstiness 1 is a Poisson process; below 1 burstier, above 1 more regular).
 * times[0] is the first gap. Deterministic in (seed, rate, burstiness).
 */
void bs_arrivals(uint64_t seed, double rate, double burstiness, int n, double *times);

/* A length: uniform over [min, max] (min == max: fixed). */
typedef struct {
    int min, max;
} bs_len_t;

/* "128" or "128:2048" within [1, limit]; -1 with a message naming opt. */
int bs_parse_len(const char *opt, const char *text, int limit, bs_len_t *out);

/* One chat of a dataset: the first user turn and the length of the answer that followed. */
typedef struct {
    char *prompt;     /* owned */
    int prompt_words; /* whitespace-separated words of the prompt */
    int answer_words; /* words of the reply (the output length to ask for); 0 when none */
} bs_chat_t;

typedef struct {
    bs_chat_t *chats;
    int n;
} bs_dataset_t;

/*
 * Reads ShareGPT-style chats: JSON lines (or one JSON array) of objects with "conversations":
 * [{"from": "human"|"user", "value": ...}, {"from": "gpt"|"assistant", "value": ...}, ...].
 * Only the first user turn and the reply after it are used; other entries are skipped. 0, or -1
 * with the cause on stderr. bs_dataset_free releases it.
 */
int bs_dataset_load(const char *path, bs_dataset_t *out);
void bs_dataset_free(bs_dataset_t *d);

/* What every request of a run is made of. */
typedef struct {
    uint64_t seed;
    bs_len_t prompt_len; /* words of the synthetic prompt */
    bs_len_t output_len; /* max_tokens */
    int output_len_set;  /* with a dataset: use output_len instead of the chat's answer length */
    const bs_dataset_t *dataset; /* NULL: synthetic prompts */
    int max_output;              /* a dataset's answer lengths are capped at this */
    int shared_prefix;           /* words of one prefix every prompt starts with (0: none) */
} bs_plan_t;

/* One request's contents, a function of (plan, index) only. */
typedef struct {
    char *prompt; /* malloc'ed; the caller frees */
    int prompt_words;
    int max_tokens;
} bs_req_t;

/* The request `index` of the plan (after the shared prefix, when the plan has one; the prefix's
 * words count in prompt_words); 0, or -1 when out of memory. */
int bs_plan_request(const bs_plan_t *plan, int index, bs_req_t *out);

/*
 * The synthetic prompt of request `index`: `words` words from a fixed vocabulary, different per
 * (seed, index), so no two requests share a prefix. malloc'ed (caller frees).
 */
char *bs_prompt(uint64_t seed, int index, int words);

/* ---- one request's outcome (bench_serve_client.c) ------------------------------------------- */

typedef struct {
    int level;        /* index of the level (or the ramp) that sent it */
    int status;       /* HTTP status; 0 = no response (connection failed or timed out) */
    int stream_error; /* 200 but an error event arrived in the stream, or it broke off */
    int timed_out;
    int prompt_words, max_tokens;
    double start;          /* seconds from the run's start to sending */
    double ttft;           /* seconds from sending to the first text event; < 0 when none */
    double tpot;           /* (last event - first) / (tokens - 1); < 0 when under 2 tokens */
    double latency;        /* end-to-end: seconds from sending to the end of the response */
    int64_t tokens;        /* completion tokens (usage if the server sent it, else text events) */
    int64_t prompt_tokens; /* usage.prompt_tokens; -1 when not sent */
    int n_events;          /* text events */
    float *events;         /* [n_events] seconds from sending to each text event (malloc'ed) */
} bs_result_t;

/* A request is good: HTTP 200 and a whole stream without an error event. */
static inline int bs_result_ok(const bs_result_t *r)
{
    return r->status == 200 && !r->stream_error;
}

/* ---- the arrival processes (bench_serve_run.c) ---------------------------------------------- */

typedef enum { BS_MODE_CONCURRENCY, BS_MODE_RATE, BS_MODE_RAMP } bs_mode_t;

/* One level: a concurrency, a request rate, or the ramp. */
struct bs_level_spec {
    bs_mode_t mode;
    int concurrency;        /* BS_MODE_CONCURRENCY: workers; RATE: the most requests in flight */
    double rate;            /* BS_MODE_RATE: requests per second (mean) */
    double burstiness;      /* BS_MODE_RATE: gamma shape of the gaps */
    int ramp_from, ramp_to; /* BS_MODE_RAMP: concurrency from .. to, linearly over ramp_s */
    double ramp_s;
    int n_requests; /* requests to send (the ramp stops at ramp_s or here) */
};

/* Shared state of one level's run; workers take request indices from `next`. */
typedef struct {
    const bs_target_t *target;
    const bs_plan_t *plan;
    const bs_level_spec_t *spec;
    int level;              /* index of the level */
    int first_index;        /* plan index of this level's request 0 (each level gets new prompts) */
    double t0;              /* the run's clock zero (dsi_now_s) */
    double level_t0;        /* this level's start */
    const double *arrivals; /* BS_MODE_RATE: [n_requests] send times from level_t0 */
    atomic_int next, done, in_flight;
    atomic_int stop;      /* set on SIGINT: no new request */
    bs_result_t *results; /* [n_requests], each written by the worker that ran it */
} bs_run_t;

/*
 * Runs one level to its end; the results land in run->results ([0, *n_sent) were sent).
 * 0, or -1 when no worker could start.
 */
int bs_level_run(bs_run_t *run, int show_progress, int *n_sent);

/* A worker thread's body: one keep-alive connection (reopened after errors). */
void *bs_worker_main(void *run);

/* Sends request `index` of the run on *fd (connecting if needed) and fills *res. */
void bs_request_run(const bs_run_t *run, int index, int *fd, bs_result_t *res);

/* GET /v1/models and return the first id (malloc'ed), or NULL with the reason on stderr. */
char *bs_first_model(const bs_target_t *t);

/*
 * GET `path` on the target's host (a new connection, closed after). *body gets the response body
 * (malloc'ed, NUL-terminated) and the status is returned; -1 when no response came.
 */
int bs_http_get(const bs_target_t *t, const char *path, int timeout_ms, char **body);

/* ---- the server's view (bench_serve_monitor.c) ---------------------------------------------- */

/* One /metrics sample; a field is < 0 when the server does not export it. */
typedef struct {
    double t; /* seconds from the run's start */
    double queue_depth, running, active_generations, cluster_sequences;
    double nodes_joined, nodes_ready, nodes_dead, cluster_ready;
    double replans, rebalances, live_switches, imbalance;
    double spec_steps, spec_tokens; /* speculative decoding's counters */
} bs_sample_t;

#define BS_EVENT_DETAIL 96

/* A cluster event seen during the run. */
typedef struct {
    double t;
    char kind[16];  /* join, drain, left, failure, replan, rebalance, live_switch, degraded,
                       serving, level */
    char source[8]; /* metrics, cluster, bench */
    char detail[BS_EVENT_DETAIL];
} bs_event_t;

typedef struct bs_monitor bs_monitor_t;

/*
 * Starts sampling `/metrics` of the target (and `dsinfer cluster status --json` of coordinator,
 * when not NULL, through the executable `self`) every interval_s, on a thread of its own, until
 * bs_monitor_stop. NULL when the thread could not start (the run goes on without it).
 */
bs_monitor_t *bs_monitor_start(const bs_target_t *t, const char *coordinator, const char *self,
                               double t0, double interval_s);
/* Adds an event of the bench itself (a level starts). Thread-safe. */
void bs_monitor_note(bs_monitor_t *m, double t, const char *kind, const char *detail);
/* Stops the thread; the samples and events stay readable until bs_monitor_destroy. */
void bs_monitor_stop(bs_monitor_t *m);
const bs_sample_t *bs_monitor_samples(const bs_monitor_t *m, int *n);
const bs_event_t *bs_monitor_events(const bs_monitor_t *m, int *n);
/* 1 when /metrics answered with dsinfer's families at least once. */
int bs_monitor_has_metrics(const bs_monitor_t *m);
/* 1 when cluster status answered at least once. */
int bs_monitor_has_cluster(const bs_monitor_t *m);

/* A node as one `cluster status` showed it. */
typedef struct {
    int id;
    char name[32];
    char state[16]; /* joined, ready, draining, dead */
} bs_node_state_t;

/* One `cluster status` answer: every node's state at time t. */
typedef struct {
    double t;
    int n_nodes;
    bs_node_state_t *nodes; /* [n_nodes], owned by the monitor */
} bs_cluster_snap_t;

/* The cluster status answers, in time order (valid until bs_monitor_destroy). */
const bs_cluster_snap_t *bs_monitor_cluster(const bs_monitor_t *m, int *n);
void bs_monitor_destroy(bs_monitor_t *m);

/*
 * Parses Prometheus text into a sample (fields it lacks stay -1). Returns how many dsinfer_
 * families of the sample it found. (bench_serve_scrape.c)
 */
int bs_metrics_parse(const char *text, bs_sample_t *out);
/*
 * Runs `self cluster status --coordinator ADDR --json --timeout-ms 2000` (killed after 5 s) and
 * returns its stdout (malloc'ed, caller frees), or NULL when it failed. (bench_serve_scrape.c)
 */
char *bs_cluster_status(const char *self, const char *coordinator);

/* ---- statistics (bench_serve_stats.c) ------------------------------------------------------- */

/* Service-level objectives in seconds; 0 = none for that figure. */
typedef struct {
    double ttft, tpot, e2el;
} bs_slo_t;

/* "ttft=2s,tpot=100ms,e2el=10s"; -1 with a message. */
int bs_parse_slo(const char *text, bs_slo_t *out);
/* 1 when a good request meets every objective (a request with no TPOT meets the TPOT one). */
int bs_slo_met(const bs_slo_t *slo, const bs_result_t *r);

/* Nearest-rank percentile p (1..100) of n sorted values: the value at rank ceil(p n / 100);
 * -1 when n = 0. */
double bs_percentile(const double *sorted, int n, int p);

/* p50, p90, p99 and mean; -1 each when there is no value. */
typedef struct {
    double p50, p90, p99, mean;
    int n;
} bs_pct_t;

/* Percentiles of n values (sorted in place). */
void bs_pct_compute(double *v, int n, bs_pct_t *out);

#define BS_MAX_ERROR_KINDS 16

typedef struct {
    char what[16]; /* "429", "conn", "timeout", "stream" */
    int count;
} bs_error_count_t;

/* What one level gave. */
typedef struct {
    bs_level_spec_t spec;
    int requests, ok, slo_met;
    double start, duration_s; /* from the run's start; first sent to last ended */
    double req_per_s, tok_per_s, goodput;
    int64_t tokens, prompt_tokens;
    bs_pct_t ttft, tpot, itl, e2el;
    int n_errors;
    bs_error_count_t errors[BS_MAX_ERROR_KINDS];
} bs_level_t;

/* Summarises n results of one level that ran from `start` for duration_s seconds. */
void bs_level_summarise(bs_level_t *level, const bs_result_t *res, int n, const bs_slo_t *slo,
                        double start, double duration_s);
/* The error kind of a failed request ("429", "conn", "timeout", "stream"). */
void bs_error_kind(const bs_result_t *r, char what[16]);
/* Rounds x to the 9 significant digits the JSON keeps, so that numbers derived from the JSON's
 * records equal the summary's. */
double bs_round9(double x);

/* One second of the timeline. */
typedef struct {
    double t; /* bucket start, seconds from the run's start */
    int started, completed, ok, errors;
    double output_tokens;      /* tokens whose text event arrived in the bucket */
    double in_flight;          /* mean requests in flight over the bucket */
    bs_pct_t ttft, tpot, e2el; /* of the requests that completed in it */
} bs_bucket_t;

/* Buckets of `width` seconds over [0, end) from n results; *out malloc'ed (caller frees). */
int bs_timeline_build(const bs_result_t *res, int n, double width, double end, bs_bucket_t **out,
                      int *n_out);

/* ---- output (bench_serve_json.c, bench_serve_html.c) ---------------------------------------- */

/* Everything a report is made of. */
typedef struct {
    const bs_target_t *target;
    const bs_plan_t *plan;
    const char *dataset_path; /* NULL: synthetic */
    const bs_slo_t *slo;
    const bs_level_t *levels;
    int n_levels;
    const bs_result_t *results; /* every request of every level, in order */
    int n_results;
    const bs_bucket_t *buckets;
    int n_buckets;
    double bucket_s, duration_s;
    const bs_monitor_t *monitor; /* NULL: not sampled */
} bs_report_t;

int bs_write_json(const char *path, const bs_report_t *r);
int bs_write_timeline(const char *path, const bs_report_t *r);
int bs_write_html(const char *path, const bs_report_t *r);
int bs_write_svg(const char *path, const bs_report_t *r);

/* A level's name for tables: "c=16", "rate=4/s", "ramp 1..64". */
void bs_level_name(const bs_level_spec_t *s, char *out, size_t cap);
/* The load of a level on the latency-vs-load chart: concurrency, or the rate sent. */
double bs_level_load(const bs_level_t *l);

/* ---- charts (bench_serve_charts.c) ---------------------------------------------------------- */

#define BS_CHART_WIDTH 1000 /* SVG units; the HTML page is as wide */

/* The timeline chart, one <svg id="timeline"> element. */
void bs_svg_timeline(FILE *f, const bs_report_t *r);
/* Throughput, TTFT and TPOT against load, one <svg id="ID"> element. */
void bs_svg_load(FILE *f, const bs_report_t *r, const char *id);
/* The colour an event kind is drawn in. */
const char *bs_event_color(const char *kind);

/* ---- SVG helpers (bench_serve_svg.c) -------------------------------------------------------- */

typedef struct {
    double x, y, w, h; /* plot area in SVG units */
    double xmin, xmax, ymax;
    int log_x; /* x on a log2 scale (concurrency levels) */
} bs_chart_t;

void bs_xml_text(FILE *f, const char *s);
/* A "nice" axis maximum: 1, 2 or 5 x 10^k at or above v. */
double bs_nice_max(double v);
double bs_chart_px(const bs_chart_t *c, double x);
double bs_chart_py(const bs_chart_t *c, double y);
/* Frame, grid, ticks, title and axis labels. */
void bs_chart_axes(FILE *f, const bs_chart_t *c, const char *title, const char *xlabel,
                   const char *ylabel);
/* A series (points with y < 0 are gaps) with dots, and its legend entry at `row`. */
void bs_chart_line(FILE *f, const bs_chart_t *c, const double *x, const double *y, int n,
                   const char *color, const char *name, int row, int dashed);
/* A vertical marker at x with a short label. */
void bs_chart_marker(FILE *f, const bs_chart_t *c, double x, const char *color, const char *label,
                     int label_row);

#endif
