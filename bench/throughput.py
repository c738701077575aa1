"""Many streams at once on the default model: aggregate throughput and per-request latency.

For 1, 2, 4, 8, 16 and 32 concurrent requests (each a chat prompt answered with exactly
--max-tokens tokens), measures completion tokens/s over all requests, time to first token and
the mean gap between a request's tokens. In the same run, llama.cpp (llama-cpp-python, the
same GGUF file, the same thread count) answers the same prompt as a single stream.

    python bench/throughput.py [--max-tokens 128] [--concurrency 1 2 4 8 16 32]

llama-cpp-python is a benchmark-only dependency: `pip install llama-cpp-python==0.3.36`
(it compiles llama.cpp, a few minutes); without it, its row says so.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

import torch
from report import write_section

import autan
from autan import registry
from autan.engine.engine import Engine, EngineConfig
from autan.engine.output import Completion, Delta
from autan.engine.sampling import SamplingParams
from autan.tokenizer import load_tokenizer

TOPICS = ["a dragon who learns to bake bread", "the history of Lyon", "how rain forms", "a robot on Mars"]


def prompt(i: int) -> list[dict]:
    return [{"role": "user", "content": f"Write a long story about {TOPICS[i % len(TOPICS)]}. (#{i})"}]


def run_autan(engine: Engine, concurrency: int, max_tokens: int) -> dict:
    times: dict[int, list[float]] = {i: [] for i in range(concurrency)}
    done: dict[int, Completion] = {}
    start = time.perf_counter()

    def recorder(i: int):
        def emit(event):
            if isinstance(event, Delta) and event.token_ids:
                times[i].append(time.perf_counter())
            elif isinstance(event, Completion):
                done[i] = event
            elif isinstance(event, BaseException):
                raise event

        return emit

    params = SamplingParams(temperature=0.7, seed=0, max_tokens=max_tokens, ignore_eos=True)
    for i in range(concurrency):
        engine.add_request(prompt(i), params, emit=recorder(i))
    engine.run_until_idle()
    elapsed = time.perf_counter() - start
    tokens = sum(c.usage.completion_tokens for c in done.values())
    ttft = [t[0] - start for t in times.values()]
    gaps = [b - a for t in times.values() for a, b in itertools.pairwise(t)]
    return {
        "tokens_per_second": tokens / elapsed,
        "ttft": statistics.median(ttft),
        "ttft_max": max(ttft),
        "itl": statistics.mean(gaps),
        "stream": 1 / statistics.mean(gaps),
    }


def run_llama_cpp(path, max_tokens: int) -> dict | str:
    try:
        from llama_cpp import Llama
    except ImportError:
        return "not installed (pip install llama-cpp-python==0.3.36)"
    llm = Llama(str(path), n_threads=torch.get_num_threads(), n_ctx=2048, verbose=False)
    llm.create_chat_completion(prompt(1), max_tokens=8)  # warm up
    start = time.perf_counter()
    times = []
    for chunk in llm.create_chat_completion(prompt(0), max_tokens=max_tokens, temperature=0.7, seed=0, stream=True):
        if chunk["choices"][0]["delta"].get("content"):
            times.append(time.perf_counter())
    gaps = [b - a for a, b in itertools.pairwise(times)]
    return {
        "tokens_per_second": len(times) / (times[-1] - start),
        "ttft": times[0] - start,
        "ttft_max": times[0] - start,
        "itl": statistics.mean(gaps),
        "stream": 1 / statistics.mean(gaps),
        "tokens": len(times),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    args = parser.parse_args()
    path = registry.pull("smollm2", quiet=True)
    engine = Engine(autan.load_model(path), load_tokenizer(path), EngineConfig(max_running=max(args.concurrency)))
    run_autan(engine, 1, 4)  # warm up
    rows, results = [], {}
    for c in args.concurrency:
        r = results[c] = run_autan(engine, c, args.max_tokens)
        rows.append(
            f"| autan | {c} | {r['tokens_per_second']:.1f} | {r['stream']:.1f} | {r['ttft']:.2f} / {r['ttft_max']:.2f} "
            f"| {r['itl'] * 1000:.0f} |"
        )
        print(rows[-1], flush=True)
    reference = run_llama_cpp(path, args.max_tokens)
    if isinstance(reference, str):
        rows.append(f"| llama.cpp | 1 | {reference} | | | |")
    else:
        r = reference
        rows.append(
            f"| llama.cpp (llama-cpp-python) | 1 | {r['tokens_per_second']:.1f} | {r['stream']:.1f} | "
            f"{r['ttft']:.2f} | {r['itl'] * 1000:.0f} |"
        )
    lines = [
        f"SmolLM2-135M-Instruct Q4_1, chat prompts answered with {args.max_tokens} tokens each (temperature 0.7, "
        "end-of-sequence ignored), all requests submitted at once. Throughput: completion tokens/s over all "
        "requests, from submission to the last token. Per stream: 1 / mean gap between a request's tokens. "
        "Time to first token: median / worst.",
        "",
        "| engine | concurrent | tokens/s (all) | tokens/s (per stream) | first token s | inter-token ms |",
        "|---|---|---|---|---|---|",
        *rows,
    ]
    if 1 in results and 8 in results:
        ratio = results[8]["tokens_per_second"] / results[1]["tokens_per_second"]
        lines += ["", f"Throughput at 8 concurrent streams: {ratio:.1f}x the single stream."]
    if not isinstance(reference, str) and 1 in results:
        lines.append(
            f"Single stream against llama.cpp: {results[1]['stream'] / reference['stream']:.2f}x its decode rate."
        )
    write_section("Engine: concurrent streams", "\n".join(lines))


if __name__ == "__main__":
    main()
