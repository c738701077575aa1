"""The moderation classifier: a small head over the sentence encoder, one score per category.

The head (`head.safetensors`, trained by `autan guard train` on the prompts `guard.data` loads)
maps the encoder's layer means (`Encoder.features`) to a probability per category; a text scores
the highest of its whole and each of its windows. A category is flagged at or above its
threshold: the trained ones (chosen on a validation split, `head.json`), or an operator's. `pii`
is also raised to 1 by the pattern detector (`guard.pii`) whenever the text carries personal data.
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from autan.guard import pii
from autan.guard.categories import CATEGORIES
from autan.guard.encoder import FEATURES, FEATURES_VERSION, Encoder

HEAD_DIR = Path(__file__).parent
HIDDEN = 256
MEMBERS = 3
# letters that look like Latin ones (Cyrillic, Greek), as a confusables table maps them; with
# NFKC (fullwidth, ligatures, styled letters) and the invisible characters dropped, a text
# spelled to slip past the encoder reads as what it says
LOOKALIKES = str.maketrans("асеіјорхуАВСЕНІЈКМОРТХΑΒΕΗΙΚΜΝΟΡΤΧΥΖаеоο", "aceijopxyABCEHIJKMOPTXABEHIKMNOPTXYZaeoo")
INVISIBLE = re.compile("[\u200b-\u200f\u2060-\u2064\ufeff\U000e0000-\U000e007f]")


def member(categories: int = len(CATEGORIES) + 1, hidden: int = HIDDEN, dropout: float = 0.2) -> nn.Sequential:
    """One of the head's networks: standardised features -> a logit per category and one for
    "unsafe at all" (the last), through a hidden layer; dropout on its input too, since 2,304
    features are many for 2,000 training prompts."""
    return nn.Sequential(
        nn.Dropout(dropout), nn.Linear(FEATURES, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, categories)
    )


class Head(nn.Module):
    """Features, standardised by the training split's mean and spread, through `members`
    networks trained from different seeds; their logits are averaged (an ensemble ranks held-out
    prompts better than any one of its members), then divided by each output's temperature,
    fitted on the validation split: trained to near-zero loss, the members' logits run so high
    that float32 probabilities round to 1.0, and no threshold could tell such texts apart."""

    def __init__(self, members: int = MEMBERS, hidden: int = HIDDEN):
        super().__init__()
        self.register_buffer("shift", torch.zeros(FEATURES))
        self.register_buffer("scale", torch.ones(FEATURES))
        self.register_buffer("temperature", torch.ones(len(CATEGORIES) + 1))
        self.members = nn.ModuleList(member(hidden=hidden) for _ in range(members))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = (features - self.shift) / self.scale
        return torch.stack([m(x) for m in self.members]).mean(0) / self.temperature


@dataclass
class Result:
    """One text's moderation: a score and a decision per category, and whether any was flagged."""

    category_scores: dict[str, float]
    categories: dict[str, bool]
    pii: list[pii.Finding] = field(default_factory=list)

    @property
    def flagged(self) -> bool:
        return any(self.categories.values())

    @property
    def flagged_categories(self) -> list[str]:
        return [c for c, on in self.categories.items() if on]


def load_head(directory: Path = HEAD_DIR) -> tuple[Head, dict]:
    from safetensors.torch import load_file

    info = json.loads((directory / "head.json").read_text())
    if tuple(info["categories"]) != CATEGORIES:
        raise ValueError(f"{directory / 'head.json'} was trained for {info['categories']}, not {list(CATEGORIES)}")
    if info.get("features") != FEATURES_VERSION:
        raise ValueError(
            f"{directory / 'head.json'} reads the encoder's features '{info.get('features')}', not "
            f"'{FEATURES_VERSION}': retrain it with `autan guard train`"
        )
    head = Head(members=info.get("members", MEMBERS), hidden=info.get("hidden", HIDDEN))
    head.load_state_dict(load_file(directory / "head.safetensors"))
    return head.eval(), info


class Classifier:
    def __init__(
        self,
        encoder: Encoder | None = None,
        head_dir: Path = HEAD_DIR,
        thresholds: Mapping[str, float] | None = None,
    ):
        from autan.guard.encoder import shared

        self.encoder = encoder or shared()
        self.head, self.info = load_head(head_dir)
        self.thresholds = dict(self.info["thresholds"])
        for name, value in (thresholds or {}).items():
            if name not in (*CATEGORIES, "unsafe"):
                known = ", ".join((*CATEGORIES, "unsafe"))
                raise ValueError(f"threshold for '{name}': not a category or 'unsafe' (known: {known})")
            if not 0 < value <= 1:
                raise ValueError(f"threshold for '{name}' is {value}; it must be in (0, 1]")
            self.thresholds[name] = float(value)

    @torch.inference_mode()
    def scores(self, texts: Sequence[str]) -> torch.Tensor:
        """[len(texts), categories + 1] probabilities (the last: unsafe at all), each text's
        highest of its whole (its windows' mean) and each of its windows."""
        if not texts:
            return torch.zeros(0, len(CATEGORIES) + 1)
        texts = [clean(t) for t in texts]
        windows = self.encoder.windows(texts)
        features = self.encoder.features(windows)
        return highest_reading(self.head, features, torch.tensor(windows.owner), len(texts))

    def moderate(self, texts: Sequence[str]) -> list[Result]:
        results = []
        for text, row in zip(texts, self.scores(texts).tolist(), strict=True):
            scores = dict(zip(CATEGORIES, row[:-1], strict=True))
            found = pii.find(text)
            if found:
                scores["pii"] = 1.0
            scores = {c: round(s, 6) for c, s in scores.items()}
            results.append(Result(scores, decide(list(scores.values()), row[-1], self.thresholds), found))
        return results


def highest_reading(head: Head, features: torch.Tensor, owner: torch.Tensor, texts: int) -> torch.Tensor:
    """[texts, categories + 1] probabilities: each text's highest of its whole (its windows'
    mean features) and each of its windows alone."""
    whole = torch.sigmoid(head(window_means(features, owner, texts)))
    parts = torch.sigmoid(head(features))
    return whole.scatter_reduce(0, owner[:, None].expand_as(parts), parts, "amax", include_self=True)


def window_means(features: torch.Tensor, owner: torch.Tensor, texts: int) -> torch.Tensor:
    """[texts, FEATURES]: each text's windows' features averaged (window i is text owner[i]'s)."""
    counts = torch.bincount(owner, minlength=texts).clamp(min=1).unsqueeze(1)
    return torch.zeros(texts, features.shape[1]).index_add_(0, owner, features) / counts


def clean(text: str) -> str:
    """The text as the encoder should read it (see LOOKALIKES)."""
    return INVISIBLE.sub("", unicodedata.normalize("NFKC", text)).translate(LOOKALIKES)


def decide(scores: Sequence[float], unsafe: float, thresholds: Mapping[str, float]) -> dict[str, bool]:
    """A category is flagged at or over its own threshold; and when the text is unsafe (its
    `unsafe` score at or over that threshold), its likeliest category is flagged too."""
    decisions = {c: s >= thresholds[c] for c, s in zip(CATEGORIES, scores, strict=True)}
    if unsafe >= thresholds["unsafe"]:
        likeliest = max(range(len(CATEGORIES)), key=lambda k: scores[k])
        decisions[CATEGORIES[likeliest]] = True
    return decisions


@functools.cache
def shared() -> Classifier:
    return Classifier()
