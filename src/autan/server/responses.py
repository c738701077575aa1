"""Response bodies of the generation endpoints, as plain functions of a finished (or streaming)
generation: the whole JSON answer, the server-sent events of a stream, usage and logprobs.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from fastapi.responses import StreamingResponse

from autan.engine.output import Completion
from autan.engine.request import TokenLogprob
from autan.guard.rails import OutputWatch, Verdict
from autan.http.errors import envelope
from autan.server.generation import Generation, failure
from autan.server.metrics import Metrics

log = logging.getLogger("autan.server")


def sse(chunks: AsyncIterator[str]) -> StreamingResponse:
    """Server-sent events, passed on as they come (no buffering in a proxy)."""
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(chunks, media_type="text/event-stream", headers=headers)


def usage(generation: Generation, done: Sequence[Completion]) -> dict:
    prompt = generation.prompt_tokens()
    completion = sum(c.usage.completion_tokens for c in done)
    cached = min((c.usage.cached_tokens for c in done), default=0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


FILTERED = "content_filter"  # OpenAI's finish reason for an answer a moderation stopped


def full_response(
    generation: Generation,
    done: Sequence[Completion],
    verdicts: Mapping[int, Verdict] | None = None,
    refusal_text: str = "",
) -> dict:
    """The whole answer. A choice the output rail flagged is withheld: the refusal stands in its
    place, with finish reason `content_filter` and the rail's `moderation`."""
    base = {"id": generation.id, "created": int(time.time()), "model": generation.served.id}
    tokenizer = generation.served.tokenizer
    verdicts = verdicts or {}
    choices = []
    for i, c in enumerate(done):
        lp = logprobs(tokenizer, c.logprobs) if c.logprobs is not None else None
        if generation.kind != "chat" and c.logprobs is not None:
            lp = text_logprobs(tokenizer, generation, i, c)
        if generation.kind == "chat":
            message = {"role": "assistant", "content": c.text, "tool_calls": None}
            finish = c.finish_reason
            if (parsed := generation.tool_calls(c)) is not None:
                message["content"], message["tool_calls"] = parsed[0] or None, parsed[1]
                finish = "tool_calls"
            choice = {"index": i, "message": message, "finish_reason": finish, "logprobs": lp}
            if i in verdicts:
                message["content"], message["tool_calls"] = refusal_text, None
        else:
            text = generation.echo_of(i) + c.text if i not in verdicts else refusal_text
            choice = {"index": i, "text": text, "finish_reason": c.finish_reason, "logprobs": lp}
        if i in verdicts:
            choice.update(finish_reason=FILTERED, logprobs=None, moderation=verdicts[i].body())
        choices.append(choice)
    kind = "chat.completion" if generation.kind == "chat" else "text_completion"
    return {**base, "object": kind, "choices": choices, "usage": usage(generation, done)}


def refusal(
    generation: Generation, verdict: Verdict, text: str, n: int, stream: bool, include_usage: bool
) -> dict | AsyncIterator[str]:
    """The answer to a prompt the input rail flagged: the refusal for every choice, finish
    reason `content_filter`, the rail's `moderation`; nothing was generated."""
    chat = generation.kind == "chat"
    base = {"id": generation.id, "created": int(time.time()), "model": generation.served.id}
    nothing = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    why = {"finish_reason": FILTERED, "moderation": verdict.body()}
    if not stream:
        if chat:
            message = {"role": "assistant", "content": text, "tool_calls": None}
            choices = [{"index": i, "message": message, "logprobs": None, **why} for i in range(n)]
        else:
            choices = [{"index": i, "text": text, "logprobs": None, **why} for i in range(n)]
        kind = "chat.completion" if chat else "text_completion"
        return {**base, "object": kind, "choices": choices, "usage": nothing}

    async def chunks() -> AsyncIterator[str]:
        kind = {"object": "chat.completion.chunk" if chat else "text_completion"}

        def event(choices: list[dict], **extra: Any) -> str:
            return f"data: {json.dumps({**base, **kind, 'choices': choices, **extra}, ensure_ascii=False)}\n\n"

        piece = (
            (lambda i: {"index": i, "delta": {"role": "assistant", "content": text}})
            if chat
            else (lambda i: {"index": i, "text": text})
        )
        yield event([{**piece(i), "finish_reason": None} for i in range(n)])
        end = (lambda i: {"index": i, "delta": {}}) if chat else (lambda i: {"index": i, "text": ""})
        yield event([{**end(i), **why} for i in range(n)], usage=nothing)
        if include_usage:
            yield event([], usage=nothing)
        yield "data: [DONE]\n\n"

    return chunks()


