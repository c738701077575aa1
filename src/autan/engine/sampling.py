"""Choosing the next token: penalties, temperature, top-k, top-p, min-p, and a seed that reproduces.

Penalties follow OpenAI's definition over the tokens generated so far:
logit -= frequency_penalty * count + presence_penalty * (count > 0).
The repetition penalty follows llama.cpp's (and CTRL's): each token among the last
`repeat_last_n` of the sequence, prompt included, has its logit divided by the penalty when
positive and multiplied by it when negative. min-p keeps the tokens at least `min_p` times as
likely as the most likely one.
"""

from __future__ import annotations

import random
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

MAX_STOPS = 16
MAX_STOP_CHARS = 1000


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.7  # 0 = greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 = no limit
    min_p: float = 0.0  # 0 = no cut
    max_tokens: int | None = None  # None = up to the model's context; 0 = only read the prompt (scoring)
    stop: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logprobs: int | None = None  # report each chosen token's log-probability and this many top alternatives
    min_tokens: int = 0  # end-of-sequence is not allowed before this many tokens
    ignore_eos: bool = False  # keep generating past end-of-sequence (for benchmarks, as vLLM's flag)
    repetition_penalty: float = 1.0  # 1 = none
    repeat_last_n: int = 64  # tokens of the sequence the repetition penalty looks back over
    # score the prompt from this position on: each token's log-probability given the tokens before
    # it (and `logprobs` alternatives); positions before it may come from the prefix cache
    prompt_logprobs: int | None = None

    def __post_init__(self) -> None:
        checks = [
            (0 <= self.temperature <= 2, f"temperature={self.temperature} must be between 0 and 2"),
            (0 < self.top_p <= 1, f"top_p={self.top_p} must be in (0, 1]"),
            (self.top_k >= 0, f"top_k={self.top_k} must be 0 (no limit) or positive"),
            (0 <= self.min_p < 1, f"min_p={self.min_p} must be in [0, 1)"),
            (0 < self.repetition_penalty <= 2, f"repetition_penalty={self.repetition_penalty} must be in (0, 2]"),
            (self.repeat_last_n >= 1, f"repeat_last_n={self.repeat_last_n} must be at least 1"),
            (self.max_tokens is None or self.max_tokens >= 0, f"max_tokens={self.max_tokens} must be at least 0"),
            (
                self.prompt_logprobs is None or self.prompt_logprobs >= 1,
                f"prompt_logprobs={self.prompt_logprobs} must be at least 1 (the first token has no context)",
            ),
            (
                self.min_tokens >= 0 and (self.max_tokens is None or self.min_tokens <= self.max_tokens),
                f"min_tokens={self.min_tokens} must be between 0 and max_tokens={self.max_tokens}",
            ),
            (-2 <= self.presence_penalty <= 2, f"presence_penalty={self.presence_penalty} must be between -2 and 2"),
            (-2 <= self.frequency_penalty <= 2, f"frequency_penalty={self.frequency_penalty} must be between -2 and 2"),
            (all(self.stop), "stop strings must not be empty"),
            (len(self.stop) <= MAX_STOPS, f"stop has {len(self.stop)} strings; at most {MAX_STOPS} are allowed"),
            (
                all(len(s) <= MAX_STOP_CHARS for s in self.stop),
                f"a stop string has {max(map(len, self.stop), default=0)} characters; at most {MAX_STOP_CHARS}",
            ),
            (self.logprobs is None or 0 <= self.logprobs <= 20, f"logprobs={self.logprobs} must be between 0 and 20"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


class Sampler:
    """Samples one sequence's tokens; owns its random generator so other requests cannot disturb it."""

    def __init__(self, params: SamplingParams, vocab_size: int, prompt: Sequence[int] = ()):
        self.params = params
        # how often each token was sampled, for the penalties. Not a (vocab,) tensor: filling one
        # runs parallel code in the thread that queues the request, which slows the engine's own.
        self.counts: Counter[int] = Counter()
        self.recent: deque[int] = deque(prompt[-params.repeat_last_n :], maxlen=params.repeat_last_n)
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
        if p.repetition_penalty != 1 and self.recent:
            ids = torch.tensor(sorted(set(self.recent)))
            seen = logits[ids]
            logits = logits.index_put(
                (ids,), torch.where(seen > 0, seen / p.repetition_penalty, seen * p.repetition_penalty)
            )
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
        self.recent.append(token)
        return token


def allowed_probabilities(logits: Tensor, params: SamplingParams) -> Tensor:
    """Probabilities after temperature, with tokens outside top-k, top-p and min-p set to zero."""
    probs = torch.softmax(logits / params.temperature, dim=-1)
    if params.min_p > 0:
        probs = torch.where(probs >= params.min_p * probs.max(), probs, 0.0)
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
