"""acc and acc_norm with their standard errors, as lm-evaluation-harness reports them.

acc: the choice with the highest log-likelihood is the right one. acc_norm: the same after each
log-likelihood is divided by its choice's length; the harness divides by the length in
characters (`len(choice)`), which is the length in bytes for ASCII text, and so does this. A
tie goes to the first choice (numpy's argmax). The standard error is the sample standard
deviation (n - 1) over the square root of n.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from autan.eval.tasks import Doc, Generation

# GSM8K's answers, as the harness's two filters find them: "strict" takes the number the prompt's
# examples teach the model to end with ("So the answer is 6."), "flexible" the last number in the
# answer; both then drop commas, dollar signs and a final full stop, as the task's config says.
STRICT = re.compile(r"answer is \$?(-?[0-9][0-9.,]*)")
NUMBER = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")


def normalise(number: str) -> str:
    return re.sub(r"\.$", "", number.replace(",", "").replace("$", "").strip())


def extract(text: str, how: str) -> str | None:
    if how == "strict":
        found = STRICT.search(text)
        return normalise(found.group(1)) if found else None
    numbers = [a or b for a, b in NUMBER.findall(text)]
    return normalise(numbers[-1]) if numbers else None


def exact_match(doc: Generation, text: str, metric: str) -> float:
    how = metric.removeprefix("exact_match_")
    if how not in ("strict", "flexible"):
        raise ValueError(f"unknown metric '{metric}' (known: exact_match_strict, exact_match_flexible)")
    return float(extract(text, how) == normalise(doc.answer))


def argmax(values: Sequence[float]) -> int:
    return max(range(len(values)), key=lambda i: (values[i], -i))


def correct(doc: Doc, scores: Sequence[float], metric: str) -> float:
    """1 or 0 for acc and acc_norm; for mc2 (TruthfulQA) the probability of the true answers."""
    if metric == "mc2":
        top = max(scores)
        p = [math.exp(s - top) for s in scores]
        return sum(p[: doc.true]) / sum(p)
    if metric == "acc":
        return float(argmax(scores) == doc.gold)
    if metric == "acc_norm":
        return float(argmax([s / n for s, n in zip(scores, doc.lengths, strict=True)]) == doc.gold)
    raise ValueError(f"unknown metric '{metric}' (known: acc, acc_norm, mc2)")


def mean_and_stderr(values: Sequence[float]) -> tuple[float, float]:
    n = len(values)
    if n == 0:
        return float("nan"), float("nan")
    mean = sum(values) / n
    if n == 1:
        return mean, float("nan")
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(variance / n)
