#!/bin/bash
# test_cluster_serve_v2.sh - `dsinfer serve` on the V2-family fixtures over real HTTP: v2-tiny
# (group_limited_greedy softmax router, q_lora) with --local-nodes 2 and v2-lite-tiny (greedy, no
# q_lora) with --local-nodes 3 --stages 3. The fixtures carry no tokenizer, so the model directory
# here links their config and shards beside tiny-v3's tokenizer files (the same 1024-id vocabulary
# size). Checks: /health; a completion and a chat, whole and streamed, give the same text, and at
# temperature 0 equal `dsinfer run` (single process) on the prompt ids of `dsinfer tokenize`;
# SIGTERM leaves no process behind. Then DeepSeek-V3.1's chat template (written into the model's
# tokenizer_config.json) with thinking off and on (chat_template_kwargs), the reasoning split.
set -u
FX=${DSINFER_FIXTURES:?DSINFER_FIXTURES is not set}
SRC=${DSINFER_SOURCE:?DSINFER_SOURCE is not set}
command -v dsinfer >/dev/null || { echo "FAIL: dsinfer is not on PATH"; exit 1; }
command -v curl >/dev/null || { echo "SKIPPED: no curl"; exit 77; }
command -v python3 >/dev/null || { echo "SKIPPED: no python3"; exit 77; }
[ -d "$FX/v2-tiny" ] && [ -d "$FX/v2-lite-tiny" ] || { echo "SKIPPED: no V2 fixtures"; exit 77; }

. "$SRC/tests/serve_chat.bash"
serve_tmp

# summary FILE: text, finish reason and usage of a whole or streamed response (JSON).
cat >"$TMP/resp.py" <<'EOF'
import json, sys
def summary(path):
    raw = open(path, encoding="utf-8").read()
    if raw.startswith("data: "):
        events = raw.split("\n\n")
        assert events[-2] == "data: [DONE]", events[-3:]
        text, finish, usage = "", None, None
        for e in events[:-2]:
            d = json.loads(e[6:])
            usage = d.get("usage") or usage
            for c in d["choices"]:
                text += c.get("text") or (c.get("delta") or {}).get("content") or ""
                finish = c.get("finish_reason") or finish
    else:
        d = json.loads(raw)
        c = d["choices"][0]
        text = c["text"] if "text" in c else c["message"]["content"]
        finish, usage = c["finish_reason"], d["usage"]
    return {"text": text, "finish": finish, "usage": usage}
print(json.dumps(summary(sys.argv[1])))
EOF

