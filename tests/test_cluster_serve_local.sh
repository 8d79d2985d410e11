#!/bin/bash
# test_cluster_serve_local.sh - `dsinfer serve --local-nodes 2` answers one chat request as
# `dsinfer run --chat` does, passes its node options to the nodes it starts (context, memory,
# threads), and SIGTERM stops it and its nodes, leaving no process.
set -u
MODEL=${DSINFER_FIXTURES:?DSINFER_FIXTURES is not set}/tiny-v3
command -v curl >/dev/null || { echo "*** SKIPPED: no curl ***"; exit 77; }
. "$(dirname "$0")/serve_chat.bash"
serve_tmp
NODES=
trap '{ serve_cleanup; for p in $NODES; do kill -9 "$p" 2>/dev/null; done; }' EXIT

serve_start "$TMP/serve.log" --model "$MODEL" --local-nodes 2 --listen 127.0.0.1:0 --threads 1 \
    --mem 1G --max-context 512 || exit 1
NODES=$(pgrep -P "$SERVER_PID")
[ "$(echo $NODES | wc -w)" = 2 ] || fail "expected 2 node processes, found '$NODES'"
serve_chat "$URL" "$MODEL" "$TMP" || fail "chat"
# The node options reached the nodes.
grep -q "sequences of up to 512 tokens" "$TMP/serve.log" || fail "--max-context did not reach the nodes"
grep -q "(1.0 GiB, 1 cores)" "$TMP/serve.log" || fail "--mem / --threads did not reach the nodes"

serve_stop || fail "serve exited with $? after SIGTERM"
for p in $NODES; do kill -0 "$p" 2>/dev/null && fail "node process $p left running"; done
[ "$FAILED" = 0 ] && echo "serve --local-nodes checks passed"
exit "$FAILED"
