/*
 * bench_serve.c - `dsinfer bench serve`: load an OpenAI-compatible server with streamed requests
 * under an arrival process (fixed concurrency levels, a request rate, or a ramp), with prompt and
 * output lengths from a distribution or a dataset of chats, and report throughput, goodput under
 * SLOs, latency percentiles, errors and (from a dsinfer server) the cluster's view and events;
 * as a table, JSON, a timeline, an SVG chart and an HTML report.
 */
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "bench_serve.h"
#include "cli_args.h"
#include "dsi_clock.h"

#define CMD "bench serve"

#define RAMP_MAX_REQUESTS  100000 /* a ramp's cap on requests when --requests is not given */
#define DATASET_MAX_OUTPUT 4096   /* a dataset's answer lengths are capped at this */

volatile sig_atomic_t bs_interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    bs_interrupted = 1;
    signal(SIGINT, SIG_DFL); /* a second ^C ends the program */
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: dsinfer bench serve [options]\n"
            "target:\n"
            "  --url URL             server base URL (default http://127.0.0.1:8000)\n"
            "  --model NAME          model id (default: the first of GET /v1/models)\n"
            "  --api chat|completions  endpoint to load (default completions)\n"
            "  --api-key KEY         send Authorization: Bearer KEY (default $DSINFER_API_KEY,\n"
            "                        else $OPENAI_API_KEY; none when neither is set)\n"
            "  --timeout S           seconds a request may take (default 300)\n"
            "arrivals (one of):\n"
            "  --concurrency LIST    closed loop: parallel requests per level, e.g. 1,4,16\n"
            "                        (the default, 1,4,16)\n"
            "  --request-rate LIST   open loop: requests per second per level, e.g. 2,4,8\n"
            "    --burstiness B      gamma shape of the gaps (default 1: Poisson)\n"
            "    --max-concurrency N requests in flight at most (default 256)\n"
            "  --ramp FROM:TO:TIME   concurrency from FROM to TO linearly over TIME (s, m: 300s)\n"
            "  --requests N          requests per level (default 64; a ramp: until TIME)\n"
            "requests:\n"
            "  --prompt-len L|MIN:MAX  words of the synthetic prompt, ~tokens (default 128)\n"
            "  --output-len L|MIN:MAX  max_tokens of each request (default 64; --max-tokens)\n"
            "  --dataset FILE        chats (ShareGPT-style JSON lines): first user turn as the\n"
            "                        prompt, the reply's length in words as max_tokens\n"
            "  --seed S              seed of arrivals, lengths and prompts (default 0)\n"
            "report:\n"
            "  --slo LIST            objectives, e.g. ttft=2s,tpot=100ms,e2el=30s: goodput counts\n"
            "                        the requests meeting all of them\n"
            "  --json FILE           results, per-request records, server view and events\n"
            "  --timeline FILE       per-second throughput, latency, /metrics samples, events\n"
            "  --html FILE           one self-contained page: timeline, latency vs load, tables\n"
            "  --svg FILE            a chart of throughput and latency per level\n"
            "  --bucket S            timeline bucket in seconds (default 1)\n"
            "  --coordinator H:P     also poll `dsinfer cluster status` there (node events;\n"
            "                        the secret from DSINFER_SECRET)\n"
            "  --no-metrics          do not sample the server's /metrics\n");
}

static void ms3(char *out, size_t cap, const bs_pct_t *p)
{
    if (p->n == 0) {
        snprintf(out, cap, "-");
        return;
    }
    snprintf(out, cap, "%.1f/%.1f/%.1f", p->p50 * 1e3, p->p90 * 1e3, p->p99 * 1e3);
}

static void print_table(const bs_level_t *levels, int n, const bs_slo_t *slo)
{
    int with_slo = slo->ttft > 0 || slo->tpot > 0 || slo->e2el > 0;
    printf("%-12s %8s %6s %9s %11s%s  %-20s %-20s %-20s %-20s %s\n", "level", "requests", "ok",
           "req/s", "out tok/s", with_slo ? "   goodput" : "", "TTFT p50/90/99 ms",
           "TPOT p50/90/99 ms", "ITL p50/90/99 ms", "E2EL p50/90/99 ms", "errors");
    for (int i = 0; i < n; i++) {
        const bs_level_t *l = &levels[i];
        char name[64], ttft[64], tpot[64], itl[64], e2el[64], errors[256] = "-", good[32] = "";
        bs_level_name(&l->spec, name, sizeof(name));
        ms3(ttft, sizeof(ttft), &l->ttft);
        ms3(tpot, sizeof(tpot), &l->tpot);
        ms3(itl, sizeof(itl), &l->itl);
        ms3(e2el, sizeof(e2el), &l->e2el);
        size_t off = 0;
        for (int e = 0; e < l->n_errors && off < sizeof(errors); e++)
            off += (size_t)snprintf(errors + off, sizeof(errors) - off, "%s%s:%d", e ? " " : "",
                                    l->errors[e].what, l->errors[e].count);
        if (with_slo)
            snprintf(good, sizeof(good), " %9.2f", l->goodput);
        printf("%-12s %8d %6d %9.2f %11.1f%s  %-20s %-20s %-20s %-20s %s\n", name, l->requests,
               l->ok, l->req_per_s, l->tok_per_s, good, ttft, tpot, itl, e2el, errors);
    }
}

