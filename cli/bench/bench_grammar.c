/*
 * bench_grammar.c - `dsinfer bench grammar`: the cost of structured output on a real vocabulary.
 * Builds the token trie of a tokenizer (build time), compiles each JSON Schema of a built-in set
 * of realistic ones (or of --schemas FILE: a JSON array of schemas) into a grammar (compile
 * time), then generates outputs that follow it with random logits at temperature 1 (seeded):
 * each step masks the logits (timed in thread CPU time, so that a shared machine's preemptions do
 * not count), draws a token among the allowed ones and accepts it. Reports microseconds per mask
 * (median, p99, mean) and the wall-clock p99 beside them. --emit FILE
 * writes every output as a JSON line {"schema": i, "complete": 0|1, "output": "..."} for
 * validation (tests/test_cli_grammar_schemas.sh checks them with Python's jsonschema).
 */
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "bench_opt.h"
#include "cli_args.h"
#include "dsc_tokenizer.h"
#include "dsg.h"
#include "dsi_clock.h"

static const char *const builtin[] = {
    /* a person record */
    "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"maxLength\":40},"
    "\"age\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":150},\"email\":{\"type\":\"string\","
    "\"format\":\"email\"}},\"required\":[\"name\",\"age\"],\"additionalProperties\":false}",
    /* a weather tool call's arguments */
    "{\"type\":\"object\",\"properties\":{\"location\":{\"type\":\"string\",\"maxLength\":60},"
    "\"unit\":{\"enum\":[\"celsius\",\"fahrenheit\"]},\"days\":{\"type\":\"integer\","
    "\"minimum\":1,\"maximum\":14}},\"required\":[\"location\",\"unit\"]}",
    /* sentiment classification */
    "{\"type\":\"object\",\"properties\":{\"sentiment\":{\"enum\":[\"positive\",\"negative\","
    "\"neutral\"]},\"confidence\":{\"type\":\"number\",\"minimum\":0,\"maximum\":1}},"
    "\"required\":[\"sentiment\",\"confidence\"]}",
    /* named entities */
    "{\"type\":\"object\",\"properties\":{\"entities\":{\"type\":\"array\",\"maxItems\":8,"
    "\"items\":{\"type\":\"object\",\"properties\":{\"text\":{\"type\":\"string\",\"maxLength\":"
    "30},\"label\":{\"enum\":[\"PER\",\"ORG\",\"LOC\",\"MISC\"]},\"start\":{\"type\":\"integer\","
    "\"minimum\":0}},\"required\":[\"text\",\"label\"]}}},\"required\":[\"entities\"]}",
    /* an order with line items */
    "{\"type\":\"object\",\"properties\":{\"order_id\":{\"type\":\"string\",\"pattern\":"
    "\"^ORD-[0-9]{6}$\"},\"items\":{\"type\":\"array\",\"minItems\":1,\"maxItems\":5,\"items\":{"
    "\"type\":\"object\",\"properties\":{\"sku\":{\"type\":\"string\",\"pattern\":\"[A-Z]{3}-[0-9]{"
    "4}"
    "\"},\"quantity\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":99},\"price\":{\"type\":"
    "\"number\",\"exclusiveMinimum\":0,\"maximum\":10000}},\"required\":[\"sku\",\"quantity\","
    "\"price\"]}},\"paid\":{\"type\":\"boolean\"}},\"required\":[\"order_id\",\"items\",\"paid\"]}",
    /* an event */
    "{\"type\":\"object\",\"properties\":{\"title\":{\"type\":\"string\",\"maxLength\":50},"
    "\"date\":{\"type\":\"string\",\"format\":\"date\"},\"start\":{\"type\":\"string\",\"format\":"
    "\"date-time\"},\"attendees\":{\"type\":\"array\",\"items\":{\"type\":\"string\",\"maxLength\":"
    "20},\"maxItems\":4},\"id\":{\"type\":\"string\",\"format\":\"uuid\"}},\"required\":[\"title\","
    "\"date\",\"id\"]}",
    /* a recursive tree */
    "{\"$defs\":{\"node\":{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\","
    "\"maxLength\":12},\"children\":{\"type\":\"array\",\"maxItems\":3,\"items\":{\"$ref\":"
    "\"#/$defs/node\"}}},\"required\":[\"name\"]}},\"$ref\":\"#/$defs/node\"}",
    /* a search query with filters (anyOf) */
    "{\"type\":\"object\",\"properties\":{\"query\":{\"type\":\"string\",\"maxLength\":80},"
    "\"filter\":{\"anyOf\":[{\"type\":\"object\",\"properties\":{\"year\":{\"type\":\"integer\","
    "\"minimum\":1900,\"maximum\":2030}},\"required\":[\"year\"]},{\"type\":\"object\","
    "\"properties\":{\"author\":{\"type\":\"string\",\"maxLength\":30}},\"required\":[\"author\"]},"
    "{\"type\":\"null\"}]},\"limit\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":100}},"
    "\"required\":[\"query\",\"filter\"]}",
    /* a math answer with steps */
    "{\"type\":\"object\",\"properties\":{\"steps\":{\"type\":\"array\",\"maxItems\":4,\"items\":{"
    "\"type\":\"object\",\"properties\":{\"explanation\":{\"type\":\"string\",\"maxLength\":60},"
    "\"output\":{\"type\":\"string\",\"maxLength\":20}},\"required\":[\"explanation\",\"output\"]}}"
    ","
    "\"final_answer\":{\"type\":\"number\"}},\"required\":[\"steps\",\"final_answer\"]}",
    /* a config document with nullable fields */
    "{\"type\":\"object\",\"properties\":{\"host\":{\"type\":\"string\",\"maxLength\":40},"
    "\"port\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":65535},\"tls\":{\"type\":"
    "\"boolean\"},\"timeout_ms\":{\"type\":[\"integer\",\"null\"],\"minimum\":0,\"maximum\":"
    "600000},\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\",\"maxLength\":10},"
    "\"maxItems\":3}},\"required\":[\"host\",\"port\",\"tls\"]}",
    /* a product review */
    "{\"type\":\"object\",\"properties\":{\"rating\":{\"type\":\"integer\",\"minimum\":1,"
    "\"maximum\":5},\"title\":{\"type\":\"string\",\"maxLength\":40},\"pros\":{\"type\":\"array\","
    "\"items\":{\"type\":\"string\",\"maxLength\":25},\"maxItems\":3},\"cons\":{\"type\":\"array\","
    "\"items\":{\"type\":\"string\",\"maxLength\":25},\"maxItems\":3},\"recommend\":{\"type\":"
    "\"boolean\"}},\"required\":[\"rating\",\"recommend\"]}",
    /* any JSON object (response_format json_object), free-form strings */
    "{\"type\":\"object\"}",
};

