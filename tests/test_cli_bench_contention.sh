#!/usr/bin/env bash
# scripts/bench-contention.sh: --help, and the argument checks that run before any benchmark: a
# missing or bad option or value -> a clear error, exit 2 (no benchmark runs here).
set -uo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
S=$SRC/scripts/bench-contention.sh
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
export DSINFER
DSINFER=$(command -v dsinfer)
. "$SRC/tests/expect_exit.bash"

"$S" --help >"$TMP/help" 2>&1 || bad "--help: exit $?"
grep -q "^usage: scripts/bench-contention.sh" "$TMP/help" || bad "--help: no usage line: $(cat "$TMP/help")"
grep -q -- "--neighbour-cpu C" "$TMP/help" || bad "--help: no --neighbour-cpu"
grep -q -- "--rounds N .*default 5" "$TMP/help" || bad "--help: no --rounds default"
mkdir -p "$TMP/m"
echo '{}' >"$TMP/m/config.json"
M=(--model "$TMP/m")
expect "no arguments" 2 "--model is required" "$S"
expect "bad option" 2 "unknown option '--bogus'" "$S" "${M[@]}" --bogus
expect "option without value" 2 "--rounds needs a value" "$S" "${M[@]}" --rounds
expect "bad rounds" 2 "--rounds must be a positive integer, not '0'" "$S" "${M[@]}" --rounds 0
expect "bad decode" 2 "--decode must be a positive integer, not 'x'" "$S" "${M[@]}" --decode x
expect "bad threads" 2 "--threads must be positive integers" "$S" "${M[@]}" --threads 1,,2
expect "bad format" 2 "--weight-format must be auto" "$S" "${M[@]}" --weight-format fp4
expect "not a checkpoint" 2 "is not a checkpoint" "$S" --model "$TMP/absent"
expect "llama-bench alone" 2 "--llama-bench and --gguf go together" "$S" "${M[@]}" --llama-bench /bin/true
expect "gguf absent" 2 "--gguf '$TMP/x.gguf' is not a file" "$S" "${M[@]}" --llama-bench /bin/true \
  --gguf "$TMP/x.gguf"
expect "baseline absent" 2 "--baseline '$TMP/absent' is not an executable" "$S" "${M[@]}" \
  --baseline "$TMP/absent"
expect "bad neighbour cpu" 2 "--neighbour-cpu must be a CPU number" "$S" "${M[@]}" --neighbour-cpu x
expect "neighbour cpu not ours" 2 "is not one of this shell's CPUs" "$S" "${M[@]}" --neighbour-cpu 9999
expect "no dsinfer" 2 "no dsinfer program" env DSINFER="$TMP/absent" "$S" "${M[@]}"
[ $fail = 0 ] && echo "bench-contention script: argument checks OK"
exit $fail
