#!/usr/bin/env bash
# dsinfer's matmul kernels against ggml's, on the same weight shapes and batches, side by side.
#
# Builds ggml's CPU library from the checkout given (a ggml checkout, or a llama.cpp checkout with
# its ggml/ folder) in GGML_DIR/build-dsinfer (cmake, GGML_NATIVE=ON, no GPU; with --isa avx2 in
# GGML_DIR/build-dsinfer-avx2: GGML_NATIVE=OFF, SSE4.2, AVX, AVX2, BMI2, FMA and F16C on, AVX-VNNI,
# every AVX-512 and AMX option off, CPU_REPACK as by default), compiles the small
# harness scripts/bench-vs-ggml-matmul.c against it (ggml_mul_mat of random weights quantized by
# ggml itself, rotating over enough copies that every repetition streams from memory), then for N
# rounds runs, one after the other (interleaved), the harness for q8_0, q4_0 and bf16 and
# `dsinfer bench kernels` for fp8, int8, int4-g32 and bf16, at batches 1, 4, 16 and 64 with the
# same threads. Prints per row the medians (ms) and the speed-up ggml time / dsinfer time
# (> 1: dsinfer is faster) of fp8 and int8 against q8_0 (one byte a weight), int4-g32 against
# q4_0 (4.5 bits a weight both) and against q4_0r (q4_0 in ggml's CPU_REPACK buffer, repacked at
# load as llama.cpp runs it), int4-g32 in its stored row layout ("int4-g32 rows", dsinfer
# before its load-time repacking) against q4_0r, and bf16 against bf16.
#
# usage: scripts/bench-vs-ggml.sh GGML_DIR [options]
#   --rounds N        interleaved rounds (default 3)
#   --shapes LIST     weight shapes ROWSxCOLS (default 2048x7168,7168x2048: a V3 expert's
#                     gate/up and down)
#   --batches LIST    tokens per product (default 1,4,16,64)
#   --threads T       threads of both (default 2)
#   --reps R          repetitions per row and round (default 5)
#   --formats LIST    dsinfer formats to compare (default fp8,int8,int4,bf16)
#   --cpu-time        time both in their process's CPU time, not wall time: with --threads 1
#                     the products' own time, which a loaded machine's preemption does not
#                     stretch (OpenMP waits passively and dsinfer's pool spins only briefly)
#   --isa I           native: both sides use what the CPU has (default); avx2: both restricted to
#                     AVX2, as on an AVX2-only machine: dsinfer with DSINFER_KERNELS=avx2, ggml
#                     built in GGML_DIR/build-dsinfer-avx2 with AVX2, FMA, F16C, BMI2 and
#                     no AVX-512, AVX-VNNI or AMX
# Environment: DSINFER  the dsinfer program (default build/cli/dsinfer)
#              OMP_WAIT_POLICY  of ggml's OpenMP threads (default passive: they sleep while they
#                       wait, as dsinfer's pool does; spinning ones lose their core for whole
#                       scheduler ticks on a shared machine, 16-24 ms a product here)
# Exit 2 on a bad argument or a folder that is not a ggml or llama.cpp checkout, 1 when a step fails.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

usage() { sed -n '/^# usage:/,/^# Exit 2/p' "$0" | sed 's/^# \{0,1\}//'; }
die2() { echo "bench-vs-ggml: $*" >&2; exit 2; }
die() { echo "bench-vs-ggml: $*" >&2; exit 1; }

[ $# -ge 1 ] || { usage >&2; exit 2; }
case $1 in -h | --help) usage; exit 0 ;; esac
GGML=$1
shift
ROUNDS=3 SHAPES=2048x7168,7168x2048 BATCHES=1,4,16,64 THREADS=2 REPS=5 FORMATS=fp8,int8,int4,bf16
CPU=0 ISA=native
while [ $# -gt 0 ]; do
  case $1 in
    --rounds | --shapes | --batches | --threads | --reps | --formats | --isa)
      [ $# -ge 2 ] || die2 "option '$1' needs a value (see --help)" ;;
  esac
  case $1 in
    --rounds) ROUNDS=${2:-}; shift 2 ;;
    --shapes) SHAPES=${2:-}; shift 2 ;;
    --batches) BATCHES=${2:-}; shift 2 ;;
    --threads) THREADS=${2:-}; shift 2 ;;
    --reps) REPS=${2:-}; shift 2 ;;
    --formats) FORMATS=${2:-}; shift 2 ;;
    --cpu-time) CPU=1; shift ;;
    --isa) ISA=${2:-}; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) die2 "unknown option '$1' (see --help)" ;;
  esac
