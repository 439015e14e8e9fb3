#!/usr/bin/env bash
# Benchmarks embeddings: `corral bench-embed` on the MiniLM Q8_0 GGUF (256 texts of about 20
# tokens), side by side with llama-cpp-python's `Llama.embed` (built as scripts/bench-python.sh
# builds it: clang, GGML_NATIVE=ON, in target/py-bench-venv) and node-llama-cpp's embedding
# context (installed as scripts/bench-node.sh installs it, in target/node-bench). Each peer runs
# in its own process; rounds are interleaved. Arguments go to `corral bench-embed` (--threads N,
# --rounds N, --json). Run it on an idle machine.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/target/py-bench-venv"
LLAMA_CPP_PYTHON="${LLAMA_CPP_PYTHON:-llama-cpp-python==0.3.36}"
NODE_LLAMA_CPP_VERSION=3.21.1
NODE_BENCH_DIR="$ROOT/target/node-bench"

(cd "$ROOT" && cargo build --release --locked -p corral-cli >&2)
mapfile -t EMBEDDING_MODELS < <("$ROOT/scripts/fetch-embedding-models.sh")

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
if ! "$VENV/bin/python" -c 'import llama_cpp' 2>/dev/null; then
  echo "building $LLAMA_CPP_PYTHON from source (this takes a while)..." >&2
  CC="$ROOT/scripts/cc/clang" CXX="$ROOT/scripts/cc/clang++" CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=ON}" \
    "$VENV/bin/python" -m pip install --quiet --no-cache-dir --disable-pip-version-check "$LLAMA_CPP_PYTHON" >&2
fi
installed="$(node -p "try { require('$NODE_BENCH_DIR/node_modules/node-llama-cpp/package.json').version } catch { '' }")"
if [ "$installed" != "$NODE_LLAMA_CPP_VERSION" ]; then
  mkdir -p "$NODE_BENCH_DIR"
  [ -f "$NODE_BENCH_DIR/package.json" ] || echo '{ "name": "corral-node-bench", "private": true }' >"$NODE_BENCH_DIR/package.json"
  platform="$(node -p "process.platform + '-' + process.arch")"
  (cd "$NODE_BENCH_DIR" && NODE_LLAMA_CPP_SKIP_DOWNLOAD=true npm install --no-audit --no-fund --omit=optional \
    "node-llama-cpp@$NODE_LLAMA_CPP_VERSION" "@node-llama-cpp/$platform@$NODE_LLAMA_CPP_VERSION" >&2)
fi
exec "$ROOT/target/release/corral" bench-embed "${EMBEDDING_MODELS[2]}" \
  --llama-cpp-python "$VENV/bin/python" --node-llama-cpp "$NODE_BENCH_DIR" "$@"
