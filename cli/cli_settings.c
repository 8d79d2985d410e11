#include "cli_settings.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsi_pool.h"
#include "dsk.h"
#include "dsn_weights.h"

void cli_kernel_options(const dsi_settings_t *s)
{
    dsk_set_options(dsi_settings_str(s, DSI_S_KERNELS), dsi_settings_str(s, DSI_S_FP8),
                    dsi_settings_str(s, DSI_S_ACT));
}

int cli_kernel_options_env(const char *command)
{
    /* the settings of a node from the environment and the config file, no flags */
    dsi_settings_t s;
    char *argv[] = {(char *)command, NULL};
    if (dsi_settings_parse(&s, DSI_P_NODE, 1, argv, NULL) != 0) {
        dsi_settings_cleanup(&s);
        return 2;
    }
    cli_kernel_options(&s);
    dsi_settings_cleanup(&s);
    return 0;
}

int cli_config_load(const char *model, const char *config_file, dsn_config_t *cfg)
{
    char path[4096];
    if (model != NULL)
        snprintf(path, sizeof(path), "%s/config.json", model);
    else
        snprintf(path, sizeof(path), "%s", config_file);
    return dsn_config_load(path, cfg) == DSI_OK ? 0 : 1;
}

int cli_max_context(const dsi_settings_t *s, const dsn_config_t *cfg, long long *out)
{
    long long model_ctx = cfg->max_position_embeddings > 2 ? cfg->max_position_embeddings : 2;
    long long v = dsi_settings_int(s, DSI_S_MAX_CONTEXT);
    if (v == 0) {
        *out = model_ctx;
        return 0;
    }
    if (v < 2 || v > model_ctx) {
        fprintf(stderr,
                "%s: --max-context %lld: expected auto or 2 to the model's %lld positions\n",
                s->command, v, model_ctx);
        return 2;
    }
    *out = v;
    return 0;
}

static double gib(uint64_t b)
{
    return (double)b / (double)(1ULL << 30);
}

int cli_node_mem(const dsi_settings_t *s, int share, const char *who, uint64_t *out)
{
    uint64_t mem = dsi_settings_size(s, DSI_S_MEM);
    if (mem != 0) {
        *out = mem; /* per node, however many share the machine */
        return 0;
    }
    int numa = (int)dsi_settings_int(s, DSI_S_NUMA_NODE);
    uint64_t avail, head = dsi_settings_size(s, DSI_S_MEM_HEADROOM);
    if (dsi_mem_available(numa, &avail) != 0) {
        if (numa >= 0)
            fprintf(stderr, "%s: --numa-node %d: no such NUMA node here (no free memory to read)\n",
                    who, numa);
        else
            fprintf(stderr, "%s: cannot read MemAvailable of /proc/meminfo: give --mem\n", who);
        return 1;
    }
    *out = dsi_mem_budget(avail, head, share);
    char of[48] = "";
    if (numa >= 0)
        snprintf(of, sizeof(of), " of NUMA node %d", numa);
    fprintf(stderr,
            "%s: memory per node %.1f GiB: %.1f GiB available%s minus %.1f GiB headroom%s "
            "(--mem overrides)\n",
            who, gib(*out), gib(avail), of, gib(head < avail / 2 ? head : avail / 2),
            share > 1 ? ", shared by the local nodes" : "");
    return 0;
}

int cli_node_threads(const dsi_settings_t *s, int share)
{
    int t = (int)dsi_settings_int(s, DSI_S_THREADS);
    if (t > 0 || share <= 0)
        return t;
    t = dsi_cpus_available() / share;
    return t > 0 ? t : 1;
}

int cli_kv_dtype(const dsi_settings_t *s, dsn_kv_dtype_t *out)
{
    const char *k = dsi_settings_str(s, DSI_S_KV_DTYPE);
    *out = DSN_KV_BF16;
    if (k != NULL && dsn_kv_dtype_parse(k, out) != DSI_OK) {
        fprintf(stderr, "%s: --kv-dtype: '%s' is not one of bf16, f32, fp8\n", s->command, k);
        return 2;
    }
    return 0;
}

uint64_t cli_kv_token_layer(const dsi_settings_t *s, const dsn_config_t *cfg)
{
    dsn_kv_dtype_t dt;
    if (cli_kv_dtype(s, &dt) != 0)
        return 0;
    return dsn_kvpool_block_bytes(1, cfg->kv_lora_rank + cfg->qk_rope_head_dim, dt) / DSN_KV_BLOCK;
}

static int weight_format(const dsi_settings_t *s, dsn_weight_format_t *out)
{
    const char *w = dsi_settings_str(s, DSI_S_WEIGHT_FORMAT);
    if (w != NULL && dsn_weight_format_parse(w, out) != DSI_OK) {
        fprintf(stderr, "%s: --weight-format: '%s' is not one of %s\n", s->command, w,
                DSN_WFMT_NAMES);
        return 2;
    }
    return 0;
}

