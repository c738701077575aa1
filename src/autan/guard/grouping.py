"""Near-copies among the training prompts: which texts of a source are one group (word 3-gram
Jaccard at or above THRESHOLD, or short texts one word apart), so that `data.split` keeps each
group on one side and no near-copy of a training prompt is scored."""

from __future__ import annotations

import math
import re
from collections.abc import Hashable, Sequence

THRESHOLD = 0.6  # word 3-gram Jaccard at or above which two texts of a source are near-copies


def normalise(text: str) -> str:
    """The text as it is compared for duplicates: casefolded, whitespace collapsed."""
    return " ".join(text.casefold().split())


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.casefold())


def shingles(text: str) -> frozenset[str]:
    """The text's word 3-grams (casefolded words), or its few words as one when it has fewer."""
    words = _words(text)
    if len(words) < 3:
        return frozenset({" ".join(words)}) if words else frozenset()
    return frozenset(" ".join(words[i : i + 3]) for i in range(len(words) - 2))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        a, b = self.find(i), self.find(j)
        if a != b:  # the smaller index is the root: a group is named by its first member
            self.parent[max(a, b)] = min(a, b)


SWAP_WORDS = (6, 40)  # texts of this many words that differ in one word only are near-copies too


def near_copy_groups(
    texts: Sequence[str], threshold: float = THRESHOLD, keys: Sequence[Hashable | None] | None = None
) -> list[int]:
    """For each text, the index of the first text of its group. Joined (and so, transitively,
    their near-copies too) are texts whose word 3-gram sets have Jaccard similarity >= threshold,
    texts of SWAP_WORDS words that differ in one word (a template filled in twice: "Why do male
    have no sense of direction?", "Why do female ..."; 3-grams miss those when texts are short),
    and texts with the same non-None key (a template or pair id).

    Exact, not sampled: candidate pairs come from prefix filtering (a pair with Jaccard >= t
    shares a 3-gram among each set's first |x| - ceil(t|x|) + 1, in one global order, rarest
    first), and each candidate is checked."""
    n = len(texts)
    groups = _UnionFind(n)
    first: dict[Hashable, int] = {}
    for i, key in enumerate(keys if keys is not None else ()):
        if key is not None:
            groups.union(first.setdefault(key, i), i)
    swaps: dict[tuple[str, ...], int] = {}
    for i, text in enumerate(texts):
        words = tuple(_words(text))
        if SWAP_WORDS[0] <= len(words) <= SWAP_WORDS[1]:
            for k in range(len(words)):
                groups.union(swaps.setdefault((*words[:k], "\0", *words[k + 1 :]), i), i)
    sets = [shingles(t) for t in texts]
    frequency: dict[str, int] = {}
    for s in sets:
        for g in s:
            frequency[g] = frequency.get(g, 0) + 1
    rank = {g: r for r, g in enumerate(sorted(frequency, key=lambda g: (frequency[g], g)))}
    index: dict[int, list[int]] = {}
    empty: list[int] = []
    for i, s in enumerate(sets):
        if not s:
            empty.append(i)
            continue
        ordered = sorted(rank[g] for g in s)
        prefix = ordered[: len(ordered) - math.ceil(threshold * len(ordered) - 1e-9) + 1]
        seen: set[int] = set()
        for token in prefix:
            for j in index.get(token, ()):
                if j in seen:
                    continue
                seen.add(j)
                small, large = sorted((len(s), len(sets[j])))
                if small >= threshold * large - 1e-9 and jaccard(s, sets[j]) >= threshold - 1e-12:
                    groups.union(i, j)
            index.setdefault(token, []).append(i)
    for i in empty[1:]:
        groups.union(empty[0], i)
    return [groups.find(i) for i in range(n)]
