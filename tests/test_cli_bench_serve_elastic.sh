#!/bin/bash
# test_cli_bench_serve_elastic.sh - scripts/bench-elastic.sh in small form on the tiny-v3
# fixture: a 16 s ramp (1 to 3 parallel requests) against a 2-node cluster while a third and a
# fourth node join, experts are rebalanced, one node drains and one is killed. Checks, from bench
# serve's JSON and timeline: every request succeeded, the events were recorded (two joins, the
# rebalance when the coordinator accepted it, a drain, a failure, re-plans) in the order the
# script made them, the timeline holds them with every node's state and its buckets add up, the
# HTML report marks them; and no process is left behind.
set -u
FIXTURES=${DSINFER_FIXTURES:?DSINFER_FIXTURES is not set}
BUILD=${DSINFER_BUILD:?DSINFER_BUILD is not set}
SOURCE=${DSINFER_SOURCE:?DSINFER_SOURCE is not set}
MODEL=$FIXTURES/tiny-v3
[ -f "$MODEL/config.json" ] || { echo "SKIPPED: no tiny-v3 fixture"; exit 77; }
command -v curl >/dev/null || { echo "SKIPPED: no curl"; exit 77; }

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
FAILED=0
fail() { echo "FAIL: $*"; FAILED=1; }

OUT=$TMP/out RAMP=1:3:16 timeout 300 bash "$SOURCE/scripts/bench-elastic.sh" "$MODEL" "$BUILD" \
    live >"$TMP/script.txt" 2>&1
rc=$?
cat "$TMP/script.txt"
[ $rc = 0 ] || fail "bench-elastic.sh exited $rc"

python3 - "$TMP/out" <<'EOF' || fail "the report"
import json, sys
out = sys.argv[1]
r = json.load(open(f"{out}/bench.json"))
t = json.load(open(f"{out}/timeline.json"))
l = r["levels"][0]
assert l["mode"] == "ramp" and l["ok"] == l["requests"] > 0, l
assert l["failed"] == 0 and l["errors"] == {}, l["errors"]
assert r["server"] is not None and r["server"]["cluster_status"] is True, r["server"]
ev = [(e["kind"], e["detail"]) for e in t["events"] if e["kind"] != "level"]
kinds = [k for k, _ in ev]
print("events:", ev)
assert kinds.count("join") == 2 and kinds.count("failure") == 1, kinds
assert kinds.count("drain") + kinds.count("left") >= 1, kinds
assert kinds.count("replan") >= 3, kinds  # two joins, the drain, the failure (may coalesce)
rebalanced = "rebalanced:" in open(f"{out}/actions.txt").read()
assert kinds.count("rebalance") == rebalanced, (rebalanced, kinds)
# in the order the script made them
order = [d for k, d in ev if k in ("join", "drain", "failure")]
assert "(n2) joined" in order[0] and "(n3) joined" in order[1], order
assert "(n1)" in order[2] and "(n2) lost" in order[3], order
assert t["events"] == r["events"], "the timeline and the JSON disagree on events"
assert sum(b["ok"] for b in t["buckets"]) == l["ok"], "buckets do not add up"
assert sum(b["errors"] for b in t["buckets"]) == 0
assert len(t["samples"]) >= 8 and max(s["nodes_ready"] for s in t["samples"]) >= 3, t["samples"]
# per-node states from cluster status: every node seen, n2 ends lost, n1 ends drained
names = {n["name"] for c in t["cluster"] for n in c["nodes"]}
assert names == {"n0", "n1", "n2", "n3"}, names
last = {n["name"]: n["state"] for n in t["cluster"][-1]["nodes"]}
assert last["n2"] == "dead" and last["n1"] == "left", last
assert last["n0"] == "ready" and last["n3"] == "ready", last
html = open(f"{out}/report.html").read()
assert html.count("stroke-dasharray=\"3 3\"") >= 5 * len(ev), "event markers missing"
print(f"{l['ok']} requests ok through {len(ev)} events")
EOF

# No process of the run is left (the script kills its coordinator, nodes and bench on exit).
[ "$(wc -l <"$TMP/out/pids")" = 6 ] || fail "the script started $(wc -l <"$TMP/out/pids") processes"
for p in $(cat "$TMP/out/pids"); do
    kill -0 "$p" 2>/dev/null && { ps -o pid,args -p "$p"; fail "process $p left behind"; }
done

# Stopped half-way (as a timeout does), it still leaves nothing behind.
OUT=$TMP/stop RAMP=1:2:30 bash "$SOURCE/scripts/bench-elastic.sh" "$MODEL" "$BUILD" live \
    >"$TMP/stop.txt" 2>&1 &
script=$!
for _ in $(seq 300); do [ -s "$TMP/stop/actions.txt" ] && break; sleep 0.1; done
kill -TERM $script
wait $script
[ -s "$TMP/stop/actions.txt" ] || fail "the stopped run never reached its first change"
sleep 0.5
for p in $(cat "$TMP/stop/pids"); do
    kill -0 "$p" 2>/dev/null && { ps -o pid,args -p "$p"; fail "stopped run: process $p left"; }
done
[ $FAILED = 0 ] && echo "PASS"
exit $FAILED
