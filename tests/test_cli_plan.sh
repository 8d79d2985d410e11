#!/usr/bin/env bash
# dsinfer plan: the 671B config on 8 and 16 nodes (text and --json), refusals that name the node
# and the amount, tiny-v3 in every PP x EP shape of 2-4 nodes, and bad arguments.
set -uo pipefail
FIXROOT=${DSINFER_FIXTURES:-../shared/fixtures}
BIG=$FIXROOT/deepseek-v3-671b/config.json
TINY=$FIXROOT/tiny-v3
if [ ! -f "$BIG" ] || [ ! -d "$TINY" ]; then
  [ "${CI:-}" = true ] && { echo "ERROR: fixtures under $FIXROOT missing under CI"; exit 1; }
  echo "*** SKIPPED: fixtures under $FIXROOT missing ***"; exit 77
fi
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
unset DSINFER_KV_DTYPE # the figures below are for the default --kv-dtype (bf16) unless named
pass=0; fail=0
ok() { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL: $*"; }
# expect RC WHAT -- command...: runs it, stdout in $TMP/out, stderr in $TMP/err.
expect() {
  local want=$1 what=$2; shift 3
  "$@" >"$TMP/out" 2>"$TMP/err"; local rc=$?
  if [ "$rc" = "$want" ]; then ok; else bad "$what: exit $rc, expected $want"; cat "$TMP/err"; fi
}
has() { if grep -qF -- "$2" "$TMP/$1"; then ok; else bad "$1 lacks '$2'"; cat "$TMP/$1"; fi; }

# Checks a --json plan: stages contiguous and covering, nodes within budget, every expert placed.
check_json() {
  python3 - "$TMP/out" "$@" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))
want_stages = int(sys.argv[2]) if len(sys.argv) > 2 else 0
assert p['ok'] is True
st = p['stages']
assert st[0]['first_layer'] == 0 and st[-1]['end_layer'] == p['n_layers']
for a, b in zip(st, st[1:]):
    assert a['end_layer'] == b['first_layer'] and a['end_layer'] > a['first_layer']
if want_stages:
    assert len(st) == want_stages, (len(st), want_stages)
moe = p['n_layers'] - p['first_moe_layer']
copies = mtp_held = 0
for n in p['nodes']:
    assert n['planned'] <= n['budget'], n
    assert n['planned'] == n['weights'] + n['expert_bytes'] + n['kv'] + n['mtp'] + n['overhead'], n
    # the MTP layer (speculative decoding) on the last stage's nodes only: its non-expert part
    # and cache on each, its routed experts spread over them (each counted once, on its holder)
    last = n['stage'] == len(st) - 1
    m = p['mtp']
    if last and m['placed']:
        one = m['experts'] // p['n_experts']
        held = n['mtp_experts'] if m['experts_spread'] else p['n_experts']
        assert n['mtp'] == m['per_node'] - m['experts'] + held * one, (n, m)
        mtp_held += held
    else:
        assert n['mtp'] == 0 and n['mtp_experts'] == 0, n
    copies += n['experts']
# every stage's nodes hold exactly that stage's experts once (no replicas from the CLI)
assert copies == moe * p['n_experts'] == p['expert_copies'], (copies, moe * p['n_experts'])
# and the MTP layer's experts once each over the last stage
n_last = sum(1 for n in p['nodes'] if n['stage'] == len(st) - 1)
assert mtp_held == (0 if not p['mtp']['placed'] else p['n_experts'] if p['mtp']['experts_spread'] else p['n_experts'] * n_last), mtp_held
for s in st:
    assert s['nodes'], s
fmt = {f['format']: f for f in p['formats']}
assert set(fmt) == {'fp8', 'bf16', 'int8', 'int4', 'int4-g128'}
PY
}

# 671B on 8 x 128G: one stage of 8, ~100 GiB per node; the per-format table.
expect 0 "671B 8x128G" -- dsinfer plan --config "$BIG" --nodes 8 --mem-per-node 128G
has out "PP=1 x EP=8"
has out "1856 (76.1 GiB)"
has out "int4-g128"
[ "$(grep -cE '^[0-7] +0 ' "$TMP/out")" = 8 ] && ok || bad "8 node rows expected"
expect 0 "671B 8x128G json" -- dsinfer plan --config "$BIG" --nodes 8 --mem-per-node 128G --json
python3 -c 'import json,sys; json.load(sys.stdin)' <"$TMP/out" && ok || bad "json does not parse"
check_json 1 && ok || bad "671B 8x128G json checks"
python3 - "$TMP/out" <<'PY' && ok || bad "671B fp8 total out of range"
import json, sys
f = {x['format']: x for x in json.load(open(sys.argv[1]))['formats']}
assert 670e9 < f['fp8']['params_main'] < 672e9
assert 672e9 < f['fp8']['main_bytes'] < 676e9            # main model
assert 685e9 < f['fp8']['main_bytes'] + f['fp8']['mtp_bytes'] < 693e9  # the release's ~689 GB
assert f['int4']['main_bytes'] < f['fp8']['main_bytes'] < f['bf16']['main_bytes']
PY

