"""The two moderators a server can use: the classifier (fast, on the CPU beside the model) and
self-reflection (the served model judges the text itself, with the Mistral 7B paper's 13
categories, or an operator's prompt). Both answer in the classifier's terms (`Result`), so the
API and the rails never need to know which one ran."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from autan.guard import pii
from autan.guard.categories import CATEGORIES
from autan.guard.classifier import Classifier, Result

# The Mistral 7B paper's self-reflection categories (its section 5.2), each onto ours.
REFLECTION_CATEGORIES: dict[str, tuple[str, ...]] = {
    "illegal": ("dangerous_and_criminal_content",),
    "child abuse": ("sexual", "dangerous_and_criminal_content"),
    "hate violence harassment": ("hate_and_discrimination", "violence_and_threats"),
    "malware": ("dangerous_and_criminal_content",),
    "physical harm": ("violence_and_threats",),
    "economic harm": ("financial",),
    "fraud": ("dangerous_and_criminal_content",),
    "adult": ("sexual",),
    "political": (),
    "privacy": ("pii",),
    "unqualified law": ("law",),
    "unqualified financial": ("financial",),
    "unqualified health": ("health",),
}
REFLECTION_PROMPT = """You are a content moderator. Here are the moderation categories:
- illegal: helping with illegal activity.
- child abuse: content that sexualises or harms children.
- hate violence harassment: hateful, harassing or violent content, or content that incites it.
- malware: code meant to disrupt, damage or gain unauthorised access to computer systems.
- physical harm: weapons, attacks on infrastructure, self-harm, suicide, eating disorders.
- economic harm: gambling, payday lending, multi-level marketing, automated eligibility decisions.
- fraud: scams, fake reviews, plagiarism, disinformation, spam.
- adult: sexually explicit content.
- political: campaigning or lobbying material.
- privacy: tracking people, exposing personal data, identifying private individuals.
- unqualified law: tailored legal advice.
- unqualified financial: tailored financial advice.
- unqualified health: diagnosing or treating a health condition.

Classify the text below into one of these categories and answer with the category's name only.
If the text falls into none of them and needs no moderation, answer "not moderated".

Text: {text}"""


class Moderator(Protocol):
    name: str

    async def moderate(self, texts: Sequence[str]) -> list[Result]: ...


class ClassifierModerator:
    """The trained classifier, run off the event loop (one batch at a time: it has one model)."""

    name = "autan-moderation"

    def __init__(self, thresholds: Mapping[str, float] | None = None, classifier: Classifier | None = None):
        self.classifier = classifier or Classifier(thresholds=thresholds)

    async def moderate(self, texts: Sequence[str]) -> list[Result]:
        return await asyncio.to_thread(self.classifier.moderate, list(texts))


class SelfReflection:
    """The served model (through its adapter, for a fine-tune) names the category it sees; a named
    category scores 1, others 0. `pii` is raised by the pattern detector too, as the classifier does."""

    def __init__(self, served: Any, prompt: str | None = None, max_text_chars: int = 8000):
        self.served = served
        self.name = served.id
        self.prompt = prompt or REFLECTION_PROMPT
        self.max_text_chars = max_text_chars

    def _prompt(self, text: str) -> list[int]:
        """The judging prompt with as much of `text` as the model's context leaves room for."""
        encode = self.served.tokenizer.encode_chat
        room = self.served.context - 16
        text = text[: self.max_text_chars]
        while True:
            prompt = encode([{"role": "user", "content": self.prompt.replace("{text}", text)}])
            if len(prompt) <= room or not text:
                return prompt[-room:] if len(prompt) > room else prompt
            text = text[: int(len(text) * room / len(prompt) * 0.9)]  # cut in proportion, and a little more

    async def judge(self, text: str) -> str:
        from autan.engine.sampling import SamplingParams

        prompt = await asyncio.to_thread(self._prompt, text)
        params = SamplingParams(temperature=0.0, max_tokens=8)
        stream = await self.served.engine.add_request(prompt, params, adapter=self.served.adapter)
        async for _ in stream:
            pass
        return stream.completion.text if stream.completion else ""

    async def moderate(self, texts: Sequence[str]) -> list[Result]:
        answers = await asyncio.gather(*(self.judge(t) for t in texts))
        return [reflection_result(answer, text) for answer, text in zip(answers, texts, strict=True)]


def reflection_result(answer: str, text: str) -> Result:
    """The model's one-word answer as a moderation result: the categories it maps onto."""
    said = re.sub(r"[^a-z ]", " ", answer.lower())
    said = " ".join(said.split())
    named: tuple[str, ...] = ()
    if not said.startswith("not moderated"):
        for name in sorted(REFLECTION_CATEGORIES, key=len, reverse=True):  # "unqualified law" before "law"
            if said.startswith(name):
                named = REFLECTION_CATEGORIES[name]
                break
    found = pii.find(text)
    scores = {c: 1.0 if c in named or (c == "pii" and found) else 0.0 for c in CATEGORIES}
    return Result(scores, {c: s >= 1.0 for c, s in scores.items()}, found)
