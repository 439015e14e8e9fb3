#!/usr/bin/env bash
# Part of `make test-dist`: the Node suite (bindings-node/test, less package.test.mjs, which
# checks the source package's generated files) on the npm tarballs of dist/, installed into an
# empty project the way a user installs them: no install script, no compiler involved.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -1)"
export CORRAL_TEST_MODEL="${CORRAL_TEST_MODEL:-$("$ROOT/scripts/fetch-model.sh")}"
APP="$ROOT/target/dist/npm-app"
rm -rf "$APP"
mkdir -p "$APP/test"
cd "$APP"
npm init -y >/dev/null
npm install --ignore-scripts --no-audit --no-fund \
  "$ROOT/dist/corral-linux-x64-gnu-$VERSION.tgz" "$ROOT/dist/corral-$VERSION.tgz" >&2
for file in "$ROOT"/bindings-node/test/*.mjs; do
  [ "$(basename "$file")" = package.test.mjs ] || cp "$file" test/
done
exec node --test --test-concurrency=1 --test-timeout=300000 test/*.test.mjs
