#!/usr/bin/env bash
# Part of `make test-dist`: the prebuilt wheel and the real llama-cpp-python generate in one
# process, in both import orders (scripts/dist/clients/with_llama_cpp_python.py). llama-cpp-python
# ships no binary wheels on PyPI: its install compiles llama.cpp (a few minutes, once; the venv
# is kept in target/dist/llama-cpp-python). Built with the project's clang, not for this CPU
# alone (GGML_NATIVE=OFF), without its download code (LLAMA_CURL=OFF).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
LLAMA_CPP_PYTHON=0.3.36
VENV="$ROOT/target/dist/llama-cpp-python"
MODEL="$("$ROOT/scripts/fetch-model.sh")"
if ! "$VENV/bin/python" -c "import llama_cpp, sys; sys.exit(llama_cpp.__version__ != '$LLAMA_CPP_PYTHON')" 2>/dev/null; then
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  echo "installing llama-cpp-python $LLAMA_CPP_PYTHON (compiles llama.cpp)..." >&2
  CC="$ROOT/scripts/cc/clang" CXX="$ROOT/scripts/cc/clang++" CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAMA_CURL=OFF" \
    CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" "$VENV/bin/pip" install --quiet --disable-pip-version-check "llama-cpp-python==$LLAMA_CPP_PYTHON" >&2
fi
"$VENV/bin/pip" install --quiet --disable-pip-version-check --force-reinstall --no-deps "dist/corral-$VERSION-cp39-abi3-manylinux_2_31_x86_64.whl" >&2
for order in corral-first llama-cpp-python-first; do
  "$VENV/bin/python" scripts/dist/clients/with_llama_cpp_python.py "$MODEL" "$order"
done
