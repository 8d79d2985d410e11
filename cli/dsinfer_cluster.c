/*
 * dsinfer-cluster: a static cluster under mpirun. Rank 0 is the coordinator and runs the request;
 * ranks 1..N-1 are node daemons. The ranks exchange their UCX worker addresses with
 * MPI_Allgather; rank 0's entry is the coordinator's control address, which is how the nodes
 * find it. The shared secret must be in every rank's environment (mpirun -x DSINFER_SECRET).
 *
 *   mpirun -np 3 -x DSINFER_SECRET dsinfer-cluster --model DIR --prompt-ids 5,17,300
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_args.h"
#include "cli_cluster.h"
#include "dsi_log.h"
#include "dsn_node.h"
#include "dst_mpi.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: mpirun -np N -x DSINFER_SECRET dsinfer-cluster --model DIR --prompt-ids LIST\n"
            "                      [--max-tokens N] [--stages S] [--threads N]\n"
            "Rank 0 coordinates and prints the generated ids; ranks 1..N-1 are nodes.\n");
}

/* Node ranks: share the worker address, learn the coordinator's from rank 0's entry. */
static dsi_status_t mpi_bootstrap(void *arg, const void *ucx_addr, size_t len, char *coordinator,
                                  size_t cap)
{
    (void)arg;
    dst_mpi_addrs_t *table;
    dsi_status_t st = dst_mpi_allgather_addresses(ucx_addr, len, &table);
    if (st != DSI_OK)
        return st;
    size_t clen;
    const char *c = dst_mpi_addr(table, 0, &clen);
    if (clen < 2 || clen > cap || c[clen - 1] != '\0' || strlen(c) != clen - 1) {
        DSI_ERROR("rank 0 did not publish a coordinator address");
        dst_mpi_addrs_free(table);
        return DSI_ERR_PROTOCOL;
    }
    memcpy(coordinator, c, clen);
    dst_mpi_addrs_free(table);
    return DSI_OK;
}

int main(int argc, char **argv)
{
    int rank, size;
    if (dst_mpi_init(&argc, &argv, &rank, &size) != DSI_OK)
        return 1;
    static const struct option longopts[] = {{"model", required_argument, NULL, 'm'},
                                             {"prompt-ids", required_argument, NULL, 'p'},
                                             {"max-tokens", required_argument, NULL, 'n'},
                                             {"stages", required_argument, NULL, 's'},
                                             {"threads", required_argument, NULL, 't'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    const char *model = NULL;
    int32_t *prompt = NULL;
    int n_prompt = 0, rc = 2, ch;
    long long max_tokens = 16, stages = 0, threads = 1;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case 'm':
            model = optarg;
            break;
        case 'p':
            if (cli_parse_int_list("cluster", "--prompt-ids", optarg, 0, INT32_MAX, &prompt,
                                   &n_prompt) != 0)
                goto out;
            break;
        case 'n':
            if (cli_parse_int("cluster", "--max-tokens", optarg, 1, 1 << 20, &max_tokens) != 0)
                goto out;
            break;
        case 's':
            if (cli_parse_int("cluster", "--stages", optarg, 1, 256, &stages) != 0)
                goto out;
            break;
        case 't':
            if (cli_parse_int("cluster", "--threads", optarg, 1, 1024, &threads) != 0)
                goto out;
            break;
        case 'h':
            usage(stdout);
            rc = 0;
            goto out;
        default:
            usage(stderr);
            goto out;
        }
    }
    if (model == NULL || prompt == NULL || size < 2 || getenv("DSINFER_SECRET") == NULL) {
        if (rank == 0) {
            fprintf(stderr, "dsinfer-cluster: needs --model, --prompt-ids, at least 2 ranks and "
                            "DSINFER_SECRET in every rank's environment\n");
            usage(stderr);
        }
        goto out;
    }
    if (rank == 0) {
        dsi_log_set_tag("rank0");
        cli_cluster_opts_t co = {model, 0, (uint32_t)stages, (int)threads, NULL, 120000, size - 1};
        dsc_cluster_req_t req = {prompt, (uint32_t)n_prompt, (uint32_t)max_tokens, 0.0f, 1.0f, 0,
                                 0};
        cli_gen_result_t res;
        rc = cli_cluster_generate(&co, &req, 1, &res);
        if (rc == 0) {
            for (uint32_t i = 0; i < res.n_tokens; i++)
                printf(i ? ",%d" : "%d", res.tokens[i]);
            printf("\n");
        }
        free(res.tokens);
    } else {
        char name[32];
        snprintf(name, sizeof(name), "rank-%d", rank);
        dsn_node_opts_t o;
        dsn_node_opts_default(&o);
        o.model_dir = model;
        o.name = name;
        o.threads = (int)threads;
        o.bootstrap = mpi_bootstrap;
        rc = dsn_node_run(&o) == DSI_OK ? 0 : 1;
    }
out:
    free(prompt);
    dst_mpi_finalize();
    return rc;
}
