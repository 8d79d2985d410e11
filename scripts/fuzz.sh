#!/usr/bin/env bash
# Builds the libFuzzer harnesses of fuzz/ (clang-14, ASan+UBSan, in out/fuzz/) and runs each one
# for SECONDS (default 60) on its seed corpus and dictionary, one after the other, then prints the
# executions and crashes of every harness. docs/FUZZING.md says what each covers.
# Usage: scripts/fuzz.sh [SECONDS] [HARNESS...]     e.g. scripts/fuzz.sh 300 fuzz_http fuzz_api
# Environment: CC (default clang-14), JOBS (build parallelism, default nproc), DSINFER_FIXTURES.
# New corpus inputs accumulate in out/fuzz/fuzz/corpus/<harness>/, crashing inputs are saved in
# out/fuzz/fuzz/artifacts/ (reproduce one with out/fuzz/fuzz/<harness> <file>), logs in
# out/fuzz/fuzz/logs/. Exit status 1 if any harness found something.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-60}
[ $# -gt 0 ] && shift
FIXTURES=${DSINFER_FIXTURES:-$(cd .. && pwd)/shared/fixtures}
export DSINFER_FIXTURES=$FIXTURES

cmake -S . -B out/fuzz -DDSINFER_FUZZ=ON -DCMAKE_C_COMPILER="${CC:-clang-14}" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDSINFER_FIXTURES="$FIXTURES" >/dev/null
cmake --build out/fuzz -j"${JOBS:-$(nproc)}" --target fuzzers >/dev/null

if [ $# -gt 0 ]; then
  harnesses=("$@")
else
  harnesses=()
  for f in fuzz/fuzz_*.c; do
    h=$(basename "$f" .c)
    [ "$h" = fuzz_seeds ] || harnesses+=("$h")
  done
fi

summary=()
failed=0
for h in "${harnesses[@]}"; do
  rc=0
  line=$(bash fuzz/run.sh "out/fuzz/fuzz/$h" "$SECONDS_EACH") || rc=$?
  summary+=("$(head -1 <<<"$line")")
  if [ $rc -ne 0 ] && [ $rc -ne 77 ]; then
    failed=1
    echo "$line" | tail -n +2 >&2
  fi
  echo "${summary[-1]}"
done
echo "---- $(date -u +%Y-%m-%dT%H:%MZ), ${SECONDS_EACH} s each, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(nproc) CPUs"
printf '%s\n' "${summary[@]}"
exit $failed
