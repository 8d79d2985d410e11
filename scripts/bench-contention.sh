#!/usr/bin/env bash
# Decode speed when a core is shared: `dsinfer bench model` with and without a controlled neighbour.
#
# The neighbour is a busy loop (pure user time, no system calls) pinned with taskset to one CPU,
# the way a build or another benchmark takes a core of a small shared machine; dsinfer itself is
# not pinned (the scheduler places its threads as it would in use). For N rounds, quiet then
# loaded (the neighbour started before and stopped after the loaded runs), each thread count in
# turn, runs `dsinfer bench model` (and a second dsinfer program with --baseline, and
# `llama-bench -p 0 -n S` with --llama-bench and --gguf), one after the other, so that a drift of
# the machine hits all alike; prints the median decode tok/s of each and loaded / quiet (of the
# medians), and dsinfer's ratios to the baseline and to llama.cpp (the median of each round's
# ratio: "vs P q" quiet, "vs P l" loaded).
#
# usage: scripts/bench-contention.sh --model DIR [options]
#   --model DIR         dsinfer checkpoint (required)
#   --rounds N          interleaved rounds (default 5)
#   --threads LIST      thread counts, comma-separated (default 1,2)
#   --neighbour-cpu C   the CPU the busy loop is pinned to (default: the last CPU this shell may
#                       run on)
#   --decode S          decode steps per run (default 16)
#   --prompt-len L      prefill tokens before the decode (default 8)
#   --weight-format F   dsinfer's --weight-format (default auto)
#   --baseline PROG     a second dsinfer program (another build) run in the same rounds
#   --llama-bench PROG  llama.cpp's llama-bench, run in the same rounds on --gguf
#   --gguf FILE         the GGUF of the same weights for llama-bench
#   --out FILE          the rounds as TSV (default: a temporary file, removed)
# Environment: DSINFER  the dsinfer program (default build/cli/dsinfer)
#              OMP_WAIT_POLICY  of llama.cpp's OpenMP threads (default passive, as in
#                       scripts/bench-vs-llamacpp.sh)
# Exit 2 on a bad argument, 1 when a run fails.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

usage() { sed -n '/^# usage:/,/^# Exit 2/p' "$0" | sed 's/^# \{0,1\}//'; }
die2() { echo "bench-contention: $*" >&2; exit 2; }
die() { echo "bench-contention: $*" >&2; exit 1; }

MODEL='' ROUNDS=5 THREADS=1,2 NCPU='' DEC=16 PLEN=8 FMT=auto BASE='' LB='' GGUF='' OUT=''
while [ $# -gt 0 ]; do
  case $1 in
    --model | --rounds | --threads | --neighbour-cpu | --decode | --prompt-len | --weight-format | \
      --baseline | --llama-bench | --gguf | --out)
      [ $# -ge 2 ] || die2 "$1 needs a value"
      case $1 in
        --model) MODEL=$2 ;;
        --rounds) ROUNDS=$2 ;;
        --threads) THREADS=$2 ;;
        --neighbour-cpu) NCPU=$2 ;;
        --decode) DEC=$2 ;;
        --prompt-len) PLEN=$2 ;;
        --weight-format) FMT=$2 ;;
        --baseline) BASE=$2 ;;
        --llama-bench) LB=$2 ;;
        --gguf) GGUF=$2 ;;
        --out) OUT=$2 ;;
      esac
      shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) die2 "unknown option '$1' (see --help)" ;;
  esac
done
[ -n "$MODEL" ] || { usage >&2; die2 "--model is required"; }
for v in ROUNDS:rounds DEC:decode PLEN:prompt-len; do
  name=${v%%:*}
  val=${!name}
  [[ $val =~ ^[1-9][0-9]{0,4}$ ]] || die2 "--${v#*:} must be a positive integer, not '$val'"
done
[[ $THREADS =~ ^[1-9][0-9]{0,3}(,[1-9][0-9]{0,3})*$ ]] ||
  die2 "--threads must be positive integers separated by commas, not '$THREADS'"
IFS=, read -r -a TLIST <<<"$THREADS"
case $FMT in auto | fp8 | bf16 | int8 | int4 | int4-g128) ;;
  *) die2 "--weight-format must be auto, fp8, bf16, int8, int4 or int4-g128, not '$FMT'" ;;
esac
[ -f "$MODEL/config.json" ] || die2 "--model '$MODEL' is not a checkpoint (no config.json)"
if [ -n "$LB$GGUF" ]; then
  [ -n "$LB" ] && [ -n "$GGUF" ] || die2 "--llama-bench and --gguf go together"
  [ -x "$LB" ] || die2 "--llama-bench '$LB' is not an executable program"
  [ -f "$GGUF" ] || die2 "--gguf '$GGUF' is not a file"
