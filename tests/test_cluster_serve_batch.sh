#!/bin/bash
# test_cluster_serve_batch.sh - /v1/completions with a batch of prompts (an array of strings or of
# token-id arrays) and with token-id prompts, on tiny-v3 with two pipeline stages
# (tests/serve_batch_check.py has the checks): each batched choice equals the same prompt sent
# alone at temperature 0, with n, echo, logprobs, stop, guided_choice and best_of, whole and
# streamed; bad batches get 400 naming the element; the official openai npm client sends them.
set -u
FX=${DSINFER_FIXTURES:?DSINFER_FIXTURES is not set}
SRC=${DSINFER_SOURCE:?DSINFER_SOURCE is not set}
MODEL=$FX/tiny-v3
command -v dsinfer >/dev/null || { echo "FAIL: dsinfer is not on PATH"; exit 1; }
command -v python3 >/dev/null || { echo "SKIPPED: no python3"; exit 77; }
command -v curl >/dev/null || { echo "SKIPPED: no curl"; exit 77; }
. "$SRC/tests/serve_chat.bash"
unset DSINFER_SECRET DSINFER_API_KEY
serve_tmp

NPM_SCRIPT=
npm_client && NPM_SCRIPT=$SRC/tests/npm/openai_batch.mjs
serve_start "$TMP/serve.log" --model "$MODEL" --model-name tiny-v3 --local-nodes 2 --stages 2 \
    --listen 127.0.0.1:0 --max-context 512 --max-prompts 4 --max-queue 8 || exit 1
NPM_SCRIPT=$NPM_SCRIPT python3 "$SRC/tests/serve_batch_check.py" "$URL" "$MODEL" || fail "checks"
[ "$FAILED" = 0 ] || tail -20 "$TMP/serve.log"
grep -q ERROR "$TMP/serve.log" && { grep ERROR "$TMP/serve.log"; fail "errors logged"; }
exit "$FAILED"
