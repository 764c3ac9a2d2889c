#!/usr/bin/env bash
# Quick start, command 1: installs what is missing, builds and runs the main demo (llmfast-demo,
# examples/demo.cpp). Extra arguments go to the demo (`scripts/demo.sh --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh
cmake --preset default >/dev/null
cmake --build --preset default --target llmfast-demo -j "$(nproc)"
exec build/default/examples/llmfast-demo "$@"
