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

. "$SRC/tests/serve_chat.bash"
serve_tmp

serve_start "$TMP/server.log" --model "$MODEL" --model-name tiny-v3 --local-nodes 2 --stages 2 \
    --listen 127.0.0.1:0 --max-context 1024 || exit 1
python3 "$SRC/tests/serve_grammar_check.py" "$URL" || { FAILED=1; tail -20 "$TMP/server.log"; }
serve_stop

export DSINFER_SECRET=5e7e5e7e5e7e5e7e5e7e5e7e5e7e5e7e
coord_start "$TMP/coord.log" --nodes 1 --model "$MODEL" --model-name tiny-v3 \
    --control 127.0.0.1:0 --listen 127.0.0.1:0 || exit 1
node_start "$TMP/node.log" --model "$MODEL" --threads 1
wait_healthy "$COORD_PID"
python3 "$SRC/tests/serve_grammar_check.py" "$URL" quick ||
    { FAILED=1; tail -20 "$TMP/coord.log" "$TMP/node.log"; }
[ $FAILED = 0 ] && echo "all passed"
exit $FAILED
