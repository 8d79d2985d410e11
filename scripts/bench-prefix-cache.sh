#!/usr/bin/env bash
# Prefix caching on and off, interleaved: `dsinfer serve` (STAGES local nodes, one stage each) is
# started with --prefix-cache on, then off, ROUNDS times; each time `dsinfer bench serve` sends
# requests that all start with the same SHARED words (--shared-prefix) followed by their own
# words. Prints one line per run (median TTFT, output tok/s, requests/s per concurrency level,
# from the JSON results) and the server's prefix-cache counters; the JSON files land in OUT.
#
# Usage: scripts/bench-prefix-cache.sh [MODEL (default models/default)] [BUILD (default build)]
# Environment: SHARED words of the shared prefix (default 550: about 2000 tokens of the tiny
#                     preset's tokenizer)
#              ROUNDS on/off pairs (default 3)
#              LEVELS concurrency levels (default 1,4)
#              REQUESTS per level (default 16)
#              OUT    folder for the results (default: a new temporary folder, printed)
#              STAGES pipeline stages, one local node each (default 1)
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-models/default}
BIN=${2:-build}/cli
SHARED=${SHARED:-550}
ROUNDS=${ROUNDS:-3}
LEVELS=${LEVELS:-1,4}
REQUESTS=${REQUESTS:-16}
OUT=${OUT:-$(mktemp -d)}
STAGES=${STAGES:-1}
mkdir -p "$OUT"
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; }
trap cleanup EXIT
echo "results in $OUT"
for round in $(seq "$ROUNDS"); do
  for mode in on off; do
    log=$OUT/serve-$mode-$round.log
    "$BIN/dsinfer" serve --model "$MODEL" --local-nodes "$STAGES" --stages "$STAGES" \
      --listen 127.0.0.1:0 --threads 1 \
      --max-context 4096 --prefix-cache "$mode" 2>"$log" &
    pid=$!
    for _ in $(seq 600); do grep -q "ready: http://" "$log" && break; sleep 0.1; done
    url=$(grep -o 'ready: http://[0-9.:]*' "$log" | head -1 | sed 's/^ready: //')
    "$BIN/dsinfer" bench serve --url "$url" --concurrency "$LEVELS" --requests "$REQUESTS" \
      --shared-prefix "$SHARED" --prompt-len 16 --max-tokens 32 \
      --json "$OUT/$mode-$round.json" >"$OUT/$mode-$round.txt"
    hits=$(curl -sS "$url/metrics" | awk '/^dsinfer_prefix_cache_(hit|prompt)_tokens_total /{printf "%s=%s ", $1, $2}')
    python3 - "$OUT/$mode-$round.json" "$mode" "$round" "$hits" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
parts = []
for lv in r["levels"]:
    parts.append("c=%s TTFT p50 %.0f ms, %.0f out tok/s, %.2f req/s, %.0f prompt tok/req" % (
        lv["concurrency"], lv["ttft_s"]["p50"] * 1000, lv["output_tokens_per_s"],
        lv["requests_per_s"], lv["prompt_tokens"] / max(1, lv["ok"])))
print("round %s cache %-3s | %s | %s" % (sys.argv[3], sys.argv[2], " | ".join(parts), sys.argv[4]))
PY
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
  done
done
