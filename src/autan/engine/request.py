"""One request's life in the engine's core, and what it sends back: token ids (with their
log-probabilities, if asked) as they are sampled, then how it finished. Text is the output
processor's (`autan.engine.output`), which also says when a stop string ends a request.

finish_reason: "stop" (end-of-sequence token or a stop string), "length" (max_tokens reached),
"model_length" (the context is full), "abort" (cancelled).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from autan.engine.blocks import ROOT_HASH
from autan.engine.constraint import GrammarConstraint
from autan.engine.sampling import Sampler, SamplingParams


@dataclass
class TokenLogprob:
    token_id: int
    logprob: float  # of the model's distribution, before temperature, penalties and cuts
    top: list[tuple[int, float]]  # the most likely tokens and their log-probabilities, best first


@dataclass
class Tokens:
    """Tokens just sampled (one a step), with their log-probabilities where asked."""

    token_ids: list[int]
    logprobs: list[TokenLogprob] | None = None
    end: bool = False  # the end-of-sequence token, which ends the request: not text


@dataclass
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0  # prompt tokens whose keys and values came from the prefix cache

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class Finished:
    token_ids: list[int]
    finish_reason: str
    usage: Usage
    seconds: float = 0.0  # from the first token to the last
    prefill_seconds: float = 0.0  # from arrival to the first token
    logprobs: list[TokenLogprob] | None = None
    # with `prompt_logprobs`: one entry per prompt position, None before the first one scored
    prompt_logprobs: list[TokenLogprob | None] | None = None


TokenEvent = Tokens | Finished | BaseException


@dataclass(eq=False)
class Request:
    id: str
    prompt: list[int]
    params: SamplingParams
    limit: int  # most tokens it may generate
    limit_reason: str  # the finish reason when it reaches `limit`: "length" or "model_length"
    vocab_size: int
    emit: Callable[[TokenEvent], bool | None]  # True back from `Tokens`: a stop string (seen in the text) ends it
    output: list[int] = field(default_factory=list)
    n_computed: int = 0  # tokens whose keys and values are in the cache
    table: list[int | None] = field(default_factory=list)  # block table; None: released, out of the window
    block_names: list[bytes] = field(default_factory=list)  # names of its full blocks, in order
    cached_tokens: int | None = None  # prefix-cache hits when first admitted
    finish_reason: str | None = None
    arrival: float = field(default_factory=time.perf_counter)
    first_token_at: float | None = None
    constraint: GrammarConstraint | None = None
    adapter: int = 0  # the LoRA slot its tokens run through; 0: the base model
    root: bytes = ROOT_HASH  # the parent of its first block's name: blocks are keyed by adapter

    def __post_init__(self) -> None:
        self.sampler = Sampler(self.params, self.vocab_size, self.prompt)
        self.logprobs: list[TokenLogprob] | None = [] if self.params.logprobs is not None else None
        scored = self.params.prompt_logprobs is not None
        self.prompt_logprobs: list[TokenLogprob | None] | None = [None] * len(self.prompt) if scored else None

    @property
    def tokens(self) -> list[int]:
        return self.prompt + self.output

    @property
    def n_pending(self) -> int:
        """Tokens still to feed before the next one can be sampled."""
        return len(self.prompt) + len(self.output) - self.n_computed

    def scored_positions(self, n_tokens: int) -> range:
        """The positions among the next `n_tokens` whose logits score a prompt token (the next one)."""
        if self.params.prompt_logprobs is None:
            return range(0)
        first = max(self.n_computed, self.params.prompt_logprobs - 1)
        return range(first, min(self.n_computed + n_tokens, len(self.prompt) - 1))

    def score_prompt(self, positions: range, logits: Tensor) -> None:
        """Record the prompt tokens after `positions`, from those positions' logits (rows, vocab)."""
        assert self.prompt_logprobs is not None
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        targets = torch.tensor([self.prompt[p + 1] for p in positions])
        chosen = logprobs.gather(1, targets[:, None])[:, 0].tolist()
        top = torch.topk(logprobs, self.params.logprobs) if self.params.logprobs else None
        for row, p in enumerate(positions):
            pairs = []
            if top is not None:
                pairs = list(zip(top.indices[row].tolist(), top.values[row].tolist(), strict=True))
            self.prompt_logprobs[p + 1] = TokenLogprob(self.prompt[p + 1], chosen[row], pairs)

    def accept(self, logits: Tensor, eos_ids: frozenset[int]) -> None:
        """Sample the next token from the last position's logits (vocab,) and send it."""
        if self.limit == 0:  # the prompt only was to be read
            self.finish(self.limit_reason)
            return
        if self.constraint is not None:
            logits = self.constraint.apply(logits)
        if len(self.output) < self.params.min_tokens:
            logits = logits.clone()
            logits[list(eos_ids)] = float("-inf")
        token = self.sampler(logits)
        if self.constraint is not None and token not in eos_ids:
            self.constraint.advance(token)
        now = time.perf_counter()
        self.first_token_at = self.first_token_at or now
        self.output.append(token)
        logprob = self._logprob(logits, token) if self.logprobs is not None else None
        if logprob is not None:
            self.logprobs.append(logprob)
        logprobs = [logprob] if logprob is not None else None
        if token in eos_ids and not self.params.ignore_eos:
            self.emit(Tokens([token], logprobs, end=True))
            self.finish("stop")
        elif self.emit(Tokens([token], logprobs)):  # a stop string
            self.finish("stop")
        elif len(self.output) >= self.limit:
            self.finish(self.limit_reason)

    def finish(self, reason: str) -> None:
        """End the stream: how it finished, with its tokens, usage and timings."""
        self.finish_reason = reason
        end = time.perf_counter()
        first = self.first_token_at or end
        usage = Usage(len(self.prompt), len(self.output), self.cached_tokens or 0)
        timing = (end - first, first - self.arrival)
        self.emit(Finished(list(self.output), reason, usage, *timing, self.logprobs, self.prompt_logprobs))

    def _logprob(self, logits: Tensor, token: int) -> TokenLogprob:
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        top = torch.topk(logprobs, self.params.logprobs or 0) if self.params.logprobs else None
        pairs = list(zip(top.indices.tolist(), top.values.tolist(), strict=True)) if top is not None else []
        return TokenLogprob(token, float(logprobs[token]), pairs)
