#!/usr/bin/env bash
# dsinfer's matmul kernels against ggml's, on the same weight shapes and batches, side by side.
#
# Builds ggml's CPU library from the checkout given (a ggml checkout, or a llama.cpp checkout with
# its ggml/ folder) in GGML_DIR/build-dsinfer (cmake, GGML_NATIVE=ON, no GPU), compiles the small
# harness scripts/bench-vs-ggml-matmul.c against it (ggml_mul_mat of random weights quantized by
# ggml itself, rotating over enough copies that every repetition streams from memory), then for N
# rounds runs, one after the other (interleaved), the harness for q8_0, q4_0 and bf16 and
# `dsinfer bench kernels` for fp8, int8, int4-g32 and bf16, at batches 1, 4, 16 and 64 with the
# same threads. Prints per row the medians (ms) and the speed-up ggml time / dsinfer time
# (> 1: dsinfer is faster) of fp8 and int8 against q8_0 (one byte a weight), int4-g32 against
# q4_0 (4.5 bits a weight both) and bf16 against bf16: once for the wall time, once for the CPU
# time of all the process's threads per product (on a shared machine a product's wall time is
# mostly the share of the cores it got; its CPU time is what it cost).
#
# usage: scripts/bench-vs-ggml.sh GGML_DIR [options]
#   --rounds N        interleaved rounds (default 3)
#   --shapes LIST     weight shapes ROWSxCOLS (default 2048x7168,7168x2048: a V3 expert's
#                     gate/up and down)
#   --batches LIST    tokens per product (default 1,4,16,64)
#   --threads T       threads of both (default 2)
#   --reps R          repetitions per row and round (default 5)
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
ROUNDS=3 SHAPES=2048x7168,7168x2048 BATCHES=1,4,16,64 THREADS=2 REPS=5
while [ $# -gt 0 ]; do
  case $1 in
    --rounds) ROUNDS=${2:-}; shift 2 ;;
    --shapes) SHAPES=${2:-}; shift 2 ;;
    --batches) BATCHES=${2:-}; shift 2 ;;
    --threads) THREADS=${2:-}; shift 2 ;;
    --reps) REPS=${2:-}; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) die2 "unknown option '$1' (see --help)" ;;
  esac
done
for v in ROUNDS THREADS REPS; do
  [[ ${!v} =~ ^[1-9][0-9]{0,2}$ ]] || die2 "--$(echo $v | tr A-Z a-z) must be a positive integer, not '${!v}'"
done
[[ $SHAPES =~ ^[0-9]+x[0-9]+(,[0-9]+x[0-9]+)*$ ]] || die2 "--shapes must be ROWSxCOLS,..., not '$SHAPES'"
[[ $BATCHES =~ ^[0-9]+(,[0-9]+)*$ ]] || die2 "--batches must be N,N,..., not '$BATCHES'"
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

B=$GGML/build-dsinfer
if ! find "$B" -name 'libggml-cpu.a' 2>/dev/null | grep -q .; then
  echo "building ggml in $B" >&2
  cmake -S "$GGML" -B "$B" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DGGML_CUDA=OFF \
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
  for t in q8_0 q4_0 bf16; do
    for s in "${SH[@]}"; do
      "$H" "$t" "$s" "$BATCHES" "$REPS" "$THREADS" 512 | sed "s/^/ggml /" >>"$RES" ||
        die "the ggml harness failed ($t $s)"
    done
  done
  "$DSINFER" bench kernels --json --only decode --dtypes fp8,int8,int4-g32,bf16 --shapes "$SHAPES" \
    --batches "$BATCHES" --reps "$REPS" --threads "$THREADS" 2>/dev/null |
    python3 -c '
import json, sys
for k in json.load(sys.stdin)["kernels"]:
    r, c = map(int, k["shape"].split("x"))
    d = k["name"].replace("matmul_", "")
    # the time from the figure with more digits (both are printed with fixed decimals)
    bpp = {"fp8": 1.0, "int8": 1 + 4 / 128, "int4-g32": 0.5 + 4 / 32, "bf16": 2.0}[d]
    if k["gflops"] >= 10 or k["gbs"] <= 0:
        ms = 2.0 * r * c * k["batch"] / (k["gflops"] * 1e9) * 1e3
    else:
        ms = r * c * bpp / (k["gbs"] * 1e9) * 1e3
    print("dsinfer", k["name"].replace("matmul_", ""), k["shape"], k["batch"], f"{ms:.4f}", k["gbs"], k["gflops"],
          k.get("cpu_ms", 0))
' >>"$RES" || die "dsinfer bench kernels failed"
  echo "round $r done" >&2
done
echo "dsinfer vs ggml matmul, $THREADS threads, medians of $ROUNDS interleaved rounds x $REPS repetitions (OMP_WAIT_POLICY=$OMP_WAIT_POLICY)"
echo "(ms per product; speed-up = ggml ms / dsinfer ms, > 1: dsinfer faster)"
python3 - "$RES" <<'EOF'
import statistics as st, sys
ms, cpu = {}, {}
for line in open(sys.argv[1]):
    f = line.split()
    who, t, shape, b, m = f[:5]
    ms.setdefault((who, t, shape, int(b)), []).append(float(m))
    if len(f) > 7 and float(f[7]) > 0:
        cpu.setdefault((who, t, shape, int(b)), []).append(float(f[7]))
pairs = [("fp8", "q8_0"), ("int8", "q8_0"), ("int4-g32", "q4_0"), ("bf16", "bf16")]
for title, tab in (("wall", ms), ("cpu", cpu)):
    if not tab:
        continue
    med = {k: st.median(v) for k, v in tab.items()}
    if title == "cpu":
        print("\nCPU time of all threads per product (ms; process CPU time, medians): what a product "
              "costs in core time, whatever share of the cores the shared machine gave it")
    print(f"{'shape':<10} {'batch':>5}  " + "  ".join(f"{d+' vs '+g:>28}" for d, g in pairs))
    for shape, b in sorted({(k[2], k[3]) for k in med}, key=lambda x: (x[0], x[1])):
        cells = []
        for d, g in pairs:
            a, o = med.get(("dsinfer", d, shape, b)), med.get(("ggml", g, shape, b))
            cells.append(f"{a:8.3f} {o:8.3f} {o / a:6.2f}x" if a and o else f"{'-':>24}")
        print(f"{shape:<10} {b:>5}  " + "  ".join(f"{c:>28}" for c in cells))
EOF
