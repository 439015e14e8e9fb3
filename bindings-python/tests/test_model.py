"""Loading, metadata, tokenizer and generation on the real default model."""

from pathlib import Path

import corral
from conftest import user


def test_info_and_metadata(model: corral.Model) -> None:
    info = model.info
    assert info.architecture == "llama"
    assert 100_000_000 < info.parameters < 200_000_000
    assert info.quantization == "Q4_1"
    assert info.context_length == 2048
    assert info.context_length_trained >= 2048
    assert info.vocab_size > 40_000 and info.layers > 0 and info.embedding_length > 0
    assert info.eos_token is not None and info.eos_token.text == "<|im_end|>"
    assert info.chat_template and "im_start" in info.chat_template
    metadata = info.metadata
    assert metadata["general.architecture"] == "llama"
    assert isinstance(metadata["tokenizer.ggml.tokens"], list)
    assert len(metadata["tokenizer.ggml.tokens"]) == info.vocab_size
    assert isinstance(metadata["llama.block_count"], int)
    # A copy each time: the caller can't corrupt the model's view.
    metadata.clear()
    assert model.info.metadata


def test_tokenize_round_trip(model: corral.Model) -> None:
    text = "Hello, world! Ünïcödé and emoji 🦀 too."
    ids = model.tokenize(text)
    assert ids and all(isinstance(i, int) for i in ids)
    assert model.detokenize(ids) == text
    special = model.tokenize("<|im_start|>user", parse_special=True)
    assert special[0] == model.info.bos_token.id  # type: ignore[union-attr]
    assert model.detokenize(special) == "user"
    assert model.detokenize(special, render_special=True) == "<|im_start|>user"
    assert model.detokenize([]) == ""


def test_greedy_completion_is_deterministic(model: corral.Model) -> None:
    first = model.complete("The capital of France is", max_tokens=12, temperature=0)
    second = model.complete("The capital of France is", max_tokens=12, temperature=0)
    assert "Paris" in first.text
    assert first.text == second.text and first.tokens == second.tokens
    assert first.finish_reason == "length"
    assert first.usage.completion_tokens == 12 == len(first.tokens)
    assert first.usage.prompt_tokens == len(model.tokenize("The capital of France is"))
    assert first.usage.generation_tokens_per_s > 0


def test_prompt_as_token_ids(model: corral.Model) -> None:
    ids = model.tokenize("The capital of France is")
    by_ids = model.complete(ids, max_tokens=8, temperature=0)
    by_text = model.complete("The capital of France is", max_tokens=8, temperature=0)
    assert by_ids.text == by_text.text


def test_seeded_sampling_is_reproducible(model: corral.Model) -> None:
    a = model.complete("Once upon a time", max_tokens=16, temperature=0.9, seed=7)
    b = model.complete("Once upon a time", max_tokens=16, temperature=0.9, seed=7)
    assert a.text == b.text


def test_stop_strings_end_generation_and_are_not_emitted(model: corral.Model) -> None:
    free = model.complete("The capital of France is", max_tokens=12, temperature=0)
    assert "." in free.text
    stopped = model.complete("The capital of France is", max_tokens=12, temperature=0, stop=".")
    assert stopped.finish_reason == "stop"
    assert stopped.text == free.text.split(".")[0]
    several = model.complete("The capital of France is", max_tokens=12, temperature=0, stop=["xyz", "."])
    assert several.text == stopped.text


def test_max_tokens_and_ignore_eos(model: corral.Model) -> None:
    out = model.chat(user("Say hi."), max_tokens=3, temperature=0)
    assert out.finish_reason == "length" and out.usage.completion_tokens == 3
    long = model.complete("Hi", max_tokens=40, temperature=0, ignore_eos=True)
    assert long.usage.completion_tokens == 40


def test_chat_stops_at_end_of_turn(model: corral.Model) -> None:
    out = model.chat(user("What is 2+2?"), max_tokens=64, temperature=0)
    assert out.finish_reason == "stop"
    assert "4" in out.text and "<|im_end|>" not in out.text
    assert out.usage.completion_tokens < 64


