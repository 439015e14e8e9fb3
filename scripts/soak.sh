#!/usr/bin/env bash
# Soak: many callers on one model create, use and free sessions and streams, cancelling some,
# once through the Rust API (`corral soak`) and once through the C ABI (tests/c/soak.c), with
# RSS read at start, after warm-up (the first 10% of tasks), half-way and at the end. Builds
# the CLI and libcorral, prints both reports, and fails if either run saw an error other than
# `cancelled` or grew by more than MAX_GROWTH_MB after warm-up.
#   scripts/soak.sh [CYCLES (10000)] [CANCELLATIONS (1000)]
# The environment may set CALLERS (default 8) and MAX_GROWTH_MB (default 5).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CYCLES="${1:-10000}"
CANCELLATIONS="${2:-1000}"
CALLERS="${CALLERS:-8}"
MAX_GROWTH_MB="${MAX_GROWTH_MB:-5}"

MODEL="$(./scripts/fetch-model.sh)"
echo "== building the CLI and libcorral"
cargo build --release --locked -p corral-cli
./scripts/build-capi.sh >/dev/null 2>&1 || ./scripts/build-capi.sh
export PKG_CONFIG_PATH="$ROOT/target/capi/lib/pkgconfig"
OUT="$ROOT/target/soak"; mkdir -p "$OUT"
LIBDIR="$(pkg-config --variable=libdir corral)"
cc -std=c11 -Wall -Wextra -Wpedantic -Werror -O2 tests/c/soak.c $(pkg-config --cflags --libs corral) \
  -Wl,-rpath,"$LIBDIR" -lpthread -o "$OUT/soak-c"

status=0
echo "== Rust API: corral soak"
./target/release/corral soak "$MODEL" --cycles "$CYCLES" --cancellations "$CANCELLATIONS" --callers "$CALLERS" \
  --max-growth-mb "$MAX_GROWTH_MB" | tee "$OUT/rust.txt" || status=1
echo "== C ABI: tests/c/soak.c"
"$OUT/soak-c" "$MODEL" "$CYCLES" "$CANCELLATIONS" "$CALLERS" "$MAX_GROWTH_MB" | tee "$OUT/c.txt" || status=1

echo
echo "== soak reports"
cat "$OUT/rust.txt"
echo
cat "$OUT/c.txt"
echo
if [ "$status" -eq 0 ]; then echo "soak: PASS (Rust API and C ABI)"; else echo "soak: FAIL"; fi
exit "$status"