done
for v in ROUNDS THREADS REPS; do
  [[ ${!v} =~ ^[1-9][0-9]{0,2}$ ]] || die2 "--$(echo $v | tr A-Z a-z) must be a positive integer, not '${!v}'"
done
[[ $SHAPES =~ ^[0-9]+x[0-9]+(,[0-9]+x[0-9]+)*$ ]] || die2 "--shapes must be ROWSxCOLS,..., not '$SHAPES'"
[[ $BATCHES =~ ^[0-9]+(,[0-9]+)*$ ]] || die2 "--batches must be N,N,..., not '$BATCHES'"
[[ $FORMATS =~ ^(fp8|int8|int4|bf16)(,(fp8|int8|int4|bf16))*$ ]] ||
  die2 "--formats must be a list of fp8, int8, int4, bf16, not '$FORMATS'"
. "$ROOT/scripts/isa.bash"
isa_setup "$ISA" # ISA_SUFFIX, ISA_FLAGS; DSINFER_KERNELS=avx2 with avx2
GTYPES="" DTYPES=""
for f in ${FORMATS//,/ }; do
  case $f in
    fp8) GTYPES+=" q8_0" DTYPES+=",fp8" ;;
    int8) GTYPES+=" q8_0" DTYPES+=",int8" ;;
    int4) GTYPES+=" q4_0 q4_0r" DTYPES+=",int4-g32" ;;
    bf16) GTYPES+=" bf16" DTYPES+=",bf16" ;;
  esac
