#!/usr/bin/env bash
# Builds the Node package the way a user installs it and runs its tests: `npm install` in
# bindings-node (its install script builds the native addon with cargo and compiles the
# TypeScript layer to dist/), then the tsc check of the typed examples and the `node --test`
# suite on the real default model. Idempotent; arguments go to `node --test` instead of the
# default file list (e.g. `scripts/test-node.sh test/stream.test.mjs`).
#
# The addon is built by cargo in the workspace's target/ with the release profile (not
# `napi build`, which would rebuild llama.cpp under target/<triple>/), so the llama.cpp build
# that `cargo build --release` / `cargo test --release` made is reused.
# Runs after scripts/setup.sh; needs Node >= 20 with npm; fetches the default model if missing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "Node.js >= 20 with npm is required (https://nodejs.org)" >&2
  exit 1
fi
if ! node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)'; then
  echo "Node.js >= 20 is required, found $(node --version)" >&2
  exit 1
fi

export CORRAL_TEST_MODEL="${CORRAL_TEST_MODEL:-$("$ROOT/scripts/fetch-model.sh")}"
"$ROOT/scripts/fetch-embedding-models.sh" >/dev/null  # MiniLM and the test reranker (embed.test.mjs)
cd "$ROOT/bindings-node"
echo "building and installing bindings-node (npm install: cargo release build + tsc)..." >&2
npm install --no-audit --no-fund >&2
npm run --silent typecheck
if [ $# -gt 0 ]; then
  exec node --test --test-concurrency=1 --test-timeout=300000 "$@"
fi
exec npm test --silent
