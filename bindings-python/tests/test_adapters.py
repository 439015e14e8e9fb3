"""LoRA adapters: loaded with the model or later, chosen per request with the ``adapters``
generation keyword; typed errors for bad names, scales and files."""

import asyncio
import os
import threading
from pathlib import Path
from typing import Any, Iterator, Sequence

import pytest

import corral
from conftest import MODEL_OPTIONS, REPO, user

ADAPTER_A = Path(os.environ.get("CORRAL_TEST_ADAPTER_A", REPO / "models" / "smollm2-lora-test-a.gguf"))
ADAPTER_B = Path(os.environ.get("CORRAL_TEST_ADAPTER_B", REPO / "models" / "smollm2-lora-test-b.gguf"))
PROMPT = "The old lighthouse keeper opened the door and saw"

AdapterSet = Sequence[dict[str, Any]]


@pytest.fixture(scope="module")
def adapter_paths() -> tuple[Path, Path]:
    for path in (ADAPTER_A, ADAPTER_B):
        if not path.is_file():
            pytest.fail(f"test adapter missing: {path} (run scripts/fetch-embedding-models.sh)")
    return ADAPTER_A, ADAPTER_B


@pytest.fixture(scope="module")
def adapted(model_path: Path, adapter_paths: tuple[Path, Path]) -> Iterator[corral.Model]:
    """The test model with adapters "a" and "b" (str paths) loaded with it."""
    a, b = adapter_paths
    with corral.Model(model_path, adapters={"a": str(a), "b": str(b)}, **MODEL_OPTIONS) as loaded:
        yield loaded


def run(model: corral.Model, adapters: AdapterSet, max_tokens: int = 24) -> tuple[str, list[float]]:
    """Greedy completion of PROMPT with an adapter set, from a cold cache: its text and each
    token's logprob. (A prompt partly reused from the prefix cache evaluates its rest in a
    smaller batch, and llama.cpp's f32 kernels of the adapters' matrices depend on the batch:
    with an adapter, a warm run may differ slightly from a cold one.)"""
    model.clear_cache()
    done = model.complete(PROMPT, max_tokens=max_tokens, temperature=0, ignore_eos=True, logprobs=True, adapters=adapters)
    assert done.logprobs is not None and len(done.logprobs) == max_tokens
    return done.text, [entry["logprob"] for entry in done.logprobs]


def test_adapters_loaded_with_the_model(adapted: corral.Model, model_path: Path, adapter_paths: tuple[Path, Path]) -> None:
    assert adapted.adapters() == ["a", "b"]
    # os.PathLike values too; a mapping other than a dict.
    with corral.Model(model_path, adapters={"a": adapter_paths[0]}, **MODEL_OPTIONS) as one:
        assert one.adapters() == ["a"]
        assert one.complete(PROMPT, max_tokens=4, temperature=0, adapters=[{"name": "a"}]).usage.completion_tokens == 4
    with corral.Model(model_path, adapters=None, **MODEL_OPTIONS) as none:
        assert none.adapters() == []


def test_scale_zero_is_the_base_model_and_scale_one_changes_it(adapted: corral.Model) -> None:
    base = run(adapted, [])
    assert run(adapted, [{"name": "a", "scale": 0.0}]) == base, "scale 0 must be the base model exactly"
    a = run(adapted, [{"name": "a", "scale": 1.0}])
    assert a[1] != base[1], "scale 1 must change the logprobs"
    # The scale defaults to 1.
    assert run(adapted, [{"name": "a"}]) == a
    b = run(adapted, [{"name": "b", "scale": 1.0}])
    assert b[1] != a[1]
    # Back to the base model after adapters: the base output again.
    assert run(adapted, []) == base
    assert run(adapted, None) == base  # type: ignore[arg-type]


