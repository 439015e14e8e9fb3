# Sourced by the scripts that build the prebuilt packages (scripts/dist/build.sh): the build
# environment that makes them run on any x86-64 Linux with glibc >= 2.31. It compiles and
# links against a Debian bullseye sysroot with the project's clang, keeps OpenSSL out
# (llama.cpp's download code would link it; corral never downloads), and builds in its own
# target folder so the everyday build (target/release) is left alone.
DIST_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DIST_WORK="$DIST_ROOT/target/dist"
export CORRAL_SYSROOT="$DIST_WORK/sysroot"
"$DIST_ROOT/scripts/dist/debian-root.sh" "$CORRAL_SYSROOT" libc6-dev libstdc++-10-dev
export CARGO_TARGET_DIR="$DIST_WORK/cargo"
export CC="$DIST_ROOT/scripts/dist/cc/clang" CXX="$DIST_ROOT/scripts/dist/cc/clang++"
export CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER="$CC"
# llama-cpp-sys-2 hands CMAKE_* variables to llama.cpp's CMake build.
export CMAKE_SYSROOT="$CORRAL_SYSROOT" CMAKE_DISABLE_FIND_PACKAGE_OpenSSL=ON
export BINDGEN_EXTRA_CLANG_ARGS="--sysroot=$CORRAL_SYSROOT"
