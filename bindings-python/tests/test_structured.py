"""Structured output, tool calls, logprobs and chat templates: the chat layer from Python."""

import json
from typing import Any

import jsonschema
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

import corral
from conftest import user

SCHEMAS: list[dict[str, Any]] = [
    {"type": "object", "properties": {"name": {"type": "string", "maxLength": 40}, "age": {"type": "integer"}}, "required": ["name", "age"]},
    {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 9}, "minItems": 2, "maxItems": 4},
    {"type": "object", "properties": {"color": {"enum": ["red", "green", "blue"]}}, "required": ["color"]},
    {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 20},
            "location": {
                "type": "object",
                "properties": {"lat": {"type": "number", "minimum": -90, "maximum": 90}, "lon": {"type": "number"}},
                "required": ["lat", "lon"],
            },
        },
        "required": ["city", "location"],
        "additionalProperties": False,
    },
    {"type": "object", "properties": {"ok": {"type": "boolean"}, "note": {"type": ["string", "null"], "maxLength": 60}}, "required": ["ok", "note"]},
    {"type": "object", "properties": {"code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{2}$"}}, "required": ["code"]},
    {"type": "object", "properties": {"score": {"type": "integer", "minimum": 1, "maximum": 5}}, "required": ["score"]},
    {
        "type": "object",
        "properties": {"items": {"type": "array", "items": {"type": "object", "properties": {"sku": {"type": "string", "maxLength": 12}, "qty": {"type": "integer", "minimum": 1}}, "required": ["sku", "qty"]}, "maxItems": 3}},
        "required": ["items"],
    },
]
PROMPTS = ["Describe a person.", "Give me some data about a trip to Rome."]


@pytest.mark.parametrize("schema", SCHEMAS)
@pytest.mark.parametrize("prompt", PROMPTS)
def test_json_schema_output_validates(model: corral.Model, schema: dict[str, Any], prompt: str) -> None:
    response_format = {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}
    out = model.chat(user(prompt), response_format=response_format, max_tokens=400, temperature=0.8, seed=7)
    assert out.finish_reason == "stop", out.text
    jsonschema.validate(json.loads(out.text), schema)


def test_json_object_and_grammar(model: corral.Model) -> None:
    # Any object may be long: every reply that ended by itself is a complete object. (An
    # open-ended "a JSON object about cats" lets this small model ramble past any limit.)
    prompt = "Give me a short JSON object describing a cat, with its name and age."
    outs = [
        model.chat(user(prompt), response_format={"type": "json_object"}, max_tokens=300, seed=seed)
        for seed in range(1, 5)
    ]
    finished = [o for o in outs if o.finish_reason == "stop"]
    assert finished, [o.text for o in outs]
    assert all(isinstance(json.loads(o.text), dict) for o in finished)
    out = model.chat(user("Yes or no?"), grammar='root ::= "yes" | "no"', max_tokens=8)
    assert out.text in ("yes", "no")
    out = model.chat(user("Hi"), response_format={"type": "text"}, max_tokens=4)
    assert out.usage.completion_tokens > 0


def test_bad_constraints_are_typed_errors(model: corral.Model) -> None:
    with pytest.raises(corral.InvalidGrammarError):
        model.chat(user("Hi"), grammar="root ::= (")
    with pytest.raises(corral.InvalidGrammarError):
        model.chat(user("Hi"), response_format={"type": "json_schema", "json_schema": {"schema": {"type": "object", "properties": 3}}})
    with pytest.raises(corral.InvalidArgumentError):
        model.chat(user("Hi"), response_format={"type": "yaml"})
    with pytest.raises(corral.InvalidArgumentError):
        model.chat(user("Hi"), grammar='root ::= "a"', response_format={"type": "json_object"})
    with pytest.raises(TypeError):
        model.chat(user("Hi"), grammar=42)
    with pytest.raises(TypeError):
        model.chat(user("Hi"), response_format={"type": "json_object", "schema": object()})
    assert model.chat(user("Hi"), max_tokens=2).usage.completion_tokens > 0


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                "required": ["city", "unit"],
            },
        },
    },
    {
        "type": "function",
        "function": {"name": "get_time", "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]}},
    },
]
ASK = user("What's the weather in Paris?")


def test_required_tool_call(model: corral.Model) -> None:
    out = model.chat(ASK, tools=TOOLS, tool_choice="required", max_tokens=64, temperature=0)
    assert out.finish_reason == "tool_calls"
    assert len(out.tool_calls) == 1
    call = out.tool_calls[0]
    assert isinstance(call, corral.ToolCall) and call.id.startswith("call_")
    schema = next(t["function"]["parameters"] for t in TOOLS if t["function"]["name"] == call.name)
    jsonschema.validate(json.loads(call.arguments), schema)
    parsed = ChatCompletion.model_validate(out.to_openai())
    choice = parsed.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    assert choice.message.tool_calls[0].function.name == call.name
    assert choice.message.tool_calls[0].function.arguments == call.arguments


