/*
 * dsc_estimate.c - a plan's expected decode and prefill speed from a machine profile (the model
 * is described in dsc_estimate.h).
 */
#include "dsc_estimate.h"
#include "dsc_planner.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const int dsc_profile_batches[DSC_PROFILE_BATCHES] = {1, 4, 16, 64};
const int dsc_profile_prefill_batches[DSC_PROFILE_PREFILL] = {128, 512};
const int dsc_profile_expert_batches[DSC_PROFILE_EXPERT] = {4, 8, 16, 32};

static const char *const term_names[DSC_TERM_COUNT] = {"weights bandwidth", "compute", "attention",
                                                       "network latency", "network bandwidth"};

const char *dsc_term_name(dsc_term_t t)
{
    return (unsigned)t < DSC_TERM_COUNT ? term_names[t] : "?";
}

static dsi_status_t fail(char *err, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, size, fmt, ap);
    va_end(ap);
    return DSI_ERR_CONFIG;
}

/* A number > 0 (>= 0 when zero_ok) at key `key` of `obj`; -1 after writing err. */
static int get_num(json_t *obj, const char *key, const char *path, int zero_ok, double *out,
                   const char *what, char *err, size_t size)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL) {
        fail(err, size, "%s: field %s%s is missing", what, path, key);
        return -1;
    }
    if (!json_is_number(v) || !isfinite(json_number_value(v)) || json_number_value(v) < 0 ||
        (!zero_ok && json_number_value(v) == 0)) {
        fail(err, size, "%s: field %s%s must be a number %s", what, path, key,
             zero_ok ? ">= 0" : "> 0");
        return -1;
    }
    *out = json_number_value(v);
    return 0;
}

/* An array of exactly n (n_max: up to n_max, *n set) numbers > 0. */
static int get_array(json_t *obj, const char *key, const char *path, double *out, int *n, int n_max,
                     const char *what, char *err, size_t size)
{
    json_t *a = json_object_get(obj, key);
    if (a == NULL) {
        fail(err, size, "%s: field %s%s is missing", what, path, key);
        return -1;
    }
    const int len = json_is_array(a) ? (int)json_array_size(a) : -1;
    if (len < 1 || (*n > 0 && len != *n) || len > n_max) {
        if (*n > 0)
            fail(err, size, "%s: field %s%s must be an array of %d numbers", what, path, key, *n);
        else
            fail(err, size, "%s: field %s%s must be an array of 1 to %d numbers", what, path, key,
                 n_max);
        return -1;
    }
    for (int i = 0; i < len; i++) {
        json_t *v = json_array_get(a, (size_t)i);
        if (!json_is_number(v) || !(json_number_value(v) > 0) || !isfinite(json_number_value(v))) {
            fail(err, size, "%s: field %s%s[%d] must be a number > 0", what, path, key, i);
            return -1;
        }
        out[i] = json_number_value(v);
    }
    *n = len;
    return 0;
}

/*
 * The object `key` of `root`: {"batches": [the n of `batches`], FORMAT: [n numbers > 0], ...}
 * into out[format * n + 0..n) (a [formats][n] array). Absent: when required an error (as is no
 * format), else out untouched and 0. Bad: -1 after writing err.
 */
#define RATES_MAX 4 /* the most token counts of such an object */
_Static_assert(DSC_PROFILE_BATCHES <= RATES_MAX && DSC_PROFILE_PREFILL <= RATES_MAX &&
                   DSC_PROFILE_EXPERT <= RATES_MAX,
               "get_rates' batches buffer");
static int get_rates(json_t *root, const char *key, int required, const int *batches, int n,
                     double *out, const char *what, char *err, size_t size)
{
    json_t *obj = json_object_get(root, key);
    if (obj == NULL && !required)
        return 0;
    if (!json_is_object(obj)) {
        fail(err, size, "%s: field %s %s", what, key,
             obj == NULL ? "is missing" : "must be an object");
        return -1;
    }
    char path[64], list[64];
    snprintf(path, sizeof(path), "%s.", key);
    double b[RATES_MAX];
    int nb = n;
    if (get_array(obj, "batches", path, b, &nb, n, what, err, size))
        return -1;
    size_t used = 0;
    for (int i = 0; i < n; i++)
        used +=
            (size_t)snprintf(list + used, sizeof(list) - used, "%s%d", i ? ", " : "", batches[i]);
    for (int i = 0; i < n; i++) {
        if (b[i] != batches[i]) {
            fail(err, size, "%s: field %s.batches must be [%s]", what, key, list);
            return -1;
        }
    }
    int any = 0;
    const char *name;
    json_t *val;
    json_object_foreach(obj, name, val)
    {
        if (strcmp(name, "batches") == 0)
            continue;
        dsc_weight_format_t f;
        if (dsc_weight_format_parse(name, &f) != DSI_OK) {
            fail(err, size,
                 "%s: field %s.%s is not a weight format (fp8, bf16, int8, int4, int4-g128)", what,
                 key, name);
            return -1;
        }
        int k = n;
        if (get_array(obj, name, path, out + (size_t)f * (size_t)n, &k, n, what, err, size))
            return -1;
        any = 1;
    }
    if (required && !any) {
        fail(err, size, "%s: field %s lists no weight format", what, key);
        return -1;
    }
    return 0;
}

