#!/bin/bash
# test_cluster_errors.sh - what an operator is told when the cluster cannot serve, on a real
# dsinfer-coordinator --http with dsinfer-node daemons (tiny-v3):
#  - before nodes join, /health is 503 "starting" and says how many nodes joined of how many;
#  - nodes whose --mem is too small for the model: /health is 503 plan_does_not_fit naming each
#    node and the memory it lacks (and missing_bytes), completions get 503 plan_does_not_fit, the
#    coordinator's log and `dsinfer cluster status` say the same;
#  - those nodes drained and two large ones started: serving, and the drained nodes show
#    "drained" (not "dead") in /health and `dsinfer cluster status`;
#  - a node name already taken is refused naming the name and the node holding it;
#  - every node lost: 503 "starting", saying that no node is left;
#  - `dsinfer run --coordinator` / `--local-nodes` with a token id outside the vocabulary name the
#    id and the vocabulary size;
#  - a node pointed at the HTTP port instead of the control port stops, saying so.
set -u
FX=${DSINFER_FIXTURES:?DSINFER_FIXTURES is not set}
MODEL=$FX/tiny-v3
for p in dsinfer dsinfer-coordinator dsinfer-node; do
    command -v $p >/dev/null || { echo "FAIL: $p is not on PATH"; exit 1; }
done
for p in curl jq; do command -v $p >/dev/null || { echo "SKIPPED: no $p"; exit 77; }; done
[ -f "$MODEL/config.json" ] || { echo "SKIPPED: no tiny-v3 fixture in $FX"; exit 77; }

