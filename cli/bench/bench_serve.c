/*
 * bench_serve.c - `dsinfer bench serve`: load an OpenAI-compatible server at several concurrency
 * levels with streamed requests and report requests/s, output tokens/s, TTFT and TPOT
 * percentiles and errors per level; optionally as JSON and as an SVG chart.
 */
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "bench_serve.h"
#include "cli_args.h"
#include "dsi_clock.h"

#define CMD "bench serve"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: dsinfer bench serve [options]\n"
            "  --url URL             server base URL (default http://127.0.0.1:8000)\n"
            "  --concurrency LIST    parallel requests per level, e.g. 1,4,16 (default)\n"
            "  --requests N          requests per level (default 64)\n"
            "  --prompt-len L        words of the synthetic prompt, ~tokens (default 128)\n"
            "  --max-tokens M        max_tokens of each request (default 64)\n"
            "  --model NAME          model id (default: the first of GET /v1/models)\n"
            "  --api chat|completions  endpoint to load (default completions)\n"
            "  --api-key KEY         send Authorization: Bearer KEY\n"
            "  --timeout S           seconds a request may take (default 300)\n"
            "  --json FILE           write the results as JSON\n"
            "  --svg FILE            write a chart of throughput and latency vs concurrency\n");
}

/* "http://host[:port][/base]" into t->host, t->port and the endpoint path. */
static int parse_url(const char *url, int chat, bs_target_t *t)
{
    if (strncmp(url, "http://", 7) != 0) {
        fprintf(stderr, "dsinfer " CMD ": --url: '%s' must start with http:// (no TLS)\n", url);
        return -1;
    }
    const char *h = url + 7, *slash = strchr(h, '/');
    size_t hp_len = slash ? (size_t)(slash - h) : strlen(h);
    char hostport[sizeof(t->host)];
    if (hp_len == 0 || hp_len >= sizeof(hostport)) {
        fprintf(stderr, "dsinfer " CMD ": --url: no host in '%s'\n", url);
        return -1;
    }
    memcpy(hostport, h, hp_len);
    hostport[hp_len] = '\0';
    char *colon = hostport[0] == '[' ? strstr(hostport, "]:") : strrchr(hostport, ':');
    if (colon != NULL && hostport[0] == '[')
        colon++;
    snprintf(t->port, sizeof(t->port), "%s", colon ? colon + 1 : "80");
    if (colon != NULL)
        *colon = '\0';
    char *host = hostport;
    if (host[0] == '[') { /* [::1] */
        host++;
        host[strcspn(host, "]")] = '\0';
    }
    char *end;
    long port = strtol(t->port, &end, 10);
    if (*end != '\0' || port < 1 || port > 65535 || host[0] == '\0') {
        fprintf(stderr, "dsinfer " CMD ": --url: bad host or port in '%s'\n", url);
        return -1;
    }
    snprintf(t->host, sizeof(t->host), "%s", host);
    char base[400];
    snprintf(base, sizeof(base), "%s", slash ? slash : "");
    size_t bl = strlen(base);
    while (bl > 0 && base[bl - 1] == '/')
        base[--bl] = '\0';
    if (bl >= 3 && strcmp(base + bl - 3, "/v1") == 0) /* ".../v1" given: don't double it */
        base[bl - 3] = '\0';
    snprintf(t->path, sizeof(t->path), "%s/v1/%s", base, chat ? "chat/completions" : "completions");
    t->url = url;
    return 0;
}

static void progress(int concurrency, int done, int total, double elapsed)
{
    int width = 30, fill = total ? done * width / total : width;
    char bar[64];
    for (int i = 0; i < width; i++)
        bar[i] = i < fill ? '#' : '-';
    bar[width] = '\0';
    fprintf(stderr, "\r  c=%-4d [%s] %d/%d requests  %.1f s ", concurrency, bar, done, total,
            elapsed);
    fflush(stderr);
}

/* Run one level: `concurrency` workers share n requests. */
static int run_level(const bs_target_t *t, int concurrency, int n, int show_progress,
                     bs_level_t *level)
{
    bs_run_t run = {.target = t, .n_requests = n};
    atomic_init(&run.next, 0);
    atomic_init(&run.done, 0);
    run.results = calloc((size_t)n, sizeof(*run.results));
    pthread_t *threads = calloc((size_t)concurrency, sizeof(*threads));
    if (run.results == NULL || threads == NULL) {
        fprintf(stderr, "dsinfer " CMD ": out of memory\n");
        free(run.results);
        free(threads);
        return -1;
    }
    double t0 = dsi_now_s();
    int started = 0;
    for (; started < concurrency; started++) {
        if (pthread_create(&threads[started], NULL, bs_worker_main, &run) != 0) {
            fprintf(stderr, "dsinfer " CMD ": could start only %d threads\n", started);
            break;
        }
    }
    while (show_progress && atomic_load(&run.done) < n && started > 0) {
        progress(concurrency, atomic_load(&run.done), n, dsi_now_s() - t0);
        usleep(100 * 1000);
    }
    for (int i = 0; i < started; i++)
        pthread_join(threads[i], NULL);
    double elapsed = dsi_now_s() - t0;
    if (show_progress) {
        progress(concurrency, atomic_load(&run.done), n, elapsed);
        fprintf(stderr, "\n");
    }
    level->concurrency = concurrency;
    bs_level_summarise(level, run.results, atomic_load(&run.done) < n ? atomic_load(&run.done) : n,
                       elapsed);
    free(run.results);
    free(threads);
    return started > 0 ? 0 : -1;
}

