#!/usr/bin/env bash
# Gives corral's copies of llama.cpp and ggml their own names, so that they never stand in for
# another program's llama.cpp in one process (llama-cpp-python ships libllama.so.0 and
# libggml-base.so.0 too: the loader would hand whichever came first to both). In DIR,
# libllama.so.0 becomes libcorral-llama.so.0 (file and soname), and so on; every ELF file in
# DIR, and each FILE given, then asks for the new names and finds them beside itself ($ORIGIN).
# ggml's CPU variants keep their file names (ggml looks them up by prefix) but ask for the
# renamed libggml-base. Needs patchelf on PATH.
#   scripts/dist/rename-runtime.sh DIR [FILE...]
set -euo pipefail
DIR="$1"; shift
RENAMED=(llama llama-common ggml ggml-base)

is_elf() { [ "$(head -c 4 "$1" | od -An -c | tr -d ' ')" = '177ELF' ]; }

for name in "${RENAMED[@]}"; do
  old="$DIR/lib$name.so.0"
  [ -f "$old" ] || continue
  patchelf --set-soname "libcorral-$name.so.0" "$old"
  mv "$old" "$DIR/libcorral-$name.so.0"
done

for file in "$DIR"/* "$@"; do
  [ -f "$file" ] && [ ! -L "$file" ] && is_elf "$file" || continue
  args=()
  needed="$(patchelf --print-needed "$file")"
  for name in "${RENAMED[@]}"; do
    if grep -qx "lib$name.so.0" <<<"$needed"; then args+=(--replace-needed "lib$name.so.0" "libcorral-$name.so.0"); fi
  done
  patchelf "${args[@]}" --set-rpath '$ORIGIN' "$file"
done