async def events(
    generation: Generation,
    metrics: Metrics,
    *,
    include_usage: bool,
    continuous_usage: bool,
    watch: OutputWatch | None = None,
) -> AsyncIterator[str]:
    """Chunks of every choice as they come, then the finish chunks with usage, then [DONE].

    With `continuous_usage` (vLLM's `stream_options.continuous_usage_stats`) every chunk carries
    the usage so far, so a client that stops reading still knows how many tokens it got. This
    generator owns the generation: whatever ends it (the last token, an error, the client going
    away and the response being cancelled) closes it, which aborts every unfinished choice.

    With `watch` (the output rail), each choice's pieces are held until a check has passed over
    them (every few tokens, and at the end); a choice it flags is stopped there: what it held is
    never sent, and its finish chunk says `content_filter` and why.
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
        prompt = generation.prompt_tokens()
        return {"prompt_tokens": prompt, "completion_tokens": sum(counts), "total_tokens": prompt + sum(counts)}

    def chunk(choices: list[dict], **extra: Any) -> str:
        if continuous_usage and "usage" not in extra:
            extra["usage"] = so_far()
        return f"data: {json.dumps({**base, 'choices': choices, **extra}, ensure_ascii=False)}\n\n"

    offsets = [0] * len(generation.streams)  # where each choice's text has reached (its echo is sent first)

    def choice(i: int, text: str, finish: str | None, lps: list[TokenLogprob] | None = None) -> dict:
        if chat:
            lp = logprobs(tokenizer, lps) if lps else None
            return {"index": i, "delta": {"content": text}, "finish_reason": finish, "logprobs": lp}
        lp = None
        if lps:
            texts = [text] if len(lps) == 1 else [tokenizer.decode([e.token_id]) for e in lps]
            lp = legacy_logprobs(tokenizer, lps, texts, offsets[i])
        offsets[i] += len(text)
        return {"index": i, "text": text, "finish_reason": finish, "logprobs": lp}

    calls = generation.call_watches()
    stopped: dict[int, Verdict] = {}  # choices the output rail flagged
    held: dict[int, list[str]] = {}  # chunks the output rail has not checked yet, per choice
    try:
        n = len(generation.streams)
        if chat:
            yield chunk(
                [{"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None} for i in range(n)]
            )
        elif generation.echoes:
            yield chunk([choice(i, generation.echo_of(i), None) for i in range(n)])
        done: list[Completion] | None = None
        async for i, event in generation.merged():
            if isinstance(event, BaseException):
                error = failure(event)
                yield f"data: {json.dumps(envelope(error.message, error.type, code=error.code))}\n\n"
                break
            if isinstance(event, list):  # every choice has ended
                done = event
                break
            if i in stopped:
                continue  # stopped by the rail; its abort is on its way
            counts[i] += len(event.token_ids)
            text, lps = event.text, event.logprobs
            if calls is not None:  # text that may be, or is, a function call waits
                text = calls[i].feed(event.text, event.token_ids)
                lps = lps if text == event.text else None
            piece = None
            if text or lps:
                piece = chunk([choice(i, text, None, lps)])
            if watch is None:
                if piece is not None:
                    yield piece
                continue
            if piece is not None:
                held.setdefault(i, []).append(piece)  # until a check has passed over it
            if watch.feed(i, event.text, len(event.token_ids)):
                if (verdict := await watch.check(i)) is not None:  # what it held is never sent
                    stopped[i] = verdict
                    held.pop(i, None)
                    generation.streams[i].abort()
                    continue
                for passed in held.pop(i, []):
                    yield passed
        if done is not None:
            if watch is not None:
                for i in range(len(done)):
                    if i in stopped:
                        continue
                    if (verdict := await watch.finish(i)) is not None:
                        stopped[i] = verdict
                        held.pop(i, None)
                    for passed in held.pop(i, []):
                        yield passed
            total = usage(generation, done)
            finals = [choice(i, "", c.finish_reason) for i, c in enumerate(done)]
            for i, verdict in stopped.items():
                finals[i].update(finish_reason=FILTERED, moderation=verdict.body())
            for i in range(len(done)) if calls is not None else ():
                if i in stopped:
                    continue
                parsed = calls[i].parsed(done[i]) if calls[i].held else None
                if parsed is None:  # no well-formed call after all: the text it held back
                    if rest := calls[i].unsent(done[i].text):
                        yield chunk([choice(i, rest, None)])
                    continue
                for delta in tool_call_deltas(parsed[1]):  # the text before the calls was streamed
                    yield chunk([{"index": i, "delta": {"tool_calls": [delta]}, "finish_reason": None}])
                finals[i]["finish_reason"] = "tool_calls"
            yield chunk(finals, usage=total)
            if include_usage:  # OpenAI's stream_options: one more chunk, with usage and no choices
                yield chunk([], usage=total)
            observe(metrics, generation, done)
        yield "data: [DONE]\n\n"
    finally:
        generation.close()


def tool_call_deltas(calls: Sequence[dict]) -> list[dict]:
    """OpenAI's stream of calls: each call's id, type and name with empty arguments, then its
    arguments in pieces, each delta naming the call's index."""
    out = []
    for k, c in enumerate(calls):
        function = c["function"]
        out.append({"index": k, "id": c["id"], "type": "function",
                    "function": {"name": function["name"], "arguments": ""}})  # fmt: skip
        arguments = function["arguments"]
        out += [{"index": k, "function": {"arguments": arguments[at : at + 24]}} for at in range(0, len(arguments), 24)]
    return out


