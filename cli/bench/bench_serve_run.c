/*
 * bench_serve_run.c - the arrival processes of `dsinfer bench serve`, one level at a time:
 *   fixed concurrency: C workers, each sends its next request as soon as the last one ended
 *                      (a closed loop);
 *   request rate:      requests leave at precomputed arrival times (Poisson or gamma gaps), no
 *                      matter how many are in flight (an open loop), up to a cap of workers;
 *   ramp:              the number of active workers grows (or shrinks) linearly from one
 *                      concurrency to another over a duration.
 * Workers are threads with one blocking keep-alive connection each (bench_serve_client.c).
 */
#include "bench_serve.h"
#include "dsi_clock.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* Set by the SIGINT handler of bench_serve.c: no new request is sent, the report is written. */
extern volatile sig_atomic_t bs_interrupted;

typedef struct {
    bs_run_t *run;
    int k; /* this worker's number: a ramp activates workers 0 .. concurrency(t) - 1 */
} worker_t;

/* Sleeps until `deadline` (dsi_now_s clock) or an interruption. */
static void sleep_until(double deadline)
{
    while (!bs_interrupted) {
        double left = deadline - dsi_now_s();
        if (left <= 0)
            return;
        if (left > 0.1)
            left = 0.1; /* wake up to notice an interruption */
        struct timespec ts = {.tv_sec = (time_t)left, .tv_nsec = (long)(fmod(left, 1) * 1e9)};
        nanosleep(&ts, NULL);
    }
}

/* The concurrency a ramp asks for `elapsed` seconds into it: each of the levels FROM..TO gets an
 * equal share of the time, so TO is reached too, for the last share. */
static int ramp_level(const bs_level_spec_t *s, double elapsed)
{
    int steps = abs(s->ramp_to - s->ramp_from) + 1;
    int k = (int)floor(steps * elapsed / s->ramp_s + 1e-9);
    if (k > steps - 1)
        k = steps - 1;
    return s->ramp_to >= s->ramp_from ? s->ramp_from + k : s->ramp_from - k;
}

static void run_one(bs_run_t *run, int i, int *fd)
{
    atomic_fetch_add(&run->in_flight, 1);
    bs_request_run(run, i, fd, &run->results[i]);
    atomic_fetch_sub(&run->in_flight, 1);
    atomic_fetch_add(&run->done, 1);
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    bs_run_t *run = w->run;
    const bs_level_spec_t *s = run->spec;
    int fd = -1;
    while (!bs_interrupted) {
        if (s->mode == BS_MODE_RAMP) {
            double elapsed = dsi_now_s() - run->level_t0;
            if (elapsed >= s->ramp_s)
                break;
            if (w->k >= ramp_level(s, elapsed)) {
                if (fd >= 0) { /* an idle worker gives its connection back */
                    close(fd);
                    fd = -1;
                }
                usleep(20 * 1000);
                continue;
            }
        }
        int i = atomic_fetch_add(&run->next, 1);
        if (i >= s->n_requests)
            break;
        if (s->mode == BS_MODE_RATE)
            sleep_until(run->level_t0 + run->arrivals[i]);
        if (bs_interrupted) {
            run->results[i].status = -1; /* never sent */
            break;
        }
        run_one(run, i, &fd);
    }
    if (fd >= 0)
        close(fd);
    return NULL;
}

static void progress(const bs_run_t *run, double elapsed)
{
    const bs_level_spec_t *s = run->spec;
    int width = 30, done = atomic_load(&run->done);
    double frac = s->mode == BS_MODE_RAMP ? elapsed / s->ramp_s : (double)done / s->n_requests;
    int fill = (int)(width * (frac > 1 ? 1 : frac));
    char bar[64], name[64];
    for (int i = 0; i < width; i++)
        bar[i] = i < fill ? '#' : '-';
    bar[width] = '\0';
    bs_level_name(s, name, sizeof(name));
    fprintf(stderr, "\r  %-12s [%s] %d done, %d in flight  %.1f s ", name, bar, done,
            atomic_load(&run->in_flight), elapsed);
    fflush(stderr);
}

static int workers_of(const bs_level_spec_t *s)
{
    if (s->mode == BS_MODE_RAMP)
        return s->ramp_from > s->ramp_to ? s->ramp_from : s->ramp_to;
    return s->concurrency;
}

int bs_level_run(bs_run_t *run, int show_progress, int *n_sent)
{
    const bs_level_spec_t *s = run->spec;
    int n_workers = workers_of(s);
    if (s->mode != BS_MODE_RAMP && n_workers > s->n_requests)
        n_workers = s->n_requests;
    pthread_t *threads = calloc((size_t)n_workers, sizeof(*threads));
    worker_t *w = calloc((size_t)n_workers, sizeof(*w));
    if (threads == NULL || w == NULL) {
        fprintf(stderr, "dsinfer bench serve: out of memory\n");
        free(threads);
        free(w);
        return -1;
    }
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024); /* hundreds of workers in an open loop */
    atomic_init(&run->next, 0);
    atomic_init(&run->done, 0);
    atomic_init(&run->in_flight, 0);
    run->level_t0 = dsi_now_s();
    int started = 0;
    for (; started < n_workers; started++) {
        w[started] = (worker_t){.run = run, .k = started};
        if (pthread_create(&threads[started], &attr, worker_main, &w[started]) != 0) {
            fprintf(stderr, "dsinfer bench serve: could start only %d of %d workers\n", started,
                    n_workers);
            break;
        }
    }
    pthread_attr_destroy(&attr);
    int target = s->n_requests;
    while (show_progress && started > 0 && atomic_load(&run->done) < target) {
        double elapsed = dsi_now_s() - run->level_t0;
        progress(run, elapsed);
        if (s->mode == BS_MODE_RAMP && elapsed >= s->ramp_s)
            target = atomic_load(&run->next) < target ? atomic_load(&run->next) : target;
        if (bs_interrupted)
            break;
        usleep(100 * 1000);
    }
    for (int i = 0; i < started; i++)
        pthread_join(threads[i], NULL);
    if (show_progress) {
        progress(run, dsi_now_s() - run->level_t0);
        fprintf(stderr, "\n");
    }
    /* Indices taken but never sent (an interruption) leave the records; the rest move up. */
    int next = atomic_load(&run->next), n = 0;
    for (int i = 0; i < next && i < s->n_requests; i++)
        if (run->results[i].status != -1)
            run->results[n++] = run->results[i];
    *n_sent = n;
    free(threads);
    free(w);
    return started > 0 ? 0 : -1;
}
