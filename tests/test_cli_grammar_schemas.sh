#!/bin/bash
# test_cli_grammar_schemas.sh - structured output against Python's jsonschema: for each of the
# JSON Schemas of grammar_schemas.json (nested objects, arrays, enums, const, required and
# optional properties, bounded integers and numbers, patterns, formats, anyOf / oneOf, $ref,
# recursion), `dsinfer bench grammar` generates outputs with the real DeepSeek-V3 tokenizer and
# random logits at temperature 1 (seeded), masking each step with the schema's grammar; every
# complete output must parse and validate, and at least 30 schemas must have one. A schema with
# an unsupported keyword is refused with the keyword named.
set -u
FIX=${DSINFER_FIXTURES:?}
TOK=$FIX/tokenizer
if [ ! -f "$TOK/tokenizer.json" ]; then
  [ "${CI:-}" = true ] && { echo "ERROR: fixture $TOK missing under CI"; exit 1; }
  echo "*** SKIPPED: no fixture $TOK ***"; exit 77
fi
if ! python3 -c 'import jsonschema' 2>/dev/null; then
  [ "${CI:-}" = true ] && { echo "ERROR: python3-jsonschema missing under CI"; exit 1; }
  echo "*** SKIPPED: python3 has no jsonschema (apt-get install python3-jsonschema) ***"; exit 77
fi
HERE=$(cd "$(dirname "$0")" && pwd)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fails=0

dsinfer bench grammar --tokenizer "$TOK" --schemas "$HERE/grammar_schemas.json" --samples 2 \
    --max-tokens 500 --seed 7 --emit "$TMP/out.jsonl" > "$TMP/bench.txt" 2>&1 \
    || { echo "FAIL bench grammar:"; cat "$TMP/bench.txt"; fails=$((fails + 1)); }
tail -1 "$TMP/bench.txt"
if python3 "$HERE/grammar_validate.py" "$HERE/grammar_schemas.json" "$TMP/out.jsonl" 30; then
    echo "ok   outputs validate"
else
    echo "FAIL outputs do not validate"; fails=$((fails + 1))
fi

echo '[{"type": "object", "properties": {"a": {"type": "string"}}, "patternProperties": {}}]' \
    > "$TMP/bad.json"
out=$(dsinfer bench grammar --tokenizer "$TOK" --schemas "$TMP/bad.json" --samples 1 2>&1)
rc=$?
if [ $rc -ne 0 ] && printf '%s' "$out" | grep -q "unsupported JSON Schema keyword 'patternProperties'"; then
    echo "ok   unsupported keyword named"
else
    echo "FAIL unsupported keyword: rc $rc, output: $out"; fails=$((fails + 1))
fi

[ $fails -eq 0 ] || { echo "$fails failed"; exit 1; }
echo "all passed"
