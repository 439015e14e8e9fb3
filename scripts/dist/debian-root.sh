#!/usr/bin/env bash
# Makes a Debian bullseye root (glibc 2.31, libstdc++ 10, Python 3.9) in DIR with the given
# packages, using debootstrap and the machine's own Debian mirror. Two uses: the sysroot the
# prebuilt packages are compiled against (so they run on glibc >= 2.31), and the clean,
# compiler-less machine they are tested on (scripts/dist/test.sh). Idempotent: a root made
# with the same packages is kept. Needs root (debootstrap, chroot).
#   scripts/dist/debian-root.sh DIR [PACKAGE...]
set -euo pipefail
DIR="$1"; shift
PACKAGES="$(printf '%s\n' "$@" | sort | paste -sd, -)"
STAMP="$DIR/.corral-root"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "bullseye:$PACKAGES" ]; then exit 0; fi
command -v debootstrap >/dev/null || "$(dirname "${BASH_SOURCE[0]}")/../setup.sh" debootstrap
# The mirror this machine's apt already uses (debootstrap's own default otherwise).
MIRROR="$(sed -n 's/^URIs: *\(http[^ ]*\/debian\)\/*$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)"
[ -n "$MIRROR" ] || MIRROR="$(sed -n 's/^deb \(http[^ ]*\/debian\)\/* .*/\1/p' /etc/apt/sources.list 2>/dev/null | head -1)"
rm -rf "$DIR"
mkdir -p "$(dirname "$DIR")"
echo "corral: making a Debian bullseye root in $DIR (${PACKAGES:-base only})" >&2
LOG="$(mktemp)"
if ! debootstrap --variant=minbase ${PACKAGES:+--include="$PACKAGES"} bullseye "$DIR" ${MIRROR:+"$MIRROR"} >"$LOG" 2>&1; then
  tail -20 "$LOG" >&2; rm -f "$LOG"; exit 1
fi
rm -f "$LOG"
# Package caches are not part of the machine being imitated.
rm -rf "$DIR"/var/cache/apt/archives/*.deb "$DIR"/var/lib/apt/lists/*
# Absolute library links (/lib64/ld-linux-x86-64.so.2 -> /lib/...) made relative, so that a
# compiler using the root as --sysroot follows them inside it.
find "$DIR/usr/lib" "$DIR/usr/lib64" -type l -lname '/*' 2>/dev/null | while read -r link; do
  ln -sfnr "$DIR$(readlink "$link")" "$link"
done
echo "bullseye:$PACKAGES" > "$STAMP"
