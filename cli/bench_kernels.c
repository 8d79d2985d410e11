/*
 * bench_kernels.c - `dsinfer bench kernels`: the matmul kernels against this machine's own limits,
 * measured in the same run (issue 6 item 1).
 *
 * 1. Memory read bandwidth: the pool's threads stream-read a buffer far larger than the LLC.
 * 2. Clock: a dependent chain of scalar FMAs (4 cycles of latency on every AVX2/AVX-512 core of
 *    the last decade: Haswell..Sapphire Rapids, Zen 1..4) gives GHz; the SIMD peak is then
 *    threads x GHz x 2 FMA units x lanes x 2 flops.
 * 3. Decode (batch 1, 4, 16): weight-streaming GB/s at V3's shapes, fp8 and bf16, rotating over
 *    enough copies of the weight that every repetition reads it from memory, not the LLC.
 * 4. Prefill (batch 128, 512): GFLOP/s against that peak.
 * Every number is the median of several repetitions (wall time), except the clock: the fastest
 * of 5 chains timed in thread CPU time, so that preemption on a shared machine does not show up as
 * a low clock.
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "bench_probe.h"
#include "cli_args.h"
#include "dsi_pool.h"
#include "dsk.h"

#define MAX_REPS    9
#define MAX_ENTRIES 64

typedef struct {
    char name[32];  /* e.g. "matmul_fp8" */
    char shape[32]; /* rows x cols of the weight */
    int batch;
    double gbs, gflops;
} entry_t;

typedef struct {
    int quick, json, threads, reps;
    dsk_ops_t ops;
    dsi_pool_t *pool;
    double bw_gbs, ghz, peak_gflops;
    entry_t entries[MAX_ENTRIES];
    int n_entries;
} bench_t;

/* CPU time of this thread: the clock probe must not count time the thread spent preempted. */
static double thread_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- memory bandwidth ---- */

static int measure_bandwidth(bench_t *b)
{
    b->bw_gbs = bench_memory_bandwidth(b->pool, (size_t)(b->quick ? 256 : 1024) << 20, b->reps);
    return b->bw_gbs > 0 ? 0 : -1;
}

/* ---- clock and peak ---- */

#if defined(__x86_64__)
__attribute__((target("fma"))) static float fma_chain(long iters, float a)
{
    const float m = 0.9999999f, c = 1e-7f;
    for (long i = 0; i < iters; i++) {
        a = fmaf(a, m, c);
        a = fmaf(a, m, c);
        a = fmaf(a, m, c);
        a = fmaf(a, m, c);
        a = fmaf(a, m, c);
        a = fmaf(a, m, c);
        a = fmaf(a, m, c);
        a = fmaf(a, m, c);
    }
    return a;
}
#endif

#define FMA_LATENCY_CYCLES 4

static void measure_clock(bench_t *b)
{
    double best = 0;
#if defined(__x86_64__)
    const long iters = 5000000; /* 40M dependent FMAs: ~50 ms at 3 GHz */
    volatile float sink = 0;
    for (int r = 0; r < 5; r++) {
        double t0 = thread_cpu_s();
        sink += fma_chain(iters, 1.0f + (float)r);
        double ghz = (double)iters * 8 * FMA_LATENCY_CYCLES / (thread_cpu_s() - t0) * 1e-9;
        best = ghz > best ? ghz : best;
    }
    (void)sink;
#endif
    b->ghz = best;
    int lanes = b->ops.level == DSK_LEVEL_AVX512 ? 16 : b->ops.level == DSK_LEVEL_AVX2 ? 8 : 1;
    b->peak_gflops = b->threads * best * 2 /* FMA units */ * lanes * 2 /* flops per FMA */;
}

/* ---- matmul ---- */

typedef struct {
    const dsk_ops_t *ops;
    const dsk_matrix_t *w;
    const float *x; /* [n, cols] */
    int64_t n;
    float *y; /* [n, rows] */
} mm_job_t;

static void mm_cb(void *arg, int64_t begin, int64_t end)
{
    mm_job_t *j = arg;
    j->ops->matmul[j->w->dtype](j->w, begin, end, j->x, j->w->cols, j->n, j->y + begin, j->w->rows);
}

