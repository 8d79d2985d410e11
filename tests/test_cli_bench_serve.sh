#!/bin/bash
# test_cli_bench_serve.sh - the HTTP API through curl, and `dsinfer bench serve` against it.
# The server is test_unit_api_server --serve (the API on its deterministic echo backend, on a
# free port of 127.0.0.1). Checks: curl streaming and non-streaming give the same text, 401
# without the key, 413 for an oversize body, 404 for an unknown model; then the load tool's
# table, JSON (parsed) and SVG (well-formed XML), its exit code when every request fails, and
# its refusal of bad options.
set -u
BUILD=${DSINFER_BUILD:?DSINFER_BUILD is not set}
SERVER=$BUILD/tests/test_unit_api_server
command -v dsinfer >/dev/null || { echo "FAIL: dsinfer is not on PATH"; exit 1; }
[ -x "$SERVER" ] || { echo "FAIL: $SERVER is not built"; exit 1; }
command -v curl >/dev/null || { echo "SKIPPED: no curl"; exit 77; }

TMP=$(mktemp -d)
SERVER_PID=
cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
FAILED=0
fail() { echo "FAIL: $*"; FAILED=1; }

"$SERVER" --serve "$TMP/port" --delay-ms 2 --api-key k3y --max-body 65536 2>"$TMP/server.log" &
SERVER_PID=$!
for _ in $(seq 100); do [ -s "$TMP/port" ] && break; sleep 0.05; done
[ -s "$TMP/port" ] || { cat "$TMP/server.log"; echo "FAIL: the server did not start"; exit 1; }
URL=http://127.0.0.1:$(cat "$TMP/port")
AUTH="Authorization: Bearer k3y"

# --- curl: the same text streamed and whole --------------------------------------------------
BODY='{"model":"test-model","messages":[{"role":"user","content":"~hmm alpha beta \"gamma\" delta"}]'
curl -sS -H "$AUTH" -H 'Content-Type: application/json' -d "$BODY}" "$URL/v1/chat/completions" \
    >"$TMP/whole.json" || fail "curl (whole)"
curl -sS -N -H "$AUTH" -d "$BODY,\"stream\":true}" "$URL/v1/chat/completions" >"$TMP/stream.txt" \
    || fail "curl (stream)"
python3 - "$TMP/whole.json" "$TMP/stream.txt" <<'EOF' || fail "streamed and whole answers differ"
import json, sys
whole = json.load(open(sys.argv[1]))
msg = whole["choices"][0]["message"]
events = open(sys.argv[2]).read().split("\n\n")
assert events[-1] == "" and events[-2] == "data: [DONE]", events[-3:]
text = reasoning = ""
for e in events[:-2]:
    assert e.startswith("data: "), e
    d = json.loads(e[6:])["choices"][0]["delta"]
    text += d.get("content") or ""
    reasoning += d.get("reasoning_content") or ""
assert text == msg["content"] == ' alpha beta "gamma" delta', (text, msg)
assert reasoning == msg["reasoning_content"] == "hmm", (reasoning, msg)
print("stream == whole:", repr(text))
EOF

# --- curl: errors --------------------------------------------------------------------------
code=$(curl -sS -o "$TMP/e401.json" -w '%{http_code}' -d "$BODY}" "$URL/v1/chat/completions")
[ "$code" = 401 ] || fail "no key: HTTP $code, want 401"
grep -q '"invalid_api_key"' "$TMP/e401.json" || fail "401 body: $(cat "$TMP/e401.json")"
head -c 70000 /dev/zero | tr '\0' 'a' >"$TMP/big.txt"
code=$(curl -sS -o /dev/null -w '%{http_code}' -H "$AUTH" --data-binary @"$TMP/big.txt" \
    "$URL/v1/completions")
[ "$code" = 413 ] || fail "oversize body: HTTP $code, want 413"
code=$(curl -sS -o "$TMP/e404.json" -w '%{http_code}' -H "$AUTH" \
    -d '{"model":"nope","prompt":"x"}' "$URL/v1/completions")
