#!/usr/bin/env bash
# Builds the Python package the way a user installs it (`pip install ./bindings-python`, a
# maturin wheel) into a venv under target/ and runs its pytest suite. Idempotent; arguments
# go to pytest (e.g. `scripts/test-python.sh -k session -x`).
#
# The wheel is built by cargo in the workspace's target/ with the release profile, so the
# llama.cpp build that `cargo build --release` / `cargo test --release` made is reused.
# Runs after scripts/setup.sh; fetches the default model if it is missing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CORRAL_PY_VENV:-$ROOT/target/py-venv}"
PYTHON="${PYTHON:-python3}"

if ! "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then
  "$ROOT/scripts/setup.sh" python3-venv
fi
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
"$VENV/bin/python" -m pip install --quiet --upgrade pip >&2
echo "building and installing bindings-python (maturin, release profile)..." >&2
"$VENV/bin/python" -m pip install --quiet "$ROOT/bindings-python[test]" >&2

export CORRAL_TEST_MODEL="${CORRAL_TEST_MODEL:-$("$ROOT/scripts/fetch-model.sh")}"
"$ROOT/scripts/fetch-embedding-models.sh" >/dev/null  # MiniLM, its source weights, the test reranker
cd "$ROOT/bindings-python"
exec "$VENV/bin/python" -m pytest "$@"
