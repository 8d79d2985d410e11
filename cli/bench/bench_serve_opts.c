/*
 * bench_serve_opts.c - the options of `dsinfer bench serve`: the usage text, their parsing, and
 * the levels (concurrency, rate or ramp) they ask for.
 */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_opt.h"
#include "bench_serve.h"
#include "cli_args.h"

#define CMD               "bench serve"
#define RAMP_MAX_REQUESTS 100000 /* a ramp's cap on requests when --requests is not given */

void bs_usage(FILE *out)
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
            "  --shared-prefix N     every prompt starts with the same N words (~tokens) before\n"
            "                        its own --prompt-len ones: prefix caching (default 0)\n"
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
    OPT_SHARED,
    OPT_HELP
};

int bs_opts_parse(int argc, char **argv, bs_opts_t *o)
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
        {"shared-prefix", required_argument, NULL, OPT_SHARED},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
    };
    *o = (bs_opts_t){.url = "http://127.0.0.1:8000",
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
        case OPT_SHARED:
            rc = cli_parse_int(CMD, "--shared-prefix", optarg, 0, 1000000, &o->shared_prefix);
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
        default:
            return bench_opt_usage(c == OPT_HELP, bs_usage) == 0 ? 1 : 2;
        }
        if (rc != 0)
            return 2;
    }
    if (bench_opt_rest("serve", argc, argv, bs_usage) != 0)
        return 2;
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

int bs_levels_make(const bs_opts_t *o, bs_level_spec_t **out, int *n_out)
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