def test_every_generation_method_takes_adapters(adapted: corral.Model) -> None:
    choice = [{"name": "a", "scale": 1.0}]
    greedy: dict[str, Any] = dict(temperature=0, ignore_eos=True, adapters=choice)
    # Each from a cold cache, so that all match exactly (see `run`).
    adapted.clear_cache()
    expected = adapted.complete(PROMPT, max_tokens=6, **greedy).text
    assert expected != run(adapted, [], max_tokens=6)[0]
    adapted.clear_cache()
    assert "".join(c.text for c in adapted.complete_stream(PROMPT, max_tokens=6, **greedy)) == expected
    adapted.clear_cache()
    chat = adapted.chat(user("Hi"), max_tokens=4, **greedy)
    assert chat.usage.completion_tokens == 4
    adapted.clear_cache()
    assert "".join(c.text for c in adapted.chat_stream(user("Hi"), max_tokens=4, **greedy)) == chat.text
    adapted.clear_cache()
    with adapted.session() as session:
        assert session.complete(PROMPT, max_tokens=6, **greedy).text == expected
    adapted.clear_cache()
    with adapted.session() as session:
        assert session.chat(user("Hi"), max_tokens=4, **greedy).text == chat.text

    async def main() -> str:
        return (await adapted.complete_async(PROMPT, max_tokens=6, **greedy)).text

    adapted.clear_cache()
    assert asyncio.run(main()) == expected
    unknown = [{"name": "nope"}]
    for call in (
        lambda: adapted.complete(PROMPT, max_tokens=2, adapters=unknown),
        lambda: adapted.complete_stream(PROMPT, max_tokens=2, adapters=unknown),
        lambda: adapted.chat(user("Hi"), max_tokens=2, adapters=unknown),
        lambda: adapted.chat_stream(user("Hi"), max_tokens=2, adapters=unknown),
    ):
        with pytest.raises(corral.InvalidArgumentError, match="nope"):
            call()


def test_cached_prefixes_are_kept_per_adapter_set(adapted: corral.Model) -> None:
    adapted.clear_cache()
    assert adapted.complete(PROMPT, max_tokens=2, adapters=[]).usage.cached_tokens == 0
    # The base model's cells are not reused with an adapter, nor one set's with another.
    assert adapted.complete(PROMPT, max_tokens=2, adapters=[{"name": "a"}]).usage.cached_tokens == 0
    assert adapted.complete(PROMPT, max_tokens=2, adapters=[{"name": "a", "scale": 0.5}]).usage.cached_tokens == 0
    assert adapted.complete(PROMPT, max_tokens=2, adapters=[{"name": "a"}]).usage.cached_tokens > 0
    # Scale 0 is the base model, cache included.
    assert adapted.complete(PROMPT, max_tokens=2, adapters=[{"name": "b", "scale": 0.0}]).usage.cached_tokens > 0


def test_load_and_remove_adapters_while_serving(model_path: Path, adapter_paths: tuple[Path, Path]) -> None:
    a, b = adapter_paths
    with corral.Model(model_path, **MODEL_OPTIONS) as model:
        assert model.adapters() == []
        with pytest.raises(corral.InvalidArgumentError):
            model.complete(PROMPT, max_tokens=2, adapters=[{"name": "a"}])
        model.load_adapter("a", a)
        model.load_adapter("b", str(b))
        assert model.adapters() == ["a", "b"]
        with pytest.raises(corral.InvalidArgumentError, match="already loaded"):
            model.load_adapter("a", b)
        assert model.complete(PROMPT, max_tokens=4, temperature=0, adapters=[{"name": "a"}]).usage.completion_tokens == 4
        # A stream running with an adapter finishes with it after the adapter is removed.
        stream = model.complete_stream(PROMPT, max_tokens=8, temperature=0, ignore_eos=True, adapters=[{"name": "a"}])
        model.remove_adapter("a")
        assert stream.collect().usage.completion_tokens == 8
        assert model.adapters() == ["b"]
        with pytest.raises(corral.InvalidArgumentError):
            model.complete(PROMPT, max_tokens=2, adapters=[{"name": "a"}])
        with pytest.raises(corral.InvalidArgumentError):
            model.remove_adapter("a")
        # Loaded again under the same name, it is the same adapter.
        model.load_adapter("a", a)
        assert model.adapters() == ["a", "b"]
        model.remove_adapter("a")
        model.remove_adapter("b")
        assert model.adapters() == []
        assert model.complete(PROMPT, max_tokens=4, temperature=0).usage.completion_tokens == 4


