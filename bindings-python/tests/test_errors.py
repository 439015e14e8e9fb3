"""Bad inputs raise the exact corral exception (which also is the expected builtin); nothing crashes."""

import math
from pathlib import Path
from typing import Any

import pytest

import corral
from conftest import user


@pytest.mark.parametrize(
    ("kind", "code", "builtin"),
    [
        (corral.ModelNotFoundError, "model_not_found", FileNotFoundError),
        (corral.InvalidModelError, "invalid_model", ValueError),
        (corral.UnsupportedArchitectureError, "unsupported_architecture", ValueError),
        (corral.InvalidArgumentError, "invalid_argument", ValueError),
        (corral.InvalidArgumentTypeError, "invalid_argument", TypeError),
        (corral.ContextOverflowError, "context_overflow", ValueError),
        (corral.CancelledError, "cancelled", Exception),
        (corral.DecodeFailedError, "decode_failed", RuntimeError),
        (corral.NoChatTemplateError, "no_chat_template", ValueError),
        (corral.TemplateError, "template_error", ValueError),
        (corral.ClosedError, "closed", RuntimeError),
        (corral.BusyError, "busy", RuntimeError),
        (corral.DeadlineExceededError, "deadline_exceeded", TimeoutError),
        (corral.InvalidGrammarError, "invalid_grammar", ValueError),
        (corral.InternalError, "internal", RuntimeError),
        (corral.WorkerUnavailableError, "worker_unavailable", ConnectionError),
    ],
)
def test_exception_hierarchy(kind: type, code: str, builtin: type) -> None:
    assert issubclass(kind, corral.CorralError) and issubclass(kind, builtin)
    assert kind.code == code
    assert kind.__module__ == "corral"
    import asyncio

    assert not issubclass(corral.CancelledError, asyncio.CancelledError)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(corral.ModelNotFoundError) as raised:
        corral.Model(tmp_path / "nope.gguf")
    assert isinstance(raised.value, FileNotFoundError)
    assert raised.value.code == "model_not_found"
    assert "nope.gguf" in str(raised.value)


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(corral.ModelNotFoundError):
        corral.Model(tmp_path)


@pytest.mark.parametrize("content", [b"", b"not a model at all" * 100, b"GGUF\x03\x00\x00\x00" + b"\xff" * 64])
def test_garbage_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "garbage.gguf"
    path.write_bytes(content)
    with pytest.raises(corral.InvalidModelError):
        corral.Model(path)


def test_wrong_path_type() -> None:
    with pytest.raises(corral.InvalidArgumentTypeError):
        corral.Model(123)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "options",
    [dict(threads=0), dict(context_length=0), dict(context_length=-1), dict(max_sequences=0), dict(batch_size=-5), dict(gpu_layers=-1)],
)
def test_bad_model_options(model_path: Path, options: dict[str, Any]) -> None:
    with pytest.raises(corral.InvalidArgumentError):
        corral.Model(model_path, **options)


@pytest.mark.parametrize(
    "options",
    [dict(threads="2"), dict(context_length=1.5), dict(use_mmap="yes"), dict(flash_attention=1), dict(chat_template=b"x")],
)
def test_wrong_model_option_types(model_path: Path, options: dict[str, Any]) -> None:
    with pytest.raises(corral.InvalidArgumentTypeError):
        corral.Model(model_path, **options)


@pytest.mark.parametrize(
    "options",
    [
        dict(max_tokens="x"),
        dict(max_tokens=1.5),
        dict(max_tokens=True),
        dict(temperature="hot"),
        dict(stop=5),
        dict(stop=["ok", 5]),
        dict(seed="1"),
        dict(ignore_eos=1),
        dict(timeout="1s"),
        dict(max_token=5),  # misspelt keyword
    ],
)
def test_wrong_generation_types(model: corral.Model, options: dict[str, Any]) -> None:
    with pytest.raises(corral.InvalidArgumentTypeError) as raised:
        model.complete("Hi", **options)
    assert isinstance(raised.value, TypeError) and isinstance(raised.value, corral.InvalidArgumentError)


@pytest.mark.parametrize(
    "options",
    [
        dict(max_tokens=-1),
        dict(max_tokens=2**40),
        dict(temperature=math.nan),
        dict(temperature=-0.5),
        dict(temperature=1e300),
        dict(top_p=1.5),
        dict(top_p=0.0),
        dict(min_p=-0.1),
        dict(repeat_penalty=0.0),
        dict(stop=""),
        dict(stop=["ok", ""]),
        dict(seed=-1),
        dict(top_k=-3),
        dict(timeout=0),
        dict(timeout=-1.0),
        dict(timeout=math.inf),
    ],
)
def test_out_of_range_generation_options(model: corral.Model, options: dict[str, Any]) -> None:
    with pytest.raises(corral.InvalidArgumentError) as raised:
        model.complete("Hi", **options)
    assert not isinstance(raised.value, TypeError)
    with pytest.raises(corral.InvalidArgumentError):
        model.chat_stream(user("Hi"), **options)


