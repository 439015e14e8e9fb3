"""Sessions keep their KV cache; opening and closing many does not leak."""

import gc
from pathlib import Path
from typing import Callable

import corral
from conftest import user


def test_second_turn_reuses_the_cache(model: corral.Model) -> None:
    with model.session() as session:
        messages = user("What is 2+2?")
        first = session.chat(messages, max_tokens=16, temperature=0)
        assert first.text
        messages += [{"role": "assistant", "content": first.text}, {"role": "user", "content": "And 3+3?"}]
        second = session.chat(messages, max_tokens=16, temperature=0)
        assert second.usage.cached_tokens > 0
        assert second.usage.cached_tokens >= first.usage.prompt_tokens - 1
        assert second.usage.prompt_tokens > first.usage.prompt_tokens


def test_session_completion_and_streams(model: corral.Model) -> None:
    with model.session() as session:
        text = "The history of computing is a story of people, ideas and machines."
        first = session.complete(text, max_tokens=4, temperature=0)
        chunks = list(session.complete_stream(text + first.text, max_tokens=4, temperature=0))
        assert chunks[-1].usage is not None and chunks[-1].usage.cached_tokens > 0
        chat_chunks = list(session.chat_stream(user("Hi"), max_tokens=4))
        assert chat_chunks[-1].finish_reason is not None


def test_session_constructor_and_repr(model: corral.Model) -> None:
    session = corral.Session(model)
    assert isinstance(session, corral.Session) and isinstance(model.session(), corral.Session)
    assert "Session" in repr(session)
    session.close()
    session.close()
    assert session.closed


def _rss_kb() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _rss_growth_kb(cycle: Callable[[int], None], warm_up: int, measured: int) -> int:
    """How much RSS grows over `measured` cycles, after `warm_up` cycles (allocators, caches)."""
    cycle(warm_up)
    gc.collect()
    before = _rss_kb()
    cycle(measured)
    gc.collect()
    return _rss_kb() - before


def test_many_sessions_do_not_leak(model_path: Path) -> None:
    with corral.Model(model_path, context_length=512, threads=1) as model:

        def cycle(n: int) -> None:
            for i in range(n):
                with model.session() as session:
                    session.complete(f"Session {i} says", max_tokens=1)

        grown_kb = _rss_growth_kb(cycle, 20, 200)
    assert grown_kb < 8 * 1024, f"RSS grew by {grown_kb} kB over 200 sessions"


def test_models_load_and_close_without_leaking(model_path: Path) -> None:
    def cycle(n: int) -> None:
        for _ in range(n):
            with corral.Model(model_path, context_length=128, threads=1) as model:
                model.complete("Hi", max_tokens=1)

    grown_kb = _rss_growth_kb(cycle, 3, 10)
    assert grown_kb < 16 * 1024, f"RSS grew by {grown_kb} kB over 10 loads"
