/*
 * test_unit_pool.c - dsi_pool: every index of [0, n) is run exactly once, in at most
 * dsi_pool_threads() chunks of at least `grain` (dsi_pool_run_dynamic: at most per_thread times
 * that, and a blocked thread's share is taken by the others); back-to-back calls (the spinning
 * hand-off), dynamic and static calls alternating while workers are late, and calls after the
 * workers went to sleep (the condition-variable path) all complete;
 * and the per-call overhead is printed. Run it under TSan too (DSINFER_TSAN=ON): the chunks write
 * disjoint plain memory, so any overlap or missing happens-before is a reported race.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "dsi_clock.h"
#include "dsi_pool.h"
#include "dsi_test.h"

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define FAST_CALLS 2000
#else
#define FAST_CALLS 10000
#endif

typedef struct {
    int *marks;          /* [n]: times each index ran */
    int64_t *chunk_lens; /* [threads]: length of each chunk, by order of arrival */
    _Atomic int n_chunks;
    int64_t grain;
} cover_t;

static void cover_cb(void *arg, int64_t begin, int64_t end)
{
    cover_t *c = arg;
    for (int64_t i = begin; i < end; i++)
        c->marks[i]++;
    int k = atomic_fetch_add(&c->n_chunks, 1);
    c->chunk_lens[k] = end - begin;
}

/* per_thread 0: dsi_pool_run; else dsi_pool_run_dynamic with that many chunks per thread */
static void test_cover(int threads, int per_thread)
{
    dsi_pool_t *pool = dsi_pool_create(threads);
    DSI_CHECK(pool != NULL);
    if (pool == NULL)
        return;
    DSI_CHECK_INT_EQ(dsi_pool_threads(pool), threads);
    static const int64_t ns[] = {0, 1, 2, 3, 7, 100, 1001};
    static const int64_t grains[] = {0, 1, 4, 64, 1000};
    for (size_t a = 0; a < sizeof(ns) / sizeof(ns[0]); a++) {
        for (size_t b = 0; b < sizeof(grains) / sizeof(grains[0]); b++) {
            int64_t n = ns[a], grain = grains[b];
            cover_t c = {calloc((size_t)n + 1, sizeof(int)), calloc(64, sizeof(int64_t)), 0, grain};
            if (per_thread == 0)
                dsi_pool_run(pool, n, grain, cover_cb, &c);
            else
                dsi_pool_run_dynamic(pool, n, grain, per_thread, cover_cb, &c);
            int bad = 0;
            for (int64_t i = 0; i < n; i++)
                bad += c.marks[i] != 1;
            DSI_CHECK_INT_EQ(bad, 0);
            int chunks = atomic_load(&c.n_chunks);
            DSI_CHECK(chunks <= threads * (per_thread > 0 ? per_thread : 1));
            DSI_CHECK(n == 0 ? chunks == 0 : chunks >= 1);
            for (int k = 0; k < chunks; k++)
                DSI_CHECK(chunks == 1 || c.chunk_lens[k] >= (grain > 1 ? grain : 1));
            free(c.marks);
            free(c.chunk_lens);
        }
    }
    dsi_pool_destroy(pool);
}

/*
 * dsi_pool_run_dynamic: the first chunk to start blocks until every other chunk is done, which
 * only the other threads claiming them can bring about (a thread the OS holds back, stood for by
 * the blocked one). 10 s without it fails the test instead of hanging it.
 */
typedef struct {
    _Atomic int started, done;
    int chunks, timed_out;
} late_t;

static void late_cb(void *arg, int64_t begin, int64_t end)
{
    (void)begin;
    (void)end;
    late_t *l = arg;
    if (atomic_fetch_add(&l->started, 1) == 0) {
        const int64_t deadline = dsi_now_ns() + 10 * (int64_t)1000000000;
        while (atomic_load(&l->done) < l->chunks - 1) {
            if (dsi_now_ns() > deadline) {
                l->timed_out = 1;
                break;
            }
            sched_yield();
        }
    }
    atomic_fetch_add(&l->done, 1);
}

static void test_late_thread(void)
{
    dsi_pool_t *pool = dsi_pool_create(2);
    DSI_CHECK(pool != NULL);
    if (pool == NULL)
        return;
    late_t l = {0, 0, 8, 0};
    dsi_pool_run_dynamic(pool, 800, 100, 4, late_cb, &l);
    DSI_CHECK_INT_EQ(atomic_load(&l.done), 8);
    DSI_CHECK_INT_EQ(l.timed_out, 0);
    dsi_pool_destroy(pool);
}

