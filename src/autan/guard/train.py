"""Training the moderation head: `autan guard train` (one command, a few minutes on a CPU).

1. The labelled prompts of `guard.data`, split by source and by near-copy group (seeded).
2. Each text's windows read by the encoder, each layer's mean token state (cached under
   `$AUTAN_HOME/guard`, keyed by the texts, so a retrain with new hyperparameters reads none again).
3. The head trained on the training split: each text's mean features, standardised; binary
   cross-entropy per category; AdamW over minibatches; of each member (one per seed), the epoch
   whose validation split ranks unsafe over safe best is kept.
4. A threshold per category, on the validation split: the lowest that keeps the safe prompts
   flagged (by any category) at or under `--safe-flag-rate`.
5. The held-out test split scored per source, with its ROC curve; the head, its thresholds and
   these figures written beside the classifier (`head.safetensors`, `head.json`), the figures
   also to docs/safety.md and the curve to docs/guard-roc.svg.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from autan.guard import data
from autan.guard.categories import CATEGORIES
from autan.guard.classifier import HEAD_DIR, HIDDEN, MEMBERS, Classifier, Head, highest_reading, member, window_means
from autan.guard.encoder import FEATURES_VERSION, WHEEL, Encoder
from autan.registry import home

DOCS = Path(__file__).resolve().parents[3] / "docs"


@dataclass
class Embedded:
    examples: list[data.Example]
    vectors: torch.Tensor  # one row of features per window
    owner: torch.Tensor  # the example each window belongs to

    def labels(self) -> torch.Tensor:
        return torch.tensor([[c in e.labels for c in CATEGORIES] for e in self.examples], dtype=torch.float32)


def embed(encoder: Encoder | None, examples: list[data.Example], quiet: bool = False) -> Embedded:
    """Each example's windows' features; kept per text under `$AUTAN_HOME/guard`, so a retrain
    reads only the texts it has not seen (keyed by the encoder's pin, the features' version and
    the text, as the classifier cleans it)."""
    from autan.guard.classifier import clean

    cache = home() / "guard" / "features.pt"
    known: dict[str, torch.Tensor] = torch.load(cache, weights_only=True) if cache.is_file() else {}
    keys = [hashlib.sha256(f"{WHEEL.sha256}\0{FEATURES_VERSION}\0{e.text}".encode()).hexdigest() for e in examples]
    missing = [i for i, k in enumerate(keys) if k not in known]
    if missing:
        encoder = encoder or Encoder()
        started = time.perf_counter()
        for at in range(0, len(missing), 64):
            part = missing[at : at + 64]
            windows = encoder.windows([clean(examples[i].text) for i in part])
            vectors = encoder.features(windows)
            owner = torch.tensor(windows.owner)
            for n, i in enumerate(part):
                known[keys[i]] = vectors[owner == n].clone()
            if not quiet:
                print(f"\rreading {min(at + 64, len(missing))}/{len(missing)} texts", end="", file=sys.stderr)
        if not quiet:
            print(f" in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save(known, cache)
    vectors = [known[k] for k in keys]
    owner = torch.cat([torch.full((len(v),), i) for i, v in enumerate(vectors)])
    return Embedded(examples, torch.cat(vectors), owner)


def subset(embedded: Embedded, indices: list[int]) -> Embedded:
    chosen = {i: n for n, i in enumerate(indices)}
    rows = [r for r, o in enumerate(embedded.owner.tolist()) if o in chosen]
    owner = torch.tensor([chosen[embedded.owner[r].item()] for r in rows])
    return Embedded([embedded.examples[i] for i in indices], embedded.vectors[rows], owner)


def text_vectors(embedded: Embedded) -> torch.Tensor:
    """Each text's windows' features averaged: what the head is trained on."""
    return window_means(embedded.vectors, embedded.owner, len(embedded.examples))


def text_scores(head: Head, embedded: Embedded) -> torch.Tensor:
    """[examples, categories + 1] probabilities (the last: unsafe at all), as the classifier
    scores them: each text's highest of its whole and each of its windows."""
    with torch.no_grad():
        return highest_reading(head.eval(), embedded.vectors, embedded.owner, len(embedded.examples))


def targets(embedded: Embedded) -> torch.Tensor:
    labels = embedded.labels()
    return torch.cat([labels, (labels.sum(1, keepdim=True) > 0).float()], 1)


