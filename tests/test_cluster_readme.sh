#!/bin/bash
# test_cluster_readme.sh - README.md's `dsinfer serve` and curl lines, run as written (only the
# port is changed, and models/default is the tiny-v3 fixture): the curl, which gives no
# max_tokens, gets 200 from `dsinfer serve` and from `dsinfer-coordinator --http` with two
# dsinfer-node daemons. A request without max_tokens gets the rest of the context (checked on a
# 64-token context, chat and completions); an explicit max_tokens that does not fit, or a prompt
# that fills the context, gets 400 context_length_exceeded naming the numbers.
set -u
FX=${DSINFER_FIXTURES:?DSINFER_FIXTURES is not set}
SRC=${DSINFER_SOURCE:?DSINFER_SOURCE is not set}
for p in dsinfer dsinfer-coordinator dsinfer-node; do
    command -v $p >/dev/null || { echo "FAIL: $p is not on PATH"; exit 1; }
done
command -v curl >/dev/null || { echo "SKIPPED: no curl"; exit 77; }
command -v python3 >/dev/null || { echo "SKIPPED: no python3"; exit 77; }
[ -f "$FX/tiny-v3/config.json" ] || { echo "SKIPPED: no tiny-v3 fixture in $FX"; exit 77; }

TMP=$(mktemp -d)
PIDS=
cleanup() {
    for p in $PIDS; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT
FAILED=0
fail() { echo "FAIL: $*"; FAILED=1; }
export DSINFER_SECRET=5e7e5e7e5e7e5e7e5e7e5e7e5e7e5e7e

# README's commands, run from a directory whose models/default is the fixture (the model id is
# the directory's name, "default", as the curl line asks).
mkdir -p "$TMP/models"
ln -s "$FX/tiny-v3" "$TMP/models/default"
cd "$TMP" || exit 1
SERVE=$(grep -m1 '^build/cli/dsinfer serve ' "$SRC/README.md")
CURL=$(grep -m1 '^curl .*/v1/chat/completions' "$SRC/README.md")
[ -n "$SERVE" ] && [ -n "$CURL" ] || { echo "FAIL: README.md has no serve or curl line"; exit 1; }
case "$SERVE$CURL" in *127.0.0.1:8000*) ;; *) echo "FAIL: README's lines do not use 127.0.0.1:8000"; exit 1 ;; esac
echo "README: $SERVE"
echo "README: $CURL"
SERVE=${SERVE%%#*}                  # the trailing comment
SERVE=${SERVE#build/cli/}           # the programs are on PATH
SERVE=${SERVE//127.0.0.1:8000/127.0.0.1:0}

# readme_curl PORT OUT: README's curl line with the port replaced; the response body in OUT.
readme_curl() {
    eval "${CURL//127.0.0.1:8000/127.0.0.1:$1}" >"$2"
}
# check_answer FILE WHAT: FILE is a whole chat or text completion (what a 200 carries).
check_answer() {
    python3 - "$1" "$2" <<'EOF' || fail "$2: not a completion: $(head -c 400 "$1")"
import json, sys
d = json.load(open(sys.argv[1], encoding="utf-8"))
assert "error" not in d, d["error"]
c = d["choices"][0]
assert c["finish_reason"] in ("stop", "length"), c
u = d["usage"]
assert u["completion_tokens"] >= 1 and u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"], u
print(sys.argv[2] + ":", d["object"], c["finish_reason"], u)
EOF
}
# count_200 URL ENDPOINT: how many 200 answers /metrics counted for ENDPOINT.
count_200() {
    curl -sS "$1/metrics" | grep "^dsinfer_http_requests_total{" | grep "endpoint=\"$2\"" |
        grep 'code="200"' | awk '{print $2}'
}

# start_serve LOG ARGS...: `dsinfer ARGS` (a serve command) in the background; URL once ready.
start_serve() {
    local log=$1; shift
    "$@" 2>"$log" &
    PIDS="$PIDS $!"
    URL=
    for _ in $(seq 600); do
        grep -q "ready: http://" "$log" && break
        sleep 0.1
    done
    URL=$(grep -o 'ready: http://[0-9.:]*' "$log" | head -1 | cut -c8-)
    [ -n "$URL" ] || { cat "$log"; fail "not ready: $*"; }
}

# 1. README's serve + curl.
# shellcheck disable=SC2086 # the README's words
start_serve "$TMP/serve.log" $SERVE
if [ -n "$URL" ]; then
    readme_curl "${URL##*:}" "$TMP/readme.json"
    check_answer "$TMP/readme.json" "README curl through dsinfer serve"
    [ "$(count_200 "$URL" /v1/chat/completions)" = 1 ] || fail "dsinfer serve: the README curl did not get 200"
fi

# 2. The rest of the context, on a 64-token context (greedy, so that the length is the same
# every run; finish "length" must end exactly at the context).
start_serve "$TMP/small.log" dsinfer serve --model models/default --listen 127.0.0.1:0 --max-context 64
# post ENDPOINT BODY OUT: prints the HTTP status.
post() { curl -sS -o "$3" -w '%{http_code}' -d "$2" "$URL$1"; }
if [ -n "$URL" ]; then
    for ep in chat/completions completions; do
        if [ $ep = completions ]; then
            body='{"model":"default","prompt":"Once upon a time","temperature":0}'
        else
            body='{"model":"default","messages":[{"role":"user","content":"Hi"}],"temperature":0}'
        fi
        code=$(post /v1/$ep "$body" "$TMP/rest.json")
        [ "$code" = 200 ] || fail "$ep without max_tokens on a 64-token context: $code $(cat "$TMP/rest.json")"
        python3 - "$TMP/rest.json" $ep <<'EOF' || fail "$ep: not the rest of the context: $(cat "$TMP/rest.json")"
import json, sys
d = json.load(open(sys.argv[1]))
f, u = d["choices"][0]["finish_reason"], d["usage"]
assert u["total_tokens"] <= 64, u
assert f == "stop" or u["total_tokens"] == 64, (f, u)
print(sys.argv[2], "without max_tokens, context 64:", f, u)
EOF
    done
    code=$(post /v1/completions '{"model":"default","prompt":"Once upon a time","max_tokens":62}' "$TMP/over.json")
    [ "$code" = 400 ] && grep -q context_length_exceeded "$TMP/over.json" &&
        grep -q "maximum context length is 64 tokens" "$TMP/over.json" &&
        grep -q "62 for the completion" "$TMP/over.json" &&
        grep -q "at most [0-9]" "$TMP/over.json" ||
        fail "explicit max_tokens over the context: $code $(cat "$TMP/over.json")"
    python3 -c 'import json; print(json.dumps({"model": "default", "prompt": "word " * 80}))' >"$TMP/long.json"
    code=$(curl -sS -o "$TMP/full.json" -w '%{http_code}' --data-binary @"$TMP/long.json" "$URL/v1/completions")
    [ "$code" = 400 ] && grep -q context_length_exceeded "$TMP/full.json" &&
        grep -q "prompt ('prompt') has [0-9]* tokens" "$TMP/full.json" ||
        fail "a prompt that fills the context, no max_tokens: $code $(cat "$TMP/full.json")"
fi

# 3. README's curl through dsinfer-coordinator --http and two node daemons.
dsinfer-coordinator --nodes 2 --model models/default --control 127.0.0.1:0 --port-file "$TMP/cport" \
    --listen 127.0.0.1:0 2>"$TMP/coord.log" &
PIDS="$PIDS $!"
for _ in $(seq 100); do
    grep -q "OpenAI API on" "$TMP/coord.log" && [ -s "$TMP/cport" ] && break
    sleep 0.1
done
HPORT=$(grep -o 'OpenAI API on 127.0.0.1 port [0-9]*' "$TMP/coord.log" | grep -o '[0-9]*$')
[ -n "$HPORT" ] || { cat "$TMP/coord.log"; echo "FAIL: no API port"; exit 1; }
for i in 0 1; do
    dsinfer-node --coordinator "127.0.0.1:$(cat "$TMP/cport")" --model models/default --threads 1 \
        --name "n$i" 2>"$TMP/node$i.log" &
    PIDS="$PIDS $!"
done
for _ in $(seq 300); do
    [ "$(curl -sS -o /dev/null -w '%{http_code}' "127.0.0.1:$HPORT/health")" = 200 ] && break
    sleep 0.1
done
readme_curl "$HPORT" "$TMP/coord.json"
check_answer "$TMP/coord.json" "README curl through dsinfer-coordinator --http"
[ "$(count_200 "http://127.0.0.1:$HPORT" /v1/chat/completions)" = 1 ] ||
    fail "dsinfer-coordinator --http: the README curl did not get 200"

[ "$FAILED" = 0 ] && echo "README serve/curl checks passed"
exit "$FAILED"
