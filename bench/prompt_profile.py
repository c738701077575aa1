"""Where a prompt chunk's time goes on the 7B shape, timed inside the native step.

A 96-row chunk (the most the native step takes: model/transformer.py's NATIVE_MAX_ROWS) of
random tokens through bench/dense7b.py's Mistral-7B-shaped Q4_0 file, with the native step's
profiler on, once with the activations in two int8 parts and once in one.

    python bench/prompt_profile.py
"""

from __future__ import annotations

import time

import torch
from dense7b import FILES, make_file
from report import cpu, write_section

import autan
from autan import native
from autan.model.transformer import NATIVE_MAX_ROWS


@torch.inference_mode()
def main() -> None:
    make_file("q4_0")
    kernels = native.module()
    model = autan.load_model(FILES["q4_0"])
    prompt = torch.randint(0, 49152, (NATIVE_MAX_ROWS,), generator=torch.Generator().manual_seed(0))
    model(prompt[:16], model.new_cache(), last_only=True)  # thread pools, buffers
    before = kernels.activation_parts(), kernels.activation_parts(prompt=True)
    rows = ["| ms per chunk | two parts | one part |", "|---|---|---|"]
    results = {}
    for parts in (2, 1):
        kernels.set_activation_parts(parts)
        kernels.set_profiling(True)
        start = time.perf_counter()
        model(prompt, model.new_cache(), last_only=True)
        total = time.perf_counter() - start
        results[parts] = ({k: v / 1e6 for k, v in kernels.profile().items()}, total * 1e3)
        kernels.set_profiling(False)
    kernels.set_activation_parts(*before)
    for name in sorted(results[2][0], key=lambda k: -results[2][0][k]):
        rows.append(f"| {name} | {results[2][0][name]:.0f} | {results[1][0].get(name, 0):.0f} |")
    rows.append(f"| **whole chunk** | **{results[2][1]:.0f}** | **{results[1][1]:.0f}** |")
    rates = [NATIVE_MAX_ROWS / results[parts][1] * 1e3 for parts in (2, 1)]
    rows.append(f"| tokens/s | {rates[0]:.1f} | {rates[1]:.1f} |")
    lines = [
        f"A {NATIVE_MAX_ROWS}-token chunk of random tokens through the Mistral-7B-shaped Q4_0 file of "
        f"bench/dense7b.py, {torch.get_num_threads()} threads. CPU: {cpu()}; {native.describe()}.",
        "",
        *rows,
    ]
    write_section(f"Where a 7B prompt chunk goes, timed inside the native step, on {cpu()}", "\n".join(lines))


if __name__ == "__main__":
    main()
