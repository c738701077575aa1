"""A real fine-tune of the default model, and training speed against transformers + peft.

The task: write a date given in words ("5 March 2021", "March 5, 2021") as ISO 8601
("2021-03-05"), prompted only with "Date: ...". Nothing in the prompt says which format is
wanted, so the base model cannot do it; 200 generated examples teach it. Held-out accuracy is
exact match of the greedy answer on 40 other dates, before and after, on the engine (the
adapter served per request).

Speed: the same LoRA (rank 8, alpha 16, all seven maps, dropout 0.05) on the same model and
batches, a few optimizer steps each: autan on the Q4_1 file as stored (its blocks unpacked at
each use), transformers + peft on the same weights dequantized to float32 (how transformers
loads a GGUF file). Tokens per second count every token of every sequence trained on.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import write_section

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]  # fmt: skip


def dates(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        y, m, d = rng.randint(1950, 2049), rng.randint(1, 12), rng.randint(1, 28)
        asked = rng.choice([f"{d} {MONTHS[m - 1]} {y}", f"{MONTHS[m - 1]} {d}, {y}"])
        out.append({"messages": [{"role": "user", "content": f"Date: {asked}"},
                                 {"role": "assistant", "content": f"{y:04d}-{m:02d}-{d:02d}"}]})  # fmt: skip
    return out


def accuracy(held_out: list[dict], adapter: Path | None) -> tuple[float, list[str]]:
    from autan import registry
    from autan.engine.engine import Engine
    from autan.engine.sampling import SamplingParams
    from autan.model import lora
    from autan.tokenizer import load_tokenizer
    from autan.weights import load_model

    path = registry.resolve("smollm2")
    engine = Engine(load_model(path), load_tokenizer(path))
    if adapter is not None:
        engine.add_adapter("dates", lora.load_adapter(adapter))
    params = SamplingParams(temperature=0, max_tokens=16)
    name = "dates" if adapter is not None else None
    streams = [engine.add_request(r["messages"][:-1], params, adapter=name) for r in held_out]
    while engine.has_work:
        engine.step()
    answers = [list(s.events)[-1].text.strip() for s in streams]
    right = sum(a == r["messages"][-1]["content"] for a, r in zip(answers, held_out, strict=True))
    return right / len(held_out), answers


def peft_tokens_per_second(train_file: Path, steps: int, batch: int) -> float:
    """transformers + peft, the same LoRA and batches (padded, labels -100 off the assistant's tokens)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from autan import registry
    from autan.finetune.train import _order, prepare
    from autan.model.lora import TARGETS
    from autan.tokenizer import load_tokenizer

    path = registry.resolve("smollm2")
    examples = prepare(load_tokenizer(path), train_file, 2048)
    base = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=list(TARGETS)))
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    order = _order(len(examples), steps * batch, 0)
    tokens, started = 0, time.perf_counter()
    for step in range(steps):
        chosen = [examples[i] for i in order[step * batch : (step + 1) * batch]]
        width = max(len(e.ids) for e in chosen)
        ids = torch.zeros(len(chosen), width, dtype=torch.long)
        mask = torch.zeros(len(chosen), width, dtype=torch.long)
        labels = torch.full((len(chosen), width), -100)
        for row, e in enumerate(chosen):
            ids[row, : len(e.ids)] = torch.tensor(e.ids)
            mask[row, : len(e.ids)] = 1
            labels[row, : len(e.ids)] = torch.where(torch.tensor(e.learn), torch.tensor(e.ids), -100)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        tokens += sum(len(e.ids) for e in chosen)
    return tokens / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train", type=int, default=200, help="training examples")
    parser.add_argument("--held-out", type=int, default=40)
    parser.add_argument("--speed-steps", type=int, default=6)
    args = parser.parse_args()
    from autan.finetune.train import Progress, TrainConfig, train

    work = Path(tempfile.mkdtemp(prefix="autan-finetune-"))
    train_file, val_file = work / "train.jsonl", work / "val.jsonl"
    train_file.write_text("".join(json.dumps(r) + "\n" for r in dates(args.train, 0)))
    held_out = dates(args.held_out, 1)
    val_file.write_text("".join(json.dumps(r) + "\n" for r in held_out))

    before, before_answers = accuracy(held_out, None)
    speeds: list[float] = []

    def report(p: Progress) -> None:
        if p.kind == "step":
            speeds.append(p.tokens_per_second)

    config = TrainConfig(rank=8, alpha=16, learning_rate=1e-3, batch_size=8, epochs=1, eval_every=5)
    started = time.perf_counter()
    result = train("smollm2", train_file, work / "adapter", config, val=val_file, report=report)
    seconds = time.perf_counter() - started
    after, after_answers = accuracy(held_out, work / "adapter")

    speed = TrainConfig(rank=8, alpha=16, learning_rate=1e-3, batch_size=8, steps=args.speed_steps)
    ours: list[float] = []
    train("smollm2", train_file, work / "speed", speed,
          report=lambda p: ours.append(p.tokens_per_second) if p.kind == "step" else None)  # fmt: skip
    theirs = peft_tokens_per_second(train_file, args.speed_steps, 8)

    body = f"""The default model (SmolLM2-135M-Instruct, Q4_1) learns to write dates as ISO 8601 from
{args.train} generated examples ("Date: 5 March 2021" → "2021-03-05"; nothing in the prompt says which
format): LoRA rank 8, alpha 16, the seven maps, learning rate 1e-3 (cosine), batch 8, one epoch
({result.steps} steps), on this machine's CPU in {seconds:.0f} s.

| | held-out exact match ({args.held_out} dates) | an answer |
|---|---|---|
| before (the base model) | {100 * before:.1f}% | {json.dumps(before_answers[0])} |
| after (the adapter, served per request) | {100 * after:.1f}% | {json.dumps(after_answers[0])} |

Training loss at the end {result.train_loss:.4f}, validation loss {result.val_loss:.4f}.

Training speed, the same LoRA and batches ({args.speed_steps} steps of 8 examples, first step included):

| | tokens/s |
|---|---|
| autan (Q4_1 as stored, unpacked per use; examples packed into one forward) | {ours[-1]:.0f} |
| transformers + peft (the weights dequantized to float32; a padded batch) | {theirs:.0f} |
"""
    write_section("Fine-tuning", body)


if __name__ == "__main__":
    main()
