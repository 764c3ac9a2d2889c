#!/usr/bin/env bash
# Runs every libFuzzer target built by the clang preset for a while each (default 30 s), starting
# from its seed corpus. A crash fails the script; the crashing input is left in build/clang/fuzz-artifacts/.
#   scripts/run_fuzzers.sh [seconds-per-target]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-30}"
artifacts="build/clang/fuzz-artifacts"
mkdir -p "$artifacts"
status=0
for fuzzer in build/clang/tests/fuzz/fuzz_*; do
  [ -x "$fuzzer" ] || continue
  name="${fuzzer##*/fuzz_}"
  corpus="tests/fuzz/corpus/$name"
  work="build/clang/fuzz-corpus/$name"     # new inputs go here, the checked-in seeds stay untouched
  mkdir -p "$work"
  echo "fuzzing $name for ${seconds}s"
  if ! "$fuzzer" -max_total_time="$seconds" -print_final_stats=0 -artifact_prefix="$artifacts/$name-" \
        "$work" $( [ -d "$corpus" ] && echo "$corpus" ) >"build/clang/fuzz-$name.log" 2>&1; then
    echo "FUZZER FAILED: $name (log: build/clang/fuzz-$name.log)"
    tail -n 40 "build/clang/fuzz-$name.log"
    status=1
  fi
done
exit $status