def auc_binary(scores: torch.Tensor, positive: torch.Tensor) -> float:
    """The area under the ROC curve, by ranks (Mann-Whitney)."""
    order = torch.argsort(scores)
    ranks = torch.empty_like(scores)
    ranks[order] = torch.arange(1, len(scores) + 1, dtype=scores.dtype)
    n1, n0 = int(positive.sum()), int((~positive).sum())
    if not n1 or not n0:
        return float("nan")
    return ((ranks[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0)).item()


def fit(train: Embedded, validation: Embedded, seed: int, epochs: int = 300) -> tuple[Head, list[int]]:
    """The head's members, one per seed from `seed`, each trained by AdamW over minibatches of
    128 standardised texts; of each, the epoch whose validation split ranks unsafe over safe best
    (checked every 5) is kept. Returns the head and those epochs."""
    x, y = text_vectors(train), targets(train)
    head = Head()
    head.shift.copy_(x.mean(0))
    head.scale.copy_(x.std(0) + 1e-6)
    x = (x - head.shift) / head.scale
    x_val = (text_vectors(validation) - head.shift) / head.scale
    unsafe_val = targets(validation)[:, -1] > 0
    pos_weight = ((len(y) - y.sum(0)) / y.sum(0).clamp(min=1)).clamp(max=20)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    chosen = []
    for n, net in enumerate(head.members):
        torch.manual_seed(seed + n)
        net.load_state_dict(member().state_dict())  # this seed's initial weights
        optimiser = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-3)
        best, best_state, best_epoch = -1.0, None, 0
        for epoch in range(epochs):
            net.train()
            for batch in torch.randperm(len(x)).split(128):
                optimiser.zero_grad()
                loss_fn(net(x[batch]), y[batch]).backward()
                optimiser.step()
            if epoch % 5 == 4:
                with torch.no_grad():
                    auc = auc_binary(net.eval()(x_val)[:, -1], unsafe_val)
                if auc > best:
                    best, best_epoch = auc, epoch
                    best_state = {k: v.clone() for k, v in net.state_dict().items()}
        net.load_state_dict(best_state)
        chosen.append(best_epoch)
    return head.eval(), chosen


def calibrate(head: Head, validation: Embedded) -> None:
    """Each output's temperature (1 to 100): the one whose probabilities fit the validation
    split's labels best (the lowest cross-entropy). It changes no ranking, only how sure a score
    says the head is."""
    head.temperature.fill_(1.0)
    with torch.no_grad():
        logits, y = head.eval()(text_vectors(validation)), targets(validation)
        grid = torch.logspace(0, 2, 81)
        for k in range(logits.shape[1]):
            losses = [torch.nn.functional.binary_cross_entropy_with_logits(logits[:, k] / t, y[:, k]) for t in grid]
            head.temperature[k] = grid[int(torch.stack(losses).argmin())]


def choose_thresholds(scores: torch.Tensor, labels: torch.Tensor, safe_flag_rate: float) -> dict[str, float]:
    """`unsafe`: the lowest threshold that flags at most `safe_flag_rate` of the safe validation
    prompts. Each category: the lowest that, alone, flags at most a tenth of that (a category is
    also flagged, below it, when the text is unsafe and that category is its likeliest)."""
    safe = labels.sum(1) == 0

    def lowest(column: torch.Tensor, rate: float) -> float:
        if not safe.any():
            return 0.5
        return min(max(torch.quantile(column[safe].double(), 1 - rate).item() + 1e-6, 0.5), 0.999999)

    chosen = {c: round(lowest(scores[:, k], safe_flag_rate / 10), 6) for k, c in enumerate(CATEGORIES)}
    chosen["unsafe"] = round(lowest(scores[:, -1], safe_flag_rate), 6)
    return chosen


def decide(scores: torch.Tensor, thresholds: dict[str, float]) -> torch.Tensor:
    """[texts, categories] booleans, as the classifier decides (`classifier.decide`)."""
    from autan.guard.classifier import decide as one

    return torch.tensor([list(one(row[:-1], row[-1], thresholds).values()) for row in scores.tolist()])


def margin(scores: torch.Tensor, thresholds: dict[str, float]) -> torch.Tensor:
    """How far over its threshold a text's unsafe score is, in logits (for the ROC curve)."""
    p, t = scores[:, -1].clamp(1e-7, 1 - 1e-7), thresholds["unsafe"]
    return torch.log(p / (1 - p)) - math.log(t / (1 - t))


