#!/bin/bash
# test_cluster_serve_tools.sh - tool calling and prefix continuation through `dsinfer serve` on
# tiny-v3 (tests/serve_tools_ref.py): the prompts with tools, tool calls and tool results equal
# the Jinja rendering of the fixture's own template (token counts), a tool result in gives an
# answer out, streamed and whole responses agree, prefix / continue_final_message continue the
# answer exactly as a completion of the rendered text does, and the continuation 400s; a forced
# call (tool_choice named / required, constrained decoding) comes out as message.tool_calls and
# its result goes back in; the official openai npm client gets the forced call typed, through its
# stream helper, and runs it with runTools (tests/npm/openai_tools_forced.mjs); on R1 the forced
# call's grammar leaves the thinking block free.
set -u
FX=${DSINFER_FIXTURES:?DSINFER_FIXTURES is not set}
SRC=${DSINFER_SOURCE:?DSINFER_SOURCE is not set}
command -v dsinfer >/dev/null || { echo "FAIL: dsinfer is not on PATH"; exit 1; }
command -v python3 >/dev/null || { echo "SKIPPED: no python3"; exit 77; }
python3 -c 'import jinja2' 2>/dev/null || { echo "SKIPPED: no python3-jinja2"; exit 77; }
[ -d "$FX/tiny-v3" ] || { echo "SKIPPED: no tiny-v3 fixture"; exit 77; }

. "$SRC/tests/serve_chat.bash"
serve_tmp

serve_start "$TMP/server.log" --model "$FX/tiny-v3" --model-name tiny-v3 --local-nodes 1 \
    --listen 127.0.0.1:0 --max-context 1024 || exit 1
python3 "$SRC/tests/serve_tools_ref.py" "$URL" "$FX/tiny-v3" || FAILED=1
if npm_client; then
    DSINFER_URL=$URL DSINFER_MODEL=tiny-v3 node "$SRC/tests/npm/openai_tools_forced.mjs" ||
        FAILED=1
fi
[ "$FAILED" = 0 ] || { tail -30 "$TMP/server.log"; exit 1; }

# R1's answer opens with a thinking block: a forced call's grammar starts after "</think>".
serve_stop
serve_start "$TMP/server-r1.log" --model "$FX/tiny-v3" --model-name tiny-r1 --chat-template r1 \
    --local-nodes 1 --listen 127.0.0.1:0 --max-context 1024 || exit 1
# The reasoning is free (the random model rarely closes it), then exactly the calls block.
BODY='{"model":"tiny-r1","messages":[{"role":"user","content":"hi"}],"tool_choice":"required",
"max_tokens":40,"temperature":0,"logit_bias":{"1":-100},
"tools":[{"type":"function","function":{"name":"f","description":"d","parameters":{}}}]}'
CODE=$(curl -s -o "$TMP/r1.json" -w '%{http_code}' -H 'Content-Type: application/json' \
    -d "$BODY" "$URL/v1/chat/completions")
python3 - "$TMP/r1.json" "$CODE" <<'PY' || { tail -5 "$TMP/server-r1.log"; exit 1; }
import json, sys
r = json.load(open(sys.argv[1]))
assert sys.argv[2] == "200", r
ch = r["choices"][0]
m = ch["message"]
assert ch["finish_reason"] in ("length", "tool_calls"), ch
assert m.get("reasoning_content"), ("the thinking block is free", m)
if ch["finish_reason"] == "tool_calls":
    assert m["tool_calls"][0]["function"]["name"] == "f", m
print("ok: R1 with a forced call: reasoning first, then only calls (finish %s)"
      % ch["finish_reason"])
PY
echo "PASS"
