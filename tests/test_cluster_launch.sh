#!/usr/bin/env bash
# Launch mode (b): dsinfer-coordinator and dsinfer-node started independently, the nodes first
# (they retry until the coordinator listens). A client (dsinfer run --coordinator) gets the
# reference tokens; malformed control traffic and a node with the wrong secret are refused while
# the cluster keeps serving; SIGTERM to the coordinator shuts everything down with no process left.
set -uo pipefail
FIX=${DSINFER_FIXTURES:-../shared/fixtures}/tiny-v3
if [ ! -d "$FIX" ]; then
  [ "${CI:-}" = true ] && { echo "ERROR: fixture $FIX missing under CI"; exit 1; }
  echo "*** SKIPPED: fixture $FIX missing ***"; exit 77
fi
TMP=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done; rm -rf "$TMP"; }
trap cleanup EXIT
pass=0; fail=0
ok() { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL: $*"; }

export DSINFER_SECRET=launch-test-secret-0123456789
export UCX_WARN_UNUSED_ENV_VARS=n
PORT=$(python3 "$(dirname "$0")/free_ports.py")
ADDR=127.0.0.1:$PORT
read -r PROMPT WANT < <(python3 - "$FIX/reference.safetensors" <<'PY'
import json, struct, sys
raw = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', raw[:8])[0]; hdr = json.loads(raw[8:8+n]); base = 8 + n
def ints(name):
    a, b = hdr[name]['data_offsets']
    return list(struct.unpack('<%di' % ((b - a) // 4), raw[base+a:base+b]))
print(','.join(map(str, ints('p2.tokens'))), ','.join(map(str, ints('p2.gen.tokens'))))
PY
)

# A NUMA node this machine does not have is refused before anything starts.
dsinfer-node --coordinator "$ADDR" --model "$FIX" --numa-node 1023 2>"$TMP/numa.log"; rc=$?
[ $rc -ne 0 ] && grep -q "numa-node 1023" "$TMP/numa.log" && ok || bad "--numa-node 1023 rc=$rc: $(cat "$TMP/numa.log")"

# Nodes first: they keep retrying until the coordinator listens. n0 is bound to NUMA node 0
# (every Linux machine has it).
for i in 0 1; do
  numa=(); [ $i = 0 ] && numa=(--numa-node 0)
  dsinfer-node --coordinator "$ADDR" --model "$FIX" --name "n$i" --threads 1 "${numa[@]}" \
    2>"$TMP/node$i.log" &
  pids+=($!)
done
sleep 1
dsinfer-coordinator --nodes 2 --stages 2 --model "$FIX" --control "$ADDR" 2>"$TMP/coord.log" &
COORD=$!
pids+=($COORD)

out=$(timeout 60 dsinfer run --coordinator "$ADDR" --prompt-ids "$PROMPT" --max-tokens 16 2>"$TMP/client1.log")
[ "$out" = "$WANT" ] && ok || { bad "client tokens '$out' != '$WANT'"; cat "$TMP/client1.log"; }
grep -q "bound to NUMA node 0" "$TMP/node0.log" && ok || bad "n0 not bound to NUMA node 0: $(cat "$TMP/node0.log")"

# Malformed control traffic: garbage, an oversized length, a bad body, a frame cut short.
python3 - "$PORT" <<'PY'
import socket, struct, sys, time
port = int(sys.argv[1])
def send(data, wait=0.3):
    s = socket.create_connection(('127.0.0.1', port), timeout=5)
    s.sendall(data)
    time.sleep(wait)
    try:
        s.recv(4096)
    except Exception:
        pass
    s.close()
send(b'\x00garbage\xff' * 10)
send(b'DSC\x01' + struct.pack('>I', 0x7fffffff))
send(b'DSC\x01' + struct.pack('>I', 5) + b'\xc1\xc1\xc1\xc1\xc1')
send(b'DSC\x01' + struct.pack('>I', 100) + b'\x81', wait=0.1)
PY
grep -q "ERROR" "$TMP/coord.log" && ok || bad "coordinator did not log the malformed traffic"

# A node with the wrong secret is refused and exits with an error.
DSINFER_SECRET=wrong-secret-0123456789abcdef timeout 20 dsinfer-node --coordinator "$ADDR" \
  --model "$FIX" --name intruder --threads 1 2>"$TMP/intruder.log"
rc=$?
[ $rc -ne 0 ] && grep -q "authentication failed" "$TMP/intruder.log" && ok || bad "intruder rc=$rc: $(tail -2 "$TMP/intruder.log")"
grep -q "wrong shared-secret proof" "$TMP/coord.log" && ok || bad "coordinator did not log the refused registration"

# Still serving after all that.
out=$(timeout 60 dsinfer run --coordinator "$ADDR" --prompt-ids "$PROMPT" --max-tokens 16 2>"$TMP/client2.log")
[ "$out" = "$WANT" ] && ok || bad "after bad traffic: '$out'"

# SIGTERM: the coordinator shuts the nodes down; every process exits.
kill -TERM "$COORD"
left=()
for p in "${pids[@]}"; do
  for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$p" 2>/dev/null; then bad "process $p still running"; left+=("$p"); else wait "$p"; rc=$?; [ $rc -eq 0 ] && ok || bad "process $p exited $rc"; fi
done
pids=("${left[@]}") # the cleanup kills what is still running (it would hold ctest's output open)
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
