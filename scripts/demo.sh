#!/usr/bin/env bash
# The main job on the embedded default model: writes a synthetic checkpoint of DeepSeek-V3
# architecture (random weights: no weights can be downloaded here, so the text means nothing) once,
# then generates from it in one process and on a local cluster of two node processes.
# Usage: scripts/demo.sh [build dir]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
MODEL=models/default
mkdir -p "$(dirname "$MODEL")"
if [ ! -f "$MODEL/config.json" ]; then
  "$BUILD/cli/dsinfer" synth --out "$MODEL" --preset tiny
fi
echo "== one process"
"$BUILD/cli/dsinfer" run --model "$MODEL" --chat "Hello! Who are you?" --max-tokens 24 --json
echo "== a coordinator and 2 node processes (expert parallel)"
"$BUILD/cli/dsinfer" run --model "$MODEL" --chat "Hello! Who are you?" --max-tokens 24 \
  --local-nodes 2 --json 2>/dev/null
