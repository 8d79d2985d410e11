#!/bin/bash
# test_cluster_serve_local.sh - `dsinfer serve --local-nodes 2` answers one chat request as
# `dsinfer run --chat` does, passes its node options to the nodes it starts (context, memory,
# threads), and SIGTERM stops it and its nodes, leaving no process.
set -u
MODEL=${DSINFER_FIXTURES:?DSINFER_FIXTURES is not set}/tiny-v3
command -v curl >/dev/null || { echo "*** SKIPPED: no curl ***"; exit 77; }
. "$(dirname "$0")/serve_chat.bash"
TMP=$(mktemp -d)
PID=
NODES=
cleanup() {
    [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
    for p in $NODES; do kill -9 "$p" 2>/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT
FAILED=0
fail() { echo "FAIL: $*"; FAILED=1; }

dsinfer serve --model "$MODEL" --local-nodes 2 --listen 127.0.0.1:0 --threads 1 --mem 1G \
    --max-context 512 2>"$TMP/serve.log" &
PID=$!
wait_for_line "$TMP/serve.log" "ready: http://" "$PID" || { cat "$TMP/serve.log"; echo "FAIL: not ready"; exit 1; }
URL=$(grep -o 'ready: http://[0-9.:]*' "$TMP/serve.log" | head -1 | sed 's/^ready: //')
NODES=$(pgrep -P "$PID")
[ "$(echo $NODES | wc -w)" = 2 ] || fail "expected 2 node processes, found '$NODES'"
serve_chat "$URL" "$MODEL" "$TMP" || fail "chat"
# The node options reached the nodes.
grep -q "sequences of up to 512 tokens" "$TMP/serve.log" || fail "--max-context did not reach the nodes"
grep -q "(1.0 GiB, 1 cores)" "$TMP/serve.log" || fail "--mem / --threads did not reach the nodes"

kill -TERM "$PID"
wait "$PID" || fail "serve exited with $? after SIGTERM"
PID=
for p in $NODES; do kill -0 "$p" 2>/dev/null && fail "node process $p left running"; done
[ "$FAILED" = 0 ] && echo "serve --local-nodes checks passed"
exit "$FAILED"
