/*
 * dsinfer-cluster: a static cluster under mpirun. Rank 0 is the coordinator; ranks 1..N-1 are node
 * daemons. The ranks exchange their UCX worker addresses with MPI_Allgather; rank 0's entry is the
 * coordinator's control address, which is how the nodes find it. Rank 0 either runs one
 * generation (the options of `dsinfer run`) or, with --listen, serves the OpenAI API until
 * SIGTERM. The shared secret is DSINFER_SECRET when set, else a random one rank 0 makes and
 * broadcasts over MPI (the MPI job is the trusted channel).
 *
 *   mpirun -np 3 dsinfer-cluster --model DIR --prompt-ids 5,17,300
 *   mpirun -np 3 dsinfer-cluster --model DIR --listen 0.0.0.0:8000
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli_cluster.h"
#include "cli_settings.h"
#include "dsi_log.h"
#include "dsn_node.h"
#include "dst_mpi.h"
#include "dst_secret.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: mpirun -np N dsinfer-cluster --model DIR (--prompt-ids LIST | --prompt TEXT |\n"
            "                      --chat TEXT | --listen HOST:PORT) [options]\n"
            "Rank 0 coordinates, ranks 1..N-1 are nodes. Without --listen rank 0 runs one\n"
            "generation as `dsinfer run` does and prints it; with --listen it serves the OpenAI\n"
            "API there until SIGTERM. The shared secret is DSINFER_SECRET when every rank has it,\n"
            "else rank 0 makes one and sends it to the others over MPI.\n");
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

/* Rank 0, --listen: the coordinator's control address goes out in the allgather. */
static int publish_address(void *arg, dsc_cluster_t *cluster)
{
    const cli_mpi_t *mpi = arg;
    char addr[320];
    snprintf(addr, sizeof(addr), "%s:%u", mpi->host, dsc_cluster_port(cluster));
    dst_mpi_addrs_t *table;
    if (dst_mpi_allgather_addresses(addr, strlen(addr) + 1, &table) != DSI_OK)
        return 1;
    dst_mpi_addrs_free(table);
    return 0;
}

/* Every rank parses the same arguments; only rank 0 prints what it finds. */
static int parse_quietly(int rank, dsi_settings_t *s, int argc, char **argv)
{
    int saved_out = -1, saved_err = -1, null = -1;
    if (rank != 0 && (null = open("/dev/null", O_WRONLY)) >= 0) {
        fflush(stdout);
        saved_out = dup(1);
        saved_err = dup(2);
        dup2(null, 1);
        dup2(null, 2);
    }
    int rc = dsi_settings_parse(s, DSI_P_CLUSTER, argc, argv, usage);
    if (null >= 0) {
        fflush(stdout);
        dup2(saved_out, 1);
        dup2(saved_err, 2);
        close(saved_out);
        close(saved_err);
        close(null);
    }
    return rc;
}

/* Rank 0's secret (DSINFER_SECRET, else a random one) to every rank: MPI_Bcast. */
static int share_secret(int rank)
{
    char buf[512] = {0};
    if (rank == 0) {
        if (cli_local_secret() != 0)
            return 1;
        snprintf(buf, sizeof(buf), "%s", dsi_env(DST_SECRET_ENV));
    }
    if (dst_mpi_bcast(buf, sizeof(buf), 0) != DSI_OK)
        return 1;
    buf[sizeof(buf) - 1] = '\0';
    return rank == 0 || setenv(DST_SECRET_ENV, buf, 1) == 0 ? 0 : 1;
}

