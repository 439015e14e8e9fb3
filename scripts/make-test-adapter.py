"""Writes a TEST-ONLY LoRA adapter for the default model (SmolLM2-135M, llama architecture):
rank-8 lora_a/lora_b pairs on every layer's attn_q and attn_v, seeded random values. It
changes the model's output; it teaches it nothing.

usage: make-test-adapter.py BASE.gguf OUT.gguf SEED
"""

import sys

import gguf
import numpy as np

RANK = 8
ALPHA = 16.0


def main() -> None:
    base, out, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    reader = gguf.GGUFReader(base)
    arch = bytes(reader.fields["general.architecture"].parts[-1]).decode()
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(out, arch)
    writer.add_string("general.type", "adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", ALPHA)
    for tensor in reader.tensors:
        if not tensor.name.endswith((".attn_q.weight", ".attn_v.weight")):
            continue
        n_in, n_out = (int(n) for n in tensor.shape[:2])  # ggml order: columns, rows
        # ggml shapes [n_in, rank] and [rank, n_out]: numpy arrays are the reverse.
        a = rng.standard_normal((RANK, n_in)).astype(np.float32) / np.float32(np.sqrt(n_in))
        b = rng.standard_normal((n_out, RANK)).astype(np.float32) * np.float32(0.05)
        writer.add_tensor(tensor.name + ".lora_a", a)
        writer.add_tensor(tensor.name + ".lora_b", b)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


if __name__ == "__main__":
    main()