@pytest.mark.parametrize(
    "messages",
    [
        "Hi",
        b"Hi",
        {"role": "user", "content": "Hi"},
        [("user", "Hi")],
        ["Hi"],
        [{"role": 1, "content": "Hi"}],
        [{"role": "user", "content": 5}],
        [{"role": "user", "content": [{"type": "text", "text": 5}]}],
        None,
        42,
    ],
)
def test_wrong_message_types(model: corral.Model, messages: Any) -> None:
    with pytest.raises(corral.InvalidArgumentTypeError):
        model.chat(messages)
    with pytest.raises(corral.InvalidArgumentTypeError):
        model.apply_chat_template(messages)


@pytest.mark.parametrize(
    "messages",
    [
        [{"content": "Hi"}],
        [{"role": "user"}],
        [{"role": "", "content": "Hi"}],
        [{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}],
    ],
)
def test_malformed_messages(model: corral.Model, messages: Any) -> None:
    with pytest.raises(corral.InvalidArgumentError):
        model.chat(messages)


@pytest.mark.parametrize("prompt", [None, 42, b"Hi", {"text": "Hi"}, [1, "2"], [1.5]])
def test_wrong_prompt_types(model: corral.Model, prompt: Any) -> None:
    with pytest.raises(corral.InvalidArgumentTypeError):
        model.complete(prompt)
    with model.session() as session, pytest.raises(corral.InvalidArgumentTypeError):
        session.complete(prompt)


def test_bad_token_ids(model: corral.Model) -> None:
    with pytest.raises(corral.InvalidArgumentError):
        model.detokenize([-1])
    with pytest.raises(corral.InvalidArgumentError):
        model.detokenize([10**12])
    with pytest.raises(corral.InvalidArgumentError):
        model.complete([model.info.vocab_size + 5])
    with pytest.raises(corral.InvalidArgumentError):
        model.score([1])
    with pytest.raises(corral.InvalidArgumentTypeError):
        model.detokenize("abc")  # type: ignore[arg-type]
    with pytest.raises(corral.InvalidArgumentTypeError):
        model.tokenize(b"abc")  # type: ignore[arg-type]


def test_empty_prompt(model: corral.Model) -> None:
    with pytest.raises(corral.InvalidArgumentError):
        model.complete([])


def test_prompt_longer_than_context(model: corral.Model) -> None:
    prompt = "hello " * (model.info.context_length + 10)
    with pytest.raises(corral.ContextOverflowError) as raised:
        model.complete(prompt, max_tokens=1)
    assert isinstance(raised.value, ValueError)
    with pytest.raises(corral.ContextOverflowError):
        model.chat(user(prompt), max_tokens=1)
    # The model still works afterwards.
    assert model.complete("Hi", max_tokens=1).usage.completion_tokens == 1


def test_template_errors(model_path: Path) -> None:
    with pytest.raises(corral.TemplateError):
        corral.Model(model_path, context_length=64, threads=1, chat_template="{% for %}")
    raising = "{{ raise_exception('roles must alternate') }}"
    with corral.Model(model_path, context_length=64, threads=1, chat_template=raising) as model:
        with pytest.raises(corral.TemplateError, match="roles must alternate"):
            model.chat(user("Hi"))


def test_timeout(model: corral.Model) -> None:
    with pytest.raises(corral.DeadlineExceededError) as raised:
        model.complete("Once upon a time", max_tokens=2000, ignore_eos=True, timeout=0.2)
    assert isinstance(raised.value, TimeoutError)


def test_use_after_close(model_path: Path) -> None:
    model = corral.Model(model_path, context_length=256, threads=1)
    session = model.session()
    stream = model.complete_stream("Once upon a time", max_tokens=2000, ignore_eos=True)
    next(stream)
    model.close()
    model.close()  # idempotent
    assert model.closed
    assert "closed" in repr(model)
    with pytest.raises(corral.ClosedError):
        list(stream)
    calls = [
        lambda: model.info,
        lambda: model.complete("Hi"),
        lambda: model.complete_stream("Hi"),
        lambda: model.chat(user("Hi")),
        lambda: model.chat_stream(user("Hi")),
        lambda: model.tokenize("Hi"),
        lambda: model.detokenize([1]),
        lambda: model.score([1, 2]),
        lambda: model.apply_chat_template(user("Hi")),
        lambda: model.session(),
        lambda: session.chat(user("Hi")),
        lambda: session.complete("Hi"),
    ]
    for call in calls:
        with pytest.raises(corral.ClosedError) as raised:
            call()
        assert isinstance(raised.value, RuntimeError) and raised.value.code == "closed"
    session.close()


