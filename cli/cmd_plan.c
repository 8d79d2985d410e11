/*
 * dsinfer plan: plan a cluster for a model config without any weights: stages (layer ranges and
 * nodes), memory per node, experts per node, and the memory the model needs in each weight
 * format. Exit 1 with the planner's explanation when the model cannot fit.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_args.h"
#include "cli_settings.h"
#include "dsc_estimate.h"
#include "dsc_planner.h"
#include "dsi_log.h"
#include "dsinfer_commands.h"

#define MAX_NODES 4096

typedef struct {
    const char *config;
    char *config_buf; /* --model DIR/config.json, owned */
    long long n_nodes;
    uint64_t mem_per_node;
    uint64_t *node_mem; /* --node-mem list, owned; overrides --nodes/--mem-per-node */
    uint32_t n_node_mem;
    int32_t *remove; /* --remove-nodes ids, owned */
    int n_remove;
    int json;
    int format_given; /* --weight-format; otherwise the config's (fp8 or bf16) */
    const char *kv_dtype; /* --kv-dtype */
    dsc_plan_opts_t plan;
    const char *estimate; /* --estimate PROFILE.json, or NULL */
    dsc_profile_t profile;
    const char *net; /* --net GBIT,US, or NULL */
    dsc_estimate_opts_t est;
} plan_args_t;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: dsinfer plan (--config FILE | --model DIR) (--nodes N [--mem SIZE] |\n"
            "                    --node-mem SIZE,SIZE,...) [options]\n"
            "Plans N nodes (ids 0..N-1) for the model: pipeline stages, experts per node and\n"
            "memory per node; prints the memory the model needs in every weight format. Each\n"
            "node reserves latent KV cache for one sequence of --max-context tokens. Exit 1 when\n"
            "the model cannot fit.\n"
            "With --estimate PROFILE.json it also estimates what the plan runs at on machines of\n"
            "that profile (dsinfer bench profile --json): decode tok/s per stream and in all at\n"
            "--concurrency C (default 1) with --prompt-len L tokens of context (default 1024),\n"
            "prefill tok/s and time to first token of an L-token prompt in chunks of\n"
            "--max-batch-tokens (default 256), and the term that bounds each; --net GBIT,US\n"
            "(default: the profile's network) sets the network between nodes.\n");
}

static int parse_node_mem(const char *text, plan_args_t *a)
{
    char *copy = strdup(text);
    uint32_t cap = 1;
    for (const char *p = text; *p; p++)
        cap += *p == ',';
    if (cap > MAX_NODES) {
        fprintf(stderr, "dsinfer plan: --node-mem: %u nodes; at most %d\n", cap, MAX_NODES);
        free(copy);
        return -1;
    }
    a->node_mem = calloc(cap, sizeof(uint64_t));
    if (copy == NULL || a->node_mem == NULL) {
        free(copy);
        return -1;
    }
    char *save = NULL, *item = strtok_r(copy, ",", &save);
    a->n_node_mem = 0;
    for (; item != NULL; item = strtok_r(NULL, ",", &save)) {
        if (cli_parse_size("plan", "--node-mem", item, &a->node_mem[a->n_node_mem]) != 0) {
            free(copy);
            return -1;
        }
        a->n_node_mem++;
    }
    free(copy);
    if (a->n_node_mem == 0) {
        fprintf(stderr, "dsinfer plan: --node-mem: '%s' lists no size\n", text);
        return -1;
    }
    return 0;
}

/* --estimate's profile with --net applied; -1 after a message naming the field. */
static int load_profile(plan_args_t *a)
{
    char err[512];
    if (dsc_profile_load(a->estimate, &a->profile, err, sizeof(err)) != DSI_OK) {
        fprintf(stderr, "dsinfer plan: --estimate: %s\n", err);
        return -1;
    }
    if (a->net != NULL) {
        double gbit, us;
        int used = 0;
        if (sscanf(a->net, "%lf,%lf%n", &gbit, &us, &used) != 2 || a->net[used] != '\0' ||
            !(gbit > 0) || !(us >= 0) || gbit > 1e6 || us > 1e7) {
            fprintf(stderr,
                    "dsinfer plan: --net: '%s' is not GBIT,US (Gbit/s > 0 and a one-way latency "
                    "in microseconds >= 0, e.g. 25,10)\n",
                    a->net);
            return -1;
        }
        a->profile.net_gbs = gbit / 8;
        a->profile.net_latency_us = us;
    }
    return 0;
}

