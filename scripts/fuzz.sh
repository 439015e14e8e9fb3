#!/usr/bin/env bash
# Fuzzes corral's parsers of untrusted input (the cargo-fuzz targets in fuzz/: gguf_header,
# chat_template, json_schema, tool_calls, openai_vocabulary, session_state, c_json) for SECONDS each (default 60), one after the
# other. Installs cargo-fuzz when missing; builds with nightly Rust into target/fuzz; runs each
# target on a copy of its seeds (fuzz/corpus/<target>, kept growing in target/fuzz-corpus) and
# prints the executions done. Exits non-zero if any target crashed, timed out or ran out of
# memory, naming the input that did (saved under target/fuzz-artifacts/<target>/).
#   scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DURATION="${1:-60}"
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(gguf_header chat_template json_schema tool_calls openai_vocabulary session_state c_json)
TRIPLE="$(rustc -vV | sed -n 's/^host: //p')"
TARGET_DIR="$ROOT/target/fuzz"

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
cargo +nightly fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked

# cargo-fuzz instruments the Rust code with AddressSanitizer, and the cc crate then passes
# -fsanitize=address to llama.cpp's C/C++ too: clang needs its own ASan runtime for that, which
# it may not have. So llama.cpp's C++ (json_schema's json-schema-to-grammar) runs uninstrumented:
# a crash or abort there is still caught, but without ASan checks or coverage guidance.
export CFLAGS="${CFLAGS:+$CFLAGS }-fno-sanitize=address"
export CXXFLAGS="${CXXFLAGS:+$CXXFLAGS }-fno-sanitize=address"
# llama-cpp-sys-2's build script fails when it runs again (a changed CFLAGS, say) over its own
# earlier output: it hard-links the library symlinks into release/, release/examples/ and
# release/deps/ unless they "exist", and a dangling one does not. They are not used here
# (LD_LIBRARY_PATH below): drop them.
for dir in "$TARGET_DIR/$TRIPLE/release"{,/examples,/deps}; do
  if [ -d "$dir" ]; then find "$dir" -maxdepth 1 -name 'lib*.so*' -xtype l -delete; fi
done
# Release with debug assertions and overflow checks: a wrapped integer is a finding too.
cargo +nightly fuzz build --fuzz-dir fuzz --target "$TRIPLE" -O --debug-assertions --target-dir "$TARGET_DIR"

# llama.cpp's shared libraries, installed by llama-cpp-sys-2's build into its OUT_DIR.
LIBLLAMA="$(ls -t "$TARGET_DIR/$TRIPLE"/release/build/llama-cpp-sys-2-*/out/lib/libllama.so* 2>/dev/null | head -1)"
[ -n "$LIBLLAMA" ] || { echo "fuzz.sh: libllama.so not found under $TARGET_DIR/$TRIPLE/release/build" >&2; exit 1; }
export LD_LIBRARY_PATH="$(dirname "$LIBLLAMA")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_odr_violation=0}"
# c_json goes through the C ABI, which wants a loaded model before it parses anything.
if [[ " ${TARGETS[*]} " == *" c_json "* ]]; then
  export CORRAL_FUZZ_MODEL="${CORRAL_FUZZ_MODEL:-$(./scripts/fetch-model.sh)}"
fi

failed=()
summary=()
for target in "${TARGETS[@]}"; do
  corpus="$ROOT/target/fuzz-corpus/$target"
  artifacts="$ROOT/target/fuzz-artifacts/$target"
  log="$ROOT/target/fuzz-logs/$target.log"
  mkdir -p "$corpus" "$artifacts" "$(dirname "$log")"
  cp -n fuzz/corpus/"$target"/* "$corpus"/ 2>/dev/null || true
  dict=()
  [ -f "fuzz/dict/$target.dict" ] && dict=(-dict="fuzz/dict/$target.dict")
  echo "== $target (${DURATION}s)"
  status=0
  # -timeout: one input running past 10 s fails the target; -report_slow_units: inputs past 2 s
  # are listed (and saved as slow-unit-*) without failing it.
  "$TARGET_DIR/$TRIPLE/release/$target" "$corpus" "${dict[@]}" \
    -max_total_time="$DURATION" -max_len=65536 -rss_limit_mb=2048 -timeout=10 -report_slow_units=2 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" >"$log" 2>&1 || status=$?
  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
  [ -n "$runs" ] || runs="$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -1)"
  slowest="$(sed -n 's/.*Slowest unit: \([0-9]*\) s.*/\1/p' "$log" | sort -n | tail -1)"
  line="$target: ${runs:-?} executions${slowest:+, slowest input ${slowest} s}"
  if [ "$status" -ne 0 ]; then
    unit="$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)"
    kind="$(grep -m1 -oE 'ERROR: (libFuzzer|AddressSanitizer|LeakSanitizer): [a-z-]+|panicked at [^ ]+' "$log" || true)"
    line="$line: FAILED (exit $status${kind:+, $kind}) input ${unit:-not saved}; log $log"
    failed+=("$target")
    tail -n 40 "$log" >&2
  fi
  echo "$line"
  summary+=("$line")
done

echo "== summary"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz.sh: failed: ${failed[*]}" >&2
  exit 1
fi