def test_session_use_after_close(model: corral.Model) -> None:
    with model.session() as session:
        session.complete("Hi", max_tokens=1)
    assert session.closed
    with pytest.raises(corral.ClosedError):
        session.complete("Hi", max_tokens=1)
    with pytest.raises(corral.ClosedError):
        session.chat_stream(user("Hi"))


def test_progress_callback(model_path: Path) -> None:
    seen: list[float] = []
    with corral.Model(model_path, context_length=64, threads=1, on_progress=seen.append):
        pass
    assert seen and seen[-1] == 1.0 and seen == sorted(seen)


def test_progress_callback_returning_false_cancels(model_path: Path) -> None:
    with pytest.raises(corral.CancelledError) as raised:
        corral.Model(model_path, context_length=64, threads=1, on_progress=lambda p: p < 0.5)
    assert raised.value.code == "cancelled"


def test_progress_callback_raising_cancels(model_path: Path) -> None:
    def explode(progress: float) -> None:
        raise ZeroDivisionError("boom")

    with pytest.raises(corral.CancelledError) as raised:
        corral.Model(model_path, context_length=64, threads=1, on_progress=explode)
    assert isinstance(raised.value.__cause__, ZeroDivisionError)
    assert "boom" in str(raised.value)


def test_progress_callback_must_be_callable(model_path: Path) -> None:
    with pytest.raises(corral.InvalidArgumentTypeError):
        corral.Model(model_path, on_progress=5)  # type: ignore[arg-type]


def _with_scalar(model_path: Path, key: str, fmt: str, value: Any, out: Path) -> Path:
    """A copy of the model with one scalar metadata value replaced (same type, so nothing moves)."""
    import struct

    data = bytearray(model_path.read_bytes())
    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
    pos = 16
    (count,) = struct.unpack_from("<Q", data, pos)
    pos += 8

    def skip(pos: int, kind: int) -> int:
        if kind == 8:
            (n,) = struct.unpack_from("<Q", data, pos)
            return pos + 8 + n
        return pos + sizes[kind]

    for _ in range(count):
        (n,) = struct.unpack_from("<Q", data, pos)
        name = data[pos + 8 : pos + 8 + n].decode()
        pos += 8 + n
        (kind,) = struct.unpack_from("<I", data, pos)
        pos += 4
        if name == key:
            struct.pack_into(fmt, data, pos, value)
            out.write_bytes(bytes(data))
            return out
        if kind == 9:
            item, items = struct.unpack_from("<IQ", data, pos)
            pos += 12
            for _ in range(items):
                pos = skip(pos, item)
        else:
            pos = skip(pos, kind)
    raise KeyError(key)


@pytest.mark.parametrize(
    ("key", "fmt", "value"),
    [
        ("llama.block_count", "<I", 0),
        ("llama.block_count", "<I", 100000),
        ("llama.attention.layer_norm_rms_epsilon", "<f", -1.0),
        ("llama.attention.layer_norm_rms_epsilon", "<f", math.nan),
        ("llama.attention.head_count_kv", "<I", 2),
    ],
)
def test_hostile_metadata_is_refused_and_the_host_keeps_working(
    model: corral.Model, model_path: Path, tmp_path: Path, key: str, fmt: str, value: Any
) -> None:
    hostile = _with_scalar(model_path, key, fmt, value, tmp_path / "hostile.gguf")
    with pytest.raises(corral.InvalidModelError) as raised:
        corral.Model(hostile)
    assert key in str(raised.value)
    assert model.complete("The capital of France is", max_tokens=2, temperature=0).usage.completion_tokens == 2


@pytest.mark.parametrize(
    "template",
    [
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "{% set ns = namespace(s='ab') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
        "{% set ns = namespace(l=[1]) %}{% for i in range(40) %}{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l|length }}",
        "{% for i in range(10000) %}{% for j in range(10000) %}xxxxxxxxxxxxxxxx{% endfor %}{% endfor %}",
    ],
)
def test_hostile_templates_fail_fast_and_the_session_keeps_its_cache(model: corral.Model, template: str) -> None:
    import time

    with model.session() as session:
        first = user("Say hi.")
        reply = session.chat(first, max_tokens=2, temperature=0)
        started = time.monotonic()
        with pytest.raises(corral.TemplateError):
            model.apply_chat_template(first, template=template)
        assert time.monotonic() - started < 5
        again = session.chat([*first, reply.message(), *user("Again.")], max_tokens=2, temperature=0)
        assert again.usage.cached_tokens > 0
