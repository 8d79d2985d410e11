/*
 * bench_overlap.c - `dsinfer bench overlap`: how far this machine's cores hide arithmetic behind
 * streaming from memory. A decode kernel converts and multiplies what it streams; where a core
 * does not overlap the two, a kernel whose arithmetic takes most of the memory time streams well
 * under the bandwidth whatever its code (docs/PERFORMANCE.md, "Issue 6 goals on the development
 * VM, and what bounds them").
 *
 * Every thread reads its share of a buffer far larger than the LLC in 6 interleaved rows of 7168
 * bytes, as a decode tile reads a weight matrix, and spends `work` units of 4 independent
 * multiply-adds on each 64-byte line (FMA where the CPU has it; no kernel code). The same loop over
 * a 128 KiB buffer per thread times the arithmetic alone, and work 0 over the large buffer the
 * memory alone. Per work level: ns per line per thread of each, and the slowdown = streaming with
 * the arithmetic / the slower of the two alone (1: they overlap fully; 2: not at all). Best of 3.
 */
#include <getopt.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "bench_opt.h"
#include "bench_probe.h"
#include "cli_args.h"
#include "dsi_clock.h"
#include "dsi_pool.h"

#define ROW_BYTES   7168
#define ROWS        6
#define TILE_BYTES  (ROWS * ROW_BYTES)
#define SMALL_BYTES (128 * 1024 / TILE_BYTES * TILE_BYTES) /* the arithmetic-alone buffer */
#define N_WORK      13                                     /* work 0 .. 12 */

typedef float v8 __attribute__((vector_size(32)));

/*
 * Reads `bytes` (whole tiles) at base as the decode tile does and spends `work` units on each
 * line, a unit being 4 multiply-adds on 4 of 8 accumulators in turn: independent, so the
 * arithmetic is throughput-bound like a kernel's and grows in steps of about 2 cycles.
 */
#define STREAM_BODY(MADD)                                                                  \
    const v8 m = {0.9999f, 0.9999f, 0.9999f, 0.9999f, 0.9999f, 0.9999f, 0.9999f, 0.9999f}; \
    v8 s0 = {0}, s1 = {0}, a[8];                                                           \
    for (int i = 0; i < 8; i++)                                                            \
        a[i] = s0;                                                                         \
    for (size_t t = 0; t + TILE_BYTES <= bytes; t += TILE_BYTES)                           \
        for (size_t off = 0; off < ROW_BYTES; off += 64)                                   \
            for (int r = 0; r < ROWS; r++) {                                               \
                v8 lo, hi;                                                                 \
                memcpy(&lo, base + t + (size_t)r * ROW_BYTES + off, sizeof(lo));           \
                memcpy(&hi, base + t + (size_t)r * ROW_BYTES + off + 32, sizeof(hi));      \
                s0 += lo;                                                                  \
                s1 += hi;                                                                  \
                int k = 0;                                                                 \
                for (; k + 2 <= work; k += 2)                                              \
                    _Pragma("GCC unroll 8") for (int i = 0; i < 8; i++) a[i] =             \
                        MADD(a[i], m, i % 2 ? hi : lo);                                    \
                if (k < work)                                                              \
                    _Pragma("GCC unroll 4") for (int i = 0; i < 4; i++) a[i] =             \
                        MADD(a[i], m, i % 2 ? hi : lo);                                    \
            }                                                                              \
    for (int i = 0; i < 8; i++)                                                            \
        s0 += a[i];                                                                        \
    s0 += s1;                                                                              \
    return s0[0] + s0[7];

#define PLAIN_MADD(a, b, c) ((a) * (b) + (c))
static float stream_tiles_plain(const char *base, size_t bytes, int work)
{
    STREAM_BODY(PLAIN_MADD)
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) static inline v8 fma8(v8 a, v8 b, v8 c)
{
    return (v8)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c);
}
__attribute__((target("avx2,fma"))) static float stream_tiles_fma(const char *base, size_t bytes,
                                                                  int work)
{
    STREAM_BODY(fma8)
}
#endif

/* The FMA version where the CPU has AVX2 and FMA (as the decode kernels do), else plain vectors. */
static float stream_tiles(const char *base, size_t bytes, int work)
{
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return stream_tiles_fma(base, bytes, work);
#endif
    return stream_tiles_plain(base, bytes, work);
}

typedef struct {
    const char *big, *small;
    size_t share; /* bytes of big per thread, whole tiles */
    int work, arith_only;
    volatile float sink;
} job_t;

