#include "dsi_pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "dsi_clock.h"

/*
 * Generation-counted fork/join without a lock on the fast path.
 *
 * The caller writes the job fields, then bumps `generation` by 2 (seq_cst, so it also releases
 * the job; bit 0 of the generation says whether the job is dynamic). Static jobs: workers that
 * see a new generation run their chunk (index = worker id) and decrement `pending`; the caller
 * runs chunk 0 and waits for pending == 0. Dynamic jobs: every thread claims chunks from `claim`
 * until none is left, and the caller waits only for the chunks (chunks_left == 0), not for every
 * worker to show up: a worker the OS has not run since the job was published (its core taken by
 * another process) costs nothing unless it claimed a chunk. Such a late worker may look at the
 * job after the caller has moved on, so `claim` carries the job's generation and chunk count,
 * and a worker reads the job's fields only after claiming a chunk of it (which keeps the caller
 * waiting, so they cannot change under it). Both sides spin for up to SPIN_NS before sleeping
 * on a condition variable, so back-to-back matmuls hand off in well under a microsecond while an
 * idle daemon's workers do not burn the machine's cores.
 *
 * Sleeping uses a Dekker-style handshake on seq_cst atomics: a worker increments `sleepers` and
 * then re-reads `generation` under the mutex before waiting; the caller bumps `generation` and
 * then reads `sleepers`, broadcasting under the mutex only when someone may sleep. Either the
 * worker sees the new generation or the caller sees the sleeper, never neither. The caller's
 * wait for `pending` (or `chunks_left`) uses the same handshake with `caller_waiting`.
 */
#define SPIN_NS 50000 /* 50 us: longer than the gap between two matmuls of a forward pass */

struct dsi_pool {
    int n_threads;
    pthread_t *threads; /* [n_threads]; [0] unused (the caller) */
    /* the current job: written by the caller only while no worker reads it */
    dsi_pool_task_cb fn;
    void *arg;
    int64_t n;
    int n_chunks;
    /* dynamic jobs: the low 32 bits of the job's generation (high 32 bits), its chunk count
     * (bits 16-31) and the first chunk not yet claimed (bits 0-15) */
    _Atomic uint64_t claim;
    _Atomic int chunks_left;     /* dynamic jobs: chunks not finished yet */
    _Atomic uint64_t generation; /* 2 per job; bit 0: the job is dynamic */
    _Atomic int pending;         /* static jobs: workers that have not finished their chunk */
    _Atomic int stop;
    _Atomic int sleepers; /* workers blocked (or about to block) on `wake` */
    _Atomic int caller_waiting;
    pthread_mutex_t mutex;
    pthread_cond_t wake; /* workers wait here for a new generation */
    pthread_cond_t done; /* the caller waits here for pending == 0 */
};

typedef struct {
    dsi_pool_t *pool;
    int id;
} worker_arg_t;

/*
 * One step of a spin wait. After the first few microseconds, yield instead: on an oversubscribed
 * machine the thread we wait for may need this core to make progress.
 */
