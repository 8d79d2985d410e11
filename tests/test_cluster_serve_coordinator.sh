#!/bin/bash
# test_cluster_serve_coordinator.sh - `dsinfer-coordinator --http`: the same OpenAI API on the
# coordinator daemon. Before any node joins, /health is 503 "starting" and a completion gets 503;
# once a dsinfer-node joins, a greedy completion equals `dsinfer run` on the ids of
# `dsinfer tokenize --bos`; SIGTERM stops the coordinator and the node (both exit 0). Also:
# --http without --model is refused.
set -u
FX=${DSINFER_FIXTURES:?DSINFER_FIXTURES is not set}
MODEL=$FX/tiny-v3
for p in dsinfer dsinfer-coordinator dsinfer-node; do
    command -v $p >/dev/null || { echo "FAIL: $p is not on PATH"; exit 1; }
done
command -v curl >/dev/null || { echo "SKIPPED: no curl"; exit 77; }

. "$(dirname "$0")/serve_chat.bash"
serve_tmp
export DSINFER_SECRET=5e7e5e7e5e7e5e7e5e7e5e7e5e7e5e7e

dsinfer-coordinator --nodes 1 --config "$MODEL/config.json" --http 127.0.0.1:0 2>"$TMP/bad.log"
[ $? = 2 ] && grep -q "needs --model" "$TMP/bad.log" || fail "--http without --model: $(cat "$TMP/bad.log")"

coord_start "$TMP/coord.log" --nodes 1 --model "$MODEL" --control 127.0.0.1:0 \
    --http 127.0.0.1:0 || exit 1
PROMPT="Once upon a time"
BODY="{\"model\":\"tiny-v3\",\"prompt\":\"$PROMPT\",\"max_tokens\":10,\"temperature\":0}"

code=$(curl -sS -o "$TMP/h0.json" -w '%{http_code}' "$URL/health")
[ "$code" = 503 ] && grep -q starting "$TMP/h0.json" || fail "health before nodes: $code $(cat "$TMP/h0.json")"
code=$(curl -sS -o "$TMP/c0.json" -w '%{http_code}' -d "$BODY" "$URL/v1/completions")
[ "$code" = 503 ] || fail "completion before nodes: $code $(cat "$TMP/c0.json")"

node_start "$TMP/node.log" --model "$MODEL" --threads 1
wait_healthy "$COORD_PID"
code=$(curl -sS -o "$TMP/c.json" -w '%{http_code}' -d "$BODY" "$URL/v1/completions")
[ "$code" = 200 ] || fail "completion: $code $(cat "$TMP/c.json")"
ids=$(dsinfer tokenize --model "$MODEL" --bos --text "$PROMPT" | tr ' ' ',')
dsinfer run --model "$MODEL" --prompt-ids "$ids" --max-tokens 10 2>/dev/null | tr ',' ' ' >"$TMP/gen"
dsinfer detokenize --model "$MODEL" --skip-special $(cat "$TMP/gen") >"$TMP/want.txt"
python3 - "$TMP/c.json" "$TMP/want.txt" <<'EOF' || fail "the coordinator's answer differs from dsinfer run"
import json, sys
got = json.load(open(sys.argv[1]))["choices"][0]["text"]
want = open(sys.argv[2], encoding="utf-8").read()
assert got == want, (got, want)
print("coordinator --http == dsinfer run:", json.dumps(got))
EOF

# The sampling controls and logprobs reach the node from the coordinator too (the reference
# checks are test_cluster_serve_params'): EOS forced by logit_bias but masked for 3 tokens.
BODY2="{\"model\":\"tiny-v3\",\"prompt\":\"$PROMPT\",\"max_tokens\":10,\"temperature\":0,
  \"logit_bias\":{\"1\":100},\"min_tokens\":3,\"logprobs\":2,\"frequency_penalty\":0.5}"
code=$(curl -sS -o "$TMP/p.json" -w '%{http_code}' -d "$BODY2" "$URL/v1/completions")
python3 - "$TMP/p.json" <<'EOF2' || fail "controls and logprobs through the coordinator: $code"
import json, sys
c = json.load(open(sys.argv[1]))["choices"][0]
assert c["finish_reason"] == "stop" and len(c["logprobs"]["token_logprobs"]) == 4, c
assert all(len(t) == 2 for t in c["logprobs"]["top_logprobs"]), c
print("coordinator --http: min_tokens, logit_bias and logprobs:", c["logprobs"]["token_logprobs"])
EOF2
code=$(curl -sS -o "$TMP/t.json" -w '%{http_code}' \
    -d '{"model":"tiny-v3","prompt":"x","echo":true,"logprobs":1}' "$URL/v1/completions")
[ "$code" = 400 ] && grep -q '"param":"echo"' "$TMP/t.json" ||
    fail "echo with logprobs: $code $(cat "$TMP/t.json")"
code=$(curl -sS -o "$TMP/t.json" -w '%{http_code}' \
    -d '{"model":"tiny-v3","prompt":"xyz","echo":true,"max_tokens":2}' "$URL/v1/completions")
[ "$code" = 200 ] && grep -q '"text":"xyz' "$TMP/t.json" || fail "echo: $code $(cat "$TMP/t.json")"

stop_wait "$COORD_PID" || fail "coordinator exited with $? after SIGTERM"
stop_wait "$NODE_PID" 0 || fail "node exited with $?"
grep -q ERROR "$TMP/coord.log" "$TMP/node.log" && { grep ERROR "$TMP/coord.log" "$TMP/node.log"; fail "errors logged"; }
[ "$FAILED" = 0 ] && echo "coordinator --http checks passed"
exit "$FAILED"
