#!/usr/bin/env bash
# dsinfer against llama.cpp on the same synthetic DeepSeek-V3-shaped weights, side by side.
#
# 1. Builds llama-bench (and the token-id greedy harness scripts/gguf-greedy.c) from the
#    llama.cpp checkout given, in LLAMA_CPP_DIR/build-dsinfer (cmake, GGML_NATIVE=ON, no GPU);
#    with --isa avx2 in LLAMA_CPP_DIR/build-dsinfer-avx2 (GGML_NATIVE=OFF, SSE4.2, AVX, AVX2, BMI2,
#    FMA and F16C on, AVX-VNNI, every AVX-512 and AMX option off; CPU_REPACK as by default).
# 2. Writes a synthetic checkpoint with `dsinfer synth` (FP8 weights with 128x128 scales) and
#    converts the same weights to GGUF with scripts/dsinfer-to-gguf.py (llama.cpp's own gguf-py,
#    numpy only): q8_0 for dsinfer's fp8 and int8, q4_0 for int4, bf16 for bf16.
#    Same weights, same bytes: a tensor dsinfer keeps as stored whatever its weight format (the
#    token embedding and the output head, bf16 in the checkpoint) is bf16 in the GGUF too, never
#    q8_0 or q4_0 (at 2 layers the head is a quarter of a decode step's bytes); the layers' matrices
#    take the GGUF type of the format. The summary prints the weight bytes a decode step reads on
#    each side (dsinfer's count from `bench model`, llama.cpp's from the GGUF's tensors).
# 3. For N rounds, each format in turn, runs `dsinfer bench model` and `llama-bench -p L -n S`
#    with the same threads, one after the other (interleaved, so a drift of the shared machine hits
#    both alike), and prints the medians and the ratios dsinfer / llama.cpp for prefill and decode.
# 4. Greedy check: the first 8 greedy tokens of a short token-id prompt from `dsinfer run` on a
#    tiny FP8 checkpoint and from llama.cpp on an f32 GGUF of the same (dequantized) weights.
#
# usage: scripts/bench-vs-llamacpp.sh LLAMA_CPP_DIR [options]
#   --rounds N        interleaved rounds (default 5)
#   --formats LIST    dsinfer weight formats: fp8,int8,int4,bf16 (default fp8,int8,int4)
#   --size S          v3: `dsinfer synth --preset v3` (V3 widths, 3 layers, 16 experts, about
#                     5.8 GB; default); small: V3 widths, 2 layers, 8 experts, 32000 vocab;
#                     tiny: the tiny preset (seconds)
#   --threads T       threads of both (default 2)
#   --prompt-len L    prefill tokens (default 64)
#   --decode S        decode steps (default 16)
#   --work DIR        checkpoint and GGUF files (default out/bench-vs-llamacpp; reused when there)
#   --no-greedy       skip the greedy check
#   --isa I           native: both sides use what the CPU has (default); avx2: both restricted to
#                     AVX2, as on an AVX2-only machine: dsinfer with DSINFER_KERNELS=avx2,
#                     llama.cpp built in LLAMA_CPP_DIR/build-dsinfer-avx2 with AVX2, FMA, F16C,
#                     BMI2 and no AVX-512, AVX-VNNI or AMX; the rounds go to results-SIZE-avx2.tsv
# Environment: DSINFER  the dsinfer program (default build/cli/dsinfer)
#              OMP_WAIT_POLICY  of llama.cpp's OpenMP threads (default passive: they sleep while
#                       they wait, as dsinfer's pool does; spinning ones lose their core for whole
#                       scheduler ticks on a shared machine)
# Exit 2 on a bad argument or a folder that is not a llama.cpp checkout, 1 when a step fails.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

usage() { sed -n '/^# usage:/,/^# Exit 2/p' "$0" | sed 's/^# \{0,1\}//'; }
die2() { echo "bench-vs-llamacpp: $*" >&2; exit 2; }
die() { echo "bench-vs-llamacpp: $*" >&2; exit 1; }

