#!/bin/bash
# test_cluster_serve_http.sh - what careless and hostile HTTP clients do to `dsinfer serve`
# (tiny-v3, one local node, 127.0.0.1):
#   - a client that half-closes after its request (shutdown(SHUT_WR)) still gets its answer;
#   - HTTP/0.9 request lines and header names with spaces get 400;
#   - the answers the server gives by itself (404, 405, 408, 413, 431, 400, 503) are counted in
#     dsinfer_http_requests_total;
#   - connections refused for --max-connections log one WARN, not one each;
#   - when every node dies mid-stream, the stream ends with an error event and [DONE].
set -u
FX=${DSINFER_FIXTURES:?DSINFER_FIXTURES is not set}
MODEL=$FX/tiny-v3
command -v dsinfer >/dev/null || { echo "FAIL: dsinfer is not on PATH"; exit 1; }
command -v python3 >/dev/null || { echo "SKIPPED: no python3"; exit 77; }

. "$(dirname "$0")/serve_chat.bash"
serve_tmp

serve_start "$TMP/server.log" --model "$MODEL" --local-nodes 1 --listen 127.0.0.1:0 \
    --max-context 4096 --max-connections 4 --request-timeout 500 --max-body 1K --max-header 1K ||
    exit 1
echo "server at $URL"

python3 - "$URL" "$SERVER_PID" "$TMP/server.log" <<'EOF'
import json, os, signal, socket, subprocess, sys, time, urllib.parse

url = urllib.parse.urlparse(sys.argv[1])
server_pid, log_path = int(sys.argv[2]), sys.argv[3]
failed = 0

T0 = time.time()
def section(msg):
    print(f"--- [{time.time() - T0:.1f}s] {msg}", flush=True)

def fail(msg):
    global failed
    print("FAIL:", msg)
    failed = 1

def conn(timeout=30):
    s = socket.create_connection((url.hostname, url.port), timeout=timeout)
    return s

def read_all(s):
    data = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except socket.timeout:
        data += b"<timeout>"
    return data.decode("utf-8", "replace")

def raw(request, half_close=False, timeout=30):
    s = conn(timeout)
    s.sendall(request)
    if half_close:
        s.shutdown(socket.SHUT_WR)
    data = read_all(s)
    s.close()
    return data

def status_of(data):
    try:
        return int(data.split(" ", 2)[1])
    except (IndexError, ValueError):
        return None

def metrics():
    return raw(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")

def count(text, endpoint, code):
    want = 'dsinfer_http_requests_total{endpoint="%s",code="%d"} ' % (endpoint, code)
    for line in text.splitlines():
        if line.startswith(want):
            return int(float(line[len(want):]))
    return 0

body = b'{"model":"tiny-v3","prompt":"Hello","max_tokens":4,"temperature":0}'
post = (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)) + body

section("Half-close after")
# Half-close after a whole request: the answer still comes, then the connection closes.
for stream in (False, True):
    b = body if not stream else body[:-1] + b',"stream":true}'
    req = (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"Content-Length: %d\r\n\r\n" % len(b)) + b
    data = raw(req, half_close=True)
    if status_of(data) != 200 or ("finish_reason" not in data) or "<timeout>" in data or (
            stream and "data: [DONE]" not in data):
        fail(f"half-closed client (stream {stream}) got: {data[:300]!r}")

section("HTTP/0.9 and header")
# HTTP/0.9 and header names that are not tokens.
for name, req in [("HTTP/0.9", b"GET /health\r\n\r\n"),
                  ("HTTP/0.9 POST", b"POST /v1/completions\r\n\r\n"),
                  ("space in a header name", b"GET /health HTTP/1.1\r\nHost: x\r\nX Bad: 1\r\n\r\n"),
                  ("space before the colon", b"GET /health HTTP/1.1\r\nHost : x\r\n\r\n")]:
    data = raw(req)
    if status_of(data) != 400:
        fail(f"{name}: want 400, got {data[:200]!r}")
if status_of(raw(b"GET /health HTTP/2.0\r\nHost: x\r\n\r\n")) not in (400, 505):
    fail("HTTP/2.0 text request line not refused")

section("The server's own answers")
# The server's own answers are counted.
before = metrics()
cases = [
    (404, "other", b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    (405, "/v1/completions",
     b"GET /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    (413, "/v1/completions", b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n"),
    (431, "other", b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 2000 + b"\r\n\r\n"),
    (400, "/health", b"GET /health\r\n\r\n"),
    (408, "other", b"GET /health HTTP/1.1\r\nHost: x\r\n"),  # never finished: the timeout answers
]
for code, endpoint, req in cases:
    t = time.time()
    data = raw(req)
    if time.time() - t > 5:
        fail(f"{code}: the answer took {time.time() - t:.1f} s")
    if status_of(data) != code:
        fail(f"want {code}, got {data[:200]!r}")
after = metrics()
for code, endpoint, _ in cases:
    if count(after, endpoint, code) != count(before, endpoint, code) + 1:
        fail(f"{code} on {endpoint} not counted in dsinfer_http_requests_total")

section("Refused connections")
# Refused connections: many refusals, one WARN.
held = [conn() for _ in range(4)]
time.sleep(0.2)
refused = 0
for _ in range(30):
    data = raw(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    refused += status_of(data) == 503
for s in held:
    s.close()
if refused < 30:
    fail(f"only {refused} of 30 connections over --max-connections were refused")
time.sleep(0.3)
warns = sum("refus" in l and "connections open" in l for l in open(log_path, errors="replace"))
if warns != 1:
    fail(f"{warns} WARN lines for 30 refused connections (want 1)")

section("Every node dies")
nodes = subprocess.run(["pgrep", "-P", str(server_pid)], capture_output=True, text=True).stdout.split()

# The node of a loopback-only serve listens (UCX's tcp transport) on loopback only.
try:
    ss = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout
except FileNotFoundError:
    ss = None
if ss is not None:
    for line in ss.splitlines():
        if any(f"pid={pid}," in line for pid in nodes):
            local = line.split()[3]
            if not (local.startswith("127.") or local.startswith("[::1]")):
                fail(f"a node listens on {local}: {line}")

# Every node dies mid-stream: an error event, then [DONE].
long = b'{"model":"tiny-v3","prompt":"The quick brown fox","max_tokens":4000,"temperature":0,"stream":true}'
s = conn()
s.sendall((b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"Content-Length: %d\r\n\r\n" % len(long)) + long)
first = s.recv(4096)
time.sleep(0.2)
for pid in nodes:
    os.kill(int(pid), signal.SIGKILL)
data = (first.decode("utf-8", "replace") + read_all(s))
s.close()
if '"error"' not in data or "data: [DONE]" not in data or "<timeout>" in data:
    fail(f"stream when every node died ended without an error event and [DONE]: ...{data[-400:]!r}")
sys.exit(failed)
EOF
rc=$?
echo "--- [${SECONDS}s] waiting for the server to stop"
serve_stop 0 # it stops by itself once its nodes are gone
[ $rc = 0 ] && echo PASS
exit $rc