def evaluate(scores: torch.Tensor, embedded: Embedded, thresholds: dict[str, float]) -> dict:
    decisions = decide(scores, thresholds)
    flagged = decisions.any(1)
    unsafe = embedded.labels().sum(1) > 0
    by_source: dict[str, dict] = {}
    for name in sorted({e.source for e in embedded.examples}):
        mine = torch.tensor([e.source == name for e in embedded.examples])
        row = {}
        if (mine & unsafe).any():
            row["unsafe"] = int((mine & unsafe).sum())
            row["unsafe_flagged"] = round(flagged[mine & unsafe].float().mean().item(), 4)
        if (mine & ~unsafe).any():
            row["safe"] = int((mine & ~unsafe).sum())
            row["safe_flagged"] = round(flagged[mine & ~unsafe].float().mean().item(), 4)
        by_source[name] = row
    per_category = {}
    labels = embedded.labels()
    for k, c in enumerate(CATEGORIES):
        has = labels[:, k] > 0
        if has.any():
            per_category[c] = {
                "n": int(has.sum()),
                "flagged": round(flagged[has].float().mean().item(), 4),  # by any category
                "as_this": round(decisions[has, k].float().mean().item(), 4),  # by this one
            }
    return {
        "unsafe": int(unsafe.sum()),
        "safe": int((~unsafe).sum()),
        "unsafe_flagged": round(flagged[unsafe].float().mean().item(), 4),
        "safe_flagged": round(flagged[~unsafe].float().mean().item(), 4),
        "by_source": by_source,
        "by_category": per_category,
    }


def roc(scores: torch.Tensor, embedded: Embedded, thresholds: dict[str, float]) -> list[tuple[float, float]]:
    """Safe and unsafe prompts flagged as the unsafe threshold moves (categories left out)."""
    m = margin(scores, thresholds)
    unsafe = embedded.labels().sum(1) > 0
    points = [(0.0, 0.0)]
    for cut in torch.sort(m.unique(), descending=True).values.tolist():
        points.append((((m >= cut) & ~unsafe).float().sum().item() / max(int((~unsafe).sum()), 1),
                       ((m >= cut) & unsafe).float().sum().item() / max(int(unsafe.sum()), 1)))  # fmt: skip
    points.append((1.0, 1.0))
    return points


def roc_svg(points: list[tuple[float, float]], operating: tuple[float, float], auc: float) -> str:
    """The curve as a small SVG (no plotting library needed)."""
    size, pad = 320, 40
    x = lambda f: pad + f * size  # noqa: E731
    y = lambda t: pad + (1 - t) * size  # noqa: E731
    path = " ".join(f"{'M' if i == 0 else 'L'}{x(f):.1f},{y(t):.1f}" for i, (f, t) in enumerate(points))
    ticks = "".join(
        f'<text x="{x(v):.0f}" y="{pad + size + 16}" text-anchor="middle">{v:g}</text>'
        f'<text x="{pad - 6}" y="{y(v) + 4:.0f}" text-anchor="end">{v:g}</text>'
        for v in (0, 0.25, 0.5, 0.75, 1)
    )
    return f"""<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {size + 2 * pad} {size + 2 * pad + 10}" \
font-family="sans-serif" font-size="11">
<rect x="{pad}" y="{pad}" width="{size}" height="{size}" fill="none" stroke="#999"/>
<path d="M{x(0)},{y(0)} L{x(1)},{y(1)}" stroke="#ccc" stroke-dasharray="4 4"/>
<path d="{path}" fill="none" stroke="#e8590c" stroke-width="2"/>
<circle cx="{x(operating[0]):.1f}" cy="{y(operating[1]):.1f}" r="4" fill="#1d1d1f"/>
{ticks}
<text x="{pad + size / 2}" y="{pad + size + 34}" text-anchor="middle">safe prompts flagged</text>
<text x="12" y="{pad + size / 2}" transform="rotate(-90 12 {pad + size / 2})" \
text-anchor="middle">unsafe prompts flagged</text>
<text x="{pad + size / 2}" y="24" text-anchor="middle" font-size="13">\
Moderation ROC, held-out prompts (AUC {auc:.3f})</text>
</svg>
"""


def auc_of(points: list[tuple[float, float]]) -> float:
    return sum((b[0] - a[0]) * (a[1] + b[1]) / 2 for a, b in itertools.pairwise(points))


