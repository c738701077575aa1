"""How fast the moderation classifier is on this CPU: one 64-token prompt (the goal: 30 ms on
2 cores), a batch of them together, and a long (jailbreak-sized) text read in windows.

    cd bench && ../.venv/bin/python moderation.py
"""

from __future__ import annotations

import statistics
import time

import torch
from report import write_section

from autan.guard.classifier import Classifier

WORDS = [
    "please",
    "explain",
    "how",
    "the",
    "rolling",
    "cache",
    "of",
    "a",
    "sliding",
    "window",
    "attention",
    "model",
    "keeps",
    "memory",
    "bounded",
]


def text_of(tokens: int, classifier: Classifier) -> str:
    """A text of exactly `tokens` encoder tokens."""
    words, text = [], ""
    while len(classifier.encoder.tokenizer(text, add_special_tokens=False)["input_ids"]) < tokens:
        words.append(WORDS[len(words) % len(WORDS)])
        text = " ".join(words)
    ids = classifier.encoder.tokenizer(text, add_special_tokens=False)["input_ids"][:tokens]
    return classifier.encoder.tokenizer.decode(ids)


def timed(work, repeats: int) -> list[float]:
    work()  # warm
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    classifier = Classifier()
    short = text_of(64, classifier)
    one = timed(lambda: classifier.moderate([short]), 50)
    batch = timed(lambda: classifier.moderate([short] * 32), 5)
    long = text_of(2000, classifier)
    windows = len(classifier.encoder.windows([long]).owner)
    long_times = timed(lambda: classifier.moderate([long]), 5)
    median = statistics.median
    rows = [
        "| what | median | goal |",
        "|---|---|---|",
        f"| one 64-token prompt | {median(one) * 1000:.1f} ms | 30 ms |",
        f"| 32 such prompts in one call | {median(batch) * 1000:.0f} ms ({32 / median(batch):.0f} prompts/s) | |",
        f"| one 2,000-token text ({windows} windows of 256) | {median(long_times) * 1000:.0f} ms | |",
    ]
    note = (
        f"The classifier: all-MiniLM-L6-v2 (transformers, float32, {torch.get_num_threads()} threads, its linear "
        "maps on oneDNN's prepacked kernel) and the trained head over its six layers' means; a text is read in "
        "overlapping 256-token windows. The rails add one such check "
        "before a prompt is answered and one every `check_every` tokens of an answer."
    )
    write_section("Moderation", note + "\n\n" + "\n".join(rows))


if __name__ == "__main__":
    main()
