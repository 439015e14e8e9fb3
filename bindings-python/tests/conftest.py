import os
from pathlib import Path
from typing import Iterator

import pytest

import corral

REPO = Path(__file__).resolve().parents[2]
MODEL_PATH = Path(os.environ.get("CORRAL_TEST_MODEL", REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"))

# One engine thread keeps timings steady on small, busy CI machines.
MODEL_OPTIONS = dict(context_length=2048, threads=1)


@pytest.fixture(scope="session")
def model_path() -> Path:
    if not MODEL_PATH.is_file():
        pytest.fail(f"test model missing: {MODEL_PATH} (run scripts/fetch-model.sh or set CORRAL_TEST_MODEL)")
    return MODEL_PATH


@pytest.fixture(scope="session")
def model(model_path: Path) -> Iterator[corral.Model]:
    with corral.Model(model_path, **MODEL_OPTIONS) as loaded:
        yield loaded


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]