done
GTYPES=$(echo $GTYPES | tr ' ' '\n' | awk '!seen[$0]++' | tr '\n' ' ')
DTYPES=${DTYPES#,}
[ -d "$GGML" ] || die2 "GGML_DIR '$GGML' is not a directory"
GGML=$(cd "$GGML" && pwd)
if [ -f "$GGML/ggml/include/ggml-cpu.h" ]; then INC=$GGML/ggml/include  # llama.cpp
elif [ -f "$GGML/include/ggml-cpu.h" ]; then INC=$GGML/include         # ggml
else die2 "GGML_DIR '$GGML' is not a ggml or llama.cpp checkout (no include/ggml-cpu.h or ggml/include/ggml-cpu.h)"
fi
[ -f "$GGML/CMakeLists.txt" ] || die2 "GGML_DIR '$GGML' has no CMakeLists.txt"
DSINFER=${DSINFER:-$ROOT/build/cli/dsinfer}
[ -x "$DSINFER" ] || die2 "no dsinfer program at '$DSINFER' (build it, or set DSINFER)"
command -v cmake >/dev/null || die "cmake is not installed"

B=$GGML/build-dsinfer$ISA_SUFFIX
if ! find "$B" -name 'libggml-cpu.a' 2>/dev/null | grep -q .; then
  echo "building ggml in $B" >&2
  cmake -S "$GGML" -B "$B" -DCMAKE_BUILD_TYPE=Release "${ISA_FLAGS[@]}" -DGGML_CUDA=OFF \
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DBUILD_SHARED_LIBS=OFF >"$B.log" 2>&1 ||
    die "cmake of ggml failed (see $B.log)"
  cmake --build "$B" -j"$(nproc)" --target ggml >>"$B.log" 2>&1 || die "building ggml failed (see $B.log)"
fi
H=$B/bench-vs-ggml-matmul
if [ ! -x "$H" ] || [ "$ROOT/scripts/bench-vs-ggml-matmul.c" -nt "$H" ]; then
  libs=$(find "$B" -name 'libggml*.a' | sort -r | tr '\n' ' ')
  c++ -O2 -x c "$ROOT/scripts/bench-vs-ggml-matmul.c" -x none -I"$INC" -Wl,--start-group $libs \
    -Wl,--end-group -fopenmp -lpthread -lm -o "$H" 2>"$B/harness.log" ||
    die "cannot build the harness (see $B/harness.log)"
fi

export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
RES=$(mktemp)
trap 'rm -f "$RES"' EXIT
IFS=, read -r -a SH <<<"$SHAPES"
for r in $(seq 1 "$ROUNDS"); do
  for t in $GTYPES; do
    for s in "${SH[@]}"; do
      CPU=$CPU "$H" "$t" "$s" "$BATCHES" "$REPS" "$THREADS" 512 | sed "s/^/ggml /" >>"$RES" ||
        die "the ggml harness failed ($t $s)"
    done
  done
  for layout in q4l rows; do
    dt=$DTYPES
    if [ $layout = rows ]; then # int4 once more in the stored layout: before the repacking
      [[ ,$DTYPES, == *,int4-g32,* ]] || continue
      dt=int4-g32
    fi
    "$DSINFER" bench kernels --json --only decode --dtypes "$dt" --shapes "$SHAPES" \
      --batches "$BATCHES" --reps "$REPS" --threads "$THREADS" --int4-layout $layout \
      $([ $CPU = 1 ] && echo --cpu-time) 2>/dev/null |
      LAYOUT=$layout python3 -c '
import json, os, sys
j = json.load(sys.stdin)
rows = os.environ["LAYOUT"] == "rows" or j.get("int4_layout") == "rows"
for k in j["kernels"]:
    r, c = map(int, k["shape"].split("x"))
    d = k["name"].replace("matmul_", "")
    # the time from the figure with more digits (both are printed with fixed decimals)
    bpp = {"fp8": 1.0, "int8": 1 + 4 / 128, "int4-g32": 0.5 + 4 / 32, "bf16": 2.0}[d]
    if k["gflops"] >= 10 or k["gbs"] <= 0:
        ms = 2.0 * r * c * k["batch"] / (k["gflops"] * 1e9) * 1e3
    else:
        ms = r * c * bpp / (k["gbs"] * 1e9) * 1e3
    if d == "int4-g32" and rows:
        d = "int4-g32-rows"
    print("dsinfer", d, k["shape"], k["batch"], f"{ms:.4f}", k["gbs"], k["gflops"])
' >>"$RES" || die "dsinfer bench kernels failed"
  done
  echo "round $r done" >&2
done
echo "dsinfer vs ggml matmul, $THREADS threads, medians of $ROUNDS interleaved rounds x $REPS repetitions (OMP_WAIT_POLICY=$OMP_WAIT_POLICY)$([ $CPU = 1 ] && echo ', process CPU time')$([ "$ISA" = avx2 ] && echo ', both restricted to AVX2')"
echo "(ms per product; speed-up = ggml ms / dsinfer ms, > 1: dsinfer faster)"
python3 - "$RES" <<'EOF'
import statistics as st, sys
ms = {}
for line in open(sys.argv[1]):
    who, t, shape, b, m = line.split()[:5]
    ms.setdefault((who, t, shape, int(b)), []).append(float(m))
med = {k: st.median(v) for k, v in ms.items()}
pairs = [("fp8", "q8_0"), ("int8", "q8_0"), ("int4-g32", "q4_0"), ("int4-g32", "q4_0r"),
         ("int4-g32-rows", "q4_0r"), ("bf16", "bf16")]
pairs = [p for p in pairs if any(k[0] == "dsinfer" and k[1] == p[0] for k in med)]
print(f"{'shape':<10} {'batch':>5}  " + "  ".join(f"{d+' vs '+g:>28}" for d, g in pairs))
for shape, b in sorted({(k[2], k[3]) for k in med}, key=lambda x: (x[0], x[1])):
    cells = []
    for d, g in pairs:
        a, o = med.get(("dsinfer", d, shape, b)), med.get(("ggml", g, shape, b))
        cells.append(f"{a:8.3f} {o:8.3f} {o / a:6.2f}x" if a and o else f"{'-':>24}")
    print(f"{shape:<10} {b:>5}  " + "  ".join(f"{c:>28}" for c in cells))
EOF
