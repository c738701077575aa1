"""LoRA training on autan's own model: the base frozen and kept as stored (a GGUF's quantized
blocks are unpacked at each use, QLoRA-style), only the adapter's matrices learn.

The loop is plain PyTorch: AdamW, a learning-rate schedule with warm-up, gradient accumulation,
gradient clipping, the loss averaged over the learned tokens of each optimizer step. It writes
to `out`:
- `adapter_config.json` + `adapter_model.safetensors`: the adapter, in PEFT's format;
- `checkpoint-N/`: the adapter, the optimizer and where the run stood, every `save_every` steps
  and at the end; a run started again with `resume` goes on from the newest;
- `log.jsonl`: the loss of every step and the validation loss of every evaluation;
- `loss.svg`: the loss curve.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from autan.config import ModelConfig
from autan.errors import AutanError
from autan.finetune import curve
from autan.finetune.data import Example, encode, read_jsonl
from autan.memory import give_memory_back
from autan.model import lora

SLOT = 1  # the adapter being trained
PACK_TOKENS = 2048  # tokens packed into one forward (a longer example goes alone)
RUNTIME_BYTES = 320 * 2**20  # what a run holds whatever its size: tokenizer, optimizer, threads' scratch


@dataclass
class TrainConfig:
    rank: int = 8
    alpha: float = 16
    dropout: float = 0.05
    targets: tuple[str, ...] = lora.TARGETS
    learning_rate: float = 2e-4
    schedule: str = "cosine"  # cosine, linear or constant, after the warm-up
    warmup: float = 0.03  # share of the steps the learning rate rises over
    epochs: float = 1.0
    batch_size: int = 4  # examples per forward-backward round
    grad_accum: int = 1  # rounds per optimizer step
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    max_seq_len: int = 2048  # longer examples are cut (their end is lost)
    seed: int = 0
    steps: int = 0  # optimizer steps (0: as many as `epochs` take)
    eval_every: int = 0  # steps between validation losses (0: at the end only)
    save_every: int = 0  # steps between checkpoints (0: at the end only; -1: about ten in a run)
    pack_tokens: int = PACK_TOKENS  # tokens packed into one forward: with max_seq_len, what bounds memory
    recompute: bool = True  # keep each block's input only and run the block again in the backward pass

    def check(self) -> None:
        checks = [
            (self.rank >= 1, f"rank {self.rank} must be at least 1"),
            (self.alpha > 0, f"alpha {self.alpha} must be positive"),
            (0 <= self.dropout < 1, f"dropout {self.dropout} must be in [0, 1)"),
            (self.learning_rate > 0, f"learning rate {self.learning_rate} must be positive"),
            (
                self.schedule in ("cosine", "linear", "constant"),
                f"schedule {self.schedule!r}: cosine, linear or constant",
            ),
            (0 <= self.warmup < 1, f"warmup {self.warmup} must be a share of the steps in [0, 1)"),
            (self.epochs > 0, f"epochs {self.epochs} must be positive"),
            (self.batch_size >= 1, f"batch size {self.batch_size} must be at least 1"),
            (self.grad_accum >= 1, f"gradient accumulation {self.grad_accum} must be at least 1"),
            (self.max_seq_len >= 2, f"max sequence length {self.max_seq_len} must be at least 2"),
            (self.eval_every >= 0 and self.save_every >= -1, "eval_every and save_every must be 0 or more"),
            (self.steps >= 0, f"training steps {self.steps} must be 0 (from the epochs) or more"),
        ]
        for ok, message in checks:
            if not ok:
                raise AutanError(message)
        unknown = sorted(set(self.targets) - set(lora.TARGETS))
        if unknown or not self.targets:
            raise AutanError(f"target modules {', '.join(unknown) or '(none)'}: choose among {', '.join(lora.TARGETS)}")


@dataclass
class Progress:
    """What a run reports as it goes (to the terminal, or a fine-tuning job's events)."""

    step: int
    steps: int
    loss: float | None = None
    val_loss: float | None = None
    learning_rate: float = 0.0
    tokens_per_second: float = 0.0
    eta_seconds: float = 0.0
    kind: str = "step"  # step, eval, checkpoint or done


@dataclass
class Result:
    adapter: Path
    steps: int
    train_loss: float | None
    val_loss: float | None
    history: list[dict[str, Any]] = field(default_factory=list)
    tokens: int = 0  # trained on in this run (resumed steps not counted)
    stopped: bool = False  # by `stop`, before the last step


def learning_rate(config: TrainConfig, step: int, steps: int) -> float:
    """The rate at optimizer step `step` (0-based) of `steps`."""
    warm = math.ceil(config.warmup * steps)
    if step < warm:
        return config.learning_rate * (step + 1) / warm
    if config.schedule == "constant" or steps <= warm:
        return config.learning_rate
    done = (step - warm) / max(1, steps - warm)
    if config.schedule == "linear":
        return config.learning_rate * (1 - done)
    return config.learning_rate * 0.5 * (1 + math.cos(math.pi * done))


def batch_loss(model: torch.nn.Module, examples: list[Example], recompute: bool = True) -> tuple[torch.Tensor, int]:
    """The summed loss of the examples' learned tokens, and how many there are: the examples
    packed into one forward (each attending only to itself), with `recompute` each block run again
    in the backward pass rather than kept, the logits made only where a token is learned and a few
    rows at a time."""
    from autan.model.cache import packed_step

    inputs = [torch.tensor(e.ids[:-1], dtype=torch.long) for e in examples]
    targets = torch.cat([torch.tensor(e.ids[1:], dtype=torch.long) for e in examples])
    learn = torch.cat([torch.tensor(e.learn[1:], dtype=torch.bool) for e in examples])
    rows = learn.nonzero().squeeze(1).to(model.device)
    if len(rows) == 0:
        return torch.zeros((), device=model.device, requires_grad=True), 0
    step = packed_step([len(x) for x in inputs], model.config.sliding_window, model.device)
    features = model.features(torch.cat(inputs), step, rows, SLOT, recompute=recompute)
    targets = targets.to(model.device)[rows]
    chunk = loss_rows(model.config)
    total = torch.zeros((), device=model.device)
    for start in range(0, len(rows), chunk):
        part = (features[start : start + chunk], targets[start : start + chunk])
        total = total + (
            checkpoint(_loss, model, *part, use_reentrant=False) if torch.is_grad_enabled() else _loss(model, *part)
        )
    return total, len(rows)


def loss_rows(config: ModelConfig) -> int:
    """Rows whose logits are made at once: about 16M floats (64 MiB), whatever the vocabulary."""
    return max(16, 2**24 // config.vocab_size)


def _loss(model: torch.nn.Module, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(model.head(features).float(), targets, reduction="sum")


def packs(examples: list[Example], max_tokens: int) -> list[list[Example]]:
    """The examples in groups of at most `max_tokens` tokens (one forward each)."""
    out: list[list[Example]] = [[]]
    size = 0
    for e in examples:
        if out[-1] and size + len(e.ids) > max_tokens:
            out.append([])
            size = 0
        out[-1].append(e)
        size += len(e.ids)
    return out


def validation_loss(model: torch.nn.Module, examples: list[Example], max_tokens: int) -> float:
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for group in packs(examples, max_tokens):
            loss, n = batch_loss(model, group)
            total, count = total + float(loss), count + n
    model.train()
    return total / max(1, count)


def prepare(tokenizer: Any, path: str | Path, max_seq_len: int) -> list[Example]:
    out = []
    for number, row in enumerate(read_jsonl(path), 1):
        e = encode(tokenizer, row, f"{path}:{number}")
        if len(e.ids) > max_seq_len:
            e = Example(e.ids[:max_seq_len], e.learn[:max_seq_len])
        if e.learned:
            out.append(e)
    if not out:
        raise AutanError(f"{path}: no example keeps a learned token within {max_seq_len} tokens")
    return out


def train(
    model_path: str | Path,
    data: str | Path,
    out: str | Path,
    config: TrainConfig | None = None,
    val: str | Path | None = None,
    device: str = "cpu",
    resume: bool = False,
    report: Callable[[Progress], None] | None = None,
    stop: Callable[[], bool] | None = None,
) -> Result:
    """Train a LoRA adapter of the model at `model_path` on `data` (JSONL); see the module's text."""
    from autan import registry
    from autan.tokenizer import load_tokenizer
    from autan.weights import load_model

    config = config or TrainConfig()
    config.check()
    out = Path(out).expanduser()
    path = registry.resolve(str(model_path))
    tokenizer = load_tokenizer(path)
    examples = prepare(tokenizer, data, config.max_seq_len)
    held_out = prepare(tokenizer, val, config.max_seq_len) if val else []
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    model = load_model(path, device=device, dtype=dtype, kernels="exact")
    for p in model.parameters():
        p.requires_grad_(False)
    adapter_config = lora.AdapterConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        target_modules=config.targets,
        lora_dropout=config.dropout,
        base_model_name_or_path=str(model_path),
    )
    fresh = lora.new_adapter(model, adapter_config, config.seed)
    lora.attach(model, fresh, SLOT, trainable=True)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    per_step = config.batch_size * config.grad_accum
    steps = config.steps or max(1, math.ceil(len(examples) * config.epochs / per_step))
    order = Order(len(examples), config.seed)
    save_every = config.save_every if config.save_every >= 0 else max(1, steps // 10)

    step, history = 0, []
    if resume and (latest := _latest_checkpoint(out)) is not None:
        step, history = _restore(latest, model, optimizer, config)
    torch.manual_seed(config.seed + step)  # dropout
    model.train()
    if config.recompute:  # (the model is this run's own: the hooks go with it)
        for block in model.model.layers:
            block.register_forward_pre_hook(lambda *_: give_memory_back())
    report = report or _printer(steps)
    started, tokens, last_loss = time.perf_counter(), 0, None
    first_step = step
    while step < steps:
        if stop is not None and stop():
            break
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, step, steps)
        batch = [examples[i] for i in order.take(step * per_step, per_step)]
        learned = sum(e.learned for e in batch)
        total = 0.0
        for group in packs(batch, max(config.max_seq_len, config.pack_tokens)):
            loss, _ = batch_loss(model, group, config.recompute)
            (loss / learned).backward()
            total += float(loss.detach())
            tokens += sum(len(e.ids) for e in group)
        torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        last_loss = total / learned
        history.append({"step": step, "loss": last_loss, "learning_rate": optimizer.param_groups[0]["lr"]})
        elapsed = time.perf_counter() - started
        rate = (step - first_step) / elapsed
        report(Progress(step, steps, last_loss, None, optimizer.param_groups[0]["lr"], tokens / elapsed,
                        (steps - step) / rate if rate else 0.0))  # fmt: skip
        at_end = step == steps
        if held_out and (at_end or (config.eval_every and step % config.eval_every == 0)):
            value = validation_loss(model, held_out, max(config.max_seq_len, config.pack_tokens))
            history.append({"step": step, "val_loss": value})
            report(Progress(step, steps, last_loss, value, kind="eval"))
        if at_end or (save_every and step % save_every == 0):
            _checkpoint(out / f"checkpoint-{step}", model, optimizer, adapter_config, step, history)
            report(Progress(step, steps, last_loss, kind="checkpoint"))
    lora.save_adapter(out, adapter_config, _trained(model))
    _write_log(out, history)
    curve.write(out / "loss.svg", history)
    val_losses = [h["val_loss"] for h in history if "val_loss" in h]
    report(Progress(step, steps, last_loss, val_losses[-1] if val_losses else None, kind="done"))
    return Result(out, step, last_loss, val_losses[-1] if val_losses else None, history, tokens, step < steps)


def peak_bytes(config: ModelConfig, tokens: int, weights: int) -> int:
    """About the most memory a run holds while training on one pack of `tokens` tokens with its
    blocks run again in the backward pass (`recompute`), an upper bound, float32:
    - the model as loaded for training (`weights`, see `training_weights`), one block's weights
      unpacked at a time and, for a tied head, the embedding matrix unpacked;
    - per token, every block's input (kept for the backward pass), and inside the one block being
      run again its activations and their gradients: 8 vectors the model's width and 6 the
      hidden width (times the experts a token goes to), twice;
    - the logits of `loss_rows` rows at a time, four times over (logits, log-softmax, gradients).
    Nothing grows with the square of `tokens`: attention runs in SDPA's fused kernel.
    (Measured peaks, against this bound: bench/finetune_memory.py, docs/benchmarks.md.)"""
    c = config
    experts = c.moe.num_experts_per_tok if c.moe else 1
    per_token = c.n_layers * c.dim + 2 * (8 * c.dim + 6 * c.hidden_dim * experts)
    embeddings = c.vocab_size * c.dim * (1 if c.tie_embeddings else 2)
    block = (c.parameters - embeddings) // c.n_layers
    head = c.vocab_size * c.dim if c.tie_embeddings else 0
    return RUNTIME_BYTES + weights + 4 * (block + head + tokens * per_token + 4 * loss_rows(c) * c.vocab_size)


def training_weights(config: ModelConfig, path: str | Path) -> int:
    """Bytes the model at `path` takes once loaded for training: a GGUF's blocks stay as stored
    (about the file's size, whatever the file is named, as in Ollama's store); other formats are
    held as float32."""
    path = Path(path)
    if path.is_file():
        with path.open("rb") as f:
            if f.read(4) == b"GGUF":
                return path.stat().st_size
    return 4 * config.parameters


def longest_fitting(config: ModelConfig, weights: int, budget: int, most: int) -> int:
    """The most tokens in one pack (at most `most`) whose training fits `budget` bytes; 0 if none."""
    low, high = 0, most
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if peak_bytes(config, mid, weights) <= budget else (low, mid - 1)
    return low


class Order:
    """The examples in the order they are seen: each epoch a fresh seeded shuffle, made as the
    run reaches it (a million steps need no list of a million batches, and cancel is never
    waiting behind one)."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed = n, seed
        self._rng, self._epoch, self._current = random.Random(seed), -1, list(range(n))

    def take(self, start: int, count: int) -> list[int]:
        """Indices start..start+count of the whole sequence (called with starts that only grow,
        as a run goes; going back starts the shuffles over)."""
        return [self._at(i) for i in range(start, start + count)]

    def _at(self, i: int) -> int:
        epoch, at = divmod(i, self.n)
        if epoch < self._epoch:
            self._rng, self._epoch = random.Random(self.seed), -1
        while self._epoch < epoch:
            self._current = list(range(self.n))
            self._rng.shuffle(self._current)
            self._epoch += 1
        return self._current[at]


def _trained(model: torch.nn.Module) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    return {
        name: (linear.lora.a[str(SLOT)], linear.lora.b[str(SLOT)])
        for name, linear in lora.module_table(model).items()
        if linear.lora is not None and str(SLOT) in linear.lora.a
    }


def _checkpoint(where: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                adapter_config: lora.AdapterConfig, step: int, history: list[dict]) -> None:  # fmt: skip
    partial = where.with_name(where.name + ".partial")
    lora.save_adapter(partial, adapter_config, _trained(model))
    torch.save(optimizer.state_dict(), partial / "optimizer.pt")
    (partial / "state.json").write_text(json.dumps({"step": step, "history": history}))
    if where.exists():
        import shutil

        shutil.rmtree(where)
    partial.rename(where)


def _latest_checkpoint(out: Path) -> Path | None:
    found = [p for p in out.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    return max(found, key=lambda p: int(p.name.split("-")[-1]), default=None)


def _restore(where: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
             config: TrainConfig) -> tuple[int, list[dict]]:  # fmt: skip
    saved = lora.load_adapter(where)
    table = lora.module_table(model)
    with torch.no_grad():
        for module, (a, b, _) in saved.maps.items():
            linear = table[module]
            if linear.lora is None or tuple(linear.lora.a[str(SLOT)].shape) != tuple(a.shape):
                raise AutanError(f"{where} was trained with other options (rank, targets) than this run's")
            linear.lora.a[str(SLOT)].copy_(a)
            linear.lora.b[str(SLOT)].copy_(b)
    optimizer.load_state_dict(torch.load(where / "optimizer.pt", weights_only=True))
    state = json.loads((where / "state.json").read_text())
    return int(state["step"]), list(state["history"])


def _write_log(out: Path, history: list[dict]) -> None:
    (out / "log.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))


def _printer(steps: int) -> Callable[[Progress], None]:
    def show(p: Progress) -> None:
        if p.kind == "step":
            eta = int(p.eta_seconds)
            speed = f"{p.tokens_per_second:.0f} tokens/s · ETA {eta // 60}:{eta % 60:02d}"
            print(f"\rstep {p.step}/{steps} · loss {p.loss:.4f} · lr {p.learning_rate:.2e} · {speed}  ", end="",
                  file=sys.stderr)  # fmt: skip
        elif p.kind == "eval":
            print(f"\nstep {p.step}: validation loss {p.val_loss:.4f}", file=sys.stderr)
        elif p.kind == "done":
            print(file=sys.stderr)

    return show


def config_from(options: dict[str, Any]) -> TrainConfig:
    """A config from options by field name, each named in an error if unknown."""
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise AutanError(f"unknown training options {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    return TrainConfig(**options)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`autan finetune MODEL --data train.jsonl [--val val.jsonl] --out DIR [options]`'s arguments."""
    d = TrainConfig()
    parser.add_argument("model", help="a model name or path (a GGUF's quantized weights stay as stored)")
    parser.add_argument("--data", required=True, help="training JSONL: Mistral's or OpenAI's chat format, or text")
    parser.add_argument("--val", help="validation JSONL, for the validation loss")
    parser.add_argument("--out", required=True, type=Path, help="where the adapter, checkpoints and loss curve go")
    parser.add_argument("--rank", type=int, default=d.rank, help=f"LoRA rank ({d.rank})")
    parser.add_argument("--alpha", type=float, default=d.alpha, help=f"LoRA alpha: the scale is alpha/rank ({d.alpha})")
    parser.add_argument("--dropout", type=float, default=d.dropout, help=f"LoRA dropout ({d.dropout})")
    parser.add_argument("--targets", default=",".join(d.targets), help="comma-separated maps to adapt (all seven)")
    parser.add_argument("--learning-rate", "--lr", type=float, default=d.learning_rate, help=f"({d.learning_rate})")
    parser.add_argument("--schedule", default=d.schedule, help="cosine, linear or constant, after the warm-up")
    parser.add_argument(
        "--warmup", type=float, default=d.warmup, help=f"share of the steps to warm up over ({d.warmup})"
    )
    parser.add_argument("--epochs", type=float, default=d.epochs, help=f"passes over the data ({d.epochs:g})")
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help=f"examples per round ({d.batch_size})")
    parser.add_argument("--grad-accum", type=int, default=d.grad_accum, help="rounds per optimizer step (1)")
    parser.add_argument("--weight-decay", type=float, default=d.weight_decay, help="AdamW's (0)")
    parser.add_argument("--max-seq-len", type=int, default=d.max_seq_len, help=f"cut longer examples ({d.max_seq_len})")
    parser.add_argument("--seed", type=int, default=d.seed, help="data order, initialisation and dropout (0)")
    parser.add_argument("--eval-every", type=int, default=0, help="steps between validation losses (0: at the end)")
    parser.add_argument("--save-every", type=int, default=0, help="steps between checkpoints (0: at the end)")
    parser.add_argument(
        "--keep-activations", action="store_true",
        help="keep every block's activations for the backward pass: faster, but ~8x the memory at 2,048 tokens",
    )  # fmt: skip
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--resume", action="store_true", help="go on from the newest checkpoint in --out")


def run(args: argparse.Namespace) -> int:
    """`autan finetune` with its parsed arguments."""
    config = TrainConfig(
        rank=args.rank, alpha=args.alpha, dropout=args.dropout,
        targets=tuple(t.strip() for t in args.targets.split(",") if t.strip()),
        learning_rate=args.learning_rate, schedule=args.schedule, warmup=args.warmup, epochs=args.epochs,
        batch_size=args.batch_size, grad_accum=args.grad_accum, weight_decay=args.weight_decay,
        max_seq_len=args.max_seq_len, seed=args.seed, eval_every=args.eval_every, save_every=args.save_every,
        recompute=not args.keep_activations,
    )  # fmt: skip
    if args.device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise AutanError(f"--device {args.device}: this torch build sees no CUDA GPU")
    elif args.device != "cpu":
        raise AutanError(f"--device {args.device!r} must be cpu or cuda")
    result = train(args.model, args.data, args.out, config, args.val, args.device, args.resume)
    val = f", validation loss {result.val_loss:.4f}" if result.val_loss is not None else ""
    print(f"adapter written to {result.adapter} after {result.steps} steps (loss {result.train_loss:.4f}{val}); "
          f"loss curve in {result.adapter / 'loss.svg'}")  # fmt: skip
    print(f"serve it: autan serve {args.model} --adapter NAME={result.adapter}")
    return 0
