# serve_chat.bash - sourced by the test_cluster_serve_*.sh tests: their start-up (a temporary
# folder, servers, coordinators and nodes started and stopped; below) and one greedy chat request
# to a served API, compared with `dsinfer run --chat` on the same model.
#   serve_chat URL MODEL TMPDIR [KEY]  -> 0 when the answer is 200 and equals dsinfer run's
serve_chat() {
    local url=$1 model=$2 tmp=$3 key=${4:-}
    local auth=()
    [ -n "$key" ] && auth=(-H "Authorization: Bearer $key")
    local code
    code=$(curl -sS -o "$tmp/chat.json" -w '%{http_code}' "${auth[@]}" \
        -H 'Content-Type: application/json' \
        -d '{"model":"tiny-v3","messages":[{"role":"user","content":"Hello there"}],"max_tokens":6,"temperature":0}' \
        "$url/v1/chat/completions")
    [ "$code" = 200 ] || { echo "chat: HTTP $code: $(cat "$tmp/chat.json")"; return 1; }
    dsinfer run --model "$model" --chat "Hello there" --max-tokens 6 2>/dev/null >"$tmp/want.txt" ||
        { echo "chat: dsinfer run failed"; return 1; }
    python3 - "$tmp/chat.json" "$tmp/want.txt" <<'PY'
import json, sys
got = json.load(open(sys.argv[1]))["choices"][0]["message"]["content"]
want = open(sys.argv[2], encoding="utf-8").read()
want = want[:-1] if want.endswith("\n") else want
assert got == want, (got, want)
print("chat answer == dsinfer run:", json.dumps(got))
PY
}

# wait_for_line FILE REGEXP [PID]: until FILE has a matching line (at most 60 s), or PID ended.
wait_for_line() {
    local file=$1 re=$2 pid=${3:-}
    for _ in $(seq 600); do
        grep -Eq -- "$re" "$file" 2>/dev/null && return 0
        [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null && return 1
        sleep 0.1
    done
    return 1
}

# The start-up of the test_cluster_serve_*.sh tests.
#   serve_tmp                  TMP (a fresh folder), PIDS (processes to stop), FAILED=0 and
#                              fail MESSAGE; at exit PIDS and the other background jobs are
#                              stopped, TMP removed
#   serve_start LOG ARGS...    `dsinfer serve ARGS` in the background (SERVER_PID, also in PIDS)
#                              until ready: sets URL; 1 with the log's tail when it did not start
#   serve_stop [SIGNAL]        stop_wait SERVER_PID SIGNAL
#   stop_wait PID [SIGNAL]     send PID SIGNAL (TERM; 0: none, it ends by itself), wait for it
#                              (out of PIDS): returns its exit status
#   coord_start LOG ARGS...    `dsinfer-coordinator ARGS --port-file TMP/cport` (COORD_PID, in
#                              PIDS) until its API listens: sets URL and CPORT (the nodes' port)
#   node_start LOG ARGS...     `dsinfer-node --coordinator 127.0.0.1:CPORT ARGS` (NODE_PID, in
#                              PIDS)
#   wait_healthy [PID]         until URL/health answers 200 (at most 60 s) or PID ended
#   npm_client                 0 when tests/npm's openai client is installed (else says why)
serve_tmp() {
    TMP=$(mktemp -d)
    PIDS=
    # shellcheck disable=SC2034 # read by the tests
    FAILED=0
    trap serve_cleanup EXIT
}
serve_cleanup() {
    local p
    for p in $PIDS; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
    jobs -p | xargs -r kill 2>/dev/null
    rm -rf "$TMP"
}
fail() {
    echo "FAIL: $*"
    # shellcheck disable=SC2034 # read by the tests
    FAILED=1
}
serve_start() {
    local log=$1
    shift
    dsinfer serve "$@" 2>"$log" &
    SERVER_PID=$!
    PIDS="$SERVER_PID $PIDS"
    wait_for_line "$log" "ready: http://" "$SERVER_PID" ||
        { tail -20 "$log"; echo "FAIL: dsinfer serve did not start"; return 1; }
    URL=$(grep -o 'ready: http://[0-9.:]*' "$log" | head -1 | cut -c8-)
}
serve_stop() {
    local rc
    stop_wait "$SERVER_PID" "${1:-TERM}"
    rc=$?
    SERVER_PID=
    return $rc
}
stop_wait() {
    local pid=$1 sig=${2:-TERM} rc p rest=
    [ "$sig" = 0 ] || kill -"$sig" "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    rc=$?
    for p in $PIDS; do [ "$p" = "$pid" ] || rest="$rest $p"; done
    PIDS=$rest
    return $rc
}
coord_start() {
    local log=$1
    shift
    dsinfer-coordinator "$@" --port-file "$TMP/cport" 2>"$log" &
    COORD_PID=$!
    PIDS="$COORD_PID $PIDS"
    wait_for_line "$log" "OpenAI API on" "$COORD_PID" &&
        wait_for_line "$TMP/cport" "[0-9]" "$COORD_PID" ||
        { tail -20 "$log"; echo "FAIL: the coordinator did not start"; return 1; }
    URL=http://127.0.0.1:$(grep -o 'OpenAI API on 127.0.0.1 port [0-9]*' "$log" | grep -o '[0-9]*$')
    CPORT=$(cat "$TMP/cport")
}
node_start() {
    local log=$1
    shift
    dsinfer-node --coordinator "127.0.0.1:$CPORT" "$@" 2>"$log" &
    NODE_PID=$!
    PIDS="$NODE_PID $PIDS"
}
wait_healthy() {
    local pid=${1:-}
    for _ in $(seq 600); do
        [ "$(curl -sS -o /dev/null -w '%{http_code}' "$URL/health")" = 200 ] && return 0
        [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null && return 1
        sleep 0.1
    done
    return 1
}
npm_client() {
    local src=${DSINFER_SOURCE:-$(dirname "${BASH_SOURCE[0]}")/..}
    if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
        echo "SKIPPED (part): no npm for the openai client"
        return 1
    fi
    (cd "$src" && timeout 300 npm install --prefix tests/npm --no-audit --no-fund \
        >"$TMP/npm.log" 2>&1) && return 0
    echo "SKIPPED (part): npm install of the openai client failed (no registry?)"
    return 1
}
