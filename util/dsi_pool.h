/*
 * dsi_pool.h - a fixed set of worker threads that split index ranges.
 *
 * dsi_pool_run() partitions [0, n) into contiguous chunks of at least `grain` indices, runs
 * fn(arg, begin, end) on the calling thread and the workers, and returns when all chunks are done.
 * No allocation, syscall-free handoff in the common case (workers spin briefly, then sleep on a
 * condition variable so idle daemons do not burn the machine's cores). One caller at a time: the
 * pool is owned by one compute thread.
 */
#ifndef DSI_POOL_H
#define DSI_POOL_H

#include <stdint.h>

typedef struct dsi_pool dsi_pool_t;
typedef void (*dsi_pool_task_cb)(void *arg, int64_t begin, int64_t end);

/* CPUs this thread may run on (its affinity mask: a NUMA binding or a cpuset), at least 1. */
int dsi_cpus_available(void);
/* n_threads includes the caller; 1 means run everything inline. <= 0: dsi_cpus_available(). */
dsi_pool_t *dsi_pool_create(int n_threads);
void dsi_pool_destroy(dsi_pool_t *pool);
int dsi_pool_threads(const dsi_pool_t *pool);
/* Run fn over [0, n) split into at most dsi_pool_threads() chunks of >= grain indices. */
void dsi_pool_run(dsi_pool_t *pool, int64_t n, int64_t grain, dsi_pool_task_cb fn, void *arg);
/*
 * The same over at most dsi_pool_threads() * per_thread chunks of >= grain indices, which every
 * thread (the caller included) claims in order until none is left: a thread that the OS runs
 * late (a shared machine) takes fewer chunks instead of holding up the run, and the call returns
 * once every chunk is done, without waiting for a worker that claimed none. Each index still
 * goes to exactly one fn call; which thread runs it varies from run to run.
 */
void dsi_pool_run_dynamic(dsi_pool_t *pool, int64_t n, int64_t grain, int per_thread,
                          dsi_pool_task_cb fn, void *arg);

#endif
