#!/usr/bin/env bash
# Launch mode (a): mpirun -np N dsinfer-cluster. Rank 0 coordinates, the other ranks are nodes;
# UCX addresses travel by MPI_Allgather. Tokens must equal the HF reference for 2 and 3 node ranks,
# and on tiny-v3-mtp (the MTP layer: speculative decoding is on by default) for 4 node ranks of two
# stages, each node of the last stage drafting, the layer's 32 routed experts spread over them.
set -uo pipefail
. "$(dirname "$0")/fixture.bash" # need_fixture, ok, bad
need_fixture tiny-v3 tiny-v3-mtp
command -v mpirun >/dev/null || { echo "ERROR: mpirun missing (openmpi-bin)"; exit 1; }
export DSINFER_SECRET=mpi-launch-secret-0123456789
# reference FIXTURE P: "prompt want" of its prompt pP
reference() {
python3 - "$1/reference.safetensors" "$2" <<'PY'
import json, struct, sys
raw = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', raw[:8])[0]; hdr = json.loads(raw[8:8+n]); base = 8 + n
def ints(name):
    a, b = hdr[name]['data_offsets']
    return list(struct.unpack('<%di' % ((b - a) // 4), raw[base+a:base+b]))
p = 'p' + sys.argv[2]
print(','.join(map(str, ints(p + '.tokens'))), ','.join(map(str, ints(p + '.gen.tokens'))))
PY
}
BIN=$(command -v dsinfer-cluster)
LOG=$(mktemp -d); trap 'rm -rf "$LOG"' EXIT
# launch NAME FIXTURE PROMPT NP: the tokens must be the reference's
launch() {
  local name=$1 fix=$FIXDIR/$2 np=$4 prompt want out
  read -r prompt want < <(reference "$fix" "$3")
  [ -n "$want" ] || { bad "$name: no reference tokens"; return; }
  local n_want=$(($(tr -cd , <<<"$want" | wc -c) + 1))
  out=$(timeout 120 mpirun --allow-run-as-root --oversubscribe -np "$np" -x DSINFER_SECRET \
        -x UCX_WARN_UNUSED_ENV_VARS=n "$BIN" --model "$fix" --prompt-ids "$prompt" \
        --max-tokens "$n_want" --stages 2 2>"$LOG/$name.log")
  if [ "$out" = "$want" ]; then ok; else bad "$name: '$out'"; tail -5 "$LOG/$name.log"; fi
}
launch np3 tiny-v3 3 3
launch np4 tiny-v3 3 4
launch mtp-np5 tiny-v3-mtp 2 5
# The last stage's two nodes drafted, each with half of the MTP layer's 32 routed experts.
n=$(grep -c 'speculative decoding: MTP layer loaded, 1 draft token per step; 16 of its 32' "$LOG/mtp-np5.log")
if [ "$n" = 2 ]; then ok; else bad "$n last-stage nodes drafting with 16 of 32 MTP experts"; grep -i 'speculative\|MTP' "$LOG/mtp-np5.log" | head; fi
pgrep -f "$BIN" >/dev/null && { bad "ranks left running"; pkill -9 -f "$BIN"; } || ok
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
