"""asyncio with corral: several chats at once (one model batches them), then a streamed answer,
while a heartbeat task shows the event loop never blocks.

    python examples/python/async_chat.py [MODEL] [--max-tokens N]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

import corral

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
QUESTIONS = ["What is the capital of France?", "Name three fruits.", "What is 7 times 6?"]


async def heartbeat(beats: list[float]) -> None:
    while True:
        beats.append(time.perf_counter())
        await asyncio.sleep(0.01)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", default=str(DEFAULT_MODEL))
    parser.add_argument("--threads", type=int, default=None, help="default: the number of physical cores")
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args()

    beats: list[float] = []
    ticker = asyncio.create_task(heartbeat(beats))
    with corral.Model(args.model, threads=args.threads) as model:
        answers = await asyncio.gather(
            *(model.chat_async([{"role": "user", "content": q}], max_tokens=args.max_tokens, temperature=0) for q in QUESTIONS)
        )
        for question, answer in zip(QUESTIONS, answers):
            print(f"Q: {question}\nA: {answer.text.strip()}  [{answer.finish_reason}]\n")
        print(f"gathered {len(answers)} answers")

        print("streaming: ", end="", flush=True)
        async for chunk in model.chat_stream_async(
            [{"role": "user", "content": "Write a haiku about rivers."}], max_tokens=args.max_tokens, temperature=0
        ):
            print(chunk.text, end="", flush=True)
        print()
    ticker.cancel()
    longest = max(b - a for a, b in zip(beats, beats[1:]))
    print(f"longest event-loop pause: {longest * 1000:.0f} ms")


if __name__ == "__main__":
    asyncio.run(main())
