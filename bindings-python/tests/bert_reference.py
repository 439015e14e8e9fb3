"""A float32 numpy forward pass of BERT (all-MiniLM-L6-v2), the reference for embedding tests.

It reads the original Hugging Face weights (`model.safetensors`, `config.json`), not the
GGUF, so it checks llama.cpp's conversion and graph independently. Numpy only. Python
floats (not numpy float64 scalars) keep every step float32 under numpy 2's promotion rules.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    # format: u64 little-endian header length, a JSON header naming each tensor's dtype,
    # shape and byte range, then the raw little-endian data
    raw = path.read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + header_len])
    dtypes = {"F32": np.float32, "F16": np.float16, "I64": np.int64}
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        data = np.frombuffer(raw[8 + header_len + start : 8 + header_len + end], dtype=dtypes[info["dtype"]])
        tensors[name] = data.reshape(info["shape"]).astype(np.float32)
    return tensors


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def _erf(x: np.ndarray) -> np.ndarray:
    # numpy has no erf; Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7) is exact enough here
    sign = np.sign(x)
    x = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * x)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return sign * (1.0 - poly * np.exp(-x * x))


def _gelu(x: np.ndarray) -> np.ndarray:
    # config "hidden_act": "gelu" is the exact (erf) form; llama.cpp uses the tanh
    # approximation, a difference far below the tests' tolerance
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


class BertReference:
    def __init__(self, weights: dict[str, np.ndarray], config: dict) -> None:
        self.w = weights
        self.n_layer = config["num_hidden_layers"]
        self.n_head = config["num_attention_heads"]
        self.eps = config["layer_norm_eps"]

    def _linear(self, x: np.ndarray, name: str) -> np.ndarray:
        # torch Linear stores weight as [out, in]
        return x @ self.w[name + ".weight"].T + self.w[name + ".bias"]

    def hidden_states(self, token_ids: list[int]) -> np.ndarray:
        """The last layer's output, one row per token (a single sequence: no padding mask)."""
        w, n = self.w, len(token_ids)
        # word + absolute position + token type 0 ("sentence A", as llama.cpp hardcodes)
        x = (w["embeddings.word_embeddings.weight"][token_ids]
             + w["embeddings.position_embeddings.weight"][:n]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps)
        for i in range(self.n_layer):
            p = f"encoder.layer.{i}."
            # bidirectional multi-head self-attention: [heads, tokens, head_dim]
            q, k, v = (self._linear(x, p + "attention.self." + m).reshape(n, self.n_head, -1).transpose(1, 0, 2)
                       for m in ("query", "key", "value"))
            scores = q @ k.transpose(0, 2, 1) / math.sqrt(q.shape[-1])
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            attn = (scores / scores.sum(axis=-1, keepdims=True)) @ v
            attn = attn.transpose(1, 0, 2).reshape(n, -1)
            # post-norm residual blocks, as in the original BERT
            x = _layer_norm(x + self._linear(attn, p + "attention.output.dense"),
                            w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"], self.eps)
            ffn = self._linear(_gelu(self._linear(x, p + "intermediate.dense")), p + "output.dense")
            x = _layer_norm(x + ffn, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], self.eps)
        return x

    def embed(self, token_ids: list[int]) -> np.ndarray:
        """sentence-transformers' embedding: mean over all tokens ([CLS] and [SEP] included), L2-normalized."""
        pooled = self.hidden_states(token_ids).mean(axis=0)
        return pooled / np.linalg.norm(pooled)


def load(folder: str | Path) -> BertReference:
    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    return BertReference(_read_safetensors(folder / "model.safetensors"), config)
