"""Many streams through HTTP: `autan serve` against llama.cpp's `llama-server -np N`.

Both serve the default model's GGUF file with the same threads. N clients each send one
streaming chat request at the same moment and read it to the end; every answer is exactly
--max-tokens tokens (ignore_eos, which both servers accept). Measured per server: aggregate
completion tokens/s (all tokens over the wall time from sending to the last token), time to
first token (median and worst) and the mean gap between a stream's tokens. Median of --repeat
rounds, after one warm-up round.

llama-server is built from source by bench/build-llama-cpp.sh (`make bench` runs it).

    python bench/serve.py [--streams 16] [--max-tokens 128] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import torch
from report import write_section

from autan import registry

ROOT = Path(__file__).resolve().parent.parent
LLAMA_SERVER = ROOT / ".bench" / "llama.cpp" / "bin" / "llama-server"
TOPICS = ["a dragon who learns to bake bread", "the history of Lyon", "how rain forms", "a robot on Mars"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args: list[str], url: str, log: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "AUTAN_API_KEYS"}  # both servers open, no key
    process = subprocess.Popen(args, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{args[0]} exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    process.kill()
    raise TimeoutError(log.read_text()[-2000:])


async def one_stream(client: httpx.AsyncClient, url: str, model: str, i: int, max_tokens: int, r: int) -> list[float]:
    # Each round asks new questions (the round number in it), so neither server answers from a
    # previous round's cache; within a round, the prompts share their beginning, as chats do.
    question = f"Write a long story about {TOPICS[i % len(TOPICS)]}. (round {r}, #{i})"
    body = {
        "model": model,
        "messages": [{"role": "user", "content": question}],
        "stream": True,
        "max_tokens": max_tokens,
        "temperature": 0.7,
        "seed": i,
        "ignore_eos": True,
    }
    times = []
    async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            choices = json.loads(line[6:]).get("choices") or [{}]
            if choices[0].get("delta", {}).get("content"):
                times.append(time.perf_counter())
    return times


async def round_of(url: str, model: str, streams: int, max_tokens: int, r: int) -> dict:
    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=streams)) as client:
        start_at = time.perf_counter()
        results = await asyncio.gather(*(one_stream(client, url, model, i, max_tokens, r) for i in range(streams)))
    end = max(t[-1] for t in results)
    tokens = sum(len(t) for t in results)
    ttft = [t[0] - start_at for t in results]
    gaps = [b - a for t in results for a, b in itertools.pairwise(t)]
    return {
        "tokens_per_second": tokens / (end - start_at),
        "ttft": statistics.median(ttft),
        "ttft_max": max(ttft),
        "itl": statistics.mean(gaps),
        "tokens": tokens,
    }


def measure(url: str, model: str, args: argparse.Namespace) -> dict:
    asyncio.run(round_of(url, model, args.streams, 8, 0))  # warm up
    rounds = [asyncio.run(round_of(url, model, args.streams, args.max_tokens, r)) for r in range(1, args.repeat + 1)]
    return {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}


def serve_and_measure(command: Callable[[int], list[str]], log: Path, args: argparse.Namespace) -> dict:
    """Start the server `command(port)` makes, measure it, stop it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = start(command(port), url, log)
    try:
        return measure(url, "smollm2", args)
    finally:
        process.terminate()
        process.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    path = registry.pull("smollm2", quiet=True)
    threads = torch.get_num_threads()
    results: dict[str, dict | str] = {}
    with tempfile.TemporaryDirectory() as tmp:

        def autan(port: int) -> list[str]:
            flags = f"serve smollm2 --port {port} --threads {threads} --max-running {args.streams}"
            return [sys.executable, "-m", "autan.cli", *flags.split(), "--db", f"sqlite:///{tmp}/bench.db"]

        def llama_server(port: int) -> list[str]:
            flags = f"--port {port} --host 127.0.0.1 -np {args.streams} -c {args.streams * 1024} -t {threads}"
            return [str(LLAMA_SERVER), "-m", str(path), *flags.split(), "--no-webui"]

        results["autan serve"] = serve_and_measure(autan, Path(tmp) / "autan.log", args)
        print("autan serve", results["autan serve"], flush=True)
        if LLAMA_SERVER.exists():
            results["llama-server"] = serve_and_measure(llama_server, Path(tmp) / "llama.log", args)
            print("llama-server", results["llama-server"], flush=True)
        else:
            results["llama-server"] = "not built (bench/build-llama-cpp.sh)"
    rows = []
    for name, r in results.items():
        if isinstance(r, str):
            rows.append(f"| {name} | {r} | | |")
        else:
            ttft = f"{r['ttft']:.2f} / {r['ttft_max']:.2f}"
            rows.append(f"| {name} | {r['tokens_per_second']:.1f} | {ttft} | {r['itl'] * 1000:.0f} |")
    lines = [
        f"SmolLM2-135M-Instruct Q4_1 through each server's HTTP API: {args.streams} streaming chat requests sent at "
        f"once, each answered with exactly {args.max_tokens} tokens (ignore_eos, temperature 0.7), {threads} threads, "
        f"median of {args.repeat} rounds. llama-server: `-np {args.streams} -c {args.streams * 1024}`, built from "
        "the llama.cpp sources of llama-cpp-python 0.3.36 (Release, native CPU flags).",
        "",
        "| server | tokens/s (all streams) | first token s (median / worst) | inter-token ms |",
        "|---|---|---|---|",
        *rows,
    ]
    a, b = results["autan serve"], results["llama-server"]
    if not isinstance(b, str):
        lines += [
            "",
            f"autan serve / llama-server: {a['tokens_per_second'] / b['tokens_per_second']:.2f}x the aggregate "
            f"throughput (goal: 3x), first token {a['ttft'] / b['ttft']:.2f}x the time (goal: at most 1x).",
        ]
    write_section(f"Serving {args.streams} streams against llama-server", "\n".join(lines))


if __name__ == "__main__":
    main()
