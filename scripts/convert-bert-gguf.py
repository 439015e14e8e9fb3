#!/usr/bin/env python3
"""Converts a sentence-transformers BERT folder (all-MiniLM-L6-v2) to GGUF, without torch.

    convert-bert-gguf.py SRC_DIR OUT.gguf {f16,q8_0} [--rank-test-head SEED]

Mirrors llama.cpp's convert_hf_to_gguf.py `BertModel` (keys, tensor names, WordPiece vocab
with phantom spaces, which tensors stay f32), so the output loads like an official
conversion. Needs only numpy, PyYAML and gguf (pinned by scripts/fetch-embedding-models.sh).
The output is deterministic: the same inputs and versions give the same bytes.

--rank-test-head SEED adds a TEST-ONLY reranking head with seeded random weights and sets
pooling to RANK: the scores it gives are meaningless, only their plumbing is tested.
"""
import argparse
import json
import struct
import sys
from pathlib import Path

import numpy as np
import gguf

ARCH = gguf.MODEL_ARCH.BERT
F32, F16, Q8_0 = (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16,
                  gguf.GGMLQuantizationType.Q8_0)
SKIPPED = {"embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias"}


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """safetensors: u64 little-endian header length, JSON header, then raw little-endian data."""
    dtypes = {"F32": np.float32, "F16": np.float16, "I64": np.int64}
    raw = path.read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + header_len])
    base = 8 + header_len
    tensors = {}
    for name, info in header.items():  # header order is the file's (sorted) order
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        dtype = np.dtype(dtypes[info["dtype"]])
        array = np.frombuffer(raw, dtype=dtype, count=(end - start) // dtype.itemsize, offset=base + start)
        tensors[name] = array.reshape(info["shape"])
    return tensors


def tensor_type(gguf_name: str, array: np.ndarray, outtype: str) -> gguf.GGMLQuantizationType:
    """convert_hf_to_gguf's choice: 1-D tensors, norms, position and token-type embeddings stay f32."""
    if array.ndim <= 1 or gguf_name.endswith("_norm.weight") or not gguf_name.endswith(".weight"):
        return F32
    if gguf_name.startswith(("position_embd.", "token_types.")):
        return F32
    return Q8_0 if outtype == "q8_0" else F16


def add_vocab(writer: gguf.GGUFWriter, src: Path, n_vocab: int, type_vocab_size: int) -> None:
    tokenizer = json.loads((src / "tokenizer.json").read_text(encoding="utf-8"))
    id_to_token = {i: t for t, i in tokenizer["model"]["vocab"].items()}
    for added in tokenizer["added_tokens"]:
        id_to_token[added["id"]] = added["content"]
    control = {added["id"] for added in tokenizer["added_tokens"] if added["special"]}
    assert sorted(id_to_token) == list(range(n_vocab)), "vocab ids must be 0..vocab_size-1"

    tokens, toktypes = [], []
    for i in range(n_vocab):
        token = id_to_token[i]
        if i in control:  # [PAD] [UNK] [CLS] [SEP] [MASK] are kept verbatim
            toktypes.append(gguf.TokenType.CONTROL)
        else:
            # llama.cpp's WPM tokenizer matches "▁word" for a word start and the bare piece
            # for a "##" continuation (convert_hf_to_gguf's "phantom space" vocab)
            token = token[2:] if token.startswith("##") else "\u2581" + token
            toktypes.append(gguf.TokenType.NORMAL)
        tokens.append(token)

    normalizer = tokenizer["normalizer"]
    lowercase = bool(normalizer.get("lowercase", True))
    strip_accents = normalizer.get("strip_accents")
    writer.add_token_type_count(type_vocab_size)
    writer.add_tokenizer_model("bert")
    # the pre-tokenizer name convert_hf_to_gguf finds for this (bert-base-uncased) tokenizer;
    # llama.cpp ignores it for WPM vocabularies
    writer.add_tokenizer_pre("bert-bge")
    writer.add_token_list(tokens)
    writer.add_token_types(toktypes)
    # newer llama.cpp reads these (defaults: true, = lowercase); HF's strip_accents=None
    # means "follow lowercase"
    writer.add_bool("tokenizer.ggml.normalizer.lowercase", lowercase)
    writer.add_bool("tokenizer.ggml.normalizer.strip_accents",
                    lowercase if strip_accents is None else bool(strip_accents))
    # bos=[CLS], eos=[SEP], add_bos/add_eos from the TemplateProcessing "[CLS] $A [SEP]",
    # add_sep=false from its pair form "[CLS] $A [SEP] $B [SEP]": exactly what convert does
    # (GGUF has no key for the cls id: llama.cpp takes the [CLS] row through bos)
    special = gguf.SpecialVocab(src, load_merges=False, n_vocab=n_vocab,
                                special_token_types=("bos", "eos", "unk", "sep", "pad", "mask"))
    special.add_to_gguf(writer, quiet=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("outtype", choices=["f16", "q8_0"])
    parser.add_argument("--rank-test-head", type=int, metavar="SEED")
    parser.add_argument("--name", default=None)
    args = parser.parse_args()

    config = json.loads((args.src / "config.json").read_text())
    weights = read_safetensors(args.src / "model.safetensors")
    n_embd, n_layer = config["hidden_size"], config["num_hidden_layers"]
    rank = args.rank_test_head is not None

    writer = gguf.GGUFWriter(args.out, gguf.MODEL_ARCH_NAMES[ARCH])
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(args.name or args.src.name)
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(n_embd)
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_block_count(n_layer)
    writer.add_head_count(config["num_attention_heads"])
    writer.add_layer_norm_eps(config["layer_norm_eps"])
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0 if args.outtype == "q8_0" else gguf.LlamaFileType.MOSTLY_F16)
    writer.add_causal_attention(False)
    if rank:
        writer.add_pooling_type(gguf.PoolingType.RANK)
        writer.add_classifier_output_labels(["score"])  # n_cls_out = 1
    else:
        # 1_Pooling/config.json: pooling_mode_mean_tokens
        pooling = json.loads((args.src / "1_Pooling" / "config.json").read_text())
        assert pooling["pooling_mode_mean_tokens"], "only mean pooling is handled"
        writer.add_pooling_type(gguf.PoolingType.MEAN)
    add_vocab(writer, args.src, config["vocab_size"], config["type_vocab_size"])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)

    names = gguf.get_tensor_name_map(ARCH, n_layer)
    tensors = []
    for hf_name, array in weights.items():
        if hf_name in SKIPPED:
            continue
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            sys.exit(f"no GGUF name for tensor {hf_name}")
        tensors.append((name, array))
    if rank:
        # RoBERTa-style head that llama.cpp's RANK pooling applies to the [CLS] row:
        # score = cls.output @ tanh(cls @ h + cls.bias) + cls.output.bias
        # Uniform draws (exact integer-to-float arithmetic, unlike normal()'s exp/log) keep
        # the bytes the same on every platform; bound sqrt(3/n) gives unit-scale pre-activations.
        rng = np.random.default_rng(args.rank_test_head)
        bound = float(np.sqrt(3.0 / n_embd))
        tensors += [
            ("cls.weight", rng.uniform(-bound, bound, (n_embd, n_embd)).astype(np.float32)),
            ("cls.bias", rng.uniform(-0.02, 0.02, n_embd).astype(np.float32)),
            ("cls.output.weight", rng.uniform(-bound, bound, (1, n_embd)).astype(np.float32)),
            ("cls.output.bias", np.zeros(1, dtype=np.float32)),
        ]

    for name, array in tensors:
        qtype = tensor_type(name, array, args.outtype)
        data = gguf.quants.quantize(np.ascontiguousarray(array, dtype=np.float32), qtype)
        writer.add_tensor(name, data, raw_dtype=qtype if qtype == Q8_0 else None)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file(progress=False)
    writer.close()


if __name__ == "__main__":
    main()