dsi_status_t dsc_profile_parse(const char *text, const char *what, dsc_profile_t *out, char *err,
                               size_t err_size)
{
    json_error_t je;
    json_t *root = json_loads(text, 0, &je);
    if (root == NULL)
        return fail(err, err_size, "%s: not JSON (line %d: %s)", what, je.line, je.text);
    dsc_profile_t p;
    memset(&p, 0, sizeof(p));
    dsi_status_t st = DSI_ERR_CONFIG;
    if (!json_is_object(root)) {
        fail(err, err_size, "%s: not a JSON object", what);
        goto out;
    }
    double threads = 0;
    json_t *t = json_object_get(root, "threads");
    if (t != NULL && (!json_is_integer(t) || json_integer_value(t) < 1)) {
        fail(err, err_size, "%s: field threads must be an integer >= 1", what);
        goto out;
    }
    threads = t != NULL ? (double)json_integer_value(t) : 0;
    p.threads = (int)threads;
    json_t *cpus = json_object_get(root, "cpus");
    if (cpus != NULL && (!json_is_integer(cpus) || json_integer_value(cpus) < 1 ||
                         json_integer_value(cpus) > 1 << 20)) {
        fail(err, err_size, "%s: field cpus must be an integer >= 1", what);
        goto out;
    }
    p.cpus = cpus != NULL ? (int)json_integer_value(cpus) : 0;
    if (json_object_get(root, "cpus_effective") != NULL &&
        get_num(root, "cpus_effective", "", 0, &p.cpus_effective, what, err, err_size))
        goto out;
    if (get_num(root, "memory_bw_gbs", "", 0, &p.memory_bw_gbs, what, err, err_size) ||
        get_num(root, "fma_gflops", "", 0, &p.fma_gflops, what, err, err_size))
        goto out;

    /* the kernels per format at decode sizes; optional: the packed GEMM at prefill sizes, an
     * expert's products at a chunk's sizes */
    if (get_rates(root, "matmul_gbs", 1, dsc_profile_batches, DSC_PROFILE_BATCHES,
                  &p.matmul_gbs[0][0], what, err, err_size) ||
        get_rates(root, "prefill_gbs", 0, dsc_profile_prefill_batches, DSC_PROFILE_PREFILL,
                  &p.prefill_gbs[0][0], what, err, err_size) ||
        get_rates(root, "expert_gbs", 0, dsc_profile_expert_batches, DSC_PROFILE_EXPERT,
                  &p.expert_gbs[0][0], what, err, err_size))
        goto out;

    json_t *at = json_object_get(root, "attention");
    if (!json_is_object(at)) {
        fail(err, err_size, "%s: field attention %s", what,
             at == NULL ? "is missing" : "must be an object");
        goto out;
    }
    double heads, width;
    if (get_num(at, "heads", "attention.", 0, &heads, what, err, err_size) ||
        get_num(at, "width", "attention.", 0, &width, what, err, err_size))
        goto out;
    p.attn_heads = (int)heads;
    p.attn_width = (int)width;
    int nc = 0, nu;
    if (get_array(at, "context", "attention.", p.attn_ctx, &nc, DSC_PROFILE_MAX_CTX, what, err,
                  err_size))
        goto out;
    nu = nc;
    if (get_array(at, "us_per_token_layer", "attention.", p.attn_us, &nu, DSC_PROFILE_MAX_CTX, what,
                  err, err_size))
        goto out;
    for (int i = 1; i < nc; i++) {
        if (p.attn_ctx[i] <= p.attn_ctx[i - 1]) {
            fail(err, err_size, "%s: field attention.context must be increasing", what);
            goto out;
        }
    }
    p.n_attn = nc;

    json_t *net = json_object_get(root, "network");
    if (!json_is_object(net)) {
        fail(err, err_size, "%s: field network %s", what,
             net == NULL ? "is missing" : "must be an object");
        goto out;
    }
    if (get_num(net, "latency_us", "network.", 1, &p.net_latency_us, what, err, err_size) ||
        get_num(net, "bandwidth_gbs", "network.", 0, &p.net_gbs, what, err, err_size))
        goto out;
    *out = p;
    st = DSI_OK;
out:
    json_decref(root);
    return st;
}