def test_streaming_matches_the_whole_completion(model: corral.Model) -> None:
    whole = model.chat(user("Name three colors."), max_tokens=24, temperature=0)
    stream = model.chat_stream(user("Name three colors."), max_tokens=24, temperature=0)
    assert iter(stream) is stream
    chunks = list(stream)
    assert len(chunks) > 2
    assert "".join(c.text for c in chunks) == whole.text
    assert [t for c in chunks for t in c.tokens] == whole.tokens
    assert all(c.finish_reason is None and c.usage is None for c in chunks[:-1])
    last = chunks[-1]
    assert last.finish_reason == whole.finish_reason
    assert last.usage is not None and last.usage.completion_tokens == whole.usage.completion_tokens
    assert list(stream) == []  # exhausted


def test_stream_cancel_and_context_manager(model: corral.Model) -> None:
    with model.complete_stream("Count: 1, 2, 3,", max_tokens=500, temperature=0, ignore_eos=True) as stream:
        first = next(stream)
        assert first.text
        stream.cancel()
        rest = list(stream)
    assert rest[-1].finish_reason == "cancelled"
    assert sum(len(c.tokens) for c in rest) < 100
    with model.complete_stream("Count: 1, 2, 3,", max_tokens=500, ignore_eos=True) as stream:
        next(stream)
    assert stream.cancelled
    assert list(stream)[-1].finish_reason == "cancelled"


def test_collect(model: corral.Model) -> None:
    stream = model.complete_stream("The capital of France is", max_tokens=6, temperature=0)
    first = next(stream)
    rest = stream.collect()
    whole = model.complete("The capital of France is", max_tokens=6, temperature=0)
    assert first.text + rest.text == whole.text


def test_apply_chat_template(model: corral.Model) -> None:
    prompt = model.apply_chat_template(user("Hi!"))
    assert prompt.endswith("<|im_start|>assistant\n")
    assert "<|im_start|>user\nHi!<|im_end|>" in prompt
    assert not model.apply_chat_template(user("Hi!"), add_generation_prompt=False).endswith("assistant\n")
    parts = [{"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "!"}]}]
    assert model.apply_chat_template(parts) == prompt


def test_score(model: corral.Model) -> None:
    ids = model.tokenize("The capital of France is Paris")
    logprobs = model.score(ids)
    assert len(logprobs) == len(ids) - 1
    assert all(lp <= 0 for lp in logprobs)
    paris = model.score(model.tokenize("The capital of France is Paris"))[-1]
    banana = model.score(model.tokenize("The capital of France is banana"))[-1]
    assert paris > banana


def test_custom_chat_template(model_path: Path) -> None:
    template = "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}[assistant] {% endif %}"
    with corral.Model(model_path, context_length=256, threads=1, chat_template=template) as custom:
        assert custom.apply_chat_template(user("Hi")) == "[user] Hi\n[assistant] "
        assert custom.info.chat_template == template


def test_module_surface() -> None:
    assert corral.__version__
    assert set(corral.__all__) <= set(dir(corral))
    assert corral.default_threads() >= 1
    assert isinstance(corral.supports_gpu_offload(), bool)
    assert corral.Model.__module__ == "corral" and corral.Completion.__module__ == "corral"


def test_stats_count_requests_tokens_and_cache_hits(model: corral.Model) -> None:
    prompt = "A long shared system prompt about the weather in Paris, then a question:"
    options = {"max_tokens": 2, "temperature": 0.0, "ignore_eos": True}
    model.clear_cache()
    before = model.stats()
    model.complete(prompt, **options)  # type: ignore[arg-type]
    first = model.stats()
    assert first.requests == before.requests + 1
    assert first.generated_tokens == before.generated_tokens + 2
    assert first.cached_tokens == before.cached_tokens
    prompt_tokens = first.prompt_tokens - before.prompt_tokens
    assert prompt_tokens > 10
    # Again: all but the last prompt token come from the prefix cache.
    model.complete(prompt, **options)  # type: ignore[arg-type]
    second = model.stats()
    assert second.cached_tokens - first.cached_tokens == prompt_tokens - 1
    # Cleared: nothing is reused.
    model.clear_cache()
    model.complete(prompt, **options)  # type: ignore[arg-type]
    assert model.stats().cached_tokens == second.cached_tokens
    assert second.preemptions >= before.preemptions
    assert repr(second).startswith(f"EngineStats(requests={second.requests}, ")
