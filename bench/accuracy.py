"""The accuracy budget: how far autan's kernels move the next-token distribution from the exact
path, beside how far llama.cpp's own kernels move it, on the same file and the same tokens.

The exact path (`kernels="exact"`) unpacks the GGUF blocks to float32 and computes in float32:
the reference the parity tests hold to Hugging Face transformers. For each chat prompt of
bench/greedy.py followed by the exact path's own greedy answer, every position's distribution
is computed three ways: exact, autan's default kernels, and llama.cpp (llama-cpp-python's
logits). Each engine runs token by token (its decode path) and the whole text at once (its
prompt path). KL(exact || engine) per position, in nats: mean, 99th percentile and maximum,
and how often the engine's top token is the exact path's.

    python bench/accuracy.py [--tokens 48]

The budget holds when autan's figures are no worse than llama.cpp's. autan runs with its
activations in two int8 parts (the default) and in one (llama.cpp's scheme), on each path, so the
table says where one part meets the budget and what the second buys.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from greedy import PROMPTS, greedy
from report import write_section

import autan
from autan import native, registry
from autan.tokenizer import load_tokenizer


def kl(exact: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    p, q = torch.log_softmax(exact.double(), -1), torch.log_softmax(other.double(), -1)
    return (p.exp() * (p - q)).sum(-1)


@torch.inference_mode()
def autan_logits(model, ids: list[int], one_by_one: bool) -> torch.Tensor:
    if not one_by_one:
        return model(torch.tensor(ids)).float()
    cache = model.new_cache()
    return torch.cat([model(torch.tensor([t]), cache, last_only=True).float() for t in ids])


def llama_logits(llm, ids: list[int], one_by_one: bool) -> torch.Tensor:
    llm.reset()
    if one_by_one:
        for t in ids:
            llm.eval([t])
    else:
        llm.eval(ids)
    return torch.from_numpy(np.array(llm.scores[: len(ids)], dtype=np.float32))


def summary(kls: torch.Tensor, agree: torch.Tensor) -> str:
    return f"{kls.mean():.2e} | {torch.quantile(kls, 0.99):.2e} | {kls.max():.2e} | {agree.float().mean():.1%}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=48)
    args = parser.parse_args()
    from llama_cpp import Llama

    path = registry.pull("smollm2", quiet=True)
    tokenizer = load_tokenizer(path)
    exact, ours = autan.load_model(path, kernels="exact"), autan.load_model(path)
    llm = Llama(str(path), n_threads=torch.get_num_threads(), n_ctx=512, logits_all=True, verbose=False)
    texts = []
    for prompt in PROMPTS:
        ids = tokenizer.encode_chat([{"role": "user", "content": prompt}])
        answer, _ = greedy(exact, ids, args.tokens)
        texts.append(ids + answer)
    reference = [autan_logits(exact, ids, one_by_one=False) for ids in texts]
    rows = []
    module = native.module()
    default = module.activation_parts(), module.activation_parts(prompt=True)

    def autan_with(parts: int, ids: list[int], one_by_one: bool) -> torch.Tensor:
        module.set_activation_parts(parts)
        try:
            return autan_logits(ours, ids, one_by_one)
        finally:
            module.set_activation_parts(*default)

    for label, one_by_one in (("token by token (decode)", True), ("whole text at once (prompt)", False)):
        engines = [(f"autan, {n} part{'s' * (n > 1)}", n) for n in (2, 1)]
        for engine, logits in (
            *((name, lambda ids, o=one_by_one, n=n: autan_with(n, ids, o)) for name, n in engines),
            ("llama.cpp", lambda ids, o=one_by_one: llama_logits(llm, ids, o)),
        ):
            got = [logits(ids) for ids in texts]
            kls = torch.cat([kl(r, g) for r, g in zip(reference, got, strict=True)])
            agree = torch.cat([r.argmax(-1) == g.argmax(-1) for r, g in zip(reference, got, strict=True)])
            rows.append(f"| {engine} | {label} | {summary(kls, agree)} |")
            print(rows[-1], flush=True)
    positions = sum(len(t) for t in texts)
    lines = [
        f"SmolLM2-135M-Instruct Q4_1: the {len(PROMPTS)} chat prompts of bench/greedy.py, each followed by the exact "
        f"path's {args.tokens}-token greedy answer ({positions} positions in all). KL(exact || engine) per position "
        f"in nats, and top-1 agreement with the exact path. autan runs {native.describe()}; each row "
        "says its activations' int8 parts.",
        "",
        "| engine | path | mean KL | 99th percentile | max | top-1 agrees |",
        "|---|---|---|---|---|---|",
        *rows,
    ]
    write_section("Accuracy budget against llama.cpp", "\n".join(lines))


if __name__ == "__main__":
    main()
