"""Thinking models: `<think>...</think>` comes back as `reasoning` (OpenAI-compatible
servers' `reasoning_content`), apart from the answer. No thinking model is reachable offline:
a grammar scripts the default model's output."""

from __future__ import annotations

import pytest

import corral

from conftest import user

THINK_THEN_ANSWER = 'root ::= "<think>" "I should add two and two." "</think>" "\\n\\nFour."'
OPENING_TEMPLATE = (
    "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: <think>\n{% endif %}"
)


def test_reasoning_is_apart_from_the_answer(model: corral.Model) -> None:
    reply = model.chat(user("What is two plus two?"), grammar=THINK_THEN_ANSWER, max_tokens=48)
    assert (reply.reasoning, reply.text) == ("I should add two and two.", "Four.")
    message = reply.to_openai()["choices"][0]["message"]
    assert message["reasoning_content"] == "I should add two and two."
    assert message["content"] == "Four."
    assert reply.message()["reasoning_content"] == "I should add two and two."

    chunks = list(model.chat_stream(user("What is two plus two?"), grammar=THINK_THEN_ANSWER, max_tokens=48))
    assert "".join(c.reasoning for c in chunks) == reply.reasoning
    assert "".join(c.text for c in chunks) == reply.text
    deltas = [c.to_openai()["choices"][0]["delta"] for c in chunks]
    assert "".join(d.get("reasoning_content", "") for d in deltas) == reply.reasoning

    plain = model.chat(user("Hi"), grammar='root ::= "Four."', max_tokens=8)
    assert (plain.reasoning, plain.text) == ("", "Four.")
    assert "reasoning_content" not in plain.to_openai()["choices"][0]["message"]


def test_an_opened_block_and_a_budget(model: corral.Model) -> None:
    reply = model.chat(user("Go"), template=OPENING_TEMPLATE, grammar='root ::= "plan first" "</think>" "answer"', max_tokens=32)
    assert (reply.reasoning, reply.text) == ("plan first", "answer")
    capped = model.chat(
        user("Tell me a story about a cat."), template=OPENING_TEMPLATE, reasoning_budget=6, ignore_eos=True, max_tokens=24, temperature=0
    )
    assert capped.reasoning and len(model.tokenize(capped.reasoning, add_special=False)) <= 8
    assert capped.text and "</think>" not in capped.text
    with pytest.raises(corral.InvalidArgumentError):
        model.complete("Hi", reasoning_budget=4, max_tokens=2)
    with pytest.raises(TypeError):
        model.chat(user("Hi"), reasoning_budget="lots")  # type: ignore[arg-type]
