#!/usr/bin/env bash
# The main job on the embedded default model: writes a synthetic checkpoint of DeepSeek-V3
# architecture (random weights; no weights can be downloaded here) once, then generates from it.
# Usage: scripts/demo.sh [build dir]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
MODEL=models/default
if [ ! -f "$MODEL/config.json" ]; then
  "$BUILD/cli/dsinfer" synth --out "$MODEL" --preset tiny
fi
"$BUILD/cli/dsinfer" run --model "$MODEL" --prompt-ids 0,100,200,300 --max-tokens 16 --json