static void print_server(const bs_monitor_t *m)
{
    int n_s, n_e;
    const bs_sample_t *s = bs_monitor_samples(m, &n_s);
    const bs_event_t *e = bs_monitor_events(m, &n_e);
    if (n_s > 0) {
        double q = 0, run = 0;
        for (int i = 0; i < n_s; i++) {
            q = fmax(q, s[i].queue_depth);
            run = fmax(run, s[i].running);
        }
        printf("server (/metrics, %d samples): queue depth max %.0f, running sequences max %.0f",
               n_s, q, run);
        if (s[n_s - 1].nodes_ready >= 0)
            printf(", nodes ready %.0f -> %.0f", s[0].nodes_ready, s[n_s - 1].nodes_ready);
        if (s[n_s - 1].imbalance > 0)
            printf(", expert-load imbalance %.3f", s[n_s - 1].imbalance);
        printf("\n");
    }
    for (int i = 0; i < n_e; i++)
        if (strcmp(e[i].source, "bench") != 0)
            printf("event %8.1f s  %-11s %s\n", e[i].t, e[i].kind, e[i].detail);
}

typedef struct {
    const char *url, *model, *api, *key, *json, *svg, *html, *timeline, *levels, *rates, *ramp,
        *prompt_len, *output_len, *dataset, *slo, *coordinator;
    long long requests, timeout, max_concurrency, seed;
    double burstiness, bucket;
    int requests_set, output_len_set, no_metrics;
} opts_t;

enum {
    OPT_URL = 256,
    OPT_CONC,
    OPT_REQUESTS,
    OPT_PROMPT,
    OPT_OUTPUT,
    OPT_MODEL,
    OPT_API,
    OPT_KEY,
    OPT_TIMEOUT,
    OPT_JSON,
    OPT_SVG,
    OPT_HTML,
    OPT_TIMELINE,
    OPT_RATE,
    OPT_BURST,
    OPT_MAXCONC,
    OPT_RAMP,
    OPT_DATASET,
    OPT_SEED,
    OPT_SLO,
    OPT_BUCKET,
    OPT_COORD,
    OPT_NOMETRICS,
    OPT_HELP
};