typedef struct {
    int64_t *slots; /* [n] */
} sum_t;

static void add_cb(void *arg, int64_t begin, int64_t end)
{
    sum_t *s = arg;
    for (int64_t i = begin; i < end; i++)
        s->slots[i] += i;
}

static void test_many_calls(int threads, int calls)
{
    dsi_pool_t *pool = dsi_pool_create(threads);
    DSI_CHECK(pool != NULL);
    if (pool == NULL)
        return;
    int64_t slots[16] = {0};
    sum_t s = {slots};
    double t0 = dsi_now_s();
    for (int i = 0; i < calls; i++)
        dsi_pool_run(pool, 16, 1, add_cb, &s);
    double per_call = (dsi_now_s() - t0) / calls;
    for (int64_t i = 0; i < 16; i++)
        DSI_CHECK_INT_EQ(slots[i], i * calls);
    printf("pool of %d threads: %.2f us per back-to-back dsi_pool_run\n", threads, per_call * 1e6);

    /* let the workers fall asleep (spin budget is 50 us), then call again: the wake-up path */
    for (int round = 0; round < 3; round++) {
        struct timespec nap = {0, 2000000};
        nanosleep(&nap, NULL);
        double t1 = dsi_now_s();
        dsi_pool_run(pool, 16, 1, add_cb, &s);
        if (round == 2)
            printf("  call after 2 ms idle: %.1f us\n", (dsi_now_s() - t1) * 1e6);
    }
    for (int64_t i = 0; i < 16; i++)
        DSI_CHECK_INT_EQ(slots[i], i * (calls + 3));
    dsi_pool_destroy(pool);
}

/*
 * Dynamic runs return once their chunks are done, so a worker may still be on its way through an
 * earlier run when the next one starts: back-to-back dynamic and static runs, alternating, over
 * more threads than cores (workers often late), each index once per run.
 */
static void test_mixed_calls(int threads, int calls)
{
    dsi_pool_t *pool = dsi_pool_create(threads);
    DSI_CHECK(pool != NULL);
    if (pool == NULL)
        return;
    int64_t slots[64] = {0};
    sum_t s = {slots};
    for (int i = 0; i < calls; i++) {
        if (i % 3 == 2)
            dsi_pool_run(pool, 64, 1, add_cb, &s);
        else
            dsi_pool_run_dynamic(pool, 64, 1 + i % 5, 1 + i % 4, add_cb, &s);
    }
    for (int64_t i = 0; i < 64; i++)
        DSI_CHECK_INT_EQ(slots[i], i * calls);
    dsi_pool_destroy(pool);
}

/* A slow chunk makes the caller outlast its spin budget and sleep on `done`. */
static void slow_cb(void *arg, int64_t begin, int64_t end)
{
    (void)arg;
    if (begin > 0) {
        struct timespec nap = {0, 3000000};
        nanosleep(&nap, NULL);
    }
    (void)end;
}

int main(int argc, char **argv)
{
    (void)argc;
#if defined(__SANITIZE_THREAD__)
    /*
     * Every test program links UCX, whose libucm replaces madvise(); glibc calls it when a thread
     * exits, and under TSan the hook's uninstrumented rwlock crashes. UCX reads the switch only
     * at load time, so set it and start again.
     */
    if (getenv("UCX_MEM_EVENTS") == NULL) {
        setenv("UCX_MEM_EVENTS", "no", 1);
        execv("/proc/self/exe", argv);
    }
#else
    (void)argv;
#endif
    for (int threads = 1; threads <= 5; threads++) {
        test_cover(threads, 0);
        test_cover(threads, 1);
        test_cover(threads, 4);
    }
    test_late_thread();
    test_many_calls(2, FAST_CALLS);
    test_many_calls(3, FAST_CALLS / 10); /* oversubscribed on 2 cores: slow by nature */
    test_mixed_calls(2, FAST_CALLS);
    test_mixed_calls(4, FAST_CALLS / 10);

    dsi_pool_t *pool = dsi_pool_create(2);
    for (int i = 0; i < 3; i++)
        dsi_pool_run(pool, 2, 1, slow_cb, NULL);
    dsi_pool_destroy(pool);
    dsi_pool_destroy(NULL);

    pool = dsi_pool_create(0); /* online CPUs */
    DSI_CHECK(pool != NULL && dsi_pool_threads(pool) >= 1);
    dsi_pool_destroy(pool);
    return dsi_test_finish();
}