# The MTP layer (speculative decoding, on by default) goes with the last stage: 14.4 GiB of
# weights in fp8, its 256 routed experts 10.5 GiB of them, spread over the stage's nodes (32 on
# each of 8), the rest and its f32 cache on each node; --speculative-tokens 0 leaves it out.
expect 0 "671B 16x64G mtp" -- dsinfer plan --config "$BIG" --nodes 16 --mem 64G --json
check_json 2 && ok || bad "671B 16x64G json checks"
cp "$TMP/out" "$TMP/mtp.json"
expect 0 "671B 16x64G no mtp" -- dsinfer plan --config "$BIG" --nodes 16 --mem 64G --json --speculative-tokens 0
check_json && ok || bad "671B 16x64G without MTP json checks"
python3 - "$TMP/mtp.json" "$TMP/out" <<'PY' && ok || bad "the MTP layer's placement"
import json, sys
p, q = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
m = p['mtp']
assert m['placed'] is True and not q['mtp']['placed'] and q['mtp']['per_node'] == 0, (m, q['mtp'])
assert 14.2 * 2**30 < m['weights'] < 14.6 * 2**30, m          # fp8, experts included
assert 10.3 * 2**30 < m['experts'] < 10.7 * 2**30, m
assert m['per_node'] == m['weights'] + 163840 * (512 + 64) * 4, m  # and its f32 cache
fmt = {f['format']: f for f in p['formats']}
assert m['weights'] == fmt['fp8']['mtp_bytes'], (m, fmt['fp8'])
assert all(n['mtp'] == 0 for n in q['nodes'])
assert m['experts_spread'] and not q['mtp']['experts_spread'], (m, q['mtp'])
assert [n['mtp_experts'] for n in p['nodes'] if n['stage'] == 1] == [32] * 8, p['nodes']
# the last stage gives up layers to make room for it
last_p = p['stages'][-1]['end_layer'] - p['stages'][-1]['first_layer']
last_q = q['stages'][-1]['end_layer'] - q['stages'][-1]['first_layer']
assert len(p['stages']) == len(q['stages']) == 2 and last_p < last_q, (p['stages'], q['stages'])
PY
expect 0 "671B 16x64G mtp text" -- dsinfer plan --config "$BIG" --nodes 16 --mem 64G
has out "mtp      the MTP layer (speculative decoding): 3.9 GiB of weights besides its routed experts and 360.0 MiB of f32 KV cache on each node of the last stage; its routed experts (10.5 GiB) spread"

# 16 x 48G: non-expert weights do not fit on every node of one stage: several stages.
expect 0 "671B 16x48G" -- dsinfer plan --config "$BIG" --nodes 16 --mem-per-node 48G --json
check_json && ok || bad "671B 16x48G json checks"
python3 -c 'import json,sys; assert len(json.load(sys.stdin)["stages"]) > 1' <"$TMP/out" && ok || bad "16x48G should have stages"

# Refusals: the whole cluster too small; one node short by a named amount.
expect 1 "671B 4x128G" -- dsinfer plan --config "$BIG" --nodes 4 --mem-per-node 128G --max-context 32768 --kv-dtype f32 --speculative-tokens 0
has err "the model needs 639.2 GiB"
has err "4 nodes x 128.0 GiB = 512.0 GiB"
has out "fp8"
expect 1 "671B 8x90G one stage" -- dsinfer plan --config "$BIG" --nodes 8 --mem-per-node 90G --stages 1 --max-context 32768 --kv-dtype f32 --speculative-tokens 0
has err "node 0 needs 10.2 GiB more than its 90.0 GiB budget (stage 0 of 1: layers 0-60"
expect 1 "671B 4x128G json" -- dsinfer plan --config "$BIG" --nodes 4 --mem-per-node 128G --json
python3 -c 'import json,sys; p=json.load(sys.stdin); assert p["ok"] is False and "needs" in p["error"]' <"$TMP/out" && ok || bad "refusal json"
# The KV pool: every node's memory after weights and overhead, in concurrent sequences of
# --max-context tokens; fp8 fits more than bf16, bf16 more than f32.
for d in f32 bf16 fp8; do
    expect 0 "671B 8x128G kv $d" -- dsinfer plan --config "$BIG" --nodes 8 --mem 128G --kv-dtype $d --json --speculative-tokens 0
    cp "$TMP/out" "$TMP/kv-$d.json"
done
python3 - "$TMP" <<'PY' && ok || bad "concurrent sequences by --kv-dtype"
import json, sys
fit = {}
for d in ("f32", "bf16", "fp8"):
    p = json.load(open(f"{sys.argv[1]}/kv-{d}.json"))
    assert p["kv_dtype"] == d and p["kv_tokens"] == 163840, (p["kv_dtype"], p["kv_tokens"])
    for n in p["nodes"]:
        assert n["kv_pool"] == n["budget"] - n["weights"] - n["expert_bytes"] - n["mtp"] - n["overhead"], n
        assert n["sequences_fit"] == n["kv_pool"] // n["kv"], n
    fit[d] = p["concurrent_sequences"]
