#!/usr/bin/env bash
# Speculative decoding in the node daemon (docs/SPECULATIVE.md): on the tiny-v3-mtp fixture,
# greedy generation through nodes with --speculative-tokens 0..3 equals the reference tokens
# (pN.gen.tokens), on one node and on two nodes of one stage (remote experts); seeded sampling
# through nodes gives the tokens of speculation in one process (the same decisions, the same
# random stream); a chat request through `dsinfer serve`'s API answers as `dsinfer run`, n
# choices sample as requests of their own (forks copy the module's cache too), structured output
# follows its grammar; a checkpoint without the layer runs with the setting as without it.
# Plans of several stages: test_cluster_spec_stages.sh. Random weights: nearly every draft is
# rejected, so every step rolls the caches back and the next one reuses them.
set -uo pipefail
. "$(dirname "$0")/fixture.bash" # need_fixture, ok, bad
need_fixture tiny-v3-mtp
FIX=$FIXDIR/tiny-v3-mtp
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT

. "$(dirname "$0")/spec_ref.bash" # ref, same

# run NODES STAGES K PROMPT: dsinfer run on local nodes, --json on stdout, the log in $TMP/log
run() {
  dsinfer run --model "$FIX" --local-nodes "$1" --stages "$2" --speculative-tokens "$3" \
    --prompt-ids "$4" --max-tokens 12 --threads 1 --mem 1G --json 2>"$TMP/log"
}

for p in 0 1 2; do
  PROMPT=$(ref "$FIX" p$p.tokens); WANT=$(ref "$FIX" p$p.gen.tokens)
  for k in 0 1 2 3; do
    out=$(run 1 1 $k "$PROMPT") || { bad "p$p K=$k one node: run failed"; cat "$TMP/log"; continue; }
    same "$out" "$WANT" && ok || bad "p$p K=$k one node: tokens"
    if [ $k -gt 0 ]; then
      grep -q "MTP layer loaded, $k draft" "$TMP/log" && ok || bad "p$p K=$k: the node did not load the MTP layer"
    fi
  done
done

PROMPT=$(ref "$FIX" p0.tokens); WANT=$(ref "$FIX" p0.gen.tokens)
for k in 1 3; do
  out=$(run 2 1 $k "$PROMPT") || { bad "K=$k two nodes, one stage: run failed"; cat "$TMP/log"; continue; }
  same "$out" "$WANT" && ok || bad "K=$k two nodes, one stage: tokens"
  grep -q "MTP layer loaded" "$TMP/log" && ok || bad "K=$k two nodes, one stage: no MTP layer"
done
# Sampling: the node's tokens are those of one process with the same seed.
for k in 1 3; do
  for nodes in 1 2; do
    args=(--model "$FIX" --prompt-ids 5,17,30,9 --max-tokens 16 --temperature 0.9 --top-k 20
          --seed 7 --speculative-tokens $k --threads 1 --json)
    want=$(dsinfer run "${args[@]}" 2>/dev/null) || bad "sampling K=$k: one process failed"
    got=$(dsinfer run "${args[@]}" --local-nodes $nodes --stages 1 --mem 1G 2>"$TMP/log") ||
      { bad "sampling K=$k $nodes nodes: run failed"; cat "$TMP/log"; continue; }
    python3 - "$got" "$want" <<'PY' && ok || bad "sampling K=$k $nodes nodes: tokens differ from one process"
import json, sys
got, want = json.loads(sys.argv[1])['tokens'], json.loads(sys.argv[2])['tokens']
assert got == want and len(got) == 16, (got, want)
PY
  done
done

