#!/bin/bash
# test_cluster_prefix_stages.sh - the prefix cache on pipelines of several stages and with
# speculative decoding (docs/MEMORY.md, "Prefix cache"), through `dsinfer serve` with an exact
# (f32) KV cache:
# - two stages, tiny-v3: two requests sharing a prompt prefix of 100+ tokens, one after the
#   other: the second takes the first's whole blocks on both stages (every node's
#   dsinfer_node_prefix_cache_hit_tokens counts them, the same on each) and both answers equal
#   those with --prefix-cache off; the same request again finds its own blocks;
# - the fallback when a later stage lacks the blocks stage 0 found (DSINFER_TEST_PREFIX_DROP
#   makes stage 1 drop its cached blocks before it looks up): the sequence is submitted again
#   without prefix reuse (dsinfer_prefix_cache_misses_total), the answers stay exact, no block
#   stays used;
# - speculative decoding (--speculative-tokens 1, tiny-v3-mtp) on one stage and on two: a
#   prompt sharing a prefix of 100+ tokens with an earlier one takes its blocks (the MTP layer's
#   rows included), and the greedy answers equal one process without speculation or cache; the
#   fixture's own prompts still give pN.gen.tokens.
set -u
. "$(dirname "$0")/fixture.bash" # need_fixture
need_fixture tiny-v3 tiny-v3-mtp
MODEL=$FIXDIR/tiny-v3
MTP=$FIXDIR/tiny-v3-mtp
command -v curl >/dev/null || { echo "*** SKIPPED: no curl ***"; exit 77; }
. "$(dirname "$0")/serve_chat.bash" # serve_tmp, serve_start, serve_stop, fail
. "$(dirname "$0")/spec_ref.bash"   # ref
serve_tmp
export DSINFER_KV_DTYPE=f32 UCX_WARN_UNUSED_ENV_VARS=n

start() { # start NAME MODEL FLAGS...: dsinfer serve in the background, URL set
    local name=$1 model=$2
    shift 2
    serve_start "$TMP/$name.log" --model "$model" --listen 127.0.0.1:0 --threads 1 --mem 1G \
        --max-context 1024 "$@" || exit 1
}
stop() { serve_stop || fail "serve exited with $? after SIGTERM"; }
ask() { # ask FILE PROMPT_JSON [MAX_TOKENS]: a greedy completion
    curl -sS -m 300 -o "$TMP/$1.json" -H 'Content-Type: application/json' \
        -d "{\"model\":\"tiny-v3\",\"prompt\":$2,\"max_tokens\":${3:-24},\"temperature\":0,\"ignore_eos\":true}" \
        "$URL/v1/completions"
}
text() { python3 -c "import json, sys; print(json.load(open(sys.argv[1]))['choices'][0]['text'])" "$TMP/$1.json"; }
metrics() { curl -sS "$URL/metrics" >"$TMP/metrics.txt"; }
metric() { # metric NAME -> its value summed over series (0 when absent)
    curl -sS "$URL/metrics" | awk -v n="$1" '{k = $1; sub(/\{.*/, "", k)} k == n {v += $2} END {print v + 0}'
}
node_hits() { # the nodes' dsinfer_node_prefix_cache_hit_tokens values, sorted, on one line
    curl -sS "$URL/metrics" | awk '$1 ~ /^dsinfer_node_prefix_cache_hit_tokens\{/ {print $2}' | sort -n | tr '\n' ' '
}
wait_nodes() { # wait_nodes N MIN: until N nodes report at least MIN hit tokens each
    for _ in $(seq 60); do
        python3 - "$1" "$2" "$(node_hits)" <<'PY' && return 0
import sys
n, lo, v = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3].split()
sys.exit(0 if len(v) == n and all(float(x) >= lo for x in v) else 1)
PY
        sleep 0.5
    done
    return 1
}
wait_unused() { # until no node holds a used block
    for _ in $(seq 40); do
        metrics
        grep -Eq '^dsinfer_node_kv_blocks\{node="[^"]*",state="used"\} [1-9]' "$TMP/metrics.txt" || return 0
        sleep 0.5
    done
    return 1
}

