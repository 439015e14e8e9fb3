#!/usr/bin/env bash
# Benchmarks the Node binding against the Rust core and node-llama-cpp on the default model:
# bindings-node/bench/bench.mjs (see its header for what each row measures). node-llama-cpp
# 3.21.1 comes from npm with its prebuilt CPU binaries only (no download or compile of
# llama.cpp), into target/node-bench. Arguments go to bench.mjs (--threads N, --rounds N,
# --json); with --concurrency first, to bench/concurrency.mjs instead (8 requests on one
# model, concurrent and one after another, next to node-llama-cpp's 8-sequence context).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NODE_LLAMA_CPP_VERSION=3.21.1
BENCH_DIR="$ROOT/target/node-bench"

(cd "$ROOT/bindings-node" && npm install --no-audit --no-fund >&2)
(cd "$ROOT" && cargo build --release --locked -p corral-cli >&2)

installed="$(node -p "try { require('$BENCH_DIR/node_modules/node-llama-cpp/package.json').version } catch { '' }")"
if [ "$installed" != "$NODE_LLAMA_CPP_VERSION" ]; then
  mkdir -p "$BENCH_DIR"
  [ -f "$BENCH_DIR/package.json" ] || echo '{ "name": "corral-node-bench", "private": true }' >"$BENCH_DIR/package.json"
  # Only this platform's CPU build (the optional CUDA and Vulkan packages are large), and no
  # postinstall download or source build.
  platform="$(node -p "(process.platform === 'darwin' ? 'mac' : process.platform === 'win32' ? 'win' : process.platform) + '-' + process.arch + (process.platform === 'darwin' && process.arch === 'arm64' ? '-metal' : '')")"
  echo "installing node-llama-cpp@$NODE_LLAMA_CPP_VERSION into $BENCH_DIR..." >&2
  (cd "$BENCH_DIR" && NODE_LLAMA_CPP_SKIP_DOWNLOAD=true npm install --no-audit --no-fund --omit=optional \
    "node-llama-cpp@$NODE_LLAMA_CPP_VERSION" "@node-llama-cpp/$platform@$NODE_LLAMA_CPP_VERSION" >&2)
fi

MODEL="$("$ROOT/scripts/fetch-model.sh")"
script=bench.mjs
if [ "${1:-}" = "--concurrency" ]; then
  script=concurrency.mjs
  shift
fi
exec node "$ROOT/bindings-node/bench/$script" --model "$MODEL" --node-llama-cpp "$BENCH_DIR" "$@"
