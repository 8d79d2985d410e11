/*
 * bench_profile.c - `dsinfer bench profile`: what a step's cost depends on, on this machine, as
 * the profile JSON that `dsinfer plan --estimate` reads (coordinator/planner/dsc_estimate.h):
 *
 * 1. memory read bandwidth: the shared probe (bench_probe.h) over a buffer far larger than the LLC;
 * 2. the matmul kernels' weight GB/s per format at 1, 4, 16 and 64 tokens and the measured FMA
 *    rate: `dsinfer bench kernels --json` run as a child process (its code, unchanged), decode
 *    rows of V3's dense MLP shapes (132 MB in fp8: tens of milliseconds a product, so that on a
 *    shared machine the median over repetitions sees the CPU share a decode step gets, not the
 *    moments a few-millisecond product ran alone; --quick: one expert's shape), the median over
 *    the shapes; the same rows on a routed expert's two shapes (7168x2048, 2048x7168; --quick:
 *    one) at 4, 8, 16 and 32 tokens, the counts a prompt chunk gives each expert, as expert_gbs
 *    (the kernels' speed at 5-8 tokens is not on a smooth line between 4 and 16); then its
 *    prefill rows (the
 *    packed GEMM at 128 and 512 tokens, fp8 and bf16, an expert's two shapes: 0.1 s and more a
 *    product already) as prefill_gbs, from
 *    their GFLOP/s (bench kernels prints GB/s with two decimals, too few at 512 tokens);
 * 3. attention per query token and layer at several context lengths: the absorbed-MLA products
 *    the engine runs (dsn_attention.c) on a latent cache of V3's width (kv_lora_rank 512 +
 *    rope 64 = 576 f32 per token), for 128 heads: scores (matmul of the cache rows with the heads'
 *    queries), softmax per head, values (transposed product), heads split over the pool's
 *    threads as the engine splits them;
 * 4. transport: `dsinfer bench transport --json --tls tcp` as a child (loopback): one-way latency
 *    = half the 1-token DISPATCH + COMBINE round trip, bandwidth from the 64- and 256-token ones.
 * 5. the CPUs' worth of time the machine gives one busy thread per online CPU (process CPU time
 *    over 2 s of wall time, 0.5 s with --quick) as cpus_effective: what node processes sharing
 *    the machine split between them (dsc_estimate.h).
 */
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "bench_opt.h"
#include "bench_probe.h"
#include "cli_args.h"
#include "dsi_pool.h"
#include "dsk.h"

#define ATTN_HEADS 128
#define ATTN_WIDTH 576 /* kv_lora_rank + qk_rope_head_dim of V3 */
#define MAX_CTX    8
#define N_FORMATS  5

/* bench kernels' dtype names, in the order of the profile's formats (dsc_weight_format_t) */
static const char *const kernel_dtypes[N_FORMATS] = {"fp8", "bf16", "int8", "int4-g32",
                                                     "int4-g128"};
static const char *const format_names[N_FORMATS] = {"fp8", "bf16", "int8", "int4", "int4-g128"};
static const int batches[4] = {1, 4, 16, 64};
static const int expert_batches[4] = {4, 8, 16, 32};

typedef struct {
    int quick, threads;
    const char *json_path;
    double bw_gbs, fma_gflops;
    double gbs[N_FORMATS][4];
    double expert_gbs[N_FORMATS][4]; /* an expert's shapes at 4, 8, 16, 32 tokens */
    double prefill_gbs[2][2]; /* fp8, bf16 at 128 and 512 tokens */
    int cpus;
    double cpus_effective; /* CPUs' worth of time `cpus` busy threads got */
    int n_ctx;
    int ctx[MAX_CTX];
    double attn_us[MAX_CTX];
    double latency_us, net_gbs;
    char level[32];
} profile_t;

