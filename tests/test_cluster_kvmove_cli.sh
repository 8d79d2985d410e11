#!/usr/bin/env bash
# A drain moves sequences with their KV cache, end to end with the programs: dsinfer-coordinator
# (--http) and three dsinfer-node processes on the tiny-v3 fixture. Three greedy completions of
# 600 tokens run undisturbed, then again as streams; when each stream has some tokens,
# `dsinfer cluster drain 1` drains a node. Every stream must give the undisturbed text, /metrics
# must count a sequence moved with its KV cache (and its bytes) and none prefilled again, the
# status must show one live switch, and the drained node must exit 0.
set -uo pipefail
FIX=${DSINFER_FIXTURES:-../shared/fixtures}/tiny-v3
if [ ! -d "$FIX" ]; then
  [ "${CI:-}" = true ] && { echo "ERROR: fixture $FIX missing under CI"; exit 1; }
  echo "*** SKIPPED: fixture $FIX missing ***"; exit 77
fi
command -v curl >/dev/null || { echo "SKIPPED: no curl"; exit 77; }
TMP=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done; rm -rf "$TMP"; }
trap cleanup EXIT
pass=0; fail=0
ok() { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL: $*"; }

export DSINFER_SECRET=kvmove-cli-test-secret-0123456789
export UCX_WARN_UNUSED_ENV_VARS=n

dsinfer-coordinator --nodes 3 --stages 1 --kv-tokens 4096 --model "$FIX" --control 127.0.0.1:0 \
  --port-file "$TMP/port" --http 127.0.0.1:0 2>"$TMP/coord.log" &
COORD=$!
pids+=($COORD)
for _ in $(seq 200); do
  grep -q "OpenAI API on" "$TMP/coord.log" && [ -s "$TMP/port" ] && break
  sleep 0.05
done
ADDR=127.0.0.1:$(cat "$TMP/port")
HPORT=$(grep -o 'OpenAI API on 127.0.0.1 port [0-9]*' "$TMP/coord.log" | grep -o '[0-9]*$')
[ -n "$HPORT" ] || { cat "$TMP/coord.log"; echo "FAIL: no API port"; exit 1; }
URL=http://127.0.0.1:$HPORT
NODES=()
for i in 0 1 2; do
  dsinfer-node --coordinator "$ADDR" --model "$FIX" --name "n$i" --threads 1 2>"$TMP/node$i.log" &
  NODES+=($!)
  pids+=($!)
done
for _ in $(seq 600); do
  [ "$(curl -sS -o /dev/null -w '%{http_code}' "$URL/health")" = 200 ] && break
  sleep 0.1
done

body() { # prompt, stream
  echo "{\"model\":\"tiny-v3\",\"prompt\":\"$1\",\"max_tokens\":600,\"temperature\":0,\"ignore_eos\":true,\"stream\":$2}"
}
PROMPTS=("Once upon a time" "The quick brown fox" "In a galaxy far away")
# Undisturbed: one lane each.
for i in 0 1 2; do
  curl -sS -d "$(body "${PROMPTS[$i]}" false)" "$URL/v1/completions" >"$TMP/want$i.json" &
done
wait_curls() { for j in $(jobs -p); do case " ${pids[*]} " in *" $j "*) ;; *) wait "$j";; esac; done; }
wait_curls
for i in 0 1 2; do
  jq -j '.choices[0].text' "$TMP/want$i.json" >"$TMP/want$i.txt" 2>/dev/null && [ -s "$TMP/want$i.txt" ] &&
    ok || bad "undisturbed request $i: $(cat "$TMP/want$i.json")"
done

# The same as streams; drain node 1 once every stream has sent 40 chunks.
for i in 0 1 2; do
  curl -sSN -d "$(body "${PROMPTS[$i]}" true)" "$URL/v1/completions" >"$TMP/got$i.sse" &
done
for _ in $(seq 600); do
  n=0
  for i in 0 1 2; do [ "$(grep -c '^data: {' "$TMP/got$i.sse" 2>/dev/null)" -ge 40 ] && n=$((n+1)); done
  [ $n -eq 3 ] && break
  sleep 0.02
done
timeout 20 dsinfer cluster drain 1 --coordinator "$ADDR" >"$TMP/drain.txt" 2>"$TMP/drain.log" &&
  ok || bad "drain: $(cat "$TMP/drain.txt" "$TMP/drain.log")"
wait_curls
for i in 0 1 2; do
  grep '^data: {' "$TMP/got$i.sse" | sed 's/^data: //' | jq -j '.choices[0].text' >"$TMP/got$i.txt"
  cmp -s "$TMP/got$i.txt" "$TMP/want$i.txt" && ok || bad "stream $i differs from the undisturbed run"
done

metric() { curl -sS "$URL/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
status() { timeout 20 dsinfer cluster status --coordinator "$ADDR" --json 2>>"$TMP/cli.log"; }
for _ in $(seq 100); do
  status >"$TMP/status.json" && jq -e '.live_switches == 1 and .switch == "none"' "$TMP/status.json" \
    >/dev/null && break
  sleep 0.1
done
jq -e '.live_switches == 1 and ([.nodes[] | select(.id == 1)][0].state == "drained")
       and .kv_moved_sequences >= 1 and .kv_moved_bytes > 0 and .reprefilled == 0' \
  "$TMP/status.json" >/dev/null && ok || bad "status after the drain: $(cat "$TMP/status.json")"
moved=$(metric dsinfer_cluster_kv_moved_sequences_total)
bytes=$(metric dsinfer_cluster_kv_moved_bytes_total)
again=$(metric dsinfer_cluster_reprefilled_sequences_total)
failed=$(metric dsinfer_cluster_kv_move_failures_total)
awk -v m="$moved" -v b="$bytes" -v a="$again" -v f="$failed" \
  'BEGIN { exit !(m >= 1 && b > 0 && a == 0 && f == 0) }' && ok ||
  bad "metrics: moved '$moved', bytes '$bytes', prefilled again '$again', failed moves '$failed'"
grep -q "moved to its new lane with its KV cache" "$TMP/coord.log" && ok || bad "no move in the log"

# The drained node exits 0; the rest stop with the coordinator.
DRAINED=
for i in 0 1 2; do grep -q "registered as node 1 " "$TMP/node$i.log" && DRAINED=${NODES[$i]}; done
if [ -n "$DRAINED" ]; then
  for _ in $(seq 100); do kill -0 "$DRAINED" 2>/dev/null || break; sleep 0.1; done
  wait "$DRAINED"; rc=$?
  [ $rc -eq 0 ] && ok || bad "drained node exited $rc"
else
  bad "no node registered as node 1"
fi
kill -TERM "$COORD"
for p in "${NODES[@]}"; do wait "$p" 2>/dev/null; done
wait "$COORD" 2>/dev/null
pids=()
echo "$pass passed, $fail failed (moved $moved sequences, $bytes bytes)"
[ $fail -eq 0 ]
