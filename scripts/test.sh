#!/usr/bin/env bash
# Quick start, command 2: installs what is missing, builds (default preset: g++, RelWithDebInfo)
# and runs the whole test suite. Extra arguments go to ctest (e.g. `scripts/test.sh -L batcher`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh
for step in .ci/steps.d/*.sh; do   # test data some components need (e.g. tokenizer rank files)
  [ -e "$step" ] && bash "$step"
done
cmake --preset default >/dev/null
cmake --build --preset default -j "$(nproc)"
ctest --preset default -j "$(nproc)" "$@"
