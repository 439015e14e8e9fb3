# Stubs of the compiled module (src/*.rs), checked against it by `python -m mypy.stubtest corral._native`.
# The generation keywords are spelt out per method (not **options: Unpack[...]): stubtest of
# the mypy that still runs on Python 3.9 (1.19) cannot match those against the native signatures.
import os
from types import TracebackType
from typing import Any, Callable, Generic, Iterator, Literal, Mapping, NoReturn, Optional, Sequence, TypeVar, Union, final, type_check_only

from typing_extensions import Self, disjoint_base

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
    "EngineStats",
    "InternalError",
    "InvalidArgumentError",
    "InvalidArgumentTypeError",
    "InvalidGrammarError",
    "InvalidModelError",
    "InsufficientMemoryError",
    "InvalidStateError",
    "MemoryEstimate",
    "Model",
    "ModelInfo",
    "ModelNotFoundError",
    "NativeEmbeddings",
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
    "estimate_memory",
    "serve_rpc",
    "set_log_handler",
    "supports_gpu_offload",
    "cpu_variant",
]

__version__: str

def supports_gpu_offload() -> bool: ...
def cpu_variant() -> str: ...
def default_threads() -> int: ...
def estimate_memory(
    path: Union[str, os.PathLike[str]],
    *,
    context_length: Union[int, Literal["auto"], None] = None,
    threads: Optional[int] = None,
    gpu_layers: Optional[int] = None,
    use_mmap: Optional[bool] = None,
    use_mlock: Optional[bool] = None,
    max_sequences: Optional[int] = None,
    batch_size: Optional[int] = None,
    flash_attention: Optional[bool] = None,
    rpc_servers: Optional[Sequence[str]] = None,
    rpc_split: Optional[Sequence[float]] = None,
) -> MemoryEstimate: ...
def serve_rpc(host: str = "127.0.0.1", port: int = 50052, threads: Optional[int] = None) -> NoReturn: ...
def set_log_handler(handler: Optional[Callable[[int, str, str], object]], level: int = 30) -> None: ...

class CorralError(Exception):
    code: str

class ModelNotFoundError(CorralError, FileNotFoundError): ...
class InvalidModelError(CorralError, ValueError): ...
class UnsupportedArchitectureError(CorralError, ValueError): ...
class InvalidArgumentError(CorralError, ValueError): ...
class InvalidArgumentTypeError(InvalidArgumentError, TypeError): ...
class ContextOverflowError(CorralError, ValueError): ...
class CancelledError(CorralError): ...
class DecodeFailedError(CorralError, RuntimeError): ...
class NoChatTemplateError(CorralError, ValueError): ...
class TemplateError(CorralError, ValueError): ...
class ClosedError(CorralError, RuntimeError): ...
class BusyError(CorralError, RuntimeError): ...
class DeadlineExceededError(CorralError, TimeoutError): ...
class InvalidGrammarError(CorralError, ValueError): ...
class InternalError(CorralError, RuntimeError): ...
class UnsupportedError(CorralError, ValueError): ...
class InvalidStateError(CorralError, ValueError): ...
class InsufficientMemoryError(CorralError, MemoryError): ...
class WorkerUnavailableError(CorralError, ConnectionError): ...

@final
class MemoryEstimate:
    @property
    def context_length(self) -> int: ...
    @property
    def weights_bytes(self) -> int: ...
    @property
    def mapped_weights_bytes(self) -> int: ...
    @property
    def kv_cache_bytes(self) -> int: ...
    @property
    def compute_bytes(self) -> int: ...
    @property
    def overhead_bytes(self) -> int: ...
    @property
    def total_bytes(self) -> int: ...
    @property
    def required_bytes(self) -> int: ...
    @property
    def available_bytes(self) -> Optional[int]: ...
    @property
    def fits(self) -> bool: ...

@final
class CancelToken:
    def __new__(cls) -> Self: ...
    def cancel(self) -> None: ...
    @property
    def cancelled(self) -> bool: ...