# A shared prefix of well over 128 tokens, and two different tails.
PREFIX=$(python3 -c "print(' '.join('The quick brown fox %d jumps over the lazy dog.' % i for i in range(14)))")
A="\"$PREFIX Then the fox ran home\""
B="\"$PREFIX Hello there, how are you\""

# ---- two stages: reference with the cache off, then on ----
start off "$MODEL" --local-nodes 2 --stages 2 --prefix-cache off
ask off_a "$A" && ask off_b "$B" || fail "two stages, cache off: requests"
stop
start on "$MODEL" --local-nodes 2 --stages 2
ask on_a "$A" && ask on_b "$B" && ask on_b2 "$B" || fail "two stages, cache on: requests"
for k in a b b2; do
    ref_k=${k%2}
    [ "$(text "on_$k")" = "$(text "off_$ref_k")" ] || fail "two stages: $k with the cache on differs from off"
done
# B takes the two whole blocks it shares with A; B again its own whole blocks but the last
# token's: on each of the two nodes alike.
wait_nodes 2 128 || fail "two stages: the nodes' hit tokens $(node_hits) (want >= 128 on both)"
sleep 1.5 # (the last heartbeats)
hits=$(node_hits)
python3 - "$hits" "$(python3 -c "import json; print(json.load(open('$TMP/on_b.json'))['usage']['prompt_tokens'])")" <<'PY' || fail "two stages: hit tokens $hits"
import sys
v = [int(float(x)) for x in sys.argv[1].split()]
b = int(sys.argv[2])
want = 128 + (b - 1) // 64 * 64
assert len(v) == 2 and v[0] == v[1] and v[0] >= want and v[0] % 64 == 0, (v, want)
print("two stages: each node found", v[0], "prompt tokens cached (>=", want, ")")
PY
[ "$(metric dsinfer_prefix_cache_misses_total)" = 0 ] || fail "two stages: a prefix miss without pressure"
wait_unused || fail "two stages: blocks still used: $(grep dsinfer_node_kv "$TMP/metrics.txt")"
stop

# ---- the fallback: stage 1 lacks the blocks stage 0 found ----
DSINFER_TEST_PREFIX_DROP=1 start drop "$MODEL" --local-nodes 2 --stages 2
ask drop_a "$A" && ask drop_b "$B" && ask drop_b2 "$B" || fail "fallback: requests"
for k in a b b2; do
    ref_k=${k%2}
    [ "$(text "drop_$k")" = "$(text "off_$ref_k")" ] || fail "fallback: $k differs from the cache off"
done
for _ in $(seq 40); do
    [ "$(metric dsinfer_prefix_cache_misses_total)" -ge 2 ] 2>/dev/null && break
    sleep 0.5
done
misses=$(metric dsinfer_prefix_cache_misses_total)
[ "$misses" -ge 2 ] 2>/dev/null || fail "fallback: $misses prefix misses (want 2: B and B again)"
grep -q "submitted again without prefix reuse" "$TMP/drop.log" || fail "fallback: no log line of the miss"
wait_unused || fail "fallback: blocks still used: $(grep dsinfer_node_kv "$TMP/metrics.txt")"
stop

