#!/usr/bin/env bash
# Speculative decoding with the MTP layer's routed experts spread over the last stage's nodes
# (docs/SPECULATIVE.md): on the tiny-v3-mtp fixture (32 routed experts) each node of the last
# stage loads only its share of the layer's experts (16 of 32 on two nodes) and the module's MoE
# step sends the other pairs to their holders over DISPATCH, as a main MoE layer does. Greedy
# generation with K = 1 and 2 equals the reference tokens (pN.gen.tokens) on a plan of one stage
# of two nodes and on two stages of two nodes, one request at a time (dsinfer run --local-nodes)
# and three at once (dsinfer-coordinator + dsinfer-node), where both nodes of the last stage
# draft at the same time and serve each other's DISPATCHes while they wait. `dsinfer plan`
# shows the spread; one node still loads every expert of the layer.
set -uo pipefail
. "$(dirname "$0")/fixture.bash" # need_fixture, ok, bad
need_fixture tiny-v3-mtp
FIX=$FIXDIR/tiny-v3-mtp
TMP=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done; rm -rf "$TMP"; }
trap cleanup EXIT
. "$(dirname "$0")/spec_ref.bash" # ref, same
export UCX_WARN_UNUSED_ENV_VARS=n

SPREAD="16 of its 32 routed experts here, the others on the stage's other nodes"

# run NODES STAGES K PROMPT: dsinfer run on local nodes, --json on stdout, the log in $TMP/log
run() {
  timeout 120 dsinfer run --model "$FIX" --local-nodes "$1" --stages "$2" \
    --speculative-tokens "$3" --prompt-ids "$4" --max-tokens 12 --threads 1 --mem 1G \
    --json 2>"$TMP/log"
}

for conf in "2 1" "4 2"; do
  read -r nodes stages <<<"$conf"
  for p in 0 1 2; do
    PROMPT=$(ref "$FIX" p$p.tokens); WANT=$(ref "$FIX" p$p.gen.tokens)
    for k in 1 2; do
      what="$nodes nodes, $stages stage(s), p$p K=$k"
      out=$(DSINFER_LOG=debug run "$nodes" "$stages" "$k" "$PROMPT") || { bad "$what: run failed"; tail -20 "$TMP/log"; continue; }
      same "$out" "$WANT" && ok || bad "$what: tokens"
      # Both nodes of the last stage hold half of the layer's experts.
      [ "$(grep -c "MTP layer loaded, $k draft token.* per step; $SPREAD" "$TMP/log")" = 2 ] && ok ||
        { bad "$what: the last stage's nodes do not each hold half of the MTP experts"; grep "MTP" "$TMP/log"; }
      # The module's MoE steps wait for experts of the other node (DISPATCH, COMBINE).
      grep -q "MTP layer: [0-9]* tokens wait for the experts of 1 other node" "$TMP/log" && ok ||
        bad "$what: the MTP layer sent nothing to the other node's experts"
      grep -q "does not fit this node's slice\|is not held here\|did not come" "$TMP/log" &&
        { bad "$what: dispatch errors"; grep "DISPATCH\|MTP" "$TMP/log" | head; } || ok
    done
  done
done

# One node keeps the whole layer.
PROMPT=$(ref "$FIX" p0.tokens); WANT=$(ref "$FIX" p0.gen.tokens)
out=$(run 1 1 2 "$PROMPT") || { bad "one node: run failed"; tail -20 "$TMP/log"; }
same "$out" "$WANT" && ok || bad "one node: tokens"
grep -q "MTP layer loaded, 2 draft tokens per step; 32 of its 32 routed experts here$" "$TMP/log" && ok ||
  { bad "one node: not every MTP expert loaded"; grep "MTP" "$TMP/log"; }

# Three requests at once: both lanes' last-stage nodes draft together. In the third setup the
# second node runs without speculation (--speculative-tokens 0): it still loads its share of the
# layer's experts and serves them to the first, which drafts.
export DSINFER_SECRET=spec-ep-secret-0123456789abcdef
for conf in "2 1 2 2" "4 2 1 1" "2 1 2 0"; do
  read -r nodes stages k k_last <<<"$conf"
  PORT=$(python3 "$(dirname "$0")/free_ports.py")
  ADDR=127.0.0.1:$PORT
  cl=()
  dsinfer-coordinator --nodes "$nodes" --stages "$stages" --model "$FIX" --control "$ADDR" \
    --speculative-tokens "$k" 2>"$TMP/coord.log" &
  cl+=($!); pids+=($!)
  for i in $(seq "$nodes"); do
    ki=$k; [ "$i" = "$nodes" ] && ki=$k_last
    dsinfer-node --coordinator "$ADDR" --model "$FIX" --name "n$i" --threads 1 --mem 3G \
      --speculative-tokens "$ki" 2>"$TMP/node$i.log" &
    cl+=($!); pids+=($!)
  done
  batched "$nodes nodes K=$k" "$FIX" "$ADDR"
  if [ "$k_last" = 0 ]; then
    grep -q "$SPREAD" "$TMP/node1.log" && ok || { bad "mixed: node 1 does not hold half"; grep -h MTP "$TMP"/node*.log; }
    grep -q "but the plan gives it 16 of the MTP layer's routed experts: loaded to serve" "$TMP/node2.log" && ok ||
      { bad "mixed: node 2 does not serve its MTP experts"; grep -h MTP "$TMP"/node*.log; }
  else
    [ "$(cat "$TMP"/node*.log | grep -c "$SPREAD")" = 2 ] && ok ||
      { bad "$nodes nodes K=$k batched: MTP experts not spread"; grep -h "MTP" "$TMP"/node*.log; }
  fi
  for p in "${cl[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${cl[@]}"; do wait "$p" 2>/dev/null; done
  rm -f "$TMP"/node*.log
done
unset DSINFER_SECRET

# dsinfer plan: the last stage's nodes each carry the layer's non-expert part and half of its
# experts, the first stage none of it.
dsinfer plan --model "$FIX" --nodes 4 --stages 2 --mem 64M --max-context 1024 --overhead 1M \
  --speculative-tokens 1 --json >"$TMP/plan.json" 2>"$TMP/log" || { bad "plan failed"; cat "$TMP/log"; }
python3 - "$TMP/plan.json" <<'PY' && ok || bad "plan: MTP experts not spread"
import json, sys
p = json.load(open(sys.argv[1]))
m = p['mtp']
assert m['placed'] and m['experts_spread'], m
per_expert = m['experts'] // 32
last = [n for n in p['nodes'] if n['stage'] == 1]
assert len(last) == 2 and all(n['mtp_experts'] == 16 for n in last), last
for n in last:
    assert n['mtp'] == m['per_node'] - m['experts'] + 16 * per_expert, (n, m)
assert all(n['mtp'] == 0 and n['mtp_experts'] == 0 for n in p['nodes'] if n['stage'] == 0), p['nodes']
PY

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
