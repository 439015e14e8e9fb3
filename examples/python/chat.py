"""Streaming chat with a GGUF model, keeping the conversation's KV cache in a session.

    python examples/python/chat.py [MODEL] [--prompt TEXT ...] [--max-tokens N]

Without --prompt it reads your messages from the terminal (empty line or Ctrl-D to quit).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Iterator

import corral

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"


class ProgressBar:
    """A text progress bar on stderr, fed by Model(on_progress=...)."""

    def __init__(self, width: int = 30) -> None:
        self.width = width

    def update(self, fraction: float) -> None:
        filled = int(fraction * self.width)
        sys.stderr.write(f"\rloading [{'#' * filled}{'.' * (self.width - filled)}] {fraction:4.0%}")
        if fraction >= 1.0:
            sys.stderr.write("\n")
        sys.stderr.flush()


def turns(prompts: list[str]) -> Iterator[str]:
    if prompts:
        for prompt in prompts:
            print(f"you> {prompt}")
            yield prompt
        return
    while True:
        try:
            line = input("you> ").strip()
        except EOFError:
            return
        if not line:
            return
        yield line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", default=str(DEFAULT_MODEL))
    parser.add_argument("--prompt", action="append", default=[], help="a user message (repeatable)")
    parser.add_argument("--threads", type=int, default=None, help="default: the number of physical cores")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--temperature", type=float, default=0.7)
    args = parser.parse_args()

    bar = ProgressBar()
    with corral.Model(args.model, threads=args.threads, on_progress=bar.update) as model, model.session() as session:
        info = model.info
        print(f"{info.name}: {info.architecture}, {info.parameters / 1e6:.0f}M parameters, {info.quantization}")
        messages: list[dict[str, str]] = [{"role": "system", "content": "You are a helpful assistant."}]
        for prompt in turns(args.prompt):
            messages.append({"role": "user", "content": prompt})
            print("assistant> ", end="", flush=True)
            reply = []
            # `with` cancels the generation if Ctrl-C (KeyboardInterrupt) stops the loop.
            with session.chat_stream(messages, max_tokens=args.max_tokens, temperature=args.temperature, seed=1) as stream:
                for chunk in stream:
                    print(chunk.text, end="", flush=True)
                    reply.append(chunk.text)
                    if chunk.usage is not None:
                        usage = chunk.usage
            print(
                f"\n  [{usage.completion_tokens} tokens, {usage.generation_tokens_per_s:.1f} tok/s, "
                f"{usage.cached_tokens} prompt tokens reused]",
                file=sys.stderr,
            )
            messages.append({"role": "assistant", "content": "".join(reply)})


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        print()
