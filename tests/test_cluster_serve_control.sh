#!/bin/bash
# test_cluster_serve_control.sh - the control port of `dsinfer serve` (where its nodes join) takes
# work only from authenticated clients, held to the HTTP API's limits: `dsinfer run
# --coordinator` without the shared secret, or with a wrong one, is refused with a clear error;
# with it, a request within the limits generates, one over the context is refused, and one over
# --max-queue (while an HTTP stream holds the only slot) is refused.
set -u
FX=${DSINFER_FIXTURES:?DSINFER_FIXTURES is not set}
MODEL=$FX/tiny-v3
command -v dsinfer >/dev/null || { echo "FAIL: dsinfer is not on PATH"; exit 1; }
command -v curl >/dev/null || { echo "SKIPPED: no curl"; exit 77; }

. "$(dirname "$0")/serve_chat.bash"
serve_tmp
export DSINFER_SECRET=control-port-test-secret-0123456789

serve_start "$TMP/server.log" --model "$MODEL" --local-nodes 1 --listen 127.0.0.1:0 \
    --max-queue 1 --max-context 4096 || exit 1
CPORT=$(grep -o 'coordinator listening on port [0-9]*' "$TMP/server.log" | grep -o '[0-9]*$')
CADDR=127.0.0.1:$CPORT
echo "server at $URL, control port $CADDR"

# client NAME WANT_RC PATTERN [ENV...] -- ARGS...: dsinfer run --coordinator, its exit status and
# a pattern its stderr must hold.
client() {
    local name=$1 want=$2 pat=$3
    shift 3
    local envs=()
    while [ "$1" != "--" ]; do envs+=("$1"); shift; done
    shift
    env "${envs[@]}" timeout 60 dsinfer run --coordinator "$CADDR" "$@" >"$TMP/$name.out" \
        2>"$TMP/$name.err"
    local rc=$?
    if [ "$want" = 0 ] && [ $rc != 0 ]; then
        fail "$name: exit $rc: $(cat "$TMP/$name.err")"
    elif [ "$want" != 0 ] && { [ $rc = 0 ] || [ $rc = 124 ]; }; then
        fail "$name: exit $rc, want a refusal: $(cat "$TMP/$name.out" "$TMP/$name.err")"
    elif [ -n "$pat" ] && ! grep -q -- "$pat" "$TMP/$name.err"; then
        fail "$name: stderr lacks '$pat': $(cat "$TMP/$name.err")"
    else
        echo "ok: $name"
    fi
}

client no-secret 1 "DSINFER_SECRET" -u DSINFER_SECRET -- --prompt-ids 1,2,3 --max-tokens 4
client wrong-secret 1 "authentication failed" DSINFER_SECRET=wrong-secret-0123456789abcdef -- \
    --prompt-ids 1,2,3 --max-tokens 4
client right-secret 0 "" DSINFER_SECRET="$DSINFER_SECRET" -- --prompt-ids 1,2,3 --max-tokens 4
client over-context 1 "maximum context length is 4096" DSINFER_SECRET="$DSINFER_SECRET" -- \
    --prompt-ids 1,2,3 --max-tokens 4094
grep -q "SUBMIT.*refused\|authentication failed" "$TMP/server.log" ||
    fail "the server did not log the refused client"

# A long HTTP stream holds the only queue slot: the control-port client is refused.
curl -sN -m 120 "$URL/v1/completions" -H 'Content-Type: application/json' \
    -d '{"model":"tiny-v3","prompt":"The quick brown fox","max_tokens":4000,"temperature":0,"stream":true}' \
    >"$TMP/stream.txt" &
CURL=$!
for _ in $(seq 100); do
    [ -s "$TMP/stream.txt" ] && break
    sleep 0.05
done
client queue-full 1 "Too many requests" DSINFER_SECRET="$DSINFER_SECRET" -- \
    --prompt-ids 1,2,3 --max-tokens 4
kill $CURL 2>/dev/null
wait $CURL 2>/dev/null

serve_stop
[ $FAILED = 0 ] && echo PASS
exit $FAILED
