#!/usr/bin/env bash
# Serving under a load ramp while the cluster changes: a coordinator with the HTTP API and 2 node
# processes on loopback; `dsinfer bench serve --ramp` loads it while a third and a fourth node
# join, experts are rebalanced by load, one node drains (SIGTERM) and one is killed (kill -9).
# bench serve polls /metrics and `dsinfer cluster status`, so its timeline carries the events; the
# report (JSON, timeline, HTML) lands in OUT. Exits 1 when a request failed or an event is
# missing from the timeline.
#
# Usage: scripts/bench-elastic.sh [MODEL (default models/default)] [BUILD (default build)]
#                                [REPLAN (live|restart, default live)] [bench serve options...]
# Environment: RAMP    FROM:TO:SECONDS of the ramp (default 1:16:120)
#              OUT     folder for the results (default: a new temporary folder, printed)
#              THREADS compute threads per node (default 1)
# The changes happen at 20% (join), 35% (join), 45% (rebalance), 55% (drain) and 75% (kill -9)
# of the ramp. A rebalance the coordinator refuses (too little load counted yet) is reported and
# not expected in the timeline.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-models/default}
BIN=${2:-build}/cli
REPLAN=${3:-live}
shift $(($# < 3 ? $# : 3))
RAMP=${RAMP:-1:16:120}
THREADS=${THREADS:-1}
IFS=: read -r _ _ SECS <<<"$RAMP"
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
pids=()
sleeper=
cleanup() {
  for p in "${pids[@]}" $sleeper; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 143' TERM INT # a test's timeout: the EXIT trap kills what was started
export DSINFER_SECRET=${DSINFER_SECRET:-bench-elastic-secret-0123456789}
free_port() { python3 tests/free_ports.py; }
CPORT=$(free_port); HPORT=$(free_port)
URL=http://127.0.0.1:$HPORT

"$BIN/dsinfer-coordinator" --nodes 2 --stages 1 --model "$MODEL" --control "127.0.0.1:$CPORT" \
  --listen "127.0.0.1:$HPORT" --heartbeat-ms 100 --node-timeout-ms 1000 --replan "$REPLAN" \
  2>"$OUT/coord.log" &
pids+=($!)
echo $! >"$OUT/pids" # every process this script starts, for whoever checks none is left
declare -A pid # node name -> process id
node() { "$BIN/dsinfer-node" --coordinator "127.0.0.1:$CPORT" --model "$MODEL" --name "$1" \
           --threads "$THREADS" 2>"$OUT/$1.log" & pids+=($!); pid[$1]=$!; echo $! >>"$OUT/pids"; }
node n0; node n1
for _ in $(seq 600); do curl -sf "$URL/health" >/dev/null 2>&1 && break; sleep 0.1; done
curl -sf "$URL/health" >/dev/null || { echo "bench-elastic: the cluster did not start" >&2; exit 1; }

"$BIN/dsinfer" bench serve --url "$URL" --ramp "${RAMP}s" --prompt-len 16:64 --output-len 16:48 \
  --seed 1 --coordinator "127.0.0.1:$CPORT" --json "$OUT/bench.json" \
  --timeline "$OUT/timeline.json" --html "$OUT/report.html" "$@" >"$OUT/table.txt" \
  2>"$OUT/bench.log" &
bench=$!
pids+=($bench)
echo $bench >>"$OUT/pids"
t0=$(date +%s.%N)
at() { # sleep until FRACTION of the ramp, then say what happens
  local wait
  wait=$(python3 -c "import sys,time; print(max(0, $t0 + $SECS * $1 - time.time()))")
  sleep "$wait" & sleeper=$! # waited for in the background, so that a signal ends it at once
  wait $sleeper
  printf '%6.1f s  %s\n' "$(python3 -c "import time; print(time.time() - $t0)")" "$2" \
    | tee -a "$OUT/actions.txt"
}
at 0.20 "node n2 joins"; node n2
at 0.35 "node n3 joins"; node n3
at 0.45 "experts rebalanced by load (dsinfer cluster rebalance)"
"$BIN/dsinfer" cluster rebalance --coordinator "127.0.0.1:$CPORT" >>"$OUT/actions.txt" 2>&1 \
  && REBALANCED=1 || echo "(refused: see above)" | tee -a "$OUT/actions.txt"
at 0.55 "node n1 drains (SIGTERM)"; kill -TERM "${pid[n1]}"
at 0.75 "node n2 is killed (kill -9)"
{ kill -9 "${pid[n2]}"; wait "${pid[n2]}"; } 2>/dev/null || true # no "Killed" line from bash
rc=0
wait "$bench" || rc=$?
if [ $rc != 0 ]; then
  cat "$OUT/bench.log" >&2
  echo "bench-elastic: bench serve failed (exit $rc)" >&2
fi
cat "$OUT/table.txt"

python3 - "$OUT" "${REBALANCED:-0}" <<'PY'
import json, sys
out = sys.argv[1]
r = json.load(open(f"{out}/bench.json"))
l = r["levels"][0]
events = [e for e in r["events"] if e["kind"] != "level"]
print(f"\n{l['requests']} requests, {l['ok']} ok, {l['failed']} failed "
      f"{l['errors'] or ''}; {l['output_tokens_per_s']:.1f} output tokens/s over "
      f"{l['duration_s']:.0f} s")
print("\nevents seen by bench serve (from /metrics and cluster status):")
for e in events:
    print(f"{e['t_s']:7.1f} s  {e['kind']:<11} {e['source']:<8} {e['detail']}")
t = json.load(open(f"{out}/timeline.json"))
# throughput between the operator's actions, from the timeline
cuts = [0.0] + [e["t_s"] for e in events if e["kind"] in ("join", "drain", "failure",
                                                           "rebalance")] + \
       [t["duration_s"]]
print("\n| from (s) | to (s) | output tok/s | requests/s | TTFT p50 (ms, median of seconds) |")
print("|---|---|---|---|---|")
for a, b in zip(cuts, cuts[1:]):
    bs = [x for x in t["buckets"] if a <= x["t_s"] < b]
    if not bs:
        continue
    tok = sum(x["output_tokens_per_s"] for x in bs) / len(bs)
    req = sum(x["requests_per_s"] for x in bs) / len(bs)
    ttft = sorted(x["ttft_s"]["p50"] for x in bs if x["ttft_s"]["p50"] is not None)
    med = f"{1000 * ttft[len(ttft) // 2]:.0f}" if ttft else "-"
    print(f"| {a:.0f} | {b:.0f} | {tok:.1f} | {req:.2f} | {med} |")
kinds = [e["kind"] for e in events]
want = (("join", 2), ("drain", 1), ("failure", 1))
want += (("rebalance", 1),) if sys.argv[2] == "1" else ()
missing = [k for k, n in want if kinds.count(k) < n]
print(f"\nreport: {out}/report.html, {out}/bench.json, {out}/timeline.json")
if l["failed"] or missing or l["ok"] == 0:
    print(f"bench-elastic: {l['failed']} failed requests; events missing: {missing or 'none'}")
    sys.exit(1)
PY
