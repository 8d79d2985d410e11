#include "dsi_pool.h"

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

/*
 * Generation-counted fork/join. The caller publishes a job under the mutex and bumps
 * `generation`; each worker runs its own chunk (index = worker id + 1) and decrements `pending`;
 * the caller runs chunk 0 and waits until pending is 0. Workers sleep on `wake` between jobs.
 */
struct dsi_pool {
    int n_threads;
    pthread_t *threads;
    pthread_mutex_t mutex;
    pthread_cond_t wake; /* workers wait here for a new generation */
    pthread_cond_t done; /* the caller waits here for pending == 0 */
    uint64_t generation;
    int pending;
    int stop;
    /* the current job */
    dsi_pool_task_cb fn;
    void *arg;
    int64_t n;
    int n_chunks;
};

typedef struct {
    dsi_pool_t *pool;
    int id;
} worker_arg_t;

static void chunk_bounds(int64_t n, int n_chunks, int chunk, int64_t *begin, int64_t *end)
{
    *begin = n * chunk / n_chunks;
    *end = n * (chunk + 1) / n_chunks;
}

static void *worker_main(void *p)
{
    worker_arg_t *wa = p;
    dsi_pool_t *pool = wa->pool;
    int id = wa->id;
    free(wa);
    uint64_t seen = 0;
    pthread_mutex_lock(&pool->mutex);
    for (;;) {
        while (!pool->stop && pool->generation == seen)
            pthread_cond_wait(&pool->wake, &pool->mutex);
        if (pool->stop)
            break;
        seen = pool->generation;
        int chunk = id;
        int n_chunks = pool->n_chunks;
        pthread_mutex_unlock(&pool->mutex);
        if (chunk < n_chunks) {
            int64_t b, e;
            chunk_bounds(pool->n, n_chunks, chunk, &b, &e);
            pool->fn(pool->arg, b, e);
        }
        pthread_mutex_lock(&pool->mutex);
        if (--pool->pending == 0)
            pthread_cond_signal(&pool->done);
    }
    pthread_mutex_unlock(&pool->mutex);
    return NULL;
}

dsi_pool_t *dsi_pool_create(int n_threads)
{
    if (n_threads <= 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = cpus > 0 ? (int)cpus : 1;
    }
    dsi_pool_t *pool = calloc(1, sizeof(*pool));
    if (pool == NULL)
        return NULL;
    pool->n_threads = n_threads;
    pthread_mutex_init(&pool->mutex, NULL);
    pthread_cond_init(&pool->wake, NULL);
    pthread_cond_init(&pool->done, NULL);
    pool->threads = calloc((size_t)n_threads, sizeof(pthread_t));
    if (pool->threads == NULL)
        goto err_free_pool;
    for (int i = 1; i < n_threads; i++) {
        worker_arg_t *wa = malloc(sizeof(*wa));
        if (wa == NULL)
            goto err_stop;
        wa->pool = pool;
        wa->id = i;
        if (pthread_create(&pool->threads[i], NULL, worker_main, wa) != 0) {
            free(wa);
            pool->n_threads = i;
            goto err_stop;
        }
    }
    return pool;

err_stop:
    dsi_pool_destroy(pool);
    return NULL;
err_free_pool:
    free(pool);
    return NULL;
}

void dsi_pool_destroy(dsi_pool_t *pool)
{
    if (pool == NULL)
        return;
    pthread_mutex_lock(&pool->mutex);
    pool->stop = 1;
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

void dsi_pool_run(dsi_pool_t *pool, int64_t n, int64_t grain, dsi_pool_task_cb fn, void *arg)
{
    if (n <= 0)
        return;
    if (grain < 1)
        grain = 1;
    int64_t max_chunks = (n + grain - 1) / grain;
    int n_chunks = pool->n_threads < max_chunks ? pool->n_threads : (int)max_chunks;
    if (n_chunks <= 1) {
        fn(arg, 0, n);
        return;
    }
    pthread_mutex_lock(&pool->mutex);
    pool->fn = fn;
    pool->arg = arg;
    pool->n = n;
    pool->n_chunks = n_chunks;
    pool->pending = pool->n_threads - 1;
    pool->generation++;
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mutex);

    int64_t b, e;
    chunk_bounds(n, n_chunks, 0, &b, &e);
    fn(arg, b, e);

    pthread_mutex_lock(&pool->mutex);
    while (pool->pending > 0)
        pthread_cond_wait(&pool->done, &pool->mutex);
    pthread_mutex_unlock(&pool->mutex);
}
