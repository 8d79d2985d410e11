#!/bin/bash
# test_cluster_prefix_cache.sh - automatic prefix caching through `dsinfer serve` on the tiny-v3
# fixture with an exact (f32) KV cache:
# - the answers with --prefix-cache on equal those with it off: a request alone, two requests
#   sharing a prompt prefix of 100+ tokens one after the other (the second finds the first's
#   full blocks cached: /metrics dsinfer_prefix_cache_hit_tokens_total counts whole blocks of it,
#   dsinfer_prefix_cache_prompt_tokens_total all prompt tokens), the same request again, and a
#   chat equal to `dsinfer run --chat` asked twice;
# - the node shows cached blocks (dsinfer_node_kv_blocks state="cached") and none used after;
# - under pressure (a pool of 4 blocks, concurrent requests, preemptions and evictions) answers
#   stay exact;
# - --prefix-cache off finds nothing (hit tokens 0).
set -u
. "$(dirname "$0")/fixture.bash" # need_fixture
need_fixture tiny-v3
MODEL=$FIXDIR/tiny-v3
command -v curl >/dev/null || { echo "*** SKIPPED: no curl ***"; exit 77; }
. "$(dirname "$0")/serve_chat.bash" # serve_tmp, serve_start, serve_stop, fail
serve_tmp
export DSINFER_KV_DTYPE=f32

start() { # start NAME FLAGS...: dsinfer serve in the background, URL set
    local name=$1
    shift
    serve_start "$TMP/$name.log" --model "$MODEL" --local-nodes 1 --listen 127.0.0.1:0 \
        --threads 1 --mem 1G "$@" || exit 1
}
stop() { serve_stop || fail "serve exited with $? after SIGTERM"; }
ask() { # ask FILE PROMPT [MAX_TOKENS]
    curl -sS -m 300 -o "$TMP/$1.json" -H 'Content-Type: application/json' \
        -d "{\"model\":\"tiny-v3\",\"prompt\":\"$2\",\"max_tokens\":${3:-24},\"temperature\":0,\"ignore_eos\":true}" \
        "$URL/v1/completions"
}
metric() { # metric NAME -> its value (0 when absent)
    curl -sS "$URL/metrics" | awk -v n="$1" '$1 == n {v = $2} END {print v + 0}'
}
wait_metric() { # wait_metric NAME MIN: until the counter reaches MIN (heartbeats), prints it
    local v=0
    for _ in $(seq 60); do
        v=$(metric "$1")
        python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) >= float(sys.argv[2]) else 1)" "$v" "$2" && break
        sleep 0.5
    done
    echo "$v"
}

# A shared prefix of well over 128 tokens, and two different tails.
PREFIX=$(python3 -c "print(' '.join('The quick brown fox %d jumps over the lazy dog.' % i for i in range(14)))")
A="$PREFIX Then the fox ran home"
B="$PREFIX Hello there, how are you"
C="One two three four five six seven"

# Reference: the cache off.
start off --max-context 1024 --prefix-cache off
ask off_a "$A" && ask off_b "$B" && ask off_c "$C" || fail "requests with the cache off"
ask off_b2 "$B" || fail "request again with the cache off"
hits=$(wait_metric dsinfer_prefix_cache_prompt_tokens_total 1)
hits=$(metric dsinfer_prefix_cache_hit_tokens_total)
[ "$hits" = 0 ] || fail "--prefix-cache off found $hits tokens cached"
stop

# The cache on: the same answers, and B finds A's blocks.
start on --max-context 1024
ask on_a "$A" || fail "A with the cache on"
P1=$(wait_metric dsinfer_prefix_cache_prompt_tokens_total 1)
ask on_b "$B" && ask on_c "$C" && ask on_b2 "$B" || fail "requests with the cache on"
python3 - "$TMP" <<'PY' || fail "answers with the cache on"
import json, sys
tmp = sys.argv[1]
for k in ("a", "b", "c", "b2"):
    off = json.load(open(f"{tmp}/off_{k}.json"))
    on = json.load(open(f"{tmp}/on_{k}.json"))
    assert off["usage"]["completion_tokens"] == 24, off
    assert on["choices"][0]["text"] == off["choices"][0]["text"], (k, on, off)