/* -1 to go on, else the exit code. */
static int apply_settings(const dsi_settings_t *s, plan_args_t *a)
{
    dsc_plan_opts_default(&a->plan);
    const char *model = dsi_settings_str(s, DSI_S_MODEL);
    a->config = dsi_settings_str(s, DSI_S_CONFIG);
    if ((a->config == NULL) == (model == NULL)) {
        fprintf(stderr, "dsinfer plan: give exactly one of --config FILE and --model DIR\n");
        return 2;
    }
    if (model != NULL) {
        size_t n = strlen(model) + sizeof("/config.json");
        if ((a->config_buf = malloc(n)) == NULL)
            return 2;
        snprintf(a->config_buf, n, "%s/config.json", model);
        a->config = a->config_buf;
    }
    a->n_nodes = dsi_settings_int(s, DSI_S_NODES);
    a->json = (int)dsi_settings_int(s, DSI_S_JSON);
    a->plan.n_stages = (uint32_t)dsi_settings_int(s, DSI_S_STAGES);
    a->plan.overhead = dsi_settings_size(s, DSI_S_OVERHEAD);
    a->kv_dtype = dsi_settings_str(s, DSI_S_KV_DTYPE);
    const char *wfmt = dsi_settings_str(s, DSI_S_WEIGHT_FORMAT);
    if (strcmp(wfmt, "auto") != 0 && dsc_weight_format_parse(wfmt, &a->plan.format) != DSI_OK) {
        fprintf(stderr,
                "dsinfer plan: --weight-format: '%s' is not one of auto, fp8, bf16, int8, "
                "int4, int4-g128\n",
                wfmt);
        return 2;
    }
    /* auto: the checkpoint's own format (fp8 with quantization_config, else bf16: V2's releases) */
    a->format_given = strcmp(wfmt, "auto") != 0;
    const char *node_mem = dsi_settings_str(s, DSI_S_NODE_MEM);
    if (node_mem != NULL && parse_node_mem(node_mem, a) != 0)
        return 2;
    const char *remove = dsi_settings_str(s, DSI_S_REMOVE_NODES);
    if (remove != NULL && cli_parse_int_list("plan", "--remove-nodes", remove, 0, MAX_NODES - 1,
                                             &a->remove, &a->n_remove) != 0)
        return 2;
    a->estimate = dsi_settings_str(s, DSI_S_ESTIMATE);
    a->net = dsi_settings_str(s, DSI_S_NET);
    a->est.concurrency = (uint32_t)dsi_settings_int(s, DSI_S_CONCURRENCY);
    a->est.prompt_len = (uint32_t)dsi_settings_int(s, DSI_S_PROMPT_LEN);
    a->est.max_batch_tokens = (uint32_t)dsi_settings_int(s, DSI_S_MAX_BATCH_TOKENS);
    a->est.nodes_per_machine = (uint32_t)dsi_settings_int(s, DSI_S_NODES_PER_MACHINE);
    if (a->estimate == NULL && a->net != NULL) {
        fprintf(stderr, "dsinfer plan: --net needs --estimate PROFILE.json\n");
        return 2;
    }
    if (a->estimate != NULL && load_profile(a) != 0)
        return 2;
    if (a->node_mem == NULL && a->n_nodes == 0) {
        fprintf(stderr, "dsinfer plan: give --nodes N (and --mem SIZE, default this machine's), "
                        "or --node-mem SIZE,...\n");
        return 2;
    }
    dsn_config_t cfg;
    long long ctx;
    int rc = cli_config_load(NULL, a->config, &cfg);
    if (rc == 0)
        rc = cli_max_context(s, &cfg, &ctx);
    if (rc == 0 && a->node_mem == NULL)
        rc = cli_node_mem(s, 1, "dsinfer plan", &a->mem_per_node);
    if (rc != 0)
        return rc;
    a->plan.kv_tokens = (uint64_t)ctx;
    a->plan.kv_token_layer = cli_kv_token_layer(s, &cfg);
    a->plan.mtp = dsi_settings_int(s, DSI_S_SPECULATIVE_TOKENS) > 0; /* the MTP layer */
    return a->plan.kv_token_layer > 0 ? -1 : 2;
}

