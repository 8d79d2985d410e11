#!/bin/bash
# test_cli_bench_serve.sh - the HTTP API through curl, and `dsinfer bench serve` against it.
# The server is test_unit_api_server --serve (the API on its deterministic echo backend, on a
# free port of 127.0.0.1). Checks: curl streaming and non-streaming give the same text, 401
# without the key, 413 for an oversize body, 404 for an unknown model; then the load tool: its
# percentiles equal a reference over the JSON's per-request records, goodput counts exactly the
# requests meeting the SLOs, the timeline adds up, a request rate sends at its rate and a seed
# repeats the requests, a ramp never exceeds its concurrency, chats come from the sample
# dataset, `bench compare` prints the ratios, errors by status, and bad options are refused.
set -u
unset DSINFER_API_KEY OPENAI_API_KEY # the load tool reads them: each run here says its key
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

# --- the load tool: fixed concurrency, SLOs, JSON, timeline, SVG ------------------------------
dsinfer bench serve --url "$URL" --api-key k3y --concurrency 1,4 --requests 12 --prompt-len 20 \
    --max-tokens 8 --slo ttft=4ms,tpot=2.5ms --json "$TMP/bench.json" --svg "$TMP/bench.svg" \
    --timeline "$TMP/timeline.json" --html "$TMP/bench.html" >"$TMP/table.txt" \
    2>"$TMP/bench.err" || { cat "$TMP/bench.err"; fail "dsinfer bench serve exited $?"; }
cat "$TMP/table.txt"
grep -q $'\r' "$TMP/bench.err" && fail "a progress bar was drawn on a non-terminal"
python3 - "$TMP/bench.json" "$TMP/bench.svg" "$TMP/timeline.json" <<'EOF' || fail "bench JSON/SVG"
import json, sys
import xml.etree.ElementTree as ET
r = json.load(open(sys.argv[1]))
assert r["schema"] == "dsinfer-bench-serve/2", r["schema"]
assert r["model"] == "test-model" and r["output_len"] == {"min": 8, "max": 8}, r
assert [l["concurrency"] for l in r["levels"]] == [1, 4], r["levels"]
assert len(r["records"]) == 24, len(r["records"])