static void add_entry(bench_t *b, const char *name, int64_t rows, int64_t cols, int batch,
                      double gbs, double gflops)
{
    if (b->n_entries >= MAX_ENTRIES)
        return;
    entry_t *e = &b->entries[b->n_entries++];
    snprintf(e->name, sizeof(e->name), "%s", name);
    snprintf(e->shape, sizeof(e->shape), "%lldx%lld", (long long)rows, (long long)cols);
    e->batch = batch;
    e->gbs = gbs;
    e->gflops = gflops;
}

/* One weight shape and dtype at every batch; returns -1 when memory runs out. */
static int bench_shape(bench_t *b, dsk_dtype_t dt, int64_t rows, int64_t cols, const int *batches,
                       int n_batches)
{
    const size_t esize = dt == DSK_DTYPE_BF16 ? 2 : 1;
    const size_t wbytes = (size_t)(rows * cols) * esize;
    const size_t target = (size_t)(b->quick ? 128 : 512) << 20;
    int copies = (int)((target + wbytes - 1) / wbytes);
    int max_batch = 0;
    for (int i = 0; i < n_batches; i++)
        max_batch = batches[i] > max_batch ? batches[i] : max_batch;
    int64_t bcols = (cols + 127) / 128, brows = (rows + 127) / 128;
    float *scales = malloc((size_t)(brows * bcols) * sizeof(float));
    float *x = malloc((size_t)(max_batch * cols) * sizeof(float));
    float *y = malloc((size_t)(max_batch * rows) * sizeof(float));
    dsk_matrix_t *ws = calloc((size_t)copies, sizeof(dsk_matrix_t));
    int ok = scales && x && y && ws;
    for (int c = 0; ok && c < copies; c++) {
        void *data = malloc(wbytes);
        if (data == NULL) {
            ok = 0;
            break;
        }
        if (dt == DSK_DTYPE_BF16) /* sign, exponent near 2^-7, random mantissa */
            bench_fill_random(data, wbytes, (uint64_t)c + 7, 0x807f807f807f807full,
                              0x3c003c003c003c00ull);
        else /* bit 6 clear: exponent <= 7, never the NaN code */
            bench_fill_random(data, wbytes, (uint64_t)c + 7, 0xbfbfbfbfbfbfbfbfull, 0);
        ws[c] = (dsk_matrix_t){dt, rows, cols, data, dt == DSK_DTYPE_F8_E4M3 ? scales : NULL};
    }
    if (!ok) {
        fprintf(stderr, "dsinfer bench kernels: out of memory for %lldx%lld weights\n",
                (long long)rows, (long long)cols);
        goto out;
    }
    for (int64_t i = 0; i < brows * bcols; i++)
        scales[i] = 1.0f / 448.0f;
    for (int64_t i = 0; i < max_batch * cols; i++)
        x[i] = (float)((i * 7919) % 2001 - 1000) * 1e-3f;

    for (int k = 0; k < n_batches; k++) {
        const int n = batches[k];
        const int reps = n >= 128 ? (b->reps < 3 ? b->reps : 3) : b->reps;
        double secs[MAX_REPS];
        for (int r = -1; r < reps; r++) { /* r = -1: warm-up */
            mm_job_t job = {&b->ops, &ws[(r + 1) % copies], x, n, y};
            double t0 = bench_now_s();
            dsi_pool_run(b->pool, rows, 64, mm_cb, &job);
            if (r >= 0)
                secs[r] = bench_now_s() - t0;
        }
        double t = bench_median(secs, reps);
        char name[32];
        snprintf(name, sizeof(name), "matmul_%s", dt == DSK_DTYPE_BF16 ? "bf16" : "fp8");
        add_entry(b, name, rows, cols, n, (double)wbytes / t * 1e-9,
                  2.0 * (double)rows * (double)cols * n / t * 1e-9);
        if (!b->json)
            fprintf(stderr, "  %s %lldx%lld batch %d: %.3f ms\n", name, (long long)rows,
                    (long long)cols, n, t * 1e3);
    }
out:
    for (int c = 0; ws && c < copies; c++)
        free((void *)ws[c].data);
    free(ws);
    free(scales);
    free(x);
    free(y);
    return ok ? 0 : -1;
}

