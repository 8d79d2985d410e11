#!/usr/bin/env bash
# Installs every Debian 12 package dsinfer needs (idempotent; as root, or with sudo available),
# configures and builds into build/. Usage: scripts/setup.sh [extra cmake args]
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(build-essential cmake pkg-config git
  libopenmpi-dev openmpi-bin libucx-dev ucx-utils libuv1-dev libmsgpack-dev libonig-dev
  libhttp-parser-dev libjansson-dev libnuma-dev
  clang-14 libclang-rt-14-dev valgrind curl jq iproute2 procps python3 python3-jinja2 python3-regex
  python3-jsonschema # validates structured outputs (tests/test_cli_grammar_schemas.sh)
  slurm-wlm munge # a single-host Slurm for the test of deploy/slurm/dsinfer.sbatch
  chromium) # headless, to render and screenshot the HTML report of `dsinfer bench serve` in a test

# Node.js (for the test that drives the API with the official openai npm client): Debian's, only
# when the machine has none (a newer one from elsewhere is fine and is left alone).
command -v node >/dev/null 2>&1 || PACKAGES+=(nodejs npm)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO=sudo
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
cmake --build build -j"$(nproc)"
