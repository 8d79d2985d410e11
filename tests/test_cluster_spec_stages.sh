#!/usr/bin/env bash
# Speculative decoding on plans of several stages (docs/SPECULATIVE.md): on the tiny-v3-mtp
# fixture the last stage drafts with the MTP layer, stage 0 feeds the drafts, every stage cuts
# the rejected positions. Greedy generation with K = 1, 2, 3 equals the reference tokens
# (pN.gen.tokens) on plans of two and three stages, one request at a time and three at once
# (dsinfer-coordinator + dsinfer-node, clients with --coordinator); seeded sampling across stages
# gives the tokens of speculation in one process; through `dsinfer serve`'s API on three stages,
# with DSINFER_SPEC_SCRIPT choosing the drafts (random weights reject nearly all of the MTP
# layer's own), a run of accepted drafts is followed by a rejection whose rollback reaches every
# stage: the answer equals `dsinfer run`, the same request again (on the cache's freed blocks)
# too, /metrics shows acceptance per draft position, and no KV block stays used. A checkpoint
# without the layer runs on several stages as without the setting.
set -uo pipefail
. "$(dirname "$0")/fixture.bash" # need_fixture, ok, bad
need_fixture tiny-v3-mtp
FIX=$FIXDIR/tiny-v3-mtp
TMP=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done; rm -rf "$TMP"; }
trap cleanup EXIT
. "$(dirname "$0")/spec_ref.bash" # ref, same
export UCX_WARN_UNUSED_ENV_VARS=n

# run STAGES K PROMPT [options]: dsinfer run on STAGES local nodes of one stage each, --json on
# stdout, the log in $TMP/log
run() {
  local stages=$1 k=$2 prompt=$3
  shift 3
  timeout 120 dsinfer run --model "$FIX" --local-nodes "$stages" --stages "$stages" \
    --speculative-tokens "$k" --prompt-ids "$prompt" --max-tokens 12 --threads 1 --mem 1G \
    --json "$@" 2>"$TMP/log"
}

