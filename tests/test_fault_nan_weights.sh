#!/bin/bash
# test_fault_nan_weights.sh - a checkpoint with a NaN in a weight (the final norm of tiny-v3, so
# every logits row is NaN) must not generate token 0 forever: `dsinfer run` stops with a message
# naming the cause, and through `dsinfer serve` a request ends with an error (whole: a 5xx JSON
# error; stream: an error event, then [DONE]).
set -u
FX=${DSINFER_FIXTURES:?DSINFER_FIXTURES is not set}
command -v dsinfer >/dev/null || { echo "FAIL: dsinfer is not on PATH"; exit 1; }
command -v python3 >/dev/null || { echo "SKIPPED: no python3"; exit 77; }

TMP=$(mktemp -d)
SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null
        wait "$SERVER_PID" 2>/dev/null
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
FAILED=0
fail() { echo "FAIL: $*"; FAILED=1; }

# The model, shard 1 a link to the fixture's, shard 2 a private copy with model.norm.weight[0]
# set to a BF16 NaN.
M=$TMP/nan-model
mkdir -p "$M"
cp "$FX"/tiny-v3/*.json "$M"/ && chmod u+w "$M"/*.json
ln -s "$FX"/tiny-v3/model-00001-of-00002.safetensors "$M"/
cp "$FX"/tiny-v3/model-00002-of-00002.safetensors "$M"/ && chmod u+w "$M"/*00002*
python3 - "$M/model-00002-of-00002.safetensors" <<'EOF'
import json, struct, sys
path = sys.argv[1]
with open(path, "r+b") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    t = json.loads(f.read(n))["model.norm.weight"]
    assert t["dtype"] == "BF16", t
    f.seek(8 + n + t["data_offsets"][0])
    f.write(struct.pack("<H", 0x7FC0))
EOF

timeout 60 dsinfer run --model "$M" --prompt-ids 1,2,3 --max-tokens 4 >"$TMP/run.out" 2>"$TMP/run.err"
rc=$?
if [ $rc = 0 ] || [ $rc = 124 ] || ! grep -q "NaN or infinite" "$TMP/run.err"; then
    fail "dsinfer run on NaN weights: exit $rc: $(cat "$TMP/run.out" "$TMP/run.err" | tail -3)"
fi

dsinfer serve --model "$M" --model-name tiny-v3 --local-nodes 1 --listen 127.0.0.1:0 \
    2>"$TMP/server.log" &
SERVER_PID=$!
for _ in $(seq 600); do
    grep -q "ready: http://" "$TMP/server.log" && break
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
done
URL=$(grep -o 'ready: http://[0-9.:]*' "$TMP/server.log" | head -1 | cut -c8-)
[ -n "$URL" ] || { cat "$TMP/server.log"; echo "FAIL: not ready"; exit 1; }

BODY='{"model":"tiny-v3","prompt":"Hello","max_tokens":8'
code=$(curl -sS -m 60 -o "$TMP/whole.json" -w '%{http_code}' "$URL/v1/completions" \
    -H 'Content-Type: application/json' -d "$BODY}")
if [ "${code:0:1}" != 5 ] || ! grep -q '"error"' "$TMP/whole.json"; then
    fail "whole request on NaN weights: HTTP $code: $(head -c 300 "$TMP/whole.json")"
fi
curl -sS -m 60 -o "$TMP/stream.txt" "$URL/v1/completions" -H 'Content-Type: application/json' \
    -d "$BODY,\"stream\":true}"
if ! python3 -c 'import sys; t = open(sys.argv[1]).read(); sys.exit(not ("\"error\"" in t and t.endswith("\n\ndata: [DONE]\n\n")))' "$TMP/stream.txt"; then
    fail "stream on NaN weights did not end with an error event and [DONE]: $(tail -c 300 "$TMP/stream.txt")"
fi
grep -q "NaN or infinite" "$TMP/server.log" || fail "the node did not log the NaN logits"

kill "$SERVER_PID"
wait "$SERVER_PID"
SERVER_PID=
[ $FAILED = 0 ] && echo PASS
exit $FAILED
