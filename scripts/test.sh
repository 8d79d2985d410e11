#!/usr/bin/env bash
# Runs every test: the full suite on the normal build, then all of it again under ASan+UBSan (but
# the mpirun tests: Open MPI itself leaks at MPI_Finalize), the threaded tests under TSan, and every
# libFuzzer harness for a few seconds (clang, ASan+UBSan; docs/FUZZING.md).
# Usage: scripts/test.sh [--quick]
#   --quick: the normal build's suite only.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=$(nproc)
FIXTURES=${DSINFER_FIXTURES:-$(cd .. && pwd)/shared/fixtures}

build() { # dir, extra cmake args...
  local dir=$1; shift
  cmake -S . -B "$dir" -DDSINFER_FIXTURES="$FIXTURES" "$@" >/dev/null
  cmake --build "$dir" -j"$JOBS" >/dev/null
}

build build
ctest --test-dir build --output-on-failure -j2 --timeout 900
[ "${1:-}" = "--quick" ] && exit 0

# -O1, as the sanitizers' own documentation advises: the -O0 of a plain Debug build made the
# kernel and benchmark tests up to 15x slower than in the normal build (CI time).
build build-asan -DDSINFER_ASAN=ON -DCMAKE_BUILD_TYPE=Debug "-DCMAKE_C_FLAGS_DEBUG=-g -O1"
UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j2 --timeout 900 \
    -L 'unit|kernel|fixture|cli|cluster|fault' -E 'cluster_mpi|cluster_serve_mpi'

build build-tsan -DDSINFER_TSAN=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo
# UCX's memory hooks crash under TSan when a thread exits (libucm, not our code): turn them off.
UCX_MEM_EVENTS=no UCX_MEM_MMAP_HOOK_MODE=none TSAN_OPTIONS=halt_on_error=1 \
  ctest --test-dir build-tsan --output-on-failure -j2 --timeout 900 -R 'pool|par_matmul|fixture_engine|metrics|http|api|tokenizer|cluster_tiny|cluster_rogue|fault_cluster|fault_eplb'

# The fuzz build is the libraries and the harnesses only; each harness runs DSINFER_FUZZ_SECONDS
# (10) on its seed corpus, and a crash, sanitizer report, leak or hang fails the suite.
cmake -S . -B out/fuzz -DDSINFER_FIXTURES="$FIXTURES" -DDSINFER_FUZZ=ON \
  -DCMAKE_C_COMPILER=clang-14 -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build out/fuzz -j"$JOBS" --target fuzzers >/dev/null
ctest --test-dir out/fuzz --output-on-failure -j"$JOBS" --timeout 300 -L fuzz