static inline void spin_pause(unsigned spin)
{
    if (spin >= 2048) {
        sched_yield();
        return;
    }
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void chunk_bounds(int64_t n, int n_chunks, int chunk, int64_t *begin, int64_t *end)
{
    *begin = n * chunk / n_chunks;
    *end = n * (chunk + 1) / n_chunks;
}

#define MAX_CHUNKS 0xffff /* of a dynamic job: the claim word's 16 bits */

static void signal_caller(dsi_pool_t *pool)
{
    if (atomic_load(&pool->caller_waiting)) {
        pthread_mutex_lock(&pool->mutex);
        pthread_cond_signal(&pool->done);
        pthread_mutex_unlock(&pool->mutex);
    }
}

/* The dynamic job of generation gen: claim and run its chunks, in order, until none is left. */
static void run_claimed(dsi_pool_t *pool, uint64_t gen)
{
    uint64_t w = atomic_load(&pool->claim);
    for (;;) {
        const int next = (int)(w & 0xffff), n_chunks = (int)((w >> 16) & 0xffff);
        if ((uint32_t)(w >> 32) != (uint32_t)gen || next >= n_chunks)
            return; /* a later job, or every chunk claimed */
        if (!atomic_compare_exchange_weak(&pool->claim, &w, w + 1))
            continue; /* w now holds the current word */
        /* chunk `next` is ours: the caller waits for it, so the job's fields stay */
        int64_t b, e;
        chunk_bounds(pool->n, n_chunks, next, &b, &e);
        pool->fn(pool->arg, b, e);
        if (atomic_fetch_sub(&pool->chunks_left, 1) == 1)
            signal_caller(pool);
        w = atomic_load(&pool->claim);
    }
}

/* Returns the first generation different from `seen`: spin, then sleep. */
static uint64_t wait_generation(dsi_pool_t *pool, uint64_t seen)
{
    int64_t deadline = 0;
    for (unsigned spin = 0;; spin++) {
        uint64_t g = atomic_load_explicit(&pool->generation, memory_order_acquire);
        if (g != seen)
            return g;
        if ((spin & 255) == 255) {
            int64_t t = dsi_now_ns();
            if (deadline == 0)
                deadline = t + SPIN_NS;
            else if (t > deadline)
                break;
        }
        spin_pause(spin);
    }
    pthread_mutex_lock(&pool->mutex);
    atomic_fetch_add(&pool->sleepers, 1);
    uint64_t g;
    while ((g = atomic_load(&pool->generation)) == seen)
        pthread_cond_wait(&pool->wake, &pool->mutex);
    atomic_fetch_sub(&pool->sleepers, 1);
    pthread_mutex_unlock(&pool->mutex);
    return g;
}

static void *worker_main(void *p)
{
    worker_arg_t *wa = p;
    dsi_pool_t *pool = wa->pool;
    int id = wa->id;
    free(wa);
    pthread_setname_np(pthread_self(), "dsi-pool"); /* top -H, gdb, the allocation-count test */
    uint64_t seen = 0;
    for (;;) {
        seen = wait_generation(pool, seen);
        if (atomic_load(&pool->stop))
            break;
        if (seen & 1) {
            run_claimed(pool, seen); /* nobody waits for this worker, only for the chunks */
            continue;
        }
        if (id < pool->n_chunks) {
            int64_t b, e;
            chunk_bounds(pool->n, pool->n_chunks, id, &b, &e);
            pool->fn(pool->arg, b, e);
        }
        if (atomic_fetch_sub(&pool->pending, 1) == 1)
            signal_caller(pool);
    }
    return NULL;
}

/* Publishes generation gen (the job fields or `stop` are written before). */
static void publish(dsi_pool_t *pool, uint64_t gen)
{
    atomic_store(&pool->generation, gen);
    if (atomic_load(&pool->sleepers) > 0) {
        pthread_mutex_lock(&pool->mutex);
        pthread_cond_broadcast(&pool->wake);
        pthread_mutex_unlock(&pool->mutex);
    }
}

int dsi_cpus_available(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    return cpus > 0 ? (int)cpus : 1;
}

dsi_pool_t *dsi_pool_create(int n_threads)
{
    if (n_threads <= 0)
        n_threads = dsi_cpus_available();
    dsi_pool_t *pool = calloc(1, sizeof(*pool));
    if (pool == NULL)
        return NULL;
    pool->n_threads = 1; /* the threads actually started; destroy joins exactly these */
    pthread_mutex_init(&pool->mutex, NULL);
    pthread_cond_init(&pool->wake, NULL);
    pthread_cond_init(&pool->done, NULL);
    pool->threads = calloc((size_t)n_threads, sizeof(pthread_t));
    if (pool->threads == NULL)
        goto err_stop;
    for (int i = 1; i < n_threads; i++) {
        worker_arg_t *wa = malloc(sizeof(*wa));
        if (wa == NULL)
            goto err_stop;
        wa->pool = pool;
        wa->id = i;
        if (pthread_create(&pool->threads[i], NULL, worker_main, wa) != 0) {
            free(wa);
            goto err_stop;
        }
        pool->n_threads = i + 1;
    }
    return pool;

err_stop:
    dsi_pool_destroy(pool);
    return NULL;
}

void dsi_pool_destroy(dsi_pool_t *pool)
{
    if (pool == NULL)
        return;
    atomic_store(&pool->stop, 1);
    pthread_mutex_lock(&pool->mutex);
    atomic_fetch_add(&pool->generation, 2);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mutex);
    for (int i = 1; i < pool->n_threads; i++)
        pthread_join(pool->threads[i], NULL);
    pthread_cond_destroy(&pool->wake);
    pthread_cond_destroy(&pool->done);
    pthread_mutex_destroy(&pool->mutex);
    free(pool->threads);
    free(pool);
}

