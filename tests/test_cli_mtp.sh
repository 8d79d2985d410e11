#!/usr/bin/env bash
# dsinfer run with the MTP layer of the tiny-v3-mtp fixture: --mtp-logits-out within 1e-3 of the
# reference's pN.mtp.logits for every prompt; greedy generation with --speculative-tokens 0..3
# equal to pN.gen.tokens (and --logits-out the logits that chose them); the --json speculation
# figures; a checkpoint without the layer runs as before and refuses --mtp-logits-out clearly.
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

ref() { # ref TENSOR: a reference tensor's values, comma-separated
  python3 - "$FIX/reference.safetensors" "$1" <<'PY'
import json, struct, sys
raw = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', raw[:8])[0]; hdr = json.loads(raw[8:8+n]); base = 8 + n
a, b = hdr[sys.argv[2]]['data_offsets']
print(','.join(map(str, struct.unpack('<%di' % ((b - a) // 4), raw[base+a:base+b]))))
PY
}

for p in 0 1 2; do
  PROMPT=$(ref p$p.tokens); WANT=$(ref p$p.gen.tokens)
  dsinfer run --model "$FIX" --prompt-ids "$PROMPT" --max-tokens 1 \
    --mtp-logits-out "$TMP/mtp$p.bin" >/dev/null 2>&1 || bad "p$p: --mtp-logits-out failed"
  python3 - "$TMP/mtp$p.bin" "$FIX/reference.safetensors" "p$p.mtp.logits" <<'PY' && ok || bad "p$p: MTP logits"
import json, struct, sys
raw = open(sys.argv[2], 'rb').read()
n = struct.unpack('<Q', raw[:8])[0]; hdr = json.loads(raw[8:8+n]); base = 8 + n
a, b = hdr[sys.argv[3]]['data_offsets']
ref = struct.unpack('<%df' % ((b - a) // 4), raw[base+a:base+b])
got = open(sys.argv[1], 'rb').read()
assert len(got) == len(ref) * 4, (len(got), len(ref) * 4)
got = struct.unpack('<%df' % len(ref), got)
worst = max(abs(x - y) for x, y in zip(got, ref))
assert worst < 1e-3, worst
PY
  for k in 0 1 2 3; do
    out=$(dsinfer run --model "$FIX" --prompt-ids "$PROMPT" --max-tokens 12 \
      --speculative-tokens $k --logits-out "$TMP/l.bin" --json 2>/dev/null) || bad "p$p K=$k: run failed"
    python3 - "$out" "$WANT" "$k" "$TMP/l.bin" "$FIX/reference.safetensors" "p$p.gen.logits" <<'PY' && ok || bad "p$p K=$k: tokens, logits or figures"
import json, struct, sys
out = json.loads(sys.argv[1]); want = list(map(int, sys.argv[2].split(','))); k = int(sys.argv[3])
assert out['tokens'] == want, (out['tokens'], want)
if k == 0:
    assert 'speculative' not in out
else:
    s = out['speculative']
    assert s['draft_tokens'] == k and len(s['acceptance']) == k, s
    assert 1.0 <= s['tokens_per_step'] <= k + 1 and s['steps'] >= 11 // (k + 1), s
    assert all(0.0 <= a <= 1.0 for a in s['acceptance']) and s['draft_s'] >= 0 and s['verify_s'] >= 0
raw = open(sys.argv[5], 'rb').read()
n = struct.unpack('<Q', raw[:8])[0]; hdr = json.loads(raw[8:8+n]); base = 8 + n
a, b = hdr[sys.argv[6]]['data_offsets']
ref = struct.unpack('<%df' % ((b - a) // 4), raw[base+a:base+b])
got = open(sys.argv[4], 'rb').read()
assert len(got) == len(ref) * 4, (len(got), len(ref) * 4)
got = struct.unpack('<%df' % len(ref), got)
assert max(abs(x - y) for x, y in zip(got, ref)) < 1e-3
PY
  done
done

# Text output names the speculation on stderr.
PROMPT=$(ref p1.tokens)
dsinfer run --model "$FIX" --prompt-ids "$PROMPT" --max-tokens 6 2>"$TMP/err" >/dev/null \
  && grep -q "speculative decoding: 1 draft token" "$TMP/err" && ok || bad "default K=1 summary"

# Without the layer: runs as today, no speculation, and --mtp-logits-out is refused by name.
PLAIN=$FIXDIR/tiny-v3
out=$(dsinfer run --model "$PLAIN" --prompt-ids 5,17,300 --max-tokens 4 --json 2>/dev/null) \
  && python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert "speculative" not in d and len(d["tokens"]) == 4' "$out" \
  && ok || bad "a checkpoint without MTP"
err=$(dsinfer run --model "$PLAIN" --prompt-ids 5,17,300 --mtp-logits-out "$TMP/x.bin" 2>&1 >/dev/null)
[ $? -eq 2 ] && grep -q "has no MTP layer" <<<"$err" && ok || bad "--mtp-logits-out without the layer: $err"
err=$(dsinfer run --model "$FIX" --prompt-ids 5,17 --speculative-tokens 9 2>&1 >/dev/null)
[ $? -eq 2 ] && grep -q "speculative-tokens" <<<"$err" && ok || bad "--speculative-tokens 9: $err"
err=$(dsinfer run --model "$FIX" --prompt-ids 5,17 --local-nodes 1 --mtp-logits-out "$TMP/y" 2>&1 >/dev/null)
[ $? -eq 2 ] && grep -q "single process" <<<"$err" && ok || bad "--mtp-logits-out on a cluster: $err"

echo "cli_mtp: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