dsi_status_t dsc_profile_load(const char *path, dsc_profile_t *out, char *err, size_t err_size)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, err_size, "%s: cannot open", path);
        return DSI_ERR_IO;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 8192;
            if (cap > (16u << 20)) {
                free(buf);
                fclose(f);
                snprintf(err, err_size, "%s: larger than 16 MiB: not a profile", path);
                return DSI_ERR_CONFIG;
            }
            char *nb = realloc(buf, cap);
            if (nb == NULL) {
                free(buf);
                fclose(f);
                snprintf(err, err_size, "%s: out of memory", path);
                return DSI_ERR_NOMEM;
            }
            buf = nb;
        }
        size_t r = fread(buf + len, 1, 4096, f);
        len += r;
        if (r < 4096)
            break;
    }
    fclose(f);
    buf[len] = '\0';
    dsi_status_t st = dsc_profile_parse(buf, path, out, err, err_size);
    free(buf);
    return st;
}

/* ---- the model ---- */

typedef struct {
    const dsc_profile_t *p;
    dsc_weight_format_t fmt;
    double terms[DSC_TERM_COUNT]; /* accumulated seconds */
    double slow;                  /* the machine-sharing factor of the matmuls being added */
} acc_t;

/*
 * The packed GEMM's rates of format f at 128 and 512 tokens: its own, else (integer formats, the
 * same GEMM after dequantizing) fp8's, else none (NULL).
 */
static const double *prefill_rates(const dsc_profile_t *p, dsc_weight_format_t f)
{
    if (p->prefill_gbs[f][0] > 0)
        return p->prefill_gbs[f];
    if (f != DSC_WEIGHT_BF16 && p->prefill_gbs[DSC_WEIGHT_FP8][0] > 0)
        return p->prefill_gbs[DSC_WEIGHT_FP8];
    return NULL;
}

/* Between the points (b0, r0) and (b1, r1): log r linear in log b (a constant rate and one in
 * proportion to 1 / b, a compute-bound kernel's, stay exact). */
static double loglog(double b, double b0, double r0, double b1, double r1)
{
    const double x = log(b / b0) / log(b1 / b0);
    return exp(log(r0) * (1 - x) + log(r1) * x);
}

/* Weight GB/s of format f at b tokens. */
static double rate(const dsc_profile_t *p, dsc_weight_format_t f, double b)
{
    const double *r = p->matmul_gbs[f];
    if (b <= 1)
        return r[0];
    if (b >= 64) {
        /* compute-bound: through the packed GEMM's points at 128 and 512 tokens, the flop rate
         * (rate x tokens) held beyond the last point */
        const double *g = prefill_rates(p, f);
        if (g == NULL)
            return r[3] * 64.0 / b;
        if (b >= 512)
            return g[1] * 512.0 / b;
        return b >= 128 ? loglog(b, 128, g[0], 512, g[1]) : loglog(b, 64, r[3], 128, g[0]);
    }
    const double lb = log(b) / log(4.0); /* 0..3 between the points 1, 4, 16, 64 */
    const int i = lb >= 3 ? 2 : (int)lb;
    return loglog(b, dsc_profile_batches[i], r[i], dsc_profile_batches[i + 1], r[i + 1]);
}

/*
 * Weight GB/s of a routed expert's product in format f at b tokens: through expert_gbs between
 * the 1- and the 64-token points of matmul_gbs (dsc_estimate.h); rate() without expert_gbs.
 */
static double expert_rate(const dsc_profile_t *p, dsc_weight_format_t f, double b)
{
    const double *e = p->expert_gbs[f];
    if (e[0] <= 0 || b <= 1 || b >= 64)
        return rate(p, f, b);
    if (b <= 4)
        return loglog(b, 1, p->matmul_gbs[f][0], 4, e[0]);
    if (b >= 32)
        return loglog(b, 32, e[3], 64, p->matmul_gbs[f][3]);
    const int i = b < 8 ? 0 : b < 16 ? 1 : 2;
    return loglog(b, dsc_profile_expert_batches[i], e[i], dsc_profile_expert_batches[i + 1],
                  e[i + 1]);
}

