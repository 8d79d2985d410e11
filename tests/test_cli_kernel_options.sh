#!/usr/bin/env bash
# The kernel options go through the settings table: --kernels / --fp8 / --act and their variables
# DSINFER_KERNELS, DSINFER_FP8, DSINFER_ACT (flag > variable > config file > default) reach the
# kernel library; `dsinfer bench` and `dsinfer version` read the variables and the config file;
# a bad value is a clear error (exit 2) naming the flag, variable or file line; local nodes get
# the options as flags. Timings are not asserted.
set -uo pipefail
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail=0
bad() { fail=1; echo "FAIL: $*"; }
: >"$TMP/empty.conf"
export DSINFER_CONFIG_FILE=$TMP/empty.conf
unset DSINFER_KERNELS DSINFER_FP8 DSINFER_ACT

# 1. dsinfer version says the level the options give
DSINFER_KERNELS=scalar dsinfer version | grep -q "^kernels: scalar " || bad "DSINFER_KERNELS=scalar"
top=$(dsinfer version | sed -n 's/^kernels: \([a-z0-9]*\) .*/\1/p')
[ -n "$top" ] || bad "version prints no level"
printf 'kernels = scalar\n' >"$TMP/k.conf"
DSINFER_CONFIG_FILE=$TMP/k.conf dsinfer version | grep -q "^kernels: scalar " ||
  bad "kernels = scalar in the config file"
DSINFER_CONFIG_FILE=$TMP/k.conf DSINFER_KERNELS=auto dsinfer version | grep -q "^kernels: $top " ||
  bad "the variable (auto) over the config file"

# 2. bad values: exit 2 naming the variable, the flag, the file line
DSINFER_KERNELS=avx9 dsinfer version >/dev/null 2>"$TMP/err"
[ $? = 2 ] && grep -q "DSINFER_KERNELS" "$TMP/err" || bad "DSINFER_KERNELS=avx9: $(cat "$TMP/err")"
DSINFER_ACT=int4 dsinfer bench kernels --help >/dev/null 2>"$TMP/err"
[ $? = 2 ] && grep -q "DSINFER_ACT" "$TMP/err" || bad "DSINFER_ACT=int4 bench: $(cat "$TMP/err")"
printf 'fp8 = fast\n' >"$TMP/bad.conf"
DSINFER_CONFIG_FILE=$TMP/bad.conf dsinfer version >/dev/null 2>"$TMP/err"
[ $? = 2 ] && grep -q "bad.conf:1" "$TMP/err" || bad "fp8 = fast in the file: $(cat "$TMP/err")"
dsinfer run --kernels avx9 --model "$TMP" --prompt-ids 1 >/dev/null 2>"$TMP/err"
[ $? = 2 ] && grep -q -- "--kernels" "$TMP/err" || bad "run --kernels avx9: $(cat "$TMP/err")"
dsinfer-node --act f16 >/dev/null 2>"$TMP/err"
[ $? = 2 ] && grep -q -- "--act" "$TMP/err" || bad "dsinfer-node --act f16: $(cat "$TMP/err")"

# 3. the help of the node programs lists them with their defaults
for prog in "dsinfer run" "dsinfer serve" dsinfer-node; do
  $prog --help >"$TMP/help" 2>&1
  for opt in kernels fp8 act; do
    grep -q -- "--$opt" "$TMP/help" || bad "$prog --help lacks --$opt"
  done
done

# 4. the options reach the computation: a tiny model generates the same tokens with --kernels
#    scalar as with DSINFER_KERNELS=scalar, and the flag wins over the variable
dsinfer synth --out "$TMP/m" --preset tiny 2>/dev/null || { echo "FAIL: synth"; exit 1; }
gen() { dsinfer run --model "$TMP/m" --prompt-ids 5,17,300 --max-tokens 4 "$@" 2>/dev/null; }
a=$(gen --kernels scalar) || bad "run --kernels scalar"
b=$(DSINFER_KERNELS=scalar gen) || bad "run DSINFER_KERNELS=scalar"
[ -n "$a" ] && [ "$a" = "$b" ] || bad "scalar tokens differ: '$a' '$b'"
DSINFER_KERNELS=avx2 dsinfer config --program node --kernels scalar 2>/dev/null |
  grep -q "^kernels = scalar .*flag" || bad "the flag over the variable"
dsinfer config --program node 2>/dev/null | grep -q "^kernels = auto" ||
  bad "dsinfer config --program node: $(dsinfer config --program node 2>&1 | grep kernels)"
DSINFER_ACT=f32 dsinfer config --program node 2>/dev/null | grep -q "^act = f32" ||
  bad "dsinfer config: DSINFER_ACT=f32 not shown"
[ $fail = 0 ] && echo "kernel options through the settings table: OK"
exit $fail
