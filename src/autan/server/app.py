"""The HTTP API: Mistral's routes and shapes (which OpenAI's clients also speak), on the engine.

    POST /v1/chat/completions   POST /v1/completions   POST /v1/fim/completions
    POST /v1/moderations        POST /v1/chat/moderations
    GET  /v1/models             GET  /v1/models/{id}   GET  /health   GET /metrics   GET /docs

Generation runs in each model's engine thread; this module only routes. Who may call what is
`autan.http.auth`, what every request passes first `autan.http.gate`, one request's work
`generation`, the bodies it answers with `responses`, the guardrails around it `autan.guard.rails`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from autan import __version__
from autan.errors import AutanError
from autan.guard.policy import GuardPolicy
from autan.guard.rails import GuardRails, OutputWatch, conversation_texts, last_user_turn
from autan.http import errors
from autan.http.auth import Access, Policy
from autan.http.errors import APIError
from autan.http.gate import MAX_BODY_BYTES, Guard, HostNames
from autan.server import embeddings, messages, moderation, openai_responses
from autan.server.embeddings import Embedders
from autan.server.generation import ClientGone, Generation, until_disconnected
from autan.server.metrics import CountAndLog, Metrics
from autan.server.responses import events, full_response, observe, refusal, sse
from autan.server.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    DetokenizeRequest,
    FIMCompletionRequest,
    SamplingFields,
    TokenizeRequest,
)
from autan.server.served import ServedModel
from autan.store.db import Store

STATIC = Path(__file__).parent.parent / "web" / "static"


@dataclass(frozen=True)
class Limits:
    max_waiting: int = 256  # queued requests per model before 429
    max_body_bytes: int = MAX_BODY_BYTES
    allowed_hosts: Sequence[str] = ()  # names the Host header may carry besides the machine's own


def create_app(
    models: Sequence[ServedModel],
    *,
    policy: Policy | None = None,
    limits: Limits | None = None,
    log_prompts: bool = False,
    store: Store | None = None,
    guard: GuardPolicy | None = None,
    embedders: Embedders | None = None,
    finetune_memory: int | None = None,
) -> FastAPI:
    """The API for `models`; with a `store`, also the chat app at `/` and its `/api` routes; with a
    `guard` policy, rails around every generation (a request may also ask for them); `embedders`
    answer /v1/embeddings (by default the packaged encoder, loaded on first use)."""
    policy, limits = policy or Policy(), limits or Limits()
    embedders = embedders or Embedders()
    served = {m.id: m for m in models}
    metrics = Metrics(
        lambda: {n: m.engine.engine for n, m in list(served.items()) if m.adapter is None and m.owner is None}
    )
    rails = GuardRails(guard, served, metrics)
    access = Access(policy, store.accounts if store is not None else None)
    app = FastAPI(
        title="autan",
        version=__version__,
        description="Mistral-compatible API for models run locally.",
        docs_url=None,
        redoc_url=None,
    )
    app.state.access = access
    errors.install(app)
    app.add_middleware(Guard, hosts=HostNames(limits.allowed_hosts), max_body_bytes=limits.max_body_bytes)
    app.add_middleware(CountAndLog, metrics=metrics)

    @app.get("/health")
    async def health() -> JSONResponse:
        """200 while every model's engine runs; 503 naming those that stopped."""
        down = {name: str(m.engine.failure or "closed") for name, m in list(served.items()) if not m.engine.alive}
        body = {"status": "unavailable" if down else "ok", "models": list(served), "unavailable": down}
        return JSONResponse(body, 503 if down else 200)

    @app.get("/metrics", dependencies=[Depends(access.metrics)])
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        """Swagger UI from the server's own files (the chat app's build carries them): no CDN."""
        page = STATIC / "docs" / "index.html"
        if not page.is_file():
            return HTMLResponse("<p>The API docs are built with the chat app: run <code>make setup</code>.</p>")
        return HTMLResponse(page.read_text())

    app.include_router(_v1(served, access, metrics, limits, log_prompts, rails, embedders, store))
    app.include_router(_tokens(served, access))
    if store is not None:
        from autan.web.routes import install

        _fine_tuning(app, store, served, access, finetune_memory)  # before the chat app's files, served at /
        install(app, store, access)
    return app