[ "$code" = 404 ] || fail "unknown model: HTTP $code, want 404"
grep -q '"model_not_found"' "$TMP/e404.json" || fail "404 body: $(cat "$TMP/e404.json")"

# --- the load tool ---------------------------------------------------------------------------
dsinfer bench serve --url "$URL" --api-key k3y --concurrency 1,4 --requests 12 --prompt-len 20 \
    --max-tokens 8 --json "$TMP/bench.json" --svg "$TMP/bench.svg" >"$TMP/table.txt" \
    2>"$TMP/bench.err" || { cat "$TMP/bench.err"; fail "dsinfer bench serve exited $?"; }
cat "$TMP/table.txt"
grep -q $'\r' "$TMP/bench.err" && fail "a progress bar was drawn on a non-terminal"
python3 - "$TMP/bench.json" "$TMP/bench.svg" <<'EOF' || fail "bench JSON/SVG"
import json, sys
import xml.etree.ElementTree as ET
r = json.load(open(sys.argv[1]))
assert r["model"] == "test-model" and r["max_tokens"] == 8, r
assert [l["concurrency"] for l in r["levels"]] == [1, 4], r["levels"]
for l in r["levels"]:
    assert l["requests"] == 12 and l["ok"] == 12 and l["errors"] == {}, l
    assert l["output_tokens"] == 12 * 8, l  # 20-word prompts echoed, cut at max_tokens
    assert l["output_tokens_per_s"] > 0 and l["requests_per_s"] > 0, l
    for k in ("ttft_s", "tpot_s", "latency_s"):
        p = l[k]
        assert 0 < p["p50"] <= p["p90"] <= p["p99"] < 10, (k, p)
svg = ET.parse(sys.argv[2]).getroot()
assert svg.tag == "{http://www.w3.org/2000/svg}svg", svg.tag
texts = [t.text for t in svg.iter("{http://www.w3.org/2000/svg}text")]
assert "concurrency (parallel requests)" in texts and "Throughput" in texts, texts
assert len(list(svg.iter("{http://www.w3.org/2000/svg}polyline"))) == 4
print("bench JSON and SVG ok")
EOF

# Every request refused (wrong key): reported per status, exit code 1.
dsinfer bench serve --url "$URL/v1" --api-key wrong --model test-model --concurrency 2 \
    --requests 4 --max-tokens 4 --json "$TMP/bad.json" >"$TMP/bad.txt" 2>&1
rc=$?
[ $rc = 1 ] || fail "all requests failing: exit $rc, want 1"
python3 -c 'import json,sys; l=json.load(open(sys.argv[1]))["levels"][0]; assert l["errors"]=={"401":4} and l["ok"]==0, l' \
    "$TMP/bad.json" || fail "errors by status: $(cat "$TMP/bad.txt")"

# Nobody listening: connection errors, exit 1, no hang.
dsinfer bench serve --url http://127.0.0.1:1 --model m --requests 2 --concurrency 1 \
    >"$TMP/conn.txt" 2>&1
[ $? = 1 ] || fail "unreachable server: want exit 1"
grep -q "conn:2" "$TMP/conn.txt" || fail "unreachable server: $(cat "$TMP/conn.txt")"

# Bad options are usage errors.
for args in "--concurrency 0" "--concurrency 1,x" "--requests -3" "--url https://x" \
    "--api graphql" "--url http://127.0.0.1:99999"; do
    # shellcheck disable=SC2086
    dsinfer bench serve $args >/dev/null 2>"$TMP/usage.txt"
    rc=$?
    [ $rc -ne 0 ] || fail "bench serve $args: exit 0"
    [ -s "$TMP/usage.txt" ] || fail "bench serve $args: no message"
done

# The server kept serving through all of that.
code=$(curl -sS -o /dev/null -w '%{http_code}' "$URL/health")
[ "$code" = 200 ] || fail "health after the test: $code"
[ $FAILED = 0 ] && echo "PASS"
exit $FAILED