/* Rank 0 with --listen: a coordinator serving the API. */
static int serve(const dsi_settings_t *s, const cli_mpi_t *mpi)
{
    dsn_config_t cfg;
    long long max_context;
    dsc_cluster_opts_t co;
    dsc_cluster_opts_default(&co);
    int rc = cli_config_load(dsi_settings_str(s, DSI_S_MODEL), NULL, &cfg);
    if (rc == 0)
        rc = cli_max_context(s, &cfg, &max_context);
    if (rc == 0)
        rc = cli_cluster_tune(s, &co);
    if (rc != 0)
        return rc;
    co.expect_nodes = (uint32_t)mpi->nodes;
    co.listen = mpi->listen;
    co.model_dir = dsi_settings_str(s, DSI_S_MODEL);
    co.plan.kv_tokens = (uint64_t)max_context;
    co.plan.kv_token_layer = cli_kv_token_layer(s, &cfg);
    co.plan.mtp = dsi_settings_int(s, DSI_S_SPECULATIVE_TOKENS) > 0; /* the MTP layer */
    if (co.plan.kv_token_layer == 0)
        return 2;
    if (dst_secret_load(NULL, &co.secret) != DSI_OK)
        return 1;
    return cli_coordinator_run(s, &cfg, &co, max_context, publish_address, (void *)mpi);
}

/* Ranks 1..N-1: a node daemon; the node ranks on this host share its CPUs and memory. */
static int node(const dsi_settings_t *s, int rank, int share)
{
    dsn_config_t cfg;
    dsn_node_opts_t o;
    int rc = cli_config_load(dsi_settings_str(s, DSI_S_MODEL), NULL, &cfg);
    if (rc == 0)
        rc = cli_node_opts(s, &cfg, share, &o);
    if (rc != 0)
        return rc;
    char name[32];
    snprintf(name, sizeof(name), "rank-%d", rank);
    o.name = name;
    o.coordinator = NULL;
    o.bootstrap = mpi_bootstrap;
    return dsn_node_run(&o) == DSI_OK ? 0 : 1;
}

int main(int argc, char **argv)
{
    /* --help needs no MPI job (and prints once, whoever starts it). */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            dsi_settings_t s;
            int rc = dsi_settings_parse(&s, DSI_P_CLUSTER, argc, argv, usage);
            dsi_settings_cleanup(&s);
            return rc == 1 ? 0 : rc;
        }
    }
    int rank, size;
    if (dst_mpi_init(&argc, &argv, &rank, &size) != DSI_OK)
        return 1;
    dsi_settings_t s;
    int rc = parse_quietly(rank, &s, argc, argv);
    if (rc == 1) { /* --help */
        dsi_settings_cleanup(&s);
        dst_mpi_finalize();
        return 0;
    }
    if (rc == 0 && (dsi_settings_str(&s, DSI_S_MODEL) == NULL || size < 2)) {
        if (rank == 0) {
            fprintf(stderr, "dsinfer-cluster: needs --model and at least 2 ranks (mpirun -np N)\n");
            usage(stderr);
        }
        rc = 2;
    }
    if (rc == 0)
        rc = share_secret(rank);
    /* Collective: the ranks on this host, less rank 0 when it is one of them, share it. */
    int local = rc == 0 ? dst_mpi_local_size() : 1;
    int share = local > 1 ? local - 1 : 1;
    if (rc == 0 && rank == 0) {
        dsi_log_set_tag("rank0");
        /* All ranks on this host: loopback. Else every interface, and the node ranks connect to
         * this host's name. */
        char host[256] = "127.0.0.1";
        cli_mpi_t mpi = {size - 1, "127.0.0.1:0", host};
        if (local < size) {
            mpi.listen = "0.0.0.0:0";
            if (gethostname(host, sizeof(host)) != 0)
                snprintf(host, sizeof(host), "localhost");
            host[sizeof(host) - 1] = '\0';
            DSI_INFO("ranks on several hosts: the nodes reach the coordinator at %s", host);
        }
        rc = dsi_settings_given(&s, DSI_S_LISTEN) ? serve(&s, &mpi) : cli_run(&s, &mpi);
        if (rc != 0) {
            /* The node ranks may wait for the coordinator's address: end the whole job. */
            dsi_settings_cleanup(&s);
            dst_mpi_abort(rc);
        }
    } else if (rc == 0) {
        rc = node(&s, rank, share);
    }
    dsi_settings_cleanup(&s);
    dst_mpi_finalize();
    return rc;
}