# The API: the fixture with the tiny-v3 tokenizer (same vocabulary), one chat request through
# `dsinfer serve` on one node and on two nodes of one stage, against `dsinfer run --chat`.
if command -v curl >/dev/null; then
  . "$(dirname "$0")/serve_chat.bash"
  M=$TMP/tiny-v3; mkdir -p "$M" # (the name serve_chat asks for)
  for f in "$FIX"/*; do ln -s "$(cd "$(dirname "$f")" && pwd)/$(basename "$f")" "$M/"; done
  for f in tokenizer.json tokenizer_config.json; do cp "$FIXDIR/tiny-v3/$f" "$M/"; done
  for nodes in 1 2; do
    dsinfer serve --model "$M" --local-nodes $nodes --stages 1 --listen 127.0.0.1:0 --threads 1 \
      --mem 1G --max-context 512 --speculative-tokens 2 2>"$TMP/serve$nodes.log" &
    SPID=$!
    if wait_for_line "$TMP/serve$nodes.log" "ready: http://" "$SPID"; then
      URL=$(grep -o 'ready: http://[0-9.:]*' "$TMP/serve$nodes.log" | head -1 | sed 's/^ready: //')
      serve_chat "$URL" "$M" "$TMP" >/dev/null && ok || bad "serve, $nodes nodes: chat differs"
      # n choices: the forks share the module's cache of the prompt, and choice i samples as
      # a request with seed + i alone (serve_choices_check.py).
      python3 "$(dirname "$0")/serve_choices_check.py" cluster "$URL" "" "$M" 512 >"$TMP/choices.log" 2>&1 &&
        ok || { bad "serve, $nodes nodes: n choices"; grep FAIL "$TMP/choices.log"; }
      # Structured output: such a request decodes one token at a time beside the others.
      if [ $nodes = 1 ] && python3 -c 'import jsonschema' 2>/dev/null; then
        python3 "$(dirname "$0")/serve_grammar_check.py" "$URL" quick >"$TMP/grammar.log" 2>&1 &&
          ok || { bad "serve: structured output"; cat "$TMP/grammar.log"; }
      fi
      grep -q "MTP layer loaded, 2 draft" "$TMP/serve$nodes.log" && ok || bad "serve, $nodes nodes: no MTP layer"
      # /metrics: the nodes' figures come with their heartbeats (every 500 ms by default).
      good=0
      for _ in $(seq 40); do
        curl -sS "$URL/metrics" >"$TMP/metrics.txt" 2>/dev/null
        python3 - "$TMP/metrics.txt" 2>/dev/null <<'PY' && { good=1; break; }
import sys
v = {}
for line in open(sys.argv[1]):
    if line.startswith('dsinfer_spec'):
        name, val = line.rsplit(' ', 1)
        v[name] = float(val)
steps = v.get('dsinfer_spec_steps_total', 0)
assert steps >= 1, v
tokens = v['dsinfer_spec_tokens_total']
assert steps <= tokens <= 3 * steps, v
assert abs(v['dsinfer_spec_tokens_per_step'] - tokens / steps) < 1e-6, v
for p in (0, 1):
    d = v['dsinfer_spec_drafts_total{position="%d"}' % p]
    a = v['dsinfer_spec_accepted_total{position="%d"}' % p]
    assert 0 <= a <= d, v
    if d > 0:  # (position 1 is verified only after an accepted position 0)
        assert abs(v['dsinfer_spec_acceptance{position="%d"}' % p] - a / d) < 1e-6, v
assert v['dsinfer_spec_drafts_total{position="0"}'] == steps, v
# tokens = steps + accepted drafts (each step emits one more than it accepted)
acc = v['dsinfer_spec_accepted_total{position="0"}'] + v['dsinfer_spec_accepted_total{position="1"}']
assert tokens == steps + acc, v
assert v['dsinfer_spec_draft_seconds_total'] > 0 and v['dsinfer_spec_verify_seconds_total'] > 0, v
PY
        sleep 0.25
      done
      [ $good = 1 ] && ok || { bad "serve, $nodes nodes: /metrics"; grep dsinfer_spec "$TMP/metrics.txt"; }
    else
      bad "serve, $nodes nodes: not ready"; cat "$TMP/serve$nodes.log"
    fi
    kill -TERM "$SPID" 2>/dev/null; wait "$SPID" 2>/dev/null
  done
else
  echo "no curl: the API part is skipped"
fi

# mpirun: dsinfer-cluster with 3 ranks (a coordinator and two nodes of one stage).
if command -v mpirun >/dev/null && command -v dsinfer-cluster >/dev/null; then
  PROMPT=$(ref "$FIX" p1.tokens); WANT=$(ref "$FIX" p1.gen.tokens)
  out=$(DSINFER_SECRET=spec-mpi-secret-0123456789 timeout 120 mpirun --allow-run-as-root \
        --oversubscribe -np 3 -x DSINFER_SECRET -x UCX_WARN_UNUSED_ENV_VARS=n \
        "$(command -v dsinfer-cluster)" --model "$FIX" --prompt-ids "$PROMPT" --max-tokens 12 \
        --stages 1 --speculative-tokens 2 --threads 1 2>"$TMP/mpi.log")
  [ "$out" = "$WANT" ] && ok || { bad "mpirun: '$out' != '$WANT'"; tail -5 "$TMP/mpi.log"; }
  grep -q "MTP layer loaded, 2 draft" "$TMP/mpi.log" && ok || bad "mpirun: no MTP layer"
else
  echo "no mpirun or dsinfer-cluster: the mpirun part is skipped"
fi

# A checkpoint without the layer: the setting changes nothing.
NOMTP=$FIXDIR/tiny-v3
PROMPT=$(ref "$NOMTP" p0.tokens); WANT=$(ref "$NOMTP" p0.gen.tokens)
out=$(dsinfer run --model "$NOMTP" --local-nodes 1 --speculative-tokens 2 --prompt-ids "$PROMPT" \
  --max-tokens 12 --threads 1 --mem 1G --json 2>"$TMP/log") || { bad "no layer: run failed"; cat "$TMP/log"; }
python3 - "$out" "$WANT" <<'PY' && ok || bad "no layer: tokens"
import json, sys
out = json.loads(sys.argv[1]); want = list(map(int, sys.argv[2].split(',')))
assert out['tokens'] == want[:len(out['tokens'])] and len(out['tokens']) == min(12, len(want)), (out['tokens'], want)
PY
grep -q "MTP layer" "$TMP/log" && bad "no layer: the node speaks of an MTP layer" || ok

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