a = json.load(open(f"{tmp}/on_a.json"))["usage"]["prompt_tokens"]
assert a > 128 + 20, a  # two whole blocks at least are shared by A and B
print("cache on == cache off for A, B, C, B again; A has", a, "prompt tokens")
PY
serve_chat "$URL" "$MODEL" "$TMP" || fail "chat (first) with the cache on"
serve_chat "$URL" "$MODEL" "$TMP" || fail "chat (again) with the cache on"
# A's prompt tokens, B's shared whole blocks, B again (its own blocks too), the chat again.
prompt_a=$(python3 -c "import json; print(json.load(open('$TMP/on_a.json'))['usage']['prompt_tokens'])")
prompt_b=$(python3 -c "import json; print(json.load(open('$TMP/on_b.json'))['usage']['prompt_tokens'])")
hits=$(wait_metric dsinfer_prefix_cache_hit_tokens_total 256)
prompts=$(metric dsinfer_prefix_cache_prompt_tokens_total)
echo "prompt tokens $prompts (A alone: $P1, A $prompt_a, B $prompt_b), found cached $hits"
[ "$P1" = "$prompt_a" ] || fail "A's prompt tokens: /metrics $P1, usage $prompt_a"
python3 - "$hits" "$prompt_a" "$prompt_b" <<'PY' || fail "hit tokens"
import sys
hits, a, b = (int(float(x)) for x in sys.argv[1:])
# B shares with A the whole blocks of the common prefix; B again finds all of its own whole blocks
# but the last token's block; each is a multiple of 64
shared = 128  # at least: the prefix is > 128 tokens
b_again = ((b - 1) // 64) * 64
assert hits % 64 == 0 and hits >= shared + b_again, (hits, shared, b_again)
print("hit tokens", hits, ">= B's shared", shared, "+ B again", b_again)
PY
for _ in $(seq 20); do
    curl -sS "$URL/metrics" >"$TMP/metrics.txt"
    grep -Eq '^dsinfer_node_kv_blocks\{node="[^"]*",state="used"\} 0$' "$TMP/metrics.txt" && break
    sleep 0.5
done
grep -Eq '^dsinfer_node_kv_blocks\{node="[^"]*",state="cached"\} [1-9]' "$TMP/metrics.txt" ||
    fail "/metrics shows no cached blocks: $(grep dsinfer_node_kv "$TMP/metrics.txt")"
grep -Eq '^dsinfer_node_kv_blocks\{node="[^"]*",state="used"\} 0$' "$TMP/metrics.txt" ||
    fail "/metrics: blocks still used after the requests: $(grep dsinfer_node_kv "$TMP/metrics.txt")"
stop

# Pressure: 4 blocks of 64 tokens (f32 tiny-v3: 80 KiB each). Short prompts (they fit), asked
# alone with the cache off, then concurrently and again with the cache on: evictions and
# preemptions, exact answers.
S1="The quick brown fox jumps over the lazy dog and keeps running far, the quick brown fox jumps over the lazy dog and keeps running far"
S2="Hello there, how are you doing today my good friend"
S3="One two three four five six seven eight nine ten"
start small_off --max-context 256 --kv-pool 320K --prefix-cache off
for i in 1 2 3; do
    v=S$i
    ask "small_off$i" "${!v}" 100 || fail "pressure: S$i alone"
done
stop
start small_on --max-context 256 --kv-pool 320K
for round in 1 2; do
    ASKS=
    for i in 1 2 3; do
        v=S$i
        ask "small_on${round}_$i" "${!v}" 100 &
        ASKS="$ASKS $!"
    done
    for p in $ASKS; do wait "$p" || fail "pressure: a concurrent request failed"; done
done
for i in 1 2 3; do
    v=S$i
    ask "small_seq$i" "${!v}" 100 || fail "pressure: S$i again"
done
python3 - "$TMP" <<'PY' || fail "pressure answers"
import json, sys
tmp = sys.argv[1]
for i in (1, 2, 3):
    want = json.load(open(f"{tmp}/small_off{i}.json"))["choices"][0]["text"]
    for name in (f"small_on1_{i}", f"small_on2_{i}", f"small_seq{i}"):
        got = json.load(open(f"{tmp}/{name}.json"))
        assert got["usage"]["completion_tokens"] == 100, got
        assert got["choices"][0]["text"] == want, (name, got, want)
print("under pressure (4 blocks, concurrent, evictions) == alone with the cache off")
PY
hits=$(wait_metric dsinfer_prefix_cache_hit_tokens_total 64)
echo "pressure: found cached $hits, preemptions $(metric dsinfer_cluster_preemptions)"
stop
[ "$FAILED" = 0 ] && echo "prefix cache checks passed"
exit "$FAILED"
