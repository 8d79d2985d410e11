#!/bin/bash
# test_cluster_serve_mpi.sh - `mpirun -np 3 dsinfer-cluster --listen`: rank 0 serves the OpenAI
# API over the two node ranks. No DSINFER_SECRET is given: rank 0 makes one and broadcasts it
# over MPI. One chat request (with --api-key) equals `dsinfer run --chat`; SIGTERM to mpirun stops
# every rank, leaving no process. Without --listen, dsinfer-cluster takes the generation options
# of `dsinfer run` (--chat, --json, sampling) and prints the same JSON tokens.
set -u
MODEL=${DSINFER_FIXTURES:?DSINFER_FIXTURES is not set}/tiny-v3
command -v curl >/dev/null || { echo "*** SKIPPED: no curl ***"; exit 77; }
command -v mpirun >/dev/null || { echo "FAIL: mpirun missing (openmpi-bin)"; exit 1; }
. "$(dirname "$0")/serve_chat.bash"
BIN=$(command -v dsinfer-cluster)
serve_tmp
unset DSINFER_SECRET DSINFER_API_KEY

mpirun --allow-run-as-root --oversubscribe -np 3 -x UCX_WARN_UNUSED_ENV_VARS=n \
    "$BIN" --model "$MODEL" --listen 127.0.0.1:0 --api-key s3cret --stages 2 --mem 3G \
    >"$TMP/out.log" 2>"$TMP/mpi.log" &
PID=$!
# shellcheck disable=SC2034 # stopped at exit by serve_chat.bash
PIDS=$PID
wait_for_line "$TMP/mpi.log" "OpenAI API on" "$PID" || { cat "$TMP/mpi.log"; echo "FAIL: no API"; exit 1; }
HPORT=$(grep -o 'OpenAI API on 127.0.0.1 port [0-9]*' "$TMP/mpi.log" | grep -o '[0-9]*$')
URL=http://127.0.0.1:$HPORT
wait_healthy "$PID"
serve_chat "$URL" "$MODEL" "$TMP" s3cret || fail "chat"
RANKS=$(pgrep -P "$PID" -f "$BIN")
[ "$(echo $RANKS | wc -w)" = 3 ] || fail "expected 3 ranks under mpirun, found '$RANKS'"
grep -q "authentication failed" "$TMP/mpi.log" && fail "the ranks did not share one secret"

# mpirun forwards SIGTERM to every rank and exits 1 whatever they return (Open MPI 4.1): what
# counts is that rank 0 shuts the cluster down and every rank is gone.
stop_wait "$PID"
grep -q "signal 15: shutting the cluster down" "$TMP/mpi.log" || fail "rank 0 did not stop on SIGTERM"
# Every rank got the signal at once (as from scancel): node ranks may ask to drain a coordinator
# already shutting down, or already gone. That is a normal stop, not an error.
grep -E " ERROR .*(DRAIN|drain of node)" "$TMP/mpi.log" && fail "a stop of every rank at once logged drain errors"
for p in $RANKS; do
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$p" 2>/dev/null && { fail "rank process $p left running"; kill -9 "$p"; }
done
# One generation with run's options: the same tokens and text as `dsinfer run`.
timeout 120 mpirun --allow-run-as-root --oversubscribe -np 3 -x UCX_WARN_UNUSED_ENV_VARS=n \
    "$BIN" --model "$MODEL" --chat "Hello there" --max-tokens 6 --json --temperature 0.7 --seed 3 \
    --top-k 5 --mem 3G >"$TMP/gen.json" 2>"$TMP/gen.log" || fail "dsinfer-cluster --chat --json: $(tail -n 3 "$TMP/gen.log")"
dsinfer run --model "$MODEL" --chat "Hello there" --max-tokens 6 --json --temperature 0.7 \
    --seed 3 --top-k 5 >"$TMP/want.json" 2>/dev/null || fail "dsinfer run --json"
python3 - "$TMP/gen.json" "$TMP/want.json" <<'PY' || fail "dsinfer-cluster and dsinfer run differ"
import json, sys
got, want = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
assert got["tokens"] == want["tokens"] and got["text"] == want["text"], (got, want)
print("dsinfer-cluster --chat --json == dsinfer run:", json.dumps(got["text"]))
PY
[ "$FAILED" = 0 ] || tail -n 20 "$TMP/mpi.log"
[ "$FAILED" = 0 ] && echo "dsinfer-cluster --listen checks passed"
exit "$FAILED"
