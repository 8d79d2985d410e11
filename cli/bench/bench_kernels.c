/*
 * bench_kernels.c - `dsinfer bench kernels`: the matmul kernels against this machine's own limits,
 * measured in the same run (issue 6 item 1).
 *
 * 1. Memory read bandwidth: the pool's threads stream-read a buffer far larger than the LLC.
 * 2. Clock: a dependent chain of scalar FMAs (4 cycles of latency on every AVX2/AVX-512 core of
 *    the last decade: Haswell..Sapphire Rapids, Zen 1..4) gives GHz; the SIMD peak is then
 *    threads x GHz x 2 FMA units x lanes x 2 flops.
 * 3. Decode (batch 1, 4, 16): weight-streaming GB/s at V3's shapes, fp8, bf16, int8, int4-g32
 *    and int4-g128 (values plus scales), rotating over enough copies of the weight that every
 *    repetition reads it from memory, not the LLC. The integer weights are random f32 rows
 *    quantized once by the kernels' own quantizer; their decode uses the activations the kernel
 *    table chose (ops.act: int8 where the level has them, DSINFER_ACT=f32 turns that off).
 * 4. Prefill (batch 128, 512, fp8 and bf16): GFLOP/s against that peak.
 * Every number is the median of several repetitions (wall time), except the clock: the fastest
 * of 5 chains timed in thread CPU time, so that preemption on a shared machine does not show up as
 * a low clock.
 * With --resident, decode runs instead on one matrix of RESIDENT_ROWS rows per thread x 7168 read
 * again and again from the caches (RESIDENT_PASSES passes per timed repetition): the kernels'
 * arithmetic bound, the other half of what limits decode (compare its GB/s with the bandwidth).
 * Every thread gets one chunk of the pool's 64-row grain or more, and enough rows that a call's
 * preparation of x (quantizing or permuting 7168 inputs) is a small part of it.
 * With --levels, every row is measured at each listed kernel level, the levels' repetitions
 * interleaved (one of each in turn), so a drift of the shared machine's bandwidth or clock hits
 * them alike and their medians can be compared.
 * 5. Measured FMA peak: every thread runs independent FMAs of the level's vector width at once,
 *    on registers only (no memory operand). Two rates: all threads together in wall time (the
 *    best of 3 runs of about 50 ms: a shorter or median run reads low whenever the hypervisor
 *    preempts one vCPU), and one thread's, in its own CPU time (the median over the threads of
 *    each run, the best run), which preemption does not lower. Every row's "of FMA" is its
 *    GFLOP/s over the first, or with --cpu-time (rows per CPU second) over the second. Below the
 *    formula's peak when wide vectors lower the clock (AVX-512 licences on Intel) or when the
 *    "cores" are hyperthreads sharing FMA units.
 */
#include <getopt.h>
#include <immintrin.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "bench_opt.h"
#include "bench_probe.h"
#include "cli_args.h"
#include "dsi_clock.h"
#include "dsi_pool.h"
#include "dsk.h"

#define MAX_REPS    31
#define MAX_ENTRIES 256
#define MAX_LEVELS  DSK_LEVEL_COUNT
#define MAX_SHAPES  8

typedef struct {
    char name[32];  /* e.g. "matmul_fp8", "matmul_int4-g128" */
    char shape[32]; /* rows x cols of the weight */
    dsk_level_t level;
    int batch;
    int int8_math; /* products in integer multiply-adds (int8 activations), not f32 FMAs */
    double gbs, gflops;
    double paired; /* median over repetitions of gbs / a probe pass right before it */
} entry_t;

#define RESIDENT_ROWS   128 /* --resident: rows per thread (fp8: 896 KiB, in L2 or the LLC) */
#define RESIDENT_PASSES 50  /* --resident: passes over the cached matrix per timed repetition */

typedef struct {
    int quick, json, threads, reps;
    int reps_set;        /* --reps: every row (prefill too) takes that many repetitions */
    int resident;        /* --resident: decode of one cache-resident matrix */
    int cpu_time;        /* --cpu-time: matmul rows timed in the process's CPU time */
    int int4_rows;       /* --int4-layout rows: keep int4 in the stored layout (else repacked
                            where every level measured has a kernel for it, as the engine does) */
    unsigned dtype_mask; /* bit d: measure dtype d (--dtypes) */
    dsk_ops_t ops;       /* the first level: the FMA width and the headline level */
    dsk_ops_t level_ops[MAX_LEVELS]; /* --levels, in order; else the detected level alone */
    int n_levels;
    int64_t shapes[MAX_SHAPES][2]; /* --shapes: rows, cols; else V3's defaults */
    int n_shapes;
    dsi_pool_t *pool;
    bench_probe_t *probe; /* the paired probe (not with --resident) */
    double bw_gbs, ghz, peak_gflops, fma_gflops;
    double fma_thread_gflops; /* one thread's FMA rate in its own CPU time */
    int only;                 /* 0 all, 'd' decode rows only, 'p' prefill rows only (--only) */
    int32_t *decode;          /* decode batches (--batches; default 1, 4, 16) */
    int n_decode;
    entry_t entries[MAX_ENTRIES];
    int n_entries;
} bench_t;

