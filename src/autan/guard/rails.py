"""The rails the server runs around a generation, and the moderators behind `/v1/moderations`.

The input rail moderates the prompt before anything is generated (every turn of a conversation,
newest first, up to INPUT_CHARS; a completion's prompt and suffix); a flagged
prompt is answered with the policy's refusal, finish reason `content_filter` and the categories
that caused it (never a silent drop). The output rail moderates the answer as it streams, every
`check_every` tokens and once more at its end, with the question it answers as context; an answer
that turns unsafe is stopped there, with the same finish reason. Every decision is logged (rail,
categories, scores, action; the text only with `log_text`) and counted in /metrics.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from autan.errors import Invalid, NotFound
from autan.guard.categories import CATEGORIES, JAILBREAKING
from autan.guard.classifier import Result
from autan.guard.moderators import ClassifierModerator, Moderator, SelfReflection
from autan.guard.policy import GuardPolicy

log = logging.getLogger("autan.guard")
CLASSIFIER_NAMES = (
    "autan-moderation",
    "mistral-moderation-latest",
    "mistral-moderation-2411",
    "omni-moderation-latest",
)
CONTEXT_CHARS = 2000  # of the question, beside an answer the output rail checks
ANSWER_CHARS = 6000  # of the answer's end the output rail reads each time


@dataclass(frozen=True)
class Verdict:
    """Why a rail stopped something."""

    rail: str  # "input" or "output"
    categories: tuple[str, ...]
    scores: dict[str, float]

    def body(self) -> dict[str, Any]:
        return {"rail": self.rail, "categories": list(self.categories), "category_scores": self.scores}


# Categories of a way of asking, which an answer cannot be: the output rail logs them, never
# blocks on them. Read as a prompt, a model's long, even-toned explanation ("Photosynthesis is a
# vital biological process...") scores like a jailbreak's preamble, and held every safe answer
# of that kind back.
ASKING_ONLY = (JAILBREAKING,)


class GuardRails:
    """A server's moderators and rails. `policy` None: no rails unless a request asks for them."""

    def __init__(self, policy: GuardPolicy | None, served: Mapping[str, Any], metrics: Any = None):
        self.policy = policy
        self.served = served
        self.metrics = metrics
        self._classifier: ClassifierModerator | None = None

    def classifier(self) -> ClassifierModerator:
        if self._classifier is None:  # loaded on first use: ~90 MB and a second or two
            self._classifier = ClassifierModerator(self.policy.thresholds if self.policy else None)
        return self._classifier

    def moderator(self, model: str | None, who: Any) -> Moderator:
        """The API's `model`: the classifier by its names (ours, Mistral's, OpenAI's), or the id of
        a served model `who` may use, for that model's self-reflection."""
        if model is None or model in CLASSIFIER_NAMES:
            return self.classifier()
        mine = {name: m for name, m in list(self.served.items()) if m.visible_to(who)}
        if model in mine:
            prompt = self.policy.self_reflection_prompt if self.policy else None
            return SelfReflection(mine[model], prompt)
        names = ", ".join([*CLASSIFIER_NAMES[:1], *mine])
        raise NotFound(f"no moderation model '{model[:100]}' here; use one of: {names}", param="model")

    def rails_moderator(self, policy: GuardPolicy, served: Any) -> Moderator:
        if policy.moderator == "self-reflection":
            return SelfReflection(served, policy.self_reflection_prompt)
        return self.classifier()

    def for_request(self, asked: bool | None) -> GuardPolicy | None:
        """The policy a request runs under: the server's, unless it asks for rails (the server's
        policy, or the default one) or for none (where the server's policy allows it)."""
        if asked is False:
            if self.policy is not None and not self.policy.allow_off:
                raise Invalid(
                    "guardrails=false is refused: this server's guard policy does not let a request turn its rails off",
                    param="guardrails",
                )
            return None
        if asked is True:
            return self.policy or GuardPolicy()
        return self.policy

    async def check(self, policy: GuardPolicy, served: Any, rail: str, texts: Sequence[str]) -> Verdict | None:
        """Moderate `texts` (read together: flagged if any is) for `rail`; log and count the
        decision; a Verdict if the policy blocks what was found."""
        started = time.perf_counter()
        results = await self.rails_moderator(policy, served).moderate(list(texts))
        seconds = time.perf_counter() - started
        merged = merge(results)
        found = tuple(c for c in CATEGORIES if merged.categories[c])
        blocked = tuple(c for c in found if c in policy.block and not (rail == "output" and c in ASKING_ONLY))
        action = "block" if blocked else "log" if found else "pass"
        if self.metrics is not None:
            self.metrics.guard_seconds.labels(rail).observe(seconds)
            for c in found or ("none",):
                self.metrics.guard_decisions.labels(rail, c, "block" if c in blocked else action).inc()
        if found or policy.log_text:
            shown = {c: merged.category_scores[c] for c in found}
            text = f" text={list(texts)!r}" if policy.log_text else ""
            log.info("guard %s rail: %s %s (%.0f ms)%s", rail, action, shown or "nothing", seconds * 1000, text)
        if not blocked:
            return None
        return Verdict(rail, blocked, {c: merged.category_scores[c] for c in blocked})


