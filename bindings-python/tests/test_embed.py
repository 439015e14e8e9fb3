"""Model.embed and Model.rerank: MiniLM against a numpy forward pass of its original weights,
batching, options, errors, async and cancellation; the test reranker's mechanics."""

from __future__ import annotations

import asyncio
import math
import os
import threading
from pathlib import Path
from typing import Iterator, Sequence

import pytest

import corral

from conftest import REPO

MODELS = REPO / "models"
EMBED_PATH = Path(os.environ.get("CORRAL_EMBED_MODEL", MODELS / "all-MiniLM-L6-v2.f16.gguf"))
RERANK_PATH = Path(os.environ.get("CORRAL_RERANK_MODEL", MODELS / "minilm-rank-test.gguf"))
# The original weights the GGUFs were converted from (scripts/fetch-embedding-models.sh).
MINILM_SOURCE = Path(os.environ.get("CORRAL_EMBED_SOURCE", MODELS / "all-MiniLM-L6-v2"))

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The new movie is awesome!",
    "Le café est très chaud, n'est-ce pas?",
    "C++ costs $3.50 per line, apparently.",
    "Reranking puts the best documents first.",
]


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"test model missing: {path} (run scripts/fetch-embedding-models.sh)")
    return path


@pytest.fixture(scope="module")
def minilm() -> Iterator[corral.Model]:
    with corral.Model(_require(EMBED_PATH), threads=1) as loaded:
        yield loaded


@pytest.fixture(scope="module")
def reranker() -> Iterator[corral.Model]:
    with corral.Model(_require(RERANK_PATH), threads=1) as loaded:
        yield loaded


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def norm(v: Sequence[float]) -> float:
    return math.sqrt(sum(x * x for x in v))


def test_vectors_match_a_numpy_forward_pass_of_the_original_weights(minilm: corral.Model) -> None:
    np = pytest.importorskip("numpy")
    import bert_reference

    reference = bert_reference.load(_require(MINILM_SOURCE))
    vectors = minilm.embed(SENTENCES)
    for text, vector in zip(SENTENCES, vectors):
        expected = reference.embed(minilm.tokenize(text, add_special=True))
        assert cosine(vector, np.asarray(expected, dtype=np.float64).tolist()) >= 0.999, text
    assert abs(cosine(vectors[0], vectors[1]) - 0.7553) < 0.003


