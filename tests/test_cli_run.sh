#!/usr/bin/env bash
# dsinfer run on the tiny-v3 fixture: greedy tokens and per-step logits equal the HF reference
# (prompt p1), --json is valid JSON with the documented fields, and bad arguments fail clearly.
set -uo pipefail
FIX=${DSINFER_FIXTURES:-../shared/fixtures}/tiny-v3
if [ ! -d "$FIX" ]; then
  [ "${CI:-}" = true ] && { echo "ERROR: fixture $FIX missing under CI"; exit 1; }
  echo "*** SKIPPED: fixture $FIX missing ***"; exit 77
fi
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
pass=0; fail=0
ok() { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL: $*"; }

# The prompt and greedy continuation of p1 from the reference file.
read -r PROMPT WANT < <(python3 - "$FIX/reference.safetensors" <<'PY'
import json, struct, sys
raw = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', raw[:8])[0]; hdr = json.loads(raw[8:8+n]); base = 8 + n
def ints(name):
    a, b = hdr[name]['data_offsets']
    return list(struct.unpack('<%di' % ((b - a) // 4), raw[base+a:base+b]))
print(','.join(map(str, ints('p1.tokens'))), ','.join(map(str, ints('p1.gen.tokens'))))
PY
)
out=$(dsinfer run --model "$FIX" --prompt-ids "$PROMPT" --max-tokens 16 --logits-out "$TMP/logits.bin" --json) || bad "run failed"
python3 - "$out" "$WANT" "$TMP/logits.bin" "$FIX/reference.safetensors" <<'PY' && ok || bad "json/logits check"
import json, struct, sys
out = json.loads(sys.argv[1]); want = list(map(int, sys.argv[2].split(',')))
assert out['tokens'] == want, (out['tokens'], want)
assert out['finish_reason'] in ('length', 'stop') and 'timings' in out and out['prompt_tokens']
raw = open(sys.argv[4], 'rb').read()
n = struct.unpack('<Q', raw[:8])[0]; hdr = json.loads(raw[8:8+n]); base = 8 + n
a, b = hdr['p1.gen.logits']['data_offsets']
ref = struct.unpack('<%df' % ((b - a) // 4), raw[base+a:base+b])
got = open(sys.argv[3], 'rb').read()
assert len(got) == 16 * 1024 * 4, len(got)
got = struct.unpack('<%df' % (len(got) // 4), got)
worst = max(abs(x - y) for x, y in zip(got, ref))
assert worst < 1e-3, worst
print('max logit diff', worst)
PY

# Plain output is the comma-separated ids.
plain=$(dsinfer run --model "$FIX" --prompt-ids "$PROMPT" --max-tokens 16 2>/dev/null)
[ "$plain" = "$WANT" ] && ok || bad "plain output '$plain' != '$WANT'"

# Scalar kernels forced give the same tokens.
scalar=$(DSINFER_KERNELS=scalar dsinfer run --model "$FIX" --prompt-ids "$PROMPT" --max-tokens 16 2>/dev/null)
[ "$scalar" = "$WANT" ] && ok || bad "scalar kernels: '$scalar'"

# Sampling with a seed is repeatable.
s1=$(dsinfer run --model "$FIX" --prompt-ids 5,6,7 --max-tokens 8 --temperature 0.8 --top-p 0.9 --top-k 50 --seed 7 2>/dev/null)
s2=$(dsinfer run --model "$FIX" --prompt-ids 5,6,7 --max-tokens 8 --temperature 0.8 --top-p 0.9 --top-k 50 --seed 7 2>/dev/null)
[ -n "$s1" ] && [ "$s1" = "$s2" ] && ok || bad "seeded sampling not repeatable: '$s1' vs '$s2'"

# Text prompts: --prompt (BOS + text) and --chat (the chat template) give the same tokens as the
# ids the tokenizer produces for them; the text output is the decoded generation.
ids=$(dsinfer tokenize --model "$FIX" --bos --text "Hello world" | tr ' ' ',')
a=$(dsinfer run --model "$FIX" --prompt-ids "$ids" --max-tokens 8 --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["tokens"])')
b=$(dsinfer run --model "$FIX" --prompt "Hello world" --max-tokens 8 --json 2>/dev/null | python3 -c 'import json,sys; d=json.load(sys.stdin); assert isinstance(d["text"], str); print(d["tokens"])')
[ -n "$a" ] && [ "$a" = "$b" ] && ok || bad "--prompt tokens '$b' != --prompt-ids '$a'"
ids=$(dsinfer tokenize --model "$FIX" --chat --text "Hi there" | tr ' ' ',')
a=$(dsinfer run --model "$FIX" --prompt-ids "$ids" --max-tokens 8 --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["tokens"])')
b=$(dsinfer run --model "$FIX" --chat "Hi there" --max-tokens 8 --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["tokens"])')
[ -n "$a" ] && [ "$a" = "$b" ] && ok || bad "--chat tokens '$b' != template ids '$a'"
t1=$(dsinfer run --model "$FIX" --chat "Hi there" --max-tokens 8 2>/dev/null)
t2=$(dsinfer run --model "$FIX" --chat "Hi there" --max-tokens 8 --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["text"])')
[ "$t1" = "$t2" ] && ok || bad "streamed text '$t1' != json text '$t2'"
expect_fail2() { local err; err=$(dsinfer run "$@" 2>&1 >/dev/null); [ $? -ne 0 ] && [ -n "$err" ] && ok || bad "run $* should fail"; }
expect_fail2 --model "$TMP" --prompt "no tokenizer here"
expect_fail2 --model "$FIX" --prompt "x" --chat "y"

# Weight formats: int8 re-quantizes at load and still generates; a bad format is refused.
w8=$(dsinfer run --model "$FIX" --prompt-ids "$PROMPT" --max-tokens 4 --weight-format int8 2>/dev/null)
[ -n "$w8" ] && ok || bad "--weight-format int8 produced nothing"
# The model benchmark runs and reports the documented fields; with one repetition the phases and
# "other" add up to the mean step (1000 / decode tok/s), and every phase of the fixture (dense and
# MoE layers) ran.
dsinfer bench model --model "$FIX" --prompt-len 8 --decode-steps 2 --reps 1 --json 2>/dev/null \
  | python3 -c '
import json, sys
d = json.load(sys.stdin)
ph = d["phases"]
names = ["attention", "dense", "router", "experts", "shared", "head"]
assert sorted(ph) == sorted(names + ["other"]), ph
assert all(ph[n]["ms"] > 0 and ph[n]["gbs"] > 0 for n in names), ph
step = 1000 / d["decode_tok_s"]
total = sum(ph[n]["ms"] for n in names) + ph["other"]["ms"]
assert abs(total - step) <= 0.01 * step + 0.01, (total, step)
' && ok || bad "bench model --json (phases)"
dsinfer bench model --model "$FIX" --prompt-len 4 --decode-steps 2 --reps 1 2>/dev/null \
  | grep -q "^decode step by phase (mean ms, GB/s of the phase.s weights): attention" && ok \
  || bad "bench model text phases"

# Bad arguments: exit 2 with a message naming the option.
expect_fail() { # code, pattern, args...
  local code=$1 pat=$2; shift 2
  local err; err=$(dsinfer run "$@" 2>&1 >/dev/null); local rc=$?
  if [ $rc -eq "$code" ] && grep -q -- "$pat" <<<"$err"; then ok; else bad "run $* -> rc $rc, '$err'"; fi
}
expect_fail 2 "outside the vocabulary" --model "$FIX" --prompt-ids 1,99999
expect_fail 2 "prompt-ids" --model "$FIX" --prompt-ids 1,x
expect_fail 2 "temperature" --model "$FIX" --prompt-ids 1 --temperature abc
expect_fail 2 "required" --prompt-ids 1
expect_fail 1 "config.json" --model "$TMP" --prompt-ids 1
expect_fail 2 "weight-format" --model "$FIX" --prompt-ids 1 --weight-format int3

# A model whose max_position_embeddings is 16: a longer sequence is refused before generating.
SHORT=$TMP/short; mkdir -p "$SHORT"
cp "$FIX"/*.json "$SHORT"/ && chmod u+w "$SHORT"/*.json && ln -s "$FIX"/*.safetensors "$SHORT"/
python3 - "$SHORT/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["max_position_embeddings"] = 16
json.dump(c, open(sys.argv[1], "w"))
PY
expect_fail 1 "max_position_embeddings (16)" --model "$SHORT" --prompt-ids 1,2,3,4 --max-tokens 13
dsinfer run --model "$SHORT" --prompt-ids 1,2,3,4 --max-tokens 12 >/dev/null 2>&1 && ok ||
  bad "run of exactly max_position_embeddings tokens failed"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