[ $# -ge 1 ] || { usage >&2; exit 2; }
case $1 in -h | --help) usage; exit 0 ;; esac
LLAMA=$1
shift
ROUNDS=5 FORMATS=fp8,int8,int4 SIZE=v3 THREADS=2 PLEN=64 DEC=16 GREEDY=1
WORK=$ROOT/out/bench-vs-llamacpp ISA=native
while [ $# -gt 0 ]; do
  case $1 in
    --rounds | --formats | --size | --threads | --prompt-len | --decode | --work | --isa)
      [ $# -ge 2 ] || die2 "option '$1' needs a value (see --help)" ;;
  esac
  case $1 in
    --rounds) ROUNDS=${2:-}; shift 2 ;;
    --formats) FORMATS=${2:-}; shift 2 ;;
    --size) SIZE=${2:-}; shift 2 ;;
    --threads) THREADS=${2:-}; shift 2 ;;
    --prompt-len) PLEN=${2:-}; shift 2 ;;
    --decode) DEC=${2:-}; shift 2 ;;
    --work) WORK=${2:-}; shift 2 ;;
    --no-greedy) GREEDY=0; shift ;;
    --isa) ISA=${2:-}; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) die2 "unknown option '$1' (see --help)" ;;
  esac
done
for v in ROUNDS THREADS PLEN DEC; do
  [[ ${!v} =~ ^[1-9][0-9]{0,4}$ ]] || die2 "--$(echo $v | tr A-Z a-z) must be a positive integer, not '${!v}'"
done
case $SIZE in v3 | small | tiny) ;; *) die2 "--size must be v3, small or tiny, not '$SIZE'" ;; esac
. "$ROOT/scripts/isa.bash"
isa_setup "$ISA" # ISA_SUFFIX, ISA_FLAGS; DSINFER_KERNELS=avx2 with avx2
IFS=, read -r -a FMTS <<<"$FORMATS"
[ ${#FMTS[@]} -gt 0 ] || die2 "--formats lists no format"
for f in "${FMTS[@]}"; do
  case $f in fp8 | int8 | int4 | bf16) ;; *) die2 "--formats: '$f' is not fp8, int8, int4 or bf16" ;; esac
done
[ -d "$LLAMA" ] || die2 "LLAMA_CPP_DIR '$LLAMA' is not a directory"
[ -f "$LLAMA/CMakeLists.txt" ] && [ -d "$LLAMA/gguf-py/gguf" ] && [ -f "$LLAMA/include/llama.h" ] ||
  die2 "LLAMA_CPP_DIR '$LLAMA' is not a llama.cpp checkout (no CMakeLists.txt, include/llama.h and gguf-py/gguf)"
LLAMA=$(cd "$LLAMA" && pwd)
DSINFER=${DSINFER:-$ROOT/build/cli/dsinfer}
[ -x "$DSINFER" ] || die2 "no dsinfer program at '$DSINFER' (build it, or set DSINFER)"
command -v cmake >/dev/null || die "cmake is not installed"
python3 -c 'import numpy' 2>/dev/null || die "python3 has no numpy (Debian: python3-numpy)"

# ---- 1. llama.cpp ----
LB=$LLAMA/build-dsinfer$ISA_SUFFIX
if [ ! -x "$LB/bin/llama-bench" ]; then
  echo "building llama-bench in $LB" >&2
  cmake -S "$LLAMA" -B "$LB" -DCMAKE_BUILD_TYPE=Release "${ISA_FLAGS[@]}" -DGGML_CUDA=OFF \
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF \
    -DBUILD_SHARED_LIBS=OFF >"$LB.log" 2>&1 || die "cmake of llama.cpp failed (see $LB.log)"
  cmake --build "$LB" -j"$(nproc)" --target llama-bench >>"$LB.log" 2>&1 ||
    die "building llama-bench failed (see $LB.log)"
fi
GREEDY_BIN=$LB/gguf-greedy
if [ $GREEDY = 1 ] && [ ! -x "$GREEDY_BIN" ]; then
  libs=$(find "$LB" -name 'libllama.a' -o -name 'libggml*.a' | sort -r | tr '\n' ' ')
  c++ -O2 -x c "$ROOT/scripts/gguf-greedy.c" -x none -I"$LLAMA/include" -I"$LLAMA/ggml/include" \
    -Wl,--start-group $libs -Wl,--end-group -fopenmp -lpthread -lm -o "$GREEDY_BIN" 2>"$LB/gguf-greedy.log" ||
    { echo "bench-vs-llamacpp: cannot build the greedy harness (see $LB/gguf-greedy.log); skipping the greedy check" >&2; GREEDY=0; }
