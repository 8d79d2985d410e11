#!/bin/bash
# test_cluster_kv_pool.sh - admission by memory: `dsinfer serve` whose node has a KV pool of 4
# blocks (256 tokens of tiny-v3) answers three concurrent 110-token requests (2 blocks each, 6 in
# all) and one request with n=3 (6 blocks): sequences that cannot grow are preempted and prefilled
# again, every answer equals the same request served alone, /metrics counts the preemptions and
# shows the node's blocks (none used afterwards, free or kept by the prefix cache: no leak).
set -u
MODEL=${DSINFER_FIXTURES:?DSINFER_FIXTURES is not set}/tiny-v3
command -v curl >/dev/null || { echo "*** SKIPPED: no curl ***"; exit 77; }
. "$(dirname "$0")/serve_chat.bash"
TMP=$(mktemp -d)
PID=
cleanup() {
    [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
FAILED=0
fail() { echo "FAIL: $*"; FAILED=1; }

# tiny-v3 in f32: 4 layers x 64 tokens x 80 values x 4 bytes = 80 KiB a block.
dsinfer serve --model "$MODEL" --local-nodes 1 --listen 127.0.0.1:0 --threads 1 --mem 1G \
    --max-context 256 --kv-dtype f32 --kv-pool 320K 2>"$TMP/serve.log" &
PID=$!
wait_for_line "$TMP/serve.log" "ready: http://" "$PID" || { cat "$TMP/serve.log"; echo "FAIL: not ready"; exit 1; }
URL=$(grep -o 'ready: http://[0-9.:]*' "$TMP/serve.log" | head -1 | sed 's/^ready: //')
grep -q "KV pool 4 blocks of 64 tokens (f32" "$TMP/serve.log" || fail "--kv-pool did not reach the node"

ask() { # ask N PROMPT -> $TMP/out.N.json
    curl -sS -m 300 -o "$TMP/out.$1.json" -H 'Content-Type: application/json' \
        -d "{\"model\":\"tiny-v3\",\"prompt\":\"$2\",\"max_tokens\":100,\"temperature\":0,\"ignore_eos\":true}" \
        "$URL/v1/completions"
}
PROMPTS=("The quick brown fox" "Hello there, how are you" "One two three four five")
for i in 0 1 2; do
    ask "alone$i" "${PROMPTS[$i]}" || fail "request $i alone"
done
ASKS=
for i in 0 1 2; do
    ask "together$i" "${PROMPTS[$i]}" &
    ASKS="$ASKS $!"
done
for p in $ASKS; do wait "$p" || fail "a concurrent request failed"; done
python3 - "$TMP" <<'PY' || fail "answers"
import json, sys
tmp = sys.argv[1]
for i in range(3):
    a = json.load(open(f"{tmp}/out.alone{i}.json"))
    b = json.load(open(f"{tmp}/out.together{i}.json"))
    ta, tb = a["choices"][0]["text"], b["choices"][0]["text"]
    assert a["usage"]["completion_tokens"] == 100, a["usage"]
    assert b["usage"]["completion_tokens"] == 100, b["usage"]
    assert ta == tb, (i, ta, tb)
print("three concurrent answers == the same requests alone")
PY
# n=3 in one request: the parent and its two forks need 6 blocks of the 4, whatever the timing,
# so the forks are preempted (the copy of the parent's prompt finds no room, or a fork cannot
# grow) and submitted again; every choice still equals the request alone.
curl -sS -m 300 -o "$TMP/out.n3.json" -H 'Content-Type: application/json' \
    -d "{\"model\":\"tiny-v3\",\"prompt\":\"${PROMPTS[0]}\",\"max_tokens\":100,\"temperature\":0,\"ignore_eos\":true,\"n\":3}" \
    "$URL/v1/completions" || fail "the n=3 request"
python3 - "$TMP" <<'PY' || fail "n=3 answers"
import json, sys
tmp = sys.argv[1]
a = json.load(open(f"{tmp}/out.alone0.json"))["choices"][0]["text"]
b = json.load(open(f"{tmp}/out.n3.json"))
assert "choices" in b, b
assert len(b["choices"]) == 3 and all(c["text"] == a for c in b["choices"]), b
print("n=3 under preemption: three choices == the request alone")
PY
curl -sS "$URL/metrics" >"$TMP/metrics.txt"
n=$(awk '/^dsinfer_cluster_preemptions /{print $2}' "$TMP/metrics.txt")
echo "preemptions: ${n:-none}"
python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) >= 1 else 1)" "${n:-0}" ||
    fail "no preemption counted (/metrics: ${n:-missing})"
