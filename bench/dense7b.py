"""A Mistral-7B-shaped model on the CPU: autan against llama.cpp's llama-bench, same file, same threads.

The model is written here in seconds: 32 layers, dim 4096, 32 heads over 8 KV heads, FFN 14336,
every matrix random Q4_0 blocks (scales fixed small, so activations stay finite), norms 1, the
default model's tokenizer (vocabulary 49152). Random weights make nonsense text; the products,
bytes and shapes are a real 7B's. Measured, each engine in its own process, from a warm page
cache: load time and resident memory (after load and at peak), decode tokens/s (after a short
prompt) and prefill tokens/s of a 512-token prompt. The engines take turns for --rounds rounds
(a shared machine's bandwidth moves by 2x from minute to minute: a noisy minute hits both), and
the medians are kept. The read bandwidth of this machine's threads is measured too: bytes a
token must read over it is decode's limit. One table per CPU and instruction-set tier.

    python bench/dense7b.py [--decode 32] [--prefill 512] [--rounds 3] [--format q4_k_m]

`--format q4_k_m` measures the same model requantized by llama.cpp's own llama-quantize to
Q4_K_M (Q4_K with Q6_K for the head and part of attn_v and ffn_down, as llama.cpp mixes it):
the K-quant kernels on the files people download most.

llama-bench and llama-quantize are built by bench/build-llama-cpp.sh; without them, the
columns that need them say so.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from report import cpu, write_section
from speed import rss_mib

from autan import native

ROOT = Path(__file__).resolve().parent.parent
FILES = {
    "q4_0": ROOT / ".bench" / "mistral-7b-shaped-q4_0.gguf",
    "q4_k_m": ROOT / ".bench" / "mistral-7b-shaped-q4_k_m.gguf",
}
LLAMA_BENCH = ROOT / ".bench" / "llama.cpp" / "bin" / "llama-bench"
LLAMA_QUANTIZE = ROOT / ".bench" / "llama.cpp" / "bin" / "llama-quantize"
SHAPE = dict(layers=32, dim=4096, heads=32, kv_heads=8, ffn=14336)
Q4_0_BLOCK = 18  # bytes of 32 weights: an f16 scale, 16 bytes of nibbles


def q4_0_rows(rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    blocks = rng.integers(0, 256, size=(rows * cols // 32, Q4_0_BLOCK), dtype=np.uint8)
    blocks[:, :2] = np.full(len(blocks), 0.0025, dtype=np.float16).view(np.uint8).reshape(-1, 2)
    return blocks.reshape(rows, -1)


def write_model(path: Path) -> None:
    import gguf

    from autan import registry
    from autan.weights.gguf_file import GGUFFile

    tokenizer = GGUFFile.open(registry.pull("smollm2", quiet=True)).metadata
    s, rng = SHAPE, np.random.default_rng(0)
    d, hd = s["dim"], s["dim"] // s["heads"]
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_block_count(s["layers"])
    writer.add_context_length(4096)
    writer.add_embedding_length(d)
    writer.add_feed_forward_length(s["ffn"])
    writer.add_head_count(s["heads"])
    writer.add_head_count_kv(s["kv_heads"])
    writer.add_rope_dimension_count(hd)
    writer.add_rope_freq_base(1e6)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_tokenizer_model(tokenizer["tokenizer.ggml.model"])
    writer.add_tokenizer_pre(tokenizer["tokenizer.ggml.pre"])
    writer.add_token_list(tokenizer["tokenizer.ggml.tokens"])
    writer.add_token_types(tokenizer["tokenizer.ggml.token_type"])
    writer.add_token_merges(tokenizer["tokenizer.ggml.merges"])
    writer.add_bos_token_id(tokenizer["tokenizer.ggml.bos_token_id"])
    writer.add_eos_token_id(tokenizer["tokenizer.ggml.eos_token_id"])
    vocab = len(tokenizer["tokenizer.ggml.tokens"])
    q4 = gguf.GGMLQuantizationType.Q4_0
    # one random matrix per shape, written for every layer: the bytes read per token are a 7B's
    shapes = {"q": (d, d), "kv": (s["kv_heads"] * hd, d), "up": (s["ffn"], d), "down": (d, s["ffn"])}
    blocks = {k: q4_0_rows(*shape, rng) for k, shape in shapes.items()}
    ones = np.ones(d, dtype=np.float32)
    writer.add_tensor("token_embd.weight", q4_0_rows(vocab, d, rng), raw_dtype=q4)
    for i in range(s["layers"]):
        p = f"blk.{i}."
        writer.add_tensor(p + "attn_norm.weight", ones)
        for name, kind in (("attn_q", "q"), ("attn_k", "kv"), ("attn_v", "kv"), ("attn_output", "q")):
            writer.add_tensor(p + name + ".weight", blocks[kind], raw_dtype=q4)
        writer.add_tensor(p + "ffn_norm.weight", ones)
        for name, kind in (("ffn_gate", "up"), ("ffn_up", "up"), ("ffn_down", "down")):
            writer.add_tensor(p + name + ".weight", blocks[kind], raw_dtype=q4)
    writer.add_tensor("output_norm.weight", ones)
    writer.add_tensor("output.weight", q4_0_rows(vocab, d, rng), raw_dtype=q4)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def bytes_per_token(path: Path) -> int:
    """What one decode step must read: every tensor of the file but the embedding (one row of it
    and the KV cache are noise beside them), as stored."""
    import gguf

    return sum(int(t.n_bytes) for t in gguf.GGUFReader(path).tensors if t.name != "token_embd.weight")


def read_bandwidth() -> float:
    """Bytes/s that this process's threads read from memory: a float32 sum over 2 GiB, best of 5
    (an int32 sum is bound by its arithmetic, not by memory)."""
    data = torch.ones(2**29, dtype=torch.float32)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        data.sum()
        best = min(best, time.perf_counter() - start)
    return data.numel() * 4 / best


def measure_autan(path: Path, decode: int, prefill: int) -> dict:
    import autan

    base = rss_mib("VmRSS")
    start = time.perf_counter()
    model = autan.load_model(path)
    load = time.perf_counter() - start
    loaded = rss_mib("VmRSS") - base
    g = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        cache = model.new_cache()
        token = model(torch.randint(0, 49152, (8,), generator=g), cache, last_only=True)[-1].argmax()
        start = time.perf_counter()
        for _ in range(decode):
            token = model(token[None], cache, last_only=True)[-1].argmax()
        decode_s = time.perf_counter() - start
        prompt = torch.randint(0, 49152, (prefill,), generator=g)
        start = time.perf_counter()
        model(prompt, model.new_cache(), last_only=True)
        prefill_s = time.perf_counter() - start
    return {
        "load_s": load,
        "loaded_mib": loaded,
        "peak_mib": rss_mib("VmHWM") - base,
        "decode_tps": decode / decode_s,
        "prefill_tps": prefill / prefill_s,
    }


def measure_llama_bench(path: Path, decode: int, prefill: int) -> dict | str:
    if not LLAMA_BENCH.exists():
        return "not built (bench/build-llama-cpp.sh)"
    threads = str(torch.get_num_threads())
    command = [str(LLAMA_BENCH), "-m", str(path), "-t", threads, "-p", str(prefill), "-n", str(decode), "-r", "1"]
    run = subprocess.run([*command, "-o", "json"], capture_output=True, text=True)
    if run.returncode != 0:
        return f"failed: {run.stderr.strip().splitlines()[-1] if run.stderr.strip() else run.returncode}"
    rows = json.loads(run.stdout)
    rate = {("pp" if r["n_prompt"] else "tg"): r["avg_ts"] for r in rows}
    return {"decode_tps": rate["tg"], "prefill_tps": rate["pp"]}


def measure_autan_process(args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--engine", "autan", "--format", args.format]
    run = subprocess.run(
        [*command, "--decode", str(args.decode), "--prefill", str(args.prefill)], capture_output=True, text=True
    )
    if run.returncode != 0:
        raise SystemExit(run.stderr[-2000:])
    return json.loads(run.stdout.strip().splitlines()[-1])


def medians(runs: list[dict]) -> dict:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--decode", type=int, default=32)
    parser.add_argument("--prefill", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--format", choices=sorted(FILES), default="q4_0")
    parser.add_argument("--engine", help=argparse.SUPPRESS)
    args = parser.parse_args()
    path = FILES[args.format]
    if args.engine == "autan":
        print(json.dumps(measure_autan(path, args.decode, args.prefill)))
        return
    if args.engine == "make":  # the file only (bench/compare.py)
        make_file(args.format)
        return
    make_file(args.format)
    subprocess.run(["cat", str(path)], stdout=subprocess.DEVNULL, check=True)  # a warm page cache
    bandwidth = read_bandwidth()
    theirs_runs, ours_runs = [], []
    for _ in range(args.rounds):  # taking turns
        peer = measure_llama_bench(path, args.decode, args.prefill)
        print("llama-bench", peer, flush=True)
        if isinstance(peer, dict):
            theirs_runs.append(peer)
        ours_runs.append(measure_autan_process(args))
        print("autan", ours_runs[-1], flush=True)
    ours = medians(ours_runs)
    peer = medians(theirs_runs) if theirs_runs else peer
    file_mib = path.stat().st_size / 2**20
    per_token = bytes_per_token(path)
    achieved = [ours["decode_tps"] * per_token] + ([peer["decode_tps"] * per_token] if isinstance(peer, dict) else [])
    limit = max(bandwidth, *achieved) / per_token  # a sum understates what a streaming kernel reads
    rows = ["| | autan | llama-bench | autan / llama-bench |", "|---|---|---|---|"]
    for key, label in (
        ("decode_tps", f"decode, tokens/s (tg{args.decode})"),
        ("prefill_tps", f"prefill, tokens/s (pp{args.prefill})"),
    ):
        theirs = f"{peer[key]:.2f}" if isinstance(peer, dict) else peer
        ratio = f"{ours[key] / peer[key]:.2f}" if isinstance(peer, dict) else ""
        rows.append(f"| {label} | {ours[key]:.2f} | {theirs} | {ratio} |")
    weights = "Random Q4_0 weights" if args.format == "q4_0" else "Random Q4_0 weights requantized to Q4_K_M"
    lines = [
        f"{weights} in a Mistral-7B shape ({', '.join(f'{k} {v}' for k, v in SHAPE.items())}), "
        f"{file_mib / 1024:.2f} GiB file, the default model's tokenizer; {torch.get_num_threads()} threads, "
        f"warm page cache, each engine in its own process, medians of {args.rounds} rounds taken in turns. "
        f"CPU: {cpu()}; autan runs {native.describe()}; llama-bench is built with this CPU's flags.",
        "",
        *rows,
        "",
        f"- Read bandwidth: a float32 sum over 2 GiB reads {bandwidth / 1e9:.1f} GB/s here; a token reads "
        f"{per_token / 1e9:.2f} GB, so autan's decode streams {ours['decode_tps'] * per_token / 1e9:.1f} GB/s"
        + (f" and llama.cpp's {peer['decode_tps'] * per_token / 1e9:.1f} GB/s" if isinstance(peer, dict) else "")
        + f". Taking the fastest of the three as the memory's limit ({limit:.2f} tokens/s), autan decodes at "
        f"{ours['decode_tps'] / limit:.0%} of it"
        + (f", llama.cpp at {peer['decode_tps'] / limit:.0%}." if isinstance(peer, dict) else "."),
        f"- autan: load {ours['load_s']:.1f} s; resident memory {ours['loaded_mib'] / file_mib:.2f}x the file after "
        f"load, {ours['peak_mib'] / file_mib:.2f}x at peak.",
    ]
    title = "Mistral-7B-shaped model" + (" in Q4_K_M" if args.format == "q4_k_m" else "")
    parts = os.environ.get("AUTAN_ACTIVATION_PARTS")  # a table of its own for another setting
    setting = f", AUTAN_ACTIVATION_PARTS={parts}" if parts else ""
    write_section(f"{title} against llama-bench on {cpu()}{setting}", "\n".join(lines))


def make_file(kind: str) -> None:
    """The bench's model file, written here (Q4_0) or requantized by llama.cpp (Q4_K_M)."""
    path = FILES[kind]
    if path.exists():
        return
    path.parent.mkdir(exist_ok=True)
    start = time.perf_counter()
    if kind == "q4_0":
        write_model(path)
    else:
        if not LLAMA_QUANTIZE.exists():
            raise SystemExit("Q4_K_M needs llama.cpp's llama-quantize: bash bench/build-llama-cpp.sh")
        make_file("q4_0")
        command = [str(LLAMA_QUANTIZE), "--allow-requantize", str(FILES["q4_0"]), str(path), "Q4_K_M"]
        subprocess.run(command, check=True, capture_output=True)
    print(f"wrote {path} in {time.perf_counter() - start:.1f} s", flush=True)


if __name__ == "__main__":
    main()
