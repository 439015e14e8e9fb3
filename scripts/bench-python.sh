#!/usr/bin/env bash
# Benchmarks the Python binding against the Rust core (and llama-cpp-python with
# --with-llama-cpp-python) on the default model: bindings-python/bench.py in its own venv
# (target/py-bench-venv). Other arguments go to bench.py (--threads N, --rounds N, --json).
#
# llama-cpp-python is built from source (several minutes on 2 cores) at its best for this
# machine: clang (GCC 12 miscompiles ggml's AMX kernels) and GGML_NATIVE=ON, so it uses every
# instruction set this CPU has, as corral's run-time CPU variant does. Override with CMAKE_ARGS.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/target/py-bench-venv"
LLAMA_CPP_PYTHON="${LLAMA_CPP_PYTHON:-llama-cpp-python==0.3.36}"

with_llama_cpp_python=0
args=()
for arg in "$@"; do
  case "$arg" in
    --with-llama-cpp-python) with_llama_cpp_python=1 ;;
    *) args+=("$arg") ;;
  esac
done

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
export PIP_DISABLE_PIP_VERSION_CHECK=1
"$VENV/bin/python" -m pip install --quiet "$ROOT/bindings-python" >&2
if [ "$with_llama_cpp_python" = 1 ]; then
  if ! "$VENV/bin/python" -c 'import llama_cpp' 2>/dev/null; then
    echo "building $LLAMA_CPP_PYTHON from source (this takes a while)..." >&2
    CC="$ROOT/scripts/cc/clang" CXX="$ROOT/scripts/cc/clang++" CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=ON}" \
      "$VENV/bin/python" -m pip install --quiet --no-cache-dir "$LLAMA_CPP_PYTHON" >&2
  fi
  args+=(--llama-cpp-python)
fi
(cd "$ROOT" && cargo build --release --locked -p corral-cli >&2)
MODEL="$("$ROOT/scripts/fetch-model.sh")"
exec "$VENV/bin/python" "$ROOT/bindings-python/bench.py" --model "$MODEL" ${args[@]+"${args[@]}"}
