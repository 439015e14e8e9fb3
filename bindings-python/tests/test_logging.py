"""Log lines reach Python logging only when asked for."""

import logging
from pathlib import Path

import pytest

import corral


def test_silent_by_default(model_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    with corral.Model(model_path, context_length=64, threads=1):
        pass
    assert not [r for r in caplog.records if r.name.startswith("corral")]
    captured = capfd.readouterr()
    assert "llama" not in captured.err and "llama" not in captured.out


def test_enable_logging_bridges_llama_cpp(model_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="corral")
    corral.enable_logging(logging.INFO)
    try:
        with corral.Model(model_path, context_length=64, threads=1) as model:
            model.complete("Hi", max_tokens=1)
    finally:
        corral.disable_logging()  # delivers what is pending
    records = [r for r in caplog.records if r.name.startswith("corral")]
    assert any(r.name == "corral.llama_cpp" for r in records)
    assert all(r.levelno >= logging.INFO for r in records)
    count = len(caplog.records)
    with corral.Model(model_path, context_length=64, threads=1):
        pass
    assert len(caplog.records) == count


def test_enable_logging_level_filters(model_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="corral")
    corral.enable_logging(logging.ERROR)
    try:
        with corral.Model(model_path, context_length=64, threads=1):
            pass
    finally:
        corral.disable_logging()
    assert all(r.levelno >= logging.ERROR for r in caplog.records if r.name.startswith("corral"))
    corral.disable_logging()  # idempotent
