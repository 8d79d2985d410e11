# spec_ref.bash - sourced by the test_cluster_spec*.sh tests: the fixture's reference tokens.
#   ref DIR TENSOR   -> a reference tensor's int32 values, comma-separated (pN.tokens, pN.gen.tokens)
#   same JSON WANT   -> 0 when `dsinfer run --json` output JSON has exactly the tokens WANT
#   batched LABEL DIR ADDR -> prompts p0-p2 of DIR at once through `dsinfer run --coordinator ADDR`;
#                       each must give its pN.gen.tokens (counted with the test's ok / bad; logs in TMP)
ref() {
  python3 - "$1/reference.safetensors" "$2" <<'PY'
import json, struct, sys
raw = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', raw[:8])[0]; hdr = json.loads(raw[8:8+n]); base = 8 + n
a, b = hdr[sys.argv[2]]['data_offsets']
print(','.join(map(str, struct.unpack('<%di' % ((b - a) // 4), raw[base+a:base+b]))))
PY
}

same() {
  python3 - "$1" "$2" <<'PY'
import json, sys
out = json.loads(sys.argv[1]); want = list(map(int, sys.argv[2].split(',')))
assert out['tokens'] == want, (out['tokens'], want)
PY
}

batched() {
  local label=$1 fix=$2 addr=$3 p clients=()
  for p in 0 1 2; do
    timeout 120 dsinfer run --coordinator "$addr" --prompt-ids "$(ref "$fix" p$p.tokens)" \
      --max-tokens 12 >"$TMP/client$p.out" 2>"$TMP/client$p.log" &
    clients+=($!)
  done
  for p in 0 1 2; do
    wait "${clients[$p]}" || bad "$label batched: client p$p failed: $(tail -2 "$TMP/client$p.log")"
    [ "$(cat "$TMP/client$p.out")" = "$(ref "$fix" p$p.gen.tokens)" ] && ok ||
      bad "$label batched: p$p '$(cat "$TMP/client$p.out")'"
  done
}