/* Multiply `bytes` of weights in format f with b tokens at `gbs`: weights and compute terms. */
static double matmul_at(acc_t *a, double bytes, double gbs)
{
    if (bytes <= 0)
        return 0;
    const double slow = a->slow > 1 ? a->slow : 1;
    const double mem = slow * bytes / (a->p->memory_bw_gbs * 1e9);
    double t = slow * bytes / (gbs * 1e9);
    t = t > mem ? t : mem; /* streamed from memory: never faster than its read bandwidth */
    a->terms[DSC_TERM_WEIGHTS] += t < mem ? t : mem;
    a->terms[DSC_TERM_COMPUTE] += t > mem ? t - mem : 0;
    return t;
}

/* Multiply `bytes` of weights in format f with b tokens. */
static double matmul(acc_t *a, dsc_weight_format_t f, double bytes, double b)
{
    return b > 0 ? matmul_at(a, bytes, rate(a->p, f, b)) : 0;
}

/* Seconds of attention of one query token in one layer at context `ctx`. */
static double attn_s(const dsc_profile_t *p, const dsn_config_t *cfg, double ctx)
{
    const int n = p->n_attn;
    double us;
    if (n == 1 || ctx <= p->attn_ctx[0]) { /* below the first point: in proportion to 0 */
        us = p->attn_us[0] * ctx / p->attn_ctx[0];
    } else {
        int i = 0;
        while (i < n - 2 && ctx > p->attn_ctx[i + 1])
            i++;
        const double x = (ctx - p->attn_ctx[i]) / (p->attn_ctx[i + 1] - p->attn_ctx[i]);
        us = p->attn_us[i] + x * (p->attn_us[i + 1] - p->attn_us[i]);
        if (us < 0)
            us = 0;
    }
    const double scale = (double)cfg->num_attention_heads *
                         (double)(cfg->kv_lora_rank + cfg->qk_rope_head_dim) /
                         ((double)p->attn_heads * (double)p->attn_width);
    return us * 1e-6 * scale;
}

static void net(acc_t *a, double hops, double bytes)
{
    a->terms[DSC_TERM_NET_LATENCY] += hops * a->p->net_latency_us * 1e-6;
    a->terms[DSC_TERM_NET_BW] += bytes / (a->p->net_gbs * 1e9);
}

static double sum_terms(const double *t)
{
    double s = 0;
    for (int i = 0; i < DSC_TERM_COUNT; i++)
        s += t[i];
    return s;
}

typedef struct {
    const dsn_config_t *cfg;
    const dsc_memory_t *mem;
    const dst_plan_t *plan;
    const double *share; /* [layer]: the largest fraction of a MoE layer's experts on one node */
    double per_machine;  /* nodes sharing a machine (>= 1) */
} ctx_t;

/* How much slower work runs when `busy` nodes of a stage run it at once, nodes of one machine
 * sharing its CPUs (dsc_estimate.h). */
static double sharing(const ctx_t *c, const dsc_profile_t *p, double busy)
{
    const double together = busy < c->per_machine ? busy : c->per_machine;
    const double cpus = p->cpus > 0 ? p->cpus : p->threads > 0 ? p->threads : 1;
    const double threads = p->threads > 0 ? p->threads : cpus;
    const double E = p->cpus_effective > 0 ? p->cpus_effective : cpus;
    /* the CPUs the profile's threads had, against each busy node's part of E */
    const double profiled = threads < E ? threads : E;
    const double each = threads < E / together ? threads : E / together;
    const double f = profiled / each;
    return f > 1 ? f : 1;
}

/*
 * One stage's time for a batch of `tok` tokens in the stage in all, `per_node` of them on the
 * busiest node (its attention and non-expert weights), each attending to `attn_ctx` tokens (the
 * mean: the cost is linear in it). Accumulates the terms into a.
 */
