#!/usr/bin/env bash
# Speculative decoding in the node daemon (docs/SPECULATIVE.md): on the tiny-v3-mtp fixture,
# greedy generation through nodes with --speculative-tokens 0..3 equals the reference tokens
# (pN.gen.tokens), on one node and on two nodes of one stage (remote experts); a plan of two
# stages decodes as before; the node logs the MTP layer; a checkpoint without the layer runs
# with the setting as without it.
set -uo pipefail
FIXDIR=${DSINFER_FIXTURES:-../shared/fixtures}
FIX=$FIXDIR/tiny-v3-mtp
if [ ! -d "$FIX" ]; then
  [ "${CI:-}" = true ] && { echo "ERROR: fixture $FIX missing under CI"; exit 1; }
  echo "*** SKIPPED: fixture $FIX missing ***"; exit 77
fi
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
pass=0; fail=0
ok() { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL: $*"; }

ref() { # ref DIR TENSOR: a reference tensor's values, comma-separated
  python3 - "$1/reference.safetensors" "$2" <<'PY'
import json, struct, sys
raw = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', raw[:8])[0]; hdr = json.loads(raw[8:8+n]); base = 8 + n
a, b = hdr[sys.argv[2]]['data_offsets']
print(','.join(map(str, struct.unpack('<%di' % ((b - a) // 4), raw[base+a:base+b]))))
PY
}

same() { # same JSON WANT: the run's tokens equal WANT
  python3 - "$1" "$2" <<'PY'
import json, sys
out = json.loads(sys.argv[1]); want = list(map(int, sys.argv[2].split(',')))
assert out['tokens'] == want, (out['tokens'], want)
PY
}

# run NODES STAGES K PROMPT: dsinfer run on local nodes, --json on stdout, the log in $TMP/log
run() {
  dsinfer run --model "$FIX" --local-nodes "$1" --stages "$2" --speculative-tokens "$3" \
    --prompt-ids "$4" --max-tokens 12 --threads 1 --mem 1G --json 2>"$TMP/log"
}

for p in 0 1 2; do
  PROMPT=$(ref "$FIX" p$p.tokens); WANT=$(ref "$FIX" p$p.gen.tokens)
  for k in 0 1 2 3; do
    out=$(run 1 1 $k "$PROMPT") || { bad "p$p K=$k one node: run failed"; cat "$TMP/log"; continue; }
    same "$out" "$WANT" && ok || bad "p$p K=$k one node: tokens"
    if [ $k -gt 0 ]; then
      grep -q "MTP layer loaded, $k draft" "$TMP/log" && ok || bad "p$p K=$k: the node did not load the MTP layer"
    fi
  done
done

PROMPT=$(ref "$FIX" p0.tokens); WANT=$(ref "$FIX" p0.gen.tokens)
for k in 1 3; do
  out=$(run 2 1 $k "$PROMPT") || { bad "K=$k two nodes, one stage: run failed"; cat "$TMP/log"; continue; }
  same "$out" "$WANT" && ok || bad "K=$k two nodes, one stage: tokens"
  grep -q "MTP layer loaded" "$TMP/log" && ok || bad "K=$k two nodes, one stage: no MTP layer"
done
out=$(run 2 2 2 "$PROMPT") || { bad "two stages: run failed"; cat "$TMP/log"; }
same "$out" "$WANT" && ok || bad "two stages: tokens"
grep -q "speculative decoding is off: it runs on a plan of one stage" "$TMP/log" && ok ||
  bad "two stages: no message that speculation is off"

# A checkpoint without the layer: the setting changes nothing.
NOMTP=$FIXDIR/tiny-v3
PROMPT=$(ref "$NOMTP" p0.tokens); WANT=$(ref "$NOMTP" p0.gen.tokens)
out=$(dsinfer run --model "$NOMTP" --local-nodes 1 --speculative-tokens 2 --prompt-ids "$PROMPT" \
  --max-tokens 12 --threads 1 --mem 1G --json 2>"$TMP/log") || { bad "no layer: run failed"; cat "$TMP/log"; }
python3 - "$out" "$WANT" <<'PY' && ok || bad "no layer: tokens"
import json, sys
out = json.loads(sys.argv[1]); want = list(map(int, sys.argv[2].split(',')))
assert out['tokens'] == want[:len(out['tokens'])] and len(out['tokens']) == min(12, len(want)), (out['tokens'], want)
PY
grep -q "MTP layer" "$TMP/log" && bad "no layer: the node speaks of an MTP layer" || ok

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
