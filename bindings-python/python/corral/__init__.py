"""corral: run GGUF language models in-process (llama.cpp), from Python.

    import corral
    with corral.Model("model.gguf") as model:
        for chunk in model.chat_stream([{"role": "user", "content": "Hi!"}], max_tokens=64):
            print(chunk.text, end="", flush=True)

Every call into llama.cpp releases the GIL, so threads can share one model (the engine
batches their requests). The ``*_async`` methods never block the event loop: a worker thread
waits on the engine and hands results to the loop; cancelling the task, or leaving an
``async for`` early, cancels the generation.

Generation keywords (all optional; ``None`` means corral's default): max_tokens, temperature
(0 = greedy), top_k, top_p, min_p, repeat_penalty, repeat_last_n, frequency_penalty,
presence_penalty, seed, stop (str or list of str), timeout (seconds), ignore_eos, parse_special.

Logging is silent until ``enable_logging()`` bridges corral's and llama.cpp's lines into the
``logging`` loggers ``"corral"`` and ``"corral.llama_cpp"``.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import threading
from typing import TYPE_CHECKING, Any, AsyncGenerator, Generic, Mapping, Optional, Protocol, Sequence, TypeVar, Union, cast

from ._foreign import refuse_foreign_llama_cpp

refuse_foreign_llama_cpp()  # before the native module binds to whatever libllama is loaded

from . import _native
from ._native import (
    BusyError,
    CancelledError,
    Chunk,
    ClosedError,
    Completion,
    ContextOverflowError,
    CorralError,
    DeadlineExceededError,
    DecodeFailedError,
    EngineStats,
    InternalError,
    InvalidArgumentError,
    InvalidArgumentTypeError,
    InvalidGrammarError,
    InvalidModelError,
    ModelInfo,
    ModelNotFoundError,
    NoChatTemplateError,
    SpecialToken,
    Stream,
    TemplateError,
    ToolCall,
    ToolCallDelta,
    UnsupportedArchitectureError,
    Usage,
    __version__,
    default_threads,
    supports_gpu_offload,
    cpu_variant,
)

if TYPE_CHECKING:
    from typing_extensions import TypedDict, Unpack
else:
    from typing import TypedDict

__all__ = [
    "BusyError",
    "CancelledError",
    "Chunk",
    "ClosedError",
    "Completion",
    "ContextOverflowError",
    "CorralError",
    "DeadlineExceededError",
    "DecodeFailedError",
    "EngineStats",
    "GenerateOptions",
    "InternalError",
    "InvalidArgumentError",
    "InvalidArgumentTypeError",
    "InvalidGrammarError",
    "InvalidModelError",
    "Message",
    "Model",
    "ModelInfo",
    "ModelNotFoundError",
    "NoChatTemplateError",
    "Session",
    "SpecialToken",
    "Stream",
    "TemplateError",
    "ToolCall",
    "ToolCallDelta",
    "UnsupportedArchitectureError",
    "Usage",
    "__version__",
    "default_threads",
    "disable_logging",
    "enable_logging",
    "supports_gpu_offload",
    "cpu_variant",
]


class Message(TypedDict, total=False):
    """One chat message (OpenAI's shape). ``content`` may also be a list of
    ``{"type": "text", "text": ...}`` parts, or ``None`` in an assistant message with
    ``tool_calls``; a ``tool`` message answers a call through ``tool_call_id``."""

    role: str
    content: Union[str, Sequence[Mapping[str, Any]], None]
    tool_calls: Sequence[Union[Mapping[str, Any], ToolCall]]
    tool_call_id: str
    name: str


class GenerateOptions(TypedDict, total=False):
    """The keyword arguments of every generation method."""

    max_tokens: Optional[int]
    temperature: Optional[float]
    top_k: Optional[int]
    top_p: Optional[float]
    min_p: Optional[float]
    repeat_penalty: Optional[float]
    repeat_last_n: Optional[int]
    frequency_penalty: Optional[float]
    presence_penalty: Optional[float]
    seed: Optional[int]
    stop: Union[str, Sequence[str], None]
    timeout: Optional[float]
    ignore_eos: Optional[bool]
    parse_special: Optional[bool]
    grammar: Optional[str]
    response_format: Optional[Mapping[str, Any]]
    logprobs: Optional[bool]
    top_logprobs: Optional[int]
    tools: Optional[Sequence[Mapping[str, Any]]]
    tool_choice: Union[str, Mapping[str, Any], None]
    template: Optional[str]


_Messages = Sequence[Mapping[str, Any]]


_Prompt = TypeVar("_Prompt")
_PromptIn = TypeVar("_PromptIn", contravariant=True)


class _Streams(Protocol[_PromptIn]):
    """What the ``*_async`` methods build on: the native streaming methods."""

    def complete_stream(self, prompt: _PromptIn, **options: Unpack[GenerateOptions]) -> Stream: ...

    def chat_stream(self, messages: _Messages, **options: Unpack[GenerateOptions]) -> Stream: ...


class _AsyncMethods(Generic[_Prompt]):
    """The ``*_async`` methods of ``Model`` (prompt: text or token ids) and ``Session`` (text)."""

    __slots__ = ()

    async def complete_async(self: _Streams[_Prompt], prompt: _Prompt, **options: Unpack[GenerateOptions]) -> Completion:
        """``complete`` without blocking the event loop; cancelling the task cancels generation."""
        return await _collect(self.complete_stream(prompt, **options))

    async def chat_async(self: _Streams[_Prompt], messages: _Messages, **options: Unpack[GenerateOptions]) -> Completion:
        """``chat`` without blocking the event loop; cancelling the task cancels generation."""
        return await _collect(self.chat_stream(messages, **options))

    def complete_stream_async(
        self: _Streams[_Prompt], prompt: _Prompt, **options: Unpack[GenerateOptions]
    ) -> AsyncGenerator[Chunk, None]:
        """An async iterator of Chunks. Arguments are checked, and generation starts, at the call."""
        return _iterate(self.complete_stream(prompt, **options))

    def chat_stream_async(
        self: _Streams[_Prompt], messages: _Messages, **options: Unpack[GenerateOptions]
    ) -> AsyncGenerator[Chunk, None]:
        """An async iterator of Chunks. Arguments are checked, and generation starts, at the call."""
        return _iterate(self.chat_stream(messages, **options))


class Model(_native.Model, _AsyncMethods[Union[str, Sequence[int]]]):
    """A loaded GGUF model.

    ``Model(path, *, context_length=None, threads=None, gpu_layers=None, use_mmap=None,
    use_mlock=None, max_sequences=None, batch_size=None, flash_attention=None,
    chat_template=None, on_progress=None)``; ``None`` takes corral's default.
    ``on_progress(fraction)`` is called while loading; returning ``False`` (or raising)
    cancels loading with ``CancelledError``. Use it as a context manager, or call ``close()``.
    """

    __slots__ = ()

    def session(self) -> Session:
        """A conversation that keeps its KV cache between calls."""
        return Session(self)


class Session(_native.Session, _AsyncMethods[str]):
    """A conversation bound to one engine sequence: each call passes the whole prompt or
    message list, and what it shares with the previous call is reused from the KV cache
    (``usage.cached_tokens``). ``close()`` it, or use it as a context manager."""

    __slots__ = ()


# asyncio: one worker thread per request waits on the engine (GIL released) and hands its
# results to the event loop with call_soon_threadsafe. Own threads rather than the default
# executor, so long generations never starve other run_in_executor users.

class _Failure:
    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()


def _post(loop: asyncio.AbstractEventLoop, deliver: Any, item: object) -> bool:
    """Hands `item` to the loop; False once the loop is closed (nobody is waiting any more)."""
    try:
        loop.call_soon_threadsafe(deliver, item)
    except RuntimeError:
        return False
    return True


async def _collect(stream: Stream) -> Completion:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Completion] = loop.create_future()

    def settle(outcome: object) -> None:
        if future.done():  # the awaiting task was cancelled
            return
        if isinstance(outcome, _Failure):
            future.set_exception(outcome.error)
        else:
            future.set_result(cast(Completion, outcome))

    def work() -> None:
        outcome: object
        try:
            outcome = stream.collect()
        except BaseException as error:  # handed to the awaiting task
            outcome = _Failure(error)
        _post(loop, settle, outcome)

    threading.Thread(target=work, name="corral-async", daemon=True).start()
    try:
        return await future
    except BaseException:
        stream.cancel()
        raise


async def _iterate(stream: Stream) -> AsyncGenerator[Chunk, None]:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[object] = asyncio.Queue()

    def pump() -> None:
        last: object = _END
        try:
            for chunk in stream:
                if not _post(loop, queue.put_nowait, chunk):
                    stream.cancel()
                    return
        except BaseException as error:  # handed to the iterating task
            last = _Failure(error)
        _post(loop, queue.put_nowait, last)

    threading.Thread(target=pump, name="corral-async-stream", daemon=True).start()
    try:
        while True:
            item = await queue.get()
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield cast(Chunk, item)
    finally:
        # Task cancelled, `async for` left early, or aclose(): stop generating.
        # A no-op when the stream already finished.
        stream.cancel()


# Logging bridge.

_logger = logging.getLogger("corral")
_llama_logger = logging.getLogger("corral.llama_cpp")
_bridge_lock = threading.Lock()
_bridge_installed = False


def _emit(level: int, source: str, message: str) -> None:
    (_llama_logger if source == "llama.cpp" else _logger).log(level, message)


def enable_logging(level: Optional[int] = None) -> None:
    """Forwards corral's and llama.cpp's log lines at ``level`` and above (a ``logging`` level;
    default: the ``"corral"`` logger's effective level) to the loggers ``"corral"`` and
    ``"corral.llama_cpp"``. Lines are delivered by a background thread, shortly after they are
    logged; ``disable_logging()`` delivers what is pending. Replaces the ``CORRAL_LOG`` stderr
    logger. Configure handlers and levels with ``logging`` as usual."""
    global _bridge_installed
    with _bridge_lock:
        _native.set_log_handler(_emit, _logger.getEffectiveLevel() if level is None else level)
        _bridge_installed = True


def disable_logging() -> None:
    """Stops forwarding log lines (after delivering the pending ones). Idempotent."""
    global _bridge_installed
    with _bridge_lock:
        if _bridge_installed:
            _native.set_log_handler(None)
            _bridge_installed = False


# Stop the forwarder thread while the interpreter can still run its handler.
atexit.register(disable_logging)
