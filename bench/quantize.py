"""The accuracy cost of quantizing at load: perplexity on a fixed text, float against int8/int4.

The default model ships only quantized (Q4_1), so the float model here is that file unpacked
to float32 (`kernels="exact"`): the reference every other row is measured against. Rows: the
float model; the same float weights quantized at load to int8 and to int4 (`--quantize`, what a
user gets from a float checkpoint); and the GGUF on its packed kernels (the default path).
Text: the Gettysburg Address and the opening of A Tale of Two Cities (public domain),
bench/data/gettysburg.txt. Also decode tokens/s of each, one stream.

    python bench/quantize.py
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from report import write_section

import autan
from autan import registry
from autan.tokenizer import load_tokenizer

TEXT = Path(__file__).parent / "data" / "gettysburg.txt"


def float_model(path: Path, quantize: str | None = None):
    """The GGUF's weights unpacked once into dense float32 matrices (then quantized, if asked)."""
    return autan.load_model(path, kernels="dense", quantize=quantize)


@torch.inference_mode()
def perplexity(model, ids: torch.Tensor) -> float:
    logits = model(ids).float()
    return math.exp(F.cross_entropy(logits[:-1], ids[1:]).item())


@torch.inference_mode()
def decode_rate(model, tokens: int = 64) -> float:
    cache = model.new_cache()
    token = model(torch.tensor([1, 2, 3, 4]), cache, last_only=True)[-1].argmax()
    start = time.perf_counter()
    for _ in range(tokens):
        token = model(token[None], cache, last_only=True)[-1].argmax()
    return tokens / (time.perf_counter() - start)


def main() -> None:
    path = registry.pull("smollm2", quiet=True)
    ids = torch.tensor(load_tokenizer(path).encode(TEXT.read_text()))
    reference = float_model(path)
    rows = [("float32 (the GGUF unpacked)", reference)]
    for kind in ("int8", "int4"):
        model = float_model(path, kind)
        rows.append((f"float32 quantized at load to {kind}", model))
    rows.append(("GGUF Q4_1 on packed kernels (default)", autan.load_model(path)))
    base = perplexity(reference, ids)
    lines = [
        f"SmolLM2-135M-Instruct, perplexity over {len(ids)} tokens of bench/data/gettysburg.txt. Reference: the "
        "Q4_1 file unpacked to float32 (no float original ships). Decode: one stream, 64 tokens.",
        "",
        "| weights | perplexity | change | decode tokens/s |",
        "|---|---|---|---|",
    ]
    for label, model in rows:
        ppl = perplexity(model, ids)
        lines.append(f"| {label} | {ppl:.3f} | {100 * (ppl / base - 1):+.2f}% | {decode_rate(model):.1f} |")
        print(lines[-1], flush=True)
    write_section("Quantization: accuracy cost", "\n".join(lines))


if __name__ == "__main__":
    main()
