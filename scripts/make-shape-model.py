"""Writes a BENCH-ONLY model: the exact tensor shapes and hyperparameters of a published
architecture, filled with seeded random F16 weights and a made-up SentencePiece vocabulary of
the same size. Its text means nothing; its speed is that of the real model, because every
matrix product, attention and output layer has the real shapes (quantize it with
`corral quantize OUT.gguf Q.gguf Q4_K_M` to get the published file's mix of formats).

usage: make-shape-model.py SHAPE OUT.gguf      SHAPE: one of the names in SHAPES
"""

import sys

import gguf
import numpy as np

SEED = 20261205

# Hyperparameters as in each model's published config.json.
SHAPES = {
    # Gemma 3 270M: 640 wide, so llama.cpp's quantizer stores most of it as Q5_0/Q8_0.
    "gemma3-270m": dict(arch="gemma3", embd=640, ffn=2048, layers=18, heads=4, kv_heads=1, head_dim=256,
                        vocab=262144, eps=1e-6, rope_base=1e6, sliding_window=512),
    # Qwen2.5 0.5B: 896 wide; ffn_down (4864) is K-quant, the rest falls back.
    "qwen2-0.5b": dict(arch="qwen2", embd=896, ffn=4864, layers=24, heads=14, kv_heads=2, head_dim=64,
                       vocab=151936, eps=1e-6, rope_base=1e6, qkv_bias=True),
    # Qwen3 0.6B: 1024 wide (true K-quants), heads of 128 with their own Q/K norms.
    "qwen3-0.6b": dict(arch="qwen3", embd=1024, ffn=3072, layers=28, heads=16, kv_heads=8, head_dim=128,
                       vocab=151936, eps=1e-6, rope_base=1e6, qk_norm=True),
    # Llama 3.2 1B: 2048 wide, every layer a true K-quant.
    "llama-1b": dict(arch="llama", embd=2048, ffn=8192, layers=16, heads=32, kv_heads=8, head_dim=64,
                     vocab=128256, eps=1e-5, rope_base=5e5),
}


def vocabulary(size: int):
    """<pad> <eos> <bos> <unk>, the 256 byte tokens, then made-up word pieces."""
    tokens = ["<pad>", "<eos>", "<bos>", "<unk>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [gguf.TokenType.CONTROL] * 3 + [gguf.TokenType.UNKNOWN] + [gguf.TokenType.BYTE] * 256
    letters = "abcdefghijklmnopqrstuvwxyz"
    i = 0
    while len(tokens) < size:
        word, n = "", i
        while True:
            word += letters[n % 26]
            n //= 26
            if n == 0:
                break
        tokens.append("\u2581" + word if i % 2 == 0 else word)
        types.append(gguf.TokenType.NORMAL)
        i += 1
    scores = [0.0] * 260 + [-float(k) for k in range(size - 260)]
    return tokens, scores, types


def main() -> None:
    name, out = sys.argv[1], sys.argv[2]
    s = SHAPES[name]
    arch, embd, ffn, hd = s["arch"], s["embd"], s["ffn"], s["head_dim"]
    rng = np.random.default_rng(SEED)
    writer = gguf.GGUFWriter(out, arch)
    writer.add_name(f"{name} (bench shape, random weights)")
    writer.add_context_length(32768)
    writer.add_embedding_length(embd)
    writer.add_block_count(s["layers"])
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(s["heads"])
    writer.add_head_count_kv(s["kv_heads"])
    writer.add_key_length(hd)
    writer.add_value_length(hd)
    writer.add_layer_norm_rms_eps(s["eps"])
    writer.add_rope_freq_base(s["rope_base"])
    if "sliding_window" in s:
        writer.add_sliding_window(s["sliding_window"])
    if arch == "llama":
        writer.add_rope_dimension_count(hd)
    tokens, scores, types = vocabulary(s["vocab"])
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(2)
    writer.add_eos_token_id(1)
    writer.add_unk_token_id(3)
    writer.add_pad_token_id(0)

    def matrix(tensor: str, rows: int, cols: int) -> None:
        writer.add_tensor(tensor, (rng.standard_normal((rows, cols), dtype=np.float32) * 0.02).astype(np.float16))

    def norm(tensor: str, n: int) -> None:
        writer.add_tensor(tensor, np.ones(n, dtype=np.float32))

    matrix("token_embd.weight", s["vocab"], embd)  # tied: also the output layer
    norm("output_norm.weight", embd)
    q, kv = s["heads"] * hd, s["kv_heads"] * hd
    for i in range(s["layers"]):
        b = f"blk.{i}."
        norm(b + "attn_norm.weight", embd)
        matrix(b + "attn_q.weight", q, embd)
        matrix(b + "attn_k.weight", kv, embd)
        matrix(b + "attn_v.weight", kv, embd)
        matrix(b + "attn_output.weight", embd, q)
        if s.get("qkv_bias"):
            for part, n in (("attn_q", q), ("attn_k", kv), ("attn_v", kv)):
                writer.add_tensor(b + part + ".bias", np.zeros(n, dtype=np.float32))
        if arch == "gemma3" or s.get("qk_norm"):
            norm(b + "attn_q_norm.weight", hd)
            norm(b + "attn_k_norm.weight", hd)
        if arch == "gemma3":
            norm(b + "post_attention_norm.weight", embd)
            norm(b + "post_ffw_norm.weight", embd)
        norm(b + "ffn_norm.weight", embd)
        matrix(b + "ffn_gate.weight", ffn, embd)
        matrix(b + "ffn_up.weight", ffn, embd)
        matrix(b + "ffn_down.weight", embd, ffn)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


if __name__ == "__main__":
    main()
