#!/usr/bin/env bash
# `dsinfer bench profile --quick --json FILE` writes a profile with every field, which
# `dsinfer plan --estimate` reads; the estimate's JSON has its fields and is deterministic for a
# fixed profile (the numbers themselves are checked against hand computations in
# test_unit_estimate); a bad profile, a bad --net and --net without --estimate are clear errors
# (exit 2) naming what is wrong; the optional prefill_gbs and expert_gbs change the prefill
# alone. Timings are not asserted.
set -uo pipefail
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail=0
bad() { fail=1; echo "FAIL: $*"; }

dsinfer synth --out "$TMP/m" --preset tiny 2>/dev/null || { echo "FAIL: synth"; exit 1; }
CFG=$TMP/m/config.json

# 1. the measured profile
timeout 600 dsinfer bench profile --quick --threads 1 --json "$TMP/p.json" >"$TMP/out" 2>"$TMP/err" ||
  bad "bench profile: exit $?: $(tail -3 "$TMP/err")"
grep -q "memory read bandwidth" "$TMP/out" || bad "bench profile text: $(cat "$TMP/out")"
jq -e '.profile_version == 1 and .threads == 1 and .memory_bw_gbs > 0 and .fma_gflops > 0
  and (.kernel_level | type) == "string"
  and .cpus >= 1 and .cpus_effective > 0 and .cpus_effective <= .cpus
  and .matmul_gbs.batches == [1, 4, 16, 64]
  and (.matmul_gbs | keys) == ["batches", "bf16", "fp8", "int4", "int4-g128", "int8"]
  and all(.matmul_gbs | to_entries[] | select(.key != "batches");
          (.value | length) == 4 and all(.value[]; . > 0))
  and .prefill_gbs.batches == [128, 512]
  and (.prefill_gbs | keys) == ["batches", "bf16", "fp8"]
  and all(.prefill_gbs.fp8[], .prefill_gbs.bf16[]; . > 0)
  and .expert_gbs.batches == [4, 8, 16, 32]
  and (.expert_gbs | keys) == ["batches", "bf16", "fp8", "int4", "int4-g128", "int8"]
  and all(.expert_gbs | to_entries[] | select(.key != "batches");
          (.value | length) == 4 and all(.value[]; . > 0))
  and .attention.heads == 128 and .attention.width == 576
  and (.attention.context | length) >= 2
  and (.attention.us_per_token_layer | length) == (.attention.context | length)
  and all(.attention.us_per_token_layer[]; . > 0)
  and .network.latency_us > 0 and .network.bandwidth_gbs > 0' "$TMP/p.json" >/dev/null ||
  { bad "bench profile JSON"; cat "$TMP/p.json"; }
dsinfer plan --config "$CFG" --nodes 1 --mem 4G --estimate "$TMP/p.json" >"$TMP/out" 2>"$TMP/err" ||
  bad "plan --estimate on the measured profile: $(cat "$TMP/err")"
grep -q "^decode .*tok/s per stream.*bound by" "$TMP/out" || bad "estimate text: $(cat "$TMP/out")"
grep -q "^prefill .*time to first token" "$TMP/out" || bad "estimate text: $(cat "$TMP/out")"
dsinfer bench profile --help | grep -q -- "--json FILE" || bad "bench profile --help"
dsinfer bench profile --bogus >/dev/null 2>&1; [ $? = 2 ] || bad "bench profile --bogus: not exit 2"

# 2. a fixed profile: JSON fields, determinism, --net
cat >"$TMP/fixed.json" <<'EOF'
{"threads": 2, "memory_bw_gbs": 12.5, "fma_gflops": 100,
 "matmul_gbs": {"batches": [1, 4, 16, 64], "fp8": [10, 10, 10, 10], "bf16": [5, 5, 5, 5]},
 "attention": {"heads": 4, "width": 80, "context": [100, 200], "us_per_token_layer": [10, 20]},
 "network": {"latency_us": 50, "bandwidth_gbs": 1}}
