"""OpenAI-shaped results, validated with the `openai` package's own types."""

from openai.types import Completion as OpenAICompletion
from openai.types.chat import ChatCompletion, ChatCompletionChunk

import corral
from conftest import user


def test_chat_completion_shape(model: corral.Model) -> None:
    out = model.chat(user("Say hi."), max_tokens=8, temperature=0)
    parsed = ChatCompletion.model_validate(out.to_openai())
    assert parsed.object == "chat.completion"
    assert parsed.id.startswith("chatcmpl-")
    assert parsed.choices[0].message.role == "assistant"
    assert parsed.choices[0].message.content == out.text
    assert parsed.choices[0].finish_reason == out.finish_reason
    assert parsed.usage is not None
    assert parsed.usage.prompt_tokens == out.usage.prompt_tokens
    assert parsed.usage.completion_tokens == out.usage.completion_tokens
    assert parsed.usage.total_tokens == out.usage.prompt_tokens + out.usage.completion_tokens
    assert parsed.model == model.info.name


def test_text_completion_shape(model: corral.Model) -> None:
    out = model.complete("The capital of France is", max_tokens=4, temperature=0)
    parsed = OpenAICompletion.model_validate(out.to_openai())
    assert parsed.object == "text_completion"
    assert parsed.choices[0].text == out.text
    assert parsed.choices[0].finish_reason == "length"


def test_chat_chunk_shapes(model: corral.Model) -> None:
    chunks = [c.to_openai() for c in model.chat_stream(user("Say hi."), max_tokens=8, temperature=0)]
    parsed = [ChatCompletionChunk.model_validate(c) for c in chunks]
    assert len({p.id for p in parsed}) == 1 and len({p.created for p in parsed}) == 1
    assert parsed[0].choices[0].delta.role == "assistant"
    assert all(p.choices[0].delta.role is None for p in parsed[1:])
    assert all(p.choices[0].finish_reason is None and p.usage is None for p in parsed[:-1])
    assert parsed[-1].choices[0].finish_reason in ("stop", "length")
    assert parsed[-1].usage is not None and parsed[-1].usage.completion_tokens > 0


def test_text_chunk_shapes(model: corral.Model) -> None:
    chunks = [c.to_openai() for c in model.complete_stream("Hello", max_tokens=4, temperature=0)]
    assert all(c["object"] == "text_completion" and c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    # Like OpenAI's stream, only the last chunk has a finish_reason (which openai's type requires).
    last = OpenAICompletion.model_validate(chunks[-1])
    assert last.choices[0].finish_reason == "length" and last.usage is not None


def test_cancelled_maps_to_stop(model: corral.Model) -> None:
    with model.complete_stream("Once upon a time", max_tokens=500, ignore_eos=True) as stream:
        next(stream)
        stream.cancel()
        last = list(stream)[-1]
    assert last.finish_reason == "cancelled"
    assert OpenAICompletion.model_validate(last.to_openai()).choices[0].finish_reason == "stop"
