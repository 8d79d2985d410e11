#!/usr/bin/env bash
# A node cut off from the network (issue 7): one of three nodes runs in a network namespace made
# for this test, joined to the host by a veth pair; all traffic is TCP (UCX_TLS=tcp) so that it
# crosses the veth. Mid-generation the link goes down: the coordinator must notice the missed
# heartbeats, re-plan over the two survivors and finish the request with exactly the tokens of the
# single-process engine.
set -uo pipefail
FIX=${DSINFER_FIXTURES:-../shared/fixtures}/tiny-v3
if [ ! -d "$FIX" ]; then
  [ "${CI:-}" = true ] && { echo "ERROR: fixture $FIX missing under CI"; exit 1; }
  echo "*** SKIPPED: fixture $FIX missing ***"; exit 77
fi
if [ "$(id -u)" -ne 0 ] || ! command -v ip >/dev/null || ! ip netns list >/dev/null 2>&1; then
  [ "${CI:-}" = true ] && { echo "ERROR: network namespaces unavailable under CI (need root, iproute2)"; exit 1; }
  echo "*** SKIPPED: network namespaces unavailable (need root and iproute2) ***"; exit 77
fi
NS=dsicut$$
HV=dsih$$; NV=dsin$$
HOST_IP=10.231.$(( $$ % 200 )).1; NS_IP=10.231.$(( $$ % 200 )).2
TMP=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  ip netns pids "$NS" 2>/dev/null | xargs -r kill -9
  ip link del "$HV" 2>/dev/null; ip netns del "$NS" 2>/dev/null; rm -rf "$TMP"
}
trap cleanup EXIT
pass=0; fail=0
ok() { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL: $*"; }

ip netns add "$NS" && ip link add "$HV" type veth peer name "$NV" && ip link set "$NV" netns "$NS" \
  && ip addr add "$HOST_IP/24" dev "$HV" && ip link set "$HV" up \
  && ip netns exec "$NS" ip addr add "$NS_IP/24" dev "$NV" && ip netns exec "$NS" ip link set "$NV" up \
  && ip netns exec "$NS" ip link set lo up || { echo "ERROR: cannot set up the namespace"; exit 1; }

export DSINFER_SECRET=netns-test-secret-0123456789 UCX_TLS=tcp UCX_WARN_UNUSED_ENV_VARS=n
PORT=$(python3 "$(dirname "$0")/free_ports.py")
ADDR=$HOST_IP:$PORT
PROMPT=7,77,777
want=$(dsinfer run --model "$FIX" --prompt-ids "$PROMPT" --max-tokens 1500 2>/dev/null)

dsinfer-coordinator --nodes 3 --stages 1 --model "$FIX" --control "$ADDR" --heartbeat-ms 100 \
  --node-timeout-ms 1000 2>"$TMP/coord.log" & pids+=($!)
COORD=${pids[0]}
dsinfer-node --coordinator "$ADDR" --model "$FIX" --name host-a --threads 1 2>"$TMP/a.log" & pids+=($!)
dsinfer-node --coordinator "$ADDR" --model "$FIX" --name host-b --threads 1 2>"$TMP/b.log" & pids+=($!)
ip netns exec "$NS" env DSINFER_SECRET="$DSINFER_SECRET" UCX_TLS=tcp PATH="$PATH" \
  dsinfer-node --coordinator "$ADDR" --model "$FIX" --name cut-off --threads 1 2>"$TMP/ns.log" &
pids+=($!)

timeout 120 dsinfer run --coordinator "$ADDR" --prompt-ids "$PROMPT" --max-tokens 1500 \
  >"$TMP/out" 2>"$TMP/client.log" &
CLIENT=$!
# Cut the link once tokens flow (the cluster is serving).
for _ in $(seq 200); do grep -q "serving" "$TMP/coord.log" && break; sleep 0.05; done
sleep 0.3
ip link set "$HV" down
wait $CLIENT; rc=$?
[ $rc -eq 0 ] && ok || { bad "client failed rc=$rc"; tail -5 "$TMP/client.log"; }
[ "$(cat "$TMP/out")" = "$want" ] && ok || bad "tokens differ after the cut: $(head -c 200 "$TMP/out")"
grep -q "lost: no heartbeat" "$TMP/coord.log" && ok || bad "the coordinator did not detect the cut"
grep -q "a node was lost" "$TMP/coord.log" && ok || bad "no re-plan after the cut"

kill -TERM "$COORD"
for p in "${pids[@]:1:2}"; do
  for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$p" 2>/dev/null && bad "node $p still running" || ok
done
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
