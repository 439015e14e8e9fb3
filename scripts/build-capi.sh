#!/usr/bin/env bash
# Builds the C library: libcorral.so (soname libcorral.so.0), libcorral.a, include/corral.h and
# pkg-config files (corral.pc for the shared library, corral-static.pc for the static one),
# laid out under PREFIX (default: target/capi).
#   scripts/build-capi.sh [--prefix DIR]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX="$ROOT/target/capi"
if [ "${1:-}" = "--prefix" ]; then PREFIX="$2"; fi
cd "$ROOT"
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
MAJOR="${VERSION%%.*}"

# One rustc invocation builds both library kinds; the native libraries the static archive
# needs are printed by rustc, and go into corral-static.pc.
NATIVE_LOG="$(mktemp)"; trap 'rm -f "$NATIVE_LOG"' EXIT
cargo rustc --release --locked -p corral-core --features capi --crate-type cdylib --crate-type staticlib -- \
  -C link-arg=-Wl,-soname,libcorral.so.$MAJOR --print native-static-libs 2> >(tee "$NATIVE_LOG" >&2)
NATIVE_LIBS="$(sed -n 's/.*native-static-libs: //p' "$NATIVE_LOG" | tail -1)"

mkdir -p "$PREFIX/lib/pkgconfig" "$PREFIX/include"
install -m 0644 include/corral.h "$PREFIX/include/corral.h"
install -m 0755 target/release/libcorral.so "$PREFIX/lib/libcorral.so.$VERSION"
ln -sf "libcorral.so.$VERSION" "$PREFIX/lib/libcorral.so.$MAJOR"
ln -sf "libcorral.so.$MAJOR" "$PREFIX/lib/libcorral.so"
install -m 0644 target/release/libcorral.a "$PREFIX/lib/libcorral.a"
cat > "$PREFIX/lib/pkgconfig/corral.pc" <<PC
prefix=$PREFIX
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: corral
Description: Run GGUF language models in-process (shared library)
Version: $VERSION
Cflags: -I\${includedir}
Libs: -L\${libdir} -lcorral
PC
cat > "$PREFIX/lib/pkgconfig/corral-static.pc" <<PC
prefix=$PREFIX
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: corral-static
Description: Run GGUF language models in-process (static library)
Version: $VERSION
Cflags: -I\${includedir}
Libs: \${libdir}/libcorral.a $NATIVE_LIBS
PC
echo "libcorral $VERSION installed under $PREFIX" >&2