@final
class NativeEmbeddings:
    @property
    def prompt_tokens(self) -> int: ...
    @property
    def dimensions(self) -> int: ...
    def vectors(self) -> list[list[float]]: ...
    def to_bytes(self) -> bytes: ...
    def to_openai(self) -> dict[str, Any]: ...

@final
class SpecialToken:
    @property
    def id(self) -> int: ...
    @property
    def text(self) -> str: ...

@final
class EngineStats:
    @property
    def requests(self) -> int: ...
    @property
    def prompt_tokens(self) -> int: ...
    @property
    def cached_tokens(self) -> int: ...
    @property
    def generated_tokens(self) -> int: ...
    @property
    def preemptions(self) -> int: ...

@final
class ModelInfo:
    @property
    def architecture(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def parameters(self) -> int: ...
    @property
    def size_bytes(self) -> int: ...
    @property
    def quantization(self) -> str: ...
    @property
    def context_length_trained(self) -> int: ...
    @property
    def context_length(self) -> int: ...
    @property
    def embedding_length(self) -> int: ...
    @property
    def layers(self) -> int: ...
    @property
    def vocab_size(self) -> int: ...
    @property
    def bos_token(self) -> Optional[SpecialToken]: ...
    @property
    def eos_token(self) -> Optional[SpecialToken]: ...
    @property
    def eot_token(self) -> Optional[SpecialToken]: ...
    @property
    def add_bos_token(self) -> bool: ...
    @property
    def chat_template(self) -> Optional[str]: ...
    @property
    def metadata(self) -> dict[str, Any]: ...

@final
class Usage:
    @property
    def prompt_tokens(self) -> int: ...
    @property
    def completion_tokens(self) -> int: ...
    @property
    def cached_tokens(self) -> int: ...
    @property
    def queue_ms(self) -> float: ...
    @property
    def time_to_first_token_ms(self) -> float: ...
    @property
    def prompt_ms(self) -> float: ...
    @property
    def generation_ms(self) -> float: ...
    @property
    def prompt_tokens_per_s(self) -> float: ...
    @property
    def generation_tokens_per_s(self) -> float: ...
    def to_dict(self) -> dict[str, Union[int, float]]: ...

@final
class ToolCall:
    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def arguments(self) -> str: ...
    def to_openai(self) -> dict[str, Any]: ...

@final
class ToolCallDelta:
    @property
    def index(self) -> int: ...
    @property
    def id(self) -> Optional[str]: ...
    @property
    def name(self) -> Optional[str]: ...
    @property
    def arguments(self) -> str: ...

@final
class Completion:
    @property
    def text(self) -> str: ...
    @property
    def reasoning(self) -> str: ...
    @property
    def tokens(self) -> list[int]: ...
    @property
    def finish_reason(self) -> str: ...
    @property
    def usage(self) -> Usage: ...
    @property
    def tool_calls(self) -> list[ToolCall]: ...
    @property
    def logprobs(self) -> Optional[list[dict[str, Any]]]: ...
    def message(self) -> dict[str, Any]: ...
    def to_openai(self) -> dict[str, Any]: ...

@final
class Chunk:
    @property
    def text(self) -> str: ...
    @property
    def reasoning(self) -> str: ...
    @property
    def tokens(self) -> list[int]: ...
    @property
    def finish_reason(self) -> Optional[str]: ...
    @property
    def usage(self) -> Optional[Usage]: ...
    @property
    def tool_calls(self) -> list[ToolCallDelta]: ...
    @property
    def logprobs(self) -> Optional[list[dict[str, Any]]]: ...
    def to_openai(self) -> dict[str, Any]: ...

@final
class Stream:
    def __iter__(self) -> Self: ...
    def __next__(self) -> Chunk: ...
    def collect(self) -> Completion: ...
    def cancel(self) -> None: ...
    @property
    def cancelled(self) -> bool: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc_value: Optional[BaseException],
        traceback: Optional[TracebackType],
        /,
    ) -> bool: ...

