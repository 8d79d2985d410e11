/*
 * bench_probe.h - measurement helpers shared by the benchmarks (`dsinfer bench kernels`,
 * `dsinfer bench model`): the memory read bandwidth probe, medians, a monotonic clock and a fast
 * random fill. Benchmarks compare their kernels with the bandwidth measured in the same run,
 * because on a shared machine it varies from minute to minute.
 */
#ifndef BENCH_PROBE_H
#define BENCH_PROBE_H

#include <stddef.h>
#include <stdint.h>

#include "dsi_clock.h"
#include "dsi_pool.h"

/* Median of v[0..n) (sorts v in place); n >= 1. */
double bench_median(double *v, int n);
/*
 * Fills `bytes` bytes at p with xorshift64 words masked with (w & and_mask) | or_mask: fast enough
 * for gigabytes, and never the same page content twice.
 */
void bench_fill_random(void *p, size_t bytes, uint64_t seed, uint64_t and_mask, uint64_t or_mask);
/*
 * Memory read bandwidth in GB/s: the pool's threads stream-read a `bytes` buffer (make it far
 * larger than the LLC; 64-byte multiple), split into contiguous ranges read as 4 interleaved
 * streams each; the median of `reps` (1..64) timed passes after one warm-up pass (bench_probe_*
 * below, allocated and freed inside). Returns -1 (and prints why on stderr) when it cannot be
 * allocated.
 */
double bench_memory_bandwidth(dsi_pool_t *pool, size_t bytes, int reps);

/*
 * The same probe kept for repeated single passes, to pair a bandwidth reading with each timed
 * repetition of a kernel (the bandwidth of a shared machine drifts within seconds): new allocates
 * and fills the buffer and runs one warm-up pass (NULL, with a message, when out of memory);
 * pass times one read of it by the pool's threads and returns GB/s.
 */
typedef struct bench_probe bench_probe_t;
bench_probe_t *bench_probe_new(dsi_pool_t *pool, size_t bytes);
double bench_probe_pass(bench_probe_t *p);
void bench_probe_free(bench_probe_t *p);

#endif