def test_adapter_errors_are_typed_and_the_model_keeps_serving(
    adapted: corral.Model, model_path: Path, adapter_paths: tuple[Path, Path], tmp_path: Path
) -> None:
    base = run(adapted, [], max_tokens=8)
    for bad in (
        [{"name": "nope"}],
        [{"name": "a", "scale": 1000.0}],
        [{"name": "a"}, {"name": "a", "scale": 0.5}],
        [{"name": "a", "weight": 1.0}],
    ):
        with pytest.raises(corral.InvalidArgumentError):
            adapted.complete(PROMPT, max_tokens=2, adapters=bad)
    for wrong in ("a", [("a", 1.0)], [{"name": 1}], [{"name": "a", "scale": "high"}]):
        with pytest.raises(corral.InvalidArgumentTypeError):
            adapted.complete(PROMPT, max_tokens=2, adapters=wrong)  # type: ignore[arg-type]

    random = tmp_path / "random.gguf"
    random.write_bytes(bytes((i * 2654435761 >> 13) & 0xFF for i in range(4096)))
    with pytest.raises(corral.InvalidModelError):
        adapted.load_adapter("x", random)
    with pytest.raises(corral.InvalidModelError, match="not a LoRA adapter"):
        adapted.load_adapter("x", model_path)
    with pytest.raises(corral.ModelNotFoundError) as missing:
        adapted.load_adapter("x", tmp_path / "missing.gguf")
    assert isinstance(missing.value, FileNotFoundError)
    with pytest.raises(corral.InvalidArgumentError):
        adapted.load_adapter("", adapter_paths[0])
    with pytest.raises(corral.InvalidArgumentTypeError):
        adapted.load_adapter(1, adapter_paths[0])  # type: ignore[arg-type]
    with pytest.raises(corral.InvalidArgumentTypeError):
        adapted.load_adapter("x", 3)  # type: ignore[arg-type]
    with pytest.raises(corral.InvalidArgumentTypeError):
        adapted.remove_adapter(None)  # type: ignore[arg-type]
    assert adapted.adapters() == ["a", "b"]
    assert run(adapted, [], max_tokens=8) == base

    # Loading the model with a bad adapter fails the load with the same kinds.
    with pytest.raises(corral.ModelNotFoundError):
        corral.Model(model_path, adapters={"x": tmp_path / "missing.gguf"}, **MODEL_OPTIONS)
    with pytest.raises(corral.InvalidModelError):
        corral.Model(model_path, adapters={"x": random}, **MODEL_OPTIONS)
    for wrong_type in (["a"], {1: adapter_paths[0]}, {"a": 3}, "a"):
        with pytest.raises(corral.InvalidArgumentTypeError):
            corral.Model(model_path, adapters=wrong_type, **MODEL_OPTIONS)  # type: ignore[arg-type]


def test_concurrent_requests_with_different_adapters_match_their_solo_runs(adapted: corral.Model) -> None:
    # One request per adapter set: sets never share a decode, so each is bit-for-bit its solo
    # run. (Two requests with the same set do share decodes and may differ slightly.)
    sets: list[AdapterSet] = [
        [],
        [{"name": "a", "scale": 1.0}],
        [{"name": "b", "scale": 1.0}],
        [{"name": "a", "scale": 0.5}, {"name": "b", "scale": 0.5}],
    ]
    solo = [run(adapted, s, max_tokens=32) for s in sets]  # each from a cold cache
    assert len({tuple(lp) for _, lp in solo}) == len(sets)
    adapted.clear_cache()
    together: list[Any] = [None] * len(sets)
    start = threading.Barrier(len(sets))

    def work(i: int) -> None:
        start.wait()
        done = adapted.complete(PROMPT, max_tokens=32, temperature=0, ignore_eos=True, logprobs=True, adapters=sets[i])
        assert done.logprobs is not None
        together[i] = (done.text, [entry["logprob"] for entry in done.logprobs])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(sets))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert together == solo