def logprobs(tokenizer: Any, entries: Sequence[TokenLogprob]) -> dict:
    def entry(token_id: int, logprob: float) -> dict:
        text = tokenizer.decode([token_id])
        return {"token": text, "logprob": logprob, "bytes": list(text.encode())}

    return {
        "content": [
            {**entry(lp.token_id, lp.logprob), "top_logprobs": [entry(t, p) for t, p in lp.top]} for lp in entries
        ]
    }


def pieces(tokenizer: Any, ids: Sequence[int], context: Sequence[int] = ()) -> list[str]:
    """Each token's text as it reads in the sequence (alone, a token may lose its leading space),
    decoded after a few tokens before it (from `context`, the prompt, for the first ones): linear
    in the length, and the pieces join up."""
    seq = [*context[-8:], *ids]
    skip = len(seq) - len(ids)
    out = []
    for i in range(skip, len(seq)):
        before = seq[max(0, i - 8) : i]
        out.append(tokenizer.decode([*before, seq[i]])[len(tokenizer.decode(before)) :])
    return out


def legacy_logprobs(
    tokenizer: Any, entries: Sequence[TokenLogprob | None], texts: Sequence[str], offset: int = 0
) -> dict:
    """OpenAI's legacy completions shape: parallel lists of tokens, their log-probabilities, the
    top alternatives (token text -> log-probability) and each token's offset in the text; an
    entry of None (the prompt's first token, which has no context) is null in all but tokens."""
    starts = []
    for text in texts:
        starts.append(offset)
        offset += len(text)
    return {
        "tokens": list(texts),
        "token_logprobs": [e.logprob if e is not None else None for e in entries],
        "top_logprobs": [_alternatives(tokenizer, e) if e is not None else None for e in entries],
        "text_offset": starts,
    }


def _alternatives(tokenizer: Any, entry: TokenLogprob) -> dict[str, float]:
    """Token text -> log-probability; tokens that read the same keep the likeliest's."""
    out: dict[str, float] = {}
    for token, logprob in entry.top:  # best first
        out.setdefault(tokenizer.decode([token]), logprob)
    return out


def text_logprobs(tokenizer: Any, generation: Generation, choice: int, done: Completion) -> dict:
    """A whole completion's logprobs; with echo, the prompt's tokens first (scored, when asked)."""
    generated = done.logprobs or []
    entries: list[TokenLogprob | None] = list(generated)
    ids, prompt = [e.token_id for e in generated], generation.prompt_of(choice)
    if done.prompt_logprobs is not None:
        entries = [*done.prompt_logprobs, *entries]
        return legacy_logprobs(tokenizer, entries, pieces(tokenizer, [*prompt, *ids]), 0)
    return legacy_logprobs(tokenizer, entries, pieces(tokenizer, ids, prompt), len(generation.echo_of(choice)))


def observe(metrics: Metrics, generation: Generation, done: Sequence[Completion]) -> None:
    served = generation.served
    # an account's fine-tune is that account's alone: its figures count under its base model's
    name = f"{served.base}:fine-tuned" if getattr(served, "owner", None) is not None else served.id
    metrics.prompt_tokens.labels(name).inc(sum(len(generation.prompt_of(i)) for i in range(len(done))))
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
