"""Semantic search: embed documents once, find the closest to a question, then (with a
reranker) score the candidates again.

    python examples/python/search.py [EMBEDDING_MODEL] [--rerank RERANKER] [--question TEXT]

The default embedding model is the MiniLM GGUF that scripts/fetch-embedding-models.sh builds.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import corral

MODELS = Path(__file__).resolve().parents[2] / "models"

DOCUMENTS = [
    "The Eiffel Tower is in Paris and was finished in 1889.",
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen.",
    "A sourdough starter is a culture of wild yeast and lactic acid bacteria.",
    "The Rhine flows from the Swiss Alps to the North Sea.",
    "Python's asyncio runs coroutines on an event loop.",
]


def main() -> None:
    parser = argparse.ArgumentParser(description="Semantic search with corral embeddings.")
    parser.add_argument("model", nargs="?", default=MODELS / "all-MiniLM-L6-v2.f16.gguf")
    parser.add_argument("--rerank", help="a reranker GGUF (pooling_type rank)")
    parser.add_argument("--question", default="How is bread made to rise?")
    parser.add_argument("--top", type=int, default=3)
    args = parser.parse_args()

    with corral.Model(args.model) as model:
        documents = model.embed(DOCUMENTS)  # one unit-length vector per document
        query = model.embed(args.question)[0]
        # Unit vectors: the dot product is the cosine similarity.
        scored = sorted(((sum(q * d for q, d in zip(query, doc)), i) for i, doc in enumerate(documents)), reverse=True)
        candidates = [DOCUMENTS[i] for _, i in scored[: args.top]]
        print(f"question: {args.question}")
        for similarity, i in scored[: args.top]:
            print(f"  {similarity:.3f}  {DOCUMENTS[i]}")
        print(f"({documents.prompt_tokens + len(model.tokenize(args.question))} tokens embedded, {documents.dimensions} dimensions)")

    if args.rerank:
        with corral.Model(args.rerank) as reranker:
            print("reranked:")
            for result in reranker.rerank(args.question, candidates):
                print(f"  {result['score']:.3f}  {result['document']}")


if __name__ == "__main__":
    main()