typedef struct {
    uint64_t s;
} rng_t;

static double rnd01(rng_t *r)
{
    r->s ^= r->s << 13, r->s ^= r->s >> 7, r->s ^= r->s << 17;
    return (double)(r->s >> 11) * (1.0 / 9007199254740992.0);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(double *v, int n, double p)
{
    if (n == 0)
        return 0;
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    int i = (int)(p * (n - 1) + 0.5);
    return v[i];
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: dsinfer bench grammar --tokenizer DIR_OR_FILE [--schemas FILE] [--samples N]\n"
            "                             [--max-tokens N] [--seed S] [--emit FILE] [--json]\n\n"
            "  --tokenizer P   tokenizer.json, or a model directory holding one\n"
            "  --schemas FILE  a JSON array of JSON Schemas (default: 12 built-in ones)\n"
            "  --samples N     outputs generated per schema (default 3)\n"
            "  --max-tokens N  tokens per output at most (default 1000)\n"
            "  --seed S        random logits seed (default 1)\n"
            "  --emit FILE     write each output as a JSON line for validation\n"
            "  --json          the summary as one JSON object\n");
}

typedef struct {
    double *mask_us; /* every step: thread CPU time */
    double *wall_us; /* the same steps: wall-clock time */
    int n_mask, cap_mask;
} samples_t;

