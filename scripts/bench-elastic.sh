#!/usr/bin/env bash
# Serving throughput before, during and after a node joins, a node drains and a node fails
# (issue 7), with the time to detect the failure, the time to serve again, and the requests the
# re-plans resumed. Joins and drains switch plans live; a failure restarts the requests.
# A coordinator with the HTTP API and 2 node processes on loopback; `dsinfer bench serve` loads it.
# Usage: scripts/bench-elastic.sh [MODEL (default models/default)] [BUILD (default build)]
#                                [REPLAN (live|restart, default live)] [bench serve options...]
# REQUESTS (environment, default 64): requests per steady phase; twice that while a change happens.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-models/default}
BIN=${2:-build}/cli
REPLAN=${3:-live}
N=${REQUESTS:-64}
shift $(($# < 3 ? $# : 3))
OUT=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
export DSINFER_SECRET=${DSINFER_SECRET:-bench-elastic-secret-0123456789}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
CPORT=$(free_port); HPORT=$(free_port)
URL=http://127.0.0.1:$HPORT
BENCH=(--url "$URL" --concurrency 8 --prompt-len 32 --max-tokens 32 "$@")

"$BIN/dsinfer-coordinator" --nodes 2 --stages 1 --model "$MODEL" --listen "127.0.0.1:$CPORT" \
  --http "127.0.0.1:$HPORT" --heartbeat-ms 100 --node-timeout-ms 1000 --replan "$REPLAN" \
  2>"$OUT/coord.log" &
pids+=($!)
node() { "$BIN/dsinfer-node" --coordinator "127.0.0.1:$CPORT" --model "$MODEL" --name "$1" \
           --threads 1 2>"$OUT/$1.log" & pids+=($!); }
node n0; node n1
for _ in $(seq 300); do curl -sf "$URL/health" >/dev/null 2>&1 && break; sleep 0.1; done

stamp() { date +%H:%M:%S.%3N; }
"$BIN/dsinfer" bench serve "${BENCH[@]}" --requests $N --json "$OUT/before.json" 2>/dev/null >/dev/null

# A node joins while requests stream.
"$BIN/dsinfer" bench serve "${BENCH[@]}" --requests $((2 * N)) --json "$OUT/join.json" 2>/dev/null >/dev/null &
b=$!; sleep 1; JOIN_AT=$(stamp); node n2; wait $b
"$BIN/dsinfer" bench serve "${BENCH[@]}" --requests $N --json "$OUT/after_join.json" 2>/dev/null >/dev/null

# A node drains (SIGTERM) while requests stream.
"$BIN/dsinfer" bench serve "${BENCH[@]}" --requests $((2 * N)) --json "$OUT/drain.json" 2>/dev/null >/dev/null &
b=$!; sleep 1; DRAIN_AT=$(stamp); kill -TERM "${pids[3]}"; wait "${pids[3]}" 2>/dev/null || true; wait $b
"$BIN/dsinfer" bench serve "${BENCH[@]}" --requests $N --json "$OUT/after_drain.json" 2>/dev/null >/dev/null

# A node dies (kill -9) while requests stream.
"$BIN/dsinfer" bench serve "${BENCH[@]}" --requests $((2 * N)) --json "$OUT/fail.json" 2>/dev/null >/dev/null &
b=$!; sleep 1; KILL_AT=$(stamp); kill -9 "${pids[2]}"; wait "${pids[2]}" 2>/dev/null || true; wait $b
"$BIN/dsinfer" bench serve "${BENCH[@]}" --requests $N --json "$OUT/after_fail.json" 2>/dev/null >/dev/null

python3 - "$OUT" "$JOIN_AT" "$DRAIN_AT" "$KILL_AT" <<'PY'
import json, re, sys
out, join_at, drain_at, kill_at = sys.argv[1:5]
def secs(t):
    h, m, s = t.split(':'); return int(h) * 3600 + int(m) * 60 + float(s)
print('| phase | requests/s | output tok/s | errors | TTFT p50 / p99 (ms) | TPOT p50 / p99 (ms) |')
print('|---|---|---|---|---|---|')
for name, label in [('before', 'before (2 nodes)'), ('join', 'during a join'),
                    ('after_join', 'after the join (3 nodes)'), ('drain', 'during a drain'),
                    ('after_drain', 'after the drain (2 nodes)'), ('fail', 'during a kill -9'),
                    ('after_fail', 'after the failure (1 node)')]:
    lv = json.load(open(f'{out}/{name}.json'))['levels'][0]
    errors = sum(lv['errors'].values())
    print(f"| {label} | {lv['requests_per_s']:.1f} | {lv['output_tokens_per_s']:.0f} | {errors} | "
          f"{1000 * lv['ttft_s']['p50']:.1f} / {1000 * lv['ttft_s']['p99']:.1f} | "
          f"{1000 * lv['tpot_s']['p50']:.2f} / {1000 * lv['tpot_s']['p99']:.2f} |")
log = open(f'{out}/coord.log').read().splitlines()
def first(pattern, t0, t1='23:59:59.999'):
    """(time, text) of the first coordinator log line matching pattern in [t0, t1)."""
    for line in log:
        m = re.match(r'(\d\d:\d\d:\d\d\.\d\d\d) ', line)
        if m and re.search(pattern, line) and secs(t0) <= secs(m.group(1)) < secs(t1):
            return secs(m.group(1)), re.sub(r'^.*?\] \w+ +\S+ ', '', line)
    return None, None
def report(what, t0, t1, event):
    seen, _ = first(event, t0, t1)
    ready, how = first(r'all \d+ nodes ready: (serving|switched)', t0, t1)
    done, _ = first(r'every node switched', t0, t1)
    _, restarted = first(r'submitted \d+ requests|\d+ requests re-submitted', t0, t1)
    if seen is None or ready is None:
        print(f'{what}: not seen in the log'); return
    kind = (f'live switch, the old plan released {1000 * (done - ready):.0f} ms later'
            if 'switched' in how and done else 'restart')
    print(f'{what}: seen {1000 * (seen - secs(t0)):.0f} ms after it began, the new plan serving '
          f'{1000 * (ready - seen):.0f} ms later ({kind}); {restarted or "no request restarted"}')
print()
report('join', join_at, drain_at, r'joined')
report('drain (SIGTERM)', drain_at, kill_at, r'drains')
report('kill -9', kill_at, '23:59:59.999', r'lost')
PY