EOF
est() { dsinfer plan --config "$CFG" --nodes 2 --mem 4G --estimate "$TMP/fixed.json" --json "$@"; }
est --concurrency 4 --prompt-len 300 >"$TMP/a.json" 2>"$TMP/err" || bad "estimate: $(cat "$TMP/err")"
est --concurrency 4 --prompt-len 300 >"$TMP/b.json" 2>/dev/null
cmp -s "$TMP/a.json" "$TMP/b.json" || bad "estimate not deterministic"
jq -e '.estimate | .concurrency == 4 and .prompt_len == 300 and .max_batch_tokens == 256
  and .net_gbit == 8 and .net_latency_us == 50
  and .decode.tok_s > 0 and (.decode.aggregate_tok_s - 4 * .decode.tok_s | fabs) < 1e-9
  and (.decode.bound | type) == "string" and .prefill.ttft_s > 0
  and (.prefill.tok_s * .prefill.ttft_s - 300 | fabs) < 1e-6
  and (.decode.terms_ms | keys | length) == 5' "$TMP/a.json" >/dev/null ||
  bad "estimate JSON: $(cat "$TMP/a.json")"
# --nodes-per-machine: the two nodes share one machine of the fixed profile (2 threads): slower
jq -e '.estimate.nodes_per_machine == 1' "$TMP/a.json" >/dev/null || bad "nodes_per_machine 1"
est --concurrency 4 --prompt-len 300 --nodes-per-machine 2 >"$TMP/s.json" 2>/dev/null
jq -e --slurpfile a "$TMP/a.json" '.estimate.nodes_per_machine == 2
  and .estimate.decode.tok_s < $a[0].estimate.decode.tok_s
  and .estimate.prefill.tok_s < $a[0].estimate.prefill.tok_s' "$TMP/s.json" >/dev/null ||
  bad "--nodes-per-machine 2: $(jq .estimate "$TMP/s.json")"
# cpus_effective: 2 CPUs gave 1 CPU's worth of time: two nodes of 1 thread sharing the machine
# run their experts at half the speed that cpus = 2 alone gives them
jq '.threads = 1 | .cpus = 2 | .cpus_effective = 1' "$TMP/fixed.json" >"$TMP/ce.json"
jq '.threads = 1 | .cpus = 2' "$TMP/fixed.json" >"$TMP/c2.json"
for f in ce c2; do
  dsinfer plan --config "$CFG" --nodes 2 --mem 4G --estimate "$TMP/$f.json" --json --concurrency 1 \
    --prompt-len 300 --nodes-per-machine 2 >"$TMP/$f.out" 2>"$TMP/err" || bad "$f: $(cat "$TMP/err")"
done
jq -e --slurpfile a "$TMP/c2.out" '.estimate.prefill.tok_s < $a[0].estimate.prefill.tok_s' \
  "$TMP/ce.out" >/dev/null || bad "cpus_effective 1 of 2 did not slow down the shared nodes"
# prefill_gbs: a faster packed GEMM, a faster prefill; decode (1 stream) unchanged
jq '.prefill_gbs = {"batches": [128, 512], "fp8": [20, 20], "bf16": [10, 10]}' "$TMP/fixed.json" \
  >"$TMP/pf.json"
est --concurrency 1 --prompt-len 300 >"$TMP/d1.json" 2>/dev/null
dsinfer plan --config "$CFG" --nodes 2 --mem 4G --estimate "$TMP/pf.json" --json \
  --concurrency 1 --prompt-len 300 >"$TMP/d2.json" 2>"$TMP/err" || bad "prefill_gbs: $(cat "$TMP/err")"
jq -e --slurpfile a "$TMP/d1.json" '.estimate.prefill.tok_s > $a[0].estimate.prefill.tok_s
  and .estimate.decode.tok_s == $a[0].estimate.decode.tok_s' "$TMP/d2.json" >/dev/null ||
  bad "prefill_gbs did not speed up the prefill alone"