# run_model FIXTURE SERVE-ARGS...
run_model() {
    local fixture=$1; shift
    local model="$TMP/$fixture"
    mkdir -p "$model"
    ln -s "$FX/$fixture"/config.json "$FX/$fixture"/model*.safetensors* "$model/"
    ln -s "$FX/tiny-v3/tokenizer.json" "$FX/tiny-v3/tokenizer_config.json" "$model/"
    echo "--- $fixture: serve $*"
    serve_start "$TMP/$fixture.log" --model "$model" --listen 127.0.0.1:0 "$@" ||
        { fail "$fixture: not ready"; return; }
    local url=$URL
    [ "$(curl -sS -o /dev/null -w '%{http_code}' "$url/health")" = 200 ] || fail "$fixture: /health"
    local prompt="The quick brown fox jumps over the lazy dog" msg="Hello! Who are you?"
    local cbody="{\"model\":\"$fixture\",\"prompt\":\"$prompt\",\"max_tokens\":12,\"temperature\":0"
    local hbody="{\"model\":\"$fixture\",\"messages\":[{\"role\":\"user\",\"content\":\"$msg\"}],\"max_tokens\":12,\"temperature\":0"
    local name body endpoint
    for name in c cs h hs; do
        case $name in
        c) endpoint=/v1/completions body="$cbody}" ;;
        cs) endpoint=/v1/completions body="$cbody,\"stream\":true,\"stream_options\":{\"include_usage\":true}}" ;;
        h) endpoint=/v1/chat/completions body="$hbody}" ;;
        hs) endpoint=/v1/chat/completions body="$hbody,\"stream\":true,\"stream_options\":{\"include_usage\":true}}" ;;
        esac
        code=$(curl -sS -m 120 -o "$TMP/$fixture.$name" -w '%{http_code}' \
            -H 'Content-Type: application/json' --data-binary "$body" "$url$endpoint")
        [ "$code" = 200 ] || fail "$fixture $endpoint: $code $(head -c 300 "$TMP/$fixture.$name")"
    done
    local c cs h hs
    c=$(python3 "$TMP/resp.py" "$TMP/$fixture.c") cs=$(python3 "$TMP/resp.py" "$TMP/$fixture.cs")
    h=$(python3 "$TMP/resp.py" "$TMP/$fixture.h") hs=$(python3 "$TMP/resp.py" "$TMP/$fixture.hs")
    [ "$c" = "$cs" ] || fail "$fixture completion: streamed $cs != whole $c"
    [ "$h" = "$hs" ] || fail "$fixture chat: streamed $hs != whole $h"
    echo "completion: $c"
    echo "chat:       $h"
    # The same prompts through dsinfer tokenize and the single-process engine.
    local what sum
    for what in completion chat; do
        if [ $what = completion ]; then
            sum=$c
            dsinfer tokenize --model "$model" --json --bos --text "$prompt" >"$TMP/ids.json"
        else
            sum=$h
            dsinfer tokenize --model "$model" --json --chat --text "$msg" >"$TMP/ids.json"
        fi
        ids=$(python3 -c 'import json,sys; print(",".join(map(str, json.load(open(sys.argv[1]))["ids"])))' "$TMP/ids.json")
        dsinfer run --model "$model" --prompt-ids "$ids" --max-tokens 12 --json >"$TMP/run.json" 2>/dev/null ||
            { fail "$fixture $what: dsinfer run"; continue; }
        gen=$(python3 -c 'import json,sys; print(" ".join(map(str, json.load(open(sys.argv[1]))["tokens"])))' "$TMP/run.json")
        # shellcheck disable=SC2086 # the token list
        dsinfer detokenize --model "$model" --skip-special $gen >"$TMP/run.txt"
        python3 - "$sum" "$TMP/ids.json" "$TMP/run.json" "$TMP/run.txt" <<'EOF' || fail "$fixture $what differs from dsinfer run"
import json, sys
api = json.loads(sys.argv[1])
ids = json.load(open(sys.argv[2]))["ids"]
run = json.load(open(sys.argv[3]))
text = open(sys.argv[4], encoding="utf-8").read()
assert api["usage"]["prompt_tokens"] == len(ids), (api["usage"], len(ids))
assert api["usage"]["completion_tokens"] == len(run["tokens"]), (api["usage"], run["tokens"])
assert api["text"] == text, (api["text"], text)
print("  == dsinfer run:", len(ids), "prompt ids,", len(run["tokens"]), "tokens")
EOF
    done
    serve_stop
    sleep 0.5
    pgrep -f "dsinfer-node .*--model $model( |$)" >/dev/null && fail "$fixture: node processes left"
}

run_model v2-tiny --local-nodes 2
run_model v2-lite-tiny --local-nodes 3 --stages 3

