/*
 * cli_cluster.h - running generations on a cluster from the command line: a coordinator in this
 * process with N local dsinfer-node processes (`--local-nodes N`), or a remote coordinator
 * reached as a client over the control protocol (`--coordinator ADDR`).
 */
#ifndef CLI_CLUSTER_H
#define CLI_CLUSTER_H

#include <stdint.h>
#include <sys/types.h>

#include "dsc_cluster.h"
#include "dsi_settings.h"

typedef struct {
    const char *model;       /* checkpoint directory (every node reads its slice) */
    int local_nodes;         /* > 0: start this many dsinfer-node processes */
    uint32_t stages;         /* pipeline stages (0: the planner chooses) */
    int node_threads;        /* compute threads per node (0: all CPUs) */
    const char *coordinator; /* remote coordinator "host:port" (client mode) */
    uint32_t timeout_ms;     /* give up after this long without progress */
    /* Under mpirun (rank 0): mpi_nodes node ranks join; no process is spawned, and the
     * coordinator's address reaches them through the MPI allgather of UCX addresses: it listens
     * on mpi_listen and publishes mpi_host:PORT (NULL: 127.0.0.1 for both). */
    int mpi_nodes;
    const char *mpi_listen, *mpi_host;
    const char *const *node_args;   /* flags for the spawned nodes (cli_node_args); NULL: none */
    uint64_t kv_tokens;             /* context per sequence the plan reserves (0: 4096) */
    const dsi_settings_t *settings; /* the coordinator's tuning (cli_cluster_tune); may be NULL */
    const dst_msg_sampling_t *sampling; /* SUBMIT.sampling of every request; NULL: none */
} cli_cluster_opts_t;

/* One generation's outcome. */
typedef struct {
    int32_t *tokens; /* malloc'ed, caller frees */
    uint32_t n_tokens;
    dst_finish_t finish;
} cli_gen_result_t;

/*
 * Runs n_req requests (req[i]) on the cluster described by opts and waits for all of them;
 * results[i] gets each one's tokens. Returns 0, or 1 with the cause printed.
 */
int cli_cluster_generate(const cli_cluster_opts_t *opts, const dsc_cluster_req_t *req, int n_req,
                         cli_gen_result_t *results);

/* Makes sure DSINFER_SECRET is set (a random one for a local cluster); 0 or -1. */
int cli_local_secret(void);
/* Starts n dsinfer-node processes (next to this executable) joining coord_addr, each with an
 * equal share of 90% of this machine's memory as its --mem (they share the machine; the rest is
 * left to the system and the page cache). */
int cli_spawn_nodes(int n, const char *coord_addr, const char *model, int threads, pid_t *pids);
/* The same with the node options node_args (NULL-terminated flags and values, at most 32). */
int cli_spawn_nodes_argv(int n, const char *coord_addr, const char *model,
                         const char *const *node_args, pid_t *pids);
/* Waits up to timeout_ms for the processes to exit, then kills what is left. Returns how many
 * did not exit cleanly (status 0). */
int cli_reap_nodes(pid_t *pids, int n, int timeout_ms);

/* Rank 0 of dsinfer-cluster: the node ranks and where the coordinator listens for them. */
typedef struct {
    int nodes;          /* node ranks */
    const char *listen; /* control listener, "HOST:0" */
    const char *host;   /* the host the node ranks connect to */
} cli_mpi_t;

/*
 * `dsinfer run` with parsed settings (mpi NULL), or rank 0 of dsinfer-cluster (the node ranks
 * join over MPI): one generation, printed. Returns the exit code.
 */
int cli_run(const dsi_settings_t *s, const cli_mpi_t *mpi);

#endif
