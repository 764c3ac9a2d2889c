#!/usr/bin/env bash
# Quick start, command 1: installs what is missing, builds and runs the main demo (llmfast-demo,
# examples/demo.cpp). Extra arguments go to the demo (`scripts/demo.sh --help`).
#
# `scripts/demo.sh --gateway [demo options]`: the same requests over HTTP through llmfast-gateway
# (the demo starts a fresh gateway per run on a free 127.0.0.1 port and measures at its clients).
# Its time scale defaults to 10, not 100, so that the real time spent in HTTP and the gateway is
# magnified less in the simulated figures (--quick still uses 100; a later --time-scale wins).
set -euo pipefail
cd "$(dirname "$0")/.."
gateway=0
args=()
for arg in "$@"; do
  if [ "$arg" = "--gateway" ]; then gateway=1; else args+=("$arg"); fi
done
scripts/install_deps.sh
cmake --preset default >/dev/null
if [ "$gateway" = 1 ]; then
  cmake --build --preset default --target llmfast-demo llmfast-gateway -j "$(nproc)"
  exec build/default/examples/llmfast-demo --through-gateway build/default/examples/gateway/llmfast-gateway \
    --time-scale 10 ${args[@]+"${args[@]}"}
fi
cmake --build --preset default --target llmfast-demo -j "$(nproc)"
exec build/default/examples/llmfast-demo ${args[@]+"${args[@]}"}
