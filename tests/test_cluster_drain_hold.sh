#!/usr/bin/env bash
# A node stopped (SIGTERM) when the other nodes cannot serve without it: dsinfer-coordinator
# (--http) and two dsinfer-node processes on the tiny-v3 fixture, two pipeline stages. While a
# greedy stream runs, node 1 gets SIGTERM: the stream must finish with every token, a request
# sent meanwhile must be held (not started on a plan that is losing a node), node 1 must leave as
# soon as the stream ended (exit 0, long before its 60 s deadline), and once a new node joins
# the held request must be served. Then SIGTERM to a node with nothing running, and to the last
# node of a cluster that no longer serves: each leaves at once.
set -uo pipefail
FIX=${DSINFER_FIXTURES:-../shared/fixtures}/tiny-v3
if [ ! -d "$FIX" ]; then
  [ "${CI:-}" = true ] && { echo "ERROR: fixture $FIX missing under CI"; exit 1; }
  echo "*** SKIPPED: fixture $FIX missing ***"; exit 77
fi
command -v curl >/dev/null || { echo "SKIPPED: no curl"; exit 77; }
command -v jq >/dev/null || { echo "SKIPPED: no jq"; exit 77; }
TMP=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done; rm -rf "$TMP"; }
trap cleanup EXIT
fail=0
bad() { fail=1; echo "FAIL: $*"; }
# waits up to $1 seconds for the command after it to succeed
within() { local t=$1; shift; for _ in $(seq $((t * 10))); do "$@" && return 0; sleep 0.1; done; return 1; }

export DSINFER_SECRET=drain-hold-test-secret-0123456789
export UCX_WARN_UNUSED_ENV_VARS=n

dsinfer-coordinator --nodes 2 --stages 2 --model "$FIX" --control 127.0.0.1:0 \
  --port-file "$TMP/port" --http 127.0.0.1:0 2>"$TMP/coord.log" &
pids+=($!)
within 20 grep -q "OpenAI API on" "$TMP/coord.log" || { cat "$TMP/coord.log"; echo "FAIL: no API"; exit 1; }
within 20 test -s "$TMP/port" || { echo "FAIL: no port file"; exit 1; }
ADDR=127.0.0.1:$(cat "$TMP/port")
URL=http://127.0.0.1:$(grep -o 'OpenAI API on 127.0.0.1 port [0-9]*' "$TMP/coord.log" | grep -o '[0-9]*$')
node() { # name -> pid in NODE
  dsinfer-node --coordinator "$ADDR" --model "$FIX" --name "$1" --threads 1 --max-context 4096 \
    2>"$TMP/$1.log" &
  NODE=$!
  pids+=($NODE)
}
node n0; N0=$NODE
node n1; N1=$NODE
healthy() { [ "$(curl -sS -o /dev/null -w '%{http_code}' "$URL/health")" = 200 ]; }
within 60 healthy || { cat "$TMP/coord.log"; echo "FAIL: the cluster did not serve"; exit 1; }

# A long greedy stream; SIGTERM to node 1 once it has tokens.
curl -sS -N -d '{"model":"tiny-v3","prompt":"Once upon a time","max_tokens":3000,"temperature":0,"ignore_eos":true,"stream":true,"stream_options":{"include_usage":true}}' \
  "$URL/v1/completions" >"$TMP/stream.txt" &
STREAM=$!
within 60 grep -q '"text"' "$TMP/stream.txt" || bad "the stream gave no token"
kill -TERM "$N1"
within 10 grep -q "new requests are held" "$TMP/coord.log" || bad "no drain hold: $(tail -5 "$TMP/coord.log")"
curl -sS -d '{"model":"tiny-v3","prompt":"The quick brown fox","max_tokens":8,"temperature":0}' \
  "$URL/v1/completions" >"$TMP/held.json" &
HELD=$!
wait "$STREAM" || bad "the stream's curl failed"
grep -q '^data: \[DONE\]' "$TMP/stream.txt" || bad "the stream did not end with [DONE]"
n=$(grep '^data: {' "$TMP/stream.txt" | sed 's/^data: //' | jq -s '[.[] | select(.usage != null)][0].usage.completion_tokens')
[ "$n" = 3000 ] || bad "the stream ended after $n tokens, not 3000"
grep '^data: {' "$TMP/stream.txt" | sed 's/^data: //' | jq -e -s '[.[].choices[]?.finish_reason | select(. != null)] == ["length"]' >/dev/null ||
  bad "the stream's finish_reason is not length"
# node 1 leaves once the stream ended: well before its own 60 s deadline
within 20 bash -c "! kill -0 $N1 2>/dev/null" || bad "node 1 still runs 20 s after its requests ended"
wait "$N1"; rc=$?
[ $rc = 0 ] || bad "node 1 exited $rc"
grep -q "released with no request running" "$TMP/coord.log" || bad "the coordinator did not release node 1"
grep -q "drain deadline" "$TMP/n1.log" && bad "node 1 waited for its drain deadline"
# the request sent during the hold waits for a plan; a new node joins and it is served
kill -0 "$HELD" 2>/dev/null || bad "the held request ended without a plan: $(cat "$TMP/held.json")"
node n2; N2=$NODE
wait "$HELD" || bad "the held request's curl failed"
jq -e '.usage.completion_tokens == 8 and (.choices[0].text | length) > 0' "$TMP/held.json" >/dev/null ||
  bad "the held request: $(cat "$TMP/held.json")"
# nothing running: SIGTERM to a node releases it at once
within 60 healthy || bad "not serving after node n2 joined"
kill -TERM "$N0"
within 10 bash -c "! kill -0 $N0 2>/dev/null" || bad "an idle node did not leave within 10 s of SIGTERM"
wait "$N0"; rc=$?
[ $rc = 0 ] || bad "node 0 exited $rc"
# the cluster no longer serves (one node for two stages): SIGTERM to the last node releases it
within 10 grep -q "node [0-9]* 'n0' left" "$TMP/coord.log" || bad "the coordinator did not see node 0 leave"
kill -TERM "$N2"
within 10 bash -c "! kill -0 $N2 2>/dev/null" || bad "a node of a cluster that does not serve did not leave within 10 s"
wait "$N2"; rc=$?
[ $rc = 0 ] || bad "node 2 exited $rc"
[ $fail = 0 ] || { tail -20 "$TMP/coord.log" "$TMP/n1.log"; exit 1; }
echo "ok: a drain no plan absorbs holds new requests, finishes the running ones, then releases"