TMP=$(mktemp -d)
PIDS=
cleanup() {
    for p in $PIDS; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT
FAILED=0
fail() { echo "FAIL: $*"; FAILED=1; }
export DSINFER_SECRET=5e7e5e7e5e7e5e7e5e7e5e7e5e7e5e7e

# health OUT: GET /health into OUT, prints the status code.
health() { curl -sS -o "$1" -w '%{http_code}' "$URL/health"; }
# wait_health JQ: until /health's body satisfies JQ (10 s).
wait_health() {
    for _ in $(seq 100); do
        health "$TMP/h.json" >/dev/null && jq -e "$1" "$TMP/h.json" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}
# start_node NAME ARGS...: a dsinfer-node in the background; its pid in NODE_PID.
start_node() {
    local name=$1; shift
    dsinfer-node --coordinator "$ADDR" --model "$MODEL" --threads 1 --name "$name" "$@" \
        2>"$TMP/node-$name.log" &
    NODE_PID=$!
    PIDS="$PIDS $NODE_PID"
}

dsinfer-coordinator --nodes 2 --model "$MODEL" --control 127.0.0.1:0 --port-file "$TMP/cport" \
    --listen 127.0.0.1:0 2>"$TMP/coord.log" &
PIDS="$PIDS $!"
for _ in $(seq 100); do
    grep -q "OpenAI API on" "$TMP/coord.log" && [ -s "$TMP/cport" ] && break
    sleep 0.1
done
HPORT=$(grep -o 'OpenAI API on 127.0.0.1 port [0-9]*' "$TMP/coord.log" | grep -o '[0-9]*$')
[ -n "$HPORT" ] || { cat "$TMP/coord.log"; echo "FAIL: no API port"; exit 1; }
URL=http://127.0.0.1:$HPORT
ADDR=127.0.0.1:$(cat "$TMP/cport")

# 1. No node yet.
code=$(health "$TMP/h0.json")
[ "$code" = 503 ] && jq -e '.status == "starting" and .error.code == "service_unavailable"
    and (.error.message | test("0 of the 2 expected"))' "$TMP/h0.json" >/dev/null ||
    fail "health before nodes: $code $(cat "$TMP/h0.json")"

# 2. Two nodes with 4 MiB each: the model (weights + KV reserve + 2 GiB overhead a node) cannot fit.
start_node small-a --mem 4M
SMALL_A=$NODE_PID
start_node small-b --mem 4M
SMALL_B=$NODE_PID
wait_health '.status == "plan_does_not_fit"' || fail "no plan_does_not_fit: $(cat "$TMP/h.json")"
code=$(health "$TMP/nofit.json")
[ "$code" = 503 ] || fail "plan_does_not_fit is $code, not 503"
jq -e '.error.code == "plan_does_not_fit" and .missing_bytes > 0
    and (.error.message | test("node [01] .small-a. lacks [0-9.]+ GiB"))
    and (.error.message | test("node [01] .small-b. lacks [0-9.]+ GiB"))
    and (.error.message | test("GiB short"))' "$TMP/nofit.json" >/dev/null ||
    fail "plan_does_not_fit body: $(cat "$TMP/nofit.json")"
jq -e '[.nodes[].state] == ["joined", "joined"]' "$TMP/nofit.json" >/dev/null ||
    fail "nodes in /health: $(cat "$TMP/nofit.json")"
grep -Eq "ERROR .*node [01] 'small-a' lacks [0-9.]+ GiB" "$TMP/coord.log" &&
    grep -Eq "ERROR .*cannot plan the model .*[0-9.]+ GiB short" "$TMP/coord.log" ||
    fail "the log does not name the nodes and the bytes: $(grep -v INFO "$TMP/coord.log")"
code=$(curl -sS -o "$TMP/c.json" -w '%{http_code}' -d '{"model":"tiny-v3","prompt":"Hi"}' "$URL/v1/completions")
[ "$code" = 503 ] && jq -e '.error.code == "plan_does_not_fit" and (.error.message | test("small-a. lacks"))' \
    "$TMP/c.json" >/dev/null || fail "completion while the plan does not fit: $code $(cat "$TMP/c.json")"
dsinfer cluster status --coordinator "$ADDR" >"$TMP/status.txt" 2>&1 &&
    grep -q "does not fit the memory of the 2 live nodes" "$TMP/status.txt" ||
    fail "cluster status: $(cat "$TMP/status.txt")"
dsinfer cluster status --coordinator "$ADDR" --json >"$TMP/status.json" 2>&1 &&
    jq -e '.state == "plan_does_not_fit" and .missing_bytes > 0' "$TMP/status.json" >/dev/null ||
    fail "cluster status --json: $(cat "$TMP/status.json")"

# 3. Drain the small nodes, start two that fit: serving; the small ones are "drained".
for id in 0 1; do
    dsinfer cluster drain $id --coordinator "$ADDR" >/dev/null 2>"$TMP/drain$id.log" ||
        fail "drain $id: $(cat "$TMP/drain$id.log")"
done
for p in $SMALL_A $SMALL_B; do
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    wait "$p" || fail "a drained node exited with $?"
done
start_node big-a
BIG_A=$NODE_PID
start_node big-b
BIG_B=$NODE_PID
wait_health '.status == "ok"' || fail "not serving after two large nodes joined: $(cat "$TMP/h.json")"
jq -e '[.nodes[] | select(.name | startswith("small")) | .state] == ["drained", "drained"]
    and [.nodes[] | select(.name | startswith("big")) | .state] == ["ready", "ready"]
    and (has("error") | not)' "$TMP/h.json" >/dev/null || fail "nodes in /health: $(cat "$TMP/h.json")"
dsinfer cluster status --coordinator "$ADDR" >"$TMP/status2.txt" 2>&1
grep -Eq "^0 +small-[ab] +drained " "$TMP/status2.txt" && ! grep -q " dead " "$TMP/status2.txt" ||
    fail "cluster status after the drains: $(cat "$TMP/status2.txt")"
code=$(curl -sS -o "$TMP/c2.json" -w '%{http_code}' -d '{"model":"tiny-v3","prompt":"Hi","max_tokens":4}' "$URL/v1/completions")
[ "$code" = 200 ] || fail "completion once serving: $code $(cat "$TMP/c2.json")"

# 4. A node name that is taken.
start_node big-a
DUP=$NODE_PID
for _ in $(seq 100); do kill -0 "$DUP" 2>/dev/null || break; sleep 0.1; done
kill -0 "$DUP" 2>/dev/null && fail "a second node 'big-a' was not refused"
grep -Eq "the name 'big-a' is taken by live node [0-9]+" "$TMP/node-big-a.log" ||
    fail "duplicate name: $(grep -v INFO "$TMP/node-big-a.log")"

# 5. Token ids outside the vocabulary (1024 ids): named with the vocabulary's size.
dsinfer run --coordinator "$ADDR" --prompt-ids 5,1024 >/dev/null 2>"$TMP/run.log"
rc=$?
[ $rc != 0 ] && grep -q "prompt token 1024 (position 1) is outside the model's vocabulary \[0, 1024)" "$TMP/run.log" ||
    fail "run --coordinator, token 1024: rc=$rc $(cat "$TMP/run.log")"
for where in "--coordinator $ADDR" "--local-nodes 1"; do
    # shellcheck disable=SC2086 # two words
    timeout 20 dsinfer run --model "$MODEL" $where --prompt-ids 5,1024 >/dev/null 2>"$TMP/run.log"
    rc=$?
    [ $rc = 2 ] && grep -q "token 1024 is outside the vocabulary \[0, 1024)" "$TMP/run.log" ||
        fail "run --model $where, token 1024: rc=$rc $(cat "$TMP/run.log")"
done

# 6. Every node lost: 503 "starting" saying no node is left (not plan_does_not_fit, not 200).
for p in $BIG_A $BIG_B; do kill -9 "$p"; wait "$p" 2>/dev/null; done
wait_health '.status == "starting" and (.error.message | test("no live node"))' ||
    fail "health with no node left: $(cat "$TMP/h.json")"
code=$(health "$TMP/none.json")
[ "$code" = 503 ] && jq -e '(has("missing_bytes") | not) and ([.nodes[] | select(.name | startswith("big")) | .state] == ["dead", "dead"])' \
    "$TMP/none.json" >/dev/null || fail "health with no node left: $code $(cat "$TMP/none.json")"

# 7. A node given the wrong port (the HTTP API's, which accepts and waits for a request) is told
#    that nothing answered as a coordinator, and stops with an error instead of waiting forever.
timeout 60 dsinfer-node --coordinator "127.0.0.1:$HPORT" --model "$MODEL" --threads 1 \
    --name wrongport 2>"$TMP/wrongport.log"
rc=$?
[ $rc != 0 ] && [ $rc != 124 ] && grep -q "is it the --control address of dsinfer-coordinator" "$TMP/wrongport.log" ||
    fail "a node at the HTTP port: rc=$rc $(tail -3 "$TMP/wrongport.log")"

[ "$FAILED" = 0 ] && echo "cluster error reports passed"
exit "$FAILED"