# --- DeepSeek-V3.1's published chat template (tests/chat_v31_reference.py) on v2-lite-tiny: thinking off
# gives the answer in content, chat_template_kwargs {"thinking": true} in reasoning_content (the
# random model never closes the block), each equal to dsinfer run on the ids of
# `dsinfer tokenize --chat [--thinking]`.
if python3 -c 'import jinja2' 2>/dev/null; then
    model="$TMP/v31"
    mkdir -p "$model"
    ln -s "$FX/v2-lite-tiny"/config.json "$FX/v2-lite-tiny"/model*.safetensors* "$model/"
    ln -s "$FX/tiny-v3/tokenizer.json" "$model/"
    python3 - "$SRC/tests/chat_v31_reference.py" "$FX/tiny-v3/tokenizer_config.json" \
        "$model/tokenizer_config.json" <<'EOF'
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("ref", sys.argv[1])
ref = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ref)
cfg = json.load(open(sys.argv[2], encoding="utf-8"))
cfg["chat_template"] = ref.PUBLISHED
json.dump(cfg, open(sys.argv[3], "w", encoding="utf-8"), ensure_ascii=False)
EOF
    echo "--- v3.1 template: serve --local-nodes 2"
    serve_start "$TMP/v31.log" --model "$model" --listen 127.0.0.1:0 --local-nodes 2 ||
        fail "v3.1: not ready"
    url=$URL
    msg="Hello! Who are you?"
    for mode in off on; do
        # on: the published template's other name of the switch, enable_thinking
        kw='"thinking":false' thinkarg=
        [ $mode = on ] && kw='"enable_thinking":true' thinkarg=--thinking
        body="{\"model\":\"v31\",\"messages\":[{\"role\":\"user\",\"content\":\"$msg\"}],\"max_tokens\":12,\"temperature\":0,\"chat_template_kwargs\":{$kw}}"
        code=$(curl -sS -m 120 -o "$TMP/v31.$mode" -w '%{http_code}' \
            -H 'Content-Type: application/json' --data-binary "$body" "$url/v1/chat/completions")
        [ "$code" = 200 ] || { fail "v3.1 thinking $mode: $code $(head -c 300 "$TMP/v31.$mode")"; continue; }
        # shellcheck disable=SC2086 # an optional flag
        dsinfer tokenize --model "$model" --json --chat $thinkarg --text "$msg" >"$TMP/ids.json"
        ids=$(python3 -c 'import json,sys; print(",".join(map(str, json.load(open(sys.argv[1]))["ids"])))' "$TMP/ids.json")
        dsinfer run --model "$model" --prompt-ids "$ids" --max-tokens 12 --json >"$TMP/run.json" 2>/dev/null ||
            { fail "v3.1 thinking $mode: dsinfer run"; continue; }
        gen=$(python3 -c 'import json,sys; print(" ".join(map(str, json.load(open(sys.argv[1]))["tokens"])))' "$TMP/run.json")
        # shellcheck disable=SC2086 # the token list
        dsinfer detokenize --model "$model" --skip-special $gen >"$TMP/run.txt"
        python3 - "$TMP/v31.$mode" "$TMP/run.txt" "$mode" "$TMP/ids.json" <<'EOF' || fail "v3.1 thinking $mode differs from dsinfer run"
import json, sys
resp = json.load(open(sys.argv[1], encoding="utf-8"))
msg = resp["choices"][0]["message"]
text = open(sys.argv[2], encoding="utf-8").read()
assert resp["usage"]["prompt_tokens"] == json.load(open(sys.argv[4]))["count"], resp["usage"]
if sys.argv[3] == "on":
    assert msg.get("reasoning_content") == text, (msg, text)
    assert not msg.get("content"), msg
else:
    assert msg["content"] == text, (msg, text)
    assert not msg.get("reasoning_content"), msg
print("  thinking", sys.argv[3], "== dsinfer run:", json.dumps(msg, ensure_ascii=False)[:120])
EOF
    done
    body="{\"model\":\"v31\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"chat_template_kwargs\":{\"thinking\":\"yes\"}}"
    code=$(curl -sS -m 60 -o "$TMP/v31.bad" -w '%{http_code}' -H 'Content-Type: application/json' \
        --data-binary "$body" "$url/v1/chat/completions")
    { [ "$code" = 400 ] && grep -q "chat_template_kwargs.thinking" "$TMP/v31.bad"; } ||
        fail "v3.1: thinking \"yes\" gave $code $(cat "$TMP/v31.bad")"
    serve_stop
else
    echo "(no python3-jinja2: the V3.1 template part is skipped)"
fi
[ $FAILED = 0 ] && echo "PASS"
exit $FAILED