/* Runs this program with `args`; its stdout into *out (malloc'ed). Returns its exit status. */
static int run_child(char *const args[], char **out)
{
    int fd[2];
    *out = NULL;
    if (pipe(fd) != 0)
        return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        close(fd[0]);
        dup2(fd[1], 1);
        close(fd[1]);
        execv("/proc/self/exe", args);
        _exit(127);
    }
    close(fd[1]);
    size_t len = 0, cap = 1 << 16;
    char *buf = malloc(cap);
    ssize_t r;
    while (buf != NULL && (r = read(fd[0], buf + len, cap - len - 1)) > 0) {
        len += (size_t)r;
        if (len + 1 == cap) {
            char *nb = realloc(buf, cap * 2);
            if (nb == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    close(fd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (buf != NULL)
        buf[len] = '\0';
    *out = buf;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* ---- 2. the kernels, through bench kernels ---- */

/*
 * bench kernels' decode rows of every format at `batch_list` (the n of `bl`) on `shapes`: the
 * median over the shapes into out[format][0..n); the measured FMA rate and kernel level into p
 * when fma is set.
 */
static int decode_rows(profile_t *p, const char *batch_list, const int *bl, int n,
                       const char *shapes, double out[N_FORMATS][4], int fma)
{
    char threads[16], reps[16], batch_arg[32], shape_arg[64];
    snprintf(threads, sizeof(threads), "%d", p->threads);
    snprintf(reps, sizeof(reps), "%d", p->quick ? 3 : 7);
    snprintf(batch_arg, sizeof(batch_arg), "%s", batch_list);
    snprintf(shape_arg, sizeof(shape_arg), "%s", shapes);
    char *args[] = {"dsinfer",
                    "bench",
                    "kernels",
                    "--json",
                    "--only",
                    "decode",
                    "--batches",
                    batch_arg,
                    "--dtypes",
                    "fp8,bf16,int8,int4-g32,int4-g128",
                    "--shapes",
                    shape_arg,
                    "--threads",
                    threads,
                    "--reps",
                    reps,
                    p->quick ? "--quick" : NULL,
                    NULL};
    char *text;
    int rc = run_child(args, &text);
    json_error_t je;
    json_t *root = rc == 0 && text != NULL ? json_loads(text, 0, &je) : NULL;
    free(text);
    json_t *ks = json_object_get(root, "kernels");
    if (root == NULL || !json_is_array(ks)) {
        fprintf(stderr, "dsinfer bench profile: dsinfer bench kernels failed (exit %d)\n", rc);
        json_decref(root);
        return -1;
    }
    if (fma) {
        p->fma_gflops = json_number_value(json_object_get(root, "fma_gflops"));
        snprintf(p->level, sizeof(p->level), "%s",
                 json_string_value(json_object_get(root, "level"))
                     ? json_string_value(json_object_get(root, "level"))
                     : "?");
    }
    for (int f = 0; f < N_FORMATS; f++) {
        for (int b = 0; b < n; b++) {
            double v[8];
            int nv = 0;
            size_t i;
            json_t *k;
            char name[32];
            snprintf(name, sizeof(name), "matmul_%s", kernel_dtypes[f]);
            json_array_foreach(ks, i, k)
            {
                const char *kn = json_string_value(json_object_get(k, "name"));
                if (kn != NULL && strcmp(kn, name) == 0 && nv < 8 &&
                    json_integer_value(json_object_get(k, "batch")) == bl[b])
                    v[nv++] = json_number_value(json_object_get(k, "gbs"));
            }
            if (nv == 0) {
                fprintf(stderr, "dsinfer bench profile: bench kernels gave no %s row at %d\n", name,
                        bl[b]);
                json_decref(root);
                return -1;
            }
            qsort(v, (size_t)nv, sizeof(double), cmp_d);
            out[f][b] = nv % 2 ? v[nv / 2] : 0.5 * (v[nv / 2 - 1] + v[nv / 2]);
            if (out[f][b] < 0.01) /* bench kernels prints 2 decimals: a very slow build */
                out[f][b] = 0.01;
        }
    }
    json_decref(root);
    return 0;
}

/* matmul_gbs: V3's dense MLP shapes (--quick: an expert's) at 1, 4, 16, 64 tokens; the FMA rate */
static int measure_kernels(profile_t *p)
{
    if (decode_rows(p, "1,4,16,64", batches, 4, p->quick ? "2048x7168" : "18432x7168,7168x18432",
                    p->gbs, 1) != 0)
        return -1;
    if (!(p->fma_gflops > 0)) /* the scalar level measures none: the f32 rate of a kernel */
        p->fma_gflops = p->gbs[1][3] * 64; /* bf16 at 64 tokens: 64 flops per weight byte */
    return 0;
}

/* expert_gbs: a routed expert's two shapes (--quick: one) at 4, 8, 16, 32 tokens */
static int measure_experts(profile_t *p)
{
    return decode_rows(p, "4,8,16,32", expert_batches, 4,
                       p->quick ? "2048x7168" : "7168x2048,2048x7168", p->expert_gbs, 0);
}

/* The packed GEMM of prefill: bench kernels' prefill rows, fp8 and bf16 at 128 and 512 tokens. */
static int measure_prefill(profile_t *p)
{
    char threads[16];
    snprintf(threads, sizeof(threads), "%d", p->threads);
    char *args[] = {"dsinfer",   "bench",
                    "kernels",   "--json",
                    "--only",    "prefill",
                    "--dtypes",  "fp8,bf16",
                    "--shapes",  p->quick ? "2048x7168" : "2048x7168,7168x2048",
                    "--threads", threads,
                    "--reps",    p->quick ? "1" : "3",
                    NULL};
    char *out;
    int rc = run_child(args, &out);
    json_error_t je;
    json_t *root = rc == 0 && out != NULL ? json_loads(out, 0, &je) : NULL;
    free(out);
    json_t *ks = json_object_get(root, "kernels");
    if (root == NULL || !json_is_array(ks)) {
        fprintf(stderr,
                "dsinfer bench profile: dsinfer bench kernels --only prefill failed (exit "
                "%d)\n",
                rc);
        json_decref(root);
        return -1;
    }
    static const char *const names[2] = {"matmul_fp8", "matmul_bf16"};
    static const double weight_bytes[2] = {1, 2}; /* per weight: fp8 (its scales aside), bf16 */
    static const int tokens[2] = {128, 512};
    for (int f = 0; f < 2; f++) {
        for (int b = 0; b < 2; b++) {
            double v[8];
            int n = 0;
            size_t i;
            json_t *k;
            json_array_foreach(ks, i, k)
            {
                const char *kn = json_string_value(json_object_get(k, "name"));
                if (kn != NULL && strcmp(kn, names[f]) == 0 && n < 8 &&
                    json_integer_value(json_object_get(k, "batch")) == tokens[b])
                    v[n++] = json_number_value(json_object_get(k, "gflops"));
            }
            if (n == 0) {
                fprintf(stderr, "dsinfer bench profile: bench kernels gave no %s row at %d\n",
                        names[f], tokens[b]);
                json_decref(root);
                return -1;
            }
            qsort(v, (size_t)n, sizeof(double), cmp_d);
            const double gflops = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
            /* 2 flops per weight and token */
            p->prefill_gbs[f][b] = gflops * weight_bytes[f] / (2.0 * tokens[b]);
            if (p->prefill_gbs[f][b] < 1e-4)
                p->prefill_gbs[f][b] = 1e-4;
        }
    }
    json_decref(root);
    return 0;
}

/* ---- 3. attention ---- */

typedef struct {
    const dsk_ops_t *ops;
    const dsk_matrix_t *cache; /* [ctx, ATTN_WIDTH] f32 */
    const float *q;            /* [heads, ATTN_WIDTH] */
    float *scores;             /* [heads, ctx] */
    float *out;                /* [heads, ATTN_WIDTH] */
} attn_job_t;

static void attn_cb(void *arg, int64_t h0, int64_t h1)
{
    attn_job_t *j = arg;
    const int64_t ctx = j->cache->rows;
    j->ops->matmul[DSK_DTYPE_F32](j->cache, 0, ctx, j->q + h0 * ATTN_WIDTH, ATTN_WIDTH, h1 - h0,
                                  j->scores + h0 * ctx, ctx);
    for (int64_t h = h0; h < h1; h++)
        j->ops->softmax(j->scores + h * ctx, ctx);
    memset(j->out + h0 * ATTN_WIDTH, 0, (size_t)((h1 - h0) * ATTN_WIDTH) * sizeof(float));
    j->ops->matmul_t[DSK_DTYPE_F32](j->cache, 0, ctx, j->scores + h0 * ctx, ctx, h1 - h0,
                                    j->out + h0 * ATTN_WIDTH, ATTN_WIDTH);
}

static int measure_attention(profile_t *p, dsi_pool_t *pool, const dsk_ops_t *ops)
{
    static const int full[] = {512, 2048, 8192}, quick[] = {256, 1024};
    const int *ctxs = p->quick ? quick : full;
    p->n_ctx = p->quick ? 2 : 3;
    const int reps = p->quick ? 3 : 7;
    for (int c = 0; c < p->n_ctx; c++) {
        const int64_t ctx = ctxs[c];
        float *cache = malloc((size_t)(ctx * ATTN_WIDTH) * sizeof(float));
        float *q = malloc((size_t)ATTN_HEADS * ATTN_WIDTH * sizeof(float));
        float *scores = malloc((size_t)(ATTN_HEADS * ctx) * sizeof(float));
        float *out = malloc((size_t)ATTN_HEADS * ATTN_WIDTH * sizeof(float));
        if (!cache || !q || !scores || !out) {
            free(cache), free(q), free(scores), free(out);
            fprintf(stderr, "dsinfer bench profile: out of memory for attention\n");
            return -1;
        }
        for (int64_t i = 0; i < ctx * ATTN_WIDTH; i++)
            cache[i] = (float)((i * 7919) % 2001 - 1000) * 1e-4f;
        for (int64_t i = 0; i < ATTN_HEADS * ATTN_WIDTH; i++)
            q[i] = (float)((i * 104729) % 2001 - 1000) * 1e-4f;
        dsk_matrix_t w = {DSK_DTYPE_F32, ctx, ATTN_WIDTH, cache, NULL, DSK_LAYOUT_ROWS};
        attn_job_t job = {ops, &w, q, scores, out};
        double t[16];
        for (int r = -1; r < reps; r++) {
            const double t0 = dsi_now_s();
            dsi_pool_run(pool, ATTN_HEADS, 1, attn_cb, &job);
            if (r >= 0)
                t[r] = dsi_now_s() - t0;
        }
        p->ctx[c] = (int)ctx;
        p->attn_us[c] = bench_median(t, reps) * 1e6;
        free(cache), free(q), free(scores), free(out);
    }
    return 0;
}

/* ---- 5. the CPUs' worth of time the machine gives `cpus` busy threads ---- */

typedef struct {
    double until; /* wall clock, dsi_now_s() */
} busy_t;

static void busy_cb(void *arg, int64_t begin, int64_t end)
{
    const busy_t *b = arg;
    double x = 1.0 + (double)(end - begin);
    while (dsi_now_s() < b->until) {
        for (int i = 0; i < 100000; i++)
            x = x * 1.0000001 + 1e-9;
    }
    volatile double keep = x; /* the arithmetic is not optimized away */
    (void)keep;
}

static double process_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/*
 * `cpus` threads computing for `seconds` of wall time: the process's CPU time over the wall time.
 * On a machine shared with other sessions' work, below `cpus` (Linux shares the CPUs between
 * sessions, then between a session's threads). 0 on failure.
 */
static double measure_cpu_share(int cpus, double seconds)
{
    dsi_pool_t *pool = dsi_pool_create(cpus);
    if (pool == NULL)
        return 0;
    const double c0 = process_cpu_s(), w0 = dsi_now_s();
    busy_t b = {w0 + seconds};
    dsi_pool_run(pool, dsi_pool_threads(pool), 1, busy_cb, &b);
    const double c1 = process_cpu_s(), w1 = dsi_now_s();
    dsi_pool_destroy(pool);
    const double share = (c1 - c0) / (w1 - w0);
    return share < cpus ? share : cpus;
}

/* ---- 4. transport ---- */

static int measure_transport(profile_t *p)
{
    char *args[] = {"dsinfer", "bench", "transport", "--json",
                    "--tls",   "tcp",   "--iters",   p->quick ? "20" : "100",
                    NULL};
    char *out;
    int rc = run_child(args, &out);
    json_error_t je;
    json_t *root = rc == 0 && out != NULL ? json_loads(out, 0, &je) : NULL;
    free(out);
    double us[3] = {0}, bytes[3] = {0};
    size_t i;
    json_t *r;
    json_array_foreach(root, i, r)
    {
        const json_int_t tok = json_integer_value(json_object_get(r, "tokens"));
        const int slot = tok == 1 ? 0 : tok == 64 ? 1 : tok == 256 ? 2 : -1;
        if (slot < 0)
            continue;
        us[slot] = json_number_value(json_object_get(r, "dsinfer_us"));
        bytes[slot] = (double)json_integer_value(json_object_get(r, "dispatch_bytes")) +
                      (double)json_integer_value(json_object_get(r, "combine_bytes"));
    }
    json_decref(root);
    if (!(us[0] > 0) || !(us[2] > us[1])) {
        fprintf(stderr, "dsinfer bench profile: dsinfer bench transport failed (exit %d)\n", rc);
        return -1;
    }
    p->latency_us = us[0] / 2;
    p->net_gbs = (bytes[2] - bytes[1]) / ((us[2] - us[1]) * 1e3);
    return 0;
}

static void write_json(const profile_t *p, FILE *f)
{
    fprintf(f, "{\n  \"profile_version\": 1,\n  \"measured_by\": \"dsinfer bench profile%s\",\n",
            p->quick ? " --quick" : "");
    fprintf(f, "  \"kernel_level\": \"%s\",\n  \"threads\": %d,\n  \"cpus\": %d,\n", p->level,
            p->threads, p->cpus);
    fprintf(f, "  \"cpus_effective\": %.3f,\n", p->cpus_effective);
    fprintf(f, "  \"memory_bw_gbs\": %.3f,\n  \"fma_gflops\": %.2f,\n", p->bw_gbs, p->fma_gflops);
    fprintf(f, "  \"matmul_gbs\": {\n    \"batches\": [1, 4, 16, 64]");
    for (int fm = 0; fm < N_FORMATS; fm++)
        fprintf(f, ",\n    \"%s\": [%.4f, %.4f, %.4f, %.4f]", format_names[fm], p->gbs[fm][0],
                p->gbs[fm][1], p->gbs[fm][2], p->gbs[fm][3]);
    fprintf(f,
            "\n  },\n  \"prefill_gbs\": {\n    \"batches\": [128, 512],\n"
            "    \"fp8\": [%.5f, %.5f],\n    \"bf16\": [%.5f, %.5f]",
            p->prefill_gbs[0][0], p->prefill_gbs[0][1], p->prefill_gbs[1][0], p->prefill_gbs[1][1]);
    fprintf(f, "\n  },\n  \"expert_gbs\": {\n    \"batches\": [4, 8, 16, 32]");
    for (int fm = 0; fm < N_FORMATS; fm++)
        fprintf(f, ",\n    \"%s\": [%.4f, %.4f, %.4f, %.4f]", format_names[fm],
                p->expert_gbs[fm][0], p->expert_gbs[fm][1], p->expert_gbs[fm][2],
                p->expert_gbs[fm][3]);
    fprintf(f,
            "\n  },\n  \"attention\": {\n    \"heads\": %d,\n    \"width\": %d,\n"
            "    \"context\": [",
            ATTN_HEADS, ATTN_WIDTH);
    for (int c = 0; c < p->n_ctx; c++)
        fprintf(f, "%s%d", c ? ", " : "", p->ctx[c]);
    fprintf(f, "],\n    \"us_per_token_layer\": [");
    for (int c = 0; c < p->n_ctx; c++)
        fprintf(f, "%s%.3f", c ? ", " : "", p->attn_us[c]);
    fprintf(f,
            "]\n  },\n  \"network\": {\n    \"latency_us\": %.3f,\n    \"bandwidth_gbs\": %.4f,\n"
            "    \"measured_over\": \"loopback tcp\"\n  }\n}\n",
            p->latency_us, p->net_gbs);
}

static void print_text(const profile_t *p)
{
    printf("machine profile (%s, %d threads)\n", p->level, p->threads);
    printf("memory read bandwidth: %.1f GB/s; FMA rate: %.1f GFLOP/s\n", p->bw_gbs, p->fma_gflops);
    printf("%d busy threads got %.2f CPUs' worth of time\n", p->cpus, p->cpus_effective);
    printf("matmul weight GB/s     1 tok    4 tok   16 tok   64 tok\n");
    for (int f = 0; f < N_FORMATS; f++)
        printf("  %-18s %8.2f %8.2f %8.2f %8.2f\n", format_names[f], p->gbs[f][0], p->gbs[f][1],
               p->gbs[f][2], p->gbs[f][3]);
    printf("routed expert GB/s     4 tok    8 tok   16 tok   32 tok\n");
    for (int f = 0; f < N_FORMATS; f++)
        printf("  %-18s %8.2f %8.2f %8.2f %8.2f\n", format_names[f], p->expert_gbs[f][0],
               p->expert_gbs[f][1], p->expert_gbs[f][2], p->expert_gbs[f][3]);
    printf("prefill (packed GEMM) weight GB/s: fp8 %.3f at 128 tokens, %.3f at 512; bf16 %.3f, "
           "%.3f\n",
           p->prefill_gbs[0][0], p->prefill_gbs[0][1], p->prefill_gbs[1][0], p->prefill_gbs[1][1]);
    printf("attention, %d heads x %d, per query token and layer:", ATTN_HEADS, ATTN_WIDTH);
    for (int c = 0; c < p->n_ctx; c++)
        printf(" %d ctx %.1f us%s", p->ctx[c], p->attn_us[c], c + 1 < p->n_ctx ? "," : "\n");
    printf("transport (loopback tcp): %.1f us one way, %.2f GB/s\n", p->latency_us, p->net_gbs);
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: dsinfer bench profile [--json FILE] [--quick] [--threads N]\n"
            "  measures what a step's cost depends on on this machine: memory read bandwidth,\n"
            "  the matmul kernels' weight GB/s per format at 1, 4, 16, 64 tokens (V3's dense\n"
            "  MLP shapes) and on a routed expert's shapes at 4, 8, 16, 32, the packed\n"
            "  GEMM's (prefill) at 128 and 512 tokens and the FMA rate (bench kernels),\n"
            "  attention time per context length (128 heads x 576),\n"
            "  the CPUs' worth of time one busy thread per CPU gets (a shared machine: less),\n"
            "  transport latency and bandwidth (bench transport over loopback tcp)\n"
            "  --json FILE   also write the profile JSON that dsinfer plan --estimate reads\n"
            "                (- for stdout, instead of the text)\n"
            "  --quick       smaller buffers, one shape, fewer repetitions and contexts\n"
            "  --threads N   pool threads (default: online CPUs)\n");
}

int dsinfer_bench_profile(int argc, char **argv)
{
    static const struct option opts[] = {{"json", required_argument, NULL, 'j'},
                                         {"quick", no_argument, NULL, 'q'},
                                         {"threads", required_argument, NULL, 't'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    profile_t p;
    memset(&p, 0, sizeof(p));
    long long threads = 0;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'j':
            p.json_path = optarg;
            break;
        case 'q':
            p.quick = 1;
            break;
        case 't':
            if (cli_parse_int("bench profile", "--threads", optarg, 1, 1024, &threads) != 0)
                return 2;
            break;
        default:
            return bench_opt_usage(c == 'h', usage);
        }
    }
    if (bench_opt_rest("profile", argc, argv, usage) != 0)
        return 2;
    FILE *jf = NULL;
    if (p.json_path != NULL && strcmp(p.json_path, "-") != 0 &&
        (jf = fopen(p.json_path, "w")) == NULL) {
        fprintf(stderr, "dsinfer bench profile: --json: cannot write '%s'\n", p.json_path);
        return 2;
    }
    dsi_pool_t *pool = dsi_pool_create((int)threads);
    if (pool == NULL) {
        fprintf(stderr, "dsinfer bench profile: cannot start the thread pool\n");
        if (jf)
            fclose(jf);
        return 1;
    }
    p.threads = dsi_pool_threads(pool);
    const long online = sysconf(_SC_NPROCESSORS_ONLN);
    p.cpus = online > 0 ? (int)online : p.threads;
    dsk_ops_t ops;
    dsk_ops_init(&ops, dsk_level_detect());
    int rc = 1;
    p.cpus_effective = measure_cpu_share(p.cpus, p.quick ? 0.5 : 2.0);
    p.bw_gbs = bench_memory_bandwidth(pool, (size_t)(p.quick ? 256 : 1024) << 20, p.quick ? 3 : 7);
    if (!(p.cpus_effective > 0) || !(p.bw_gbs > 0) || measure_kernels(&p) != 0 ||
        measure_experts(&p) != 0 || measure_prefill(&p) != 0 ||
        measure_attention(&p, pool, &ops) != 0 || measure_transport(&p) != 0)
        goto out;
    if (p.json_path != NULL && strcmp(p.json_path, "-") == 0) {
        write_json(&p, stdout);
    } else {
        print_text(&p);
        if (jf != NULL)
            write_json(&p, jf);
    }
    rc = 0;
out:
    if (jf != NULL && fclose(jf) != 0 && rc == 0) {
        fprintf(stderr, "dsinfer bench profile: --json: cannot write '%s'\n", p.json_path);
        rc = 1;
    }
    dsi_pool_destroy(pool);
    return rc;
}