fi

# ---- 2. the weights ----
MODEL=$WORK/ckpt-$SIZE
mkdir -p "$WORK"
if [ ! -f "$MODEL/config.json" ]; then
  rm -rf "$MODEL"
  case $SIZE in
    v3) "$DSINFER" synth --out "$MODEL" --preset v3 ;;
    small) "$DSINFER" synth --out "$MODEL" --preset v3 --layers 2 --experts 8 --vocab 32000 ;;
    tiny) "$DSINFER" synth --out "$MODEL" --preset tiny ;;
  esac || die "dsinfer synth failed"
fi
gguf_of() { # dsinfer format -> GGUF type
  case $1 in fp8 | int8) echo q8_0 ;; int4) echo q4_0 ;; bf16) echo bf16 ;; f32) echo f32 ;; esac
}
gguf_file() { # GGUF type -> its file: token_embd and output in bf16 (f32 in an f32 file)
  local h=bf16
  [ "$1" = f32 ] && h=f32
  echo "$WORK/$SIZE-$1-head-$h.gguf"
}
convert() {
  local t=$1 out
  out=$(gguf_file "$1")
  if [ ! -s "$out" ]; then
    echo "converting to $out" >&2
    python3 "$ROOT/scripts/dsinfer-to-gguf.py" --llama-cpp "$LLAMA" --model "$MODEL" --out "$out.tmp" \
      --type "$t" --head-type auto 2>"$WORK/convert-$t.log" ||
      die "conversion to $t failed (see $WORK/convert-$t.log)"
    mv "$out.tmp" "$out"
  fi
  echo "$out"
}
for f in "${FMTS[@]}"; do convert "$(gguf_of "$f")" >/dev/null; done

# ---- 3. interleaved rounds ----
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
RES=$WORK/results-$SIZE.tsv
[ "$ISA" = native ] || RES=$WORK/results-$SIZE-$ISA.tsv
: >"$RES"
for r in $(seq 1 "$ROUNDS"); do
  for f in "${FMTS[@]}"; do
    g=$(gguf_file "$(gguf_of "$f")")
    d=$("$DSINFER" bench model --model "$MODEL" --weight-format "$f" --threads "$THREADS" \
      --prompt-len "$PLEN" --decode-steps "$DEC" --reps 1 --json 2>/dev/null) ||
      die "dsinfer bench model --weight-format $f failed"
    l=$("$LB/bin/llama-bench" -m "$g" -p "$PLEN" -n "$DEC" -t "$THREADS" -r 1 -o json 2>/dev/null) ||
      die "llama-bench on $g failed"
    python3 - "$f" "$r" "$d" "$l" >>"$RES" <<'EOF'
import json, sys
f, r, d, l = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
lp = [x["avg_ts"] for x in l if x["n_prompt"] > 0 and x["n_gen"] == 0][0]
ln = [x["avg_ts"] for x in l if x["n_gen"] > 0 and x["n_prompt"] == 0][0]
print(f"{f}\t{r}\t{d['prefill_tok_s']}\t{d['decode_tok_s']}\t{lp}\t{ln}\t{d['bytes_per_token']}"
      f"\t{d['memory_bw_gbs']}")
EOF
    echo "round $r $f: $(tail -1 "$RES" | cut -f3-6), load $(cut -d' ' -f1 /proc/loadavg)" >&2
  done