fi
[ -z "$BASE" ] || [ -x "$BASE" ] || die2 "--baseline '$BASE' is not an executable program"
DSINFER=${DSINFER:-$ROOT/build/cli/dsinfer}
[ -x "$DSINFER" ] || die2 "no dsinfer program at '$DSINFER' (build it, or set DSINFER)"
command -v taskset >/dev/null || die "taskset is not installed (Debian: util-linux)"
command -v python3 >/dev/null || die "python3 is not installed"
CPUS=$(python3 -c 'import os; print(" ".join(map(str, sorted(os.sched_getaffinity(0)))))')
if [ -z "$NCPU" ]; then
  NCPU=${CPUS##* }
else
  [[ $NCPU =~ ^[0-9]{1,4}$ ]] || die2 "--neighbour-cpu must be a CPU number, not '$NCPU'"
  [[ " $CPUS " == *" $NCPU "* ]] || die2 "--neighbour-cpu $NCPU is not one of this shell's CPUs ($CPUS)"
fi

RES=${OUT:-$(mktemp)}
NPID=''
cleanup() {
  [ -z "$NPID" ] || kill "$NPID" 2>/dev/null || true
  [ -n "$OUT" ] || rm -f "$RES"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
neighbour_start() {
  taskset -c "$NCPU" bash -c 'while :; do :; done' &
  NPID=$!
  sleep 0.2 # let it take its CPU
}
neighbour_stop() {
  kill "$NPID" 2>/dev/null || true
  wait "$NPID" 2>/dev/null || true
  NPID=''
}

export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
ds_decode() { # program threads -> decode tok/s
  local j
  j=$("$1" bench model --model "$MODEL" --weight-format "$FMT" --threads "$2" --prompt-len "$PLEN" \
    --decode-steps "$DEC" --reps 1 --json 2>/dev/null) || die "$1 bench model --threads $2 failed"
  python3 -c 'import json, sys; print(json.loads(sys.argv[1])["decode_tok_s"])' "$j"
}
lc_decode() { # threads -> decode tok/s
  local j
  j=$("$LB" -m "$GGUF" -p 0 -n "$DEC" -t "$1" -r 1 -o json 2>/dev/null) ||
    die "llama-bench -t $1 on $GGUF failed"
  python3 -c 'import json, sys; print([x["avg_ts"] for x in json.loads(sys.argv[1]) if x["n_gen"] > 0][0])' "$j"
}

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
: >"$RES"
for r in $(seq 1 "$ROUNDS"); do
  for load in quiet loaded; do
    [ $load = quiet ] || neighbour_start
    for t in "${TLIST[@]}"; do
      printf '%s\t%s\tdsinfer\t%s\t%s\n' "$r" $load "$t" "$(ds_decode "$DSINFER" "$t")" >>"$RES"
      [ -z "$BASE" ] ||
        printf '%s\t%s\tbaseline\t%s\t%s\n' "$r" $load "$t" "$(ds_decode "$BASE" "$t")" >>"$RES"
      [ -z "$LB" ] || printf '%s\t%s\tllama.cpp\t%s\t%s\n' "$r" $load "$t" "$(lc_decode "$t")" >>"$RES"
    done
    [ $load = quiet ] || neighbour_stop
    echo "round $r $load: $(awk -F'\t' -v r="$r" -v l=$load '$1 == r && $2 == l { printf "%s/%st %s  ", $3, $4, $5 }' "$RES")load $(cut -d' ' -f1 /proc/loadavg)" >&2
  done
done

echo
echo "decode tok/s, $(basename "$MODEL") (--weight-format $FMT), $DEC steps after $PLEN prompt tokens; loaded: a busy"
echo "loop pinned to CPU $NCPU of {$CPUS}; medians of $ROUNDS interleaved rounds; load average $LOAD0 at the start,"
echo "$(cut -d' ' -f1-3 /proc/loadavg) at the end; $(date -u '+%Y-%m-%d %H:%M UTC')"
python3 - "$RES" <<'EOF'
import statistics as st, sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().splitlines()]
runs, med = {}, {}
for r, load, prog, t, v in rows:
    runs[(r, prog, int(t), load)] = float(v)
    med.setdefault((prog, int(t), load), []).append(float(v))
med = {k: st.median(v) for k, v in med.items()}
rounds = sorted({r[0] for r in rows}, key=int)


def paired(o, t, load):
    """Median over the rounds of dsinfer / o in the same round (a drift of the machine cancels)."""
    return st.median(runs[(r, "dsinfer", t, load)] / runs[(r, o, t, load)] for r in rounds)


progs = list(dict.fromkeys(r[2] for r in rows))
threads = sorted({int(r[3]) for r in rows})
others = [p for p in progs if p != "dsinfer"]
head = f"{'program':<10} {'threads':>7} {'quiet':>8} {'loaded':>8} {'loaded/quiet':>12}"
head += "".join(f" {'vs ' + p + ' q':>14} {'vs ' + p + ' l':>14}" for p in others)
print(head)
for p in progs:
    for t in threads:
        q, l = med[(p, t, "quiet")], med[(p, t, "loaded")]
        line = f"{p:<10} {t:7d} {q:8.3f} {l:8.3f} {l / q:12.2f}"
        if p == "dsinfer":
            line += "".join(f" {paired(o, t, 'quiet'):14.2f} {paired(o, t, 'loaded'):14.2f}"
                            for o in others)
        print(line)
EOF
