"""Prompt and generation speed through corral's Python binding, next to the Rust core and,
when installed, llama-cpp-python: same model, threads, prompt (512 tokens) and output
(128 greedy tokens, end-of-generation ignored), interleaved round by round so machine noise
hits every side alike; medians and best rounds are reported. A benchmark, not a test.

    python bindings-python/bench.py [--model PATH] [--threads N] [--rounds 3] [--llama-cpp-python] [--concurrency] [--json]

Rows:
  corral core        `target/release/corral bench --repeats 1 --json` each round (its own process):
                     the engine's own figures, and its plain llama-cpp-2 decode loop.
  corral Python      this process: `complete()` (one result, like the core's bench) with the
                     figures the engine reports in its `usage` (same definitions as the core);
                     and a stream consumed token by token from Python: its `usage` and
                     wall-clock figures.
  llama-cpp-python   wall clock around `Llama.generate` (prompt: start to first token;
                     generation: tokens after the first over the time since it), in its own
                     process (bench_llama_cpp_python.py): in this one it would run on corral's ggml.
                     Its default (flash attention off), and with flash attention on.
Every side loads the model afresh each round and measures its first request, as the core's
`--repeats 1` does (later requests on one model can run at a different speed).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import corral

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
CORRAL_CLI = ROOT / "target" / "release" / "corral"
# The text `corral bench` builds its prompt from (core/src/bench.rs): identical prompts.
PARAGRAPH = (
    "The history of computing is a story of people, ideas and machines. Early calculating "
    "devices gave way to programmable computers, then to personal computers and phones. "
)
PROMPT_TOKENS = 512
GENERATED_TOKENS = 128
CONTEXT_LENGTH = 2048

Figures = dict[str, float]


def bench_prompt(model: corral.Model, n: int) -> list[int]:
    text = ""
    tokens: list[int] = []
    while len(tokens) < n:
        text += PARAGRAPH
        tokens = model.tokenize(text)
    return tokens[:n]


def wall_clock(prompt_tokens: int, token_times: list[float], started: float) -> Figures:
    """Prompt: start to first token. Generation: tokens after the first over the time since it."""
    first, last = token_times[0], token_times[-1]
    return {
        "prompt_tokens_per_s": prompt_tokens / (first - started),
        "generation_tokens_per_s": (len(token_times) - 1) / max(last - first, 1e-9),
    }


def corral_python(model_path: Path, threads: int, prompt: list[int]) -> dict[str, Figures]:
    # A fresh model each round, like `corral bench --repeats 1`: every side measures the first
    # request after loading.
    with corral.Model(model_path, context_length=CONTEXT_LENGTH, threads=threads) as model:
        whole = model.complete(prompt, max_tokens=GENERATED_TOKENS, temperature=0, ignore_eos=True).usage
    # The stream on a fresh model too: every side measures the first request after loading.
    with corral.Model(model_path, context_length=CONTEXT_LENGTH, threads=threads) as model:
        token_times: list[float] = []
        usage = None
        started = time.perf_counter()
        for chunk in model.complete_stream(prompt, max_tokens=GENERATED_TOKENS, temperature=0, ignore_eos=True):
            now = time.perf_counter()
            token_times.extend(now for _ in chunk.tokens)
            usage = chunk.usage or usage
    assert usage is not None
    return {
        "complete": {
            "prompt_tokens_per_s": whole.prompt_tokens_per_s,
            "generation_tokens_per_s": whole.generation_tokens_per_s,
        },
        "usage": {
            "prompt_tokens_per_s": usage.prompt_tokens_per_s,
            "generation_tokens_per_s": usage.generation_tokens_per_s,
        },
        "wall": wall_clock(len(prompt), token_times, started),
    }


def corral_core(model_path: Path, threads: int) -> dict[str, Figures]:
    cmd = [str(CORRAL_CLI), "bench", str(model_path), "--threads", str(threads), "--repeats", "1", "--json"]
    report = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    return {
        "core": {
            "prompt_tokens_per_s": report["prompt_tokens_per_s"],
            "generation_tokens_per_s": report["generation_tokens_per_s"],
        },
        "plain": {
            "prompt_tokens_per_s": report["plain_prompt_tokens_per_s"],
            "generation_tokens_per_s": report["plain_generation_tokens_per_s"],
        },
    }


def llama_cpp_python_child(request: dict) -> dict[str, float]:
    """Runs bench_llama_cpp_python.py in its own process (see there why)."""
    script = Path(__file__).resolve().parent / "bench_llama_cpp_python.py"
    done = subprocess.run([sys.executable, str(script)], input=json.dumps(request), check=True, capture_output=True, text=True)
    return json.loads(done.stdout)


def llama_cpp_python(model_path: Path, threads: int, prompt: list[int]) -> dict[str, Figures]:
    """With its default (flash attention off) and with flash attention on: the better of the two
    is the peer to beat."""
    figures = {}
    for row, flash_attention in (("llama-cpp-python", False), ("llama-cpp-python-fa", True)):
        request = {"mode": "single", "model": str(model_path), "threads": threads, "prompt": prompt,
                   "generated": GENERATED_TOKENS, "context": CONTEXT_LENGTH, "flash_attention": flash_attention}
        figures[row] = llama_cpp_python_child(request)
    return figures


ROWS = [
    ("core", "corral core (Rust engine)"),
    ("complete", "corral Python complete()"),
    ("usage", "corral Python stream (usage)"),
    ("wall", "corral Python stream (wall)"),
    ("plain", "plain llama-cpp-2 loop"),
    ("llama-cpp-python", "llama-cpp-python (wall clock)"),
    ("llama-cpp-python-fa", "  with flash attention"),
]


# Raw-text continuations (llama-cpp-python's generate() loop stops nowhere by itself, but the
# prompts match the Node bench): both sides count the tokens they generated.
TOPICS = ["the ocean", "a mountain village", "the first computer", "a lost cat", "the history of bread",
          "a journey to Mars", "an old lighthouse", "the city at night"]
STORY_PROMPTS = [f"The story of {t} begins on a cold morning, when" for t in TOPICS]


def concurrency(model_path: Path, threads: int, with_llama_cpp_python: bool) -> dict[str, dict[str, float]]:
    """8 requests on one model: concurrent (asyncio.gather) and one after another. llama-cpp-python
    serves them the way its server does, one at a time behind a lock (one `Llama` object is not
    safe to use from several threads), so its concurrent figure is its sequential one."""
    import asyncio

    results: dict[str, dict[str, float]] = {}
    with corral.Model(model_path, context_length=4096, threads=threads, max_sequences=8) as model:
        options = dict(max_tokens=GENERATED_TOKENS, temperature=0, ignore_eos=True)
        model.complete("Hello", max_tokens=4)  # warm-up

        async def together() -> int:
            done = await asyncio.gather(*(model.complete_async(p, **options) for p in STORY_PROMPTS))
            return sum(c.usage.completion_tokens for c in done)

        model.clear_cache()
        started = time.perf_counter()
        concurrent = asyncio.run(together()) / (time.perf_counter() - started)
        model.clear_cache()
        started = time.perf_counter()
        sequential = sum(model.complete(p, **options).usage.completion_tokens for p in STORY_PROMPTS)
        sequential /= time.perf_counter() - started
        results["corral Python"] = {"concurrent": concurrent, "sequential": sequential}
    if with_llama_cpp_python:
        request = {"mode": "sequential", "model": str(model_path), "threads": threads, "prompts": STORY_PROMPTS,
                   "generated": GENERATED_TOKENS, "context": 4096}
        sequential = llama_cpp_python_child(request)["tokens_per_s"]
        results["llama-cpp-python"] = {"concurrent": sequential, "sequential": sequential}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--threads", type=int, default=corral.default_threads())
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--llama-cpp-python", action="store_true", help="also measure llama-cpp-python (must be installed)")
    parser.add_argument("--json", action="store_true", help="print the medians as JSON")
    parser.add_argument("--verbose", action="store_true", help="print every round's figures to stderr")
    parser.add_argument("--concurrency", action="store_true", help="8 requests on one model instead (see concurrency())")
    args = parser.parse_args()
    if args.concurrency:
        results = concurrency(args.model, args.threads, args.llama_cpp_python)
        if args.json:
            print(json.dumps({"threads": args.threads, "results": results}, indent=2))
            return
        print(f"8 requests x {GENERATED_TOKENS} tokens, threads: {args.threads}   aggregate generated tok/s")
        print(f"{'':24} {'concurrent':>11} {'sequential':>11} {'ratio':>7}")
        for name, r in results.items():
            print(f"{name:24} {r['concurrent']:11.1f} {r['sequential']:11.1f} {r['concurrent'] / r['sequential']:7.2f}")
        if "llama-cpp-python" in results:
            ratio = results["corral Python"]["concurrent"] / results["llama-cpp-python"]["concurrent"]
            print(f"corral / llama-cpp-python, 8 requests: {ratio:.2f}x")
        return
    if not CORRAL_CLI.is_file():
        sys.exit(f"{CORRAL_CLI} is missing: cargo build --release -p corral-cli")

    with corral.Model(args.model, context_length=CONTEXT_LENGTH, threads=args.threads) as model:
        prompt = bench_prompt(model, PROMPT_TOKENS)
    sides: list[Callable[[], dict[str, Figures]]] = [
        lambda: corral_python(args.model, args.threads, prompt),
        lambda: corral_core(args.model, args.threads),
    ]
    if args.llama_cpp_python:
        sides.append(lambda: llama_cpp_python(args.model, args.threads, prompt))

    samples: dict[str, list[Figures]] = {}
    for side in sides:  # warm-up round: page in the model, start threads
        side()
    for round_ in range(args.rounds):
        for side in sides:
            for name, figures in side().items():
                samples.setdefault(name, []).append(figures)
                if args.verbose:
                    print(f"  {name:18} {figures['prompt_tokens_per_s']:8.1f} {figures['generation_tokens_per_s']:8.1f}", file=sys.stderr)
        print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)

    medians = {
        name: {key: statistics.median(f[key] for f in runs) for key in runs[0]} for name, runs in samples.items()
    }
    # Interference from other load only ever slows a run down: the best round of each side is
    # the steadiest figure on a shared machine, the median the typical one.
    bests = {name: {key: max(f[key] for f in runs) for key in runs[0]} for name, runs in samples.items()}
    if args.json:
        print(json.dumps({"threads": args.threads, "rounds": args.rounds, "medians": medians, "bests": bests}, indent=2))
        return
    print(
        f"model: {args.model.name}   threads: {args.threads}   prompt: {PROMPT_TOKENS} tokens   "
        f"generated: {GENERATED_TOKENS} tokens   {args.rounds} interleaved rounds"
    )
    for title, table in (("median of the rounds", medians), ("best round", bests)):
        core = table["core"]
        print(f"{title:32} {'prompt tok/s':>13} {'gen tok/s':>10} {'prompt ratio':>13} {'gen ratio':>10}")
        for key, label in ROWS:
            if key in table:
                m = table[key]
                pp, tg = m["prompt_tokens_per_s"], m["generation_tokens_per_s"]
                print(
                    f"  {label:30} {pp:13.1f} {tg:10.1f} {pp / core['prompt_tokens_per_s']:13.3f} "
                    f"{tg / core['generation_tokens_per_s']:10.3f}"
                )
    print("ratios are against the corral core row")


if __name__ == "__main__":
    main()
