"""A long prompt beside short requests, through `autan serve`: a stream is running, a long
`/v1/completions` prompt arrives, then a short chat. Measured: the chat's time to first token,
the longest gap between the running stream's tokens while the prompt is read, and the long
prompt's own time. `--src DIR` runs the server from another checkout's sources (the same venv),
so a scheduler can be measured before and after a change on one machine in one run.

    python bench/long_prompt.py [--prompt-tokens 3000] [--src OTHER/src ...]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from report import write_section

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def stream_gaps(client: httpx.AsyncClient, body: dict, started: float) -> tuple[float, list[float]]:
    """(time to first token, the times of every token) of one streamed request."""
    times = []
    async with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as reply:
        async for line in reply.aiter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                chunk = json.loads(line[6:])
                if chunk.get("choices") and chunk["choices"][0]["delta"].get("content"):
                    times.append(time.perf_counter())
    return times[0] - started, times


async def scenario(url: str, prompt_tokens: int) -> dict[str, float]:
    async with httpx.AsyncClient(base_url=url, timeout=None) as client:
        words = " ".join(f"word{i % 97}" for i in range(prompt_tokens // 2))  # about 2 tokens a word
        ask = {"model": "smollm2", "temperature": 0, "messages": [{"role": "user", "content": "Tell a long story."}]}
        t0 = time.perf_counter()
        running = asyncio.create_task(stream_gaps(client, {**ask, "max_tokens": 400, "ignore_eos": True}, t0))
        await asyncio.sleep(1.0)  # the stream is decoding
        t1 = time.perf_counter()
        long = asyncio.create_task(client.post("/v1/completions", json={"model": "smollm2", "prompt": words,
                                                                       "max_tokens": 1}))  # fmt: skip
        await asyncio.sleep(1.0)  # the long prompt is being read
        t2 = time.perf_counter()
        chat_ttft, chat_times = await stream_gaps(client, {**ask, "max_tokens": 48, "ignore_eos": True}, t2)
        reply = await long
        long_seconds = time.perf_counter() - t1
        _, times = await running

        def longest_gap(times: list[float]) -> float:
            return max((b - a for a, b in itertools.pairwise(times) if t1 <= a <= t1 + long_seconds), default=0.0)

        return {"chat_ttft": chat_ttft, "stream_gap": longest_gap(times), "chat_gap": longest_gap(chat_times),
                "long_seconds": long_seconds, "prompt_tokens": reply.json()["usage"]["prompt_tokens"]}  # fmt: skip


def run(src: Path, prompt_tokens: int) -> dict[str, float]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(src)}
    server = subprocess.Popen([sys.executable, "-m", "autan.cli", "serve", "smollm2", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        asyncio.run(scenario(url, 200))  # warm-up
        return asyncio.run(scenario(url, prompt_tokens))
    finally:
        server.terminate()
        server.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompt-tokens", type=int, default=3000)
    parser.add_argument("--src", action="append", default=[], help="another checkout's src/ (measured first)")
    args = parser.parse_args()
    sources = [*(Path(s).resolve() for s in args.src), ROOT / "src"]
    rows = []
    for src in sources:
        r = run(src, args.prompt_tokens)
        label = "this checkout" if src == ROOT / "src" else f"`{src}`"
        rows.append(f"| {label} | {r['prompt_tokens']} | {r['chat_ttft']:.2f} | {r['chat_gap']:.2f} | "
                    f"{r['stream_gap']:.2f} | {r['long_seconds']:.1f} |")  # fmt: skip
    lines = [
        "SmolLM2-135M-Instruct Q4_1 through `autan serve` (default --max-batched-tokens 256): a stream decoding, "
        "then a long /v1/completions prompt, then 1 s later a chat streaming 48 tokens. Gaps are the longest "
        "between two tokens of a stream while the long prompt is read.",
        "",
        "| server sources | long prompt tokens | chat's first token s | chat's longest gap s | "
        "earlier stream's longest gap s | long prompt s |",
        "|---|---|---|---|---|---|",
        *rows,
    ]
    write_section("A long prompt beside short requests", "\n".join(lines))


if __name__ == "__main__":
    main()
