#!/bin/bash
# test_cluster_serve_choices.sh - several choices and the small endpoints on tiny-v3 with two
# pipeline stages (tests/serve_choices_check.py has the checks): n=3 at temperature 0 gives three
# choices equal to n=1's and the prefill counter shows the prompt computed once (the other choices
# copy its KV cache on both stages), chat and completions, whole and streamed by index; n=2 at
# temperature 1 with a seed differs, is reproducible and choice i equals a single request with
# seed + i; best_of returns the choices with the highest cumulative logprob; echo; /tokenize
# equals `dsinfer tokenize`; /detokenize round-trips; GET /v1/models/{id}; the API key guards
# them; the official openai npm client reads the choices. Run twice: `dsinfer serve` with local
# nodes, and `dsinfer-coordinator` with two `dsinfer-node`s (the n=3 checks).
set -u
FX=${DSINFER_FIXTURES:?DSINFER_FIXTURES is not set}
SRC=${DSINFER_SOURCE:?DSINFER_SOURCE is not set}
MODEL=$FX/tiny-v3
command -v dsinfer >/dev/null || { echo "FAIL: dsinfer is not on PATH"; exit 1; }
command -v python3 >/dev/null || { echo "SKIPPED: no python3"; exit 77; }
command -v curl >/dev/null || { echo "SKIPPED: no curl"; exit 77; }
. "$SRC/tests/serve_chat.bash"
unset DSINFER_SECRET DSINFER_API_KEY

TMP=$(mktemp -d)
PIDS=
cleanup() {
    for p in $PIDS; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT
KEY=k3y-$RANDOM$RANDOM

NPM_SCRIPT=
if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
    echo "SKIPPED (part): no npm for the openai client"
elif ! (cd "$SRC" && timeout 300 npm install --prefix tests/npm --no-audit --no-fund \
    >"$TMP/npm.log" 2>&1); then
    echo "SKIPPED (part): npm install of the openai client failed (no registry?)"
else
    NPM_SCRIPT=$SRC/tests/npm/openai_choices.mjs
fi

# 1. dsinfer serve: a coordinator in the process, two node processes, two stages.
DSINFER_API_KEY=$KEY dsinfer serve --model "$MODEL" --model-name tiny-v3 --local-nodes 2 \
    --stages 2 --listen 127.0.0.1:0 --max-context 512 2>"$TMP/serve.log" &
PIDS=$!
wait_for_line "$TMP/serve.log" "ready: http://" "$PIDS" ||
    { tail -20 "$TMP/serve.log"; echo "FAIL: dsinfer serve did not start"; exit 1; }
URL=$(grep -o 'ready: http://[0-9.:]*' "$TMP/serve.log" | head -1 | cut -c8-)
NPM_SCRIPT=$NPM_SCRIPT python3 "$SRC/tests/serve_choices_check.py" full "$URL" "$KEY" "$MODEL" 512
RC=$?
[ $RC -eq 0 ] || tail -20 "$TMP/serve.log"
kill "$PIDS" && wait "$PIDS"
PIDS=
[ $RC -eq 0 ] || exit $RC

# 2. dsinfer-coordinator and two dsinfer-nodes started apart, a plan of two stages.
head -c 24 /dev/urandom | base64 >"$TMP/secret"
chmod 600 "$TMP/secret"
DSINFER_API_KEY=$KEY dsinfer-coordinator --model "$MODEL" --model-name tiny-v3 --nodes 2 \
    --stages 2 --secret-file "$TMP/secret" --listen 127.0.0.1:0 --control 127.0.0.1:0 \
    --port-file "$TMP/cport" --max-context 512 2>"$TMP/coord.log" &
PIDS=$!
wait_for_line "$TMP/coord.log" "OpenAI API on" "$PIDS" && wait_for_line "$TMP/cport" "[0-9]" "$PIDS" ||
    { tail -20 "$TMP/coord.log"; echo "FAIL: the coordinator did not start"; exit 1; }
HPORT=$(grep -o 'OpenAI API on 127.0.0.1 port [0-9]*' "$TMP/coord.log" | grep -o '[0-9]*$')
for i in 0 1; do
    dsinfer-node --model "$MODEL" --secret-file "$TMP/secret" --threads 1 --max-context 512 \
        --coordinator "127.0.0.1:$(cat "$TMP/cport")" --name "n$i" 2>"$TMP/node$i.log" &
    PIDS="$! $PIDS"
done
for _ in $(seq 600); do
    [ "$(curl -sS -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HPORT/health")" = 200 ] && break
    sleep 0.1
done
grep -q "2 stages" "$TMP/coord.log" || echo "note: the plan line does not say 2 stages"
python3 "$SRC/tests/serve_choices_check.py" cluster "http://127.0.0.1:$HPORT" "$KEY" "$MODEL" 512
RC=$?
if [ $RC -ne 0 ]; then tail -20 "$TMP/coord.log" "$TMP"/node*.log; fi
grep -q ERROR "$TMP/coord.log" "$TMP"/node*.log &&
    { grep ERROR "$TMP/coord.log" "$TMP"/node*.log; echo "FAIL: errors logged"; RC=1; }
exit $RC
