#!/bin/bash
# The MPI bootstrap under mpirun: 3 ranks gather UCX addresses and ping each other, over shared
# memory (UCX's default) and over tcp on loopback.
set -u
bin="${DSINFER_BUILD:?}/tests/test_unit_ucx_mpi_rank"
command -v mpirun >/dev/null || { echo "SKIPPED: no mpirun"; exit 77; }
[ -x "$bin" ] || { echo "missing $bin"; exit 1; }
# Open MPI and hwloc leak at MPI_Finalize; under ASan that would fail every rank. Our own code's
# leaks are checked by test_unit_ucx, which has no MPI.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
# MPI's own traffic stays in shared memory; UCX's tcp stays on loopback.
mpi=(mpirun -np 3 --oversubscribe --allow-run-as-root --mca btl self,vader
     -x UCX_WARN_UNUSED_ENV_VARS=n -x UCX_NET_DEVICES=lo -x ASAN_OPTIONS)
echo "--- default transports (shared memory)"
timeout 120 "${mpi[@]}" "$bin" || exit 1
echo "--- UCX_TLS=tcp"
timeout 120 "${mpi[@]}" -x UCX_TLS=tcp "$bin" || exit 1
echo "ok"
