"""The llama-cpp-python side of bench.py, run in its own process: llama-cpp-python ships its own
libggml*.so under the same sonames as corral's, so in a process that has imported corral the
dynamic loader hands it corral's ggml (and corral's CPU kernels) instead.

Reads a JSON request on stdin and prints the figures as JSON:
    {"mode": "single", "model": PATH, "threads": N, "prompt": [token ids], "generated": 128, "context": 2048}
        -> wall-clock prompt and generation tokens/s of one request on a fresh model
    {"mode": "sequential", "model": PATH, "threads": N, "prompts": [texts], "generated": 128, "context": 4096}
        -> aggregate generated tokens/s of the prompts served one after another
"""

from __future__ import annotations

import json
import sys
import time

import llama_cpp  # type: ignore[import-not-found]


def load(request: dict) -> llama_cpp.Llama:
    threads = request["threads"]
    return llama_cpp.Llama(model_path=request["model"], n_ctx=request["context"], n_batch=512, n_ubatch=512,
                           n_threads=threads, n_threads_batch=threads, flash_attn=request.get("flash_attention", False),
                           verbose=False)


def single(request: dict) -> dict[str, float]:
    llm = load(request)
    prompt = request["prompt"]
    token_times: list[float] = []
    started = time.perf_counter()
    # generate() never stops at end-of-generation by itself: like ignore_eos.
    for _ in llm.generate(prompt, top_k=1, temp=0.0, reset=True):
        token_times.append(time.perf_counter())
        if len(token_times) == request["generated"]:
            break
    llm.close()
    first, last = token_times[0], token_times[-1]
    return {
        "prompt_tokens_per_s": len(prompt) / (first - started),
        "generation_tokens_per_s": (len(token_times) - 1) / max(last - first, 1e-9),
    }


def sequential(request: dict) -> dict[str, float]:
    """The way llama-cpp-python's server serves several requests: one at a time."""
    llm = load(request)
    started = time.perf_counter()
    generated = 0
    for prompt in request["prompts"]:
        for _ in llm.generate(llm.tokenize(prompt.encode()), top_k=1, temp=0.0, reset=True):
            generated += 1
            if generated % request["generated"] == 0:
                break
    tokens_per_s = generated / (time.perf_counter() - started)
    llm.close()
    return {"tokens_per_s": tokens_per_s}


if __name__ == "__main__":
    request = json.load(sys.stdin)
    print(json.dumps({"single": single, "sequential": sequential}[request["mode"]](request)))
