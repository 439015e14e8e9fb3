#!/usr/bin/env bash
# Builds libcorral and runs the C tests: the examples, the C ABI suite (plain, under
# AddressSanitizer + UndefinedBehaviorSanitizer, under valgrind), the C++ check, and a static
# link. Everything compiles with -Wall -Wextra -Wpedantic -Werror.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
command -v valgrind >/dev/null || ./scripts/setup.sh valgrind
MODEL="$(./scripts/fetch-model.sh)"
# The suite embeds with MiniLM and reranks with the test reranker (source, f16, q8_0, rank).
mapfile -t EMBEDDING_MODELS < <(./scripts/fetch-embedding-models.sh)
export CORRAL_EMBED_MODEL="${EMBEDDING_MODELS[1]}" CORRAL_RERANK_MODEL="${EMBEDDING_MODELS[3]}"
./scripts/build-capi.sh >/dev/null 2>&1 || ./scripts/build-capi.sh
export PKG_CONFIG_PATH="$ROOT/target/capi/lib/pkgconfig"
OUT="$ROOT/target/c-tests"; mkdir -p "$OUT"
export CORRAL_SCRATCH="$OUT"
WARN=(-std=c11 -Wall -Wextra -Wpedantic -Werror)
LIBDIR="$(pkg-config --variable=libdir corral)"
RPATH=(-Wl,-rpath,"$LIBDIR")

echo "== examples (shared library, pkg-config)"
cc "${WARN[@]}" examples/c/chat.c $(pkg-config --cflags --libs corral) "${RPATH[@]}" -o "$OUT/chat"
cc "${WARN[@]}" examples/c/embed.c $(pkg-config --cflags --libs corral) "${RPATH[@]}" -o "$OUT/embed"
cc "${WARN[@]}" examples/c/rpc_server.c $(pkg-config --cflags --libs corral) "${RPATH[@]}" -o "$OUT/corral-rpc-server"
# The suite's RPC test runs its workers with the example server.
export CORRAL_RPC_SERVER="$OUT/corral-rpc-server"
cc "${WARN[@]}" examples/c/threads.c $(pkg-config --cflags --libs corral) "${RPATH[@]}" -lpthread -o "$OUT/threads"
"$OUT/chat" "$MODEL" "Say hello in one short sentence." > "$OUT/chat.out"
grep -q . "$OUT/chat.out"
"$OUT/threads" "$MODEL"
"$OUT/embed" "$CORRAL_EMBED_MODEL" | grep -q "sourdough"

echo "== static library"
cc "${WARN[@]}" examples/c/chat.c $(pkg-config --cflags --libs corral-static) -o "$OUT/chat-static"
! ldd "$OUT/chat-static" | grep -q libcorral
"$OUT/chat-static" "$MODEL" "Hi" > /dev/null

echo "== C++17"
c++ -std=c++17 -Wall -Wextra -Wpedantic -Werror tests/c/cpp_check.cpp $(pkg-config --cflags --libs corral) "${RPATH[@]}" -o "$OUT/cpp_check"
"$OUT/cpp_check" "$MODEL"

echo "== C ABI suite"
cc "${WARN[@]}" -g tests/c/test_capi.c $(pkg-config --cflags --libs corral) "${RPATH[@]}" -o "$OUT/test_capi"
"$OUT/test_capi" "$MODEL"

echo "== C ABI suite under ASan + UBSan"
cc "${WARN[@]}" -g -fsanitize=address,undefined -fno-omit-frame-pointer tests/c/test_capi.c \
  $(pkg-config --cflags --libs corral) "${RPATH[@]}" -o "$OUT/test_capi_asan"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 LSAN_OPTIONS=suppressions="$ROOT/tests/c/lsan.supp" UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  "$OUT/test_capi_asan" "$MODEL"

echo "== C ABI suite under valgrind"
# The quick subset: llama.cpp runs ~50x slower under valgrind.
cc "${WARN[@]}" -g tests/c/test_capi.c $(pkg-config --cflags --libs corral) "${RPATH[@]}" -o "$OUT/test_capi"
valgrind --quiet --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
  --show-leak-kinds=definite "$OUT/test_capi" "$MODEL" --quick
