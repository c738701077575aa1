"""The HTTP API: Mistral's routes and shapes (which OpenAI's clients also speak), on the engine.

    POST /v1/chat/completions   POST /v1/completions   POST /v1/fim/completions
    GET  /v1/models             GET  /v1/models/{id}   GET  /health   GET /metrics

Generation runs in each model's engine thread; this module only validates, encodes, streams
(server-sent events, ending with `data: [DONE]`) and counts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from autan.engine.async_engine import AsyncRequestStream
from autan.engine.constraint import ConstraintError, JsonConstraint
from autan.engine.request import Completion, Delta, TokenLogprob
from autan.engine.sampling import SamplingParams
from autan.errors import AutanError
from autan.server import errors
from autan.server.errors import APIError
from autan.server.metrics import Metrics
from autan.server.models import ServedModel
from autan.server.schemas import ChatCompletionRequest, CompletionRequest, FIMCompletionRequest, SamplingFields
from autan.store.db import Store

log = logging.getLogger("autan.server")
DEFAULT_TEMPERATURE = 0.7


@dataclass
class Generation:
    """One HTTP request's work: the prompt and, per choice, its engine stream."""

    id: str
    kind: str  # "chat" or "text"
    served: ServedModel
    prompt: list[int]
    streams: list[AsyncRequestStream]
    started: float
    echo: str = ""
    tools: bool = False  # the request offered functions: a [TOOL_CALLS] answer is parsed into tool_calls

    def tool_calls(self, done: Completion) -> tuple[str, list[dict]] | None:
        """(content, calls) when the model answered with function calls, else None."""
        parse = getattr(self.served.tokenizer, "parse_tool_calls", None)
        if not self.tools or parse is None:
            return None
        try:
            content, calls = parse(done.token_ids)
        except AutanError:  # a malformed call stays visible as text
            return None
        return (content, calls) if calls else None


