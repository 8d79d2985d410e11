#!/usr/bin/env bash
# `dsinfer cluster` against a dsinfer-coordinator with three dsinfer-node processes: status JSON
# parses and describes the cluster; rebalance is refused before any load was counted and works
# after a client's requests; drain removes a node (which exits) while the others keep serving;
# a wrong secret, an unknown node and bad usage are refused; no process is left.
set -uo pipefail
FIX=${DSINFER_FIXTURES:-../shared/fixtures}/tiny-v3
if [ ! -d "$FIX" ]; then
  [ "${CI:-}" = true ] && { echo "ERROR: fixture $FIX missing under CI"; exit 1; }
  echo "*** SKIPPED: fixture $FIX missing ***"; exit 77
fi
TMP=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done; rm -rf "$TMP"; }
trap cleanup EXIT
pass=0; fail=0
ok() { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL: $*"; }

export DSINFER_SECRET=cluster-cli-test-secret-0123456789
export DSINFER_LOAD_WINDOW_MS=100
export UCX_WARN_UNUSED_ENV_VARS=n

dsinfer-coordinator --nodes 3 --stages 1 --kv-tokens 4096 --model "$FIX" --control 127.0.0.1:0 \
  --port-file "$TMP/port" --load-window-ms 100 2>"$TMP/coord.log" &
COORD=$!
pids+=($COORD)
for _ in $(seq 100); do [ -s "$TMP/port" ] && break; sleep 0.05; done
ADDR=127.0.0.1:$(cat "$TMP/port")
NODES=()
for i in 0 1 2; do
  dsinfer-node --coordinator "$ADDR" --model "$FIX" --name "n$i" --threads 1 2>"$TMP/node$i.log" &
  NODES+=($!)
  pids+=($!)
done

status() { timeout 20 dsinfer cluster status --coordinator "$ADDR" --json 2>>"$TMP/cli.log"; }
# jq expression over the status JSON, retried until it holds (the cluster changes by itself).
wait_for() {
  for _ in $(seq 100); do
    status >"$TMP/status.json" && jq -e "$1" "$TMP/status.json" >/dev/null && return 0
    sleep 0.1
  done
  return 1
}

wait_for '.serving and (.nodes | length) == 3' && ok || bad "cluster not serving: $(cat "$TMP/status.json")"
jq -e '.epoch == 1 and (.stages | length) == 1 and ([.nodes[].state] | all(. == "ready"))
       and ([.nodes[].experts] | add) == 96 and .load.imbalance == null
       and .bias.available and .bias.gamma == 0 and (.load.layers | length) == 3' \
  "$TMP/status.json" >/dev/null && ok || bad "status JSON: $(cat "$TMP/status.json")"
# The human form prints the table.
timeout 20 dsinfer cluster status --coordinator "$ADDR" >"$TMP/status.txt" 2>>"$TMP/cli.log"
grep -q "^epoch 1, serving" "$TMP/status.txt" && grep -q "n2" "$TMP/status.txt" && ok ||
  bad "status table: $(cat "$TMP/status.txt")"

# Nothing counted yet: rebalance is refused.
timeout 20 dsinfer cluster rebalance --coordinator "$ADDR" 2>"$TMP/rb0.log"
rc=$?
[ $rc -eq 1 ] && grep -q "no expert load" "$TMP/rb0.log" && ok || bad "early rebalance rc=$rc: $(cat "$TMP/rb0.log")"

# Load from a client, then the figure exists and rebalance works.
for i in 1 2 3; do
  timeout 60 dsinfer run --coordinator "$ADDR" --prompt-ids "$((i * 7)),$((i * 11)),5,9" \
    --max-tokens 12 >/dev/null 2>>"$TMP/client.log" || bad "client request $i failed"
done
wait_for '.load.pairs > 0 and .load.imbalance >= 1' && ok || bad "no load counted: $(cat "$TMP/status.json")"
# Cache-aware routing over the three lanes: the same 140-token prompt three times goes to the
# lane that holds its first two blocks, whose node finds them cached (2 x 128 tokens); the nodes'
# counters reach the status (prompt tokens: the 3 x 4 above and these).
LONG=$(seq 11 150 | paste -sd, -)
for i in 1 2 3; do
  timeout 60 dsinfer run --coordinator "$ADDR" --prompt-ids "$LONG" --max-tokens 2 >/dev/null \
    2>>"$TMP/client.log" || bad "long request $i failed"
done
wait_for '.prefix_prompt_tokens == 432 and .prefix_hit_tokens == 256' && ok ||
  bad "prefix cache counters / routing: $(jq -c '{prefix_prompt_tokens, prefix_hit_tokens}' "$TMP/status.json")"
wait_for '([.nodes[].kv_blocks_cached] | add) >= 2 and ([.nodes[].kv_blocks_used] | add) == 0' && ok ||
  bad "no cached blocks in the status: $(jq -c '[.nodes[] | {kv_blocks_used, kv_blocks_cached}]' "$TMP/status.json")"
timeout 20 dsinfer cluster status --coordinator "$ADDR" >"$TMP/status.txt" 2>>"$TMP/cli.log"
grep -q "KV blocks used / cached / free" "$TMP/status.txt" &&
  grep -q "^prefix cache: 256 of 432 prompt tokens found cached" "$TMP/status.txt" && ok ||
  bad "status table (prefix cache): $(cat "$TMP/status.txt")"
timeout 20 dsinfer cluster rebalance --coordinator "$ADDR" --json >"$TMP/rb.json" 2>"$TMP/rb.log"
rc=$?
[ $rc -eq 0 ] && jq -e '.epoch == 2 and .imbalance_after <= .imbalance_before and .replicas_per_layer == 4' \
  "$TMP/rb.json" >/dev/null && ok || bad "rebalance rc=$rc: $(cat "$TMP/rb.json" "$TMP/rb.log")"
wait_for '.serving and .epoch == 2 and .rebalances == 1 and .replicas_per_layer == 4
          and ([.nodes[].experts] | add) == 108 and .live_switches == 1 and .switch == "none"' &&
  ok || bad "after rebalance: $(cat "$TMP/status.json")"
out=$(timeout 60 dsinfer run --coordinator "$ADDR" --prompt-ids 7,11,5,9 --max-tokens 12 2>>"$TMP/client.log")
[ -n "$out" ] && ok || bad "no tokens after the rebalance"

# Drain node 2 (ids follow the order of registration: find its process by name).
NAME=$(jq -r '.nodes[] | select(.id == 2) | .name' "$TMP/status.json")
DRAINED=${NODES[${NAME#n}]}
timeout 20 dsinfer cluster drain 2 --coordinator "$ADDR" >"$TMP/drain.txt" 2>"$TMP/drain.log"
rc=$?
[ $rc -eq 0 ] && grep -q "node 2 '$NAME' drains" "$TMP/drain.txt" && ok || bad "drain rc=$rc: $(cat "$TMP/drain.txt" "$TMP/drain.log")"
wait_for '.serving and .epoch == 3 and (.stages[0].nodes | length) == 2 and .live_switches == 2
          and ([.nodes[] | select(.id == 2)][0].state == "drained")' && ok || bad "after drain: $(cat "$TMP/status.json")"
for _ in $(seq 100); do kill -0 "$DRAINED" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$DRAINED" 2>/dev/null; then bad "drained node still running"; else
  wait "$DRAINED"; rc=$?; [ $rc -eq 0 ] && ok || bad "drained node exited $rc"; fi
out2=$(timeout 60 dsinfer run --coordinator "$ADDR" --prompt-ids 7,11,5,9 --max-tokens 12 2>>"$TMP/client.log")
[ "$out2" = "$out" ] && ok || bad "after the drain: '$out2' != '$out'"

# Refusals: an unknown node, a wrong secret (logged by the coordinator), bad usage.
timeout 20 dsinfer cluster drain 42 --coordinator "$ADDR" 2>"$TMP/d42.log"
rc=$?
[ $rc -eq 1 ] && grep -q "no node has that id" "$TMP/d42.log" && ok || bad "drain 42 rc=$rc: $(cat "$TMP/d42.log")"
timeout 20 dsinfer cluster drain 2 --coordinator "$ADDR" 2>"$TMP/d2.log"
rc=$?
[ $rc -eq 1 ] && grep -q "node 2 '$NAME' is drained already" "$TMP/d2.log" && ok ||
  bad "drain 2 twice rc=$rc: $(cat "$TMP/d2.log")"
timeout 20 dsinfer cluster status --coordinator "$ADDR" >"$TMP/table.txt" 2>&1
grep -Eq "^2 +$NAME +drained " "$TMP/table.txt" && ok || bad "status table after the drain: $(cat "$TMP/table.txt")"
DSINFER_SECRET=wrong-secret-0123456789abcdef timeout 20 dsinfer cluster status \
  --coordinator "$ADDR" >"$TMP/intruder.out" 2>"$TMP/intruder.log"
rc=$?
[ $rc -eq 1 ] && [ ! -s "$TMP/intruder.out" ] && grep -q "authentication failed" "$TMP/intruder.log" && ok ||
  bad "wrong secret rc=$rc: $(cat "$TMP/intruder.log")"
grep -q "ADMIN status from .*authentication failed" "$TMP/coord.log" && ok || bad "coordinator did not log the refused ADMIN"
dsinfer cluster bogus --coordinator "$ADDR" 2>/dev/null; [ $? -eq 2 ] && ok || bad "unknown command not a usage error"
dsinfer cluster status 2>/dev/null; [ $? -eq 2 ] && ok || bad "missing --coordinator not a usage error"
dsinfer cluster drain --coordinator "$ADDR" 2>/dev/null; [ $? -eq 2 ] && ok || bad "drain without NODE not a usage error"
dsinfer cluster drain x --coordinator "$ADDR" 2>/dev/null; [ $? -eq 2 ] && ok || bad "drain x not a usage error"
dsinfer-coordinator --nodes 1 --model "$FIX" --replan sometimes 2>"$TMP/replan.log"; rc=$?
[ $rc -eq 2 ] && grep -q "not one of restart, live" "$TMP/replan.log" && ok || bad "--replan sometimes rc=$rc"
timeout 20 dsinfer cluster status --coordinator 127.0.0.1:1 --timeout-ms 3000 2>/dev/null
[ $? -eq 1 ] && ok || bad "no coordinator: not an error"

# Still serving; SIGTERM ends everything.
wait_for '.serving' && ok || bad "not serving at the end"
kill -TERM "$COORD"
for p in "${pids[@]}"; do
  [ "$p" = "$DRAINED" ] && continue
  for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$p" 2>/dev/null; then bad "process $p still running"; else wait "$p"; rc=$?; [ $rc -eq 0 ] && ok || bad "process $p exited $rc"; fi
done
pids=()
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