def pct(values, p):
    """Nearest rank, the reference: the value at rank ceil(p n / 100)."""
    v = sorted(values)
    return v[max(1, -(-p * len(v) // 100)) - 1] if v else None

for i, l in enumerate(r["levels"]):
    assert l["requests"] == 12 and l["ok"] == 12 and l["errors"] == {} and l["failed"] == 0, l
    assert l["output_tokens"] == 12 * 8, l  # 20-word prompts echoed, cut at max_tokens
    assert l["output_tokens_per_s"] > 0 and l["requests_per_s"] > 0, l
    recs = [x for x in r["records"] if x["level"] == i]
    assert len(recs) == 12 and all(x["error"] is None and x["status"] == 200 for x in recs)
    # every percentile equals the reference computed over the raw records
    figures = {"ttft_s": [x["ttft_s"] for x in recs if x["ttft_s"] is not None],
               "tpot_s": [x["tpot_s"] for x in recs if x["tpot_s"] is not None],
               "e2el_s": [x["e2el_s"] for x in recs],
               "itl_s": [g for x in recs for g in x["itl_s"]]}
    assert len(figures["itl_s"]) == 12 * 7, len(figures["itl_s"])
    for k, values in figures.items():
        for p in (50, 90, 99):
            assert l[k][f"p{p}"] == pct(values, p), (i, k, p, l[k], pct(values, p))
        assert abs(l[k]["mean"] - sum(values) / len(values)) < 1e-9, (k, l[k])
        assert 0 < l[k]["p50"] <= l[k]["p90"] <= l[k]["p99"] < 10, (k, l[k])
    assert l["latency_s"]["p99"] == l["e2el_s"]["p99"]
    # goodput counts exactly the requests meeting every SLO (TTFT <= 4 ms, TPOT <= 2.5 ms)
    met = sum(1 for x in recs if x["ttft_s"] <= 0.004 and
              (x["tpot_s"] is None or x["tpot_s"] <= 0.0025))
    assert l["slo_met"] == met, (l["slo_met"], met)
    assert abs(l["goodput_per_s"] - met / l["duration_s"]) < 1e-6 * max(1, l["goodput_per_s"])
    print(f"level {i}: percentiles equal the records', goodput {met} of 12 requests")
assert r["slo"] == {"ttft_s": 0.004, "tpot_s": 0.0025, "e2el_s": None}, r["slo"]
assert [e["kind"] for e in r["events"]] == ["level", "level"], r["events"]
t = json.load(open(sys.argv[3]))
assert t["schema"] == "dsinfer-bench-serve-timeline/1" and t["bucket_s"] == 1
assert sum(b["ok"] for b in t["buckets"]) == 24 and sum(b["started"] for b in t["buckets"]) == 24
assert abs(sum(b["output_tokens_per_s"] for b in t["buckets"]) - 24 * 8) < 1e-6
svg = ET.parse(sys.argv[2]).getroot()
assert svg.tag == "{http://www.w3.org/2000/svg}svg", svg.tag
texts = [t.text for t in svg.iter("{http://www.w3.org/2000/svg}text")]
assert "concurrency (parallel requests)" in texts and "Throughput" in texts, texts
assert len(list(svg.iter("{http://www.w3.org/2000/svg}polyline"))) == 7
print("bench JSON, timeline and SVG ok")
EOF

# --- a request rate: the sends follow the seeded arrivals, and repeat with the seed ------------
for run in a b; do
    dsinfer bench serve --url "$URL" --api-key k3y --request-rate 40 --requests 80 --seed 11 \
        --prompt-len 4:40 --output-len 2:6 --json "$TMP/rate-$run.json" >/dev/null \
        2>"$TMP/rate.err" || { cat "$TMP/rate.err"; fail "bench serve --request-rate exited"; }
done
python3 - "$TMP/rate-a.json" "$TMP/rate-b.json" <<'EOF' || fail "request rate"
import json, statistics, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
l = a["levels"][0]
assert l["mode"] == "rate" and l["request_rate"] == 40 and l["burstiness"] == 1, l
assert l["ok"] == 80, l
starts = sorted(x["start_s"] for x in a["records"])
gaps = [y - x for x, y in zip(starts, starts[1:])]
mean = (starts[-1] - starts[0]) / (len(starts) - 1)
cv = statistics.pstdev(gaps) / mean
print(f"rate 40/s sent at {1 / mean:.1f}/s, CV of the gaps {cv:.2f}")
assert 0.7 < mean * 40 < 1.4 and 0.6 < cv < 1.5, (mean, cv)
key = lambda r: [(x["prompt_words"], x["max_tokens"]) for x in r["records"]]
assert key(a) == key(b), "one seed, different requests"
assert all(4 <= x["prompt_words"] <= 40 and 2 <= x["max_tokens"] <= 6 for x in a["records"])
assert all(x["output_tokens"] == min(x["prompt_words"], x["max_tokens"]) for x in a["records"])
EOF

# --- a ramp, and chats from the sample dataset on the chat endpoint ---------------------------
dsinfer bench serve --url "$URL" --api-key k3y --ramp 1:4:2s --prompt-len 8 --output-len 4 \
    --json "$TMP/ramp.json" --api chat --dataset "$DSINFER_SOURCE/scripts/sample-chats.jsonl" \
    >/dev/null 2>"$TMP/ramp.err" || { cat "$TMP/ramp.err"; fail "bench serve --ramp exited"; }
python3 - "$TMP/ramp.json" "$DSINFER_SOURCE/scripts/sample-chats.jsonl" <<'EOF' || fail "ramp"
import json, sys
r = json.load(open(sys.argv[1]))
l = r["levels"][0]
assert l["mode"] == "ramp" and l["ramp"] == {"from": 1, "to": 4, "duration_s": 2}, l
assert l["ok"] == l["requests"] > 10 and r["endpoint"] == "/v1/chat/completions", l
# in flight at each send: never more than the ramp's concurrency at that moment, 1 to 4 in four
# equal steps (+1: the clocks of the worker and of the record differ by the time to build a
# request); and 4 at once was reached
recs = r["records"]
most = 0
for x in recs:
    t = x["start_s"] - l["start_s"]
    busy = sum(1 for y in recs if y["start_s"] <= x["start_s"] < y["start_s"] + y["e2el_s"])
    assert busy <= 1 + min(4, 1 + int(4 * t / 2 + 1e-9)), (t, busy)
    most = max(most, busy)
assert most >= 4, most
words = {len(c["conversations"][0]["value"].split()) for c in map(json.loads, open(sys.argv[2]))}
assert all(x["prompt_words"] in words for x in recs), "prompts not from the dataset"
assert all(x["max_tokens"] == 4 for x in recs)  # --output-len given: it wins over the answers
print(f"ramp: {len(recs)} chats from the dataset, ok")
EOF

# --- bench compare: the ratios of the headline numbers ----------------------------------------
dsinfer bench compare "$TMP/rate-a.json" "$TMP/rate-b.json" >"$TMP/compare.txt" \
    || fail "bench compare exited $?"
python3 - "$TMP/rate-a.json" "$TMP/rate-b.json" "$TMP/compare.txt" <<'EOF' || fail "compare"
import json, sys
a, b = (json.load(open(p))["levels"][0] for p in sys.argv[1:3])
rows = {line[:22].strip(): line[22:].split() for line in open(sys.argv[3])}
assert rows["requests/s"][:3] == [f"{a['requests_per_s']:.2f}", f"{b['requests_per_s']:.2f}",
                                  f"{b['requests_per_s'] / a['requests_per_s']:.3f}"], rows
r = b["ttft_s"]["p99"] / a["ttft_s"]["p99"]
assert rows["TTFT p99 (ms)"][2] == f"{r:.3f}", rows
print("compare ok")
EOF
# A vLLM serving-benchmark result (`vllm bench serve --save-result` keys) compares as one level.
cat >"$TMP/vllm.json" <<'EOF'
{"model_id": "other-server", "duration": 10.0, "completed": 80, "failed": 0,
 "request_throughput": 8.0, "request_goodput": null, "output_throughput": 32.0,
 "mean_ttft_ms": 12.0, "median_ttft_ms": 10.0, "p99_ttft_ms": 40.0,
 "mean_tpot_ms": 5.0, "median_tpot_ms": 4.0, "p99_tpot_ms": 9.0,
 "mean_itl_ms": 5.0, "median_itl_ms": 4.5, "p99_itl_ms": 11.0}
EOF
dsinfer bench compare "$TMP/vllm.json" "$TMP/rate-a.json" >"$TMP/compare-vllm.txt" \
    || fail "bench compare with a vLLM result exited $?"
python3 - "$TMP/rate-a.json" "$TMP/compare-vllm.txt" <<'EOF' || fail "compare with vLLM"
import json, sys
b = json.load(open(sys.argv[1]))["levels"][0]
rows = {line[:22].strip(): line[22:].split() for line in open(sys.argv[2])}
assert rows["level (A / B)"][:2] == ["vllm", "rate=40/s"], rows
assert rows["requests/s"][:3] == ["8.00", f"{b['requests_per_s']:.2f}",
                                  f"{b['requests_per_s'] / 8:.3f}"], rows
assert rows["TTFT p50 (ms)"][:3] == ["10.00", f"{1e3 * b['ttft_s']['p50']:.2f}",
                                     f"{b['ttft_s']['p50'] / 0.010:.3f}"], rows
assert rows["goodput (requests/s)"][0] == "-" and rows["E2E latency p50 (ms)"][0] == "-", rows
print("compare with a vLLM result ok")
EOF
dsinfer bench compare "$TMP/rate-a.json" >/dev/null 2>&1 && fail "compare with one file: exit 0"
dsinfer bench compare "$TMP/rate-a.json" "$TMP/table.txt" >/dev/null 2>&1 \
    && fail "compare with a non-JSON file: exit 0"

# Every request refused (wrong key): reported per status, exit code 1.
dsinfer bench serve --url "$URL/v1" --api-key wrong --model test-model --concurrency 2 \
    --requests 4 --max-tokens 4 --json "$TMP/bad.json" >"$TMP/bad.txt" 2>&1
rc=$?
[ $rc = 1 ] || fail "all requests failing: exit $rc, want 1"
python3 -c 'import json,sys; l=json.load(open(sys.argv[1]))["levels"][0]; assert l["errors"]=={"401":4} and l["ok"]==0, l' \
    "$TMP/bad.json" || fail "errors by status: $(cat "$TMP/bad.txt")"

# The key from the environment, as dsinfer serve and OpenAI's clients take it.
DSINFER_API_KEY=k3y dsinfer bench serve --url "$URL" --concurrency 1 --requests 2 --max-tokens 2 \
    >"$TMP/env.txt" 2>&1 || fail "DSINFER_API_KEY not used: $(cat "$TMP/env.txt")"
OPENAI_API_KEY=k3y dsinfer bench serve --url "$URL" --concurrency 1 --requests 2 --max-tokens 2 \
    >"$TMP/env.txt" 2>&1 || fail "OPENAI_API_KEY not used: $(cat "$TMP/env.txt")"

# Nobody listening: connection errors, exit 1, no hang.
dsinfer bench serve --url http://127.0.0.1:1 --model m --requests 2 --concurrency 1 \
    >"$TMP/conn.txt" 2>&1
[ $? = 1 ] || fail "unreachable server: want exit 1"
grep -q "conn:2" "$TMP/conn.txt" || fail "unreachable server: $(cat "$TMP/conn.txt")"

# Bad options are usage errors.
for args in "--concurrency 0" "--concurrency 1,x" "--requests -3" "--url https://x" \
    "--api graphql" "--url http://127.0.0.1:99999" "--request-rate 0" "--request-rate 2,x" \
    "--ramp 1:4" "--ramp 0:4:10s" "--ramp 1:4:10h" "--concurrency 2 --ramp 1:2:1s" \
    "--prompt-len 9:3" "--output-len 0" "--slo ttft=fast" "--burstiness 0" \
    "--dataset /nonexistent.jsonl"; do
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
