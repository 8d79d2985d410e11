#!/bin/bash
# test_cluster_serve_choices.sh - several choices and the small endpoints on tiny-v3 with two
# pipeline stages (tests/serve_choices_check.py has the checks): n=3 at temperature 0 gives three
# choices equal to n=1's and the prefill counter shows the prompt computed once (the other choices
# copy its KV cache on both stages), chat and completions, whole and streamed by index; n=2 at
# temperature 1 with a seed differs, is reproducible and choice i equals a single request with
# seed + i; best_of returns the choices with the highest cumulative logprob; echo; /tokenize
# equals `dsinfer tokenize`; /detokenize round-trips; GET /v1/models/{id}; the API key guards
# them; the official openai npm client reads the choices. Run twice: `dsinfer serve` with local
# nodes, and `dsinfer-coordinator` with two `dsinfer-node`s (the n=3 checks).
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
KEY=k3y-$RANDOM$RANDOM

NPM_SCRIPT=
npm_client && NPM_SCRIPT=$SRC/tests/npm/openai_choices.mjs

# 1. dsinfer serve: a coordinator in the process, two node processes, two stages.
DSINFER_API_KEY=$KEY serve_start "$TMP/serve.log" --model "$MODEL" --model-name tiny-v3 \
    --local-nodes 2 --stages 2 --listen 127.0.0.1:0 --max-context 512 || exit 1
NPM_SCRIPT=$NPM_SCRIPT python3 "$SRC/tests/serve_choices_check.py" full "$URL" "$KEY" "$MODEL" 512
RC=$?
[ $RC -eq 0 ] || tail -20 "$TMP/serve.log"
serve_stop
[ $RC -eq 0 ] || exit $RC

# 2. dsinfer-coordinator and two dsinfer-nodes started apart, a plan of two stages.
head -c 24 /dev/urandom | base64 >"$TMP/secret"
chmod 600 "$TMP/secret"
DSINFER_API_KEY=$KEY coord_start "$TMP/coord.log" --model "$MODEL" --model-name tiny-v3 --nodes 2 \
    --stages 2 --secret-file "$TMP/secret" --listen 127.0.0.1:0 --control 127.0.0.1:0 \
    --max-context 512 || exit 1
for i in 0 1; do
    node_start "$TMP/node$i.log" --model "$MODEL" --secret-file "$TMP/secret" --threads 1 \
        --max-context 512 --name "n$i"
done
wait_healthy "$COORD_PID"
grep -q "2 stages" "$TMP/coord.log" || echo "note: the plan line does not say 2 stages"
python3 "$SRC/tests/serve_choices_check.py" cluster "$URL" "$KEY" "$MODEL" 512
RC=$?
if [ $RC -ne 0 ]; then tail -20 "$TMP/coord.log" "$TMP"/node*.log; fi
grep -q ERROR "$TMP/coord.log" "$TMP"/node*.log &&
    { grep ERROR "$TMP/coord.log" "$TMP"/node*.log; echo "FAIL: errors logged"; RC=1; }
exit $RC