static void print_results(const bench_t *b)
{
    if (b->json) {
        printf("{\"level\": \"%s\", \"threads\": %d, \"memory_bw_gbs\": %.2f, \"ghz\": %.3f, "
               "\"peak_gflops\": %.1f, \"kernels\": [",
               dsk_level_name(b->ops.level), b->threads, b->bw_gbs, b->ghz, b->peak_gflops);
        for (int i = 0; i < b->n_entries; i++) {
            const entry_t *e = &b->entries[i];
            printf("%s\n  {\"name\": \"%s\", \"shape\": \"%s\", \"batch\": %d, \"gbs\": %.2f, "
                   "\"efficiency\": %.3f, \"gflops\": %.1f, \"peak_fraction\": %.3f}",
                   i ? "," : "", e->name, e->shape, e->batch, e->gbs, e->gbs / b->bw_gbs, e->gflops,
                   b->peak_gflops > 0 ? e->gflops / b->peak_gflops : 0);
        }
        printf("\n]}\n");
        return;
    }
    printf("kernel level %s, %d threads\n", dsk_level_name(b->ops.level), b->threads);
    printf("memory read bandwidth: %.1f GB/s\n", b->bw_gbs);
    printf("clock: %.2f GHz (dependent FMA chain), SIMD peak %.1f GFLOP/s\n", b->ghz,
           b->peak_gflops);
    printf("%-12s %-11s %6s %9s %8s %9s %8s\n", "kernel", "shape", "batch", "GB/s", "of bw",
           "GFLOP/s", "of peak");
    for (int i = 0; i < b->n_entries; i++) {
        const entry_t *e = &b->entries[i];
        printf("%-12s %-11s %6d %9.2f %7.0f%% %9.1f %7.0f%%\n", e->name, e->shape, e->batch, e->gbs,
               100 * e->gbs / b->bw_gbs, e->gflops,
               b->peak_gflops > 0 ? 100 * e->gflops / b->peak_gflops : 0);
    }
}

static void usage(FILE *out)
{
    fprintf(out, "usage: dsinfer bench kernels [--json] [--threads N] [--quick]\n"
                 "  measures memory bandwidth, clock and the matmul kernels at V3 shapes\n"
                 "  --threads N  pool threads (default: online CPUs)\n"
                 "  --quick      smaller buffers, fewer repetitions and shapes\n"
                 "  --json       one JSON object on stdout\n"
                 "  DSINFER_KERNELS=scalar|avx2|avx512 lowers the kernel level\n");
}

int dsinfer_bench_kernels(int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
                                         {"threads", required_argument, NULL, 't'},
                                         {"quick", no_argument, NULL, 'q'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    static bench_t b;
    memset(&b, 0, sizeof(b));
    long long threads = 0;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'j':
            b.json = 1;
            break;
        case 'q':
            b.quick = 1;
            break;
        case 't':
            if (cli_parse_int("bench kernels", "--threads", optarg, 1, 1024, &threads) != 0)
                return 2;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "dsinfer bench kernels: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    dsk_ops_init(&b.ops, dsk_level_detect());
    b.pool = dsi_pool_create((int)threads);
    if (b.pool == NULL) {
        fprintf(stderr, "dsinfer bench kernels: cannot start the thread pool\n");
        return 1;
    }
    b.threads = dsi_pool_threads(b.pool);
    b.reps = b.quick ? 3 : 7;

    int rc = 1;
    if (measure_bandwidth(&b) != 0)
        goto out;
    measure_clock(&b);

    static const int64_t shapes[][2] = {{7168, 2048}, {2048, 7168}, {1536, 7168}, {18432, 7168}};
    static const int decode[] = {1, 4, 16}, prefill_full[] = {128, 512}, prefill_quick[] = {128};
    static const dsk_dtype_t dtypes[] = {DSK_DTYPE_F8_E4M3, DSK_DTYPE_BF16};
    int n_shapes = b.quick ? 2 : 4;
    for (int d = 0; d < 2; d++) {
        for (int s = 0; s < n_shapes; s++) {
            if (bench_shape(&b, dtypes[d], shapes[s][0], shapes[s][1], decode, 3) != 0)
                goto out;
        }
        for (int s = 0; s < n_shapes; s++) {
            if (bench_shape(&b, dtypes[d], shapes[s][0], shapes[s][1],
                            b.quick ? prefill_quick : prefill_full, b.quick ? 1 : 2) != 0)
                goto out;
        }
    }
    print_results(&b);
    rc = 0;
out:
    dsi_pool_destroy(b.pool);
    return rc;
}
