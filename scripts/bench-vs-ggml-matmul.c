/*
 * bench-vs-ggml-matmul.c - ggml's CPU matmul (ggml_mul_mat) on the weight shapes and batches that
 * `dsinfer bench kernels` measures, for scripts/bench-vs-ggml.sh (which compiles it against the
 * ggml or llama.cpp checkout given; it is not part of dsinfer's build).
 *
 * usage: bench-vs-ggml-matmul TYPE ROWSxCOLS BATCHES REPS THREADS MIB
 *   TYPE q8_0, q4_0 or bf16; BATCHES e.g. 1,4,16,64; MIB: the weight copies rotated through
 *   (at least this many MiB in all, so that every repetition streams its weight from memory, not
 *   the last-level cache, as bench kernels does).
 * Prints one line per batch: TYPE ROWSxCOLS BATCH MEDIAN_MS WEIGHT_GBS GFLOPS.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ggml-cpu.h"
#include "ggml.h"

#define MAX_REPS   64
#define MAX_COPIES 256

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* CPU time of all the process's threads: what a product cost, whatever share of the cores it got */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: bench-vs-ggml-matmul TYPE ROWSxCOLS BATCHES REPS THREADS MIB\n");
        return 2;
    }
    enum ggml_type type;
    if (strcmp(argv[1], "q8_0") == 0)
        type = GGML_TYPE_Q8_0;
    else if (strcmp(argv[1], "q4_0") == 0)
        type = GGML_TYPE_Q4_0;
    else if (strcmp(argv[1], "bf16") == 0)
        type = GGML_TYPE_BF16;
    else {
        fprintf(stderr, "bench-vs-ggml-matmul: TYPE '%s' is not q8_0, q4_0 or bf16\n", argv[1]);
        return 2;
    }
    long long rows, cols;
    if (sscanf(argv[2], "%lldx%lld", &rows, &cols) != 2 || rows < 1 || cols < 32 || cols % 32) {
        fprintf(stderr, "bench-vs-ggml-matmul: bad shape '%s'\n", argv[2]);
        return 2;
    }
    int batches[16], n_batches = 0;
    for (char *p = argv[3]; *p && n_batches < 16;) {
        char *end;
        batches[n_batches++] = (int)strtol(p, &end, 10);
        p = *end == ',' ? end + 1 : end;
        if (end == p && *p)
            break;
    }
    int reps = atoi(argv[4]), threads = atoi(argv[5]);
    const long long mib = atoll(argv[6]);
    if (reps < 1 || reps > MAX_REPS || threads < 1 || mib < 0) {
        fprintf(stderr, "bench-vs-ggml-matmul: bad REPS, THREADS or MIB\n");
        return 2;
    }
    ggml_cpu_init();
    const size_t wbytes = ggml_row_size(type, cols) * (size_t)rows;
    int copies = (int)(((size_t)mib << 20) / wbytes) + 1;
    copies = copies > MAX_COPIES ? MAX_COPIES : copies;
    int max_b = 1;
    for (int i = 0; i < n_batches; i++)
        max_b = batches[i] > max_b ? batches[i] : max_b;

    /* Weights: random values in [-1, 1) quantized by ggml itself, copy 0 then memcpy. */
    struct ggml_init_params wp = {wbytes * copies + (size_t)copies * 1024 + (1 << 20), NULL, 0};
    struct ggml_context *wctx = ggml_init(wp);
    if (wctx == NULL) {
        fprintf(stderr, "bench-vs-ggml-matmul: out of memory for %d weight copies\n", copies);
        return 1;
    }
    struct ggml_tensor *w[MAX_COPIES];
    float *src = malloc((size_t)cols * 64 * sizeof(float));
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (int c = 0; c < copies; c++)
        w[c] = ggml_new_tensor_2d(wctx, type, cols, rows);
    for (long long r = 0; r < rows; r += 64) {
        const long long nr = rows - r < 64 ? rows - r : 64;
        for (long long i = 0; i < nr * cols; i++) {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            src[i] = (float)(int32_t)(s >> 32) * (1.0f / 2147483648.0f);
        }
        char *dst = (char *)w[0]->data + ggml_row_size(type, cols) * (size_t)r;
        if (type == GGML_TYPE_BF16)
            ggml_fp32_to_bf16_row(src, (ggml_bf16_t *)dst, nr * cols);
        else
            ggml_quantize_chunk(type, src, dst, 0, nr, cols, NULL);
    }
    for (int c = 1; c < copies; c++)
        memcpy(w[c]->data, w[0]->data, wbytes);
    free(src);

    for (int bi = 0; bi < n_batches; bi++) {
        const int n = batches[bi];
        /* One graph per copy: out = W x, x [cols, n] f32. */
        struct ggml_init_params gp = {(size_t)copies *
                                              (ggml_tensor_overhead() * 3 + ggml_graph_overhead() +
                                               (size_t)n * rows * 4 + 64) +
                                          (size_t)n * cols * 4 + (1 << 20),
                                      NULL, 0};
        struct ggml_context *gctx = ggml_init(gp);
        struct ggml_tensor *x = ggml_new_tensor_2d(gctx, GGML_TYPE_F32, cols, n);
        for (long long i = 0; i < (long long)n * cols; i++)
            ((float *)x->data)[i] = (float)((i * 7919) % 2001 - 1000) * 1e-3f;
        struct ggml_cgraph *g[MAX_COPIES];
        size_t work = 0;
        for (int c = 0; c < copies; c++) {
            g[c] = ggml_new_graph(gctx);
            ggml_build_forward_expand(g[c], ggml_mul_mat(gctx, w[c], x));
            struct ggml_cplan plan = ggml_graph_plan(g[c], threads, NULL);
            work = plan.work_size > work ? plan.work_size : work;
        }
        void *wdata = malloc(work + 64);
        double t[MAX_REPS], tc[MAX_REPS];
        for (int r = -1; r < reps; r++) { /* r = -1: warm-up */
            struct ggml_cgraph *gr = g[(r + 1) % copies];
            struct ggml_cplan plan = ggml_graph_plan(gr, threads, NULL);
            plan.work_data = wdata;
            const double t0 = now_s(), c0 = cpu_s();
            if (ggml_graph_compute(gr, &plan) != GGML_STATUS_SUCCESS) {
                fprintf(stderr, "bench-vs-ggml-matmul: ggml_graph_compute failed\n");
                return 1;
            }
            if (r >= 0) {
                t[r] = now_s() - t0;
                tc[r] = cpu_s() - c0;
            }
        }
        qsort(t, (size_t)reps, sizeof(double), cmp);
        qsort(tc, (size_t)reps, sizeof(double), cmp);
        const double med = reps % 2 ? t[reps / 2] : 0.5 * (t[reps / 2 - 1] + t[reps / 2]);
        const double cmed = reps % 2 ? tc[reps / 2] : 0.5 * (tc[reps / 2 - 1] + tc[reps / 2]);
        printf("%s %lldx%lld %d %.4f %.2f %.1f %.4f\n", argv[1], rows, cols, n, med * 1e3,
               (double)wbytes / med * 1e-9, 2.0 * (double)rows * (double)cols * n / med * 1e-9,
               cmed * 1e3);
        fflush(stdout);
        free(wdata);
        ggml_free(gctx);
    }
    ggml_free(wctx);
    (void)max_b;
    return 0;
}
