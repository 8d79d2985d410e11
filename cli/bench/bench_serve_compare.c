/*
 * bench_serve_compare.c - `dsinfer bench compare A.json B.json`: the headline numbers of two
 * `dsinfer bench serve --json` files side by side with their ratio B / A, level by level (levels
 * are matched by position; their names are printed so a mismatch shows). Either file may be the
 * result of vLLM's serving benchmark (`vllm bench serve --save-result`), read as one level, so a
 * run of dsinfer compares with a run of another server measured by that tool.
 */
#include "bench.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

static const struct {
    const char *label, *key, *sub; /* sub: a percentile of an object, or NULL */
    double scale;
    int higher_is_better;
} headline[] = {
    {"requests/s", "requests_per_s", NULL, 1, 1},
    {"output tokens/s", "output_tokens_per_s", NULL, 1, 1},
    {"goodput (requests/s)", "goodput_per_s", NULL, 1, 1},
    {"failed requests", "failed", NULL, 1, 0},
    {"TTFT p50 (ms)", "ttft_s", "p50", 1e3, 0},
    {"TTFT p99 (ms)", "ttft_s", "p99", 1e3, 0},
    {"TPOT p50 (ms)", "tpot_s", "p50", 1e3, 0},
    {"TPOT p99 (ms)", "tpot_s", "p99", 1e3, 0},
    {"ITL p50 (ms)", "itl_s", "p50", 1e3, 0},
    {"ITL p99 (ms)", "itl_s", "p99", 1e3, 0},
    {"E2E latency p50 (ms)", "e2el_s", "p50", 1e3, 0},
    {"E2E latency p99 (ms)", "e2el_s", "p99", 1e3, 0},
};

/* The value of a headline row in a level; 0 with *ok = 0 when the file lacks it. */
static double value(const json_t *level, int row, int *ok)
{
    const json_t *v = json_object_get(level, headline[row].key);
    if (headline[row].sub != NULL)
        v = json_object_get(v, headline[row].sub);
    *ok = json_is_number(v);
    return *ok ? json_number_value(v) * headline[row].scale : 0;
}

/* vLLM's "<stat>_<figure>_ms" (ms) as our "<figure>_s".<p>, when present. */
static void vllm_pct(json_t *level, const json_t *v, const char *figure)
{
    static const char *const ours[] = {"p50", "p90", "p99", "mean"};
    static const char *const theirs[] = {"median", "p90", "p99", "mean"};
    json_t *o = json_object();
    for (int i = 0; i < 4; i++) {
        char key[64];
        snprintf(key, sizeof(key), "%s_%s_ms", theirs[i], figure);
        const json_t *x = json_object_get(v, key);
        if (json_is_number(x))
            json_object_set_new(o, ours[i], json_real(json_number_value(x) / 1e3));
    }
    char key[32];
    snprintf(key, sizeof(key), "%s_s", figure);
    json_object_set_new(level, key, o);
}

/*
 * A vLLM serving-benchmark result as a file of one level. Its percentiles interpolate between
 * samples (numpy) where ours are nearest-rank: close on many requests, not identical.
 */
static json_t *from_vllm(const json_t *v)
{
    json_t *level = json_object();
    json_object_set_new(level, "name", json_string("vllm"));
    const char *map[][2] = {{"request_throughput", "requests_per_s"},
                            {"output_throughput", "output_tokens_per_s"},
                            {"request_goodput", "goodput_per_s"},
                            {"failed", "failed"}};
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        const json_t *x = json_object_get(v, map[i][0]);
        if (json_is_number(x))
            json_object_set_new(level, map[i][1], json_real(json_number_value(x)));
    }
    const char *figures[] = {"ttft", "tpot", "itl", "e2el"};
    for (int i = 0; i < 4; i++)
        vllm_pct(level, v, figures[i]);
    json_t *root = json_object(), *levels = json_array();
    json_array_append_new(levels, level);
    json_object_set_new(root, "levels", levels);
    const char *model = json_string_value(json_object_get(v, "model_id"));
    json_object_set_new(root, "model", json_string(model ? model : "?"));
    return root;
}

