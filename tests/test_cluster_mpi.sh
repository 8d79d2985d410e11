#!/usr/bin/env bash
# Launch mode (a): mpirun -np N dsinfer-cluster. Rank 0 coordinates, the other ranks are nodes;
# UCX addresses travel by MPI_Allgather. Tokens must equal the HF reference for 2 and 3 node ranks.
set -uo pipefail
FIX=${DSINFER_FIXTURES:-../shared/fixtures}/tiny-v3
if [ ! -d "$FIX" ]; then
  [ "${CI:-}" = true ] && { echo "ERROR: fixture $FIX missing under CI"; exit 1; }
  echo "*** SKIPPED: fixture $FIX missing ***"; exit 77
fi
command -v mpirun >/dev/null || { echo "ERROR: mpirun missing (openmpi-bin)"; exit 1; }
pass=0; fail=0
export DSINFER_SECRET=mpi-launch-secret-0123456789
read -r PROMPT WANT < <(python3 - "$FIX/reference.safetensors" <<'PY'
import json, struct, sys
raw = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', raw[:8])[0]; hdr = json.loads(raw[8:8+n]); base = 8 + n
def ints(name):
    a, b = hdr[name]['data_offsets']
    return list(struct.unpack('<%di' % ((b - a) // 4), raw[base+a:base+b]))
print(','.join(map(str, ints('p3.tokens'))), ','.join(map(str, ints('p3.gen.tokens'))))
PY
)
BIN=$(command -v dsinfer-cluster)
for np in 3 4; do
  out=$(timeout 120 mpirun --allow-run-as-root --oversubscribe -np $np -x DSINFER_SECRET \
        -x UCX_WARN_UNUSED_ENV_VARS=n "$BIN" --model "$FIX" --prompt-ids "$PROMPT" \
        --max-tokens 16 --stages 2 2>/tmp/dsinfer-mpi-$np.log)
  if [ "$out" = "$WANT" ]; then pass=$((pass+1)); else fail=$((fail+1)); echo "FAIL np=$np: '$out'"; tail -5 /tmp/dsinfer-mpi-$np.log; fi
done
pgrep -f "$BIN" >/dev/null && { fail=$((fail+1)); echo "FAIL: ranks left running"; pkill -9 -f "$BIN"; } || pass=$((pass+1))
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