static double stage_time(const ctx_t *c, acc_t *a, uint32_t s, double tok, double per_node,
                         double head_tok, double attn_ctx, int nodes_in_stage)
{
    const dsn_config_t *cfg = c->cfg;
    const dsc_memory_t *m = c->mem;
    const dst_plan_stage_t *st = &c->plan->stages[s];
    const double N = cfg->n_routed_experts, K = cfg->num_experts_per_tok;
    const double H = cfg->hidden_size, e = nodes_in_stage;
    /* the nodes with sequences run attention and the non-expert weights at once; every node of
     * the stage its experts */
    const double with_seqs = per_node < tok ? ceil(tok / per_node) : 1;
    const double dense_slow = sharing(c, a->p, with_seqs < e ? with_seqs : e);
    const double expert_slow = sharing(c, a->p, e);
    double t = 0;
    for (uint32_t l = st->first_layer; l < st->end_layer; l++) {
        a->slow = dense_slow;
        t += matmul(a, a->fmt, (double)m->attn, per_node);
        const double at = dense_slow * per_node * attn_s(a->p, cfg, attn_ctx);
        a->terms[DSC_TERM_ATTENTION] += at;
        t += at;
        if (!dsc_memory_is_moe_layer(m, cfg, l)) {
            t += matmul(a, a->fmt, (double)m->dense_mlp, per_node);
            continue;
        }
        t += matmul(a, DSC_WEIGHT_BF16, (double)m->router, per_node);
        t += matmul(a, a->fmt, (double)m->shared_experts, per_node);
        /* the tokens of the whole stage touch these experts; the busiest node holds `share` */
        const double hit = 1 - pow(1 - K / N, tok);
        const double distinct = N * hit * c->share[l];
        const double per_expert = tok * K / (N * hit);
        a->slow = expert_slow;
        t += per_expert > 0
                 ? matmul_at(a, distinct * (double)m->expert, expert_rate(a->p, a->fmt, per_expert))
                 : 0;
        a->slow = dense_slow;
        if (e > 1) {
            /* DISPATCH: a row per token and other node it reaches; COMBINE: a row per pair
             * leaving the node */
            const double rows =
                per_node * (e - 1) * (1 - pow(1 - 1 / e, K)) + per_node * K * (e - 1) / e;
            const double before = sum_terms(a->terms);
            net(a, 2, rows * H * 4);
            t += sum_terms(a->terms) - before;
        }
    }
    a->slow = dense_slow;
    if (s == c->plan->n_stages - 1) /* the logits of each sequence's last token only */
        t += matmul(a, DSC_WEIGHT_BF16, (double)m->head, head_tok);
    return t;
}

static int stage_nodes(const dst_plan_t *plan, uint32_t s)
{
    int n = 0;
    for (uint32_t i = 0; i < plan->n_nodes; i++)
        n += plan->nodes[i].stage == s;
    return n > 0 ? n : 1;
}

static dsc_term_t biggest(const double *t)
{
    int b = 0;
    for (int i = 1; i < DSC_TERM_COUNT; i++)
        b = t[i] > t[b] ? i : b;
    return (dsc_term_t)b;
}

/*
 * `n_mb` micro-batches of `tok` tokens (decode: one per sequence, split over a stage's nodes;
 * one_seq: one sequence's chunk, on one node) through the stages, or `chunks` chunks in a row:
 * returns the time of a decode cycle or of the whole prefill; the terms of its critical path
 * into out_terms.
 */
static double pipeline(const ctx_t *c, const dsc_profile_t *p, dsc_weight_format_t fmt, double tok,
                       double attn_ctx, double n_mb, double chunks, int one_seq, double *out_terms)
{
    const dst_plan_t *plan = c->plan;
    double sum = 0, slowest = 0;
    double sum_t[DSC_TERM_COUNT] = {0}, slow_t[DSC_TERM_COUNT] = {0};
    for (uint32_t s = 0; s < plan->n_stages; s++) {
        acc_t a = {p, fmt, {0}, 1};
        const int e = stage_nodes(plan, s);
        const double per_node = one_seq ? tok : ceil(tok / e);
        double t = stage_time(c, &a, s, tok, per_node, one_seq ? 1 : per_node, attn_ctx, e);
        if (plan->n_stages > 1) { /* the activation rows to the next stage (the last
                                       stage's token back to stage 0: one latency) */
            const double before = sum_terms(a.terms);
            net(&a, 1, s + 1 < plan->n_stages ? tok * c->cfg->hidden_size * 4 : 0);
            t += sum_terms(a.terms) - before;
        }
        sum += t;
        for (int i = 0; i < DSC_TERM_COUNT; i++)
            sum_t[i] += a.terms[i];
        if (t > slowest) {
            slowest = t;
            memcpy(slow_t, a.terms, sizeof(slow_t));
        }
    }
    /* decode: micro-batches share the stages; prefill: chunks follow each other */
    const double full = n_mb > 1 ? n_mb * slowest : 0;
    if (chunks > 1) {
        const double total = sum + (chunks - 1) * slowest;
        for (int i = 0; i < DSC_TERM_COUNT; i++)
            out_terms[i] = sum_t[i] + (chunks - 1) * slow_t[i];
        return total;
    }
    if (full > sum) {
        for (int i = 0; i < DSC_TERM_COUNT; i++)
            out_terms[i] = n_mb * slow_t[i];
        return full;
    }
    memcpy(out_terms, sum_t, sizeof(sum_t));
    return sum;
}

