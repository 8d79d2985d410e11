#!/bin/bash
# test_cli_tokenize.sh - dsinfer tokenize / detokenize end to end: golden ids of the reference,
# chat rendering, round trips, bad input (invalid UTF-8, malformed tokenizer.json, usage errors),
# the tiny-v3 fixture and a synthetic checkpoint's tokenizer.
set -u
FIX=${DSINFER_FIXTURES:?}
TOK=$FIX/tokenizer
if [ ! -f "$TOK/tokenizer.json" ]; then
  [ "${CI:-}" = true ] && { echo "ERROR: fixture $TOK missing under CI"; exit 1; }
  echo "*** SKIPPED: no fixture $TOK ***"; exit 77
fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fails=0
check() { # check NAME EXPECTED ACTUAL
    if [ "$2" == "$3" ]; then echo "ok   $1"; else echo "FAIL $1: expected [$2] got [$3]"; fails=$((fails + 1)); fi
}

# Golden ids (golden.json of the reference) through stdin and --text.
check "encode stdin" "19923 14 1026 6397 344 33125" \
    "$(printf 'Hello, my dog is cute' | dsinfer tokenize --model "$TOK")"
check "encode --text" "0 2067 1561 37725 1" \
    "$(dsinfer tokenize --model "$TOK" --text '<｜begin▁of▁sentence｜>text after bos<｜end▁of▁sentence｜>')"
check "encode --json" '{"ids": [19923, 2058, 3], "count": 3}' \
    "$(dsinfer tokenize --model "$TOK" --json --text 'Hello world!')"
check "encode --bos" "0 67" "$(dsinfer tokenize --model "$TOK" --bos --text a)"
check "empty input" "" "$(printf '' | dsinfer tokenize --model "$TOK")"

# Chat: one user message, and a JSON conversation (golden.json's second chat).
check "chat" "0 128803 23166 1031 128804" \
    "$(printf 'Hi there' | dsinfer tokenize --model "$TOK" --chat)"
msgs='[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"1+1=?"},{"role":"assistant","content":"2"},{"role":"user","content":"And 2+2?"}]'
check "messages" "0 3476 477 260 11502 22896 16 128803 19 13 19 127252 128804 20 1 128803 4195 223 20 13 20 33 128804" \
    "$(printf '%s' "$msgs" | dsinfer tokenize --model "$TOK" --messages)"
check "render r1" "<｜begin▁of▁sentence｜><｜User｜>Hi<｜Assistant｜><think>" \
    "$(printf 'Hi' | dsinfer tokenize --model "$TOK" --chat --render --template r1)"

# Round trips, and the --json output fed back.
text=$'def f(x):\n    return x ** 2  # 平方 😀\n'
check "round trip" "${text}x" \
    "$(printf '%s' "$text" | dsinfer tokenize --model "$TOK" | dsinfer detokenize --model "$TOK"; printf x)"
rt=$(printf '%s' "$text" | dsinfer tokenize --model "$TOK" --json | dsinfer detokenize --model "$TOK"; printf x)
check "round trip json" "${text}x" "$rt"
check "detokenize args, skip special" "Hello" \
    "$(dsinfer detokenize --model "$TOK" --skip-special 0 19923 1)"
check "detokenize unknown ids skipped" "Hello" "$(echo '[19923, 999999, -1]' | dsinfer detokenize --model "$TOK")"

# Bad input: invalid UTF-8 names the offset; junk ids; malformed files; usage errors.
err=$(printf 'ab\xffcd' | dsinfer tokenize --model "$TOK" 2>&1 >/dev/null); rc=$?
check "invalid utf-8 rc" 1 $rc
check "invalid utf-8 message" "dsinfer tokenize: input is not valid UTF-8 at byte offset 2" "$err"
echo "12 abc" | dsinfer detokenize --model "$TOK" >/dev/null 2>&1; check "junk ids rc" 2 $?
dsinfer tokenize --text hi >/dev/null 2>&1; check "no --model rc" 2 $?
dsinfer tokenize --model "$TOK" --render --text hi >/dev/null 2>&1; check "--render alone rc" 2 $?
mkdir -p "$TMP/bad"
head -c 1000 "$TOK/tokenizer.json" > "$TMP/bad/tokenizer.json"
err=$(dsinfer tokenize --model "$TMP/bad" --text hi 2>&1); rc=$?
check "truncated tokenizer.json rc" 1 $rc
case "$err" in *"$TMP/bad/tokenizer.json"*) check "error names the file" 1 1 ;;
    *) check "error names the file" "mentions $TMP/bad/tokenizer.json" "$err" ;; esac
dsinfer tokenize --model "$TMP/nonexistent" --text hi >/dev/null 2>&1; check "missing dir rc" 1 $?

# The tiny-v3 fixture (markers at 1000+) and a synthetic checkpoint's tokenizer.
check "tiny-v3 chat" "0 1003" "$(dsinfer tokenize --model "$FIX/tiny-v3" --chat --no-generation-prompt --text '' )"
if dsinfer synth --out "$TMP/synth" --layers 1 --experts 4 >/dev/null 2>&1; then
    s='The synthetic model speaks, 你好!'
    check "synth round trip" "$s" \
        "$(printf '%s' "$s" | dsinfer tokenize --model "$TMP/synth" | dsinfer detokenize --model "$TMP/synth")"
else
    echo "FAIL dsinfer synth"; fails=$((fails + 1))
fi

echo "$fails failed"
[ $fails -eq 0 ]
