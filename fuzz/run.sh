#!/usr/bin/env bash
# Runs one libFuzzer harness for a bounded time on its seed corpus, then prints one summary line:
#   <harness>: <executions> execs in <s> s (<rate>/s), corpus <n> inputs, <crashes> crashes
# Usage: fuzz/run.sh HARNESS_BINARY SECONDS [more libFuzzer flags]
# New interesting inputs go to <build>/fuzz/corpus/<harness>/ (the committed seeds in
# fuzz/corpus/<harness>/ are only read); a crashing input is saved in <build>/fuzz/artifacts/ and
# its path printed. The library's own log lines are discarded (-close_fd_mask=2); libFuzzer's and
# the sanitizers' reports are kept in <build>/fuzz/logs/<harness>.log. Exit status: libFuzzer's
# (0 when nothing was found, 77 when the harness's fixtures are missing, 1 otherwise).
set -uo pipefail
bin=$1
secs=$2
shift 2
name=$(basename "$bin")
src=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=$(cd "$(dirname "$bin")" && pwd)
work=$out/corpus/$name
art=$out/artifacts
logs=$out/logs
mkdir -p "$work" "$art" "$logs" "$src/corpus/$name"
log=$logs/$name.log
# libFuzzer's own exit codes (77 for a crash) would read as "skipped" to ctest: 1 for anything
# found; 77 only comes from a harness whose fixtures are missing.
args=(-max_total_time="$secs" -timeout=30 -rss_limit_mb=2048 -close_fd_mask=2
  -error_exitcode=1 -timeout_exitcode=1 -print_final_stats=1 -artifact_prefix="$art/$name-")
[ -f "$src/dict/$name.dict" ] && args+=(-dict="$src/dict/$name.dict")

export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
start=$(date +%s.%N)
"$bin" "${args[@]}" "$@" "$work" "$src/corpus/$name" >"$log" 2>&1
rc=$?
end=$(date +%s.%N)

if [ $rc -eq 77 ]; then
  echo "$name: skipped ($(grep -m1 'cannot load' "$log"))"
  exit 77
fi

execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
[ -n "$execs" ] || execs=$(grep -o '#[0-9]*' "$log" | tail -1 | tr -d '#')
[ -n "$execs" ] || execs=0
elapsed=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.0f", b - a }')
rate=$(awk -v n="$execs" -v a="$start" -v b="$end" 'BEGIN { printf "%.0f", n / (b - a) }')
inputs=$(find "$work" "$src/corpus/$name" -type f | wc -l)
crashes=0
[ $rc -ne 0 ] && crashes=1
printf '%s: %s execs in %s s (%s/s), corpus %s inputs, %s crashes\n' "$name" "$execs" "$elapsed" \
  "$rate" "$inputs" "$crashes"
if [ $rc -ne 0 ]; then
  echo "---- $name failed (rc $rc); the end of $log:"
  tail -n 60 "$log"
  grep -o "Test unit written to .*" "$log" | sed "s/^/---- /"
fi
exit $rc