int dsi_pool_threads(const dsi_pool_t *pool)
{
    return pool->n_threads;
}

/* Waits (spin, then sleep) until *count is 0: the workers' part of a job. */
static void wait_zero(dsi_pool_t *pool, _Atomic int *count)
{
    int64_t deadline = 0;
    for (unsigned spin = 0; atomic_load_explicit(count, memory_order_acquire) > 0; spin++) {
        if ((spin & 255) == 255) {
            int64_t t = dsi_now_ns();
            if (deadline == 0) {
                deadline = t + SPIN_NS;
            } else if (t > deadline) {
                pthread_mutex_lock(&pool->mutex);
                atomic_store(&pool->caller_waiting, 1);
                while (atomic_load(count) > 0)
                    pthread_cond_wait(&pool->done, &pool->mutex);
                atomic_store(&pool->caller_waiting, 0);
                pthread_mutex_unlock(&pool->mutex);
                return;
            }
        }
        spin_pause(spin);
    }
}

/* The caller's part of a run: publish the job, run its share, wait for the rest. */
static void run_job(dsi_pool_t *pool, int64_t n, int n_chunks, int dynamic, dsi_pool_task_cb fn,
                    void *arg)
{
    pool->fn = fn;
    pool->arg = arg;
    pool->n = n;
    pool->n_chunks = n_chunks;
    /* only the caller writes the generation: a plain load is its current value */
    const uint64_t gen = ((atomic_load(&pool->generation) + 2) & ~(uint64_t)1) | (uint64_t)dynamic;
    if (dynamic) {
        atomic_store(&pool->chunks_left, n_chunks);
        atomic_store(&pool->claim, (gen << 32) | (uint64_t)n_chunks << 16);
        publish(pool, gen);
        run_claimed(pool, gen);
        wait_zero(pool, &pool->chunks_left);
        return;
    }
    atomic_store(&pool->pending, pool->n_threads - 1);
    publish(pool, gen);
    int64_t b, e;
    chunk_bounds(n, n_chunks, 0, &b, &e);
    fn(arg, b, e);
    wait_zero(pool, &pool->pending);
}

void dsi_pool_run(dsi_pool_t *pool, int64_t n, int64_t grain, dsi_pool_task_cb fn, void *arg)
{
    if (n <= 0)
        return;
    if (grain < 1)
        grain = 1;
    int64_t max_chunks = n / grain; /* every chunk gets at least grain indices */
    int n_chunks = pool->n_threads < max_chunks ? pool->n_threads : (int)max_chunks;
    if (n_chunks <= 1) {
        fn(arg, 0, n);
        return;
    }
    run_job(pool, n, n_chunks, 0, fn, arg);
}

void dsi_pool_run_dynamic(dsi_pool_t *pool, int64_t n, int64_t grain, int per_thread,
                          dsi_pool_task_cb fn, void *arg)
{
    if (n <= 0)
        return;
    if (grain < 1)
        grain = 1;
    if (per_thread < 1)
        per_thread = 1;
    int64_t max_chunks = n / grain;
    int64_t want = (int64_t)pool->n_threads * per_thread;
    if (want > MAX_CHUNKS)
        want = MAX_CHUNKS;
    int n_chunks = (int)(want < max_chunks ? want : max_chunks);
    if (n_chunks <= 1 || pool->n_threads <= 1) {
        fn(arg, 0, n);
        return;
    }
    run_job(pool, n, n_chunks, 1, fn, arg);
}
