#!/bin/bash
# test_cluster_serve_params.sh - the sampling controls and logprobs through `dsinfer serve` on
# tiny-v3 with two pipeline stages (the last stage samples; DSINFER_LOGITS_DIR makes it dump the
# raw logits of every step). For each control the test recomputes the greedy tokens from the dumped
# logits of the same run with its own reference (tests/serve_params_ref.py) and checks the server
# chose exactly those: presence, frequency and repetition penalties, logit_bias, min_tokens,
# ignore_eos, stop_token_ids, min_p (1.0 keeps only the most likely token); logprobs equal
# log_softmax of the dumped row within 1e-4 and top_logprobs are its most likely tokens, in chat
# and completions format, whole and streamed; generation_config.json supplies temperature and
# top_p when a request gives none; every unsupported field is a 400 naming it; a field outside the
# spec is counted in /metrics; the official openai npm client reads logprobs through its types.
set -u
FX=${DSINFER_FIXTURES:?DSINFER_FIXTURES is not set}
SRC=${DSINFER_SOURCE:?DSINFER_SOURCE is not set}
command -v dsinfer >/dev/null || { echo "FAIL: dsinfer is not on PATH"; exit 1; }
command -v python3 >/dev/null || { echo "SKIPPED: no python3"; exit 77; }

. "$SRC/tests/serve_chat.bash"
serve_tmp

# The fixture with a generation_config.json (R1's values).
mkdir -p "$TMP/model" "$TMP/logits"
for f in "$FX"/tiny-v3/*; do ln -s "$f" "$TMP/model/"; done
echo '{"temperature": 0.6, "top_p": 0.95}' >"$TMP/model/generation_config.json"

DSINFER_LOGITS_DIR=$TMP/logits serve_start "$TMP/server.log" --model "$TMP/model" \
    --model-name tiny-v3 --local-nodes 2 --stages 2 --listen 127.0.0.1:0 --max-context 512 ||
    exit 1
grep -q "defaults temperature 0.6, top_p 0.95" "$TMP/server.log" ||
    { echo "FAIL: generation_config.json was not read"; exit 1; }

PROMPT="the cat sat on the mat and the cat sat on the hat and the dog"
IDS=$(dsinfer tokenize --model "$FX/tiny-v3" --bos --json --text "$PROMPT") || exit 1

NPM_OK=0
npm_client && NPM_OK=1

DSINFER_URL=$URL NPM_OK=$NPM_OK python3 "$SRC/tests/serve_params_ref.py" "$TMP/logits" \
    "$PROMPT" "$IDS" "$SRC/tests/npm/openai_logprobs.mjs"
RC=$?
[ $RC -eq 0 ] || tail -20 "$TMP/server.log"
exit $RC
