"""Time to first token of a long prompt: autan against llama-bench, same GGUF file, same threads.

autan runs the whole prompt through the model (the engine's prefill, last position's logits);
llama-bench's ppN is the same work. The engines take turns for --rounds rounds (a shared
machine's speed moves from minute to minute) and the medians are kept; autan in its own process,
loaded once, after one warm-up prompt.

    python bench/first_token.py [--tokens 4096] [--rounds 2] [--model smollm2 | PATH.gguf]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from dense7b import LLAMA_BENCH
from report import cpu, write_section

from autan import native, registry


def model_path(name: str) -> Path:
    return Path(name) if name.endswith(".gguf") else registry.pull(name, quiet=True)


def autan_seconds(path: Path, tokens: int, rounds: int) -> list[float]:
    """Seconds for the whole prompt, `rounds` times, in this process (the caller's own)."""
    import autan

    model = autan.load_model(path)
    prompt = torch.randint(0, 49152, (tokens,), generator=torch.Generator().manual_seed(0))
    out = []
    with torch.inference_mode():
        model(prompt[:64], model.new_cache(), last_only=True)  # thread pools, buffers
        for _ in range(rounds):
            start = time.perf_counter()
            model(prompt, model.new_cache(), last_only=True)
            out.append(time.perf_counter() - start)
    return out


def llama_seconds(path: Path, tokens: int) -> float | str:
    if not LLAMA_BENCH.exists():
        return "not built (bench/build-llama-cpp.sh)"
    command = [str(LLAMA_BENCH), "-m", str(path), "-t", str(torch.get_num_threads()), "-p", str(tokens)]
    run = subprocess.run([*command, "-n", "0", "-r", "1", "-o", "json"], capture_output=True, text=True)
    if run.returncode != 0:
        return f"failed: {run.stderr.strip().splitlines()[-1] if run.stderr.strip() else run.returncode}"
    return tokens / json.loads(run.stdout)[0]["avg_ts"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--engine", help=argparse.SUPPRESS)
    args = parser.parse_args()
    path = model_path(args.model)
    if args.engine == "autan":
        print(json.dumps(autan_seconds(path, args.tokens, 1)))
        return
    ours, theirs = [], []
    for _ in range(args.rounds):  # taking turns, each autan run in a fresh process
        peer = llama_seconds(path, args.tokens)
        if isinstance(peer, float):
            theirs.append(peer)
        command = [sys.executable, __file__, "--engine", "autan", "--tokens", str(args.tokens), "--model", args.model]
        run = subprocess.run(command, capture_output=True, text=True, check=True)
        ours += json.loads(run.stdout.strip().splitlines()[-1])
        print("autan", ours[-1], "llama-bench", peer, flush=True)
    a = statistics.median(ours)
    b = statistics.median(theirs) if theirs else None
    rows = [
        "| | autan | llama-bench | autan / llama-bench |",
        "|---|---|---|---|",
        f"| time to first token, {args.tokens}-token prompt (s) | {a:.2f} | "
        + (f"{b:.2f} | {a / b:.2f} |" if b else f"{peer} | |"),
    ]
    lines = [
        f"{path.name}, a {args.tokens}-token prompt of random tokens, {torch.get_num_threads()} threads, medians of "
        f"{args.rounds} rounds taken in turns. CPU: {cpu()}; autan runs {native.describe()}.",
        "",
        *rows,
    ]
    write_section(f"Time to first token of a long prompt: {path.stem} on {cpu()}", "\n".join(lines))


if __name__ == "__main__":
    main()
