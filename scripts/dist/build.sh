#!/usr/bin/env bash
# `make dist`: the prebuilt packages, in dist/:
#   corral-<version>-cp39-abi3-manylinux_2_31_x86_64.whl   pip install, Python >= 3.9
#   corral-<version>.tgz, corral-linux-x64-gnu-<version>.tgz  npm install (no install script)
#   corral-<version>-x86_64-linux-gnu.tar.gz                the C SDK (header, libraries, pkg-config)
# All three hold one build of corral (scripts/dist/env.sh: against a Debian bullseye sysroot,
# so they run on glibc >= 2.31 with nothing but libstdc++/libgcc beside glibc), with every CPU
# variant, and corral's llama.cpp libraries renamed (scripts/dist/rename-runtime.sh).
# scripts/dist/test.sh installs them on a clean bullseye machine.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
ROOT="$DIST_ROOT"
cd "$ROOT"
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
OUT="$ROOT/dist"
mkdir -p "$OUT"
rm -f "$OUT"/corral-*

# Packaging tools, pinned, in their own environment.
TOOLS="$DIST_WORK/tools"
if ! "$TOOLS/bin/python" -c 'import sys' 2>/dev/null; then
  python3 -c 'import venv, ensurepip' 2>/dev/null || "$ROOT/scripts/setup.sh" python3-venv
  python3 -m venv "$TOOLS"
fi
"$TOOLS/bin/pip" install --quiet --disable-pip-version-check -r "$ROOT/scripts/dist/requirements.txt"
export PATH="$TOOLS/bin:$PATH"

# llama.cpp's libraries and the CPU variants as this build staged them (corral-core's build
# script). The bindings' build scripts copy them into their source folders only when they
# rerun, and an everyday build may have written its own there since: take them from here.
runtime_into() {
  RUNTIME="$(ls -dt "$CARGO_TARGET_DIR"/release/build/corral-core-*/out/runtime | head -1)"
  rm -f "$1"/lib*.so*
  cp "$RUNTIME"/lib*.so* "$1/"
}

echo "== wheel" >&2
rm -rf "$DIST_WORK/wheel"
# --auditwheel skip: the libraries are already in the package; repairing would add renamed
# second copies of them. The tag is checked below with auditwheel itself.
maturin build --release --locked -m bindings-python/Cargo.toml --interpreter python3 \
  --compatibility manylinux_2_31 --auditwheel skip -o "$DIST_WORK/wheel/raw" >&2
wheel unpack -d "$DIST_WORK/wheel/unpacked" "$DIST_WORK"/wheel/raw/corral-*.whl >&2
PACKAGE="$(echo "$DIST_WORK"/wheel/unpacked/corral-*/corral)"
runtime_into "$PACKAGE"
scripts/dist/rename-runtime.sh "$PACKAGE"
wheel pack -d "$OUT" "$(dirname "$PACKAGE")" >&2
WHEEL="$(echo "$OUT"/corral-"$VERSION"-*.whl)"
auditwheel show "$WHEEL" > "$DIST_WORK/wheel/auditwheel.txt"
tr -s ' \n' ' ' < "$DIST_WORK/wheel/auditwheel.txt" | grep -q 'is consistent with the following platform tag: "manylinux_2_31_x86_64"' \
  || { cat "$DIST_WORK/wheel/auditwheel.txt" >&2; echo "auditwheel disagrees with the wheel's tag" >&2; exit 1; }

echo "== npm packages" >&2
NPM="$DIST_WORK/npm"
rm -rf "$NPM"
# The addon and the TypeScript layer, built the way `npm install ./bindings-node` builds them.
node bindings-node/scripts/build.mjs >&2
PLATFORM="$NPM/corral-linux-x64-gnu"
mkdir -p "$PLATFORM"
cp bindings-node/native/corral.linux-x64-gnu.node "$PLATFORM/"
runtime_into "$PLATFORM"
scripts/dist/rename-runtime.sh "$PLATFORM"
MAIN="$NPM/corral"
mkdir -p "$MAIN/native"
cp -r bindings-node/dist "$MAIN/dist"
cp -r bindings-node/bin "$MAIN/bin"
cp bindings-node/native/index.js bindings-node/native/index.d.ts "$MAIN/native/"
cp bindings-node/README.md "$MAIN/" 2>/dev/null || cp README.md "$MAIN/"
node scripts/dist/npm-manifests.mjs bindings-node/package.json "$MAIN" "$PLATFORM"
(cd "$OUT" && npm pack --silent "$PLATFORM" "$MAIN" >/dev/null)

echo "== C SDK" >&2
SDK_NAME="corral-$VERSION-x86_64-linux-gnu"
SDK="$DIST_WORK/sdk/$SDK_NAME"
rm -rf "$DIST_WORK/sdk"
scripts/build-capi.sh --prefix "$SDK"
# Link-time names (-lllama) point at the renamed libraries from now on.
find "$SDK/lib" -maxdepth 1 -name 'lib*.so' ! -name libcorral.so -type l -delete
scripts/dist/rename-runtime.sh "$SDK/lib"
for soname in "$SDK"/lib/libcorral-*.so.0; do
  ln -s "$(basename "$soname")" "${soname%.0}"
done
sed -i 's/-lllama-common\b/-lcorral-llama-common/; s/-lllama\b/-lcorral-llama/; s/-lggml-base\b/-lcorral-ggml-base/; s/-lggml\b/-lcorral-ggml/' \
  "$SDK/lib/pkgconfig/corral-static.pc"
# An RPC worker (examples/c/rpc_server.c) for hosts that have only the SDK.
mkdir -p "$SDK/bin"
"$CC" -std=c11 -O2 -Wall -Wextra -Werror examples/c/rpc_server.c -I"$SDK/include" -L"$SDK/lib" -Wl,-rpath-link,"$SDK/lib" -lcorral \
  -Wl,-rpath,'$ORIGIN/../lib' -o "$SDK/bin/corral-rpc-server"
tar -C "$DIST_WORK/sdk" -czf "$OUT/$SDK_NAME.tar.gz" "$SDK_NAME"

echo "== checks" >&2
# What every shipped ELF file needs: glibc <= 2.31, and nothing outside the manylinux set.
CHECK="$DIST_WORK/check"
rm -rf "$CHECK" && mkdir -p "$CHECK"
(cd "$CHECK" && python3 -m zipfile -e "$WHEEL" wheel && tar xzf "$OUT/$SDK_NAME.tar.gz" && mkdir npm \
  && for t in "$OUT"/corral-*.tgz; do tar xzf "$t" -C npm --transform "s|^package|$(basename "$t" .tgz)|"; done)
python3 scripts/dist/check-elf.py "$CHECK"
ls -l "$OUT" >&2