def held_out_table(info: dict) -> str:
    """The test split's figures as Markdown: per source, then per category."""
    held = info["held_out"]
    rows = ["| source | unsafe prompts | flagged | safe prompts | flagged |", "|---|---|---|---|---|"]
    for name, r in held["by_source"].items():
        unsafe = f"{r['unsafe']} | {r['unsafe_flagged']:.1%}" if "unsafe" in r else "- | -"
        safe = f"{r['safe']} | {r['safe_flagged']:.1%}" if "safe" in r else "- | -"
        rows.append(f"| {name} | {unsafe} | {safe} |")
    rows.append(f"| **all** | {held['unsafe']} | **{held['unsafe_flagged']:.1%}** | {held['safe']} | "
                f"**{held['safe_flagged']:.1%}** |")  # fmt: skip
    rows += ["", "| category | held-out prompts | flagged at all | flagged as this category |", "|---|---|---|---|"]
    for name, r in held["by_category"].items():
        rows.append(f"| {name} | {r['n']} | {r['flagged']:.1%} | {r['as_this']:.1%} |")
    made = info["trained"]
    return (
        f"`{made['command'].strip()}`: {made['examples']['train']} training, {made['examples']['validation']} "
        f"validation and {made['examples']['test']} held-out prompts; ROC AUC {held['auc']:.3f} "
        "([curve](guard-roc.svg)).\n\n" + "\n".join(rows)
    )


def write_held_out(doc: Path, info: dict) -> None:
    start, end = "<!-- held-out -->", "<!-- /held-out -->"
    text = doc.read_text() if doc.exists() else f"# Safety\n\n{start}\n{end}\n"
    if start not in text:
        text = text.rstrip() + f"\n\n{start}\n{end}\n"
    before, rest = text.split(start, 1)
    after = rest.split(end, 1)[1]
    doc.write_text(f"{before}{start}\n{held_out_table(info)}\n{end}{after}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`autan guard train`'s arguments."""
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--safe-flag-rate",
        type=float,
        default=0.08,
        help="of the safe validation prompts the unsafe threshold flags (0.08)",
    )
    parser.add_argument("--out", type=Path, default=HEAD_DIR, help="where head.safetensors and head.json go")
    parser.add_argument("--docs", type=Path, default=DOCS, help="where safety.md and guard-roc.svg go ('' for none)")


def run(args: argparse.Namespace) -> int:
    """`autan guard train` with its parsed arguments (`args.argv`: the command line after `train`)."""
    from safetensors.torch import save_file

    examples = data.load_all()
    train, validation, test = data.split(examples, seed=args.seed)
    index = {id(e): i for i, e in enumerate(examples)}
    encoder = Encoder()
    embedded = embed(encoder, examples)
    parts = [subset(embedded, [index[id(e)] for e in part]) for part in (train, validation, test)]
    head, epochs = fit(parts[0], parts[1], args.seed)
    calibrate(head, parts[1])
    thresholds = choose_thresholds(text_scores(head, parts[1]), parts[1].labels(), args.safe_flag_rate)
    args.out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in head.state_dict().items()}, args.out / "head.safetensors")
    info = {
        "categories": list(CATEGORIES),
        "hidden": HIDDEN,
        "members": MEMBERS,
        "features": FEATURES_VERSION,
        "thresholds": thresholds,
        "encoder": {"package": WHEEL.package, "sha256": WHEEL.sha256, "license": WHEEL.license},
        "trained": {
            "command": "autan guard train " + " ".join(args.argv),
            "seed": args.seed,
            "safe_flag_rate": args.safe_flag_rate,
            "epochs": epochs,
            "examples": {"train": len(train), "validation": len(validation), "test": len(test)},
            "sources": {s.name: {"license": s.license, "files": list(s.members)} for s in data.SOURCES},
        },
    }
    (args.out / "head.json").write_text(json.dumps(info, indent=1) + "\n")
    # the held-out prompts scored as the server scores them (`highest_reading` over the features of
    # their cleaned windows), by the head as saved
    test_scores = text_scores(Classifier(encoder, args.out).head, parts[2])
    held_out = evaluate(test_scores, parts[2], thresholds)
    points = roc(test_scores, parts[2], thresholds)
    auc = auc_of(points)
    info["held_out"] = held_out | {"auc": round(auc, 4)}
    (args.out / "head.json").write_text(json.dumps(info, indent=1) + "\n")
    if str(args.docs):
        operating = (held_out["safe_flagged"], held_out["unsafe_flagged"])
        (args.docs / "guard-roc.svg").write_text(roc_svg(points, operating, auc))
        write_held_out(args.docs / "safety.md", info)
    print(json.dumps(info["held_out"], indent=1))
    return 0
