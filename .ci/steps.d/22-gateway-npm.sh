#!/usr/bin/env bash
# The official `openai` npm client for llmfast-gateway's tests (examples/gateway/tests/openai_client.mjs),
# pinned to a major version that supports this machine's Node 20. Lands in .cache/npm (gitignored),
# beside (not inside) the tokenizer data's .cache/npm. Idempotent: a second run reuses the installed package.
set -euo pipefail

cd "$(dirname "$0")/../.."
npm_dir=.cache/npm-gateway  # its own prefix: npm install --no-save prunes what another step put in .cache/npm
modules="$npm_dir/node_modules"
mkdir -p "$npm_dir"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "22-gateway-npm: node and npm are required" >&2
  exit 1
fi
openai_major=6
if [ -f "$modules/openai/package.json" ] &&
   node -e "process.exit(require('./$modules/openai/package.json').version.split('.')[0] === '$openai_major' ? 0 : 1)"; then
  echo "22-gateway-npm: openai $(node -p "require('./$modules/openai/package.json').version") present"
  exit 0
fi
[ -f "$npm_dir/package.json" ] || echo '{"name": "llmfast-gateway-tests", "private": true}' > "$npm_dir/package.json"
npm install --prefix "$npm_dir" --no-audit --no-fund --no-save "openai@$openai_major"
echo "22-gateway-npm: openai $(node -p "require('./$modules/openai/package.json').version") installed"
