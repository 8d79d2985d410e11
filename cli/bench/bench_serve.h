/*
 * bench_serve.h - internals of `dsinfer bench serve`, the load tool for the HTTP API:
 * bench_serve.c (options, the levels, the table), bench_serve_client.c (one keep-alive
 * connection per worker thread sending streamed requests and timing their SSE events),
 * bench_serve_report.c (percentiles, JSON and SVG output).
 */
#ifndef BENCH_SERVE_H
#define BENCH_SERVE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    char host[256];
    char port[8];
    char path[512]; /* the endpoint path: "/v1/completions" or "/v1/chat/completions" */
    const char *url;
    const char *model;
    const char *api_key; /* NULL: no Authorization header */
    int chat;            /* /v1/chat/completions instead of /v1/completions */
    int prompt_len;      /* words of the synthetic prompt */
    int max_tokens;
    int timeout_s; /* per request */
} bs_target_t;

/* What one request gave. */
typedef struct {
    int status;       /* HTTP status; 0 = no response (connection failed or timed out) */
    int stream_error; /* 200 but an error event arrived in the stream */
    int timed_out;
    double ttft;    /* seconds from sending to the first text event; < 0 when none */
    double tpot;    /* mean seconds per token after the first; < 0 when under 2 tokens */
    double latency; /* seconds from sending to the end of the response */
    int64_t tokens; /* completion tokens (usage if the server sent it, else text events) */
} bs_result_t;

/* One concurrency level's run: workers take request indices from `next` until n_requests. */
typedef struct {
    const bs_target_t *target;
    int n_requests;
    atomic_int next;
    atomic_int done;
    bs_result_t *results; /* [n_requests], each written by the worker that ran it */
} bs_run_t;

/* A worker thread's body: one keep-alive connection (reopened after errors). */
void *bs_worker_main(void *run);

/*
 * The synthetic prompt of request `index`: `words` words from a fixed vocabulary, different per
 * index (so no two requests share a prefix). malloc'ed (caller frees).
 */
char *bs_prompt(int index, int words);

/* GET /v1/models and return the first id (malloc'ed), or NULL with the reason on stderr. */
char *bs_first_model(const bs_target_t *t);

/* Aggregates of one level. */
typedef struct {
    int concurrency;
    int requests, ok;
    double duration_s; /* first request sent to last response ended */
    double req_per_s, tok_per_s;
    int64_t tokens;
    double ttft[3], tpot[3], latency[3]; /* p50, p90, p99 in seconds; -1 when no data */
    int n_errors;
    struct {
        char what[16]; /* "429", "conn", "timeout", "stream" */
        int count;
    } errors[16];
} bs_level_t;

/* Summarise a finished run (sorts copies of the samples). */
void bs_level_summarise(bs_level_t *level, const bs_result_t *results, int n, double duration_s);
/* Nearest-rank percentile p (0..100) of n sorted values; -1 when n = 0. */
double bs_percentile(const double *sorted, int n, double p);

int bs_write_json(const char *path, const bs_target_t *t, const bs_level_t *levels, int n_levels);
int bs_write_svg(const char *path, const bs_target_t *t, const bs_level_t *levels, int n_levels);

#endif
