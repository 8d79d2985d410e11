/* bench_probe.c - the shared measurement helpers of the benchmarks (see bench_probe.h). */
#include "bench_probe.h"
#include "dsi_clock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <emmintrin.h>
#endif

#define MAX_PROBE_REPS 64

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double bench_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

void bench_fill_random(void *p, size_t bytes, uint64_t seed, uint64_t and_mask, uint64_t or_mask)
{
    uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
    uint64_t *w = p;
    for (size_t i = 0; i < bytes / 8; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        w[i] = (s & and_mask) | or_mask;
    }
    memset((char *)p + bytes / 8 * 8, 0, bytes % 8);
}

typedef struct {
    const uint64_t *buf;
    uint64_t sum;
} probe_t;

/*
 * Reads lines [begin, end) as 4 interleaved sequential streams: one stream per thread leaves the
 * hardware prefetchers (and, on Intel, the line fill buffers) underused, and the probe must not
 * report less than what a matmul reading several weight rows at once actually gets.
 */
static void probe_cb(void *arg, int64_t begin, int64_t end)
{
    probe_t *p = arg;
    const uint64_t *w = p->buf;
    const int64_t q = (end - begin) / 4;
    uint64_t s = 0;
#if defined(__x86_64__)
    __m128i a0 = _mm_setzero_si128(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t l = begin; l < begin + q; l++) {
        const __m128i *l0 = (const __m128i *)(w + l * 8), *l1 = (const __m128i *)(w + (l + q) * 8);
        const __m128i *l2 = (const __m128i *)(w + (l + 2 * q) * 8);
        const __m128i *l3 = (const __m128i *)(w + (l + 3 * q) * 8);
        a0 = _mm_add_epi64(a0, _mm_add_epi64(_mm_load_si128(l0), _mm_load_si128(l0 + 1)));
        a1 = _mm_add_epi64(a1, _mm_add_epi64(_mm_load_si128(l1), _mm_load_si128(l1 + 1)));
        a2 = _mm_add_epi64(a2, _mm_add_epi64(_mm_load_si128(l2), _mm_load_si128(l2 + 1)));
        a3 = _mm_add_epi64(a3, _mm_add_epi64(_mm_load_si128(l3), _mm_load_si128(l3 + 1)));
        a0 = _mm_add_epi64(a0, _mm_add_epi64(_mm_load_si128(l0 + 2), _mm_load_si128(l0 + 3)));
        a1 = _mm_add_epi64(a1, _mm_add_epi64(_mm_load_si128(l1 + 2), _mm_load_si128(l1 + 3)));
        a2 = _mm_add_epi64(a2, _mm_add_epi64(_mm_load_si128(l2 + 2), _mm_load_si128(l2 + 3)));
        a3 = _mm_add_epi64(a3, _mm_add_epi64(_mm_load_si128(l3 + 2), _mm_load_si128(l3 + 3)));
    }
    a0 = _mm_add_epi64(_mm_add_epi64(a0, a1), _mm_add_epi64(a2, a3));
    s = (uint64_t)_mm_cvtsi128_si64(a0) + (uint64_t)_mm_cvtsi128_si64(_mm_srli_si128(a0, 8));
#else
    for (int64_t i = begin * 8; i < (begin + 4 * q) * 8; i++)
        s += w[i];
#endif
    for (int64_t i = (begin + 4 * q) * 8; i < end * 8; i++) /* the last few lines */
        s += w[i];
    __atomic_fetch_add(&p->sum, s, __ATOMIC_RELAXED); /* keeps the loads alive */
}

struct bench_probe {
    uint64_t *buf;
    size_t bytes;
    dsi_pool_t *pool;
};

bench_probe_t *bench_probe_new(dsi_pool_t *pool, size_t bytes)
{
    bytes &= ~(size_t)63;
    bench_probe_t *p = calloc(1, sizeof(*p));
    uint64_t *buf = bytes > 0 ? aligned_alloc(64, bytes) : NULL;
    if (p == NULL || buf == NULL) {
        fprintf(stderr, "bandwidth probe: cannot allocate %zu MiB\n", bytes >> 20);
        free(p);
        free(buf);
        return NULL;
    }
    bench_fill_random(buf, bytes, 1, ~0ull, 0);
    *p = (bench_probe_t){buf, bytes, pool};
    bench_probe_pass(p); /* warm: page tables */
    return p;
}

double bench_probe_pass(bench_probe_t *p)
{
    probe_t job = {p->buf, 0};
    const double t0 = dsi_now_s();
    dsi_pool_run(p->pool, (int64_t)(p->bytes / 64), 4096, probe_cb, &job);
    return (double)p->bytes / (dsi_now_s() - t0) * 1e-9;
}

void bench_probe_free(bench_probe_t *p)
{
    if (p != NULL)
        free(p->buf);
    free(p);
}

double bench_memory_bandwidth(dsi_pool_t *pool, size_t bytes, int reps)
{
    if (reps < 1)
        reps = 1;
    if (reps > MAX_PROBE_REPS)
        reps = MAX_PROBE_REPS;
    bench_probe_t *p = bench_probe_new(pool, bytes);
    if (p == NULL)
        return -1;
    double gbs[MAX_PROBE_REPS];
    for (int r = 0; r < reps; r++)
        gbs[r] = bench_probe_pass(p);
    bench_probe_free(p);
    return bench_median(gbs, reps);
}
