#!/usr/bin/env bash
# Installs the Debian 12 packages llmfast's build, tests, benchmarks and fuzzers need, if missing.
# Idempotent and quick when everything is there. Runs apt-get as root, or through sudo.
set -euo pipefail

PACKAGES=(
  cmake g++ make pkg-config python3        # build
  libfmt-dev libxxhash-dev                 # the library's dependencies
  catch2 libbenchmark-dev                  # tests, benchmarks
  libhnswlib-dev                           # optional llmfast::hnsw component
  libhiredis-dev redis-server              # optional llmfast::redis component (RedisTier) and its tests' server
  libcurl4-openssl-dev                     # optional llmfast::http component (OpenAiEmbedder, CurlTransport)
  clang-19 libclang-rt-19-dev              # clang build and libFuzzer targets
  unicode-data                             # source of the tokenizer's generated Unicode tables
  nlohmann-json3-dev                       # examples
  libboost1.81-dev libssl-dev openssl      # llmfast-gateway: Beast/Asio, TLS to https:// upstreams
  libsimdjson-dev                          # llmfast-gateway: JSON (examples/gateway/json_util.hpp)
  curl prometheus                          # gateway tests: curl -N, promtool check metrics
  chromium fonts-wqy-zenhei nodejs         # gateway tests: the playground in headless Chromium driven from node (>= 20: its WebSocket), CJK glyphs
  python3-fastapi python3-uvicorn python3-httpx python3-uvloop python3-httptools  # gateway benchmark: the FastAPI baseline (benchmarks/gateway_bench)
)
# extra packages: components add theirs here
EXTRA_PACKAGES=""
# shellcheck disable=SC2206
PACKAGES+=(${EXTRA_PACKAGES})

missing=()
for package in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install_deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
