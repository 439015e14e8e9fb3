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
presence_penalty, seed, stop (str or list of str), timeout (seconds), ignore_eos, parse_special,
adapters (``[{"name": ..., "scale": 1.0}]``: LoRA adapters loaded on the model).

Logging is silent until ``enable_logging()`` bridges corral's and llama.cpp's lines into the
``logging`` loggers ``"corral"`` and ``"corral.llama_cpp"``.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
from typing import TYPE_CHECKING, Any, AsyncGenerator, Callable, Dict, Generic, List, Mapping, Optional, Protocol, Sequence, TypeVar, Union, cast

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
    InsufficientMemoryError,
    InvalidStateError,
    MemoryEstimate,
    ModelInfo,
    ModelNotFoundError,
    NoChatTemplateError,
    SpecialToken,
    Stream,
    TemplateError,
    ToolCall,
    ToolCallDelta,
    UnsupportedArchitectureError,
    UnsupportedError,
    Usage,
    WorkerUnavailableError,
    CancelToken,
    __version__,
    default_threads,
    estimate_memory,
    serve_rpc,
    supports_gpu_offload,
    cpu_variant,
)

if TYPE_CHECKING:
    from typing_extensions import TypedDict, Unpack
else:
    from typing import TypedDict

# A literal list: the form every type checker reads (pyright ignores a computed one, and then
# reports the names imported above as private).
__all__ = [
    "BusyError",
    "CancelToken",
    "CancelledError",
    "Chunk",
    "ClosedError",
    "Completion",
    "ContextOverflowError",
    "CorralError",
    "DeadlineExceededError",
    "DecodeFailedError",
    "Embeddings",
    "EngineStats",
    "GenerateOptions",
    "InternalError",
    "InvalidArgumentError",
    "InvalidArgumentTypeError",
    "InvalidGrammarError",
    "InvalidModelError",
    "InsufficientMemoryError",
    "InvalidStateError",
    "MemoryEstimate",
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
    "UnsupportedError",
    "Usage",
    "WorkerUnavailableError",
    "__version__",
    "default_threads",
    "disable_logging",
    "enable_logging",
    "estimate_memory",
    "serve_rpc",
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
    reasoning_budget: Optional[int]
    adapters: Optional[Sequence[Mapping[str, Any]]]


class EmbedOptions(TypedDict, total=False):
    """The keyword arguments of ``Model.embed`` (besides ``output``)."""

    normalize: Optional[bool]
    truncate: Optional[bool]
    pooling: Optional[str]
    timeout: Optional[float]


class RerankOptions(TypedDict, total=False):
    """The keyword arguments of ``Model.rerank``."""

    top_n: Optional[int]
    truncate: Optional[bool]
    timeout: Optional[float]


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


class Embeddings(List[List[float]]):
    """One vector (a list of floats) per text, in the order of the texts.

    ``prompt_tokens``: tokens evaluated; ``dimensions``: length of each vector;
    ``to_openai()``: OpenAI's embeddings response; ``to_numpy()``: an ``(n, dimensions)``
    float32 array (needs numpy).
    """

    def __init__(self, native: _native.NativeEmbeddings) -> None:
        super().__init__(native.vectors())
        self._native = native
        self.prompt_tokens: int = native.prompt_tokens
        self.dimensions: int = native.dimensions

    def to_openai(self) -> Dict[str, Any]:
        """``{"object": "list", "data": [{"object": "embedding", "index", "embedding"}],
        "model", "usage": {"prompt_tokens", "total_tokens"}}``."""
        return self._native.to_openai()

    def to_numpy(self) -> Any:
        """The vectors as an ``(n, dimensions)`` float32 numpy array."""
        import numpy

        return numpy.frombuffer(self._native.to_bytes(), dtype=numpy.float32).reshape(len(self), self.dimensions)


class Model(_native.Model, _AsyncMethods[Union[str, Sequence[int]]]):
    """A loaded GGUF model.

    ``Model(path, *, context_length=None, threads=None, gpu_layers=None, use_mmap=None,
    use_mlock=None, max_sequences=None, batch_size=None, flash_attention=None,
    rpc_servers=None, rpc_split=None, chat_template=None, adapters=None, on_progress=None)``;
    ``None`` takes corral's default.
    ``context_length="auto"`` takes the largest context that fits in the memory available to
    the process (up to the trained one); options that cannot fit raise
    ``InsufficientMemoryError`` before anything is allocated (``estimate_memory`` tells).
    ``on_progress(fraction)`` is called while loading; returning ``False`` (or raising)
    cancels loading with ``CancelledError``. Use it as a context manager, or call ``close()``.

    RPC workers: ``rpc_servers=["host:port", ...]`` spreads the layers over processes running
    ``python -m corral rpc-server`` (or ``serve_rpc()``) and this one, in shares given by
    ``rpc_split`` (one weight per worker, then this process's; default equal). A worker that is
    down or refuses raises ``WorkerUnavailableError`` (a ``ConnectionError``); one lost while
    the model runs fails every request on the model with it, until it is closed and loaded
    again. The protocol has no authentication: private networks only.

    LoRA adapters: ``adapters={name: path}`` loads them with the model; ``load_adapter(name,
    path)`` and ``remove_adapter(name)`` change them later, ``adapters()`` lists their names.
    A request applies them with the generation keyword
    ``adapters=[{"name": name, "scale": 1.0}, ...]`` (scale defaults to 1; none: the base
    model). An unknown name raises ``InvalidArgumentError``, a file that is not a LoRA adapter
    of this model ``InvalidModelError``, a missing file ``ModelNotFoundError``.
    """

    __slots__ = ()

    def session(self, state: Optional[bytes] = None) -> Session:
        """A conversation that keeps its KV cache between calls; with ``state`` (from
        ``Session.state()``, in this process or another), one that continues a saved session:
        its next call evaluates only what is new. A state from another model or configuration,
        or a damaged one, raises ``InvalidStateError``."""
        return Session(self, state)

    def load_session(self, path: Union[str, os.PathLike[str]]) -> Session:
        """``session(state=...)`` with the state ``Session.save(path)`` wrote."""
        with open(path, "rb") as f:
            return Session(self, f.read())

    def embed(
        self,
        texts: Union[str, Sequence[str]],
        *,
        output: str = "list",
        cancel: Optional[CancelToken] = None,
        **options: Unpack[EmbedOptions],
    ) -> Any:
        """One vector per text (a str, or a list of str), batched with every other call on
        this model. Returns ``Embeddings`` (a list of lists of floats), or with
        ``output="numpy"`` an ``(n, dimensions)`` float32 array. Keywords: ``normalize=True``
        (unit length), ``truncate=False`` (cut over-long texts instead of raising
        ``ContextOverflowError``), ``pooling`` (``"mean"``, ``"cls"``, ``"last"``; default the
        model's own, mean for chat models), ``timeout`` (seconds), ``cancel`` (a
        ``CancelToken``). An empty list gives an empty result; an empty string raises
        ``InvalidArgumentError``."""
        if output not in ("list", "numpy"):
            raise InvalidArgumentError(f'output must be "list" or "numpy", got {output!r}')
        embeddings = Embeddings(super().embed(texts, cancel=cancel, **options))
        return embeddings.to_numpy() if output == "numpy" else embeddings

    async def embed_async(
        self, texts: Union[str, Sequence[str]], *, output: str = "list", **options: Unpack[EmbedOptions]
    ) -> Any:
        """``embed`` without blocking the event loop; cancelling the task cancels the call."""
        token = CancelToken()
        return await _in_thread(lambda: self.embed(texts, output=output, cancel=token, **options), token.cancel)

    async def rerank_async(
        self, query: str, documents: Sequence[str], **options: Unpack[RerankOptions]
    ) -> List[Dict[str, Any]]:
        """``rerank`` without blocking the event loop; cancelling the task cancels the call."""
        token = CancelToken()
        return await _in_thread(lambda: self.rerank(query, documents, cancel=token, **options), token.cancel)


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


_T = TypeVar("_T")


async def _in_thread(call: Callable[[], _T], cancel: Callable[[], None]) -> _T:
    """Runs a blocking call on its own thread; cancelling the awaiting task calls ``cancel``."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[_T] = loop.create_future()

    def settle(outcome: object) -> None:
        if future.done():  # the awaiting task was cancelled
            return
        if isinstance(outcome, _Failure):
            future.set_exception(outcome.error)
        else:
            future.set_result(cast(_T, outcome))

    def work() -> None:
        outcome: object
        try:
            outcome = call()
        except BaseException as error:  # handed to the awaiting task
            outcome = _Failure(error)
        _post(loop, settle, outcome)

    threading.Thread(target=work, name="corral-async", daemon=True).start()
    try:
        return await future
    except BaseException:
        cancel()
        raise


async def _collect(stream: Stream) -> Completion:
    return await _in_thread(stream.collect, stream.cancel)


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
