#!/bin/bash
# test_cluster_serve_bounds.sh - every numeric parameter of /v1/chat/completions and
# /v1/completions at its bounds and just past them, and extreme doubles (1e-300, 1e300, -0,
# subnormals, huge integers), whole and streamed, through `dsinfer serve` on tiny-v3 with
# --max-queue 4 (n above it is a 400 naming n): each answer is a 400 naming the parameter or a
# 200 that completes (a finish reason, and [DONE] for a stream) within a bounded time. A value the control protocol cannot
# carry used to be accepted and then hang its request, holding a queue slot: after all cases the
# queue is empty and the server still answers.
set -u
FX=${DSINFER_FIXTURES:?DSINFER_FIXTURES is not set}
MODEL=$FX/tiny-v3
command -v dsinfer >/dev/null || { echo "FAIL: dsinfer is not on PATH"; exit 1; }
command -v python3 >/dev/null || { echo "SKIPPED: no python3"; exit 77; }

. "$(dirname "$0")/serve_chat.bash"
serve_tmp

serve_start "$TMP/server.log" --model "$MODEL" --local-nodes 1 --listen 127.0.0.1:0 \
    --max-queue 4 --max-context 64 || exit 1
echo "server at $URL"

python3 - "$URL" <<'EOF'
import http.client, json, sys, urllib.parse

url = urllib.parse.urlparse(sys.argv[1])
LIMIT = 63  # --max-context 64: max_tokens up to 63
failed = 0

