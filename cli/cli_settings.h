/*
 * cli_settings.h - what the programs make of the settings table (util/dsi_settings.h): the one
 * rule for the context, the node options (memory from the machine), the flags passed to spawned
 * nodes, the coordinator's tuning and the API server's options.
 */
#ifndef CLI_SETTINGS_H
#define CLI_SETTINGS_H

#include <stdint.h>

#include "dsc_api.h"
#include "dsc_backend.h"
#include "dsc_cluster.h"
#include "dsi_settings.h"
#include "dsn_config.h"
#include "dsn_node.h"

/* The context of a model whose config cannot be read (dsinfer inspect): DeepSeek-V3's
 * max_position_embeddings. */
#define CLI_CONTEXT_FALLBACK 163840

/* DIR/config.json (or `config_file` when DIR is NULL) into *cfg; 0 or 1 (printed). */
int cli_config_load(const char *model, const char *config_file, dsn_config_t *cfg);
/*
 * The context of a program: --max-context when given (2 when over the model's positions,
 * printed), else the model's max_position_embeddings. 0 or 2.
 */
int cli_max_context(const dsi_settings_t *s, const dsn_config_t *cfg, long long *out);
/*
 * --mem of a node, one of `share` nodes on this machine: the value given, else (auto) the
 * available memory of the machine or of --numa-node minus --mem-headroom, divided by share; the
 * choice is printed on stderr prefixed by `who`. 0, or 1 when the memory cannot be read.
 */
int cli_node_mem(const dsi_settings_t *s, int share, const char *who, uint64_t *out);
/* --kv-dtype into *out (bf16 when unset). 0 or 2 (printed). */
int cli_kv_dtype(const dsi_settings_t *s, dsn_kv_dtype_t *out);
/* Latent-KV bytes per token per layer of the model in --kv-dtype (the planner's figure); 0 when
 * --kv-dtype is bad (printed). */
uint64_t cli_kv_token_layer(const dsi_settings_t *s, const dsn_config_t *cfg);
/* --threads of one of `share` nodes on this machine: the value given, else the CPUs / share. */
int cli_node_threads(const dsi_settings_t *s, int share);
/*
 * The options of a node daemon, one of `share` on this machine, from the settings (dsinfer-node,
 * the node ranks of dsinfer-cluster); strings point into s. 0, or 1/2 (printed).
 */
int cli_node_opts(const dsi_settings_t *s, const dsn_config_t *cfg, int share, dsn_node_opts_t *o);

/*
 * The kernel options of the settings (--kernels, --fp8, --act) into the kernel library
 * (dsk_set_options): every program that computes calls this right after parsing its settings.
 */
void cli_kernel_options(const dsi_settings_t *s);
/*
 * The same for a command outside the settings table (dsinfer bench, version): the node's kernel
 * settings from the environment (DSINFER_KERNELS, DSINFER_FP8, DSINFER_ACT) and the config file.
 * 0, or 2 when one is bad (printed, naming it).
 */
int cli_kernel_options_env(const char *command);

/* The flags every spawned dsinfer-node gets: the node options of the settings, resolved. */
typedef struct {
    char threads[24], mem[32], numa[16], context[24], batch[24], kv_pool[32], spec[16];
    const char *argv[28]; /* NULL-terminated: "--threads", threads, ... */
} cli_node_args_t;
/* For n_local nodes on this machine with context `max_context`. 0 or 1 (printed). */
int cli_node_args(const dsi_settings_t *s, long long max_context, int n_local, cli_node_args_t *a);

/* The coordinator's tuning (heartbeats, expert load, rebalancing, re-plans, stages) from the
 * settings. 0 or 2 (printed). */
int cli_cluster_tune(const dsi_settings_t *s, dsc_cluster_opts_t *co);

/* The OpenAI API of a coordinator: metrics, the text backend and the HTTP server. */
typedef struct {
    dsc_metrics_t *metrics;
    dsc_backend_t *backend;
    dsc_api_server_t *api;
    char url[96]; /* http://HOST:PORT as bound */
} cli_api_t;

/*
 * Start the API of the settings (--listen, --api-key / --api-key-file, the HTTP limits,
 * --max-queue, --model-name, --chat-template, the max_tokens limits) on `cluster` for the model
 * --model, whose sequences hold max_context tokens. The backend takes the cluster's state
 * callback and passes it to on_state. 0, or 1/2 (printed); what was created is in *a either way
 * (cli_api_free).
 */
int cli_api_start(uv_loop_t *loop, const dsi_settings_t *s, const dsn_config_t *cfg,
                  long long max_context, dsc_cluster_t *cluster,
                  void (*on_state)(void *arg, dsi_status_t st), void *arg, cli_api_t *a);
/*
 * A coordinator until SIGINT/SIGTERM (then the nodes are shut down): the cluster of `o`, with
 * the API of the settings when --listen is given. bound(arg, cluster), when not NULL, runs once
 * the control listener is bound (dsinfer-cluster publishes its address there); non-zero stops.
 * Returns the exit code.
 */
int cli_coordinator_run(const dsi_settings_t *s, const dsn_config_t *cfg, dsc_cluster_opts_t *o,
                        long long max_context, int (*bound)(void *arg, dsc_cluster_t *cluster),
                        void *arg);
/* Free the backend and metrics (the API server must be destroyed already: a->api NULL). */
void cli_api_free(cli_api_t *a);

#endif
