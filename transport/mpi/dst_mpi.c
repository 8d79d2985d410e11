/* dst_mpi.c - MPI start-up and the allgather of UCX worker addresses. */
#include "dst_mpi.h"

#include <limits.h>
#include <mpi.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsi_log.h"

static void log_mpi_error(const char *what, int rc)
{
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS)
        snprintf(text, sizeof(text), "MPI error %d", rc);
    DSI_ERROR("%s: %s", what, text);
}

/* The launcher's own variables (not dsinfer's, so not through dsi_env). */
int dst_mpi_launched(void)
{
    return getenv("OMPI_COMM_WORLD_SIZE") != NULL || getenv("PMIX_RANK") != NULL ||
           getenv("PMI_RANK") != NULL;
}

dsi_status_t dst_mpi_init(int *argc, char ***argv, int *rank, int *size)
{
    int rc = MPI_Init(argc, argv);
    if (rc != MPI_SUCCESS) {
        log_mpi_error("MPI_Init", rc);
        return DSI_ERR_INTERNAL;
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    int r, s;
    if ((rc = MPI_Comm_rank(MPI_COMM_WORLD, &r)) != MPI_SUCCESS ||
        (rc = MPI_Comm_size(MPI_COMM_WORLD, &s)) != MPI_SUCCESS) {
        log_mpi_error("MPI_Comm_rank/size", rc);
        return DSI_ERR_INTERNAL;
    }
    *rank = r;
    *size = s;
    return DSI_OK;
}

void dst_mpi_addrs_free(dst_mpi_addrs_t *addrs)
{
    if (addrs == NULL)
        return;
    free(addrs->lens);
    free(addrs->offsets);
    free(addrs->bytes);
    free(addrs);
}

/* The lengths every rank announced; each within bounds, and their sum fits an int for MPI. */
static dsi_status_t gather_lens(size_t len, int size, size_t *lens, size_t *total)
{
    uint64_t mine = len;
    uint64_t *all = malloc((size_t)size * sizeof(*all));
    if (all == NULL)
        return DSI_ERR_NOMEM;
    int rc = MPI_Allgather(&mine, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) {
        log_mpi_error("MPI_Allgather of address lengths", rc);
        free(all);
        return DSI_ERR_PEER;
    }
    uint64_t sum = 0;
    for (int r = 0; r < size; r++) {
        if (all[r] == 0 || all[r] > DST_MPI_MAX_ADDRESS) {
            DSI_ERROR("MPI bootstrap: rank %d announced a UCX address of %llu bytes", r,
                      (unsigned long long)all[r]);
            free(all);
            return DSI_ERR_PROTOCOL;
        }
        lens[r] = all[r];
        sum += all[r];
    }
    free(all);
    if (sum > INT_MAX) {
        DSI_ERROR("MPI bootstrap: %llu bytes of addresses is too many", (unsigned long long)sum);
        return DSI_ERR_TOO_LARGE;
    }
    *total = sum;
    return DSI_OK;
}

static dsi_status_t gather_bytes(const void *addr, size_t len, dst_mpi_addrs_t *t)
{
    int *counts = malloc((size_t)t->size * sizeof(int));
    int *displs = malloc((size_t)t->size * sizeof(int));
    dsi_status_t st = DSI_ERR_NOMEM;
    if (counts == NULL || displs == NULL)
        goto out;
    for (int r = 0; r < t->size; r++) {
        counts[r] = (int)t->lens[r];
        displs[r] = (int)t->offsets[r];
    }
    int rc = MPI_Allgatherv(addr, (int)len, MPI_BYTE, t->bytes, counts, displs, MPI_BYTE,
                            MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) {
        log_mpi_error("MPI_Allgatherv of addresses", rc);
        st = DSI_ERR_PEER;
        goto out;
    }
    st = DSI_OK;
out:
    free(counts);
    free(displs);
    return st;
}

dsi_status_t dst_mpi_allgather_addresses(const void *addr, size_t len, dst_mpi_addrs_t **out)
{
    if (addr == NULL || len == 0 || len > DST_MPI_MAX_ADDRESS) {
        DSI_ERROR("MPI bootstrap: own address of %zu bytes", len);
        return DSI_ERR_INVALID_ARG;
    }
    int size;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    dst_mpi_addrs_t *t = calloc(1, sizeof(*t));
    dsi_status_t st = DSI_ERR_NOMEM;
    if (t == NULL)
        return st;
    t->size = size;
    t->lens = calloc((size_t)size, sizeof(*t->lens));
    t->offsets = calloc((size_t)size, sizeof(*t->offsets));
    if (t->lens == NULL || t->offsets == NULL)
        goto err;
    size_t total;
    st = gather_lens(len, size, t->lens, &total);
    if (st != DSI_OK)
        goto err;
    for (int r = 1; r < size; r++)
        t->offsets[r] = t->offsets[r - 1] + t->lens[r - 1];
    st = DSI_ERR_NOMEM;
    t->bytes = malloc(total);
    if (t->bytes == NULL)
        goto err;
    st = gather_bytes(addr, len, t);
    if (st != DSI_OK)
        goto err;
    *out = t;
    return DSI_OK;
err:
    dst_mpi_addrs_free(t);
    return st;
}

const void *dst_mpi_addr(const dst_mpi_addrs_t *addrs, int rank, size_t *len)
{
    *len = addrs->lens[rank];
    return addrs->bytes + addrs->offsets[rank];
}

dsi_status_t dst_mpi_barrier(void (*progress)(void *arg), void *arg)
{
    MPI_Request req;
    int rc = MPI_Ibarrier(MPI_COMM_WORLD, &req);
    if (rc != MPI_SUCCESS) {
        log_mpi_error("MPI_Ibarrier", rc);
        return DSI_ERR_PEER;
    }
    for (;;) {
        int done = 0;
        rc = MPI_Test(&req, &done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) {
            log_mpi_error("MPI_Test of the barrier", rc);
            return DSI_ERR_PEER;
        }
        if (done)
            return DSI_OK;
        if (progress != NULL)
            progress(arg);
        sched_yield(); /* other ranks may share our cores */
    }
}

void dst_mpi_finalize(void)
{
    MPI_Finalize();
}

dsi_status_t dst_mpi_bcast(void *buf, size_t len, int root)
{
    if (len > INT_MAX)
        return DSI_ERR_INVALID_ARG;
    int rc = MPI_Bcast(buf, (int)len, MPI_BYTE, root, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) {
        log_mpi_error("MPI_Bcast", rc);
        return DSI_ERR_PEER;
    }
    return DSI_OK;
}

int dst_mpi_local_size(void)
{
    MPI_Comm local;
    int n = 1;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local) !=
        MPI_SUCCESS)
        return 1;
    if (MPI_Comm_size(local, &n) != MPI_SUCCESS)
        n = 1;
    MPI_Comm_free(&local);
    return n;
}

void dst_mpi_abort(int code)
{
    MPI_Abort(MPI_COMM_WORLD, code);
}