static void job_cb(void *arg, int64_t begin, int64_t end)
{
    job_t *j = arg;
    for (int64_t i = begin; i < end; i++) {
        if (!j->arith_only) {
            j->sink = stream_tiles(j->big + (size_t)i * j->share, j->share, j->work);
            continue;
        }
        /* as many lines as the share, from the thread's own small buffer */
        for (size_t done = 0; done < j->share; done += SMALL_BYTES)
            j->sink = stream_tiles(j->small + (size_t)i * SMALL_BYTES, SMALL_BYTES, j->work);
    }
}

/* ns per line per thread: the best of 3 passes (after a warm-up of the small buffer's case). */
static double time_lines(dsi_pool_t *pool, int threads, job_t *j)
{
    double best = 1e30;
    if (j->arith_only)
        dsi_pool_run(pool, threads, 1, job_cb, j);
    for (int r = 0; r < 3; r++) {
        const double t0 = dsi_now_s();
        dsi_pool_run(pool, threads, 1, job_cb, j);
        const double t = dsi_now_s() - t0;
        best = t < best ? t : best;
    }
    return best * 1e9 / (double)(j->share / 64);
}

static void usage(FILE *out)
{
    fprintf(out, "usage: dsinfer bench overlap [--threads N] [--quick] [--json]\n"
                 "  how much slower streaming from memory gets when each 64-byte line also\n"
                 "  costs arithmetic: the limit a decode kernel's own arithmetic sets\n"
                 "  --threads N     pool threads (default: online CPUs)\n"
                 "  --quick         256 MiB instead of 1 GiB streamed per pass\n"
                 "  --json          one JSON object on stdout\n");
}

int dsinfer_bench_overlap(int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
                                         {"threads", required_argument, NULL, 't'},
                                         {"quick", no_argument, NULL, 'q'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int json = 0, quick = 0, c;
    long long threads = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'j':
            json = 1;
            break;
        case 'q':
            quick = 1;
            break;
        case 't':
            if (cli_parse_int("bench overlap", "--threads", optarg, 1, 1024, &threads) != 0)
                return 2;
            break;
        default:
            return bench_opt_usage(c == 'h', usage);
        }
    }
    if (bench_opt_rest("overlap", argc, argv, usage) != 0)
        return 2;
    dsi_pool_t *pool = dsi_pool_create((int)threads);
    if (pool == NULL) {
        fprintf(stderr, "dsinfer bench overlap: cannot start the thread pool\n");
        return 1;
    }
    const int n = dsi_pool_threads(pool);
    const size_t total = (size_t)(quick ? 256 : 1024) << 20;
    /* whole small buffers, so the arithmetic-alone pass reads exactly as many lines */
    job_t job = {.share = total / (size_t)n / SMALL_BYTES * SMALL_BYTES};
    char *big = malloc(job.share * (size_t)n), *small = malloc((size_t)SMALL_BYTES * (size_t)n);
    if (big == NULL || small == NULL || job.share == 0) {
        fprintf(stderr, "dsinfer bench overlap: out of memory for %zu MiB\n", total >> 20);
        free(big);
        free(small);
        dsi_pool_destroy(pool);
        return 1;
    }
    /* 0x3f bytes: floats near 0.75, no subnormal to slow the arithmetic */
    memset(big, 0x3f, job.share * (size_t)n);
    memset(small, 0x3f, (size_t)SMALL_BYTES * (size_t)n);
    job.big = big;
    job.small = small;
    double arith[N_WORK], stream[N_WORK];
    for (int w = 0; w < N_WORK; w++) {
        job.work = w;
        job.arith_only = 1;
        arith[w] = time_lines(pool, n, &job);
        job.arith_only = 0;
        stream[w] = time_lines(pool, n, &job);
    }
    const double memory = stream[0];
    if (json)
        printf("{\"threads\": %d, \"row_bytes\": %d, \"rows\": %d, \"levels\": [", n, ROW_BYTES,
               ROWS);
    else
        printf("%d threads, each reading %d rows of %d bytes side by side; ns per 64-byte line per "
               "thread\n%5s %11s %8s %10s %9s\n",
               n, ROWS, ROW_BYTES, "work", "arithmetic", "memory", "streaming", "slowdown");
    for (int w = 0; w < N_WORK; w++) {
        const double slower = arith[w] > memory ? arith[w] : memory;
        if (json)
            printf("%s\n  {\"work\": %d, \"arith_ns\": %.3f, \"memory_ns\": %.3f, "
                   "\"stream_ns\": %.3f, \"slowdown\": %.3f}",
                   w ? "," : "", w, arith[w], memory, stream[w], stream[w] / slower);
        else
            printf("%5d %11.2f %8.2f %10.2f %9.2f\n", w, arith[w], memory, stream[w],
                   stream[w] / slower);
    }
    if (json)
        printf("\n]}\n");
    free(big);
    free(small);
    dsi_pool_destroy(pool);
    return 0;
}
