"""A server's guard policy, from `--guard POLICY.toml`; every key optional:

moderator = "classifier"      # or "self-reflection": the served model judges (Mistral 7B paper)
input = true                  # the input rail: a flagged prompt is answered with a refusal
output = true                 # the output rail: an answer that turns unsafe is stopped
check_every = 16              # tokens between the output rail's checks of a streaming answer
block = ["sexual", "hate_and_discrimination", ...]   # what the rails act on (see BLOCKED)
refusal = "I can't help with that request."
log_text = false              # decisions are logged with category and score, never the text unless true
allow_off = false             # may a request send "guardrails": false?
self_reflection_prompt = "..."  # an operator's own prompt for the self-reflection moderator

[thresholds]                  # per category (and "unsafe"), over the classifier's trained ones
selfharm = 0.4
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from autan.errors import AutanError
from autan.guard.categories import CATEGORIES

# Acted on by default: the categories that are harmful whoever asks. Health, financial, law and
# pii are scored and logged, not refused: most such questions are fine to answer.
BLOCKED = (
    "sexual",
    "hate_and_discrimination",
    "violence_and_threats",
    "dangerous_and_criminal_content",
    "selfharm",
    "jailbreaking",
)
REFUSAL = "I can't help with that request."
MODERATORS = ("classifier", "self-reflection")


class PolicyError(AutanError, ValueError):
    pass


@dataclass(frozen=True)
class GuardPolicy:
    moderator: str = "classifier"
    input: bool = True
    output: bool = True
    check_every: int = 16
    block: tuple[str, ...] = BLOCKED
    refusal: str = REFUSAL
    log_text: bool = False
    allow_off: bool = False
    self_reflection_prompt: str | None = None
    thresholds: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("refusal", "moderator"):
            if not isinstance(getattr(self, name), str):
                raise PolicyError(f"{name} = {getattr(self, name)!r}: must be a string")
        if self.self_reflection_prompt is not None and (
            not isinstance(self.self_reflection_prompt, str) or "{text}" not in self.self_reflection_prompt
        ):
            raise PolicyError("self_reflection_prompt must be a string with {text} where the judged text goes")
        if self.moderator not in MODERATORS:
            raise PolicyError(f"moderator = '{self.moderator}': must be one of {', '.join(MODERATORS)}")
        if (
            isinstance(self.check_every, bool)
            or not isinstance(self.check_every, int)
            or not 1 <= self.check_every <= 4096
        ):
            raise PolicyError(f"check_every = {self.check_every!r}: must be a whole number of tokens in 1..4096")
        for name in self.block:
            if not isinstance(name, str) or name not in CATEGORIES:
                raise PolicyError(f"block: '{name}' is not a category ({', '.join(CATEGORIES)})")
        for name, value in self.thresholds.items():
            if name not in (*CATEGORIES, "unsafe"):
                raise PolicyError(f"[thresholds] {name}: not a category or 'unsafe' ({', '.join(CATEGORIES)})")
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
                raise PolicyError(f"[thresholds] {name} = {value!r}: must be a number in (0, 1]")
        if not self.refusal.strip():
            raise PolicyError("refusal is empty: a refused request must be told something")

    @classmethod
    def load(cls, path: str | Path) -> GuardPolicy:
        path = Path(path)
        try:
            raw: dict[str, Any] = tomllib.loads(path.read_text())
        except OSError as e:
            raise PolicyError(f"{path}: cannot be read ({e.strerror})") from None
        except tomllib.TOMLDecodeError as e:
            raise PolicyError(f"{path}: not valid TOML ({e})") from None
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise PolicyError(f"{path}: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
        for name in ("input", "output", "log_text", "allow_off"):
            if name in raw and not isinstance(raw[name], bool):
                raise PolicyError(f"{path}: {name} = {raw[name]!r} must be true or false")
        if "block" in raw:
            if not isinstance(raw["block"], list):
                raise PolicyError(f"{path}: block must be a list of categories")
            raw["block"] = tuple(raw["block"])
        if "thresholds" in raw and not isinstance(raw["thresholds"], dict):
            raise PolicyError(f"{path}: [thresholds] must be a table of category = number")
        try:
            return cls(**raw)
        except PolicyError as e:
            raise PolicyError(f"{path}: {e}") from None