static int add_sample(samples_t *s, double us, double wall)
{
    if (s->n_mask == s->cap_mask) {
        int cap = s->cap_mask ? s->cap_mask * 2 : 4096;
        double *v = realloc(s->mask_us, (size_t)cap * sizeof(double));
        if (v != NULL)
            s->mask_us = v;
        double *w = realloc(s->wall_us, (size_t)cap * sizeof(double));
        if (w != NULL)
            s->wall_us = w;
        if (v == NULL || w == NULL)
            return -1;
        s->cap_mask = cap;
    }
    s->wall_us[s->n_mask] = wall;
    s->mask_us[s->n_mask++] = us;
    return 0;
}

/* One output: returns its length in tokens, sets *complete; the bytes go to *out. */
static int generate(const dsg_grammar_t *g, const dsg_vocab_t *v, const dsc_tokenizer_t *tok,
                    int32_t eos, int max_tokens, rng_t *rng, float *logits, samples_t *smp,
                    char **out, size_t *out_len, int *complete)
{
    int32_t n_vocab = dsg_vocab_size(v);
    dsg_matcher_t *m;
    if (dsg_matcher_create(g, v, &eos, 1, &m) != DSI_OK)
        return -1;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    int steps = 0;
    *complete = 0;
    while (buf != NULL && steps < max_tokens) {
        for (int32_t t = 0; t < n_vocab; t++)
            logits[t] = 0.0f;
        double t0 = dsi_now_s(), c0 = dsi_thread_cpu_s();
        if (dsg_matcher_mask(m, logits, n_vocab) != DSI_OK)
            break;
        add_sample(smp, (dsi_thread_cpu_s() - c0) * 1e6, (dsi_now_s() - t0) * 1e6);
        /* Gumbel-max over the allowed tokens with standard normal logits: temperature 1. */
        int32_t best = -1;
        double best_v = -INFINITY;
        for (int32_t t = 0; t < n_vocab; t++) {
            if (isinf(logits[t]))
                continue;
            double u1 = rnd01(rng) + 1e-300, u2 = rnd01(rng);
            double z = sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2);
            double gmb = -log(-log(rnd01(rng) + 1e-300) + 1e-300);
            if (z + gmb > best_v)
                best_v = z + gmb, best = t;
        }
        if (best < 0)
            break;
        steps++;
        if (dsg_matcher_accept(m, best) != DSI_OK)
            break;
        if (best == eos) {
            *complete = 1;
            break;
        }
        size_t n;
        const unsigned char *b = dsc_tokenizer_token_bytes(tok, best, &n);
        if (len + n + 1 > cap) {
            cap = (len + n + 1) * 2;
            char *nb = realloc(buf, cap);
            if (nb == NULL)
                break;
            buf = nb;
        }
        memcpy(buf + len, b, n);
        len += n;
        if (dsg_matcher_only_end(m)) {
            *complete = 1;
            break;
        }
    }
    dsg_matcher_free(m);
    if (buf != NULL)
        buf[len] = '\0';
    *out = buf;
    *out_len = len;
    return steps;
}