static json_t *load(const char *path)
{
    json_error_t err;
    json_t *root = json_load_file(path, 0, &err);
    if (root == NULL) {
        fprintf(stderr, "dsinfer bench compare: %s:%d: %s\n", path, err.line, err.text);
        return NULL;
    }
    if (!json_is_array(json_object_get(root, "levels")) &&
        json_is_number(json_object_get(root, "request_throughput"))) {
        json_t *converted = from_vllm(root);
        json_decref(root);
        return converted;
    }
    if (!json_is_array(json_object_get(root, "levels"))) {
        fprintf(stderr,
                "dsinfer bench compare: %s is neither a `dsinfer bench serve --json` file nor a "
                "vLLM serving-benchmark result\n",
                path);
        json_decref(root);
        return NULL;
    }
    return root;
}

static void level_name(const json_t *level, char *out, size_t cap)
{
    const char *name = json_string_value(json_object_get(level, "name"));
    if (name != NULL) /* version 1 files have only the concurrency */
        snprintf(out, cap, "%s", name);
    else
        snprintf(out, cap, "c=%lld",
                 (long long)json_integer_value(json_object_get(level, "concurrency")));
}

int dsinfer_bench_compare(int argc, char **argv)
{
    if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("usage: dsinfer bench compare A.json B.json\n"
               "Prints the headline numbers of two `dsinfer bench serve --json` files (or vLLM\n"
               "serving-benchmark results) and their ratio B / A per level.\n");
        return 0;
    }
    if (argc != 3) {
        fprintf(stderr, "usage: dsinfer bench compare A.json B.json\n");
        return 2;
    }
    json_t *a = load(argv[1]), *b = a ? load(argv[2]) : NULL;
    if (a == NULL || b == NULL) {
        json_decref(a);
        return 1;
    }
    const json_t *la = json_object_get(a, "levels"), *lb = json_object_get(b, "levels");
    size_t n =
        json_array_size(la) < json_array_size(lb) ? json_array_size(la) : json_array_size(lb);
    if (json_array_size(la) != json_array_size(lb))
        fprintf(stderr, "dsinfer bench compare: %zu levels against %zu: comparing the first %zu\n",
                json_array_size(la), json_array_size(lb), n);
    printf("A: %s (%s)\nB: %s (%s)\n", argv[1], json_string_value(json_object_get(a, "model")),
           argv[2], json_string_value(json_object_get(b, "model")));
    for (size_t i = 0; i < n; i++) {
        const json_t *x = json_array_get(la, i), *y = json_array_get(lb, i);
        char na[64], nb[64];
        level_name(x, na, sizeof(na));
        level_name(y, nb, sizeof(nb));
        printf("\n%-22s %14s %14s %8s\n", strcmp(na, nb) ? "level (A / B)" : "level", na, nb,
               "B / A");
        for (size_t r = 0; r < sizeof(headline) / sizeof(headline[0]); r++) {
            int ok_a, ok_b;
            double va = value(x, (int)r, &ok_a), vb = value(y, (int)r, &ok_b);
            char sa[32] = "-", sb[32] = "-", ratio[32] = "-";
            const char *verdict = "";
            if (ok_a)
                snprintf(sa, sizeof(sa), "%.2f", va);
            if (ok_b)
                snprintf(sb, sizeof(sb), "%.2f", vb);
            if (ok_a && ok_b && va != 0)
                snprintf(ratio, sizeof(ratio), "%.3f", vb / va);
            if (ok_a && ok_b && va != vb)
                verdict = (vb > va) == headline[r].higher_is_better ? "  B better" : "  B worse";
            printf("%-22s %14s %14s %8s%s\n", headline[r].label, sa, sb, ratio, verdict);
        }
    }
    json_decref(a);
    json_decref(b);
    return 0;
}