int cli_node_opts(const dsi_settings_t *s, const dsn_config_t *cfg, int share, dsn_node_opts_t *o)
{
    dsn_node_opts_default(o);
    o->coordinator = dsi_settings_str(s, DSI_S_COORDINATOR);
    o->model_dir = dsi_settings_str(s, DSI_S_MODEL);
    o->name = dsi_settings_str(s, DSI_S_NAME);
    o->secret_file = dsi_settings_str(s, DSI_S_SECRET_FILE);
    o->logits_dir = dsi_settings_str(s, DSI_S_LOGITS_DIR);
    o->threads = cli_node_threads(s, share > 1 ? share : 0); /* 0: the node takes its CPUs */
    o->max_batch_tokens = (int)dsi_settings_int(s, DSI_S_MAX_BATCH_TOKENS);
    o->speculative_tokens = (int)dsi_settings_int(s, DSI_S_SPECULATIVE_TOKENS);
    o->numa_node = (int)dsi_settings_int(s, DSI_S_NUMA_NODE);
    o->coordinator_wait_ms = (uint32_t)dsi_settings_int(s, DSI_S_COORDINATOR_WAIT_MS);
    cli_kernel_options(s);
    long long ctx;
    int rc = weight_format(s, &o->weight_format);
    if (rc == 0)
        rc = cli_kv_dtype(s, &o->kv_dtype);
    o->kv_pool_bytes = dsi_settings_size(s, DSI_S_KV_POOL);
    const char *pc = dsi_settings_str(s, DSI_S_PREFIX_CACHE);
    o->prefix_cache = pc == NULL || strcmp(pc, "off") != 0;
    if (rc == 0)
        rc = cli_max_context(s, cfg, &ctx);
    if (rc == 0)
        rc = cli_node_mem(s, share, s->command, &o->mem_budget);
    o->max_context = ctx;
    return rc;
}

int cli_node_args(const dsi_settings_t *s, long long max_context, int n_local, cli_node_args_t *a)
{
    uint64_t mem;
    if (cli_node_mem(s, n_local, s->command, &mem) != 0)
        return 1;
    snprintf(a->threads, sizeof(a->threads), "%d", cli_node_threads(s, n_local));
    snprintf(a->mem, sizeof(a->mem), "%llu", (unsigned long long)mem);
    snprintf(a->numa, sizeof(a->numa), "%lld", dsi_settings_int(s, DSI_S_NUMA_NODE));
    snprintf(a->context, sizeof(a->context), "%lld", max_context);
    snprintf(a->batch, sizeof(a->batch), "%lld", dsi_settings_int(s, DSI_S_MAX_BATCH_TOKENS));
    snprintf(a->spec, sizeof(a->spec), "%lld", dsi_settings_int(s, DSI_S_SPECULATIVE_TOKENS));
    const char *wfmt = dsi_settings_str(s, DSI_S_WEIGHT_FORMAT);
    const char *kvd = dsi_settings_str(s, DSI_S_KV_DTYPE);
    const char *kernels = dsi_settings_str(s, DSI_S_KERNELS), *fp8 = dsi_settings_str(s, DSI_S_FP8),
               *act = dsi_settings_str(s, DSI_S_ACT);
    const char *pc = dsi_settings_str(s, DSI_S_PREFIX_CACHE);
    snprintf(a->kv_pool, sizeof(a->kv_pool), "%llu",
             (unsigned long long)dsi_settings_size(s, DSI_S_KV_POOL));
    const char *v[] = {"--threads",
                       a->threads,
                       "--mem",
                       a->mem,
                       "--numa-node",
                       a->numa,
                       "--max-context",
                       a->context,
                       "--max-batch-tokens",
                       a->batch,
                       "--speculative-tokens",
                       a->spec,
                       "--weight-format",
                       wfmt != NULL ? wfmt : "auto",
                       "--kv-dtype",
                       kvd != NULL ? kvd : "bf16",
                       "--kv-pool",
                       strcmp(a->kv_pool, "0") != 0 ? a->kv_pool : "auto",
                       "--kernels",
                       kernels != NULL ? kernels : "auto",
                       "--fp8",
                       fp8 != NULL ? fp8 : "auto",
                       "--act",
                       act != NULL ? act : "int8",
                       "--prefix-cache",
                       pc != NULL ? pc : "on",
                       NULL};
    memcpy(a->argv, v, sizeof(v));
    return 0;
}

int cli_cluster_tune(const dsi_settings_t *s, dsc_cluster_opts_t *co)
{
    double x = dsi_settings_float(s, DSI_S_REBALANCE_THRESHOLD);
    if (x > 0 && x <= 1) {
        fprintf(stderr,
                "%s: --rebalance-threshold %g: 0 (off) or above 1 (1 is a perfect balance)\n",
                s->command, x);
        return 2;
    }
    co->heartbeat_ms = (uint32_t)dsi_settings_int(s, DSI_S_HEARTBEAT_MS);
    co->node_timeout_ms = (uint32_t)dsi_settings_int(s, DSI_S_NODE_TIMEOUT_MS);
    co->load_window_ms = (uint32_t)dsi_settings_int(s, DSI_S_LOAD_WINDOW_MS);
    co->load_windows = (uint32_t)dsi_settings_int(s, DSI_S_LOAD_WINDOWS);
    const char *r = dsi_settings_str(s, DSI_S_REDUNDANT_EXPERTS);
    co->redundant_experts = strcmp(r, "auto") == 0
                                ? DSC_REDUNDANT_AUTO
                                : (uint32_t)dsi_settings_int(s, DSI_S_REDUNDANT_EXPERTS);
    co->rebalance_threshold = x;
    co->rebalance_interval_ms = (uint32_t)dsi_settings_int(s, DSI_S_REBALANCE_INTERVAL_MS);
    co->online_bias_gamma = (float)dsi_settings_float(s, DSI_S_ONLINE_BIAS_GAMMA);
    co->live_switch = (int)dsi_settings_int(s, DSI_S_REPLAN); /* restart|live */
    const char *pc = dsi_settings_str(s, DSI_S_PREFIX_CACHE);
    co->prefix_routing = pc == NULL || strcmp(pc, "off") != 0;
    co->plan.n_stages = (uint32_t)dsi_settings_int(s, DSI_S_STAGES);
    return 0;
}