def test_result_shape_usage_and_openai_response(minilm: corral.Model) -> None:
    result = minilm.embed(SENTENCES[:2])
    assert isinstance(result, corral.Embeddings) and isinstance(result, list)
    assert len(result) == 2 and result.dimensions == 384
    assert all(len(v) == 384 and abs(norm(v) - 1) < 1e-4 for v in result)
    assert all(isinstance(x, float) and math.isfinite(x) for v in result for x in v)
    tokens = sum(len(minilm.tokenize(t, add_special=True)) for t in SENTENCES[:2])
    assert result.prompt_tokens == tokens
    response = result.to_openai()
    assert response["object"] == "list"
    assert [d["index"] for d in response["data"]] == [0, 1]
    assert response["data"][1]["object"] == "embedding"
    assert response["data"][1]["embedding"] == pytest.approx(result[1], abs=1e-6)
    assert response["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}
    # One string is one text.
    assert len(minilm.embed("just one")) == 1


def test_numpy_output(minilm: corral.Model) -> None:
    np = pytest.importorskip("numpy")
    array = minilm.embed(SENTENCES, output="numpy")
    assert array.shape == (len(SENTENCES), 384) and array.dtype == np.float32
    assert np.allclose(np.linalg.norm(array, axis=1), 1.0, atol=1e-4)
    assert np.allclose(array[2], minilm.embed(SENTENCES)[2], atol=1e-6)
    with pytest.raises(corral.InvalidArgumentError):
        minilm.embed("x", output="pandas")


def test_a_batch_of_64_equals_the_texts_one_by_one(minilm: corral.Model) -> None:
    texts = [f"Item {i}: {SENTENCES[i % len(SENTENCES)]} ({'more ' * (i % 9)}words)" for i in range(64)]
    batched = minilm.embed(texts)
    for text, vector in zip(texts, batched):
        assert cosine(minilm.embed(text)[0], vector) >= 0.9999, text


def test_threads_share_one_model(minilm: corral.Model) -> None:
    expected = minilm.embed(SENTENCES)
    results: list[list[list[float]]] = []

    def work() -> None:
        results.append(minilm.embed(SENTENCES))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4
    for result in results:
        assert all(cosine(a, b) >= 0.9999 for a, b in zip(result, expected))


def test_options(minilm: corral.Model) -> None:
    mean = minilm.embed("The river floods every spring.")[0]
    cls = minilm.embed("The river floods every spring.", pooling="cls")[0]
    assert cosine(mean, cls) < 0.999
    raw = minilm.embed("The river floods every spring.", normalize=False)[0]
    assert abs(norm(raw) - 1) > 0.01 and cosine(raw, mean) > 0.99999
    long = "word " * 2000
    with pytest.raises(corral.ContextOverflowError):
        minilm.embed(long)
    assert minilm.embed(long, truncate=True).prompt_tokens == 512


def test_bad_input_raises_typed_errors_and_the_model_keeps_serving(minilm: corral.Model) -> None:
    assert minilm.embed([]) == []
    with pytest.raises(corral.InvalidArgumentError, match=r"texts\[1\] is empty"):
        minilm.embed(["fine", ""])
    with pytest.raises(TypeError, match=r"texts\[1\] must be a str"):
        minilm.embed(["fine", 3])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        minilm.embed(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        minilm.embed("x", top_n=3)  # type: ignore[call-arg]
    with pytest.raises(corral.InvalidArgumentError, match="pooling"):
        minilm.embed("x", pooling="max")
    with pytest.raises(corral.InvalidArgumentError):
        minilm.embed("x", pooling="rank")
    with pytest.raises(corral.DeadlineExceededError):
        minilm.embed(SENTENCES * 20, timeout=1e-9)
    token = corral.CancelToken()
    token.cancel()
    with pytest.raises(corral.CancelledError):
        minilm.embed(SENTENCES, cancel=token)
    with pytest.raises(corral.UnsupportedError) as raised:
        minilm.complete("hello", max_tokens=4)
    assert raised.value.code == "unsupported"
    with pytest.raises(corral.UnsupportedError):
        minilm.rerank("q", ["d"])
    assert len(minilm.embed("still serving")[0]) == 384


def test_async_embed_and_cancellation(minilm: corral.Model) -> None:
    async def main() -> None:
        a, b = await asyncio.gather(minilm.embed_async(SENTENCES[:3]), minilm.embed_async(SENTENCES[3:]))
        assert len(a) == 3 and len(b) == 3
        task = asyncio.ensure_future(minilm.embed_async(["a long list of texts"] * 4000))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert len(minilm.embed("after a cancelled call")) == 1


# The test reranker's head is seeded random weights: these tests check the mechanics (one
# score per document, order, top_n, batching), not ranking quality.
DOCUMENTS = ["A man is eating food.", "The sky is blue.", "Bread is baked at dawn.", "Engines need oil.", "Cats sleep a lot."]


def test_rerank_scores_every_document_best_first(reranker: corral.Model) -> None:
    results = reranker.rerank("What do people eat?", DOCUMENTS)
    assert len(results) == len(DOCUMENTS)
    assert sorted(r["index"] for r in results) == list(range(len(DOCUMENTS)))
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)
    for r in results:
        assert set(r) == {"index", "score", "document"}
        assert 0.0 <= r["score"] <= 1.0
        assert r["document"] == DOCUMENTS[r["index"]]
        alone = reranker.rerank("What do people eat?", [r["document"]])[0]
        assert alone["score"] == pytest.approx(r["score"], abs=1e-3)  # F16 on ggml: batch width changes the summation order
    assert reranker.rerank("What do people eat?", DOCUMENTS, top_n=2) == results[:2]
    assert reranker.rerank("q", []) == []
    with pytest.raises(corral.InvalidArgumentError):
        reranker.rerank("q", ["d"], top_n=0)
    with pytest.raises(corral.InvalidArgumentError):
        reranker.rerank("", ["d"])
    with pytest.raises(corral.ContextOverflowError):
        reranker.rerank("q", ["word " * 600])
    assert len(reranker.rerank("q", ["word " * 600], truncate=True)) == 1


def test_rerank_async(reranker: corral.Model) -> None:
    async def main() -> list[dict]:
        return await reranker.rerank_async("What do people eat?", DOCUMENTS, top_n=1)

    best = asyncio.run(main())
    assert best == reranker.rerank("What do people eat?", DOCUMENTS, top_n=1)


def test_a_chat_model_embeds_too(model: corral.Model) -> None:
    vectors = model.embed(SENTENCES[:2])
    assert vectors.dimensions == model.info.embedding_length == 576
    with pytest.raises(corral.UnsupportedError):
        model.rerank("q", ["d"])
