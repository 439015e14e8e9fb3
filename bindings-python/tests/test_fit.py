"""Fit before loading: estimate_memory, context_length="auto", InsufficientMemoryError."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import corral

# SmolLM2-135M: 30 layers x 3 KV heads x 64 x (K + V) x f16 per token.
KV_BYTES_PER_TOKEN = 30 * 3 * 64 * 2 * 2


def test_estimate_memory_reports_each_part(model_path):
    e = corral.estimate_memory(model_path, context_length=2048)
    assert isinstance(e, corral.MemoryEstimate)
    assert e.context_length == 2048
    assert e.kv_cache_bytes == KV_BYTES_PER_TOKEN * 2048
    assert e.total_bytes == e.weights_bytes + e.kv_cache_bytes + e.compute_bytes + e.overhead_bytes
    assert e.required_bytes == e.total_bytes - e.mapped_weights_bytes
    assert e.fits and e.available_bytes > e.required_bytes
    assert "MemoryEstimate(context_length=2048" in repr(e)
    # The parts plus the process's own overhead (machine-dependent: 195 MiB in all on one
    # machine, over 250 on another; core/tests/fit.rs checks it against the peak RSS).
    assert 150 << 20 < e.total_bytes < 350 << 20


def test_estimate_memory_follows_the_options(model_path):
    base = corral.estimate_memory(model_path, context_length=1024)
    assert corral.estimate_memory(model_path, context_length=1024, max_sequences=16).compute_bytes > base.compute_bytes
    assert corral.estimate_memory(model_path, context_length=1024, use_mmap=False).mapped_weights_bytes == 0
    assert corral.estimate_memory(model_path, context_length="auto").context_length == 8192


def test_auto_context_loads_the_largest_that_fits(model_path):
    with corral.Model(model_path, context_length="auto", max_sequences=1) as model:
        assert model.info.context_length == 8192


def test_bad_arguments_and_files(model_path, tmp_path):
    with pytest.raises(corral.ModelNotFoundError):
        corral.estimate_memory(tmp_path / "missing.gguf")
    random = tmp_path / "random.gguf"
    random.write_bytes(os.urandom(4096))
    with pytest.raises(corral.InvalidModelError):
        corral.estimate_memory(random)
    with pytest.raises(corral.InvalidArgumentError, match="auto"):
        corral.estimate_memory(model_path, context_length="big")
    with pytest.raises(corral.InvalidArgumentTypeError):
        corral.estimate_memory(model_path, context_length=1.5)
    with pytest.raises(corral.InvalidArgumentError, match="at most"):
        corral.Model(model_path, context_length=1 << 30)


def _stub_keywords(name):
    """The keyword-only parameters the stub gives `name`: a function, or a class's __new__
    (stubtest checks them against the native signatures, which Python 3.9 does not show for
    classes)."""
    stub = ast.parse((Path(corral.__file__).parent / "_native.pyi").read_text())
    node = next(node for node in stub.body if getattr(node, "name", None) == name)
    if isinstance(node, ast.ClassDef):
        node = next(f for f in node.body if isinstance(f, ast.FunctionDef) and f.name == "__new__")
    return [arg.arg for arg in node.args.kwonlyargs]


def test_the_load_keywords_are_those_of_the_signatures(tmp_path):
    # The native functions read their keywords by name: each one the stub shows is taken (the
    # missing file is what fails), and an unknown one is refused as Python would.
    for function in (corral.estimate_memory, corral._native.Model):
        keywords = dict.fromkeys(_stub_keywords(function.__name__))
        assert "context_length" in keywords and "rpc_split" in keywords
        with pytest.raises(corral.ModelNotFoundError):
            function(tmp_path / "missing.gguf", **keywords)
        with pytest.raises(TypeError, match="unexpected keyword argument 'context_lenght'"):
            function(tmp_path / "missing.gguf", context_lenght=512)


def test_a_context_that_cannot_fit_is_refused_before_allocating(model_path):
    # Ten million tokens: 230 GB of KV cache.
    assert not corral.estimate_memory(model_path, context_length=10_000_000).fits
    with pytest.raises(corral.InsufficientMemoryError) as raised:
        corral.Model(model_path, context_length=10_000_000)
    assert isinstance(raised.value, MemoryError)
    assert raised.value.code == "insufficient_memory"
    assert "available" in str(raised.value)
    # The process goes on: the same model loads with a context that fits.
    with corral.Model(model_path, context_length=512, max_sequences=1) as model:
        assert model.complete("Hello", max_tokens=2, temperature=0).usage.completion_tokens == 2


CHILD = """
import sys, corral
path = sys.argv[1]
with open(sys.argv[2], "w") as procs:
    procs.write(str(__import__("os").getpid()))
try:
    corral.Model(path, context_length=32768)
    print("loaded")
except corral.InsufficientMemoryError as e:
    print("refused", e.code)
with corral.Model(path, context_length="auto", max_sequences=1) as model:
    print("auto", model.info.context_length)
    print("generated", model.complete("Hello", max_tokens=4, temperature=0).usage.completion_tokens)
"""


def test_in_a_memory_cgroup_too_small_for_the_context(model_path, tmp_path):
    group = f"/sys/fs/cgroup/memory/corral-py-fit-{os.getpid()}"
    try:
        os.mkdir(group)
    except OSError:
        pytest.skip("cannot make a cgroup v1 memory group here (needs root)")
    try:
        with open(f"{group}/memory.limit_in_bytes", "w") as f:
            f.write(str(300 << 20))  # below the full 8,192-token context (about 322 MiB), so auto must shrink it
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(model_path), f"{group}/cgroup.procs"],
            capture_output=True, text=True, timeout=120,
        )
        assert out.returncode == 0, out.stderr  # not killed by the OOM killer
        lines = dict(line.split(" ", 1) for line in out.stdout.splitlines())
        assert lines["refused"] == "insufficient_memory"
        assert 256 <= int(lines["auto"]) < 8192
        assert lines["generated"] == "4"
    finally:
        os.rmdir(group)
