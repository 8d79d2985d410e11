#!/bin/bash
# test_cli_api_tools.sh - tool calling over HTTP with the API on its deterministic echo backend
# (test_unit_api_server --serve), which answers with the words of the last message: a message
# holding a DeepSeek-V3.1 tool call makes the "model" emit it, token by token. Checks with plain
# HTTP (tests/api_tools_check.py: whole and streamed responses agree, several calls,
# parallel_tool_calls false, tool_choice none, malformed output as content, the round trip, the
# 400s) and with the official openai npm client (tests/npm/openai_tools.mjs: typed tool_calls,
# its stream helper, its runTools loop) when npm can install it.
set -u
BUILD=${DSINFER_BUILD:?DSINFER_BUILD is not set}
SRC=${DSINFER_SOURCE:?DSINFER_SOURCE is not set}
SERVER=$BUILD/tests/test_unit_api_server
[ -x "$SERVER" ] || { echo "FAIL: $SERVER is not built"; exit 1; }
command -v python3 >/dev/null || { echo "SKIPPED: no python3"; exit 77; }

TMP=$(mktemp -d)
SERVER_PID=
cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
FAILED=0

"$SERVER" --serve "$TMP/port" --delay-ms 1 --api-key k3y 2>"$TMP/server.log" &
SERVER_PID=$!
for _ in $(seq 100); do [ -s "$TMP/port" ] && break; sleep 0.05; done
[ -s "$TMP/port" ] || { cat "$TMP/server.log"; echo "FAIL: the server did not start"; exit 1; }
URL=http://127.0.0.1:$(cat "$TMP/port")

python3 "$SRC/tests/api_tools_check.py" "$URL" k3y || FAILED=1

if ! command -v npm >/dev/null; then
    echo "SKIPPED (part): no npm for the openai client"
elif ! (cd "$SRC" && timeout 300 npm install --prefix tests/npm --no-audit --no-fund \
    >"$TMP/npm.log" 2>&1); then
    echo "SKIPPED (part): npm install of the openai client failed (no registry?)"
else
    CALL_TEXT='Let me check. <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{"city": "Paris"}<｜tool▁call▁end｜><｜tool▁calls▁end｜>' \
    DSINFER_URL=$URL DSINFER_KEY=k3y DSINFER_MODEL=test-model \
        node "$SRC/tests/npm/openai_tools.mjs" || FAILED=1
fi
[ "$FAILED" = 0 ] || { tail -20 "$TMP/server.log"; exit 1; }
echo "PASS"
