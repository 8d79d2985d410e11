#!/usr/bin/env bash
# `dsinfer bench overlap`: one JSON object with every work level measured, the slowdown the ratio
# it is documented to be; bad options are usage errors. Timings are not asserted (shared machines).
set -uo pipefail
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail=0
bad() { fail=1; echo "FAIL: $*"; }

timeout 300 dsinfer bench overlap --quick --threads 2 --json >"$TMP/out.json" 2>"$TMP/err.log" ||
  bad "run: exit $?: $(tail -3 "$TMP/err.log")"
# the printed rounding (3 decimals) bounds how far slowdown can be from stream / max(arith, memory)
jq -e '.threads == 2 and .rows == 6 and .row_bytes == 7168
  and ([.levels[].work] == [range(0; 13)])
  and (.levels[0].memory_ns == .levels[0].stream_ns)
  and all(.levels[]; .arith_ns > 0 and .memory_ns > 0 and .stream_ns > 0
    and ((.slowdown - .stream_ns / ([.arith_ns, .memory_ns] | max)) | fabs) <= 0.002 + .slowdown * 0.002)' \
  "$TMP/out.json" >/dev/null || bad "json: $(cat "$TMP/out.json")"

dsinfer bench overlap --threads 0 2>"$TMP/e1"; rc=$?
[ $rc -eq 2 ] || bad "--threads 0: rc $rc"
dsinfer bench overlap extra 2>"$TMP/e2"; rc=$?
[ $rc -eq 2 ] && grep -q "unexpected argument" "$TMP/e2" || bad "extra argument: rc $rc"
[ $fail -eq 0 ] && echo "bench overlap: ok"
exit $fail