# ---- speculative decoding with the MTP layer ----
# A coordinator with the API (for /metrics; the model directory with a tokenizer) and nodes
# started on their own; the requests come from `dsinfer run --coordinator`, which prints token ids.
M=$TMP/tiny-v3-mtp
mkdir -p "$M"
for f in "$MTP"/*; do ln -s "$(cd "$(dirname "$f")" && pwd)/$(basename "$f")" "$M/"; done
for f in tokenizer.json tokenizer_config.json; do cp "$MODEL/$f" "$M/"; done
export DSINFER_SECRET=prefix-stages-secret-0123456789
# Token-id prompts: a shared prefix of 150 ids, then the fixture's prompts as tails.
SHARED=$(python3 -c "print(','.join(str((i * 37 + 11) % 1000) for i in range(150)))")
for p in 0 1 2; do
    P[$p]=$(ref "$MTP" "p$p.tokens")
    G[$p]=$(ref "$MTP" "p$p.gen.tokens")
    L[$p]="$SHARED,${P[$p]}"
    # the reference: one process, no speculation, no cache
    R[$p]=$(dsinfer run --model "$MTP" --prompt-ids "${L[$p]}" --max-tokens 12 --threads 1 \
        2>/dev/null) || fail "spec: reference p$p"
done
free_port() { python3 "$(dirname "$0")/free_ports.py"; }
for stages in 1 2; do
    ADDR=127.0.0.1:$(free_port)
    HTTP=127.0.0.1:$(free_port)
    URL=http://$HTTP
    procs=()
    dsinfer-coordinator --nodes "$stages" --stages "$stages" --model "$M" --control "$ADDR" \
        --listen "$HTTP" --max-context 1024 2>"$TMP/coord$stages.log" &
    procs+=($!)
    cpid=$!
    for i in $(seq "$stages"); do
        DSINFER_LOG=debug dsinfer-node --coordinator "$ADDR" --model "$MTP" --name "n$i" --threads 1 --mem 3G \
            --max-context 1024 --speculative-tokens 1 2>"$TMP/spec${stages}_node$i.log" &
        procs+=($!)
    done
    wait_for_line "$TMP/coord$stages.log" "cluster ready" "$cpid" ||
        { cat "$TMP/coord$stages.log"; fail "spec, $stages stage(s): not ready"; }
    client() { # client PROMPT: the greedy tokens, comma-separated
        timeout 120 dsinfer run --coordinator "$ADDR" --prompt-ids "$1" --max-tokens 12 \
            2>>"$TMP/client$stages.log"
    }
    for p in 0 1 2; do
        out=$(client "${L[$p]}") || fail "spec, $stages stage(s): p$p after the prefix failed"
        [ "$out" = "${R[$p]}" ] || fail "spec, $stages stage(s): p$p after the prefix: '$out', want '${R[$p]}'"
        out=$(client "${P[$p]}") || fail "spec, $stages stage(s): fixture p$p failed"
        [ "$out" = "${G[$p]}" ] || fail "spec, $stages stage(s): fixture p$p: '$out', want '${G[$p]}'"
    done
    # p1 and p2 took the shared prefix's two whole blocks but the last position, on every node
    wait_nodes "$stages" $((2 * 127)) || fail "spec, $stages stage(s): hit tokens $(node_hits)"
    grep -h -q "MTP layer loaded, 1 draft" "$TMP"/spec${stages}_node*.log ||
        fail "spec, $stages stage(s): no MTP layer"
    # every node took the positions, and the last one kept speculating with its MTP cache
    for i in $(seq "$stages"); do
        [ "$(grep -c "127 prompt tokens found in the prefix cache" "$TMP/spec${stages}_node$i.log")" = 2 ] ||
            fail "spec, $stages stage(s): node $i did not take 127 positions twice"
    done
    grep -h -q "decodes without speculation" "$TMP"/spec${stages}_node*.log &&
        fail "spec, $stages stage(s): a sequence lost its speculation"
    python3 - "$(node_hits)" <<'PY' || fail "spec: hit tokens $(node_hits)"
import sys
v = [int(float(x)) for x in sys.argv[1].split()]
assert all(x == v[0] and x % 127 == 0 for x in v), v
print("speculation: each node found", v[0], "prompt tokens cached")
PY
    wait_unused || fail "spec, $stages stage(s): blocks still used"
    for p in "${procs[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${procs[@]}"; do wait "$p" 2>/dev/null; done
done
unset DSINFER_SECRET
[ "$FAILED" = 0 ] && echo "prefix cache on several stages: checks passed"
exit "$FAILED"
