"""Choosing the next token: penalties, temperature, top-k, top-p, and a seed that reproduces.

Penalties follow OpenAI's definition over the tokens generated so far:
logit -= frequency_penalty * count + presence_penalty * (count > 0).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.7  # 0 = greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 = no limit
    max_tokens: int | None = None  # None = up to the model's context
    stop: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logprobs: int | None = None  # report each chosen token's log-probability and this many top alternatives
    min_tokens: int = 0  # end-of-sequence is not allowed before this many tokens
    ignore_eos: bool = False  # keep generating past end-of-sequence (for benchmarks, as vLLM's flag)

    def __post_init__(self) -> None:
        checks = [
            (0 <= self.temperature <= 2, f"temperature={self.temperature} must be between 0 and 2"),
            (0 < self.top_p <= 1, f"top_p={self.top_p} must be in (0, 1]"),
            (self.top_k >= 0, f"top_k={self.top_k} must be 0 (no limit) or positive"),
            (self.max_tokens is None or self.max_tokens >= 1, f"max_tokens={self.max_tokens} must be at least 1"),
            (
                self.min_tokens >= 0 and (self.max_tokens is None or self.min_tokens <= self.max_tokens),
                f"min_tokens={self.min_tokens} must be between 0 and max_tokens={self.max_tokens}",
            ),
            (-2 <= self.presence_penalty <= 2, f"presence_penalty={self.presence_penalty} must be between -2 and 2"),
            (-2 <= self.frequency_penalty <= 2, f"frequency_penalty={self.frequency_penalty} must be between -2 and 2"),
            (all(self.stop), "stop strings must not be empty"),
            (self.logprobs is None or 0 <= self.logprobs <= 20, f"logprobs={self.logprobs} must be between 0 and 20"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


class Sampler:
    """Samples one sequence's tokens; owns its random generator so other requests cannot disturb it."""

    def __init__(self, params: SamplingParams, vocab_size: int):
        self.params = params
        # how often each token was sampled, for the penalties. Not a (vocab,) tensor: filling one
        # runs parallel code in the thread that queues the request, which slows the engine's own.
        self.counts: Counter[int] = Counter()
        seed = params.seed if params.seed is not None else random.randrange(2**63)
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, logits: Tensor) -> int:
        """The next token from the logits (vocab,) of the last position."""
        p = self.params
        logits = logits.detach().float().cpu()
        if (p.frequency_penalty or p.presence_penalty) and self.counts:
            ids = torch.tensor(list(self.counts))
            counts = torch.tensor(list(self.counts.values()), dtype=torch.float32)
            logits = logits.index_put((ids,), -(p.frequency_penalty * counts + p.presence_penalty), accumulate=True)
        if p.temperature == 0:
            token = int(logits.argmax())
        else:
            # Inverse-CDF draw: one uniform number against the cumulative probabilities, an exact
            # draw and much faster than torch.multinomial over a large vocabulary. `right=True`
            # finds the first token whose cumulative mass exceeds the draw: never a zero-probability one.
            cdf = torch.cumsum(allowed_probabilities(logits, p).double(), dim=-1)
            u = torch.rand(1, generator=self.generator, dtype=torch.float64) * cdf[-1]
            token = min(int(torch.searchsorted(cdf, u, right=True)), cdf.shape[-1] - 1)
        self.counts[token] += 1
        return token


def allowed_probabilities(logits: Tensor, params: SamplingParams) -> Tensor:
    """Probabilities after temperature, with tokens outside top-k and top-p set to zero."""
    probs = torch.softmax(logits / params.temperature, dim=-1)
    if params.top_p >= 1:  # no nucleus cut: no need to sort the whole vocabulary
        if not params.top_k or params.top_k >= probs.shape[-1]:
            return probs
        kept = torch.zeros_like(probs)
        top = torch.topk(probs, params.top_k)
        return kept.scatter_(-1, top.indices, top.values)
    order = torch.argsort(probs, descending=True, stable=True)
    sorted_probs = probs[order]
    keep = torch.ones_like(sorted_probs, dtype=torch.bool)
    if params.top_k:
        keep[params.top_k :] = False
    if params.top_p < 1:
        before = torch.cumsum(sorted_probs, 0) - sorted_probs  # mass of the more likely tokens
        keep &= before < params.top_p  # the smallest set reaching top_p; the first is always kept
    mask = torch.zeros_like(keep)
    mask[order] = keep
    return torch.where(mask, probs, 0.0)


class StopMatcher:
    """Finds stop strings in streamed text, even split across tokens, and never emits them.

    Text that could still be the start of a stop string is held back until it is not.
    """

    def __init__(self, stops: tuple[str, ...]):
        self.stops = stops
        self.pending = ""

    def push(self, text: str) -> tuple[str, bool]:
        """(text safe to emit, whether a stop string was reached)."""
        self.pending += text
        hits = [i for i in (self.pending.find(s) for s in self.stops) if i >= 0]
        if hits:
            out, self.pending = self.pending[: min(hits)], ""
            return out, True
        hold = max((n for s in self.stops for n in range(1, len(s)) if self.pending.endswith(s[:n])), default=0)
        cut = len(self.pending) - hold
        out, self.pending = self.pending[:cut], self.pending[cut:]
        return out, False

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out
