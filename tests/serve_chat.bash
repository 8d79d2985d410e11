# serve_chat.bash - sourced by the test_cluster_serve_*.sh launcher tests: one greedy chat request
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