def merge(results: Sequence[Result]) -> Result:
    """Several texts' results as one: each category's highest score, flagged if any flagged it."""
    scores = {c: max((r.category_scores[c] for r in results), default=0.0) for c in CATEGORIES}
    flagged = {c: any(r.categories[c] for r in results) for c in CATEGORIES}
    return Result(scores, flagged, [f for r in results for f in r.pii])


INPUT_CHARS = 16_000  # of a conversation, from its end, that the input rail reads


def conversation_texts(messages: Sequence[Mapping[str, Any]], budget: int = INPUT_CHARS) -> list[str]:
    """What the input rail reads of a conversation: every turn's text (system, user, tool, an
    assistant prefix: a harmful request can sit in any of them), from the newest back, until
    `budget` characters; each turn is one text."""
    texts: list[str] = []
    for m in reversed(messages):
        content = m.get("content")
        if isinstance(content, str) and content.strip() and budget > 0:
            texts.append(content[-budget:])
            budget -= len(content)
    return texts


def last_user_turn(messages: Sequence[Mapping[str, Any]]) -> str:
    for m in reversed(messages):
        if m.get("role") == "user" and isinstance(m.get("content"), str):
            return m["content"]
    return ""


@dataclass
class OutputWatch:
    """The output rail over one request's choices. The stream holds each choice's pieces back
    until a check has passed over them (every `check_every` tokens, and once at the end), so a
    flagged answer has sent only what its earlier checks passed. The engine keeps generating
    meanwhile."""

    guard: GuardRails
    policy: GuardPolicy
    served: Any
    question: str
    choices: int
    texts: list[str] = field(init=False)
    pending: list[int] = field(init=False)  # tokens since the last check
    verdicts: dict[int, Verdict] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.texts = [""] * self.choices
        self.pending = [0] * self.choices

    def _texts(self, i: int) -> list[str]:
        answer = self.texts[i][-ANSWER_CHARS:]
        return [answer, f"{self.question[-CONTEXT_CHARS:]}\n\n{answer}"] if self.question else [answer]

    def feed(self, i: int, text: str, tokens: int) -> bool:
        """A piece of choice `i`'s answer; True when a check is due before it is sent."""
        self.texts[i] += text
        self.pending[i] += max(tokens, 1 if text else 0)
        return i not in self.verdicts and self.pending[i] >= self.policy.check_every

    async def check(self, i: int) -> Verdict | None:
        self.pending[i] = 0
        if i not in self.verdicts and self.texts[i].strip():
            verdict = await self.guard.check(self.policy, self.served, "output", self._texts(i))
            if verdict is not None:
                self.verdicts[i] = verdict
        return self.verdicts.get(i)

    async def finish(self, i: int) -> Verdict | None:
        """Choice `i` has ended: a last check over what came since the one before."""
        return await self.check(i) if self.pending[i] else self.verdicts.get(i)