static int parse_opts(int argc, char **argv, opts_t *o)
{
    static const struct option longopts[] = {
        {"url", required_argument, NULL, OPT_URL},
        {"concurrency", required_argument, NULL, OPT_CONC},
        {"requests", required_argument, NULL, OPT_REQUESTS},
        {"prompt-len", required_argument, NULL, OPT_PROMPT},
        {"output-len", required_argument, NULL, OPT_OUTPUT},
        {"max-tokens", required_argument, NULL, OPT_OUTPUT},
        {"model", required_argument, NULL, OPT_MODEL},
        {"api", required_argument, NULL, OPT_API},
        {"api-key", required_argument, NULL, OPT_KEY},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"json", required_argument, NULL, OPT_JSON},
        {"svg", required_argument, NULL, OPT_SVG},
        {"html", required_argument, NULL, OPT_HTML},
        {"timeline", required_argument, NULL, OPT_TIMELINE},
        {"request-rate", required_argument, NULL, OPT_RATE},
        {"burstiness", required_argument, NULL, OPT_BURST},
        {"max-concurrency", required_argument, NULL, OPT_MAXCONC},
        {"ramp", required_argument, NULL, OPT_RAMP},
        {"dataset", required_argument, NULL, OPT_DATASET},
        {"seed", required_argument, NULL, OPT_SEED},
        {"slo", required_argument, NULL, OPT_SLO},
        {"bucket", required_argument, NULL, OPT_BUCKET},
        {"coordinator", required_argument, NULL, OPT_COORD},
        {"no-metrics", no_argument, NULL, OPT_NOMETRICS},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
    };
    *o = (opts_t){.url = "http://127.0.0.1:8000",
                  .api = "completions",
                  .prompt_len = "128",
                  .output_len = "64",
                  .requests = 64,
                  .timeout = 300,
                  .max_concurrency = 256,
                  .burstiness = 1,
                  .bucket = 1};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        int rc = 0;
        switch (c) {
        case OPT_URL:
            o->url = optarg;
            break;
        case OPT_CONC:
            o->levels = optarg;
            break;
        case OPT_RATE:
            o->rates = optarg;
            break;
        case OPT_RAMP:
            o->ramp = optarg;
            break;
        case OPT_MODEL:
            o->model = optarg;
            break;
        case OPT_API:
            o->api = optarg;
            break;
        case OPT_KEY:
            o->key = optarg;
            break;
        case OPT_JSON:
            o->json = optarg;
            break;
        case OPT_SVG:
            o->svg = optarg;
            break;
        case OPT_HTML:
            o->html = optarg;
            break;
        case OPT_TIMELINE:
            o->timeline = optarg;
            break;
        case OPT_PROMPT:
            o->prompt_len = optarg;
            break;
        case OPT_OUTPUT:
            o->output_len = optarg;
            o->output_len_set = 1;
            break;
        case OPT_DATASET:
            o->dataset = optarg;
            break;
        case OPT_SLO:
            o->slo = optarg;
            break;
        case OPT_COORD:
            o->coordinator = optarg;
            break;
        case OPT_NOMETRICS:
            o->no_metrics = 1;
            break;
        case OPT_REQUESTS:
            rc = cli_parse_int(CMD, "--requests", optarg, 1, 10000000, &o->requests);
            o->requests_set = 1;
            break;
        case OPT_TIMEOUT:
            rc = cli_parse_int(CMD, "--timeout", optarg, 1, 86400, &o->timeout);
            break;
        case OPT_MAXCONC:
            rc = cli_parse_int(CMD, "--max-concurrency", optarg, 1, 4096, &o->max_concurrency);
            break;
        case OPT_SEED:
            rc = cli_parse_int(CMD, "--seed", optarg, 0, LLONG_MAX, &o->seed);
            break;
        case OPT_BURST:
            rc = cli_parse_float(CMD, "--burstiness", optarg, 0.01, 1000, &o->burstiness);
            break;
        case OPT_BUCKET:
            rc = cli_parse_float(CMD, "--bucket", optarg, 0.1, 3600, &o->bucket);
            break;
        case OPT_HELP:
            usage(stdout);
            return 1;
        default:
            usage(stderr);
            return 2;
        }
        if (rc != 0)
            return 2;
    }
    if (optind < argc) {
        fprintf(stderr, "dsinfer " CMD ": unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (o->key == NULL) /* as dsinfer serve, then as OpenAI's clients read it */
        o->key = getenv("DSINFER_API_KEY") ? getenv("DSINFER_API_KEY") : getenv("OPENAI_API_KEY");
    if (o->key != NULL && o->key[0] == '\0')
        o->key = NULL;
    if (strcmp(o->api, "chat") != 0 && strcmp(o->api, "completions") != 0) {
        fprintf(stderr, "dsinfer " CMD ": --api: '%s' is not chat or completions\n", o->api);
        return 2;
    }
    if ((o->levels != NULL) + (o->rates != NULL) + (o->ramp != NULL) > 1) {
        fprintf(stderr, "dsinfer " CMD ": --concurrency, --request-rate and --ramp exclude each "
                        "other\n");
        return 2;
    }
    return 0;
}

/* "1:64:300s" (TIME in s, or m with an m suffix). */
static int parse_ramp(const char *text, bs_level_spec_t *s)
{
    int from, to, used = 0;
    double time;
    char unit[4] = "";
    if (sscanf(text, "%d:%d:%lf%n%3s", &from, &to, &time, &used, unit) < 3 || from < 1 || to < 1 ||
        from > 4096 || to > 4096 || !(time > 0) || time > 86400 ||
        (unit[0] && strcmp(unit, "s") && strcmp(unit, "m")) ||
        strlen(text) != (size_t)used + strlen(unit)) {
        fprintf(stderr,
                "dsinfer " CMD ": --ramp: '%s' is not FROM:TO:TIME (concurrency 1..4096, "
                "TIME in s, or m with a suffix, e.g. 1:64:300s)\n",
                text);
        return -1;
    }
    *s = (bs_level_spec_t){.mode = BS_MODE_RAMP,
                           .ramp_from = from,
                           .ramp_to = to,
                           .ramp_s = unit[0] == 'm' ? time * 60 : time};
    return 0;
}

/* The levels the options ask for; *out malloc'ed. */
static int make_levels(const opts_t *o, bs_level_spec_t **out, int *n_out)
{
    bs_level_spec_t *specs = NULL;
    int n = 0;
    if (o->ramp != NULL) {
        specs = calloc(1, sizeof(*specs));
        if (specs == NULL || parse_ramp(o->ramp, specs) != 0) {
            free(specs);
            return -1;
        }
        specs->n_requests = o->requests_set ? (int)o->requests : RAMP_MAX_REQUESTS;
        n = 1;
    } else if (o->rates != NULL) {
        char buf[512];
        snprintf(buf, sizeof(buf), "%s", o->rates);
        specs = calloc(64, sizeof(*specs));
        char *save = NULL;
        for (char *tok = strtok_r(buf, ",", &save); specs && tok;
             tok = strtok_r(NULL, ",", &save)) {
            double rate;
            if (n == 64 || cli_parse_float(CMD, "--request-rate", tok, 1e-3, 1e6, &rate) != 0) {
                free(specs);
                return -1;
            }
            specs[n++] = (bs_level_spec_t){.mode = BS_MODE_RATE,
                                           .rate = rate,
                                           .burstiness = o->burstiness,
                                           .concurrency = (int)o->max_concurrency,
                                           .n_requests = (int)o->requests};
        }
        if (n == 0) {
            fprintf(stderr, "dsinfer " CMD ": --request-rate: no rate in '%s'\n", o->rates);
            free(specs);
            return -1;
        }
    } else {
        int32_t *conc;
        if (cli_parse_int_list(CMD, "--concurrency", o->levels ? o->levels : "1,4,16", 1, 4096,
                               &conc, &n) != 0)
            return -1;
        specs = calloc((size_t)n, sizeof(*specs));
        for (int i = 0; specs && i < n; i++)
            specs[i] = (bs_level_spec_t){.mode = BS_MODE_CONCURRENCY,
                                         .concurrency = conc[i],
                                         .n_requests = (int)o->requests};
        free(conc);
    }
    if (specs == NULL) {
        fprintf(stderr, "dsinfer " CMD ": out of memory\n");
        return -1;
    }
    *out = specs;
    *n_out = n;
    return 0;
}

/* Runs every level; results[] collects every request's record in order. */
static int run_levels(const bs_target_t *t, const bs_plan_t *plan, const bs_level_spec_t *specs,
                      int n_levels, const bs_slo_t *slo, double t0, bs_monitor_t *mon,
                      bs_level_t *levels, bs_result_t **results, int *n_results)
{
    int show = isatty(2), first_index = 0, total = 0, rc = 0;
    for (int i = 0; i < n_levels && !bs_interrupted; i++) {
        const bs_level_spec_t *s = &specs[i];
        bs_run_t run = {
            .target = t, .plan = plan, .spec = s, .level = i, .first_index = first_index, .t0 = t0};
        double *arrivals = NULL;
        run.results = calloc((size_t)s->n_requests, sizeof(*run.results));
        if (s->mode == BS_MODE_RATE && (arrivals = malloc(sizeof(double) * s->n_requests)))
            bs_arrivals(plan->seed + (uint64_t)i, s->rate, s->burstiness, s->n_requests, arrivals);
        run.arrivals = arrivals;
        bs_result_t *grown = realloc(*results, sizeof(**results) * (size_t)(total + s->n_requests));
        if (run.results == NULL || grown == NULL || (s->mode == BS_MODE_RATE && !arrivals)) {
            fprintf(stderr, "dsinfer " CMD ": out of memory\n");
            if (grown != NULL)
                *results = grown;
            free(run.results);
            free(arrivals);
            rc = -1;
            break;
        }
        *results = grown;
        char name[64];
        bs_level_name(s, name, sizeof(name));
        bs_monitor_note(mon, dsi_now_s() - t0, "level", name);
        int sent = 0;
        if (bs_level_run(&run, show, &sent) != 0)
            rc = -1;
        double end = dsi_now_s();
        levels[i].spec = *s;
        bs_level_summarise(&levels[i], run.results, sent, slo, run.level_t0 - t0,
                           end - run.level_t0);
        memcpy(*results + total, run.results, sizeof(**results) * (size_t)sent);
        total += sent;
        first_index += s->n_requests;
        free(run.results);
        free(arrivals);
        if (rc != 0)
            break;
    }
    *n_results = total;
    return rc;
}

int dsinfer_bench_serve(int argc, char **argv)
{
    opts_t o;
    int rc = parse_opts(argc, argv, &o);
    if (rc != 0)
        return rc == 1 ? 0 : rc;
    bs_target_t t = {
        .api_key = o.key, .chat = strcmp(o.api, "chat") == 0, .timeout_s = (int)o.timeout};
    bs_plan_t plan = {.seed = (uint64_t)o.seed, .max_output = DATASET_MAX_OUTPUT};
    bs_slo_t slo = {0};
    bs_level_spec_t *specs = NULL;
    int n_levels = 0;
    if (bs_parse_len("--prompt-len", o.prompt_len, 1000000, &plan.prompt_len) != 0 ||
        bs_parse_len("--output-len", o.output_len, 1000000, &plan.output_len) != 0 ||
        (o.slo != NULL && bs_parse_slo(o.slo, &slo) != 0) ||
        make_levels(&o, &specs, &n_levels) != 0 || bs_parse_url(o.url, t.chat, &t) != 0)
        return 2;
    plan.output_len_set = o.output_len_set; /* with a dataset, an explicit --output-len wins */
    bs_dataset_t dataset = {0};
    char *model = NULL, self[4096];
    bs_level_t *levels = calloc((size_t)n_levels, sizeof(*levels));
    bs_result_t *results = NULL;
    bs_bucket_t *buckets = NULL;
    bs_monitor_t *mon = NULL;
    int n_results = 0, n_buckets = 0;
    rc = 1;
    if (levels == NULL)
        goto out;
    if (o.dataset != NULL) {
        if (bs_dataset_load(o.dataset, &dataset) != 0)
            goto out;
        plan.dataset = &dataset;
    }
    t.model = o.model ? o.model : (model = bs_first_model(&t));
    if (t.model == NULL)
        goto out;
    ssize_t sl = readlink("/proc/self/exe", self, sizeof(self) - 1);
    self[sl > 0 ? sl : 0] = '\0';
    fprintf(stderr, "dsinfer bench serve: %s%s, model %s, seed %lld%s%s\n", o.url, t.path, t.model,
            o.seed, o.dataset ? ", chats from " : "", o.dataset ? o.dataset : "");
    double t0 = dsi_now_s();
    if (!o.no_metrics || o.coordinator != NULL)
        mon = bs_monitor_start(&t, o.coordinator, self, t0, fmin(o.bucket, 0.5));
    signal(SIGINT, on_sigint);
    if (run_levels(&t, &plan, specs, n_levels, &slo, t0, mon, levels, &results, &n_results) != 0)
        goto out;
    signal(SIGINT, SIG_DFL);
    double duration = dsi_now_s() - t0;
    bs_monitor_stop(mon);
    if (bs_interrupted)
        fprintf(stderr, "dsinfer bench serve: interrupted: reporting what was sent\n");
    int n_done = 0, any_ok = 0;
    while (n_done < n_levels && (levels[n_done].requests > 0 || !bs_interrupted))
        any_ok |= levels[n_done++].ok > 0;
    if (bs_timeline_build(results, n_results, o.bucket, duration, &buckets, &n_buckets) != 0) {
        fprintf(stderr, "dsinfer bench serve: out of memory\n");
        goto out;
    }
    print_table(levels, n_done, &slo);
    print_server(mon);
    bs_report_t report = {.target = &t,
                          .plan = &plan,
                          .dataset_path = o.dataset,
                          .slo = &slo,
                          .levels = levels,
                          .n_levels = n_done,
                          .results = results,
                          .n_results = n_results,
                          .buckets = buckets,
                          .n_buckets = n_buckets,
                          .bucket_s = o.bucket,
                          .duration_s = duration,
                          .monitor = o.no_metrics && !o.coordinator ? NULL : mon};
    rc = 0;
    if (o.json != NULL && bs_write_json(o.json, &report) != 0)
        rc = 1;
    if (o.timeline != NULL && bs_write_timeline(o.timeline, &report) != 0)
        rc = 1;
    if (o.html != NULL && bs_write_html(o.html, &report) != 0)
        rc = 1;
    if (o.svg != NULL && bs_write_svg(o.svg, &report) != 0)
        rc = 1;
    if (!any_ok) {
        fprintf(stderr, "dsinfer bench serve: no request succeeded\n");
        rc = 1;
    }
out:
    signal(SIGINT, SIG_DFL);
    bs_monitor_destroy(mon);
    for (int i = 0; i < n_results; i++)
        free(results[i].events);
    free(results);
    free(buckets);
    free(model);
    free(levels);
    free(specs);
    bs_dataset_free(&dataset);
    return rc;
}