static int parse_args(int argc, char **argv, plan_args_t *a)
{
    dsi_settings_t s;
    int rc = dsi_settings_parse(&s, DSI_P_PLAN, argc, argv, usage);
    if (rc == 1)
        rc = 0; /* --help */
    else if (rc == 0)
        rc = apply_settings(&s, a);
    /* The paths point into the settings: keep them (a plan is one short process). */
    if (rc == -1)
        return rc;
    dsi_settings_cleanup(&s);
    return rc;
}

/* "0-3,5,7-8" for a list of ascending ids. */
static void id_ranges(const uint32_t *ids, uint32_t n, char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    for (uint32_t i = 0; i < n && used < size; i++) {
        uint32_t j = i;
        while (j + 1 < n && ids[j + 1] == ids[j] + 1)
            j++;
        int w = j > i ? snprintf(buf + used, size - used, "%s%u-%u", i ? "," : "", ids[i], ids[j])
                      : snprintf(buf + used, size - used, "%s%u", i ? "," : "", ids[i]);
        used += w > 0 ? (size_t)w : 0;
        i = j;
    }
}

static void print_formats(const dsn_config_t *cfg)
{
    printf("\nmemory the model needs by weight format (weights only, every expert once; the MTP\n"
           "layer, placed with the last stage for speculative decoding, apart; GB = 10^9 bytes):\n");
    printf("%-10s %-48s %8s %11s %9s %11s %9s\n", "format", "layout", "params", "main GiB",
           "main GB", "+MTP GiB", "+MTP GB");
    for (int f = 0; f < DSC_WEIGHT_N_FORMATS; f++) {
        dsc_memory_t m;
        if (dsc_memory_compute(cfg, (dsc_weight_format_t)f, &m) != DSI_OK)
            return;
        double main_b = (double)m.total_main, all_b = (double)(m.total_main + m.mtp);
        printf("%-10s %-48s %7.1fB %11.1f %9.1f %11.1f %9.1f\n", dsc_weight_format_name(m.format),
               dsc_weight_format_describe(m.format), (double)m.params_main / 1e9,
               main_b / (1ULL << 30), main_b / 1e9, all_b / (1ULL << 30), all_b / 1e9);
    }
}

/*
 * The KV pool of node i: its budget less what the plan puts there besides the KV reserve (the
 * node's sequences share it, docs/MEMORY.md), and the sequences of kv_tokens tokens that fit it.
 */
static uint64_t node_pool(const dst_plan_t *p, uint32_t i, const dsc_node_usage_t *u,
                          uint64_t *seq_bytes)
{
    uint64_t other = u->weights + u->experts + u->mtp + u->overhead,
             budget = p->nodes[i].mem_budget;
    *seq_bytes = u->kv; /* the reserve is one sequence of kv_tokens */
    return budget > other ? budget - other : 0;
}

/* Sequences of kv_tokens tokens that fit the cluster at once: the fewest of any stage, a stage
 * holding the sum of its nodes' (a sequence uses one node of each stage). */
static uint64_t concurrent_sequences(const dst_plan_t *p, const dsn_config_t *cfg,
                                     const dsc_plan_report_t *rep, const dsc_plan_opts_t *o)
{
    uint64_t fewest = UINT64_MAX;
    for (uint32_t s = 0; s < p->n_stages; s++) {
        uint64_t sum = 0;
        for (uint32_t i = 0; i < p->n_nodes; i++) {
            if (p->nodes[i].stage != s)
                continue;
            dsc_node_usage_t u;
            uint64_t seq;
            dsc_plan_node_usage(p, i, cfg, &rep->mem, o, &u);
            uint64_t pool = node_pool(p, i, &u, &seq);
            sum += seq > 0 ? pool / seq : 0;
        }
        fewest = sum < fewest ? sum : fewest;
    }
    return fewest == UINT64_MAX ? 0 : fewest;
}

