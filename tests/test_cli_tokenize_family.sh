#!/bin/bash
# test_cli_tokenize_family.sh - tokenizers of the DeepSeek family beyond V3's. A tokenizer.json
# with the V2 family's pre-tokenizer shape (tests/tokenizer_bpe_reference.py: six Isolated Splits,
# then ByteLevel without regex; the V2 fixtures ship no tokenizer) over tiny-v3's vocabulary and
# merges: `dsinfer tokenize` gives the ids of an independent Python encoder for mixed texts
# (letters, punctuation, digits, CJK, CR/LF, trailing spaces), and `detokenize` gives the text
# back. Pieces the loader does not know are refused, naming the piece: a normalizer, a Metaspace
# pre-tokenizer step, a pattern Oniguruma rejects.
set -u
FX=${DSINFER_FIXTURES:?DSINFER_FIXTURES is not set}
SRC=${DSINFER_SOURCE:?DSINFER_SOURCE is not set}
command -v dsinfer >/dev/null || { echo "FAIL: dsinfer is not on PATH"; exit 1; }
python3 -c 'import regex' 2>/dev/null || { echo "SKIPPED: python3-regex is missing"; exit 77; }
REF="$SRC/tests/tokenizer_bpe_reference.py"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
FAILED=0
fail() { echo "FAIL: $*"; FAILED=1; }

mkdir -p "$TMP/v2"
python3 "$REF" write "$FX/tiny-v3/tokenizer.json" "$TMP/v2/tokenizer.json" || exit 1
cp "$FX/tiny-v3/tokenizer_config.json" "$TMP/v2/"
texts=("Hello world 123" $'The quick brown fox.\nJumps!  ' "中文和English混合 2024年"
    "naïve café, Ωmega: x=1+2" $'tabs\tand\r\nCRLF  \n  end  ' "¡Hola! ¿Qué tal? (1999)"
    # the letter class's edges: Greek extended, letterlike symbols (ohm, kelvin), Georgian
    # Mtavruli, Cherokee, Deseret, Adlam; letters outside it (ƻ, ʔ, modifier ʰ)
    $'\u1fd3\u1fdb\u1fbe \u2126\u212a\u2128 \u1c90\u1cbf \uab70 \U00010400\U0001044f \U0001e900x \u01bb\u0294\u02b0')
for t in "${texts[@]}"; do
    want=$(python3 "$REF" ids "$TMP/v2/tokenizer.json" "$t")
    got=$(dsinfer tokenize --model "$TMP/v2" --json --text "$t" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["ids"])')
    [ "$want" = "$got" ] || fail "ids of $(printf %q "$t"): reference $want, dsinfer $got"
    # shellcheck disable=SC2046 # the id list
    back=$(dsinfer detokenize --model "$TMP/v2" $(echo "$got" | tr -d '[],'); printf x)
    [ "${back%x}" = "$t" ] || fail "round trip of $(printf %q "$t"): $(printf %q "${back%x}")"
done
echo "V2-style pre-tokenizer: ${#texts[@]} texts equal to the reference"

# refused, naming the piece: refuse NAME NEEDLE PYTHON-EDIT
refuse() {
    mkdir -p "$TMP/$1"
    cp "$FX/tiny-v3/tokenizer_config.json" "$TMP/$1/"
    python3 - "$TMP/v2/tokenizer.json" "$TMP/$1/tokenizer.json" "$3" <<'EOF'
import json, sys
t = json.load(open(sys.argv[1], encoding="utf-8"))
exec(sys.argv[3])
json.dump(t, open(sys.argv[2], "w", encoding="utf-8"), ensure_ascii=False)
EOF
    if dsinfer tokenize --model "$TMP/$1" --text hi >/dev/null 2>"$TMP/$1.err"; then
        fail "$1: accepted"
    elif ! grep -qF "$2" "$TMP/$1.err"; then
        fail "$1: the error does not name '$2': $(cat "$TMP/$1.err")"
    fi
}
refuse nfkc "normalizer is not supported" 't["normalizer"] = {"type": "NFKC"}'
refuse metaspace "type 'Metaspace' is not supported" \
    't["pre_tokenizer"]["pretokenizers"].insert(0, {"type": "Metaspace", "replacement": "\u2581"})'
refuse badregex "pre_tokenizer step 0: pattern rejected" \
    't["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "[z-a]"'
[ $FAILED = 0 ] && echo PASS
exit $FAILED
