"""Where a decode step's time goes on the native kernels, timed inside the native code.

The default model, greedy, on the native step with its profiler on (`autan._native.
set_profiling`: a clock read at the end of each part of every block), for one stream at two
context lengths and for an engine step of 16 streams. What the native step does not time
(the output head, Python around the step: embedding, rotary tables, key lists, final norm,
sampling) is the rest of the wall time of the same steps.

    python bench/step_profile.py [--steps 64]
"""

from __future__ import annotations

import argparse
import time

import torch
from report import write_section

import autan
from autan import native, registry
from autan.engine.engine import Engine, EngineConfig
from autan.engine.sampling import SamplingParams
from autan.tokenizer import load_tokenizer


def profiled(step, steps: int) -> tuple[float, dict[str, float]]:
    """(ms per step, ms per step in each part) over `steps` calls of `step`."""
    kernels = native.module()
    kernels.set_profiling(True)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    total = (time.perf_counter() - start) / steps * 1e3
    parts = {name: ns / steps / 1e6 for name, ns in kernels.profile().items()}
    kernels.set_profiling(False)
    return total, parts


@torch.inference_mode()
def one_stream(model, context: int, steps: int) -> tuple[float, dict[str, float]]:
    cache = model.new_cache()
    model(torch.randint(0, model.config.vocab_size, (context,), generator=torch.Generator().manual_seed(0)), cache)
    token = torch.tensor([9])
    for _ in range(4):
        model(token, cache, last_only=True)
    return profiled(lambda: model(token, cache, last_only=True), steps)


def sixteen_streams(path, steps: int) -> tuple[float, dict[str, float]]:
    engine = Engine(autan.load_model(path), load_tokenizer(path), EngineConfig(max_running=16))
    params = SamplingParams(temperature=0.7, seed=0, max_tokens=steps + 32, ignore_eos=True)
    for i in range(16):
        engine.add_request(
            [{"role": "user", "content": f"Write a long story, number {i}."}], params, emit=lambda e: None
        )
    for _ in range(8):  # every prompt in, every request decoding
        engine.step()
    return profiled(engine.step, steps)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=64)
    args = parser.parse_args()
    if native.module() is None:
        raise SystemExit(f"this bench times the native step: {native.describe()}")
    path = registry.pull("smollm2", quiet=True)
    model = autan.load_model(path)
    runs = {
        "1 stream, 64 keys": one_stream(model, 64, args.steps),
        "1 stream, 512 keys": one_stream(model, 512, args.steps),
        "16 streams (engine step), ~40 keys each": sixteen_streams(path, args.steps),
    }
    parts = sorted(
        {p for _, timed in runs.values() for p in timed}, key=lambda p: -runs["1 stream, 64 keys"][1].get(p, 0)
    )
    rows = ["| ms per step | " + " | ".join(runs) + " |", "|---|" + "---|" * len(runs)]
    for part in parts:
        rows.append(f"| {part} | " + " | ".join(f"{timed.get(part, 0):.2f}" for _, timed in runs.values()) + " |")
    rows.append(
        "| the rest: output head, Python around the step, sampling | "
        + " | ".join(f"{total - sum(timed.values()):.2f}" for total, timed in runs.values())
        + " |"
    )
    rows.append("| **whole step** | " + " | ".join(f"**{total:.2f}**" for total, _ in runs.values()) + " |")
    rows.append(
        "| tokens/s | "
        + " | ".join(f"{(16 if '16' in name else 1) * 1e3 / total:.0f}" for name, (total, _) in runs.items())
        + " |"
    )
    lines = [
        f"SmolLM2-135M-Instruct Q4_1 on {native.describe()}, activations in {native.module().activation_parts()} "
        f"int8 parts; {args.steps} steps each, timed inside the native step (a clock read at the end of each part "
        "of every block, summed over the 30 blocks).",
        "",
        *rows,
    ]
    write_section("Where a decode step goes, timed inside the native step", "\n".join(lines))


if __name__ == "__main__":
    main()