for stages in 2 3; do
  for p in 0 1 2; do
    PROMPT=$(ref "$FIX" p$p.tokens); WANT=$(ref "$FIX" p$p.gen.tokens)
    for k in 1 2 3; do
      out=$(run $stages $k "$PROMPT") || { bad "$stages stages p$p K=$k: run failed"; cat "$TMP/log"; continue; }
      same "$out" "$WANT" && ok || bad "$stages stages p$p K=$k: tokens"
      grep -q "MTP layer loaded, $k draft" "$TMP/log" && ok || bad "$stages stages p$p K=$k: the last stage did not load the MTP layer"
      [ "$(grep -c "the last of the plan's $stages stages drafts" "$TMP/log")" = $((stages - 1)) ] && ok ||
        bad "$stages stages p$p K=$k: the other stages do not say who drafts"
    done
  done
done

# A rejection after a run of accepted drafts, on three stages: the drafts come from the
# reference tokens with the sixth one changed (K = 3: the first token, then four from three
# accepted drafts and the bonus token, then the changed draft is rejected and three positions
# are cut on every stage, then the drafts are right again).
PROMPT=$(ref "$FIX" p0.tokens); WANT=$(ref "$FIX" p0.gen.tokens)
SCRIPT=$(python3 -c 'import sys; w = sys.argv[1].split(","); w[5] = str((int(w[5]) + 1) % 1000); print(",".join(w))' "$WANT")
out=$(DSINFER_SPEC_SCRIPT=$SCRIPT DSINFER_LOG=debug run 3 3 "$PROMPT") ||
  { bad "scripted drafts: run failed"; cat "$TMP/log"; }
same "$out" "$WANT" && ok || bad "scripted drafts: tokens"
grep -q "3 of 3 drafts accepted, 0 positions cut" "$TMP/log" && ok || bad "scripted drafts: no accepted run"
grep -q "0 of 3 drafts accepted, 3 positions cut" "$TMP/log" && ok || bad "scripted drafts: no rejection"
DSINFER_SPEC_SCRIPT=5,x,7 run 2 1 "$PROMPT" >/dev/null && bad "a bad DSINFER_SPEC_SCRIPT was taken" ||
  { grep -q "DSINFER_SPEC_SCRIPT: '5,x,7' is not a comma-separated list of token ids" "$TMP/log" && ok ||
    bad "a bad DSINFER_SPEC_SCRIPT: no clear error"; }

# Seeded sampling: the per-sequence draft distributions stay at the last stage until the drafts
# come back; the tokens are those of one process with the same seed.
for k in 1 3; do
  args=(--model "$FIX" --prompt-ids 5,17,30,9 --max-tokens 16 --temperature 0.9 --top-k 20
        --seed 7 --speculative-tokens $k --threads 1 --json)
  want=$(dsinfer run "${args[@]}" 2>/dev/null) || bad "sampling K=$k: one process failed"
  got=$(timeout 120 dsinfer run "${args[@]}" --local-nodes 2 --stages 2 --mem 1G 2>"$TMP/log") ||
    { bad "sampling K=$k two stages: run failed"; cat "$TMP/log"; continue; }
  python3 - "$got" "$want" <<'PY' && ok || bad "sampling K=$k two stages: tokens differ from one process"
import json, sys
got, want = json.loads(sys.argv[1])['tokens'], json.loads(sys.argv[2])['tokens']
assert got == want and len(got) == 16, (got, want)
PY
done

# Several sequences at once: a coordinator and nodes started on their own, three clients with
# the three prompts at the same time (p0's drafts scripted: its steps accept runs while the
# others' reject, in the same micro-batches).
export DSINFER_SECRET=spec-stages-secret-0123456789
for conf in "2 3" "3 2"; do
  read -r stages k <<<"$conf"
  PORT=$(python3 "$(dirname "$0")/free_ports.py")
  ADDR=127.0.0.1:$PORT
  cl=()
  dsinfer-coordinator --nodes "$stages" --stages "$stages" --model "$FIX" --control "$ADDR" \
    2>"$TMP/coord.log" &
  cl+=($!); pids+=($!)
  for i in $(seq "$stages"); do
    DSINFER_SPEC_SCRIPT=$SCRIPT dsinfer-node --coordinator "$ADDR" --model "$FIX" --name "n$i" \
      --threads 1 --mem 3G --speculative-tokens "$k" 2>"$TMP/node$i.log" &
    cl+=($!); pids+=($!)
  done
  batched "$stages stages K=$k" "$FIX" "$ADDR"
  grep -h -q "MTP layer loaded, $k draft" "$TMP"/node*.log && ok || bad "$stages stages K=$k batched: no MTP layer"
  for p in "${cl[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${cl[@]}"; do wait "$p" 2>/dev/null; done
done
unset DSINFER_SECRET

# The API on three stages: a chat request whose drafts are scripted (an accepted run, then a
# rejection), answered as `dsinfer run` answers; the same request again; then the figures.
if command -v curl >/dev/null; then
  . "$(dirname "$0")/serve_chat.bash" # wait_for_line
  M=$TMP/tiny-v3; mkdir -p "$M"
  for f in "$FIX"/*; do ln -s "$(cd "$(dirname "$f")" && pwd)/$(basename "$f")" "$M/"; done
  for f in tokenizer.json tokenizer_config.json; do cp "$FIXDIR/tiny-v3/$f" "$M/"; done
  CHAT=$(dsinfer run --model "$M" --chat "Hello there" --max-tokens 12 --json 2>/dev/null)
  TEXT=$(dsinfer run --model "$M" --chat "Hello there" --max-tokens 12 2>/dev/null)
  CSCRIPT=$(python3 -c 'import json, sys; w = json.loads(sys.argv[1])["tokens"]; w[5] = (w[5] + 1) % 1000; print(",".join(map(str, w)))' "$CHAT")
  DSINFER_SPEC_SCRIPT=$CSCRIPT dsinfer serve --model "$M" --local-nodes 3 --stages 3 \
    --listen 127.0.0.1:0 --threads 1 --mem 1G --max-context 512 --kv-pool 1M \
    --speculative-tokens 3 2>"$TMP/serve.log" &
  SPID=$!; pids+=($SPID)
  if wait_for_line "$TMP/serve.log" "ready: http://" "$SPID"; then
    URL=$(grep -o 'ready: http://[0-9.:]*' "$TMP/serve.log" | head -1 | sed 's/^ready: //')
    for round in 1 2; do
      code=$(curl -sS -m 120 -o "$TMP/chat.json" -w '%{http_code}' -H 'Content-Type: application/json' \
        -d '{"model":"tiny-v3","messages":[{"role":"user","content":"Hello there"}],"max_tokens":12,"temperature":0}' \
        "$URL/v1/chat/completions")
      python3 - "$TMP/chat.json" "$TEXT" <<'PY' && ok || bad "serve, three stages, request $round: answer differs (HTTP $code)"
import json, sys
got = json.load(open(sys.argv[1]))["choices"][0]["message"]["content"]
assert got == sys.argv[2], (got, sys.argv[2])
PY
    done
    # /metrics: the last stage's figures come with its heartbeats (every 500 ms by default);
    # the nodes' KV blocks are all free again.
    good=0
    for _ in $(seq 40); do
      curl -sS "$URL/metrics" >"$TMP/metrics.txt" 2>/dev/null
      python3 - "$TMP/metrics.txt" 2>"$TMP/metrics.err" <<'PY' && { good=1; break; }
import re, sys
v = {}
used = []
for line in open(sys.argv[1]):
    if line.startswith('dsinfer_spec'):
        name, val = line.rsplit(' ', 1)
        v[name] = float(val)
    m = re.match(r'dsinfer_node_kv_blocks\{node="[^"]*",state="used"\} (\S+)', line)
    if m:
        used.append(float(m.group(1)))
steps = v.get('dsinfer_spec_steps_total', 0)
assert steps >= 6, v  # two requests, three verify steps or more each
tokens = v['dsinfer_spec_tokens_total']
d = [v['dsinfer_spec_drafts_total{position="%d"}' % p] for p in range(3)]
a = [v['dsinfer_spec_accepted_total{position="%d"}' % p] for p in range(3)]
assert d[0] == steps and all(0 <= a[p] <= d[p] for p in range(3)), v
assert a[2] >= 2 and a[0] < d[0], v  # accepted runs of three, and rejections
for p in range(3):
    if d[p] > 0:
        assert abs(v['dsinfer_spec_acceptance{position="%d"}' % p] - a[p] / d[p]) < 1e-6, v
assert tokens == steps + sum(a), v
assert v['dsinfer_spec_draft_seconds_total'] > 0 and v['dsinfer_spec_verify_seconds_total'] > 0, v
assert len(used) == 3 and all(u == 0 for u in used), used
PY
      sleep 0.25
    done
    [ $good = 1 ] && ok || { bad "serve, three stages: /metrics"; cat "$TMP/metrics.err"; grep -E "dsinfer_spec|kv_blocks" "$TMP/metrics.txt"; }
  else
    bad "serve, three stages: not ready"; cat "$TMP/serve.log"
  fi
  kill -TERM "$SPID" 2>/dev/null; wait "$SPID" 2>/dev/null
else
  echo "no curl: the API part is skipped"
fi

# A checkpoint without the layer: on two stages the setting changes nothing.
NOMTP=$FIXDIR/tiny-v3
PROMPT=$(ref "$NOMTP" p0.tokens); WANT=$(ref "$NOMTP" p0.gen.tokens)
out=$(timeout 120 dsinfer run --model "$NOMTP" --local-nodes 2 --stages 2 --speculative-tokens 2 \
  --prompt-ids "$PROMPT" --max-tokens 12 --threads 1 --mem 1G --json 2>"$TMP/log") ||
  { bad "no layer: run failed"; cat "$TMP/log"; }
python3 - "$out" "$WANT" <<'PY' && ok || bad "no layer: tokens"
import json, sys
out = json.loads(sys.argv[1]); want = list(map(int, sys.argv[2].split(',')))
assert out['tokens'] == want[:len(out['tokens'])] and len(out['tokens']) == min(12, len(want)), (out['tokens'], want)
PY
grep -q "MTP layer" "$TMP/log" && bad "no layer: a node speaks of an MTP layer" || ok

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