assert 0 < fit["f32"] < fit["bf16"] < fit["fp8"], fit
print("concurrent sequences of 163840 tokens:", fit)
PY
expect 0 "671B 8x128G text" -- dsinfer plan --config "$BIG" --nodes 8 --mem 128G
has out "concurrent sequences of length 163840 (KV cache bf16"
# int4 weights make 4 x 128G enough.
expect 0 "671B int4 4x128G" -- dsinfer plan --config "$BIG" --nodes 4 --mem-per-node 128G --weight-format int4 --json
check_json && ok || bad "int4 json checks"
# Unequal budgets and one node too small for anything.
expect 1 "tiny tiny node" -- dsinfer plan --config "$TINY/config.json" --node-mem 64M,64M,1M --overhead 2M
has err "node 2 needs"

# tiny-v3 in every shape: PP=1 x EP=N, PP=2 x EP=2, PP=N x EP=1.
for n in 2 3 4; do
  for s in 1 2 $n; do
    expect 0 "tiny n=$n s=$s" -- dsinfer plan --model "$TINY" --nodes $n --mem-per-node 64M --stages $s --kv-tokens 1024 --overhead 1M --json
    check_json $s && ok || bad "tiny n=$n s=$s json checks"
  done
done
expect 0 "tiny text" -- dsinfer plan --model "$TINY" --nodes 4 --mem-per-node 64M --stages 2 --overhead 1M
has out "PP=2 x EP=2"

# Re-plan without node 3: only its experts move (issue 7: fewest bytes moved).
expect 0 "replan text" -- dsinfer plan --config "$BIG" --nodes 8 --mem-per-node 128G --remove-nodes 3 --speculative-tokens 0
has out "re-plan without node(s) 3, starting from the plan above: 1856 expert copies move, 76.1 GiB"
expect 0 "replan json" -- dsinfer plan --config "$BIG" --nodes 8 --mem-per-node 128G --remove-nodes 3 --json --speculative-tokens 0
python3 - "$TMP/out" <<'PY' && ok || bad "replan json checks"
import json, sys
p = json.load(open(sys.argv[1]))
r = p['replan']
assert r['ok'] and r['removed'] == [3] and r['experts_moved'] == 1856, r.get('experts_moved')
assert sorted(n['id'] for n in r['nodes']) == [0, 1, 2, 4, 5, 6, 7]
assert sum(n['experts'] for n in r['nodes']) == 58 * 256
assert all(n['planned'] <= n['budget'] for n in r['nodes'])
PY
expect 2 "replan unknown node" -- dsinfer plan --config "$BIG" --nodes 8 --mem-per-node 128G --remove-nodes 8
has err "node 8 does not exist"
expect 2 "replan all nodes" -- dsinfer plan --model "$TINY" --nodes 2 --mem-per-node 64M --overhead 1M --remove-nodes 0,1
expect 1 "replan does not fit" -- dsinfer plan --config "$BIG" --nodes 6 --mem-per-node 128G --remove-nodes 0,1

# Bad arguments: usage errors exit 2, unusable inputs exit 1, each naming the problem.
expect 2 "no nodes" -- dsinfer plan --config "$BIG"
has err "--nodes"
expect 2 "bad format" -- dsinfer plan --config "$BIG" --nodes 8 --mem-per-node 128G --weight-format fp4
has err "fp4"
expect 2 "bad size" -- dsinfer plan --config "$BIG" --nodes 8 --mem-per-node lots
has err "--mem-per-node"
expect 2 "zero stages" -- dsinfer plan --config "$BIG" --nodes 8 --mem-per-node 128G --stages 0
expect 2 "config and model" -- dsinfer plan --config "$BIG" --model "$TINY" --nodes 2 --mem-per-node 1G
expect 2 "stray argument" -- dsinfer plan --config "$BIG" --nodes 2 --mem-per-node 1G extra
expect 2 "unknown option" -- dsinfer plan --config "$BIG" --nodes 2 --mem-per-node 1G --frobnicate
expect 2 "bad node-mem" -- dsinfer plan --config "$BIG" --node-mem 1G,,x
expect 1 "too many stages" -- dsinfer plan --model "$TINY" --nodes 4 --mem-per-node 64M --stages 5
has err "at most 4"
expect 1 "missing config" -- dsinfer plan --config "$TMP/nope.json" --nodes 2 --mem-per-node 1G
has err "nope.json"
printf '{"hidden_size": ' >"$TMP/broken.json"
expect 1 "broken config" -- dsinfer plan --config "$TMP/broken.json" --nodes 2 --mem-per-node 1G
has err "broken.json"
expect 0 "help" -- dsinfer plan --help
has out "usage: dsinfer plan"

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
