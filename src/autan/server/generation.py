"""One HTTP request's generation, from its prompt to its last token, and the one place that ends it.

`Generation.start` checks the prompt's size before tokenizing it, encodes it off the event loop,
compiles a JSON grammar off the loop (once, copied per choice), reserves room in the model's
queue and queues one engine request per choice. `close` aborts every choice that has not
finished; a route calls it on every way out (the answer, an error, the client going away), so
no abandoned request keeps its KV blocks or the engine's time.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi import Request

from autan.engine.async_engine import AsyncRequestStream, EngineUnavailable
from autan.engine.constraint import ConstraintError, GrammarConstraint
from autan.engine.output import Completion, Delta, ToolCalls
from autan.errors import AutanError
from autan.http.errors import APIError
from autan.server.schemas import SamplingFields
from autan.server.served import ServedModel

T = TypeVar("T")


class ClientGone(Exception):
    """The client disconnected before its answer was ready; nobody is left to answer."""


async def until_disconnected(request: Request, work: Awaitable[T]) -> T:
    """`work`'s result, unless the client goes away first: then `work` is cancelled and
    ClientGone raised. (The body has been read: what the channel brings next is the disconnect.)"""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if task.done():
        return task.result()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    raise ClientGone


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


def failure(error: BaseException) -> APIError:
    """What a client is told when its generation failed part way."""
    if isinstance(error, APIError):
        return error
    if isinstance(error, EngineUnavailable):
        return APIError(503, f"model unavailable: {error}", type="service_unavailable", headers={"Retry-After": "5"})
    if isinstance(error, ConstraintError):
        return APIError(400, f"the output could not follow the JSON schema: {error}", param="response_format")
    if isinstance(error, AutanError | ValueError):
        return APIError(400, str(error))
    return APIError(500, f"generation failed: {type(error).__name__}: {error}", type="internal_error")


@dataclass
class Generation:
    """One HTTP request's work: the prompt and, per choice, its engine stream."""

    served: ServedModel
    kind: str  # "chat" or "text"
    id: str
    echoes: list[str] = field(default_factory=list)  # per prompt: the text put before its answers (echo)
    tools: bool = False  # the request offered functions: a [TOOL_CALLS] answer is parsed into tool_calls
    batch: int = 1  # prompts in the request (a list of prompts to /v1/completions); each has `n` choices
    prompts: list[list[int]] = field(default_factory=list)
    streams: list[AsyncRequestStream] = field(default_factory=list)  # prompt k's choice j is stream k * n + j
    started: float = field(default_factory=time.perf_counter)
    _pumps: list[asyncio.Task] = field(default_factory=list)

    @classmethod
    def new(cls, served: ServedModel, prefix: str, kind: str) -> Generation:
        return cls(served, kind, f"{prefix}-{uuid.uuid4().hex}")

    @property
    def prompt(self) -> list[int]:
        """The (first) prompt's ids."""
        return self.prompts[0] if self.prompts else []

    def prompt_of(self, choice: int) -> list[int]:
        return self.prompts[choice * len(self.prompts) // max(len(self.streams), 1)] if self.prompts else []

    def echo_of(self, choice: int) -> str:
        return self.echoes[choice * len(self.echoes) // max(len(self.streams), 1)] if self.echoes else ""

    def prompt_tokens(self) -> int:
        """Every prompt's tokens, each counted once however many choices it has (as OpenAI counts)."""
        return sum(len(p) for p in self.prompts)

    async def start(
        self,
        body: SamplingFields,
        *,
        encode: Callable[[], list[int]] | None = None,
        prompt: list[int] | None = None,
        batch: Sequence[list[int] | Callable[[], list[int]]] | None = None,
        text_bytes: int = 0,
        schema: dict[str, Any] | bool | None = False,
        grammar: str | None = None,
        logprobs: int | None = None,
        prompt_logprobs: bool = False,
        max_waiting: int,
    ) -> None:
        """Encode (or take) the prompt, check it, and queue one request per choice.

        `batch` gives several prompts (each ids, or what encodes them) in place of one `encode`
        or `prompt`. `text_bytes` is the size of the longest text to encode, refused before
        tokenizing when even its fewest possible tokens exceed the context. `schema`: False for
        free text, None for any JSON object, a dict for JSON following that schema. `grammar`:
        a Lark grammar the answer must follow instead (a function call's, by `tool_choice`)."""
        served, limit = self.served, body.token_limit()
        fewest = text_bytes // max(served.tokenizer_max_token_bytes, 1)
        if fewest >= served.context:
            raise APIError(
                400,
                f"the prompt's {text_bytes} bytes of text make at least {fewest} tokens, but the model's context is "
                f"{served.context} tokens",
                param="messages",
                code="context_length_exceeded",
            )
        sources = batch if batch is not None else [prompt if prompt is not None else encode]
        self.prompts = [s if isinstance(s, list) else await _run(s) for s in sources]  # type: ignore[arg-type]
        for ids in self.prompts:
            _check_length(len(ids), limit, served.context)
        constraint = None
        if grammar is not None:
            constraint = await _run(lambda: _compile(served, None, grammar))
        elif schema is not False:
            constraint = await _run(lambda: _compile(served, schema))  # type: ignore[arg-type]
        n = body.n * len(self.prompts)
        waiting = served.engine.engine.stats().waiting + served.admitting
        if waiting + n > max_waiting:
            raise APIError(
                429,
                f"{waiting} requests are already waiting for {served.id} (limit {max_waiting}); retry shortly",
                headers={"Retry-After": "1"},
            )
        served.admitting += n  # no await between the check and this: the limit holds under concurrency
        try:
            seed = body.seed_value()
            for k in range(n):
                i = k % body.n  # the choice's number among its prompt's: the same seeds for every prompt
                params = body.sampling(
                    served.default_temperature,
                    None if seed is None else (seed + i) % 2**63,
                    logprobs,
                    1 if prompt_logprobs else None,
                )
                self.streams.append(
                    await served.engine.add_request(
                        self.prompts[k // body.n],
                        params,
                        request_id=f"{self.id}-{k}",
                        constraint=constraint.copy() if constraint is not None else None,
                        adapter=served.adapter,
                    )
                )
        except (AutanError, ValueError) as e:
            raise failure(e) from None
        finally:
            served.admitting -= n

    async def merged(self) -> AsyncIterator[tuple[int, Delta | BaseException | list[Completion]]]:
        """(choice, delta) as they come from every stream; then (-1, completions) once all have
        ended, or (choice, error) for the first that failed."""
        queue: asyncio.Queue[tuple[int, Delta | Completion | BaseException]] = asyncio.Queue()

        async def pump(i: int, stream: AsyncRequestStream) -> None:
            try:
                async for delta in stream:
                    await queue.put((i, delta))
                assert stream.completion is not None
                await queue.put((i, stream.completion))
            except BaseException as e:  # the stream's own failure, or this task's cancellation
                await queue.put((i, e))

        self._pumps = [asyncio.create_task(pump(i, s)) for i, s in enumerate(self.streams)]
        done: dict[int, Completion] = {}
        while len(done) < len(self.streams):
            i, event = await queue.get()
            if isinstance(event, Completion):
                done[i] = event
            else:
                yield i, event
        yield -1, [done[i] for i in range(len(self.streams))]

    async def drain(self) -> list[Completion]:
        """Every choice's completion; the first failure raises in the API's terms."""
        async for _, event in self.merged():
            if isinstance(event, BaseException):
                raise failure(event)
            if isinstance(event, list):
                return event
        raise AssertionError("merged() ends with the completions")

    def close(self) -> None:
        """Abort every choice that has not finished (its blocks go back to the pool)."""
        for task in self._pumps:
            task.cancel()
        for stream in self.streams:
            if stream.completion is None:
                stream.abort()

    def tool_calls(self, done: Completion) -> tuple[str, list[dict]] | None:
        """(content, calls) when the model answered with function calls, else None."""
        return ToolCalls(self.served.tokenizer).parsed(done) if self.tools else None

    def call_watches(self) -> list[ToolCalls] | None:
        """Per choice, what holds back a function call as it streams; None without tools."""
        return [ToolCalls(self.served.tokenizer) for _ in self.streams] if self.tools else None


def tool_grammar(model: ServedModel, tools: list[dict] | None, choice: Any, parallel: bool) -> str | None:
    """The grammar that makes the answer a call (tool_choice required, any, or a named function);
    a model whose chat template has no function calls is refused the tools, never silently."""
    if not tools:
        if choice not in (None, "none", "auto"):
            raise APIError(400, f"tool_choice {choice!r} needs tools, and the request has none", param="tool_choice")
        return None
    if not model.tools:
        message = f"model '{model.id}' cannot call functions: its chat template has no tools (send tool_choice none)"
        raise APIError(400, message, param="tools")
    make = getattr(model.tokenizer, "tool_grammar", None)
    try:
        return make(tools, choice, parallel) if make is not None else None
    except AutanError as e:
        raise APIError(400, f"model '{model.id}': {e}", param="tool_choice") from None


def _check_length(prompt: int, limit: int | None, context: int) -> None:
    if limit is not None and prompt + limit > context:
        raise APIError(
            400,
            f"prompt has {prompt} tokens and max_tokens is {limit}: {prompt + limit} exceeds the model's context "
            f"of {context} tokens",
            param="max_tokens",
            code="context_length_exceeded",
        )
    if prompt >= context:
        raise APIError(
            400,
            f"prompt has {prompt} tokens, but the model's context is {context} tokens",
            param="messages",
            code="context_length_exceeded",
        )


async def _run(work: Callable[[], T]) -> T:
    """Off the event loop; the tokenizer's refusals (roles out of order, ...) become 400s."""
    try:
        return await asyncio.to_thread(work)
    except APIError:
        raise
    except ConstraintError as e:
        raise APIError(400, str(e), param="response_format") from None
    except (AutanError, ValueError, TypeError) as e:
        raise APIError(400, f"the conversation cannot be encoded for this model: {e}") from None


def _compile(served: ServedModel, schema: dict[str, Any] | None, lark: str | None = None) -> GrammarConstraint:
    guidance = getattr(served.tokenizer, "guidance_tokenizer", None)
    param = "tool_choice" if lark is not None else "response_format"
    if guidance is None:
        raise APIError(400, f"model '{served.id}' cannot constrain its output", param=param)
    try:
        constraint = GrammarConstraint(guidance(), schema, lark=lark)
        constraint.check()  # a grammar that fails at its first token is refused now, not mid-answer
    except (ConstraintError, AutanError) as e:
        raise APIError(400, f"model '{served.id}': {e}", param=param) from None
    return constraint
