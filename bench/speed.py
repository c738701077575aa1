"""One stream on the default model (or another packaged one), autan against llama.cpp, side by side in one run.

For each engine, in its own process (so resident memory is its own): decode tokens/s over 128
tokens, prefill tokens/s and time to first token on a 512-token prompt, and peak resident
memory above the bare interpreter with the engine's library imported. Medians of --repeat
runs, the engines taking turns (so a noisy minute on a shared machine hits both). llama.cpp
runs through llama-cpp-python on the same GGUF file with the same threads, and as its own
llama-bench (tg128, pp512) where bench/build-llama-cpp.sh has built it.

    python bench/speed.py [--repeat 3] [--model qwen2.5-coder-1.5b]
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
from report import write_section

from autan import native, registry

PROMPT_TOKENS, DECODE_TOKENS = 512, 128


def rss_mib(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(field)


def measure_autan(name: str, repeat: int) -> dict:
    import autan

    base = rss_mib("VmRSS")
    model = autan.load_model(registry.pull(name, quiet=True))
    loaded = rss_mib("VmRSS") - base
    g = torch.Generator().manual_seed(0)
    prefill, decode = [], []
    with torch.inference_mode():
        warm = model.new_cache()  # first calls set things up (thread pools, the native step's buffers)
        model(torch.arange(1, 65), warm)
        model(torch.tensor([1]), warm)
        for _ in range(repeat):
            prompt = torch.randint(0, model.config.vocab_size, (PROMPT_TOKENS,), generator=g)
            cache = model.new_cache()
            start = time.perf_counter()
            logits = model(prompt, cache, last_only=True)
            token = logits[-1].argmax()
            prefill.append(time.perf_counter() - start)
            start = time.perf_counter()
            for _ in range(DECODE_TOKENS):
                token = model(token[None], cache, last_only=True)[-1].argmax()
            decode.append(time.perf_counter() - start)
        start = time.perf_counter()  # as llama-bench's tg: from an empty context
        cache, token = model.new_cache(), torch.tensor(1)
        for _ in range(DECODE_TOKENS):
            token = model(token[None], cache, last_only=True)[-1].argmax()
        fresh = DECODE_TOKENS / (time.perf_counter() - start)
    return _result(prefill, decode, rss_mib("VmHWM") - base, loaded) | {"decode_empty_tps": fresh}


def measure_llama_cpp(name: str, repeat: int) -> dict:
    from llama_cpp import Llama

    path = registry.pull(name, quiet=True)
    base = rss_mib("VmRSS")
    llm = Llama(str(path), n_threads=torch.get_num_threads(), n_ctx=1024, n_batch=512, verbose=False)
    loaded = rss_mib("VmRSS") - base
    g = torch.Generator().manual_seed(0)
    prefill, decode = [], []
    llm.eval(list(range(1, 65)))  # as for autan: first calls set things up
    for _ in range(repeat):
        prompt = torch.randint(0, llm.n_vocab(), (PROMPT_TOKENS,), generator=g).tolist()
        llm.reset()
        start = time.perf_counter()
        llm.eval(prompt)
        token = llm.sample(temp=0)
        prefill.append(time.perf_counter() - start)
        start = time.perf_counter()
        for _ in range(DECODE_TOKENS):
            llm.eval([token])
            token = llm.sample(temp=0)
        decode.append(time.perf_counter() - start)
    return _result(prefill, decode, rss_mib("VmHWM") - base, loaded)


def measure_llama_bench(name: str, repeat: int) -> dict | str:
    binary = Path(__file__).resolve().parent.parent / ".bench" / "llama.cpp" / "bin" / "llama-bench"
    if not binary.exists():
        return "not built (bench/build-llama-cpp.sh)"
    path = registry.pull(name, quiet=True)
    threads = str(torch.get_num_threads())
    command = [str(binary), "-m", str(path), "-t", threads, "-p", str(PROMPT_TOKENS), "-n", str(DECODE_TOKENS)]
    run = subprocess.run([*command, "-r", str(repeat), "-o", "json"], capture_output=True, text=True)
    if run.returncode != 0:
        return f"failed ({run.returncode}): {run.stderr.strip()[-200:]}"
    rate = {("pp" if r["n_prompt"] else "tg"): r["avg_ts"] for r in json.loads(run.stdout)}
    return {"decode_empty_tps": rate["tg"], "prefill_tps": rate["pp"], "ttft": PROMPT_TOKENS / rate["pp"]}


def _result(prefill: list[float], decode: list[float], memory: float, loaded: float) -> dict:
    p, d = statistics.median(prefill), statistics.median(decode)
    return {
        "prefill_tps": PROMPT_TOKENS / p,
        "ttft": p,
        "decode_tps": DECODE_TOKENS / d,
        "memory_mib": memory,
        "loaded_mib": loaded,
    }


def _median(runs: list[dict | str]) -> dict | str:
    done = [r for r in runs if isinstance(r, dict)]
    if not done:
        return runs[-1]
    return {key: statistics.median(r[key] for r in done) for key in done[0]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--model", default=registry.DEFAULT_MODEL, choices=sorted(registry.KNOWN_MODELS))
    parser.add_argument("--engine", choices=["autan", "llama.cpp"], help="measure one engine (internal)")
    args = parser.parse_args()
    if args.engine:
        measure = measure_autan if args.engine == "autan" else measure_llama_cpp
        print(json.dumps(measure(args.model, args.repeat)))
        return
    runs: dict[str, list[dict]] = {"autan": [], "llama.cpp": []}
    for _ in range(args.repeat):  # the engines take turns
        for engine in runs:
            run = subprocess.run(
                [sys.executable, __file__, "--engine", engine, "--repeat", "1", "--model", args.model],
                capture_output=True,
                text=True,
            )
            runs[engine].append(json.loads(run.stdout.strip().splitlines()[-1]) if run.returncode == 0 else run.stderr)
            print(engine, runs[engine][-1], flush=True)
    results = {engine: _median(r) for engine, r in runs.items()}
    bench = measure_llama_bench(args.model, args.repeat)
    print("llama-bench", bench, flush=True)
    a = results["autan"]
    rows = [
        "| | autan | llama.cpp (llama-cpp-python) | autan / it | llama-bench | autan / it |",
        "|---|---|---|---|---|---|",
    ]
    for key, label, fmt in (
        ("decode_tps", f"decode, tokens/s ({DECODE_TOKENS} tokens after the prompt)", "{:.1f}"),
        (
            "decode_empty_tps",
            f"decode, tokens/s ({DECODE_TOKENS} tokens from an empty context: tg{DECODE_TOKENS})",
            "{:.1f}",
        ),
        ("prefill_tps", f"prefill, tokens/s ({PROMPT_TOKENS}-token prompt)", "{:.0f}"),
        ("ttft", f"time to first token, {PROMPT_TOKENS}-token prompt (s)", "{:.2f}"),
        ("loaded_mib", "resident memory added by loading (MiB)", "{:.0f}"),
        ("memory_mib", "peak resident memory added, whole run (MiB)", "{:.0f}"),
    ):
        cells = [fmt.format(a[key])]
        for peer in (results["llama.cpp"], bench):
            if isinstance(peer, str):
                cells += [f"not measured: {peer.strip().splitlines()[-1]}", ""]
            elif key in peer:
                cells += [fmt.format(peer[key]), f"{a[key] / peer[key]:.2f}"]
            else:
                cells += ["", ""]
        rows.append(f"| {label} | {' | '.join(cells)} |")
    file_mib = registry.pull(args.model, quiet=True).stat().st_size / 2**20
    described = registry.KNOWN_MODELS[args.model].description.split(" (")[0]
    body = (
        f"{described} ({file_mib:.0f} MiB file), one stream, greedy, median of {args.repeat} runs; "
        f"each engine in its own process. autan runs {native.describe()}. Memory is resident memory "
        "(RSS) above the interpreter with the engine's library imported: after loading the model (llama.cpp: "
        "with its 1024-token context allocated), and at its peak over all runs (prompts, KV cache, buffers).\n\n"
        + "\n".join(rows)
        + "\n\n"
        + (
            f"Loaded, autan holds {a['loaded_mib'] / file_mib:.2f}x the file size"
            + (" (goal: at most 1.5x)." if args.model == registry.DEFAULT_MODEL else ".")
            if not isinstance(a, str)
            else ""
        )
    )
    default = args.model == registry.DEFAULT_MODEL
    write_section("One stream against llama.cpp" + ("" if default else f": {args.model}"), body)


if __name__ == "__main__":
    main()