static void print_plan(const plan_args_t *a, const dsn_config_t *cfg, const dst_plan_t *p,
                       const dsc_plan_report_t *rep)
{
    char b1[32], b2[32], b3[32], b4[32], b5[32], b6[32], ids_text[256];
    uint64_t total_budget = 0;
    for (uint32_t i = 0; i < p->n_nodes; i++)
        total_budget += p->nodes[i].mem_budget;
    printf("model    %s: %u layers (%u dense, %u MoE x %u experts), %s weights\n", a->config,
           p->n_layers, p->first_moe_layer, p->n_layers - p->first_moe_layer, p->n_experts,
           dsc_weight_format_name(a->plan.format));
    printf("cluster  %u nodes, %s in all; per node: KV reserve %llu tokens, overhead %s\n",
           p->n_nodes, dsc_memory_format_bytes(total_budget, b1, sizeof(b1)),
           (unsigned long long)a->plan.kv_tokens,
           dsc_memory_format_bytes(a->plan.overhead, b2, sizeof(b2)));
    uint32_t lo = UINT32_MAX, hi = 0;
    for (uint32_t s = 0; s < p->n_stages; s++) {
        uint32_t k = 0;
        for (uint32_t i = 0; i < p->n_nodes; i++)
            k += p->nodes[i].stage == s;
        lo = k < lo ? k : lo;
        hi = k > hi ? k : hi;
    }
    if (lo == hi)
        snprintf(b1, sizeof(b1), "%u", lo);
    else
        snprintf(b1, sizeof(b1), "%u-%u", lo, hi);
    printf("plan     PP=%u x EP=%s, %llu expert copies, busiest node at %.1f%% of its budget\n",
           p->n_stages, b1, (unsigned long long)rep->expert_copies, rep->max_use * 100);
    printf("fits     %llu concurrent sequences of length %llu (KV cache %s, the nodes' memory "
           "after weights and overhead)\n",
           (unsigned long long)concurrent_sequences(p, cfg, rep, &a->plan),
           (unsigned long long)a->plan.kv_tokens, a->kv_dtype);

    uint64_t mtp = dsc_planner_mtp_bytes(&rep->mem, &a->plan);
    if (mtp > 0) {
        uint64_t kv = mtp - rep->mem.mtp, fixed = rep->mem.mtp - rep->mem.mtp_experts;
        if (p->mtp_offsets != NULL)
            printf(
                "mtp      the MTP layer (speculative decoding): %s of weights besides its routed "
                "experts and %s of f32 KV cache on each node of the last stage; its routed "
                "experts (%s) spread over that stage's nodes like a MoE layer's\n",
                dsc_memory_format_bytes(fixed, b2, sizeof(b2)),
                dsc_memory_format_bytes(kv, b4, sizeof(b4)),
                dsc_memory_format_bytes(rep->mem.mtp_experts, b3, sizeof(b3)));
        else
            printf("mtp      the MTP layer (speculative decoding) on each node of the last stage: "
                   "%s (%s of weights, its routed experts %s of them, all on each node; %s of f32 "
                   "KV cache)\n",
                   dsc_memory_format_bytes(mtp, b1, sizeof(b1)),
                   dsc_memory_format_bytes(rep->mem.mtp, b2, sizeof(b2)),
                   dsc_memory_format_bytes(rep->mem.mtp_experts, b3, sizeof(b3)),
                   dsc_memory_format_bytes(kv, b4, sizeof(b4)));
    }

    printf("\n%-6s %-8s %s\n", "stage", "layers", "nodes");
    uint32_t *ids = malloc(p->n_nodes * sizeof(uint32_t));
    for (uint32_t s = 0; ids != NULL && s < p->n_stages; s++) {
        uint32_t k = 0;
        for (uint32_t i = 0; i < p->n_nodes; i++) {
            if (p->nodes[i].stage == s)
                ids[k++] = p->nodes[i].node_id;
        }
        id_ranges(ids, k, ids_text, sizeof(ids_text));
        snprintf(b1, sizeof(b1), "%u-%u", p->stages[s].first_layer, p->stages[s].end_layer - 1);
        printf("%-6u %-8s %s\n", s, b1, ids_text);
    }
    free(ids);

    printf("\n%-5s %-5s %10s %10s %9s %20s %10s %10s %10s %6s %10s %6s\n", "node", "stage",
           "weights", "KV", "overhead", "experts", "MTP", "planned", "budget", "use", "KV pool",
           "seqs");
    for (uint32_t i = 0; i < p->n_nodes; i++) {
        dsc_node_usage_t u;
        dsc_plan_node_usage(p, i, cfg, &rep->mem, &a->plan, &u);
        char ex[48];
        snprintf(ex, sizeof(ex), "%u (%s)", u.n_experts,
                 dsc_memory_format_bytes(u.experts, b4, sizeof(b4)));
        uint64_t seq, pool = node_pool(p, i, &u, &seq);
        char b7[32], b8[32];
        printf("%-5u %-5u %10s %10s %9s %20s %10s %10s %10s %5.1f%% %10s %6llu\n",
               p->nodes[i].node_id, p->nodes[i].stage,
               dsc_memory_format_bytes(u.weights, b1, sizeof(b1)),
               dsc_memory_format_bytes(u.kv, b2, sizeof(b2)),
               dsc_memory_format_bytes(u.overhead, b3, sizeof(b3)), ex,
               u.mtp > 0 ? dsc_memory_format_bytes(u.mtp, b8, sizeof(b8)) : "-",
               dsc_memory_format_bytes(p->nodes[i].mem_planned, b5, sizeof(b5)),
               dsc_memory_format_bytes(p->nodes[i].mem_budget, b6, sizeof(b6)),
               100.0 * (double)p->nodes[i].mem_planned / (double)p->nodes[i].mem_budget,
               dsc_memory_format_bytes(pool, b7, sizeof(b7)),
               (unsigned long long)(seq > 0 ? pool / seq : 0));
    }
}

