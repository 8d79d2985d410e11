#!/usr/bin/env bash
# `dsinfer bench kernels`: a short run (--quick, decode of fp8 and int8) and the cache-resident
# mode print one JSON object with the documented fields; bad options are usage errors. Timings are
# not asserted (shared machines), only that they were measured.
set -uo pipefail
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail=0
bad() { fail=1; echo "FAIL: $*"; }

check() { # what, jq filter, args...
  local what=$1 filter=$2; shift 2
  timeout 300 dsinfer bench kernels --json --threads 1 "$@" >"$TMP/out.json" 2>"$TMP/err.log" ||
    { bad "$what: exit $?: $(tail -3 "$TMP/err.log")"; return; }
  jq -e "$filter" "$TMP/out.json" >/dev/null || bad "$what: $(cat "$TMP/out.json")"
}
check "quick decode" '.memory_bw_gbs > 0 and (.kernels | length) == 12
  and ([.kernels[].name] | unique) == ["matmul_fp8", "matmul_int8"]
  and all(.kernels[]; .gbs > 0 and .paired_efficiency > 0)' \
  --quick --only decode --dtypes fp8,int8
# the roofline: f32 rows min(bandwidth, FMA rate x bytes per flop), int8-math rows the bandwidth;
# the tolerances allow for the printed rounding (gbs and roofline_gbs to 0.005, gflops to 0.05),
# which matters on a slow (sanitizer) build where the numbers are small
# int8 math: integer rows only, and at batch <= 4 wherever the activations are int8 (more tokens
# depend on the level: up to 64 at avx512vnni, any with AMX)
check "int8 math" '.act as $act | all(.kernels[]; if .name != "matmul_int8" then .int8_math == false
    elif .batch <= 4 then .int8_math == ($act == "int8") else true end)' \
  --quick --only decode --dtypes fp8,int8 --batches 1,16
check "roofline" '.memory_bw_gbs as $bw | .fma_gflops as $fma | all(.kernels[];
  (if .int8_math then $bw else ([$bw, $fma * .gbs / .gflops] | min) end)
    as $roof | (.roofline_gbs - $roof | fabs) <= 0.01 + $roof * (0.01 + 0.006 / .gbs + 0.06 / .gflops)
    and (.roofline_efficiency - .gbs / .roofline_gbs | fabs)
      <= 0.002 + .roofline_efficiency * (0.01 + 0.006 / .gbs + 0.006 / .roofline_gbs))' \
  --quick --only decode --dtypes fp8,int8
# the measured FMA rate: all threads in wall time, one thread in its CPU time; with --cpu-time
# the rows' fma_fraction is against the per-thread rate (gflops and the rates are printed to 0.05:
# on a sanitizer build, where both are a few GFLOPS, that rounding alone moves the ratio by 3%)
check "fma per thread" '.fma_thread_gflops as $fma | .fma_gflops > 0 and $fma > 0 and .cpu_time == true
  and all(.kernels[]; (.fma_fraction - .gflops / $fma | fabs)
    <= 0.002 + .fma_fraction * (0.01 + 0.06 / .gflops + 0.06 / $fma))' \
  --quick --only decode --dtypes bf16 --batches 16 --cpu-time
check "batches" '[.kernels[].batch] == [2, 8, 2, 8] and all(.kernels[]; .name == "matmul_bf16")' \
  --quick --only decode --dtypes bf16 --batches 2,8
check "resident" '(.kernels | length) == 3 and all(.kernels[]; .shape == "128x7168" and .gbs > 0)' \
  --quick --resident --dtypes bf16

dsinfer bench kernels --resident --only prefill 2>"$TMP/e1"; rc=$?
[ $rc -eq 2 ] && grep -q "decode only" "$TMP/e1" || bad "--resident --only prefill: rc $rc"
dsinfer bench kernels --batches 4,0 2>"$TMP/e3"; rc=$?
[ $rc -eq 2 ] && grep -q "outside" "$TMP/e3" || bad "--batches 4,0: rc $rc"
dsinfer bench kernels --only sometimes 2>"$TMP/e2"; rc=$?
[ $rc -eq 2 ] && grep -q "not one of decode, prefill" "$TMP/e2" || bad "--only sometimes: rc $rc"
exit $fail