def _fine_tuning(
    app: FastAPI, store: Store, served: dict[str, ServedModel], access: Access, memory: int | None
) -> None:
    """The files and fine-tuning jobs API, and its worker (from startup to shutdown); each adapter
    a job makes is served beside its base model."""
    from autan.batches import Batches
    from autan.finetune.jobs import Jobs
    from autan.server import batches, finetuning

    jobs = Jobs(store, memory)
    app.state.jobs = jobs
    app.include_router(finetuning.router(jobs, served, access))
    batches.install(app, Batches(store), access, served)

    def ready(base: str, name: str, path: Any, owner: str | None) -> None:
        model = served[base].with_adapter(name, path, owner)
        served[model.id] = model

    app.router.on_startup.append(lambda: jobs.start(served, ready))
    app.router.on_shutdown.append(jobs.close)


def _find(served: dict[str, ServedModel], name: str, request: Request) -> ServedModel:
    """The model `name`, if the caller (`Access.v1` has put it on the request) may use it; another
    account's fine-tune is not there for them, and is not named."""
    who = request.state.principal
    model = served.get(name)
    if model is None or not model.visible_to(who):
        shown = name if len(name) <= 100 else name[:100] + "..."
        available = ", ".join(n for n, m in list(served.items()) if m.visible_to(who))
        raise APIError(404, f"model '{shown}' is not served here; available: {available}")
    return model


def _tokens(served: dict[str, ServedModel], access: Access) -> APIRouter:
    """vLLM's `/tokenize` and `/detokenize` (llama-server has them too): a client that scores
    texts (`autan eval --base-url`) splits them as the model does."""
    router = APIRouter(dependencies=[Depends(access.v1)])

    def model_named(name: str | None, request: Request) -> ServedModel:
        """The model named, or without a name (as lm-evaluation-harness asks) the first served."""
        if name is None:
            if not served:
                raise APIError(404, "no model is served here")
            name = next(iter(served))
        return _find(served, name, request)

    @router.post("/tokenize")
    async def tokenize(body: TokenizeRequest, request: Request) -> dict:
        """The text's ids; with `add_special_tokens` (the default) a BOS first where the model's
        tokenizer puts one before a text."""
        model = model_named(body.model, request)
        tokenizer = model.tokenizer
        add_bos = body.add_special_tokens and tokenizer.add_bos
        tokens = await asyncio.to_thread(tokenizer.encode, body.text, add_bos)
        return {"tokens": tokens, "count": len(tokens), "max_model_len": model.context}

    @router.get("/tokenizer_info")
    async def tokenizer_info(request: Request, model: str | None = None) -> dict:
        """The tokenizer's settings as vLLM's `/tokenizer_info` gives them (lm-evaluation-harness's
        remote tokenizer reads them)."""
        found = model_named(model, request)
        return tokenizer_card(found.tokenizer, found.id, found.context)

    @router.post("/detokenize")
    async def detokenize(body: DetokenizeRequest, request: Request) -> dict:
        model = model_named(body.model, request)
        vocab = model.engine.engine.model.config.vocab_size
        bad = next((t for t in body.tokens if t >= vocab), None)
        if bad is not None:
            raise APIError(400, f"token id {bad} is outside the vocabulary 0..{vocab - 1}", param="tokens")
        try:
            return {"prompt": await asyncio.to_thread(model.tokenizer.decode, body.tokens)}
        except (ValueError, KeyError, IndexError, TypeError, OverflowError) as e:  # ids its tokenizer lacks
            message = f"these tokens cannot be decoded by {model.id}'s tokenizer: {e}"
            raise APIError(400, message, param="tokens") from None

    return router