_Messages = Sequence[Mapping[str, Any]]
_Stop = Union[str, Sequence[str], None]
_Prompt = TypeVar("_Prompt")

@type_check_only
class _Generating(Generic[_Prompt]):
    """What Model and Session share (no such class at runtime): generation on a prompt
    (`_Prompt`: text or token ids on a Model, text on a Session) or a conversation, and
    closing."""
    def complete(
        self,
        prompt: _Prompt,
        *,
        max_tokens: Optional[int] = None,
        temperature: Optional[float] = None,
        top_k: Optional[int] = None,
        top_p: Optional[float] = None,
        min_p: Optional[float] = None,
        repeat_penalty: Optional[float] = None,
        repeat_last_n: Optional[int] = None,
        frequency_penalty: Optional[float] = None,
        presence_penalty: Optional[float] = None,
        seed: Optional[int] = None,
        stop: _Stop = None,
        timeout: Optional[float] = None,
        ignore_eos: Optional[bool] = None,
        parse_special: Optional[bool] = None,
        grammar: Optional[str] = None,
        response_format: Optional[Mapping[str, Any]] = None,
        logprobs: Optional[bool] = None,
        top_logprobs: Optional[int] = None,
        tools: Optional[Sequence[Mapping[str, Any]]] = None,
        tool_choice: Union[str, Mapping[str, Any], None] = None,
        template: Optional[str] = None,
        reasoning_budget: Optional[int] = None,
        adapters: Optional[Sequence[Mapping[str, Any]]] = None,
    ) -> Completion: ...
    def complete_stream(
        self,
        prompt: _Prompt,
        *,
        max_tokens: Optional[int] = None,
        temperature: Optional[float] = None,
        top_k: Optional[int] = None,
        top_p: Optional[float] = None,
        min_p: Optional[float] = None,
        repeat_penalty: Optional[float] = None,
        repeat_last_n: Optional[int] = None,
        frequency_penalty: Optional[float] = None,
        presence_penalty: Optional[float] = None,
        seed: Optional[int] = None,
        stop: _Stop = None,
        timeout: Optional[float] = None,
        ignore_eos: Optional[bool] = None,
        parse_special: Optional[bool] = None,
        grammar: Optional[str] = None,
        response_format: Optional[Mapping[str, Any]] = None,
        logprobs: Optional[bool] = None,
        top_logprobs: Optional[int] = None,
        tools: Optional[Sequence[Mapping[str, Any]]] = None,
        tool_choice: Union[str, Mapping[str, Any], None] = None,
        template: Optional[str] = None,
        reasoning_budget: Optional[int] = None,
        adapters: Optional[Sequence[Mapping[str, Any]]] = None,
    ) -> Stream: ...
    def chat(
        self,
        messages: _Messages,
        *,
        max_tokens: Optional[int] = None,
        temperature: Optional[float] = None,
        top_k: Optional[int] = None,
        top_p: Optional[float] = None,
        min_p: Optional[float] = None,
        repeat_penalty: Optional[float] = None,
        repeat_last_n: Optional[int] = None,
        frequency_penalty: Optional[float] = None,
        presence_penalty: Optional[float] = None,
        seed: Optional[int] = None,
        stop: _Stop = None,
        timeout: Optional[float] = None,
        ignore_eos: Optional[bool] = None,
        parse_special: Optional[bool] = None,
        grammar: Optional[str] = None,
        response_format: Optional[Mapping[str, Any]] = None,
        logprobs: Optional[bool] = None,
        top_logprobs: Optional[int] = None,
        tools: Optional[Sequence[Mapping[str, Any]]] = None,
        tool_choice: Union[str, Mapping[str, Any], None] = None,
        template: Optional[str] = None,
        reasoning_budget: Optional[int] = None,
        adapters: Optional[Sequence[Mapping[str, Any]]] = None,
    ) -> Completion: ...
    def chat_stream(
        self,
        messages: _Messages,
        *,
        max_tokens: Optional[int] = None,
        temperature: Optional[float] = None,
        top_k: Optional[int] = None,
        top_p: Optional[float] = None,
        min_p: Optional[float] = None,
        repeat_penalty: Optional[float] = None,
        repeat_last_n: Optional[int] = None,
        frequency_penalty: Optional[float] = None,
        presence_penalty: Optional[float] = None,
        seed: Optional[int] = None,
        stop: _Stop = None,
        timeout: Optional[float] = None,
        ignore_eos: Optional[bool] = None,
        parse_special: Optional[bool] = None,
        grammar: Optional[str] = None,
        response_format: Optional[Mapping[str, Any]] = None,
        logprobs: Optional[bool] = None,
        top_logprobs: Optional[int] = None,
        tools: Optional[Sequence[Mapping[str, Any]]] = None,
        tool_choice: Union[str, Mapping[str, Any], None] = None,
        template: Optional[str] = None,
        reasoning_budget: Optional[int] = None,
        adapters: Optional[Sequence[Mapping[str, Any]]] = None,
    ) -> Stream: ...
    def close(self) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc_value: Optional[BaseException],
        traceback: Optional[TracebackType],
        /,
    ) -> bool: ...


