/*
 * bench_serve_gen.c - what `dsinfer bench serve` sends, drawn from seeded random streams so a run
 * is repeatable: arrival times (Poisson or gamma gaps), prompt and output lengths, synthetic
 * prompts, and the chats of a ShareGPT-style dataset.
 *
 * Every request's contents are a function of (seed, index) alone, never of thread timing, so two
 * runs with one seed send the same requests in the same order.
 */
#include "bench_serve.h"

#include <ctype.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- xoshiro256** seeded through splitmix64 ------------------------------------------------- */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void bs_rng_init(bs_rng_t *r, uint64_t seed, uint64_t stream)
{
    uint64_t x = seed ^ (stream * 0xd1342543de82ef95ull + 0x2545f4914f6cdd1dull);
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t bs_rng_next(bs_rng_t *r)
{
    uint64_t *s = r->s, out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

double bs_rng_uniform(bs_rng_t *r)
{
    return ((double)(bs_rng_next(r) >> 11) + 0.5) * 0x1.0p-53;
}

double bs_rng_exponential(bs_rng_t *r)
{
    return -log(bs_rng_uniform(r));
}

static double normal(bs_rng_t *r)
{
    /* Box-Muller; one of the pair is enough here. */
    double u = bs_rng_uniform(r), v = bs_rng_uniform(r);
    return sqrt(-2 * log(u)) * cos(2 * M_PI * v);
}

double bs_rng_gamma(bs_rng_t *r, double k)
{
    if (k < 1) /* Gamma(k) = Gamma(k + 1) * U^(1/k) */
        return bs_rng_gamma(r, k + 1) * pow(bs_rng_uniform(r), 1 / k);
    double d = k - 1.0 / 3, c = 1 / sqrt(9 * d);
    for (;;) {
        double x = normal(r), v = 1 + c * x;
        if (v <= 0)
            continue;
        v = v * v * v;
        double u = bs_rng_uniform(r);
        if (log(u) < 0.5 * x * x + d - d * v + d * log(v))
            return d * v;
    }
}

void bs_arrivals(uint64_t seed, double rate, double burstiness, int n, double *times)
{
    bs_rng_t r;
    bs_rng_init(&r, seed, 0xa55a); /* a stream of its own: lengths do not shift the arrivals */
    double t = 0, scale = 1 / (rate * burstiness);
    for (int i = 0; i < n; i++) {
        t += burstiness == 1 ? bs_rng_exponential(&r) / rate : bs_rng_gamma(&r, burstiness) * scale;
        times[i] = t;
    }
}

/* ---- lengths -------------------------------------------------------------------------------- */

int bs_parse_len(const char *opt, const char *text, int limit, bs_len_t *out)
{
    char *end;
    long a = strtol(text, &end, 10), b = a;
    if (end != text && *end == ':') {
        const char *s = end + 1;
        b = strtol(s, &end, 10);
        if (end == s)
            end = (char *)s - 1; /* "128:" is malformed */
    }
    if (end == text || *end != '\0' || a < 1 || b < a || b > limit) {
        fprintf(stderr,
                "dsinfer bench serve: %s: '%s' is not N or MIN:MAX with 1 <= MIN <= MAX <= %d\n",
                opt, text, limit);
        return -1;
    }
    out->min = (int)a;
    out->max = (int)b;
    return 0;
}

static int draw_len(bs_rng_t *r, bs_len_t l)
{
    if (l.max <= l.min)
        return l.min;
    return l.min + (int)(bs_rng_next(r) % (uint64_t)(l.max - l.min + 1));
}

/* ---- synthetic prompts ---------------------------------------------------------------------- */

static const char *const vocabulary[] = {
    "time",   "river",  "stone",  "light",  "green",  "window", "paper",  "silver",
    "garden", "north",  "quiet",  "music",  "bridge", "winter", "cloud",  "engine",
    "story",  "yellow", "market", "ocean",  "field",  "table",  "forest", "letter",
    "mirror", "number", "planet", "signal", "summer", "valley", "water",  "wheel",
};

char *bs_prompt(uint64_t seed, int index, int words)
{
    size_t cap = (size_t)words * 8 + 1;
    char *p = malloc(cap);
    if (p == NULL)
        return NULL;
    bs_rng_t r;
    bs_rng_init(&r, seed, 0x100000000ull + (uint64_t)index);
    size_t len = 0;
    p[0] = '\0';
    for (int i = 0; i < words; i++) {
        const char *w = vocabulary[bs_rng_next(&r) % (sizeof(vocabulary) / sizeof(vocabulary[0]))];
        len += (size_t)snprintf(p + len, cap - len, "%s%s", i ? " " : "", w);
    }
    return p;
}

int bs_plan_request(const bs_plan_t *plan, int index, bs_req_t *out)
{
    bs_rng_t r;
    bs_rng_init(&r, plan->seed, 0x200000000ull + (uint64_t)index);
    if (plan->dataset != NULL && plan->dataset->n > 0) {
        const bs_chat_t *c = &plan->dataset->chats[bs_rng_next(&r) % (uint64_t)plan->dataset->n];
        out->prompt = strdup(c->prompt);
        out->prompt_words = c->prompt_words;
        int n = plan->output_len_set || c->answer_words < 1 ? draw_len(&r, plan->output_len)
                                                            : c->answer_words;
        out->max_tokens = n > plan->max_output ? plan->max_output : n;
    } else {
        out->prompt_words = draw_len(&r, plan->prompt_len);
        out->max_tokens = draw_len(&r, plan->output_len);
        out->prompt = bs_prompt(plan->seed, index, out->prompt_words);
    }
    if (out->prompt != NULL && plan->shared_prefix > 0) {
        /* the same words for every request: a stream no request index uses */
        char *pre = bs_prompt(plan->seed, -1, plan->shared_prefix);
        size_t a = pre != NULL ? strlen(pre) : 0, b = strlen(out->prompt);
        char *both = pre != NULL ? malloc(a + 1 + b + 1) : NULL;
        if (both != NULL) {
            memcpy(both, pre, a);
            both[a] = ' ';
            memcpy(both + a + 1, out->prompt, b + 1);
            out->prompt_words += plan->shared_prefix;
        }
        free(pre);
        free(out->prompt);
        out->prompt = both;
    }
    return out->prompt != NULL ? 0 : -1;
}

/* ---- ShareGPT-style chats ------------------------------------------------------------------- */

static int count_words(const char *s)
{
    int n = 0, in = 0;
    for (; *s; s++) {
        int space = isspace((unsigned char)*s);
        n += !space && !in;
        in = !space;
    }
    return n;
}

static int role_is(const json_t *turn, const char *a, const char *b)
{
    const char *from = json_string_value(json_object_get(turn, "from"));
    if (from == NULL)
        from = json_string_value(json_object_get(turn, "role"));
    return from != NULL && (strcmp(from, a) == 0 || strcmp(from, b) == 0);
}

static const char *turn_text(const json_t *turn)
{
    const char *v = json_string_value(json_object_get(turn, "value"));
    return v != NULL ? v : json_string_value(json_object_get(turn, "content"));
}

/* Adds one entry's first user turn (and its answer's length); 0 when it has none. */
static int add_chat(bs_dataset_t *d, const json_t *entry, int *cap)
{
    const json_t *conv = json_object_get(entry, "conversations");
    size_t n = json_array_size(conv);
    for (size_t i = 0; i < n; i++) {
        const json_t *turn = json_array_get(conv, i);
        const char *text = turn_text(turn);
        if (!role_is(turn, "human", "user") || text == NULL || count_words(text) == 0)
            continue;
        const json_t *next = json_array_get(conv, i + 1);
        const char *answer = next && role_is(next, "gpt", "assistant") ? turn_text(next) : NULL;
        if (d->n == *cap) {
            int c = *cap ? *cap * 2 : 64;
            bs_chat_t *g = realloc(d->chats, sizeof(*g) * (size_t)c);
            if (g == NULL)
                return -1;
            d->chats = g;
            *cap = c;
        }
        bs_chat_t *c = &d->chats[d->n];
        if ((c->prompt = strdup(text)) == NULL)
            return -1;
        c->prompt_words = count_words(text);
        c->answer_words = answer ? count_words(answer) : 0;
        d->n++;
        return 1;
    }
    return 0;
}

int bs_dataset_load(const char *path, bs_dataset_t *out)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "dsinfer bench serve: --dataset: cannot open %s: %m\n", path);
        return -1;
    }
    bs_dataset_t d = {0};
    int cap = 0, rc = 0, c;
    while ((c = fgetc(f)) != EOF && isspace(c))
        ;
    ungetc(c, f);
    if (c == '[') { /* one JSON array, as ShareGPT's own files */
        json_error_t err;
        json_t *all = json_loadf(f, 0, &err);
        if (all == NULL) {
            fprintf(stderr, "dsinfer bench serve: --dataset: %s:%d: %s\n", path, err.line,
                    err.text);
            rc = -1;
        }
        for (size_t i = 0; rc == 0 && i < json_array_size(all); i++)
            rc = add_chat(&d, json_array_get(all, i), &cap) < 0 ? -1 : 0;
        json_decref(all);
    } else { /* JSON lines */
        char *line = NULL;
        size_t lcap = 0;
        ssize_t len;
        for (int lineno = 1; rc == 0 && (len = getline(&line, &lcap, f)) >= 0; lineno++) {
            if (count_words(line) == 0)
                continue;
            json_error_t err;
            json_t *entry = json_loadb(line, (size_t)len, 0, &err);
            if (entry == NULL) {
                fprintf(stderr, "dsinfer bench serve: --dataset: %s:%d: %s\n", path, lineno,
                        err.text);
                rc = -1;
                break;
            }
            rc = add_chat(&d, entry, &cap) < 0 ? -1 : 0;
            json_decref(entry);
        }
        free(line);
    }
    fclose(f);
    if (rc == 0 && d.n == 0) {
        fprintf(stderr, "dsinfer bench serve: --dataset: %s has no conversation with a user turn\n",
                path);
        rc = -1;
    }
    if (rc != 0) {
        bs_dataset_free(&d);
        return -1;
    }
    *out = d;
    return 0;
}

void bs_dataset_free(bs_dataset_t *d)
{
    for (int i = 0; i < d->n; i++)
        free(d->chats[i].prompt);
    free(d->chats);
    d->chats = NULL;
    d->n = 0;
}