# expert_gbs: slower products on an expert's shapes, a slower prefill (16 tokens per expert
# touched); one stream's decode (1 token per expert: the 1-token rate) unchanged
jq '.expert_gbs = {"batches": [4, 8, 16, 32], "fp8": [2, 2, 2, 2]}' "$TMP/fixed.json" >"$TMP/ex.json"
dsinfer plan --config "$CFG" --nodes 2 --mem 4G --estimate "$TMP/ex.json" --json \
  --concurrency 1 --prompt-len 300 >"$TMP/d3.json" 2>"$TMP/err" || bad "expert_gbs: $(cat "$TMP/err")"
jq -e --slurpfile a "$TMP/d1.json" '.estimate.prefill.tok_s < $a[0].estimate.prefill.tok_s
  and .estimate.decode.tok_s == $a[0].estimate.decode.tok_s' "$TMP/d3.json" >/dev/null ||
  bad "expert_gbs did not slow down the prefill alone"
est --net 100,2 >"$TMP/c.json" 2>/dev/null
jq -e '.estimate.net_gbit == 100 and .estimate.net_latency_us == 2' "$TMP/c.json" >/dev/null ||
  bad "--net 100,2: $(jq .estimate "$TMP/c.json")"

# 3. errors
expect2() { # what, stderr pattern, args...
  local what=$1 pat=$2; shift 2
  dsinfer plan --config "$CFG" --nodes 1 --mem 4G "$@" >/dev/null 2>"$TMP/err"
  local rc=$?
  [ $rc = 2 ] || { bad "$what: exit $rc, expected 2: $(cat "$TMP/err")"; return; }
  grep -q -- "$pat" "$TMP/err" || bad "$what: stderr lacks '$pat': $(cat "$TMP/err")"
}
jq 'del(.memory_bw_gbs)' "$TMP/fixed.json" >"$TMP/nobw.json"
expect2 "missing field" "memory_bw_gbs is missing" --estimate "$TMP/nobw.json"
jq '.matmul_gbs.fp8 = [1, 2]' "$TMP/fixed.json" >"$TMP/short.json"
expect2 "short array" "matmul_gbs.fp8 must be an array of 4 numbers" --estimate "$TMP/short.json"
jq '.network.latency_us = "fast"' "$TMP/fixed.json" >"$TMP/str.json"
expect2 "string latency" "network.latency_us must be a number" --estimate "$TMP/str.json"
echo '{"memory_bw_gbs": ' >"$TMP/trunc.json"
expect2 "not JSON" "not JSON" --estimate "$TMP/trunc.json"
expect2 "absent file" "cannot open" --estimate "$TMP/absent.json"
jq 'del(.matmul_gbs.fp8)' "$TMP/fixed.json" >"$TMP/nofp8.json"
expect2 "format missing" "matmul_gbs.fp8" --estimate "$TMP/nofp8.json"
jq '.prefill_gbs = {"batches": [128, 512], "fp8": [1]}' "$TMP/fixed.json" >"$TMP/pfshort.json"
expect2 "short prefill_gbs" "prefill_gbs.fp8 must be an array of 2 numbers" --estimate "$TMP/pfshort.json"
jq '.expert_gbs = {"batches": [4, 8, 16, 32], "fp8": [1, 2, 3]}' "$TMP/fixed.json" >"$TMP/exshort.json"
expect2 "short expert_gbs" "expert_gbs.fp8 must be an array of 4 numbers" --estimate "$TMP/exshort.json"
expect2 "bad net" "--net: 'fast' is not GBIT,US" --estimate "$TMP/fixed.json" --net fast
expect2 "nodes per machine 0" "nodes-per-machine" --estimate "$TMP/fixed.json" --nodes-per-machine 0
expect2 "net alone" "--net needs --estimate" --net 25,5
[ $fail = 0 ] && echo "plan --estimate and bench profile: OK"
exit $fail
