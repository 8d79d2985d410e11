#!/bin/bash
# test_cluster_serve_grammar.sh - structured output end to end: `dsinfer serve` on tiny-v3 with two
# pipeline stages (the last stage masks the logits with the request's grammar) answers
# response_format json_schema / json_object, guided_json, guided_choice and guided_regex at
# temperature 1, whole and streamed, with output that follows the constraint
# (tests/serve_grammar_check.py validates with Python's jsonschema); an unsupported schema keyword
# is a 400 naming it. Then the same json_schema request through `dsinfer-coordinator --listen`
# with a dsinfer-node.
set -u
FX=${DSINFER_FIXTURES:?DSINFER_FIXTURES is not set}
SRC=${DSINFER_SOURCE:?DSINFER_SOURCE is not set}
MODEL=$FX/tiny-v3
for p in dsinfer dsinfer-coordinator dsinfer-node; do
    command -v $p >/dev/null || { echo "FAIL: $p is not on PATH"; exit 1; }
done
[ -f "$MODEL/config.json" ] || { echo "*** SKIPPED: no fixture $MODEL ***"; exit 77; }
python3 -c 'import jsonschema' 2>/dev/null ||
    { echo "*** SKIPPED: python3 has no jsonschema (apt-get install python3-jsonschema) ***"; exit 77; }

TMP=$(mktemp -d)
PIDS=
cleanup() {
    for p in $PIDS; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT
FAILED=0

dsinfer serve --model "$MODEL" --model-name tiny-v3 --local-nodes 2 --stages 2 \
    --listen 127.0.0.1:0 --max-context 1024 2>"$TMP/server.log" &
PIDS="$!"
for _ in $(seq 600); do
    grep -q "ready: http://" "$TMP/server.log" && break
    sleep 0.1
done
URL=$(grep -o 'ready: http://[0-9.:]*' "$TMP/server.log" | head -1 | cut -c8-)
[ -n "$URL" ] || { cat "$TMP/server.log"; echo "FAIL: serve not ready"; exit 1; }
python3 "$SRC/tests/serve_grammar_check.py" "$URL" || { FAILED=1; tail -20 "$TMP/server.log"; }
kill $PIDS 2>/dev/null; wait $PIDS 2>/dev/null
PIDS=

export DSINFER_SECRET=5e7e5e7e5e7e5e7e5e7e5e7e5e7e5e7e
dsinfer-coordinator --nodes 1 --model "$MODEL" --model-name tiny-v3 --control 127.0.0.1:0 \
    --port-file "$TMP/cport" --listen 127.0.0.1:0 2>"$TMP/coord.log" &
PIDS="$!"
for _ in $(seq 100); do
    grep -q "OpenAI API on" "$TMP/coord.log" && [ -s "$TMP/cport" ] && break
    sleep 0.1
done
HPORT=$(grep -o 'OpenAI API on 127.0.0.1 port [0-9]*' "$TMP/coord.log" | grep -o '[0-9]*$')
[ -n "$HPORT" ] || { cat "$TMP/coord.log"; echo "FAIL: no coordinator API port"; exit 1; }
dsinfer-node --coordinator "127.0.0.1:$(cat "$TMP/cport")" --model "$MODEL" --threads 1 \
    2>"$TMP/node.log" &
PIDS="$PIDS $!"
for _ in $(seq 300); do
    [ "$(curl -sS -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HPORT/health")" = 200 ] && break
    sleep 0.1
done
python3 "$SRC/tests/serve_grammar_check.py" "http://127.0.0.1:$HPORT" quick ||
    { FAILED=1; tail -20 "$TMP/coord.log" "$TMP/node.log"; }
[ $FAILED = 0 ] && echo "all passed"
exit $FAILED
