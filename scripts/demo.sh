#!/usr/bin/env bash
# Quick start, command 1: installs what is missing, builds and runs the main demo.
# Extra arguments go to the demo (`scripts/demo.sh --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh
cmake --preset default >/dev/null
if grep -q . examples/demo.cpp 2>/dev/null; then
  cmake --build --preset default --target llmfast-demo -j "$(nproc)"
  exec build/default/examples/llmfast-demo "$@"
fi
cmake --build --preset default --target example_quickstart -j "$(nproc)"
exec build/default/examples/example_quickstart "$@"