static void ms3(char *out, size_t cap, const double p[3])
{
    if (p[0] < 0) {
        snprintf(out, cap, "-");
        return;
    }
    snprintf(out, cap, "%.1f / %.1f / %.1f", p[0] * 1e3, p[1] * 1e3, p[2] * 1e3);
}

static void print_table(const bs_level_t *levels, int n)
{
    printf("%11s %8s %6s %9s %11s  %-24s %-24s %s\n", "concurrency", "requests", "ok", "req/s",
           "out tok/s", "TTFT p50/p90/p99 ms", "TPOT p50/p90/p99 ms", "errors");
    for (int i = 0; i < n; i++) {
        const bs_level_t *l = &levels[i];
        char ttft[64], tpot[64], errors[256] = "-";
        ms3(ttft, sizeof(ttft), l->ttft);
        ms3(tpot, sizeof(tpot), l->tpot);
        size_t off = 0;
        for (int e = 0; e < l->n_errors && off < sizeof(errors); e++)
            off += (size_t)snprintf(errors + off, sizeof(errors) - off, "%s%s:%d", e ? " " : "",
                                    l->errors[e].what, l->errors[e].count);
        printf("%11d %8d %6d %9.2f %11.1f  %-24s %-24s %s\n", l->concurrency, l->requests, l->ok,
               l->req_per_s, l->tok_per_s, ttft, tpot, errors);
    }
}

typedef struct {
    const char *url, *model, *api, *key, *json, *svg, *levels;
    long long requests, prompt_len, max_tokens, timeout;
} opts_t;

static int parse_opts(int argc, char **argv, opts_t *o)
{
    static const struct option longopts[] = {
        {"url", required_argument, NULL, 'u'},
        {"concurrency", required_argument, NULL, 'c'},
        {"requests", required_argument, NULL, 'n'},
        {"prompt-len", required_argument, NULL, 'p'},
        {"max-tokens", required_argument, NULL, 'm'},
        {"model", required_argument, NULL, 'M'},
        {"api", required_argument, NULL, 'a'},
        {"api-key", required_argument, NULL, 'k'},
        {"timeout", required_argument, NULL, 't'},
        {"json", required_argument, NULL, 'j'},
        {"svg", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *o = (opts_t){.url = "http://127.0.0.1:8000",
                  .api = "completions",
                  .levels = "1,4,16",
                  .requests = 64,
                  .prompt_len = 128,
                  .max_tokens = 64,
                  .timeout = 300};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        int rc = 0;
        switch (c) {
        case 'u':
            o->url = optarg;
            break;
        case 'c':
            o->levels = optarg;
            break;
        case 'M':
            o->model = optarg;
            break;
        case 'a':
            o->api = optarg;
            break;
        case 'k':
            o->key = optarg;
            break;
        case 'j':
            o->json = optarg;
            break;
        case 's':
            o->svg = optarg;
            break;
        case 'n':
            rc = cli_parse_int(CMD, "--requests", optarg, 1, 10000000, &o->requests);
            break;
        case 'p':
            rc = cli_parse_int(CMD, "--prompt-len", optarg, 1, 1000000, &o->prompt_len);
            break;
        case 'm':
            rc = cli_parse_int(CMD, "--max-tokens", optarg, 1, 1000000, &o->max_tokens);
            break;
        case 't':
            rc = cli_parse_int(CMD, "--timeout", optarg, 1, 86400, &o->timeout);
            break;
        case 'h':
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
    if (strcmp(o->api, "chat") != 0 && strcmp(o->api, "completions") != 0) {
        fprintf(stderr, "dsinfer " CMD ": --api: '%s' is not chat or completions\n", o->api);
        return 2;
    }
    return 0;
}

int dsinfer_bench_serve(int argc, char **argv)
{
    opts_t o;
    int rc = parse_opts(argc, argv, &o);
    if (rc != 0)
        return rc == 1 ? 0 : rc;
    int32_t *conc;
    int n_levels;
    if (cli_parse_int_list(CMD, "--concurrency", o.levels, 1, 4096, &conc, &n_levels) != 0)
        return 2;
    bs_target_t t = {.api_key = o.key,
                     .chat = strcmp(o.api, "chat") == 0,
                     .prompt_len = (int)o.prompt_len,
                     .max_tokens = (int)o.max_tokens,
                     .timeout_s = (int)o.timeout};
    char *model = NULL;
    bs_level_t *levels = calloc((size_t)n_levels, sizeof(*levels));
    rc = 1;
    if (levels == NULL || parse_url(o.url, t.chat, &t) != 0)
        goto out;
    t.model = o.model ? o.model : (model = bs_first_model(&t));
    if (t.model == NULL)
        goto out;
    fprintf(stderr, "dsinfer bench serve: %s%s, model %s, %lld requests per level\n", o.url, t.path,
            t.model, o.requests);
    int any_ok = 0, show = isatty(2);
    for (int i = 0; i < n_levels; i++) {
        if (run_level(&t, conc[i], (int)o.requests, show, &levels[i]) != 0)
            goto out;
        any_ok |= levels[i].ok > 0;
    }
    print_table(levels, n_levels);
    rc = 0;
    if (o.json != NULL && bs_write_json(o.json, &t, levels, n_levels) != 0)
        rc = 1;
    if (o.svg != NULL && bs_write_svg(o.svg, &t, levels, n_levels) != 0)
        rc = 1;
    if (!any_ok) {
        fprintf(stderr, "dsinfer bench serve: no request succeeded\n");
        rc = 1;
    }
out:
    free(model);
    free(levels);
    free(conc);
    return rc;
}