int dsinfer_bench_grammar(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"tokenizer", required_argument, NULL, 't'},
        {"schemas", required_argument, NULL, 's'},
        {"samples", required_argument, NULL, 'n'},
        {"max-tokens", required_argument, NULL, 'm'},
        {"seed", required_argument, NULL, 'r'},
        {"emit", required_argument, NULL, 'e'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *tok_path = NULL, *schemas_path = NULL, *emit_path = NULL;
    long long samples = 3, max_tokens = 1000, seed = 1;
    int as_json = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 't':
            tok_path = optarg;
            break;
        case 's':
            schemas_path = optarg;
            break;
        case 'e':
            emit_path = optarg;
            break;
        case 'j':
            as_json = 1;
            break;
        case 'n':
            if (cli_parse_int("bench grammar", "--samples", optarg, 1, 10000, &samples) != 0)
                return 2;
            break;
        case 'm':
            if (cli_parse_int("bench grammar", "--max-tokens", optarg, 1, 1000000, &max_tokens))
                return 2;
            break;
        case 'r':
            if (cli_parse_int("bench grammar", "--seed", optarg, 0, INT64_MAX, &seed) != 0)
                return 2;
            break;
        default:
            return bench_opt_usage(c == 'h', usage);
        }
    }
    if (optind < argc || tok_path == NULL) {
        fprintf(stderr, "dsinfer bench grammar: %s\n",
                tok_path == NULL ? "--tokenizer is required" : "unexpected argument");
        usage(stderr);
        return 2;
    }
    json_t *file_schemas = NULL;
    if (schemas_path != NULL) {
        json_error_t je;
        file_schemas = json_load_file(schemas_path, 0, &je);
        if (!json_is_array(file_schemas) || json_array_size(file_schemas) == 0) {
            fprintf(stderr, "dsinfer bench grammar: %s: %s\n", schemas_path,
                    file_schemas == NULL ? je.text : "not a non-empty JSON array of schemas");
            json_decref(file_schemas);
            return 1;
        }
    }
    dsc_tokenizer_t *tok;
    if (dsc_tokenizer_load(tok_path, &tok) != DSI_OK) {
        fprintf(stderr, "dsinfer bench grammar: cannot load the tokenizer %s\n", tok_path);
        json_decref(file_schemas);
        return 1;
    }
    int32_t eos = dsc_tokenizer_eos_id(tok);
    double t0 = dsi_now_s();
    dsg_vocab_t *v;
    if (dsc_tokenizer_grammar_vocab(tok, 0, &v) != DSI_OK) {
        fprintf(stderr, "dsinfer bench grammar: out of memory for the token trie\n");
        dsc_tokenizer_destroy(tok);
        json_decref(file_schemas);
        return 1;
    }
    double trie_ms = (dsi_now_s() - t0) * 1e3;
    FILE *emit = emit_path != NULL ? fopen(emit_path, "w") : NULL;
    if (emit_path != NULL && emit == NULL) {
        fprintf(stderr, "dsinfer bench grammar: cannot write %s\n", emit_path);
        dsg_vocab_free(v);
        dsc_tokenizer_destroy(tok);
        json_decref(file_schemas);
        return 1;
    }
    size_t n_schemas =
        file_schemas ? json_array_size(file_schemas) : sizeof(builtin) / sizeof(builtin[0]);
    float *logits = malloc((size_t)dsg_vocab_size(v) * sizeof(float));
    double *compile_ms = calloc(n_schemas, sizeof(double));
    samples_t all = {0};
    rng_t rng = {(uint64_t)seed * 0x9E3779B97F4A7C15ull + 1};
    int rc = 0, outputs = 0, completed = 0, failed_schemas = 0;
    long long tokens = 0;
    if (!as_json)
        printf("token trie: %d tokens, built in %.1f ms\n", (int)dsg_vocab_size(v), trie_ms);
    for (size_t i = 0; i < n_schemas && logits != NULL && compile_ms != NULL; i++) {
        char *text = file_schemas ? json_dumps(json_array_get(file_schemas, i),
                                               JSON_COMPACT | JSON_ENCODE_ANY)
                                  : strdup(builtin[i]);
        char *gbnf = NULL, err[320] = "";
        dsg_grammar_t *g = NULL;
        double c0 = dsi_now_s();
        dsi_status_t st =
            text ? dsg_from_json_schema(text, strlen(text), "", &gbnf, err, sizeof(err))
                 : DSI_ERR_NOMEM;
        if (st == DSI_OK)
            st = dsg_compile(gbnf, strlen(gbnf), &g, err, sizeof(err));
        compile_ms[i] = (dsi_now_s() - c0) * 1e3;
        free(gbnf);
        free(text);
        if (st != DSI_OK) {
            fprintf(stderr, "schema %zu: %s\n", i, err);
            failed_schemas++;
            rc = 1;
            continue;
        }
        samples_t one = {0};
        int done = 0, n_tok = 0;
        for (long long k = 0; k < samples; k++) {
            char *out = NULL;
            size_t out_len = 0;
            int complete;
            int n = generate(g, v, tok, eos, (int)max_tokens, &rng, logits, &one, &out, &out_len,
                             &complete);
            if (n < 0) {
                rc = 1;
                break;
            }
            n_tok += n;
            done += complete;
            if (emit != NULL && out != NULL) {
                json_t *line = json_pack("{s:i, s:i, s:s%}", "schema", (int)i, "complete", complete,
                                         "output", out, out_len);
                char *s = line ? json_dumps(line, JSON_COMPACT) : NULL;
                if (s != NULL)
                    fprintf(emit, "%s\n", s);
                else
                    fprintf(stderr, "schema %zu: output is not valid UTF-8\n", i), rc = 1;
                free(s);
                json_decref(line);
            }
            free(out);
        }
        for (int k = 0; k < one.n_mask; k++)
            add_sample(&all, one.mask_us[k], one.wall_us[k]);
        outputs += (int)samples;
        completed += done;
        tokens += n_tok;
        if (!as_json)
            printf("schema %2zu: compile %.3f ms, %d/%lld outputs complete, %d tokens, mask (CPU) "
                   "median %.1f us, p99 %.1f us\n",
                   i, compile_ms[i], done, samples, n_tok, pct(one.mask_us, one.n_mask, 0.5),
                   pct(one.mask_us, one.n_mask, 0.99));
        free(one.mask_us);
        free(one.wall_us);
        dsg_grammar_free(g);
    }
    double cm = pct(compile_ms, (int)n_schemas, 0.5);
    double mean = 0;
    for (int k = 0; k < all.n_mask; k++)
        mean += all.mask_us[k];
    mean = all.n_mask ? mean / all.n_mask : 0;
    double med = pct(all.mask_us, all.n_mask, 0.5), p99 = pct(all.mask_us, all.n_mask, 0.99);
    double wall_p99 = pct(all.wall_us, all.n_mask, 0.99);
    if (as_json)
        printf("{\"tokens_in_vocab\":%d,\"trie_build_ms\":%.2f,\"schemas\":%zu,"
               "\"schemas_failed\":%d,\"compile_ms_median\":%.4f,\"outputs\":%d,"
               "\"outputs_complete\":%d,\"tokens\":%lld,\"mask_us_median\":%.2f,"
               "\"mask_us_p99\":%.2f,\"mask_us_mean\":%.2f,\"mask_wall_us_p99\":%.2f}\n",
               (int)dsg_vocab_size(v), trie_ms, n_schemas, failed_schemas, cm, outputs, completed,
               tokens, med, p99, mean, wall_p99);
    else
        printf("all: %d outputs (%d complete), %lld tokens; compile median %.3f ms; mask (CPU) "
               "median %.1f us, p99 %.1f us, mean %.1f us; wall-clock p99 %.1f us\n",
               outputs, completed, tokens, cm, med, p99, mean, wall_p99);
    free(all.mask_us);
    free(all.wall_us);
    free(compile_ms);
    free(logits);
    if (emit != NULL)
        fclose(emit);
    dsg_vocab_free(v);
    dsc_tokenizer_destroy(tok);
    json_decref(file_schemas);
    return rc;
}
