#!/usr/bin/env bash
# Builds the C library: libcorral.so (soname libcorral.so.0), libcorral.a, include/corral.h and
# pkg-config files (corral.pc for the shared library, corral-static.pc for the static one),
# laid out under PREFIX (default: target/capi). The pkg-config files are relocatable (their
# prefix is where they lie), so the folder works wherever it is moved or unpacked. llama.cpp's shared libraries and ggml's CPU
# variant libraries go into PREFIX/lib beside libcorral, which finds them there at run time
# (libcorral.so through its $ORIGIN run path; programs linking libcorral.a through theirs).
# cargo's outputs are read from $CARGO_TARGET_DIR when it is set (default: target).
#   scripts/build-capi.sh [--prefix DIR]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
PREFIX="$ROOT/target/capi"
if [ "${1:-}" = "--prefix" ]; then PREFIX="$2"; fi
cd "$ROOT"
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
MAJOR="${VERSION%%.*}"

# One rustc invocation builds both library kinds; the native libraries the static archive
# needs are printed by rustc, and go into corral-static.pc.
NATIVE_LOG="$(mktemp)"; trap 'rm -f "$NATIVE_LOG"' EXIT
# The C ABI is the crate corral-c (bindings-c/); its libraries are installed as libcorral.
cargo rustc --release --locked -p corral-c --crate-type cdylib --crate-type staticlib -- \
  -C link-arg=-Wl,-soname,libcorral.so.$MAJOR -C 'link-arg=-Wl,-rpath,$ORIGIN' --print native-static-libs 2> >(tee "$NATIVE_LOG" >&2)
NATIVE_LIBS="$(sed -n 's/.*native-static-libs: //p' "$NATIVE_LOG" | tail -1)"

mkdir -p "$PREFIX/lib/pkgconfig" "$PREFIX/include"
install -m 0644 include/corral.h "$PREFIX/include/corral.h"
install -m 0755 "$TARGET/release/libcorral_c.so" "$PREFIX/lib/libcorral.so.$VERSION"
ln -sf "libcorral.so.$VERSION" "$PREFIX/lib/libcorral.so.$MAJOR"
ln -sf "libcorral.so.$MAJOR" "$PREFIX/lib/libcorral.so"
install -m 0644 "$TARGET/release/libcorral_c.a" "$PREFIX/lib/libcorral.a"
# The runtime staged by corral-core's build script (the same files in every build of it).
RUNTIME="$(ls -dt "$TARGET"/release/build/corral-core-*/out/runtime | head -1)"
rm -f "$PREFIX"/lib/libllama*.so* "$PREFIX"/lib/libggml*.so*
install -m 0755 "$RUNTIME"/lib*.so* "$PREFIX/lib/"
# Link-time names (-lllama) for programs linking the static library.
for soname in "$RUNTIME"/lib*.so.*; do
  name="$(basename "$soname")"
  ln -sf "$name" "$PREFIX/lib/${name%.so.*}.so"
done
cat > "$PREFIX/lib/pkgconfig/corral.pc" <<PC
prefix=\${pcfiledir}/../..
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: corral
Description: Run GGUF language models in-process (shared library)
Version: $VERSION
Cflags: -I\${includedir}
Libs: -L\${libdir} -Wl,-rpath,\${libdir} -lcorral
PC
cat > "$PREFIX/lib/pkgconfig/corral-static.pc" <<PC
prefix=\${pcfiledir}/../..
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: corral-static
Description: Run GGUF language models in-process (static library)
Version: $VERSION
Cflags: -I\${includedir}
Libs: \${libdir}/libcorral.a -L\${libdir} -Wl,-rpath,\${libdir} $NATIVE_LIBS
PC
echo "libcorral $VERSION installed under $PREFIX" >&2
