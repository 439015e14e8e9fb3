"""Saved sessions: state() and save() in one process, model.session(state=...) and
load_session() in another, continuing with the saved tokens cached; damaged states."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import corral

from conftest import MODEL_OPTIONS, MODEL_PATH

DOCUMENT = "".join(f"Entry {i}: the harbour master logged {i * 3 + 1} ships and {i % 7} storms. " for i in range(60))
QUESTION = DOCUMENT + "\nQuestion: how many ships did entry 12 log? Answer:"

CONTINUE = """
import json, sys
import corral
path, question, options = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
with corral.Model(sys.argv[4], **options) as model:
    session = model.load_session(path)
    out = session.complete(question, max_tokens=12, temperature=0)
    print(json.dumps({"text": out.text, "cached": out.usage.cached_tokens, "ttft": out.usage.time_to_first_token_ms}))
"""


def test_a_session_saved_in_one_process_continues_in_another(tmp_path: Path) -> None:
    import json

    with corral.Model(MODEL_PATH, **MODEL_OPTIONS) as model:
        session = model.session()
        first = session.complete(DOCUMENT, max_tokens=1, temperature=0)
        assert first.usage.prompt_tokens >= 900
        path = tmp_path / "session.state"
        session.save(path)
        expected = session.complete(QUESTION, max_tokens=12, temperature=0)
        model.clear_cache()  # else the prefix cache serves the cold run too
        cold = model.session().complete(QUESTION, max_tokens=12, temperature=0)
        assert cold.usage.cached_tokens == 0
        again = model.session(state=session.state())
        assert again.complete(QUESTION, max_tokens=1, temperature=0).usage.cached_tokens >= first.usage.prompt_tokens
    result = subprocess.run(
        [sys.executable, "-c", CONTINUE, str(path), QUESTION, json.dumps(MODEL_OPTIONS), str(MODEL_PATH)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    resumed = json.loads(result.stdout)
    assert resumed["cached"] == first.usage.prompt_tokens
    assert resumed["text"] == expected.text
    assert resumed["ttft"] * 5 < cold.usage.time_to_first_token_ms


def test_damaged_or_foreign_states_raise_invalid_state(tmp_path: Path, model: corral.Model) -> None:
    session = model.session()
    session.complete("The quick brown fox", max_tokens=2)
    state = session.state()
    assert isinstance(state, bytes)
    for damaged in (state[: len(state) // 2], b"", b"not a state", state[:-1] + bytes([state[-1] ^ 1])):
        with pytest.raises(corral.InvalidStateError):
            model.session(state=damaged)
    with corral.Model(MODEL_PATH, context_length=512, threads=1) as other:
        with pytest.raises(corral.InvalidStateError, match="context_length"):
            other.session(state=state)
    with pytest.raises(FileNotFoundError):
        model.load_session(tmp_path / "missing.state")
    with pytest.raises(TypeError):
        model.session(state="text")  # type: ignore[arg-type]
    assert model.complete("Hello", max_tokens=2).text is not None