def request(path, body, timeout=60):
    c = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
    c.request("POST", path, body=body, headers={"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read().decode("utf-8", "replace")
    c.close()
    return r.status, data

def completed(data, stream):
    """A finish reason (and [DONE] with no error event for a stream)."""
    if not stream:
        d = json.loads(data)
        return d["choices"][0]["finish_reason"] in ("stop", "length")
    events = data.split("\n\n")
    if len(events) < 2 or events[-1] != "" or events[-2] != "data: [DONE]":
        return False
    finish = None
    for e in events[:-2]:
        d = json.loads(e[6:])
        if "error" in d:
            return False
        for ch in d["choices"]:
            finish = ch.get("finish_reason") or finish
    return finish in ("stop", "length")

# (parameter, raw JSON value, what is expected: 200, 400 or "either"). Raw text, so that -0.0,
# 4.9e-324 and integers past 2^63 reach the server as written.
CASES = [
    ("temperature", "0", 200), ("temperature", "-0.0", 200), ("temperature", "2", 200),
    ("temperature", "2.0000001", 400), ("temperature", "-1e-300", 200),  # -0 as a float32: greedy
    ("temperature", "1e-300", 200), ("temperature", "4.9e-324", 200),
    ("temperature", "2.2250738585072014e-308", 200), ("temperature", "1e-45", 200),
    ("temperature", "1e300", 400), ("temperature", "-1e300", 400), ("temperature", "100", 400),
    ("temperature", "1", 200), ("temperature", "3", 400), ("temperature", '"1"', 400),
    ("top_p", "1", 200), ("top_p", "1.0000001", 400), ("top_p", "0", 400), ("top_p", "-0.0", 400),
    ("top_p", "1e-300", 400), ("top_p", "4.9e-324", 400), ("top_p", "1e-46", 400),
    ("top_p", "1.5e-45", 200), ("top_p", "1.1754943508222875e-38", 200), ("top_p", "0.5", 200),
    ("top_p", "1e300", 400), ("top_p", "-1e300", 400),
    ("top_k", "0", 200), ("top_k", "1", 200), ("top_k", "16777216", 200),
    ("top_k", "16777217", 400), ("top_k", "-1", 200), ("top_k", "-2", 400),
    ("top_k", "2147483647", 400),
    ("top_k", "2147483648", 400), ("top_k", "9223372036854775807", 400),
    ("top_k", "-9223372036854775808", 400), ("top_k", "1e300", 400), ("top_k", "1.5", 400),
    ("top_k", "1e-300", 400), ("top_k", "-0.0", 400),
    ("max_tokens", "1", 200), ("max_tokens", "0", 400), ("max_tokens", "-1", 400),
    ("max_tokens", str(LIMIT), "either"), ("max_tokens", str(LIMIT + 1), 400),
    ("max_tokens", "262144", 400), ("max_tokens", "262145", 400),
    ("max_tokens", "2147483647", 400), ("max_tokens", "2147483648", 400),
    ("max_tokens", "9223372036854775807", 400), ("max_tokens", "-9223372036854775808", 400),
    ("max_tokens", "1e300", 400), ("max_tokens", "1e-300", 400), ("max_tokens", "2.0", 400),
    ("max_completion_tokens", "1", 200), ("max_completion_tokens", "0", 400),
    ("max_completion_tokens", str(LIMIT + 1), 400),
    ("max_completion_tokens", "9223372036854775807", 400),
    ("max_completion_tokens", "1e300", 400),
    ("seed", "0", 200), ("seed", "-1", 200), ("seed", "9223372036854775807", 200),
    ("seed", "-9223372036854775808", 200), ("seed", "1e300", 400), ("seed", "0.5", 400),
    ("n", "1", 200), ("n", "0", 400), ("n", "2", 200), ("n", "4", 200), ("n", "5", 400),
    ("n", "17", 400),
    ("n", "9223372036854775807", 400),
    ("n", "1e300", 400),
]
# Integers past 64 bits are not JSON numbers the parser keeps: 400 (invalid JSON, with the
# position of the number).
HUGE = [("top_k", "99999999999999999999"), ("max_tokens", "-99999999999999999999"),
        ("seed", "18446744073709551616")]

ENDPOINTS = [
    ("/v1/chat/completions", '"messages":[{"role":"user","content":"Hi"}]'),
    ("/v1/completions", '"prompt":"Hi"'),
]

n = 0
for path, base in ENDPOINTS:
    for param, raw, want in CASES:
        for stream in (False, True):
            body = '{"model":"tiny-v3",%s' % base
            if param not in ("max_tokens", "max_completion_tokens"):
                body += ',"max_tokens":2'
            body += ',"%s":%s,"stream":%s}' % (param, raw, "true" if stream else "false")
            n += 1
            try:
                status, data = request(path, body)
            except Exception as e:  # a timeout is the hang this test is about
                print(f"FAIL: {path} {param}={raw} stream={stream}: {e!r}")
                failed = 1
                continue
            ok = False
            if status == 200:
                ok = want in (200, "either") and completed(data, stream)
            elif status == 400:
                err = json.loads(data).get("error", {})
                named = err.get("param") == param or (
                    want == "either" and err.get("param") in ("messages", "prompt"))
                ok = want in (400, "either") and named
            if not ok:
                print(f"FAIL: {path} {param}={raw} stream={stream}: want {want}, "
                      f"got {status}: {data[:300]}")
                failed = 1
    for param, raw in HUGE:
        body = '{"model":"tiny-v3",%s,"max_tokens":2,"%s":%s}' % (base, param, raw)
        n += 1
        status, data = request(path, body)
        if status != 400 or json.loads(data)["error"]["code"] != "invalid_json":
            print(f"FAIL: {path} {param}={raw}: got {status}: {data[:300]}")
            failed = 1

# Nothing hangs on: five more requests than --max-queue 4 complete one after the other.
for i in range(5):
    status, data = request("/v1/completions",
                           '{"model":"tiny-v3","prompt":"again","max_tokens":2,"stream":true}')
    if status != 200 or not completed(data, True):
        print(f"FAIL: request {i} after the cases: {status} {data[:300]}")
        failed = 1
c = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
c.request("GET", "/metrics")
metrics = c.getresponse().read().decode()
for line in ("dsinfer_queue_depth 0", "dsinfer_running_sequences 0"):
    if line not in metrics.splitlines():
        print(f"FAIL: /metrics has no line '{line}'")
        failed = 1
print(f"{n} requests checked")
sys.exit(failed)
EOF
rc=$?
if grep -q "not sending an invalid" "$TMP/server.log"; then
    grep "not sending an invalid" "$TMP/server.log" | head -3
    echo "FAIL: the coordinator built a SUBMIT the wire refuses"
    rc=1
fi
serve_stop
[ $rc = 0 ] && echo PASS
exit $rc
