"""Response bodies of the generation endpoints, as plain functions of a finished (or streaming)
generation: the whole JSON answer, the server-sent events of a stream, usage and logprobs.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from autan.engine.request import Completion, TokenLogprob
from autan.http.errors import envelope
from autan.server.generation import Generation, failure
from autan.server.metrics import Metrics

log = logging.getLogger("autan.server")


def usage(generation: Generation, done: Sequence[Completion]) -> dict:
    prompt = len(generation.prompt)
    completion = sum(c.usage.completion_tokens for c in done)
    cached = min((c.usage.cached_tokens for c in done), default=0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


def full_response(generation: Generation, done: Sequence[Completion]) -> dict:
    base = {"id": generation.id, "created": int(time.time()), "model": generation.served.id}
    tokenizer = generation.served.tokenizer
    choices = []
    for i, c in enumerate(done):
        lp = logprobs(tokenizer, c.logprobs) if c.logprobs is not None else None
        if generation.kind == "chat":
            message = {"role": "assistant", "content": c.text, "tool_calls": None}
            finish = c.finish_reason
            if (parsed := generation.tool_calls(c)) is not None:
                message["content"], message["tool_calls"] = parsed
                finish = "tool_calls"
            choices.append({"index": i, "message": message, "finish_reason": finish, "logprobs": lp})
        else:
            text = generation.echo + c.text
            choices.append({"index": i, "text": text, "finish_reason": c.finish_reason, "logprobs": lp})
    kind = "chat.completion" if generation.kind == "chat" else "text_completion"
    return {**base, "object": kind, "choices": choices, "usage": usage(generation, done)}


async def events(
    generation: Generation, metrics: Metrics, *, include_usage: bool, continuous_usage: bool
) -> AsyncIterator[str]:
    """Chunks of every choice as they come, then the finish chunks with usage, then [DONE].

    With `continuous_usage` (vLLM's `stream_options.continuous_usage_stats`) every chunk carries
    the usage so far, so a client that stops reading still knows how many tokens it got. This
    generator owns the generation: whatever ends it (the last token, an error, the client going
    away and the response being cancelled) closes it, which aborts every unfinished choice.
    """
    chat = generation.kind == "chat"
    base = {
        "id": generation.id,
        "object": "chat.completion.chunk" if chat else "text_completion",
        "created": int(time.time()),
        "model": generation.served.id,
    }
    tokenizer = generation.served.tokenizer
    counts = [0] * len(generation.streams)

    def so_far() -> dict:
        prompt = len(generation.prompt)
        return {"prompt_tokens": prompt, "completion_tokens": sum(counts), "total_tokens": prompt + sum(counts)}

    def chunk(choices: list[dict], **extra: Any) -> str:
        if continuous_usage and "usage" not in extra:
            extra["usage"] = so_far()
        return f"data: {json.dumps({**base, 'choices': choices, **extra}, ensure_ascii=False)}\n\n"

    def choice(i: int, text: str, finish: str | None, lps: list[TokenLogprob] | None = None) -> dict:
        lp = logprobs(tokenizer, lps) if lps else None
        if chat:
            return {"index": i, "delta": {"content": text}, "finish_reason": finish, "logprobs": lp}
        return {"index": i, "text": text, "finish_reason": finish, "logprobs": lp}

    marker = getattr(tokenizer, "tool_call_id", None) if generation.tools else None
    calling: set[int] = set()  # choices answering with function calls: sent whole at the end
    try:
        n = len(generation.streams)
        if chat:
            yield chunk(
                [{"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None} for i in range(n)]
            )
        elif generation.echo:
            yield chunk([choice(i, generation.echo, None) for i in range(n)])
        done: list[Completion] | None = None
        async for i, event in generation.merged():
            if isinstance(event, BaseException):
                error = failure(event)
                yield f"data: {json.dumps(envelope(error.message, error.type, code=error.code))}\n\n"
                break
            if isinstance(event, list):  # every choice has ended
                done = event
                break
            counts[i] += len(event.token_ids)
            if marker is not None and marker in event.token_ids:
                calling.add(i)
            if i not in calling and (event.text or event.logprobs):
                yield chunk([choice(i, event.text, None, event.logprobs)])
        if done is not None:
            total = usage(generation, done)
            finals = [choice(i, "", c.finish_reason) for i, c in enumerate(done)]
            for i in sorted(calling):
                parsed = generation.tool_calls(done[i])
                if parsed is None:  # not a well-formed call after all: the text it held back
                    yield chunk([choice(i, done[i].text, None)])
                    continue
                calls = [{"index": k, **call} for k, call in enumerate(parsed[1])]  # its text before was streamed
                yield chunk([{"index": i, "delta": {"tool_calls": calls}, "finish_reason": None}])
                finals[i]["finish_reason"] = "tool_calls"
            yield chunk(finals, usage=total)
            if include_usage:  # OpenAI's stream_options: one more chunk, with usage and no choices
                yield chunk([], usage=total)
            observe(metrics, generation, done)
        yield "data: [DONE]\n\n"
    finally:
        generation.close()


def logprobs(tokenizer: Any, entries: Sequence[TokenLogprob]) -> dict:
    def entry(token_id: int, logprob: float) -> dict:
        text = tokenizer.decode([token_id])
        return {"token": text, "logprob": logprob, "bytes": list(text.encode())}

    return {
        "content": [
            {**entry(lp.token_id, lp.logprob), "top_logprobs": [entry(t, p) for t, p in lp.top]} for lp in entries
        ]
    }


def observe(metrics: Metrics, generation: Generation, done: Sequence[Completion]) -> None:
    name = generation.served.id
    metrics.prompt_tokens.labels(name).inc(len(generation.prompt) * len(done))
    for c in done:
        metrics.cached_tokens.labels(name).inc(c.usage.cached_tokens)
        metrics.generated_tokens.labels(name).inc(c.usage.completion_tokens)
        metrics.first_token.labels(name).observe(c.prefill_seconds)
        metrics.duration.labels(name).observe(c.prefill_seconds + c.seconds)
        if c.usage.completion_tokens > 1:
            metrics.inter_token.labels(name).observe(c.seconds / (c.usage.completion_tokens - 1))
        log.info(
            "%s %s: %d prompt tokens (%d cached), %d generated, %s, first token %.2fs",
            generation.id,
            name,
            c.usage.prompt_tokens,
            c.usage.cached_tokens,
            c.usage.completion_tokens,
            c.finish_reason,
            c.prefill_seconds,
        )