@disjoint_base
class Model(_Generating[Union[str, Sequence[int]]]):
    def __new__(
        cls,
        path: Union[str, os.PathLike[str]],
        *,
        context_length: Union[int, Literal["auto"], None] = None,
        threads: Optional[int] = None,
        gpu_layers: Optional[int] = None,
        use_mmap: Optional[bool] = None,
        use_mlock: Optional[bool] = None,
        max_sequences: Optional[int] = None,
        batch_size: Optional[int] = None,
        flash_attention: Optional[bool] = None,
        rpc_servers: Optional[Sequence[str]] = None,
        rpc_split: Optional[Sequence[float]] = None,
        chat_template: Optional[str] = None,
        adapters: Optional[Mapping[str, Union[str, os.PathLike[str]]]] = None,
        on_progress: Optional[Callable[[float], object]] = None,
    ) -> Self: ...
    @property
    def info(self) -> ModelInfo: ...
    @property
    def closed(self) -> bool: ...
    def tokenize(self, text: str, *, add_special: bool = True, parse_special: bool = False) -> list[int]: ...
    def detokenize(self, ids: Sequence[int], *, render_special: bool = False) -> str: ...
    def apply_chat_template(
        self,
        messages: _Messages,
        add_generation_prompt: bool = True,
        tools: Optional[Sequence[Mapping[str, Any]]] = None,
        template: Optional[str] = None,
    ) -> str: ...
    def embed(
        self,
        texts: Union[str, Sequence[str]],
        *,
        normalize: Optional[bool] = True,
        truncate: Optional[bool] = False,
        pooling: Optional[str] = None,
        timeout: Optional[float] = None,
        cancel: Optional[CancelToken] = None,
    ) -> NativeEmbeddings: ...
    def rerank(
        self,
        query: str,
        documents: Union[str, Sequence[str]],
        *,
        top_n: Optional[int] = None,
        truncate: Optional[bool] = False,
        timeout: Optional[float] = None,
        cancel: Optional[CancelToken] = None,
    ) -> list[dict[str, Any]]: ...
    def score(self, tokens: Sequence[int]) -> list[float]: ...
    def session(self) -> Session: ...
    def load_adapter(self, name: str, path: Union[str, os.PathLike[str]]) -> None: ...
    def remove_adapter(self, name: str) -> None: ...
    def adapters(self) -> list[str]: ...
    def stats(self) -> EngineStats: ...
    def clear_cache(self) -> None: ...

@disjoint_base
class Session(_Generating[str]):
    def __new__(cls, model: Model, state: Optional[bytes] = None) -> Self: ...
    def state(self) -> bytes: ...
    def save(self, path: Union[str, os.PathLike[str]]) -> None: ...
    @property
    def closed(self) -> bool: ...