def test_named_tool_choice(model: corral.Model) -> None:
    choice = {"type": "function", "function": {"name": "get_time"}}
    out = model.chat(ASK, tools=TOOLS, tool_choice=choice, max_tokens=64, temperature=0)
    assert [c.name for c in out.tool_calls] == ["get_time"]
    assert "tz" in json.loads(out.tool_calls[0].arguments)


def test_streamed_tool_call_deltas(model: corral.Model) -> None:
    chunks = list(model.chat_stream(ASK, tools=TOOLS, tool_choice="required", max_tokens=64, temperature=0))
    deltas = [d for c in chunks for d in c.tool_calls]
    assert deltas[0].index == 0 and deltas[0].id and deltas[0].name in ("get_weather", "get_time")
    arguments = "".join(d.arguments for d in deltas)
    json.loads(arguments)
    assert chunks[-1].finish_reason == "tool_calls"
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk.to_openai())
    last = ChatCompletionChunk.model_validate(chunks[-1].to_openai())
    assert last.choices[0].finish_reason == "tool_calls"


def test_tool_result_round_trip(model: corral.Model) -> None:
    first = model.chat(ASK, tools=TOOLS, tool_choice="required", max_tokens=64, temperature=0)
    call = first.tool_calls[0]
    messages = ASK + [first.message(), {"role": "tool", "tool_call_id": call.id, "name": call.name, "content": "18 C, sunny"}]
    prompt = model.apply_chat_template(messages, tools=TOOLS)
    assert "18 C, sunny" in prompt and call.name in prompt
    answer = model.chat(messages, tools=TOOLS, tool_choice="none", max_tokens=24, temperature=0)
    assert answer.tool_calls == [] and answer.finish_reason in ("stop", "length")
    # ToolCall objects are accepted as they are, too.
    again = ASK + [{"role": "assistant", "content": None, "tool_calls": first.tool_calls}]
    assert call.arguments in model.apply_chat_template(again) or call.name in model.apply_chat_template(again)


def test_bad_tools_are_typed_errors(model: corral.Model) -> None:
    with pytest.raises(corral.InvalidArgumentError):
        model.chat(ASK, tools=[{"type": "function", "function": {}}])
    with pytest.raises(corral.InvalidArgumentError):
        model.chat(ASK, tools=TOOLS, tool_choice="sometimes")
    with pytest.raises(corral.InvalidArgumentError):
        model.chat(ASK, tools=TOOLS, tool_choice={"type": "function", "function": {"name": "nope"}})
    with pytest.raises(TypeError):
        model.chat(ASK, tools="get_weather")
    with pytest.raises(corral.InvalidArgumentError):
        model.complete("Hi", tools=TOOLS)


def test_logprobs(model: corral.Model) -> None:
    out = model.chat(user("Hi"), max_tokens=5, temperature=0, logprobs=True, top_logprobs=3)
    assert out.logprobs is not None and len(out.logprobs) == out.usage.completion_tokens
    for entry in out.logprobs:
        assert entry["logprob"] <= 0 and len(entry["top_logprobs"]) == 3
        # Greedy picks the most likely token.
        assert entry["logprob"] >= max(t["logprob"] for t in entry["top_logprobs"]) - 1e-4
    parsed = ChatCompletion.model_validate(out.to_openai())
    assert parsed.choices[0].logprobs is not None and parsed.choices[0].logprobs.content is not None
    assert len(parsed.choices[0].logprobs.content) == len(out.logprobs)
    assert model.chat(user("Hi"), max_tokens=2).logprobs is None
    streamed = [c for c in model.chat_stream(user("Hi"), max_tokens=3, logprobs=True)]
    assert sum(len(c.logprobs or []) for c in streamed) == 3
    with pytest.raises(corral.InvalidArgumentError):
        model.chat(user("Hi"), logprobs=True, top_logprobs=21)


def test_templates_per_call(model: corral.Model) -> None:
    template = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}"
    assert model.apply_chat_template(user("hi"), template=template) == "<user>hi<assistant>"
    assert model.apply_chat_template(user("hi"), add_generation_prompt=False, template=template) == "<user>hi"
    out = model.chat(user("hi"), template=template, max_tokens=2)
    assert out.usage.prompt_tokens == len(model.tokenize("<user>hi<assistant>", parse_special=True))
    with pytest.raises(corral.TemplateError):
        model.apply_chat_template(user("hi"), template="{{ raise_exception('no system role') }}")


def test_template_corpus_expectations_match_jinja2() -> None:
    """The expected renderings core/tests/chat_templates.rs compares corral against are what
    jinja2 renders today (scripts/render-chat-templates.py --check)."""
    import subprocess
    import sys

    from conftest import REPO

    script = REPO / "scripts" / "render-chat-templates.py"
    result = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
