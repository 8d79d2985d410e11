/*
 * dst_mpi.h - the MPI bootstrap of a static cluster: under `mpirun -np N`, rank 0 is the
 * coordinator and ranks 1..N-1 are node daemons; every rank learns every other rank's UCX worker
 * address through MPI_Allgather (lengths) + MPI_Allgatherv (bytes).
 *
 * MPI is used only at start-up and for the final barrier; the data plane is UCX. Calls are from
 * the main thread only. MPI errors are
 * returned (MPI_ERRORS_RETURN), logged once here, never fatal.
 *
 * Open MPI as root on few cores needs `--allow-run-as-root --oversubscribe` (ENVIRONMENT.md).
 */
#ifndef DST_MPI_H
#define DST_MPI_H

#include <stddef.h>
#include <stdint.h>

#include "dsi_status.h"

/* Largest worker address accepted from a rank (UCX 1.13 addresses are a few hundred bytes). */
#define DST_MPI_MAX_ADDRESS 65536u

/* Every rank's address, gathered. Owned by the caller: dst_mpi_addrs_free(). */
typedef struct {
    int size;        /* ranks */
    size_t *lens;    /* [size] bytes of each rank's address */
    size_t *offsets; /* [size] offset of each rank's address in bytes */
    uint8_t *bytes;  /* all addresses, concatenated in rank order */
} dst_mpi_addrs_t;

/* True when this process was started by mpirun (Open MPI, or a PMI/PMIx launcher). */
int dst_mpi_launched(void);

/*
 * MPI_Init (a lone process becomes a singleton of size 1), errors set to return. Sets *rank and
 * *size on success.
 */
dsi_status_t dst_mpi_init(int *argc, char ***argv, int *rank, int *size);

/*
 * Collective: every rank contributes its address (len bytes, 1..DST_MPI_MAX_ADDRESS) and gets
 * all of them in *out (allocated, caller frees with dst_mpi_addrs_free). Lengths announced by
 * other ranks are checked against the bound before anything is allocated.
 */
dsi_status_t dst_mpi_allgather_addresses(const void *addr, size_t len, dst_mpi_addrs_t **out);

/* Rank r's address within a table (r < size), its length in *len. */
const void *dst_mpi_addr(const dst_mpi_addrs_t *addrs, int rank, size_t *len);

void dst_mpi_addrs_free(dst_mpi_addrs_t *addrs);

/*
 * A barrier that keeps the caller's event loop (and so UCX) progressing while it waits:
 * MPI_Ibarrier, then progress(arg) and MPI_Test until done. Blocking in MPI_Barrier instead would
 * hang UCX endpoint flushes of peers waiting for us. progress may be NULL.
 */
dsi_status_t dst_mpi_barrier(void (*progress)(void *arg), void *arg);

/* Collective MPI_Bcast of len bytes from `root` (every rank passes the same len). */
dsi_status_t dst_mpi_bcast(void *buf, size_t len, int root);

/* Ranks of the job on this host (MPI_Comm_split_type SHARED), 1 when that fails. */
int dst_mpi_local_size(void);

/* MPI_Abort of the whole job with `code` (a rank that cannot take part any more). */
void dst_mpi_abort(int code);

/* MPI_Finalize. */
void dst_mpi_finalize(void);

#endif