def _v1(
    served: dict[str, ServedModel],
    access: Access,
    metrics: Metrics,
    limits: Limits,
    log_prompts: bool,
    rails: GuardRails,
    embedders: Embedders,
    store: Store | None,
) -> APIRouter:
    router = APIRouter(prefix="/v1", dependencies=[Depends(access.v1)])
    router.include_router(moderation.router(rails))
    router.include_router(embeddings.router(embedders))
    find = lambda name, request: _find(served, name, request)  # noqa: E731
    router.include_router(messages.router(find, rails, metrics, limits.max_waiting, tool_grammar))
    router.include_router(openai_responses.router(find, rails, metrics, limits.max_waiting, tool_grammar, store))

    def model_named(name: str, request: Request) -> ServedModel:
        return _find(served, name, request)

    async def answer(
        request: Request,
        generation: Generation,
        body: SamplingFields,
        question: str,
        read: list[str] | None = None,
        **start: Any,
    ) -> Response:
        """Run the input rail over `read` (the prompt's texts; `question` alone if None), start
        `generation`, then stream it or answer it whole through the output rail (which reads the
        answer after `question`); the generation is closed on every way out."""
        streaming = False
        policy = rails.for_request(body.guardrails)
        options = body.stream_options
        include_usage = bool(options and options.include_usage)
        try:
            texts = [t for t in (read if read is not None else [question]) if t.strip()]
            if policy is not None and policy.input and texts:
                verdict = await rails.check(policy, generation.served, "input", texts)
                if verdict is not None:
                    choices = generation.batch * body.n
                    shape = refusal(generation, verdict, policy.refusal, choices, body.stream, include_usage)
                    return sse(shape) if body.stream else JSONResponse(shape)
            watch = None
            if policy is not None and policy.output:
                watch = OutputWatch(rails, policy, generation.served, question, generation.batch * body.n)
            await until_disconnected(request, generation.start(body, max_waiting=limits.max_waiting, **start))
            if body.stream:
                streaming = True  # from here the stream owns the generation and closes it
                continuous = bool(options and options.continuous_usage_stats)
                return sse(
                    events(
                        generation,
                        metrics,
                        include_usage=include_usage,
                        continuous_usage=continuous,
                        watch=watch,
                    )
                )
            done = await until_disconnected(request, generation.drain())
            observe(metrics, generation, done)
            verdicts = {}
            if watch is not None:
                for i, completion in enumerate(done):
                    watch.feed(i, completion.text, completion.usage.completion_tokens)
                    if (verdict := await watch.finish(i)) is not None:
                        verdicts[i] = verdict
            return JSONResponse(full_response(generation, done, verdicts, policy.refusal if policy else ""))
        except ClientGone:
            return Response(status_code=499)  # nobody reads this; the work is already aborted
        finally:
            if not streaming:
                generation.close()

    @router.get("/models")
    async def list_models(request: Request) -> dict:
        who = request.state.principal
        cards = [m.card() for m in list(served.values()) if m.visible_to(who)]
        return {"object": "list", "data": [*cards, *embedders.cards()]}

    @router.get("/models/{model_id}")
    async def get_model(model_id: str, request: Request) -> dict:
        return model_named(model_id, request).card()

    @router.post("/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
        model = model_named(body.model, request)
        messages = body.engine_messages()
        tools = body.tools if body.tool_choice != "none" else None
        if log_prompts:
            errors.log.info("chat prompt for %s: %r", body.model, messages)
        schema: Any = False
        if body.response_format is not None and body.response_format.type != "text":
            schema = body.response_format.schema_or_none()
        grammar = tool_grammar(model, tools, body.tool_choice, body.parallel_tool_calls)
        if grammar is not None and schema is not False:
            message = f"tool_choice {body.tool_choice!r} asks for a function call, response_format for JSON: choose one"
            raise APIError(400, message, param="tool_choice")
        generation = Generation.new(model, "chatcmpl", "chat")
        generation.tools = bool(tools)
        return await answer(
            request,
            generation,
            body,
            last_user_turn(messages),
            conversation_texts([m.to_engine() for m in body.messages]),  # not our safe_prompt
            encode=lambda: model.tokenizer.encode_chat(messages, tools=tools),
            text_bytes=sum(len(m["content"].encode()) for m in messages),
            schema=schema,
            grammar=grammar,
            logprobs=(body.top_logprobs or 0) if body.logprobs else None,
        )

    @router.post("/completions")
    async def completions(body: CompletionRequest, request: Request) -> Response:
        """One prompt or a list (texts or token ids); a text starts with BOS where the model's
        tokenizer says so, as the model was trained."""
        model = model_named(body.model, request)
        prompts, tokenizer = body.prompts(), model.tokenizer
        if log_prompts:
            errors.log.info("completion prompts for %s: %r", body.model, prompts)
        generation = Generation.new(model, "cmpl", "text")
        generation.batch = len(prompts)
        batch: list[Any] = []
        for prompt in prompts:
            if isinstance(prompt, list):
                batch.append(prompt)
            elif body.suffix:
                batch.append(lambda prompt=prompt: _encode_fim(model, prompt, body.suffix or ""))
            else:
                batch.append(lambda prompt=prompt: tokenizer.encode(prompt, add_bos=tokenizer.add_bos))
        texts = [p if isinstance(p, str) else _decoded(model, p) for p in prompts]  # the rails read token ids too
        if body.echo:
            generation.echoes = texts
        size = max((len(p.encode()) for p in prompts if isinstance(p, str)), default=0)
        return await answer(
            request, generation, body, "\n\n".join(texts), [*texts, body.suffix or ""], logprobs=body.logprobs,
            prompt_logprobs=body.scores_prompt, batch=batch, text_bytes=size + len((body.suffix or "").encode()),
        )  # fmt: skip

    @router.post("/fim/completions")
    async def fim_completions(body: FIMCompletionRequest, request: Request) -> Response:
        model = model_named(body.model, request)
        if log_prompts:
            errors.log.info("fim prompt for %s: %r / %r", body.model, body.prompt, body.suffix)
        generation = Generation.new(model, "cmpl", "chat")
        size = len(body.prompt.encode()) + len((body.suffix or "").encode())
        encode = lambda: _encode_fim(model, body.prompt, body.suffix or "")  # noqa: E731
        read = [body.prompt, body.suffix or ""]
        return await answer(request, generation, body, body.prompt, read, encode=encode, text_bytes=size)

    return router


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


def tokenizer_card(tokenizer: Any, model_id: str, context: int) -> dict:
    """What vLLM's `/tokenizer_info` says of a tokenizer: its special tokens' text, whether a text
    starts with BOS, the chat template (Hugging Face's; Mistral's tokenizers have none)."""
    text = getattr(getattr(tokenizer, "tokenizer", None), "id_to_token", None)

    def token(token_id: int | None) -> str | None:
        if token_id is None:
            return None
        return text(token_id) if text is not None else tokenizer.raw.id_to_piece(token_id)

    template = getattr(tokenizer, "template", None)
    return {
        "model": model_id,
        "tokenizer_class": type(tokenizer).__name__,
        "bos_token": token(tokenizer.bos_id),
        "eos_token": token(getattr(tokenizer, "eos_id", None) or min(tokenizer.eos_ids, default=None)),
        "pad_token": None,
        "add_bos_token": tokenizer.add_bos,
        "add_eos_token": False,
        "chat_template": getattr(template, "source", None),
        "model_max_length": context,
        "vocab_size": tokenizer.vocab_size,
    }


def _decoded(model: ServedModel, ids: list[int]) -> str:
    """Token ids as text for the rails; ids the model does not have are refused later, at start."""
    try:
        return model.tokenizer.decode(ids)
    except (ValueError, KeyError, IndexError, TypeError, OverflowError):
        return ""


def _encode_fim(model: ServedModel, prompt: str, suffix: str) -> list[int]:
    if not model.fim:
        raise APIError(400, f"model '{model.id}' does not support fill-in-the-middle (its tokenizer has no FIM tokens)")
    return model.tokenizer.encode_fim(prompt, suffix)  # type: ignore[attr-defined]
