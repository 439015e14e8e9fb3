#!/usr/bin/env python3
"""Checks the GGUFs from scripts/fetch-embedding-models.sh against the numpy reference
(bindings-python/tests/bert_reference.py), using llama-cpp-python's own llama.cpp build as an
independent runtime. Not part of the test suite; run it after changing the converter:

    target/dist/llama-cpp-python/bin/python scripts/check-embedding-models.py

Checks: llama.cpp's WordPiece ids equal a plain re-implementation of the tokenizer.json
rules; each f16 embedding has cosine >= 0.999 with the reference (Q8_0: >= 0.99); the rank
model loads and its score matches the reference head on the [CLS] row. Exits non-zero on
any failure.
"""
import json
import sys
import unicodedata
from pathlib import Path

import numpy as np
import llama_cpp
from llama_cpp import Llama

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
SRC = MODELS / "all-MiniLM-L6-v2"
sys.path.insert(0, str(ROOT / "bindings-python" / "tests"))
import bert_reference  # noqa: E402

RANK_SEED = 20240601  # scripts/fetch-embedding-models.sh
TEXTS = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a white horse on an enclosed ground.",
    "Héllo, Wörld! A naïve café résumé costs $3.50 (approx.)",
    "Tokenization splits unaffable words into word-pieces; llama.cpp runs them in C++.",
]
failures = []


def check(ok: bool, message: str) -> None:
    print(("ok   " if ok else "FAIL ") + message)
    if not ok:
        failures.append(message)


def wordpiece_ids(text: str, vocab: dict[str, int]) -> list[int]:
    """tokenizer.json's BertNormalizer (lowercase, strip accents), BertPreTokenizer, WordPiece."""
    text = unicodedata.normalize("NFD", text.lower())
    text = "".join(c for c in text if unicodedata.category(c) != "Mn")
    words, word = [], ""
    for c in text:
        if c.isspace():
            words, word = words + [word], ""
        elif unicodedata.category(c).startswith("P") or (c.isascii() and not c.isalnum()):
            words, word = words + [word, c], ""
        else:
            word += c
    ids = [vocab["[CLS]"]]
    for word in filter(None, words + [word]):
        pieces, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start and (("##" if start else "") + word[start:end]) not in vocab:
                end -= 1
            if end == start:
                pieces = [vocab["[UNK]"]]
                break
            pieces.append(vocab[("##" if start else "") + word[start:end]])
            start = end
        ids += pieces
    return ids + [vocab["[SEP]"]]


def cosine(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def main() -> int:
    reference = bert_reference.load(SRC)
    vocab = json.loads((SRC / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"]

    for name, min_cos in (("all-MiniLM-L6-v2.f16.gguf", 0.999), ("all-MiniLM-L6-v2.q8_0.gguf", 0.99)):
        llm = Llama(str(MODELS / name), embedding=True, verbose=False, n_threads=2)
        print(f"== {name}")
        embeddings = {}
        for text in TEXTS:
            ids = llm.tokenize(text.encode(), add_bos=True)
            check(ids == wordpiece_ids(text, vocab), f"tokens {text!r}: {ids}")
            embedding = np.asarray(llm.embed(text), dtype=np.float64)
            embeddings[text] = embedding / np.linalg.norm(embedding)
            c = cosine(embedding, reference.embed(ids))
            check(c >= min_cos, f"cosine vs reference {c:.6f} (>= {min_cos}) {text!r}")
        pair = cosine(embeddings[TEXTS[0]], embeddings[TEXTS[1]])
        ref_pair = cosine(reference.embed(llm.tokenize(TEXTS[0].encode())),
                          reference.embed(llm.tokenize(TEXTS[1].encode())))
        check(abs(pair - ref_pair) < 2e-3, f"cosine(food, bread) = {pair:.4f} (reference {ref_pair:.4f})")
        llm.close()

    # The rank model: llama-cpp-python's embed() reads n_embd floats even for RANK pooling
    # (an over-read of the n_cls_out = 1 score), so decode with the low-level API instead.
    print("== minilm-rank-test.gguf")
    llm = Llama(str(MODELS / "minilm-rank-test.gguf"), embedding=True, verbose=False, n_threads=2,
                pooling_type=llama_cpp.LLAMA_POOLING_TYPE_RANK)
    check(llama_cpp.llama_pooling_type(llm.ctx) == llama_cpp.LLAMA_POOLING_TYPE_RANK, "context pooling is RANK")
    check(llama_cpp.llama_model_n_cls_out(llm.model) == 1, "n_cls_out = 1")
    vocab_p = llama_cpp.llama_model_get_vocab(llm.model)
    add = (llama_cpp.llama_vocab_get_add_bos(vocab_p), llama_cpp.llama_vocab_get_add_eos(vocab_p),
           llama_cpp.llama_vocab_get_add_sep(vocab_p))
    check(add == (True, True, False), f"add_bos/add_eos/add_sep = {add} (rerank input [CLS] q [SEP] d [SEP])")
    # the head as the converter drew it (same numpy, same seed, same order), stored as f16
    rng = np.random.default_rng(RANK_SEED)
    bound = float(np.sqrt(3.0 / 384))
    cls_w = rng.uniform(-bound, bound, (384, 384)).astype(np.float32).astype(np.float16).astype(np.float32)
    cls_b = rng.uniform(-0.02, 0.02, 384).astype(np.float32)
    out_w = rng.uniform(-bound, bound, (1, 384)).astype(np.float32).astype(np.float16).astype(np.float32)
    query = "What is the man eating?"
    for doc in (TEXTS[0], TEXTS[1], TEXTS[3]):
        # server's format_prompt_rerank: [BOS] query [EOS] [SEP if add_sep] doc [EOS]
        ids = [101] + llm.tokenize(query.encode(), add_bos=False) + [102] + llm.tokenize(doc.encode(), add_bos=False) + [102]
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(llm.ctx), True)
        batch = llama_cpp.llama_batch_init(len(ids), 0, 1)
        for i, token in enumerate(ids):  # one sequence, every token an output (as pooling needs)
            batch.token[i], batch.pos[i], batch.n_seq_id[i], batch.logits[i] = token, i, 1, True
            batch.seq_id[i][0] = 0
        batch.n_tokens = len(ids)
        if llama_cpp.llama_decode(llm.ctx, batch) != 0:
            check(False, f"llama_decode {doc!r}")
        llama_cpp.llama_batch_free(batch)
        score = float(llama_cpp.llama_get_embeddings_seq(llm.ctx, 0)[0])
        # reference: token types are all 0 in llama.cpp (it has no segment B), as here
        h = reference.hidden_states(ids)[0]
        ref = float((out_w @ np.tanh(cls_w @ h + cls_b))[0])
        check(abs(score - ref) < 5e-3, f"rank score {score:+.5f} (reference {ref:+.5f}) {doc!r}")
    llm.close()

    print(f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