dsi_status_t dsc_estimate(const dsn_config_t *cfg, const dsc_memory_t *mem, const dst_plan_t *plan,
                          const dsc_profile_t *profile, const dsc_estimate_opts_t *opts,
                          dsc_estimate_t *out, char *err, size_t err_size)
{
    const dsc_weight_format_t fmt = mem->format;
    if (profile->matmul_gbs[fmt][0] <= 0)
        return fail(err, err_size, "the profile has no matmul_gbs.%s (the plan's weight format)",
                    dsc_weight_format_name(fmt));
    if (profile->matmul_gbs[DSC_WEIGHT_BF16][0] <= 0)
        return fail(err, err_size,
                    "the profile has no matmul_gbs.bf16 (embeddings, lm_head and router are bf16)");
    if (profile->n_attn < 1)
        return fail(err, err_size, "the profile has no attention points");
    if (opts->concurrency < 1 || opts->prompt_len < 1 || opts->max_batch_tokens < 1)
        return fail(err, err_size, "concurrency, prompt length and chunk must be >= 1");
    /* the largest share of each MoE layer's expert copies on one node */
    double *share = calloc(plan->n_layers > 0 ? plan->n_layers : 1, sizeof(double));
    if (share == NULL)
        return DSI_ERR_NOMEM;
    uint32_t *count = calloc(plan->n_nodes > 0 ? plan->n_nodes : 1, sizeof(uint32_t));
    if (count == NULL) {
        free(share);
        return DSI_ERR_NOMEM;
    }
    for (uint32_t l = plan->first_moe_layer; l < plan->n_layers; l++) {
        memset(count, 0, plan->n_nodes * sizeof(uint32_t));
        uint64_t total = 0;
        for (uint32_t e = 0; e < plan->n_experts; e++) {
            const uint64_t i = (uint64_t)(l - plan->first_moe_layer) * plan->n_experts + e;
            for (uint32_t h = plan->expert_offsets[i]; h < plan->expert_offsets[i + 1]; h++) {
                const int n = dsc_plan_node_index(plan, plan->expert_holders[h]);
                if (n >= 0)
                    count[n]++;
                total++;
            }
        }
        uint32_t most = 0;
        for (uint32_t n = 0; n < plan->n_nodes; n++)
            most = count[n] > most ? count[n] : most;
        share[l] = total > 0 ? (double)most / (double)total : 1;
    }
    free(count);
    ctx_t c = {cfg, mem, plan, share, opts->nodes_per_machine > 1 ? opts->nodes_per_machine : 1};
    memset(out, 0, sizeof(*out));

    /* decode: C sequences in min(C, stages) micro-batches */
    const double C = opts->concurrency, S = plan->n_stages;
    const double n_mb = C < S ? C : S, seqs = ceil(C / n_mb);
    out->micro_batches = (uint32_t)n_mb;
    out->micro_batch_seqs = (uint32_t)seqs;
    out->decode_cycle_s =
        pipeline(&c, profile, fmt, seqs, opts->prompt_len, n_mb, 1, 0, out->decode_terms);
    out->decode_tok_s = 1 / out->decode_cycle_s;
    out->decode_aggregate = C / out->decode_cycle_s;
    out->decode_bound = biggest(out->decode_terms);

    /* prefill: one sequence, chunks of max_batch_tokens, mean context L / 2 */
    const double L = opts->prompt_len;
    const double chunk = L < opts->max_batch_tokens ? L : opts->max_batch_tokens;
    const double chunks = ceil(L / chunk);
    out->ttft_s = pipeline(&c, profile, fmt, chunk, L / 2, 1, chunks, 1, out->prefill_terms);
    out->prefill_tok_s = L / out->ttft_s;
    out->prefill_bound = biggest(out->prefill_terms);
    free(share);
    return DSI_OK;
}
