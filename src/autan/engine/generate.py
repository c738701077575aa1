"""Generation for one sequence: prompt ids in, text deltas out, then usage and a finish reason.

finish_reason: "stop" (end-of-sequence token or a stop string), "length" (max_tokens reached),
"model_length" (the model's context is full).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch

from autan.engine.sampling import Sampler, SamplingParams, StopMatcher
from autan.errors import ContextLengthError
from autan.model.transformer import Transformer
from autan.tokenizer import StreamDecoder, Tokenizer


@dataclass
class Usage:
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class Completion:
    text: str
    token_ids: list[int]
    finish_reason: str
    usage: Usage
    seconds: float = 0.0  # wall time of the decode phase (after the first token)
    prefill_seconds: float = 0.0

    @property
    def tokens_per_second(self) -> float:
        decoded = self.usage.completion_tokens - 1
        return decoded / self.seconds if decoded > 0 and self.seconds > 0 else 0.0


@dataclass
class Stream:
    """Iterate for text deltas; `completion` is set once the iteration ends."""

    deltas: Iterator[str]
    completion: Completion | None = field(default=None)

    def __iter__(self) -> Iterator[str]:
        return self.deltas


def generate(model: Transformer, tokenizer: Tokenizer, prompt_ids: Sequence[int], params: SamplingParams) -> Stream:
    stream = Stream(iter(()))
    stream.deltas = _run(model, tokenizer, list(prompt_ids), params, stream)
    return stream


def _run(
    model: Transformer, tokenizer: Tokenizer, prompt: list[int], params: SamplingParams, out: Stream
) -> Iterator[str]:
    context = model.config.max_seq_len
    if len(prompt) >= context:
        raise ContextLengthError(f"prompt has {len(prompt)} tokens, but the model context is {context}")
    budget = context - len(prompt)
    limit = min(params.max_tokens or budget, budget)
    sampler, stops = Sampler(params, model.config.vocab_size), StopMatcher(params.stop)
    decoder = StreamDecoder(tokenizer, prompt_tail=prompt[-4:])
    cache = model.new_cache(max_seq_len=context)
    ids: list[int] = []
    text: list[str] = []
    reason = "length" if limit == params.max_tokens else "model_length"
    matched_stop = False
    start = time.perf_counter()
    first = start
    with torch.inference_mode():
        logits = model(torch.tensor(prompt), cache, last_only=True)
        for step in range(limit):
            token = sampler(logits[-1])
            if step == 0:
                first = time.perf_counter()
            if token in tokenizer.eos_ids:
                ids.append(token)
                reason = "stop"
                break
            ids.append(token)
            piece, stopped = stops.push(decoder.push(token))
            if piece:
                text.append(piece)
                yield piece
            if stopped:
                reason, matched_stop = "stop", True
                break
            if step + 1 < limit:
                logits = model(torch.tensor([token]), cache, last_only=True)
    if not matched_stop:  # emit what was held back: a partial character or a partial stop string
        tail, stopped = stops.push(decoder.flush())
        tail += "" if stopped else stops.flush()
        if tail:
            text.append(tail)
            yield tail
    end = time.perf_counter()
    out.completion = Completion("".join(text), ids, reason, Usage(len(prompt), len(ids)), end - first, first - start)