class CountAndLog:
    """Count every request by path and status, and log it with its duration once it is answered.

    Plain ASGI rather than `@app.middleware`: Starlette's BaseHTTPMiddleware relays a streamed
    body through an extra task and queue per chunk, a cost paid on every token of every stream.
    """

    def __init__(self, app: Callable, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), 500

        async def sending(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self.metrics.requests.labels(scope["path"], str(status)).inc()
            log.info("%s %s %d %.3fs", scope["method"], scope["path"], status, time.perf_counter() - start)


def create_app(
    models: Sequence[ServedModel],
    *,
    api_keys: Sequence[str] = (),
    max_waiting: int = 256,
    log_prompts: bool = False,
    store: Store | None = None,
    multi_user: bool = False,
) -> FastAPI:
    """The API for `models`; with a `store`, also the chat app at `/` and its `/api` routes."""
    served = {m.id: m for m in models}
    metrics = Metrics(lambda: {name: m.engine.engine for name, m in served.items()})
    app = FastAPI(title="autan", version="0.1.0", description="Mistral-compatible API for models run locally.")
    errors.install(app)

    def authorized(request: Request) -> None:
        if not api_keys:
            return
        session = request.cookies.get("autan_session")
        if store is not None and multi_user and session and store.user_for(session):
            return  # a signed-in user of the chat app
        header = request.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key:
            raise APIError(401, "no API key: send `Authorization: Bearer KEY`", type="authentication_error")
        if key not in api_keys:
            raise APIError(401, "the API key is not valid", type="authentication_error")

    def model_named(name: str) -> ServedModel:
        if name not in served:
            raise APIError(
                404, f"model '{name}' is not served here; available: {', '.join(served)}", type="not_found_error"
            )
        return served[name]

    app.add_middleware(CountAndLog, metrics=metrics)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "models": list(served)}

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models", dependencies=[Depends(authorized)])
    async def list_models() -> dict:
        return {"object": "list", "data": [m.card() for m in served.values()]}

    @app.get("/v1/models/{model_id}", dependencies=[Depends(authorized)])
    async def get_model(model_id: str) -> dict:
        return model_named(model_id).card()

    @app.post("/v1/chat/completions", dependencies=[Depends(authorized)])
    async def chat_completions(body: ChatCompletionRequest) -> Response:
        model = model_named(body.model)
        messages = body.engine_messages()
        tools = body.tools if body.tool_choice != "none" else None
        prompt = await _encode(lambda: model.tokenizer.encode_chat(messages, tools=tools))
        if log_prompts:
            log.info("chat prompt for %s: %s", body.model, json.dumps(messages, ensure_ascii=False))
        constraint = _constraint_factory(model, body)
        logprobs = (body.top_logprobs or 0) if body.logprobs else None
        generation = await start(model, "chatcmpl", "chat", prompt, body, constraint, logprobs)
        generation.tools = bool(body.tools) and body.tool_choice != "none"
        return await respond(generation, body)

    @app.post("/v1/completions", dependencies=[Depends(authorized)])
    async def completions(body: CompletionRequest) -> Response:
        model = model_named(body.model)
        if isinstance(body.prompt, list) and body.prompt and isinstance(body.prompt[0], str):
            if len(body.prompt) != 1:
                raise APIError(
                    400, f"prompt has {len(body.prompt)} strings; send one prompt per request", param="prompt"
                )
            text = body.prompt[0]
        else:
            text = body.prompt if isinstance(body.prompt, str) else None
        if text is None:
            prompt = [int(t) for t in body.prompt]  # type: ignore[union-attr]
        elif body.suffix:
            prompt = await _encode(lambda: _encode_fim(model, text, body.suffix or ""))
        else:
            prompt = await _encode(lambda: model.tokenizer.encode(text, add_bos=model.tokenizer.bos_id is not None))
        if log_prompts:
            log.info("completion prompt for %s: %r", body.model, text)
        generation = await start(model, "cmpl", "text", prompt, body, None, body.logprobs)
        generation.echo = (text or model.tokenizer.decode(prompt)) if body.echo else ""
        return await respond(generation, body)

    @app.post("/v1/fim/completions", dependencies=[Depends(authorized)])
    async def fim_completions(body: FIMCompletionRequest) -> Response:
        model = model_named(body.model)
        prompt = await _encode(lambda: _encode_fim(model, body.prompt, body.suffix or ""))
        if log_prompts:
            log.info("fim prompt for %s: %r / %r", body.model, body.prompt, body.suffix)
        generation = await start(model, "cmpl", "chat", prompt, body, None, None)
        return await respond(generation, body)

    async def start(
        model: ServedModel,
        prefix: str,
        kind: str,
        prompt: list[int],
        body: SamplingFields,
        constraint: Callable[[], JsonConstraint] | None,
        logprobs: int | None,
    ) -> Generation:
        limit = body.token_limit()
        context = model.context
        if limit is not None and len(prompt) + limit > context:
            raise APIError(
                400,
                f"prompt has {len(prompt)} tokens and max_tokens is {limit}: {len(prompt) + limit} exceeds the "
                f"model's context of {context} tokens",
                param="max_tokens",
                code="context_length_exceeded",
            )
        if len(prompt) >= context:
            raise APIError(
                400,
                f"prompt has {len(prompt)} tokens, but the model's context is {context} tokens",
                param="messages",
                code="context_length_exceeded",
            )
        waiting = model.engine.engine.stats().waiting
        if waiting >= max_waiting:
            raise APIError(
                429,
                f"{waiting} requests are already waiting for {model.id} (limit {max_waiting}); retry shortly",
                type="rate_limit_error",
                headers={"Retry-After": "1"},
            )
        seed = body.seed_value()
        request_id = f"{prefix}-{uuid.uuid4().hex}"
        streams = []
        try:
            for i in range(body.n):
                params = SamplingParams(
                    temperature=DEFAULT_TEMPERATURE if body.temperature is None else body.temperature,
                    top_p=body.top_p,
                    max_tokens=limit,
                    stop=body.stops(),
                    seed=None if seed is None else seed + i,
                    presence_penalty=body.presence_penalty,
                    min_tokens=body.min_tokens or 0,
                    ignore_eos=body.ignore_eos,
                    frequency_penalty=body.frequency_penalty,
                    logprobs=logprobs,
                )
                streams.append(
                    await model.engine.add_request(
                        prompt, params, request_id=f"{request_id}-{i}", constraint=constraint() if constraint else None
                    )
                )
        except (AutanError, ValueError) as e:
            for s in streams:
                s.abort()
            raise APIError(400, str(e)) from None
        return Generation(request_id, kind, model, prompt, streams, time.perf_counter())

    async def respond(generation: Generation, body: SamplingFields) -> Response:
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return StreamingResponse(
                _sse(generation, include_usage, metrics),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        try:
            done = await asyncio.gather(*(_drain(s) for s in generation.streams))
        finally:
            for s in generation.streams:
                if s.completion is None:
                    s.abort()
        _observe(metrics, generation, done)
        return JSONResponse(_full_response(generation, done))

    if store is not None:
        from autan.web.routes import install

        install(app, store, multi_user=multi_user)
    return app


async def _encode(encode: Callable[[], list[int]]) -> list[int]:
    """Encode off the event loop; the tokenizer's refusals (roles out of order, ...) become 400s."""
    try:
        return await asyncio.to_thread(encode)
    except (AutanError, ValueError, TypeError) as e:
        raise APIError(400, f"the conversation cannot be encoded for this model: {e}") from None


def _encode_fim(model: ServedModel, prompt: str, suffix: str) -> list[int]:
    if not model.fim:
        raise APIError(400, f"model '{model.id}' does not support fill-in-the-middle (its tokenizer has no FIM tokens)")
    return model.tokenizer.encode_fim(prompt, suffix)  # type: ignore[attr-defined]


def _constraint_factory(model: ServedModel, body: ChatCompletionRequest) -> Callable[[], JsonConstraint] | None:
    fmt = body.response_format
    if fmt is None or fmt.type == "text":
        return None
    schema = None
    if fmt.type == "json_schema":
        if fmt.json_schema is None or fmt.json_schema.schema_ is None:
            raise APIError(400, "response_format json_schema needs json_schema.schema", param="response_format")
        schema = fmt.json_schema.schema_
    guidance = getattr(model.tokenizer, "guidance_tokenizer", None)
    if guidance is None:
        raise APIError(400, f"model '{model.id}' cannot constrain its output to JSON", param="response_format")
    try:
        JsonConstraint(guidance(), schema)  # refuse a bad schema now, before anything streams
    except ConstraintError as e:
        raise APIError(400, str(e), param="response_format") from None
    return lambda: JsonConstraint(guidance(), schema)


async def _drain(stream: AsyncRequestStream) -> Completion:
    async for _ in stream:
        pass
    assert stream.completion is not None
    return stream.completion


def _usage(generation: Generation, done: Sequence[Completion]) -> dict:
    prompt = len(generation.prompt)
    completion = sum(c.usage.completion_tokens for c in done)
    cached = min((c.usage.cached_tokens for c in done), default=0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


def _full_response(generation: Generation, done: Sequence[Completion]) -> dict:
    base = {"id": generation.id, "created": int(time.time()), "model": generation.served.id}
    tokenizer = generation.served.tokenizer
    choices = []
    for i, c in enumerate(done):
        logprobs = _logprobs(tokenizer, c.logprobs) if c.logprobs is not None else None
        if generation.kind == "chat":
            message = {"role": "assistant", "content": c.text, "tool_calls": None}
            finish = c.finish_reason
            if (parsed := generation.tool_calls(c)) is not None:
                message["content"], message["tool_calls"] = parsed
                finish = "tool_calls"
            choices.append({"index": i, "message": message, "finish_reason": finish, "logprobs": logprobs})
        else:
            text = generation.echo + c.text
            choices.append({"index": i, "text": text, "finish_reason": c.finish_reason, "logprobs": logprobs})
    kind = "chat.completion" if generation.kind == "chat" else "text_completion"
    return {**base, "object": kind, "choices": choices, "usage": _usage(generation, done)}


async def _sse(generation: Generation, include_usage: bool, metrics: Metrics) -> AsyncIterator[str]:
    """Chunks of every choice as they come, then the finish chunks with usage, then [DONE].

    If the client goes away, the response is cancelled here and every unfinished choice is
    aborted at once, so its KV blocks go back to the pool.
    """
    chat = generation.kind == "chat"
    base = {
        "id": generation.id,
        "object": "chat.completion.chunk" if chat else "text_completion",
        "created": int(time.time()),
        "model": generation.served.id,
    }
    tokenizer = generation.served.tokenizer

    def chunk(choices: list[dict], **extra: Any) -> str:
        return f"data: {json.dumps({**base, 'choices': choices, **extra}, ensure_ascii=False)}\n\n"

    def choice(i: int, text: str, finish: str | None, logprobs: list[TokenLogprob] | None = None) -> dict:
        lp = _logprobs(tokenizer, logprobs) if logprobs else None
        if chat:
            return {"index": i, "delta": {"content": text}, "finish_reason": finish, "logprobs": lp}
        return {"index": i, "text": text, "finish_reason": finish, "logprobs": lp}

    queue: asyncio.Queue[tuple[int, Delta | Completion | BaseException]] = asyncio.Queue()

    async def pump(i: int, stream: AsyncRequestStream) -> None:
        try:
            async for delta in stream:
                await queue.put((i, delta))
            assert stream.completion is not None
            await queue.put((i, stream.completion))
        except BaseException as e:
            await queue.put((i, e))

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(generation.streams)]
    done: dict[int, Completion] = {}
    marker = getattr(tokenizer, "tool_call_id", None) if generation.tools else None
    calling: set[int] = set()  # choices answering with function calls: sent whole at the end
    try:
        if chat:
            yield chunk(
                [
                    {"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
                    for i in range(len(generation.streams))
                ]
            )
        elif generation.echo:
            yield chunk([choice(i, generation.echo, None) for i in range(len(generation.streams))])
        while len(done) < len(generation.streams):
            i, event = await queue.get()
            if isinstance(event, BaseException):
                error = errors.envelope(f"generation failed: {event}", "internal_error")
                yield f"data: {json.dumps(error)}\n\n"
                break
            if isinstance(event, Completion):
                done[i] = event
                continue
            if marker is not None and marker in event.token_ids:
                calling.add(i)
            if i not in calling and (event.text or event.logprobs):
                yield chunk([choice(i, event.text, None, event.logprobs)])
        else:
            completions = [done[i] for i in range(len(generation.streams))]
            usage = _usage(generation, completions)
            finals = [choice(i, "", c.finish_reason) for i, c in enumerate(completions)]
            for i in sorted(calling):
                parsed = generation.tool_calls(completions[i])
                if parsed is None:  # not a well-formed call after all: the text it held back
                    yield chunk([choice(i, completions[i].text, None)])
                    continue
                calls = [{"index": n, **call} for n, call in enumerate(parsed[1])]  # its text before was streamed
                yield chunk([{"index": i, "delta": {"tool_calls": calls}, "finish_reason": None}])
                finals[i]["finish_reason"] = "tool_calls"
            yield chunk(finals, usage=usage)
            if include_usage:  # OpenAI's stream_options: one more chunk, with usage and no choices
                yield chunk([], usage=usage)
            _observe(metrics, generation, completions)
        yield "data: [DONE]\n\n"
    finally:
        for task in tasks:
            task.cancel()
        for stream in generation.streams:
            if stream.completion is None:
                stream.abort()


def _logprobs(tokenizer: Any, logprobs: Sequence[TokenLogprob]) -> dict:
    def entry(token_id: int, logprob: float) -> dict:
        text = tokenizer.decode([token_id])
        return {"token": text, "logprob": logprob, "bytes": list(text.encode())}

    return {
        "content": [
            {**entry(lp.token_id, lp.logprob), "top_logprobs": [entry(t, p) for t, p in lp.top]} for lp in logprobs
        ]
    }


def _observe(metrics: Metrics, generation: Generation, done: Sequence[Completion]) -> None:
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
