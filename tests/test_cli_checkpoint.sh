#!/bin/bash
# dsinfer inspect and synth from the command line: inspect on the fixture (text and --json), on
# synth output, and on broken directories (non-zero exit, a message naming the fault); synth's
# usage errors.
set -u
fixture="${DSINFER_FIXTURES:-../shared/fixtures}/tiny-v3"
if [ ! -d "$fixture" ]; then
    echo "*** SKIPPED: fixture $fixture is missing ***"
    [ "${CI:-}" = true ] && exit 1
    exit 77
fi
tmp=$(mktemp -d /tmp/dsinfer-cli-ckpt-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
failed=0 passed=0

ok() { passed=$((passed + 1)); }
bad() { failed=$((failed + 1)); echo "FAIL: $*" >&2; }

# expect CODE NEEDLE -- command...: exit status CODE and NEEDLE in stdout+stderr.
expect() {
    local code=$1 needle=$2
    shift 3
    local out rc
    out=$("$@" 2>&1)
    rc=$?
    if [ "$rc" -ne "$code" ]; then
        bad "$* exited $rc, expected $code"
        echo "$out" | sed 's/^/  | /' >&2
    elif ! grep -qF -- "$needle" <<<"$out"; then
        bad "$* output lacks '$needle'"
        echo "$out" | sed 's/^/  | /' >&2
    else
        ok
    fi
}

# A model directory whose shards are symlinks to the fixture's (nothing is written through them).
mkdir_model() {
    mkdir -p "$1"
    cp "$fixture"/*.json "$1"/
    chmod u+w "$1"/*.json
    for f in "$fixture"/*.safetensors; do ln -s "$f" "$1"/; done
}

expect 0 "tensors      665 in 2 shard(s); 0 MTP tensors skipped" -- dsinfer inspect --model "$fixture"
expect 0 "kv cache     1280 bytes per token" -- dsinfer inspect --model "$fixture"
expect 0 '"mapped_bytes": 9400624' -- dsinfer inspect --model "$fixture" --json
expect 0 '"bytes_per_token": 1280' -- dsinfer inspect --model "$fixture" --json --context 100
if command -v python3 >/dev/null; then
    if dsinfer inspect --model "$fixture" --json | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["tensors"] == 665 and d["dtypes"]["F8_E4M3"]["tensors"] == 320'; then ok; else bad "inspect --json is not the expected JSON"; fi
fi
expect 2 "--model DIR is required" -- dsinfer inspect
expect 2 "--context" -- dsinfer inspect --model "$fixture" --context 0

# Broken directories.
mkdir_model "$tmp/noshard"
rm "$tmp/noshard/model-00002-of-00002.safetensors"
expect 1 "shard 'model-00002-of-00002.safetensors' listed in model.safetensors.index.json is missing" -- dsinfer inspect --model "$tmp/noshard"
expect 1 "is not a valid model" -- dsinfer inspect --model "$tmp/noshard"
mkdir_model "$tmp/badcfg"
sed -i 's/"n_routed_experts": 32/"n_routed_experts": 30/' "$tmp/badcfg/config.json"
expect 1 "field 'n_group': n_routed_experts 30 is not divisible by n_group 4" -- dsinfer inspect --model "$tmp/badcfg"
mkdir_model "$tmp/extra"
cp "$fixture/model-00001-of-00002.safetensors" "$tmp/extra/model-extra.safetensors"
expect 1 "model-extra.safetensors: extra shard" -- dsinfer inspect --model "$tmp/extra"
expect 1 "not a model directory" -- dsinfer inspect --model "$tmp"
# A config.json that does not match the tensors: inspect refuses it as run does.
mismatch() { # NAME FIELD VALUE
    mkdir_model "$tmp/mm-$1"
    python3 - "$tmp/mm-$1/config.json" "$2" "$3" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c[sys.argv[2]] = int(sys.argv[3])
json.dump(c, open(sys.argv[1], "w"))
PY
    expect 1 "its tensors do not match config.json" -- dsinfer inspect --model "$tmp/mm-$1"
    expect 1 "" -- dsinfer run --model "$tmp/mm-$1" --prompt-ids 1,2 --max-tokens 1
}
mismatch hidden hidden_size 320
mismatch experts n_routed_experts 64
mismatch layers num_hidden_layers 5
mismatch vocab vocab_size 2048
mismatch heads num_attention_heads 8
mismatch qlora q_lora_rank 128

# synth, then inspect its output.
expect 0 "wrote 665 tensors" -- dsinfer synth --out "$tmp/s-fp8" --seed 3
expect 0 "tensors      665 in 1 shard(s)" -- dsinfer inspect --model "$tmp/s-fp8"
expect 0 "wrote 345 tensors" -- dsinfer synth --out "$tmp/s-bf16" --dtype bf16 --shard-size 1M --layers 4
expect 0 "weights      unquantized" -- dsinfer inspect --model "$tmp/s-bf16"
[ -f "$tmp/s-bf16/model.safetensors.index.json" ] && [ -f "$tmp/s-bf16/tokenizer.json" ] && ok || bad "bf16 synth lacks index or tokenizer"
if cmp -s "$tmp/s-fp8/model.safetensors" <(dsinfer synth --out "$tmp/s-fp8b" --seed 3 >/dev/null 2>&1; cat "$tmp/s-fp8b/model.safetensors"); then ok; else bad "synth is not deterministic"; fi
expect 0 "moe          16 routed x 96 + 1 shared, top-4 of 4 groups (keep 2)" -- bash -c "dsinfer synth --out '$tmp/s-skew' --experts 16 --router-skew 1.5 --layers 2 >/dev/null 2>&1 && dsinfer inspect --model '$tmp/s-skew'"
expect 1 "directory is not empty" -- dsinfer synth --out "$tmp/s-fp8"
expect 2 "--preset: 'huge' is not tiny or v3" -- dsinfer synth --out "$tmp/x" --preset huge
expect 2 "--dtype: 'int4' is not fp8 or bf16" -- dsinfer synth --out "$tmp/x" --dtype int4
expect 2 "--vocab" -- dsinfer synth --out "$tmp/x" --vocab 10
expect 2 "--out DIR is required" -- dsinfer synth
expect 1 "GB free" -- dsinfer synth --out "$tmp/huge" --preset v3 --layers 256 --experts 1024

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
