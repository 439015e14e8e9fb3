"""Threads sharing one model, asyncio without blocking the loop, cancellation and Ctrl-C."""

import _thread
import asyncio
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import pytest

import corral
from conftest import user

QUESTIONS = ["What is 2+2?", "Name a color.", "Say hello.", "What is the capital of Italy?"]


def test_threads_share_one_model(model: corral.Model) -> None:
    def ask(question: str) -> corral.Completion:
        return model.chat(user(question), max_tokens=12, temperature=0)

    def tokenize(_: int) -> list[int]:
        return model.tokenize("the quick brown fox " * 50)

    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(ask, QUESTIONS * 2))
        token_lists = list(pool.map(tokenize, range(20)))
    assert all(a.text and a.finish_reason in ("stop", "length") for a in answers)
    assert all(t == token_lists[0] for t in token_lists)


def test_threads_stream_concurrently(model: corral.Model) -> None:
    results: dict[int, str] = {}

    def stream(i: int) -> None:
        results[i] = "".join(c.text for c in model.complete_stream(f"List {i}:", max_tokens=10, ignore_eos=True))

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(results) == [0, 1, 2, 3] and all(results.values())


def test_generation_releases_the_gil(model: corral.Model) -> None:
    # A pure-Python thread keeps running while the main thread generates.
    counter = 0
    done = threading.Event()

    def spin() -> None:
        nonlocal counter
        while not done.is_set():
            counter += 1

    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        before = counter
        model.complete("Hi", max_tokens=20, ignore_eos=True)
        during = counter - before
    finally:
        done.set()
        spinner.join()
    assert during > 1000


def test_async_never_blocks_the_event_loop(model: corral.Model) -> None:
    async def main() -> float:
        gaps: list[float] = []
        running = True

        async def ticker() -> None:
            last = time.perf_counter()
            while running:
                await asyncio.sleep(0.01)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        tick = asyncio.create_task(ticker())
        await asyncio.sleep(0.05)
        out = await model.complete_async("Once upon a time", max_tokens=48, ignore_eos=True)
        assert out.usage.completion_tokens == 48
        texts = [chunk.text async for chunk in model.chat_stream_async(user("Tell me a story."), max_tokens=48)]
        assert texts
        running = False
        await tick
        return max(gaps)

    assert asyncio.run(main()) < 0.1


def test_async_gather(model: corral.Model) -> None:
    async def main() -> list[corral.Completion]:
        return await asyncio.gather(*(model.chat_async(user(q), max_tokens=12, temperature=0) for q in QUESTIONS))

    answers = asyncio.run(main())
    sync = [model.chat(user(q), max_tokens=12, temperature=0) for q in QUESTIONS]
    assert [a.finish_reason for a in answers] == [s.finish_reason for s in sync]
    assert all(a.text for a in answers)


def test_async_stream_matches_sync(model: corral.Model) -> None:
    async def main() -> list[corral.Chunk]:
        return [c async for c in model.complete_stream_async("The capital of France is", max_tokens=8, temperature=0)]

    chunks = asyncio.run(main())
    whole = model.complete("The capital of France is", max_tokens=8, temperature=0)
    assert "".join(c.text for c in chunks) == whole.text
    assert chunks[-1].finish_reason == "length" and chunks[-1].usage is not None


def test_async_errors_are_raised_in_the_task(model: corral.Model) -> None:
    async def main() -> None:
        with pytest.raises(corral.ContextOverflowError):
            await model.complete_async("hello " * 5000)
        with pytest.raises(corral.InvalidArgumentError):
            model.chat_stream_async(user("Hi"), top_p=2.0)
        with pytest.raises(corral.DeadlineExceededError):
            async for _ in model.complete_stream_async("Hi", max_tokens=5000, ignore_eos=True, timeout=0.2):
                pass

    asyncio.run(main())


def _model_is_idle(model: corral.Model) -> bool:
    # With the other requests cancelled, a 1-token request is answered at once.
    started = time.perf_counter()
    model.complete("Hi", max_tokens=1)
    return time.perf_counter() - started < 5


def test_cancelling_an_async_task_cancels_generation(model: corral.Model) -> None:
    async def main() -> None:
        task = asyncio.create_task(model.complete_async("Once upon a time", max_tokens=4000, ignore_eos=True))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

        stream_task = asyncio.create_task(_consume(model))
        await asyncio.sleep(0.3)
        stream_task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stream_task

    async def _consume(model: corral.Model) -> None:
        async for _ in model.complete_stream_async("Once upon a time", max_tokens=4000, ignore_eos=True):
            pass

    started = time.perf_counter()
    asyncio.run(main())
    assert time.perf_counter() - started < 10
    assert _model_is_idle(model)


def test_breaking_out_of_async_for_cancels(model: corral.Model) -> None:
    async def main() -> float:
        stream = model.complete_stream_async("Once upon a time", max_tokens=4000, ignore_eos=True)
        async for _ in stream:
            break
        started = time.perf_counter()
        await stream.aclose()
        return time.perf_counter() - started

    assert asyncio.run(main()) < 2
    assert _model_is_idle(model)


@pytest.fixture(autouse=True)
def _python_handles_sigint() -> Iterator[None]:
    """Ctrl-C reaches Python as KeyboardInterrupt however the suite was started: a shell starts
    background jobs with SIGINT ignored, and Python then keeps it ignored."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _interrupt_later(delay: float, how: str) -> threading.Timer:
    action = _thread.interrupt_main if how == "interrupt_main" else (lambda: signal.raise_signal(signal.SIGINT))
    timer = threading.Timer(delay, action)
    timer.start()
    return timer


@pytest.mark.parametrize("how", ["interrupt_main", "raise_signal"])
def test_ctrl_c_interrupts_a_blocking_completion(model: corral.Model, how: str) -> None:
    timer = _interrupt_later(0.3, how)
    started = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        model.complete("Once upon a time", max_tokens=4000, ignore_eos=True)
    timer.join()
    assert time.perf_counter() - started < 5
    assert _model_is_idle(model)


def test_ctrl_c_interrupts_and_cancels_a_stream(model: corral.Model) -> None:
    stream = model.complete_stream("Once upon a time", max_tokens=4000, ignore_eos=True)
    timer = _interrupt_later(0.3, "interrupt_main")
    with pytest.raises(KeyboardInterrupt):
        with stream:
            for _ in stream:
                pass
    timer.join()
    assert stream.cancelled
    rest = list(stream)
    assert not rest or rest[-1].finish_reason == "cancelled"
    assert _model_is_idle(model)


def test_ctrl_c_while_waiting_for_a_slow_first_token(model: corral.Model) -> None:
    # Nothing arrives for a while (a long prompt is being evaluated): the 50 ms polls still see Ctrl-C.
    prompt = "word " * 1500
    timer = _interrupt_later(0.1, "interrupt_main")
    with pytest.raises(KeyboardInterrupt):
        model.complete(prompt, max_tokens=1)
    timer.join()
