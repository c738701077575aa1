"""Mixtral-shaped decode against a dense model with the same active parameters.

Two random models, quantized at load to int4 like a float checkpoint would be (Q4_1 blocks on
the native step): a Mixtral-shaped one (8 experts, 2 per token, expert width F) and a dense one
whose feed-forward width is 2F, so
each token multiplies the same number of weights. The Mixtral model holds 4x the feed-forward
weights; only the two chosen experts' are read per token. One stream, decode tokens/s after a
64-token prompt, median of --repeat runs.

    python bench/moe.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from report import write_section

from autan.config import ModelConfig, MoeConfig
from autan.model.transformer import Transformer
from autan.weights.assemble import Entry, assemble, survey

SHAPE = dict(dim=1024, n_layers=8, n_heads=16, n_kv_heads=4, head_dim=64, vocab_size=32000, norm_eps=1e-5)
EXPERT_WIDTH = 1408


def random_model(moe: bool) -> Transformer:
    config = ModelConfig(
        **SHAPE,
        hidden_dim=EXPERT_WIDTH if moe else 2 * EXPERT_WIDTH,
        rope_theta=1e6,
        max_seq_len=4096,
        moe=MoeConfig(num_experts=8, num_experts_per_tok=2) if moe else None,
    )
    torch.manual_seed(0)
    entries = [
        Entry(name, torch.ones(shape) if name.endswith("norm.weight") else torch.randn(shape) * 0.02, "random", name)
        for name, shape in survey(config).items()
    ]
    return assemble(config, entries, source="random", device=torch.device("cpu"), dtype=torch.float32,
                    keep_stored_dtype=False, quantize="int4")  # fmt: skip


@torch.inference_mode()
def decode_rate(model: Transformer, tokens: int) -> float:
    g = torch.Generator().manual_seed(1)
    cache = model.new_cache()
    token = model(torch.randint(0, SHAPE["vocab_size"], (64,), generator=g), cache, last_only=True)[-1].argmax()
    start = time.perf_counter()
    for _ in range(tokens):
        token = model(token[None], cache, last_only=True)[-1].argmax()
    return tokens / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    rates = {}
    for moe in (True, False):
        model = random_model(moe)
        decode_rate(model, 4)  # warm up
        rates[moe] = statistics.median(decode_rate(model, args.tokens) for _ in range(args.repeat))
        print("mixtral-shaped" if moe else "dense", f"{rates[moe]:.1f} tok/s", flush=True)
        del model
    ratio = rates[True] / rates[False]
    shape = ", ".join(f"{k} {v}" for k, v in SHAPE.items() if k != "norm_eps")
    lines = [
        f"Random models, int4 at load: {shape}. Mixtral-shaped: 8 experts of width {EXPERT_WIDTH}, 2 per token. "
        f"Dense: feed-forward width {2 * EXPERT_WIDTH} (the same active parameters). One stream, {args.tokens} "
        f"tokens after a 64-token prompt, median of {args.repeat}.",
        "",
        "| model | decode tokens/s |",
        "|---|---|",
        f"| Mixtral-shaped (8 experts, top 2) | {rates[True]:.1f} |",
        f"| dense, same active parameters | {rates[False]:.1f} |",
        "",
        f"Mixtral-shaped decode is {ratio:.2f}x the dense model's (goal: at least 0.8x).",
    ]
    write_section("Mixtral-shaped against dense", "\n".join(lines))


if __name__ == "__main__":
    main()
