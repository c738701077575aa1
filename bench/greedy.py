"""Greedy answers of the default model on its packed kernels against the exact path, on a fixed
prompt set: where they part, and why.

The exact path (`kernels="exact"`) unpacks the GGUF blocks to float32 at each use: the
reference the parity tests use. The packed path is what `autan run` does. Both decode greedily
from the same chat prompts. Where the answers part, the row gives, at that step and after the
same tokens, both paths' logit gap between the two tokens they chose, and the largest change of
any logit there: a near-tie (a gap well inside that change) that rounding decided.

    python bench/greedy.py [--tokens 48]
"""

from __future__ import annotations

import argparse

import torch
from report import write_section

import autan
from autan import registry
from autan.tokenizer import load_tokenizer

PROMPTS = [
    "What is the capital of France?",
    "Name three primary colors.",
    "Explain in two sentences how rain forms.",
    "Write a haiku about the sea.",
    "What is 17 times 3?",
    "Give me a short recipe for pancakes.",
    "Who wrote Les Misérables?",
    "Translate 'good morning' into Spanish.",
]


@torch.inference_mode()
def greedy(model, prompt_ids: list[int], tokens: int, forced: list[int] | None = None) -> tuple[list[int], list]:
    """Greedy tokens and the logits at each step; with `forced`, feed those tokens instead."""
    cache = model.new_cache()
    logits = model(torch.tensor(prompt_ids), cache, last_only=True)[-1].float()
    chosen, steps = [], []
    for i in range(tokens):
        steps.append(logits)
        token = int(logits.argmax()) if forced is None else forced[i]
        chosen.append(token)
        logits = model(torch.tensor([token]), cache, last_only=True)[-1].float()
    return chosen, steps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=48)
    args = parser.parse_args()
    path = registry.pull("smollm2", quiet=True)
    tokenizer = load_tokenizer(path)
    exact, packed = autan.load_model(path, kernels="exact"), autan.load_model(path)
    rows, parts = [], []  # parts: (gap on the exact path, largest logit change) where answers part
    for prompt in PROMPTS:
        ids = tokenizer.encode_chat([{"role": "user", "content": prompt}])
        reference, exact_logits = greedy(exact, ids, args.tokens)
        answer, _ = greedy(packed, ids, args.tokens)
        part = next((i for i, (a, b) in enumerate(zip(reference, answer, strict=True)) if a != b), None)
        if part is None:
            rows.append(f"| {prompt} | same {args.tokens} tokens | | | |")
        else:
            # the packed path's logits at the parting step, fed the same tokens as the exact path
            _, packed_logits = greedy(packed, ids, part + 1, forced=reference)
            a, b, e, p = reference[part], answer[part], exact_logits[part], packed_logits[part]
            gap, moved = float(e[a] - e[b]), float((p - e).abs().max())
            parts.append((gap, moved))
            rows.append(f"| {prompt} | part at token {part + 1} | {gap:+.3f} | {p[a] - p[b]:+.3f} | {moved:.3f} |")
        print(rows[-1], flush=True)
    same = len(PROMPTS) - len(parts)
    near_ties = all(abs(gap) < moved for gap, moved in parts)
    verdict = (
        "every part is a near-tie: a gap smaller than the largest change the packed path's rounding makes to a logit."
        if near_ties
        else "not every part is a near-tie: see the rows."
    )
    body = "\n".join(
        [
            f"SmolLM2-135M-Instruct Q4_1: {args.tokens} greedy tokens per chat prompt, the packed kernels (the "
            "default) against the exact path (the GGUF unpacked to float32 at each use). Where the answers part, "
            "after the same tokens on both paths: each path's logit for the exact path's token minus its logit "
            "for the packed path's token, and the largest change of any logit between the paths at that step.",
            "",
            "| prompt | answers | gap, exact path | gap, packed path | largest logit change |",
            "|---|---|---|---|---|",
            *rows,
            "",
            f"{same} of {len(PROMPTS)} answers are the same; {verdict}",
        ]
    )
    write_section("Greedy answers: packed kernels against the exact path", body)


if __name__ == "__main__":
    main()