static json_t *formats_json(const dsn_config_t *cfg)
{
    json_t *arr = json_array();
    for (int f = 0; f < DSC_WEIGHT_N_FORMATS; f++) {
        dsc_memory_t m;
        if (dsc_memory_compute(cfg, (dsc_weight_format_t)f, &m) != DSI_OK)
            break;
        json_array_append_new(
            arr,
            json_pack("{s:s, s:s, s:I, s:I, s:I, s:I}", "format", dsc_weight_format_name(m.format),
                      "layout", dsc_weight_format_describe(m.format), "params_main",
                      (json_int_t)m.params_main, "params_mtp", (json_int_t)m.params_mtp,
                      "main_bytes", (json_int_t)m.total_main, "mtp_bytes", (json_int_t)m.mtp));
    }
    return arr;
}

static json_t *plan_json(const plan_args_t *a, const dsn_config_t *cfg, const dst_plan_t *p,
                         const dsc_plan_report_t *rep)
{
    json_t *stages = json_array(), *nodes = json_array();
    for (uint32_t s = 0; s < p->n_stages; s++) {
        json_t *ids = json_array();
        for (uint32_t i = 0; i < p->n_nodes; i++) {
            if (p->nodes[i].stage == s)
                json_array_append_new(ids, json_integer(p->nodes[i].node_id));
        }
        json_array_append_new(stages,
                              json_pack("{s:i, s:i, s:i, s:o}", "stage", (int)s, "first_layer",
                                        (int)p->stages[s].first_layer, "end_layer",
                                        (int)p->stages[s].end_layer, "nodes", ids));
    }
    for (uint32_t i = 0; i < p->n_nodes; i++) {
        dsc_node_usage_t u;
        dsc_plan_node_usage(p, i, cfg, &rep->mem, &a->plan, &u);
        uint64_t seq, pool = node_pool(p, i, &u, &seq);
        json_array_append_new(
            nodes,
            json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "id",
                      (json_int_t)p->nodes[i].node_id, "stage", (json_int_t)p->nodes[i].stage,
                      "budget", (json_int_t)p->nodes[i].mem_budget, "planned",
                      (json_int_t)p->nodes[i].mem_planned, "weights", (json_int_t)u.weights,
                      "experts", (json_int_t)u.n_experts, "expert_bytes", (json_int_t)u.experts,
                      "kv", (json_int_t)u.kv, "overhead", (json_int_t)u.overhead, "mtp",
                      (json_int_t)u.mtp, "mtp_experts", (json_int_t)u.mtp_experts, "kv_pool",
                      (json_int_t)pool, "sequences_fit", (json_int_t)(seq > 0 ? pool / seq : 0)));
    }
    uint64_t mtp = dsc_planner_mtp_bytes(&rep->mem, &a->plan);
    return json_pack(
        "{s:b, s:o, s:o, s:I, s:f, s:I, s:{s:b, s:b, s:I, s:I, s:I}}", "ok", 1, "stages", stages,
        "nodes", nodes, "expert_copies", (json_int_t)rep->expert_copies, "max_use", rep->max_use,
        "concurrent_sequences", (json_int_t)concurrent_sequences(p, cfg, rep, &a->plan), "mtp",
        "placed", mtp > 0, "experts_spread", p->mtp_offsets != NULL, "per_node", (json_int_t)mtp,
        "weights", (json_int_t)rep->mem.mtp, "experts", (json_int_t)rep->mem.mtp_experts);
}