grep -q "preempted at" "$TMP/serve.log" || fail "the node did not log a preemption"
# The node's pool by heartbeat: 4 blocks, none used once the requests are done (free, or cached
# by the prefix cache: reusable either way).
free_or_cached() {
    awk '/^dsinfer_node_kv_blocks\{.*state="(free|cached)"\}/{n += $2} END{print n + 0}' "$TMP/metrics.txt"
}
for _ in $(seq 40); do
    curl -sS "$URL/metrics" >"$TMP/metrics.txt"
    [ "$(free_or_cached)" = 4 ] && break
    sleep 0.5
done
[ "$(free_or_cached)" = 4 ] ||
    fail "/metrics has no node with 4 free or cached KV blocks: $(grep dsinfer_node_kv "$TMP/metrics.txt")"
grep -E '^dsinfer_node_kv_blocks\{node="[^"]*",state="used"\} 0$' "$TMP/metrics.txt" >/dev/null ||
    fail "/metrics: KV blocks still used after the requests"
grep -E '^dsinfer_node_preemptions\{node="[^"]*"\} [1-9]' "$TMP/metrics.txt" >/dev/null ||
    fail "/metrics: no per-node preemption count"

kill -TERM "$PID"
wait "$PID" || fail "serve exited with $? after SIGTERM"
PID=

# The default storage (bf16; the test environment sets f32) serves through the same pool.
env -u DSINFER_KV_DTYPE dsinfer serve --model "$MODEL" --local-nodes 1 --listen 127.0.0.1:0 \
    --threads 1 --mem 1G --max-context 512 --kv-pool 160K 2>"$TMP/serve16.log" &
PID=$!
wait_for_line "$TMP/serve16.log" "ready: http://" "$PID" || { cat "$TMP/serve16.log"; echo "FAIL: bf16 not ready"; exit 1; }
URL=$(grep -o 'ready: http://[0-9.:]*' "$TMP/serve16.log" | head -1 | sed 's/^ready: //')
grep -q "KV pool 4 blocks of 64 tokens (bf16" "$TMP/serve16.log" || fail "bf16: the pool is not 4 bf16 blocks"
ASKS=
for i in 0 1 2; do
    ask "bf16_$i" "${PROMPTS[$i]}" &
    ASKS="$ASKS $!"
done
for p in $ASKS; do wait "$p" || fail "a bf16 request failed"; done
python3 - "$TMP" <<'PY' || fail "bf16 answers"
import json, sys
for i in range(3):
    b = json.load(open(f"{sys.argv[1]}/out.bf16_{i}.json"))
    assert b["usage"]["completion_tokens"] == 100, b
print("bf16: three concurrent answers of 100 tokens")
PY
# A request longer than the whole pool (4 blocks: 256 tokens, or 128 with the 2 blocks a bf16
# sequence's open f32 rows take; within --max-context 512) fails with a clear error instead of
# waiting forever: HTTP 400 naming the KV pool. (The three requests above, 2 blocks of rows and 2
# of f32 rows each, ran one at a time: admission waited or preempted, none failed.)
code=$(curl -sS -m 120 -o "$TMP/long.json" -w '%{http_code}' -H 'Content-Type: application/json' \
    -d '{"model":"tiny-v3","prompt":"Hi","max_tokens":300,"temperature":0,"ignore_eos":true}' \
    "$URL/v1/completions")
echo "request beyond the pool: HTTP $code $(head -c 200 "$TMP/long.json")"
grep -q "needs more than the 4 blocks" "$TMP/serve16.log" || fail "no error naming the pool for a too-long request"
[ "$code" = 400 ] && grep -q "KV cache than a node's pool" "$TMP/long.json" ||
    fail "the too-long request did not get a 400 naming the KV pool"
kill -TERM "$PID"
wait "$PID" || fail "bf16 serve exited with $? after SIGTERM"
PID=
[ "$FAILED" = 0 ] && echo "KV pool admission checks passed"
exit "$FAILED"
