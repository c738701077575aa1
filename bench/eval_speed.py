"""How fast `autan eval` scores HellaSwag, against transformers computing the same
log-likelihoods on the same model (the default model's Q4_1 file, which transformers
dequantizes to float32), in one run; and how closely the two agree.

    cd bench && ../.venv/bin/python eval_speed.py [--docs 100]

transformers runs each document's choices as one padded batch (the way lm-evaluation-harness's
`hf` model batches them); autan runs them on the engine, choices sharing their context's KV
blocks, many documents per step.
"""

from __future__ import annotations

import argparse
import time

import torch
from report import write_section

from autan import registry
from autan.eval import metrics
from autan.eval.run import local_subject
from autan.eval.tasks import TASKS


def transformers_scores(model, prompts: list[list[tuple[list[int], int]]]) -> list[list[float]]:
    out = []
    with torch.inference_mode():
        for doc in prompts:
            width = max(len(p) for p, _ in doc)
            ids = torch.zeros(len(doc), width, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for row, (p, _) in enumerate(doc):
                ids[row, : len(p)] = torch.tensor(p)
                mask[row, : len(p)] = 1
            logprobs = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), -1)
            scores = []
            for row, (p, start) in enumerate(doc):
                targets = torch.tensor(p[start:])
                scores.append(logprobs[row, start - 1 : len(p) - 1].gather(1, targets[:, None]).sum().item())
            out.append(scores)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=100)
    args = parser.parse_args()
    import transformers

    docs = TASKS["hellaswag"].docs()[: args.docs]
    subject = local_subject("smollm2", max_batched_tokens=512, in_flight=16)
    scorer = subject.scorer
    prompts = [scorer.prompts(d) for d in docs]
    tokens = sum(len(p) for doc in prompts for p, _ in doc)
    started = time.perf_counter()
    ours = dict(scorer.run(enumerate(docs)))
    autan_seconds = time.perf_counter() - started
    hit = scorer.engine.stats().prefix_cache_hit_rate

    path = registry.resolve("smollm2")
    model = transformers.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name).eval()
    transformers_scores(model, prompts[:2])  # warm
    started = time.perf_counter()
    theirs = transformers_scores(model, prompts)
    hf_seconds = time.perf_counter() - started

    diffs = [abs(a - b) for i in range(len(docs)) for a, b in zip(ours[i], theirs[i], strict=True)]
    same = sum(metrics.argmax(ours[i]) == metrics.argmax(theirs[i]) for i in range(len(docs)))
    norm = {
        who: metrics.mean_and_stderr([metrics.correct(d, s[i], "acc_norm") for i, d in enumerate(docs)])[0]
        for who, s in (("autan", ours), ("transformers", theirs))
    }
    rows = [
        "| scorer | docs/s | prompt tokens/s | acc_norm |",
        "|---|---|---|---|",
        f"| autan (engine, prefix cache: {hit:.0%} of prompt tokens reused) | {len(docs) / autan_seconds:.2f} | "
        f"{tokens / autan_seconds:.0f} | {100 * norm['autan']:.1f} |",
        f"| transformers (float32, a document's choices batched) | {len(docs) / hf_seconds:.2f} | "
        f"{tokens / hf_seconds:.0f} | {100 * norm['transformers']:.1f} |",
    ]
    note = (
        f"The first {len(docs)} HellaSwag validation documents (4 choices each, {tokens} prompt tokens in all), "
        f"0-shot, on the default model's Q4_1 file, {torch.get_num_threads()} threads. autan is "
        f"{hf_seconds / autan_seconds:.2f}x as fast. The two agree on the chosen ending in {same} of {len(docs)} "
        f"documents; their log-likelihoods differ by at most {max(diffs):.1e} (median "
        f"{sorted(diffs)[len(diffs) // 2]:.1e}): autan runs the Q4_1 matrices through its own kernels, transformers "
        "the same weights dequantized to float32."
    )
    write_section("Evaluation speed", note + "\n\n" + "\n".join(rows))


if __name__ == "__main__":
    main()
