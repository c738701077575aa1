"""Resident memory of the default model in autan (packed kernels): after import, after load, while running.

Reads VmRSS/VmHWM from /proc/self/status (Linux). Run: python bench/memory.py
"""

from __future__ import annotations

import time

import torch
from report import write_section

import autan
from autan import registry


def rss_mb(field: str = "VmRSS") -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def main() -> None:
    path = registry.pull("smollm2", quiet=True)
    file_mb = path.stat().st_size / 2**20
    baseline = rss_mb()
    start = time.perf_counter()
    model = autan.load_model(path)
    load_s = time.perf_counter() - start
    loaded = rss_mb()
    prompt = torch.randint(0, model.config.vocab_size, (256,))
    with torch.inference_mode():
        cache = model.new_cache()
        start = time.perf_counter()
        logits = model(prompt, cache, last_only=True)
        prefill_s = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(16):
            logits = model(logits[-1].argmax()[None], cache, last_only=True)
        decode_s = time.perf_counter() - start
    running, peak = rss_mb(), rss_mb("VmHWM")
    rows = [
        ("GGUF file", f"{file_mb:.0f} MiB"),
        ("process after `import torch, autan`", f"{baseline:.0f} MiB"),
        ("added by `load_model` (weights, mapped)", f"{loaded - baseline:.0f} MiB"),
        ("added after a 256-token prefill + 16 decode steps", f"{running - baseline:.0f} MiB"),
        ("peak of the whole process", f"{peak:.0f} MiB"),
        ("load time", f"{load_s:.1f} s"),
        ("first prefill after loading, 256 tokens (cold; warm: bench/speed.py)", f"{256 / prefill_s:.0f} tok/s"),
        ("first 16 decode steps after it (cold)", f"{16 / decode_s:.1f} tok/s"),
    ]
    table = "| SmolLM2-135M-Instruct Q4_1 | |\n|---|---|\n" + "\n".join(f"| {a} | {b} |" for a, b in rows)
    write_section("Default model: memory and a first speed reading", table)


if __name__ == "__main__":
    main()