/* Adds the inputs and the format table to `result`, prints it and releases it. */
static void print_json(const plan_args_t *a, const dsn_config_t *cfg, json_t *result)
{
    if (result == NULL) {
        fprintf(stderr, "dsinfer plan: out of memory building the JSON output\n");
        return;
    }
    json_object_set_new(result, "config", json_string(a->config));
    json_object_set_new(result, "weight_format",
                        json_string(dsc_weight_format_name(a->plan.format)));
    json_object_set_new(result, "kv_tokens", json_integer((json_int_t)a->plan.kv_tokens));
    json_object_set_new(result, "kv_dtype", json_string(a->kv_dtype));
    json_object_set_new(result, "overhead", json_integer((json_int_t)a->plan.overhead));
    json_object_set_new(result, "n_layers", json_integer(cfg->num_hidden_layers));
    json_object_set_new(result, "first_moe_layer", json_integer(cfg->first_k_dense_replace));
    json_object_set_new(result, "n_experts", json_integer(cfg->n_routed_experts));
    json_object_set_new(result, "formats", formats_json(cfg));
    json_dumpf(result, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    printf("\n");
    json_decref(result);
}

/*
 * The nodes left after --remove-nodes, in *out (caller frees). Exit code 2 when an id is not a
 * node or nothing would be left; -1 on success.
 */
static int surviving_nodes(const plan_args_t *a, const dsc_node_desc_t *nodes, uint32_t n,
                           dsc_node_desc_t **out, uint32_t *n_out)
{
    for (int r = 0; r < a->n_remove; r++) {
        if ((uint32_t)a->remove[r] >= n) {
            fprintf(stderr, "dsinfer plan: --remove-nodes: node %d does not exist (ids 0-%u)\n",
                    a->remove[r], n - 1);
            return 2;
        }
    }
    dsc_node_desc_t *left = calloc(n, sizeof(*left));
    uint32_t k = 0;
    for (uint32_t i = 0; left != NULL && i < n; i++) {
        int gone = 0;
        for (int r = 0; r < a->n_remove; r++)
            gone |= (uint32_t)a->remove[r] == nodes[i].id;
        if (!gone)
            left[k++] = nodes[i];
    }
    if (left == NULL || k == 0) {
        fprintf(stderr, "dsinfer plan: --remove-nodes: no node would be left\n");
        free(left);
        return 2;
    }
    *out = left;
    *n_out = k;
    return -1;
}

/*
 * Re-plans without the --remove-nodes nodes, starting from `prev`, and prints (or adds to
 * `result`) what moves. Returns the exit code.
 */
static int replan(const plan_args_t *a, const dsn_config_t *cfg, const dsc_node_desc_t *nodes,
                  uint32_t n, const dst_plan_t *prev, json_t *result)
{
    dsc_node_desc_t *left;
    uint32_t k;
    int rc = surviving_nodes(a, nodes, n, &left, &k);
    if (rc >= 0)
        return rc;
    dsc_plan_opts_t opts = a->plan;
    opts.previous = prev;
    opts.epoch = prev->epoch + 1;
    dst_plan_t plan;
    dsc_plan_report_t rep;
    memset(&rep, 0, sizeof(rep));
    dsi_status_t st = dsc_planner_plan(cfg, left, k, &opts, &plan, &rep);
    free(left);
    json_t *removed = json_array();
    for (int r = 0; r < a->n_remove; r++)
        json_array_append_new(removed, json_integer(a->remove[r]));
    if (st != DSI_OK) {
        if (result != NULL)
            json_object_set_new(result, "replan",
                                json_pack("{s:b, s:o, s:s}", "ok", 0, "removed", removed, "error",
                                          st == DSI_ERR_CAPACITY ? rep.reason : ""));
        else
            json_decref(removed);
        return 1;
    }
    if (result != NULL) {
        json_t *r = plan_json(a, cfg, &plan, &rep);
        json_object_set_new(r, "removed", removed);
        json_object_set_new(r, "experts_moved", json_integer((json_int_t)rep.experts_moved));
        json_object_set_new(r, "bytes_moved", json_integer((json_int_t)rep.bytes_moved));
        json_object_set_new(result, "replan", r);
    } else {
        char moved[32], ids[256];
        uint32_t rm[a->n_remove > 0 ? a->n_remove : 1];
        for (int r = 0; r < a->n_remove; r++)
            rm[r] = (uint32_t)a->remove[r];
        id_ranges(rm, (uint32_t)a->n_remove, ids, sizeof(ids));
        json_decref(removed);
        printf("\nre-plan without node(s) %s, starting from the plan above: %llu expert copies "
               "move, %s of weights to load\n\n",
               ids, (unsigned long long)rep.experts_moved,
               dsc_memory_format_bytes(rep.bytes_moved, moved, sizeof(moved)));
        print_plan(a, cfg, &plan, &rep);
    }
    dsc_plan_cleanup(&plan);
    return 0;
}

static json_t *terms_json(const double *t)
{
    json_t *o = json_object();
    for (int i = 0; i < DSC_TERM_COUNT; i++)
        json_object_set_new(o, dsc_term_name((dsc_term_t)i), json_real(t[i] * 1e3));
    return o;
}

static void print_terms(const double *t)
{
    printf("          ");
    for (int i = 0; i < DSC_TERM_COUNT; i++)
        printf("%s%s %.3g ms", i ? ", " : "", dsc_term_name((dsc_term_t)i), t[i] * 1e3);
    printf("\n");
}

/* The --estimate part: printed, or added to `result`. Returns the exit code. */
static int estimate(const plan_args_t *a, const dsn_config_t *cfg, const dst_plan_t *plan,
                    const dsc_plan_report_t *rep, json_t *result)
{
    dsc_estimate_t e;
    char err[512];
    if (dsc_estimate(cfg, &rep->mem, plan, &a->profile, &a->est, &e, err, sizeof(err)) != DSI_OK) {
        fprintf(stderr, "dsinfer plan: --estimate %s: %s\n", a->estimate, err);
        return 2;
    }
    const dsc_profile_t *p = &a->profile;
    if (result != NULL) {
        json_t *d = json_pack(
            "{s:f, s:f, s:f, s:i, s:i, s:s, s:o}", "tok_s", e.decode_tok_s, "aggregate_tok_s",
            e.decode_aggregate, "cycle_ms", e.decode_cycle_s * 1e3, "micro_batches",
            (int)e.micro_batches, "micro_batch_seqs", (int)e.micro_batch_seqs, "bound",
            dsc_term_name(e.decode_bound), "terms_ms", terms_json(e.decode_terms));
        json_t *pf =
            json_pack("{s:f, s:f, s:s, s:o}", "tok_s", e.prefill_tok_s, "ttft_s", e.ttft_s, "bound",
                      dsc_term_name(e.prefill_bound), "terms_ms", terms_json(e.prefill_terms));
        json_object_set_new(result, "estimate",
                            json_pack("{s:s, s:f, s:f, s:f, s:i, s:i, s:i, s:i, s:o, s:o}",
                                      "profile", a->estimate, "memory_bw_gbs", p->memory_bw_gbs,
                                      "net_gbit", p->net_gbs * 8, "net_latency_us",
                                      p->net_latency_us, "concurrency", (int)a->est.concurrency,
                                      "prompt_len", (int)a->est.prompt_len, "max_batch_tokens",
                                      (int)a->est.max_batch_tokens, "nodes_per_machine",
                                      (int)a->est.nodes_per_machine, "decode", d, "prefill", pf));
        return 0;
    }
    printf("\nestimate on machines of %s (memory %.1f GB/s, FMA %.0f GFLOP/s; network %.3g "
           "Gbit/s, %.3g us one way):\n",
           a->estimate, p->memory_bw_gbs, p->fma_gflops, p->net_gbs * 8, p->net_latency_us);
    if (a->est.nodes_per_machine > 1)
        printf("%u nodes share each machine\n", a->est.nodes_per_machine);
    printf("decode    %u stream(s), context %u: %.3f tok/s per stream, %.3f tok/s in all "
           "(%u micro-batch(es) of %u); bound by %s\n",
           a->est.concurrency, a->est.prompt_len, e.decode_tok_s, e.decode_aggregate,
           e.micro_batches, e.micro_batch_seqs, dsc_term_name(e.decode_bound));
    print_terms(e.decode_terms);
    printf("prefill   %u tokens in chunks of %u: %.2f tok/s, time to first token %.3f s; bound by "
           "%s\n",
           a->est.prompt_len, a->est.max_batch_tokens, e.prefill_tok_s, e.ttft_s,
           dsc_term_name(e.prefill_bound));
    print_terms(e.prefill_terms);
    return 0;
}

int dsinfer_cmd_plan(int argc, char **argv)
{
    plan_args_t a;
    memset(&a, 0, sizeof(a));
    dsc_node_desc_t *nodes = NULL;
    int rc = parse_args(argc, argv, &a);
    if (rc >= 0)
        goto out;
    rc = 1;
    dsn_config_t cfg;
    if (dsn_config_load(a.config, &cfg) != DSI_OK)
        goto out; /* logged with the file and field */
    if (!a.format_given)
        a.plan.format = cfg.fp8 ? DSC_WEIGHT_FP8 : DSC_WEIGHT_BF16;
    uint32_t n = a.node_mem != NULL ? a.n_node_mem : (uint32_t)a.n_nodes;
    nodes = calloc(n, sizeof(*nodes));
    if (nodes == NULL)
        goto out;
    for (uint32_t i = 0; i < n; i++) {
        nodes[i].id = i;
        nodes[i].mem_budget = a.node_mem != NULL ? a.node_mem[i] : a.mem_per_node;
    }
    dst_plan_t plan;
    dsc_plan_report_t rep;
    memset(&rep, 0, sizeof(rep));
    dsi_status_t st = dsc_planner_plan(&cfg, nodes, n, &a.plan, &plan, &rep);
    if (st == DSI_OK) {
        json_t *result = a.json ? plan_json(&a, &cfg, &plan, &rep) : NULL;
        if (!a.json)
            print_plan(&a, &cfg, &plan, &rep);
        rc = a.n_remove > 0 ? replan(&a, &cfg, nodes, n, &plan, result) : 0;
        if (rc == 0 && a.estimate != NULL)
            rc = estimate(&a, &cfg, &plan, &rep, result);
        if (a.json)
            print_json(&a, &cfg, result);
        else
            print_formats(&cfg);
        dsc_plan_cleanup(&plan);
    } else if (st == DSI_ERR_CAPACITY) {
        /* The planner logged the reason; the table shows what other formats would need. */
        if (a.json) {
            print_json(&a, &cfg, json_pack("{s:b, s:s}", "ok", 0, "error", rep.reason));
        } else {
            print_formats(&cfg);
            fprintf(stderr, "dsinfer plan: the model does not fit (reason above); try more nodes, "
                            "more memory per node, more --stages, a smaller --weight-format or "
                            "fewer --kv-tokens\n");
        }
    }
out:
    free(nodes);
    free(a.config_buf);
    free(a.node_mem);
    free(a.remove);
    return rc;
}