done
echo
echo "dsinfer vs llama.cpp, $SIZE synthetic weights, $THREADS threads, prefill $PLEN tokens, decode $DEC steps,"
[ "$ISA" = avx2 ] && echo "both restricted to AVX2 (DSINFER_KERNELS=avx2; llama.cpp built in $LB),"
echo "OMP_WAIT_POLICY=$OMP_WAIT_POLICY,"
echo "medians of $ROUNDS interleaved rounds (tok/s; ratio = dsinfer / llama.cpp); GB/step: weight bytes"
echo "a decode step reads (dsinfer's count; llama.cpp's from the GGUF: every tensor but the embedding,"
echo "one embedding row, the routed experts a token uses); of bw: decode tok/s x GB/step over the"
echo "bandwidth dsinfer measured in the same run"
python3 - "$RES" "$LLAMA" "$WORK" "$SIZE" <<'EOF'
import json, os, statistics as st, sys
sys.path.insert(0, os.path.join(sys.argv[2], "gguf-py"))
from gguf import GGUFReader  # noqa: E402
rows = [l.split("\t") for l in open(sys.argv[1]).read().splitlines()]
cfg = json.load(open(os.path.join(sys.argv[3], f"ckpt-{sys.argv[4]}", "config.json")))


def step_bytes(path):
    """Weight bytes one decode token reads from the GGUF."""
    used = cfg["num_experts_per_tok"] / max(cfg.get("n_routed_experts") or 1, 1)
    total = 0.0
    for t in GGUFReader(path).tensors:
        b = float(t.n_bytes)
        if t.name == "token_embd.weight":
            b /= cfg["vocab_size"]
        elif "_exps." in t.name:
            b *= min(used, 1.0)
        total += b
    return total


print(f"{'format':<7} {'llama.cpp':<9} {'ds prefill':>11} {'lc prefill':>11} {'ratio':>6}"
      f" {'ds decode':>10} {'lc decode':>10} {'ratio':>6} {'ds GB/step':>10} {'lc GB/step':>10}"
      f" {'ds of bw':>8} {'lc of bw':>8}")
for f in dict.fromkeys(r[0] for r in rows):
    v = [[float(x) for x in r[2:]] for r in rows if r[0] == f]
    dp, dd, lp, ld, db, bw = (st.median(c[i] for c in v) for i in range(6))
    q = {"fp8": "q8_0", "int8": "q8_0", "int4": "q4_0", "bf16": "bf16"}[f]
    h = "f32" if q == "f32" else "bf16"
    lb = step_bytes(os.path.join(sys.argv[3], f"{sys.argv[4]}-{q}-head-{h}.gguf"))
    print(f"{f:<7} {q:<9} {dp:11.2f} {lp:11.2f} {dp / lp:6.2f} {dd:10.3f} {ld:10.3f} {dd / ld:6.2f}"
          f" {db / 1e9:10.3f} {lb / 1e9:10.3f} {dd * db / 1e9 / bw:8.2f} {ld * lb / 1e9 / bw:8.2f}")
EOF

# ---- 4. greedy tokens ----
if [ $GREEDY = 1 ]; then
  PROMPT=5,17,300,42,7,99
  # on the tiny checkpoint whatever --size: its f32 GGUF stays small
  TINY=$WORK/ckpt-tiny
  [ -f "$TINY/config.json" ] || { rm -rf "$TINY"; "$DSINFER" synth --out "$TINY" --preset tiny 2>/dev/null; } ||
    die "dsinfer synth --preset tiny failed"
  g=$(MODEL=$TINY SIZE=tiny convert f32)
  # dsinfer's exact f32 KV cache: the default bf16 rounding moves this random-weight model's
  # small logit margins, and the check is about the weights and the model's arithmetic.
  ours=$("$DSINFER" run --model "$TINY" --prompt-ids "$PROMPT" --max-tokens 8 --temperature 0 \
    --kv-dtype f32 --threads "$THREADS" 2>/dev/null | tail -1) || die "dsinfer run failed"
  theirs=$("$GREEDY_BIN" "$g" "$PROMPT" 8 "$THREADS" 2>"$WORK/greedy.log") ||
    die "the greedy harness failed (see $WORK/greedy.log)"
  echo
  echo "greedy tokens of prompt $PROMPT on the tiny checkpoint (dsinfer on its FP8 weights with an f32"
  echo "KV cache, llama.cpp on an f32 GGUF of the same dequantized weights):"
  echo "  dsinfer   $ours"
  echo "  llama.cpp $theirs"
  if [ "$ours" = "$theirs" ]; then echo "  equal"; else echo "  DIFFERENT"; fi
fi
