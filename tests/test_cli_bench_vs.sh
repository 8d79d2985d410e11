#!/usr/bin/env bash
# scripts/bench-vs-llamacpp.sh, scripts/bench-vs-ggml.sh and scripts/dsinfer-to-gguf.py: --help,
# and the argument checks that run before anything is built (a llama.cpp or ggml checkout is
# not available here): a missing or wrong folder, a bad option or value -> a clear error, exit 2.
set -uo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
export DSINFER
DSINFER=$(command -v dsinfer)
. "$SRC/tests/expect_exit.bash"

for s in bench-vs-llamacpp bench-vs-ggml; do
  S=$SRC/scripts/$s.sh
  "$S" --help >"$TMP/help" 2>&1 || bad "$s --help: exit $?"
  grep -q "^usage: scripts/$s.sh" "$TMP/help" || bad "$s --help: no usage line: $(cat "$TMP/help")"
  grep -q -- "--rounds N" "$TMP/help" || bad "$s --help: no --rounds"
  expect "$s without arguments" 2 "usage:" "$S"
  expect "$s missing dir" 2 "is not a directory" "$S" "$TMP/absent"
  expect "$s bad option" 2 "unknown option '--bogus'" "$S" "$TMP" --bogus
  expect "$s bad rounds" 2 "rounds must be a positive integer" "$S" "$TMP" --rounds 0
  grep -q -- "--isa I" "$TMP/help" || bad "$s --help: no --isa"
  expect "$s bad isa" 2 "--isa must be native or avx2, not 'avx512'" "$S" "$TMP" --isa avx512
  expect "$s isa without value" 2 "option '--isa' needs a value" "$S" "$TMP" --isa
  expect "$s isa avx2 against DSINFER_KERNELS" 2 "but DSINFER_KERNELS is 'scalar'" \
    env DSINFER_KERNELS=scalar "$S" "$TMP" --isa avx2
done
expect "llamacpp wrong dir" 2 "is not a llama.cpp checkout" "$SRC/scripts/bench-vs-llamacpp.sh" "$TMP"
expect "llamacpp bad format" 2 "'fp4' is not fp8, int8, int4 or bf16" \
  "$SRC/scripts/bench-vs-llamacpp.sh" "$TMP" --formats fp8,fp4
expect "llamacpp bad size" 2 "--size must be v3, small or tiny" \
  "$SRC/scripts/bench-vs-llamacpp.sh" "$TMP" --size huge
expect "ggml wrong dir" 2 "is not a ggml or llama.cpp checkout" "$SRC/scripts/bench-vs-ggml.sh" "$TMP"
expect "ggml bad shapes" 2 "--shapes must be ROWSxCOLS" "$SRC/scripts/bench-vs-ggml.sh" "$TMP" --shapes 7168
# a folder that looks like a checkout, but no dsinfer program
mkdir -p "$TMP/lc/gguf-py/gguf" "$TMP/lc/include" "$TMP/lc/ggml/include"
touch "$TMP/lc/CMakeLists.txt" "$TMP/lc/include/llama.h" "$TMP/lc/ggml/include/ggml-cpu.h"
expect "llamacpp no dsinfer" 2 "no dsinfer program" env DSINFER="$TMP/absent" \
  "$SRC/scripts/bench-vs-llamacpp.sh" "$TMP/lc"
expect "ggml no dsinfer" 2 "no dsinfer program" env DSINFER="$TMP/absent" \
  "$SRC/scripts/bench-vs-ggml.sh" "$TMP/lc"
# the converter: --help, and a folder without gguf-py
if python3 -c 'import numpy' 2>/dev/null; then
  python3 "$SRC/scripts/dsinfer-to-gguf.py" --help >"$TMP/help" 2>&1 || bad "converter --help: exit $?"
  grep -q -- "--llama-cpp" "$TMP/help" || bad "converter --help: $(cat "$TMP/help")"
  grep -q -- "--head-type" "$TMP/help" || bad "converter --help lacks --head-type: $(cat "$TMP/help")"
  expect "converter bad head type" 2 "invalid choice: 'q2'" python3 "$SRC/scripts/dsinfer-to-gguf.py" \
    --llama-cpp "$TMP" --model "$TMP" --out "$TMP/x.gguf" --head-type q2
  expect "converter wrong dir" 2 "not a llama.cpp checkout" python3 "$SRC/scripts/dsinfer-to-gguf.py" \
    --llama-cpp "$TMP" --model "$TMP" --out "$TMP/x.gguf"
else
  echo "python3 has no numpy: converter checks skipped" >&2
fi
[ $fail = 0 ] && echo "bench-vs scripts: argument checks OK"
exit $fail
