#!/bin/bash
# test_cluster_serve_daemons.sh - independent daemons configured by one config file, as the
# systemd units run them: `dsinfer-coordinator` serves the API (--listen, a key from
# --api-key-file, the secret from --secret-file, all in the file) and two `dsinfer-node`s take
# their memory and threads from the same file. One chat request equals `dsinfer run --chat`;
# a request without the key gets 401; SIGTERM to the coordinator stops everything.
set -u
MODEL=${DSINFER_FIXTURES:?DSINFER_FIXTURES is not set}/tiny-v3
command -v curl >/dev/null || { echo "*** SKIPPED: no curl ***"; exit 77; }
. "$(dirname "$0")/serve_chat.bash"
serve_tmp
trap '{ [ "$FAILED" = 0 ] || tail -n 5 "$TMP"/*.log; serve_cleanup; }' EXIT
unset DSINFER_SECRET DSINFER_API_KEY

head -c 24 /dev/urandom | base64 >"$TMP/secret"
chmod 600 "$TMP/secret"
echo "k3y-$RANDOM$RANDOM" >"$TMP/api-key"
cat >"$TMP/dsinfer.conf" <<CONF
# one file for the coordinator and the nodes
model = $MODEL
secret-file = $TMP/secret
api-key-file = $TMP/api-key
listen = 127.0.0.1:0
control = 127.0.0.1:0
max-context = 1024
threads = 1
mem = 3G
CONF
coord_start "$TMP/coord.log" --config-file "$TMP/dsinfer.conf" --nodes 2 || exit 1
for i in 0 1; do
    node_start "$TMP/node$i.log" --config-file "$TMP/dsinfer.conf" --name "n$i"
done
wait_healthy "$COORD_PID"
code=$(curl -sS -o /dev/null -w '%{http_code}' -d '{}' "$URL/v1/chat/completions")
[ "$code" = 401 ] || fail "no key: HTTP $code, expected 401"
serve_chat "$URL" "$MODEL" "$TMP" "$(cat "$TMP/api-key")" || fail "chat"
grep -q "sequences of up to 1024 tokens" "$TMP/node0.log" || fail "the node did not take max-context from the file"
grep -q "(3.0 GiB, 1 cores)" "$TMP/coord.log" || fail "the nodes did not take mem / threads from the file"

kill -TERM "$COORD_PID"
for p in $PIDS; do stop_wait "$p" 0 || fail "process $p exited with $?"; done
grep -q ERROR "$TMP/coord.log" "$TMP"/node*.log && { grep ERROR "$TMP/coord.log" "$TMP"/node*.log; fail "errors logged"; }
[ "$FAILED" = 0 ] && echo "coordinator + nodes from a config file: checks passed"
exit "$FAILED"