/* ---- memory bandwidth ---- */

static int measure_bandwidth(bench_t *b)
{
    b->bw_gbs = bench_memory_bandwidth(b->pool, (size_t)(b->quick ? 256 : 1024) << 20,
                                       b->reps < 7 ? b->reps : 7);
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

/* f32 lanes of the level's vectors: avx512vnni computes its f32 work with the avx512 kernels. */
static int level_lanes(dsk_level_t level)
{
    return level >= DSK_LEVEL_AVX512 ? 16 : level == DSK_LEVEL_AVX2 ? 8 : 1;
}

static void measure_clock(bench_t *b)
{
    double best = 0;
#if defined(__x86_64__)
    const long iters = 5000000; /* 40M dependent FMAs: ~50 ms at 3 GHz */
    volatile float sink = 0;
    for (int r = 0; r < 5; r++) {
        double t0 = dsi_thread_cpu_s();
        sink += fma_chain(iters, 1.0f + (float)r);
        double ghz = (double)iters * 8 * FMA_LATENCY_CYCLES / (dsi_thread_cpu_s() - t0) * 1e-9;
        best = ghz > best ? ghz : best;
    }
    (void)sink;
#endif
    b->ghz = best;
    const int lanes = level_lanes(b->ops.level);
    b->peak_gflops = b->threads * best * 2 /* FMA units */ * lanes * 2 /* flops per FMA */;
}

/* ---- measured FMA throughput ---- */

#define FMA_TPUT_ITERS 20000000L /* x 12 FMAs: about 50 ms per thread at 2 FMA/cycle, 2.5 GHz */

#if defined(__x86_64__)
/*
 * 12 independent chains: enough for 2 FMA units of 4 cycles' latency. The unroll pragma keeps
 * a[] in registers at -O2 too; without it GCC -O2 keeps it in memory, and on Intel cores (no
 * memory renaming, unlike Zen) the store-to-load forwarding then halves the FMA rate.
 */
#define FMA_TPUT_BODY(V, FMA, SET1, ADD)                                                \
    V a[12];                                                                            \
    const V m = SET1(0.9999999f), c = SET1(1e-7f);                                      \
    _Pragma("GCC unroll 12") for (int i = 0; i < 12; i++) a[i] = SET1(seed + (float)i); \
    for (long it = 0; it < FMA_TPUT_ITERS; it++) {                                      \
        _Pragma("GCC unroll 12") for (int i = 0; i < 12; i++) a[i] = FMA(a[i], m, c);   \
    }                                                                                   \
    _Pragma("GCC unroll 12") for (int i = 1; i < 12; i++) a[0] = ADD(a[0], a[i]);       \
    return a[0][0];
__attribute__((target("avx512f"))) static float fma_tput_16(float seed)
{
    FMA_TPUT_BODY(__m512, _mm512_fmadd_ps, _mm512_set1_ps, _mm512_add_ps)
}
__attribute__((target("avx2,fma"))) static float fma_tput_8(float seed)
{
    FMA_TPUT_BODY(__m256, _mm256_fmadd_ps, _mm256_set1_ps, _mm256_add_ps)
}
#endif

#define FMA_MAX_THREADS 1024 /* --threads' bound */

typedef struct {
    int lanes;
    volatile float sink;
    double cpu_s[FMA_MAX_THREADS]; /* thread CPU time of each index's loop */
} fma_job_t;

static void fma_cb(void *arg, int64_t begin, int64_t end)
{
    fma_job_t *j = arg;
#if defined(__x86_64__)
    for (int64_t i = begin; i < end; i++) {
        const double t0 = dsi_thread_cpu_s();
        j->sink = j->lanes == 16 ? fma_tput_16((float)i) : fma_tput_8((float)i);
        j->cpu_s[i] = dsi_thread_cpu_s() - t0;
    }
#else
    (void)j, (void)begin, (void)end;
#endif
}

/*
 * GFLOP/s of all threads running FMAs of the level's width at once (wall time), and of one
 * thread in its own CPU time; both 0 at the scalar level.
 */
static void measure_fma_peak(bench_t *b)
{
    const int lanes = level_lanes(b->ops.level);
    if (lanes == 1)
        return;
    static fma_job_t job;
    memset(&job, 0, sizeof(job));
    job.lanes = lanes;
    double best = 1e30, best_cpu = 1e30;
    dsi_pool_run(b->pool, b->threads, 1, fma_cb, &job); /* warm-up: wide-vector clock settles */
    for (int r = 0; r < 3; r++) {
        double t0 = dsi_now_s();
        dsi_pool_run(b->pool, b->threads, 1, fma_cb, &job);
        const double t = dsi_now_s() - t0;
        best = t < best ? t : best;
        const double cpu = bench_median(job.cpu_s, b->threads);
        best_cpu = cpu > 0 && cpu < best_cpu ? cpu : best_cpu;
    }
    const double flops = (double)FMA_TPUT_ITERS * 12 * lanes * 2;
    b->fma_gflops = (double)b->threads * flops / best * 1e-9;
    b->fma_thread_gflops = best_cpu < 1e30 ? flops / best_cpu * 1e-9 : 0;
}

/*
 * The FMA rate a row's GFLOP/s is a fraction of: all threads in wall time, or with --cpu-time
 * (rows in GFLOP per CPU second) one thread's in its own CPU time.
 */
static double fma_ref_gflops(const bench_t *b)
{
    return b->cpu_time ? b->fma_thread_gflops : b->fma_gflops;
}

/* ---- matmul ---- */

typedef struct {
    const dsk_ops_t *ops;
    const dsk_matrix_t *w;
    const float *x; /* [n, cols] */
    int64_t n;
    float *y; /* [n, rows] */
} mm_job_t;

/*
 * Whether int4 weights of dtype dt are measured repacked (DSK_LAYOUT_Q4_L16), as the engine loads
 * them where its kernel table has a kernel for that layout: unless --int4-layout rows, where
 * every level measured has one.
 */
static int bench_int4_repacked(const bench_t *b, dsk_dtype_t dt)
{
    if (b->int4_rows || (dt != DSK_DTYPE_I4_G32 && dt != DSK_DTYPE_I4_G128))
        return 0;
    for (int l = 0; l < b->n_levels; l++)
        if (!b->level_ops[l].q4l)
            return 0;
    return b->n_levels > 0;
}

/*
 * The clock of the matmul rows: wall time, or with --cpu-time the CPU time of the whole process
 * (all its threads), which a shared machine's preemption does not inflate: with --threads 1 it
 * is the product's own time (the pool's waiting threads spin a few microseconds, then sleep).
 */
static double mm_clock(const bench_t *b)
{
    if (!b->cpu_time)
        return dsi_now_s();
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void mm_cb(void *arg, int64_t begin, int64_t end)
{
    mm_job_t *j = arg;
    j->ops->matmul[j->w->dtype](j->w, begin, end, j->x, j->w->cols, j->n, j->y + begin, j->w->rows);
}

static void add_entry(bench_t *b, const char *name, dsk_level_t level, int64_t rows, int64_t cols,
                      int batch, int int8_math, double gbs, double gflops, double paired)
{
    if (b->n_entries >= MAX_ENTRIES)
        return;
    entry_t *e = &b->entries[b->n_entries++];
    snprintf(e->name, sizeof(e->name), "%s", name);
    e->level = level;
    snprintf(e->shape, sizeof(e->shape), "%lldx%lld", (long long)rows, (long long)cols);
    e->batch = batch;
    e->int8_math = int8_math;
    e->gbs = gbs;
    e->paired = paired;
    e->gflops = gflops;
}

typedef struct {
    dsk_dtype_t dt;
    int64_t cols;
    void *data;
    float *scales;
    uint64_t seed;
} quant_job_t;

/* Rows [begin, end) of random f32 weights in [-1, 1), quantized 16 rows at a time. */
static void quant_cb(void *arg, int64_t begin, int64_t end)
{
    quant_job_t *j = arg;
    const int64_t band = 16, rb = dsk_dtype_row_bytes(j->dt, j->cols);
    const int64_t sc = dsk_dtype_scale_cols(j->dt, j->cols);
    float *src = malloc((size_t)(band * j->cols) * sizeof(float));
    if (src == NULL)
        return; /* the caller checks the scales it poisoned */
    for (int64_t r = begin; r < end; r += band) {
        const int64_t nr = end - r < band ? end - r : band;
        uint64_t s = (j->seed + (uint64_t)r) * 0x9e3779b97f4a7c15ull + 1;
        for (int64_t i = 0; i < nr * j->cols; i++) {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            src[i] = (float)(int32_t)(s >> 32) * (1.0f / 2147483648.0f);
        }
        dsk_quantize_rows(j->dt, src, j->cols, nr, j->cols, (char *)j->data + r * rb,
                          j->scales + r * sc);
    }
    free(src);
}

/*
 * Copy 0 of an integer-format weight: random rows quantized in parallel by dsk_quantize_rows.
 * Returns -1 if a thread could not get its buffer (its scales stay NaN).
 */
static int quantize_random(bench_t *b, dsk_dtype_t dt, int64_t rows, int64_t cols, void *data,
                           float *scales)
{
    const int64_t n_scales = rows * dsk_dtype_scale_cols(dt, cols);
    for (int64_t i = 0; i < n_scales; i++)
        scales[i] = NAN;
    quant_job_t job = {dt, cols, data, scales, 7};
    dsi_pool_run(b->pool, rows, 16, quant_cb, &job);
    for (int64_t i = 0; i < n_scales; i++)
        if (isnan(scales[i]))
            return -1;
    return 0;
}

/* One weight shape and dtype at every batch; returns -1 when memory runs out. */
static int bench_shape(bench_t *b, dsk_dtype_t dt, int64_t rows, int64_t cols,
                       const int32_t *batches, int n_batches)
{
    const int is_q = dt == DSK_DTYPE_I8 || dt == DSK_DTYPE_I4_G32 || dt == DSK_DTYPE_I4_G128;
    const int q4l = bench_int4_repacked(b, dt);
    /* integer formats: values then their row scales in one block per copy, all streamed */
    const size_t vbytes = (size_t)(rows * dsk_dtype_row_bytes(dt, cols));
    const size_t wbytes = q4l    ? (size_t)dsk_q4l_bytes(dt, rows, cols)
                          : is_q ? (size_t)dsk_matrix_bytes(dt, rows, cols)
                                 : vbytes;
    const size_t target = (size_t)(b->quick ? 128 : 512) << 20;
    int copies = b->resident ? 1 : (int)((target + wbytes - 1) / wbytes);
    const int passes = b->resident ? RESIDENT_PASSES : 1;
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
        const float *wscales = dt == DSK_DTYPE_F8_E4M3 ? scales : NULL;
        if (q4l) { /* quantized in the stored layout, then repacked as the engine does */
            wscales = NULL;
            if (c == 0) {
                void *tmp = malloc((size_t)dsk_matrix_bytes(dt, rows, cols));
                ok = tmp != NULL &&
                     quantize_random(b, dt, rows, cols, tmp, (float *)((char *)tmp + vbytes)) == 0;
                const dsk_matrix_t m = {
                    dt, rows, cols, tmp, (float *)((char *)tmp + vbytes), DSK_LAYOUT_ROWS};
                ok = ok && dsk_q4l_pack(&m, data) == 0;
                free(tmp);
            } else {
                memcpy(data, ws[0].data, wbytes);
            }
        } else if (is_q) {
            wscales = (const float *)((char *)data + vbytes);
            if (c == 0)
                ok = quantize_random(b, dt, rows, cols, data, (float *)wscales) == 0;
            else /* the same values: the copies only keep the LLC out of the way */
                memcpy(data, ws[0].data, wbytes);
        } else if (dt == DSK_DTYPE_BF16) { /* sign, exponent near 2^-7, random mantissa */
            bench_fill_random(data, wbytes, (uint64_t)c + 7, 0x807f807f807f807full,
                              0x3c003c003c003c00ull);
        } else { /* bit 6 clear: exponent <= 7, never the NaN code */
            bench_fill_random(data, wbytes, (uint64_t)c + 7, 0xbfbfbfbfbfbfbfbfull, 0);
        }
        ws[c] = (dsk_matrix_t){dt,   rows,    cols,
                               data, wscales, q4l ? DSK_LAYOUT_Q4_L16 : DSK_LAYOUT_ROWS};
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
        const int reps = n >= 128 && !b->reps_set ? (b->reps < 3 ? b->reps : 3) : b->reps;
        double secs[MAX_LEVELS][MAX_REPS], paired[MAX_LEVELS][MAX_REPS];
        for (int r = -1; r < reps; r++) {           /* r = -1: warm-up */
            for (int l = 0; l < b->n_levels; l++) { /* levels interleaved */
                mm_job_t job = {&b->level_ops[l], &ws[(r + 1) % copies], x, n, y};
                const double bw =
                    b->probe != NULL && r >= 0 ? bench_probe_pass(b->probe) : b->bw_gbs;
                double t0 = mm_clock(b);
                /* the engine's split (dsn_par_matmul): claimed chunks */
                const int per_thread = dsk_matmul_chunks_per_thread(job.ops, job.w, n);
                for (int pass = 0; pass < passes; pass++)
                    dsi_pool_run_dynamic(b->pool, rows, 64, per_thread, mm_cb, &job);
                if (r >= 0) {
                    secs[l][r] = (mm_clock(b) - t0) / passes;
                    paired[l][r] = (double)wbytes / secs[l][r] * 1e-9 / bw;
                }
            }
        }
        for (int l = 0; l < b->n_levels; l++) {
            const dsk_ops_t *ops = &b->level_ops[l];
            double t = bench_median(secs[l], reps);
            char name[32];
            snprintf(name, sizeof(name), "matmul_%s", dsk_dtype_name(dt));
            add_entry(b, name, ops->level, rows, cols, n, is_q && (q4l || n <= ops->a8_n_max[dt]),
                      (double)wbytes / t * 1e-9, 2.0 * (double)rows * (double)cols * n / t * 1e-9,
                      bench_median(paired[l], reps));
            if (!b->json)
                fprintf(stderr, "  %s %lldx%lld batch %d (%s): %.3f ms\n", name, (long long)rows,
                        (long long)cols, n, dsk_level_name(ops->level), t * 1e3);
        }
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

static const char *act_name(const bench_t *b)
{
    return b->ops.act == DSK_ACT_I8 ? "int8" : "f32";
}

/* The layout the int4 rows are measured in: "q4l" (repacked at load) or "rows". */
static const char *int4_layout_name(const bench_t *b)
{
    return bench_int4_repacked(b, DSK_DTYPE_I4_G32) ? "q4l" : "rows";
}

/*
 * The roofline of a row: the weight GB/s its kernel could reach if only the memory bandwidth or
 * only the measured FMA rate limited it, whichever is lower. Its f32 products need 2 x batch flops
 * per weight, so at batch 16 an fp8 weight byte costs 32 flops and two AVX2 cores (about 200
 * GFLOP/s) cannot stream more than about 6 GB/s whatever the memory does. Rows with int8 math
 * (integer multiply-adds, 4-8x the products of an FMA per instruction) get the bandwidth alone.
 */
static double roofline_gbs(const bench_t *b, const entry_t *e)
{
    double compute = INFINITY;
    if (!e->int8_math && e->gflops > 0 && fma_ref_gflops(b) > 0)
        compute = fma_ref_gflops(b) * e->gbs / e->gflops;
    return compute < b->bw_gbs ? compute : b->bw_gbs;
}

static void print_results(const bench_t *b)
{
    if (b->json) {
        printf("{\"level\": \"%s\", \"act\": \"%s\", \"int4_layout\": \"%s\", \"threads\": %d, "
               "\"memory_bw_gbs\": %.2f, "
               "\"ghz\": %.3f, \"peak_gflops\": %.1f, \"fma_gflops\": %.1f, "
               "\"fma_thread_gflops\": %.1f, \"cpu_time\": %s, \"kernels\": [",
               dsk_level_name(b->ops.level), act_name(b), int4_layout_name(b), b->threads,
               b->bw_gbs, b->ghz, b->peak_gflops, b->fma_gflops, b->fma_thread_gflops,
               b->cpu_time ? "true" : "false");
        for (int i = 0; i < b->n_entries; i++) {
            const entry_t *e = &b->entries[i];
            const double roof = roofline_gbs(b, e);
            printf("%s\n  {\"name\": \"%s\", \"level\": \"%s\", \"shape\": \"%s\", \"batch\": %d, "
                   "\"gbs\": %.2f, "
                   "\"efficiency\": %.3f, \"paired_efficiency\": %.3f, \"roofline_gbs\": %.2f, "
                   "\"roofline_efficiency\": %.3f, \"gflops\": %.1f, \"peak_fraction\": %.3f, "
                   "\"fma_fraction\": %.3f, \"int8_math\": %s}",
                   i ? "," : "", e->name, dsk_level_name(e->level), e->shape, e->batch, e->gbs,
                   e->gbs / b->bw_gbs, e->paired, roof, roof > 0 ? e->gbs / roof : 0, e->gflops,
                   b->peak_gflops > 0 ? e->gflops / b->peak_gflops : 0,
                   fma_ref_gflops(b) > 0 ? e->gflops / fma_ref_gflops(b) : 0,
                   e->int8_math ? "true" : "false");
        }
        printf("\n]}\n");
        return;
    }
    printf("kernel level %s, %s activations for the integer weights' decode, int4 layout %s, "
           "%d threads\n",
           dsk_level_name(b->ops.level), act_name(b), int4_layout_name(b), b->threads);
    printf("memory read bandwidth: %.1f GB/s\n", b->bw_gbs);
    printf("clock: %.2f GHz (dependent FMA chain), SIMD peak %.1f GFLOP/s\n", b->ghz,
           b->peak_gflops);
    printf("measured FMA throughput (registers only): %.1f GFLOP/s all threads, %.1f per thread "
           "(its CPU time)\n",
           b->fma_gflops, b->fma_thread_gflops);
    printf("matmul rows in %s; \"of FMA\" against the %s rate\n",
           b->cpu_time ? "GFLOP per CPU second (--cpu-time)" : "wall time",
           b->cpu_time ? "per-thread" : "all-thread");
    printf("%-17s %-11s %6s %9s %8s %8s %8s %9s %8s %8s%s\n", "kernel", "shape", "batch", "GB/s",
           "of bw", "paired", "of roof", "GFLOP/s", "of peak", "of FMA",
           b->n_levels > 1 ? "  level" : "");
    for (int i = 0; i < b->n_entries; i++) {
        const entry_t *e = &b->entries[i];
        const double roof = roofline_gbs(b, e);
        printf("%-17s %-11s %6d %9.2f %7.0f%% %7.0f%% %7.0f%% %9.1f %7.0f%% %7.0f%%%s%s\n", e->name,
               e->shape, e->batch, e->gbs, 100 * e->gbs / b->bw_gbs, 100 * e->paired,
               roof > 0 ? 100 * e->gbs / roof : 0, e->gflops,
               b->peak_gflops > 0 ? 100 * e->gflops / b->peak_gflops : 0,
               fma_ref_gflops(b) > 0 ? 100 * e->gflops / fma_ref_gflops(b) : 0,
               b->n_levels > 1 ? "  " : "", b->n_levels > 1 ? dsk_level_name(e->level) : "");
    }
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: dsinfer bench kernels [--json] [--threads N] [--quick] [--dtypes LIST]\n"
            "                            [--only decode|prefill] [--resident] [--levels LIST]\n"
            "                            [--shapes LIST] [--reps N]\n"
            "  measures memory bandwidth, clock and the matmul kernels at V3 shapes\n"
            "  --threads N     pool threads (default: online CPUs)\n"
            "  --quick         smaller buffers, fewer repetitions and shapes\n"
            "  --dtypes LIST   comma-separated weight dtypes (default: all): fp8, bf16,\n"
            "                  int8, int4-g32, int4-g128; prefill rows: fp8 and bf16 only\n"
            "  --only WHAT     decode or prefill rows only\n"
            "  --batches LIST  comma-separated decode batches (default 1,4,16), each 1..512\n"
            "  --levels LIST   kernel levels to measure side by side, repetitions interleaved\n"
            "                  (e.g. avx512,avx512bf16; each one this CPU runs)\n"
            "  --shapes LIST   weight shapes ROWSxCOLS (default 7168x2048,2048x7168,\n"
            "                  1536x7168,18432x7168), e.g. 129280x7168 for the lm_head\n"
            "  --reps N        repetitions of every row, prefill too (default 7, prefill 3;\n"
            "                  at most %d)\n"
            "  --int4-layout L rows or q4l: int4 weights as stored, or repacked at load\n"
            "                  (default q4l where every level measured has a kernel for it)\n"
            "  --cpu-time      time the matmuls in the process's CPU time, not wall time\n"
            "                  (with --threads 1: unaffected by other programs' load); the\n"
            "                  rows' \"of FMA\" is then against one thread's measured FMA rate\n"
            "  --resident      decode only, of one (%d x threads)x7168 matrix kept in the\n"
            "                  caches: the kernels' arithmetic bound (GB/s above the\n"
            "                  bandwidth means headroom)\n"
            "  --json          one JSON object on stdout\n"
            "  DSINFER_KERNELS=scalar|avx2|avx512|avx512vnni lowers the kernel level;\n"
            "  DSINFER_KERNELS=avx512bf16 opts in to bf16-rounded x (changes results)\n"
            "  DSINFER_ACT=f32 gives the integer weights' decode f32 activations\n",
            MAX_REPS, RESIDENT_ROWS);
}

/* --dtypes: a mask of dsk_dtype_t bits; 0 for an unknown name. */
static unsigned parse_dtypes(const char *list)
{
    unsigned mask = 0;
    const char *p = list;
    while (*p != '\0') {
        const size_t len = strcspn(p, ",");
        int found = 0;
        for (int d = DSK_DTYPE_BF16; d < DSK_DTYPE_COUNT; d++) {
            const char *name = dsk_dtype_name((dsk_dtype_t)d);
            if (strlen(name) == len && strncmp(p, name, len) == 0) {
                mask |= 1u << d;
                found = 1;
            }
        }
        if (!found) {
            fprintf(stderr, "dsinfer bench kernels: unknown dtype '%.*s' in --dtypes\n", (int)len,
                    p);
            return 0;
        }
        p += len + (p[len] == ',');
    }
    return mask;
}

/* --levels: names of levels this CPU runs, in the order given; returns -1 after a message. */
static int parse_levels(const char *list, bench_t *b)
{
    const char *p = list;
    b->n_levels = 0;
    while (*p != '\0') {
        const size_t len = strcspn(p, ",");
        int found = -1;
        for (int l = 0; l < DSK_LEVEL_COUNT; l++) {
            const char *name = dsk_level_name((dsk_level_t)l);
            if (strlen(name) == len && strncmp(p, name, len) == 0)
                found = l;
        }
        if (found < 0 || !dsk_level_supported((dsk_level_t)found) || b->n_levels >= MAX_LEVELS) {
            fprintf(stderr,
                    "dsinfer bench kernels: level '%.*s' in --levels is unknown, not supported by "
                    "this CPU or one too many\n",
                    (int)len, p);
            return -1;
        }
        dsk_ops_init(&b->level_ops[b->n_levels++], (dsk_level_t)found);
        p += len + (p[len] == ',');
    }
    return b->n_levels > 0 ? 0 : -1;
}

/* --shapes: ROWSxCOLS,...; returns -1 after a message. */
static int parse_shapes(const char *list, bench_t *b)
{
    const char *p = list;
    b->n_shapes = 0;
    while (*p != '\0') {
        long long rows, cols;
        int used = 0;
        if (b->n_shapes >= MAX_SHAPES || sscanf(p, "%lldx%lld%n", &rows, &cols, &used) != 2 ||
            rows < 1 || cols < 1 || rows > (1 << 20) || cols > (1 << 20) ||
            (p[used] != ',' && p[used] != '\0')) {
            fprintf(stderr,
                    "dsinfer bench kernels: bad --shapes '%s' (ROWSxCOLS,..., at most %d)\n", list,
                    MAX_SHAPES);
            return -1;
        }
        b->shapes[b->n_shapes][0] = rows;
        b->shapes[b->n_shapes][1] = cols;
        b->n_shapes++;
        p += used + (p[used] == ',');
    }
    return b->n_shapes > 0 ? 0 : -1;
}

int dsinfer_bench_kernels(int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
                                         {"threads", required_argument, NULL, 't'},
                                         {"quick", no_argument, NULL, 'q'},
                                         {"dtypes", required_argument, NULL, 'd'},
                                         {"only", required_argument, NULL, 'o'},
                                         {"resident", no_argument, NULL, 'r'},
                                         {"batches", required_argument, NULL, 'b'},
                                         {"levels", required_argument, NULL, 'l'},
                                         {"shapes", required_argument, NULL, 's'},
                                         {"reps", required_argument, NULL, 'n'},
                                         {"int4-layout", required_argument, NULL, 'L'},
                                         {"cpu-time", no_argument, NULL, 'C'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    static bench_t b;
    memset(&b, 0, sizeof(b));
    b.dtype_mask = ~0u;
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
        case 'r':
            b.resident = 1;
            break;
        case 'C':
            b.cpu_time = 1;
            break;
        case 'L': {
            static const char *const layouts[] = {"q4l", "rows", NULL};
            if (cli_parse_choice("bench kernels", "--int4-layout", optarg, layouts, &b.int4_rows) !=
                0)
                return 2;
            break;
        }
        case 'o': {
            static const char *const what[] = {"decode", "prefill", NULL};
            int w;
            if (cli_parse_choice("bench kernels", "--only", optarg, what, &w) != 0)
                return 2;
            b.only = w == 0 ? 'd' : 'p';
            break;
        }
        case 'b':
            free(b.decode);
            if (cli_parse_int_list("bench kernels", "--batches", optarg, 1, 512, &b.decode,
                                   &b.n_decode) != 0)
                return 2;
            break;
        case 'l':
            if (parse_levels(optarg, &b) != 0)
                return 2;
            break;
        case 's':
            if (parse_shapes(optarg, &b) != 0)
                return 2;
            break;
        case 'n': {
            long long reps;
            if (cli_parse_int("bench kernels", "--reps", optarg, 1, MAX_REPS, &reps) != 0)
                return 2;
            b.reps = (int)reps;
            b.reps_set = 1;
            break;
        }
        case 'd':
            b.dtype_mask = parse_dtypes(optarg);
            if (b.dtype_mask == 0)
                return 2;
            break;
        case 't':
            if (cli_parse_int("bench kernels", "--threads", optarg, 1, 1024, &threads) != 0)
                return 2;
            break;
        default:
            return bench_opt_usage(c == 'h', usage);
        }
    }
    if (bench_opt_rest("kernels", argc, argv, usage) != 0)
        return 2;
    if (b.resident && b.only == 'p') {
        fprintf(stderr, "dsinfer bench kernels: --resident measures decode only\n");
        return 2;
    }
    if (b.resident)
        b.only = 'd';
    if (b.n_levels == 0)
        dsk_ops_init(&b.level_ops[b.n_levels++], dsk_level_detect());
    b.ops = b.level_ops[0];
    b.pool = dsi_pool_create((int)threads);
    if (b.pool == NULL) {
        fprintf(stderr, "dsinfer bench kernels: cannot start the thread pool\n");
        return 1;
    }
    b.threads = dsi_pool_threads(b.pool);
    if (!b.reps_set)
        b.reps = b.quick ? 3 : 7;

    int rc = 1;
    if (measure_bandwidth(&b) != 0)
        goto out;
    measure_clock(&b);
    measure_fma_peak(&b);
    if (!b.resident &&
        (b.probe = bench_probe_new(b.pool, (size_t)(b.quick ? 64 : 256) << 20)) == NULL)
        goto out;

    static const int64_t v3_shapes[][2] = {{7168, 2048}, {2048, 7168}, {1536, 7168}, {18432, 7168}};
    const int64_t(*shapes)[2] = b.n_shapes > 0 ? (const int64_t(*)[2])b.shapes : v3_shapes;
    static const int32_t decode[] = {1, 4, 16}, prefill_full[] = {128, 512},
                         prefill_quick[] = {128};
    static const dsk_dtype_t dtypes[] = {DSK_DTYPE_F8_E4M3, DSK_DTYPE_BF16, DSK_DTYPE_I8,
                                         DSK_DTYPE_I4_G32, DSK_DTYPE_I4_G128};
    const int64_t resident_shape[2] = {(int64_t)RESIDENT_ROWS * b.threads, 7168};
    int n_shapes = b.resident ? 1 : b.n_shapes > 0 ? b.n_shapes : b.quick ? 2 : 4;
    for (size_t d = 0; d < sizeof(dtypes) / sizeof(dtypes[0]); d++) {
        if (!(b.dtype_mask & (1u << dtypes[d])))
            continue;
        for (int s = 0; b.only != 'p' && s < n_shapes; s++) {
            const int64_t *shape = b.resident ? resident_shape : shapes[s];
            if (bench_shape(&b, dtypes[d], shape[0], shape[1], b.decode ? b.decode : decode,
                            b.decode ? b.n_decode : 3) != 0)
                goto out;
        }
        /*
         * Prefill of the checkpoint dtypes only: the integer ones go through the same packed f32
         * GEMM after their own dequantization into the panel, and the default run stays short.
         */
        if (b.only == 'd' || (dtypes[d] != DSK_DTYPE_F8_E4M3 && dtypes[d] != DSK_DTYPE_BF16))
            continue;
        for (int s = 0; s < n_shapes; s++) {
            if (bench_shape(&b, dtypes[d], shapes[s][0], shapes[s][1],
                            b.quick ? prefill_quick : prefill_full, b.quick ? 1 : 2) != 0)
                goto out;
        }
    }
    print_results(&b);
    rc = 0;
out:
    free(b.decode);
    bench_probe_free(b.probe);
    dsi_pool_destroy(b.pool);
    return rc;
}
