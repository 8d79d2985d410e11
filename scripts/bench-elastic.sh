#!/usr/bin/env bash
# Serving throughput before, during and after a node joins and a node fails (issue 7), with the
# time to detect the failure, the time to serve again, and the requests the re-plans resumed.
# A coordinator with the HTTP API and 2 node processes on loopback; `dsinfer bench serve` loads it.
# Usage: scripts/bench-elastic.sh [MODEL (default models/default)] [BUILD (default build)]
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-models/default}
BIN=${2:-build}/cli
OUT=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
export DSINFER_SECRET=${DSINFER_SECRET:-bench-elastic-secret-0123456789}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
CPORT=$(free_port); HPORT=$(free_port)
URL=http://127.0.0.1:$HPORT
BENCH=(--url "$URL" --concurrency 8 --prompt-len 32 --max-tokens 32)

"$BIN/dsinfer-coordinator" --nodes 2 --stages 1 --model "$MODEL" --listen "127.0.0.1:$CPORT" \
  --http "127.0.0.1:$HPORT" --heartbeat-ms 100 --node-timeout-ms 1000 2>"$OUT/coord.log" &
pids+=($!)
node() { "$BIN/dsinfer-node" --coordinator "127.0.0.1:$CPORT" --model "$MODEL" --name "$1" \
           --threads 1 2>"$OUT/$1.log" & pids+=($!); }
node n0; node n1
for _ in $(seq 300); do curl -sf "$URL/health" >/dev/null 2>&1 && break; sleep 0.1; done

stamp() { date +%H:%M:%S.%3N; }
"$BIN/dsinfer" bench serve "${BENCH[@]}" --requests 64 --json "$OUT/before.json" 2>/dev/null >/dev/null

# A node joins while requests stream.
"$BIN/dsinfer" bench serve "${BENCH[@]}" --requests 128 --json "$OUT/join.json" 2>/dev/null >/dev/null &
b=$!; sleep 1; JOIN_AT=$(stamp); node n2; wait $b
"$BIN/dsinfer" bench serve "${BENCH[@]}" --requests 64 --json "$OUT/after_join.json" 2>/dev/null >/dev/null

# A node dies (kill -9) while requests stream.
"$BIN/dsinfer" bench serve "${BENCH[@]}" --requests 128 --json "$OUT/fail.json" 2>/dev/null >/dev/null &
b=$!; sleep 1; KILL_AT=$(stamp); kill -9 "${pids[2]}"; wait "${pids[2]}" 2>/dev/null || true; wait $b
"$BIN/dsinfer" bench serve "${BENCH[@]}" --requests 64 --json "$OUT/after_fail.json" 2>/dev/null >/dev/null

python3 - "$OUT" "$JOIN_AT" "$KILL_AT" <<'PY'
import json, re, sys
out, join_at, kill_at = sys.argv[1:4]
def secs(t):
    h, m, s = t.split(':'); return int(h) * 3600 + int(m) * 60 + float(s)
print('| phase | requests/s | output tok/s | errors | TTFT p50 (ms) | TPOT p50 (ms) |')
print('|---|---|---|---|---|---|')
for name, label in [('before', 'before (2 nodes)'), ('join', 'during a join'),
                    ('after_join', 'after the join (3 nodes)'), ('fail', 'during a kill -9'),
                    ('after_fail', 'after the failure (2 nodes)')]:
    lv = json.load(open(f'{out}/{name}.json'))['levels'][0]
    errors = sum(lv['errors'].values())
    print(f"| {label} | {lv['requests_per_s']:.1f} | {lv['output_tokens_per_s']:.0f} | {errors} | "
          f"{1000 * lv['ttft_s']['p50']:.1f} | {1000 * lv['tpot_s']['p50']:.2f} |")
log = open(f'{out}/coord.log').read().splitlines()
def first_after(pattern, t0):
    for line in log:
        m = re.match(r'(\d\d:\d\d:\d\d\.\d\d\d) ', line)
        if m and re.search(pattern, line) and secs(m.group(1)) >= secs(t0):
            return secs(m.group(1)), line
    return None, None
lost, _ = first_after(r'lost', kill_at)
serving, _ = first_after(r'all \d+ nodes ready: serving', kill_at)
_, resumed = first_after(r'submitted \d+ requests', kill_at)
joined, _ = first_after(r'joined', join_at)
jserving, _ = first_after(r'all \d+ nodes ready: serving', join_at)
_, jresumed = first_after(r'submitted \d+ requests', join_at)
print()
if lost: print(f'kill -9: detected after {1000 * (lost - secs(kill_at)):.0f} ms, serving again '
               f'{1000 * (serving - lost):.0f} ms later; {resumed.split("] ")[-1] if resumed else "no request in flight"}')
if joined: print(f'join: registered {1000 * (joined - secs(join_at)):.0f} ms after start, serving in the new '
                 f'epoch {1000 * (jserving - joined):.0f} ms later; {jresumed.split("] ")[-1] if jresumed else ""}')
PY
