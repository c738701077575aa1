"""The HTTP API: Mistral's routes and shapes (which OpenAI's clients also speak), on the engine.

    POST /v1/chat/completions   POST /v1/completions   POST /v1/fim/completions
    POST /v1/moderations        POST /v1/chat/moderations
    GET  /v1/models             GET  /v1/models/{id}   GET  /health   GET /metrics   GET /docs

Generation runs in each model's engine thread; this module only routes. Its handlers, like those
of each API family's module (`messages`, `openai_responses`, `moderation`, `embeddings`,
`finetuning`, `batches`), are module-level functions on a router that read the app's `Server`
(`state`); `create_app` builds that and includes the routers. Who may call what is
`autan.http.auth`, what every request passes first `autan.http.gate`, one request's work
`generation`, the bodies it answers with `responses`, the guardrails around it `autan.guard.rails`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from autan import __version__
from autan.batches import Batches
from autan.finetune.jobs import Jobs
from autan.guard.policy import GuardPolicy
from autan.guard.rails import GuardRails, OutputWatch, conversation_texts, last_user_turn
from autan.http import errors
from autan.http.auth import Access, Policy, metrics_reader, v1_caller
from autan.http.errors import APIError
from autan.http.gate import Guard, HostNames
from autan.server import batches, embeddings, finetuning, messages, moderation, openai_responses
from autan.server.embeddings import Embedders
from autan.server.generation import ClientGone, Generation, tool_grammar, until_disconnected
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
from autan.server.state import Limits, Server, ServerDep, find
from autan.store.db import Store
from autan.web import routes as web

STATIC = Path(__file__).parent.parent / "web" / "static"

router = APIRouter()  # the server's own: its health, its metrics, its docs
v1 = APIRouter(prefix="/v1", dependencies=[Depends(v1_caller)])
v1.include_router(moderation.router)
v1.include_router(embeddings.router)
v1.include_router(messages.router)
v1.include_router(openai_responses.router)
token_routes = APIRouter(dependencies=[Depends(v1_caller)])


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
    served = {m.id: m for m in models}
    metrics = Metrics(
        lambda: {n: m.engine.engine for n, m in list(served.items()) if m.adapter is None and m.owner is None}
    )
    s = Server(
        served=served,
        access=Access(policy or Policy(), store.accounts if store is not None else None),
        metrics=metrics,
        limits=limits or Limits(),
        rails=GuardRails(guard, served, metrics),
        embedders=embedders or Embedders(),
        log_prompts=log_prompts,
        store=store,
        jobs=Jobs(store, finetune_memory) if store is not None else None,
        batches=Batches(store) if store is not None else None,
    )
    app = FastAPI(
        title="autan",
        version=__version__,
        description="Mistral-compatible API for models run locally.",
        docs_url=None,
        redoc_url=None,
    )
    app.state.server, app.state.access = s, s.access
    errors.install(app)
    app.add_middleware(Guard, hosts=HostNames(s.limits.allowed_hosts), max_body_bytes=s.limits.max_body_bytes)
    app.add_middleware(CountAndLog, metrics=metrics)
    app.include_router(router)
    app.include_router(v1)
    app.include_router(token_routes)
    if store is not None:  # the files, fine-tuning and batches APIs before the chat app's files, served at /
        app.include_router(finetuning.router)
        app.include_router(batches.router)
        finetuning.install_worker(app, s)
        batches.install_runner(app, s)
        web.install(app)
    return app


# the server's own ------------------------------------------------------------------------------


@router.get("/health")
async def health(s: ServerDep) -> JSONResponse:
    """200 while every model's engine runs; 503 naming those that stopped."""
    down = {name: str(m.engine.failure or "closed") for name, m in list(s.served.items()) if not m.engine.alive}
    body = {"status": "unavailable" if down else "ok", "models": list(s.served), "unavailable": down}
    return JSONResponse(body, 503 if down else 200)


@router.get("/metrics", dependencies=[Depends(metrics_reader)])
async def prometheus(s: ServerDep) -> Response:
    return Response(generate_latest(s.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/docs", include_in_schema=False)
async def docs() -> HTMLResponse:
    """Swagger UI from the server's own files (the chat app's build carries them): no CDN."""
    page = STATIC / "docs" / "index.html"
    if not page.is_file():
        return HTMLResponse("<p>The API docs are built with the chat app: run <code>make setup</code>.</p>")
    return HTMLResponse(page.read_text())


# tokens ----------------------------------------------------------------------------------------
# vLLM's `/tokenize` and `/detokenize` (llama-server has them too): a client that scores texts
# (`autan eval --base-url`) splits them as the model does


def model_named(s: Server, name: str | None, request: Request) -> ServedModel:
    """The model named, or without a name (as lm-evaluation-harness asks) the first served."""
    if name is None:
        if not s.served:
            raise APIError(404, "no model is served here")
        name = next(iter(s.served))
    return find(s, name, request)


@token_routes.post("/tokenize")
async def tokenize(body: TokenizeRequest, request: Request, s: ServerDep) -> dict:
    """The text's ids; with `add_special_tokens` (the default) a BOS first where the model's
    tokenizer puts one before a text."""
    model = model_named(s, body.model, request)
    tokenizer = model.tokenizer
    add_bos = body.add_special_tokens and tokenizer.add_bos
    tokens = await asyncio.to_thread(tokenizer.encode, body.text, add_bos)
    return {"tokens": tokens, "count": len(tokens), "max_model_len": model.context}


@token_routes.get("/tokenizer_info")
async def tokenizer_info(request: Request, s: ServerDep, model: str | None = None) -> dict:
    """The tokenizer's settings as vLLM's `/tokenizer_info` gives them (lm-evaluation-harness's
    remote tokenizer reads them)."""
    found = model_named(s, model, request)
    return tokenizer_card(found.tokenizer, found.id, found.context)


@token_routes.post("/detokenize")
async def detokenize(body: DetokenizeRequest, request: Request, s: ServerDep) -> dict:
    model = model_named(s, body.model, request)
    vocab = model.engine.engine.model.config.vocab_size
    bad = next((t for t in body.tokens if t >= vocab), None)
    if bad is not None:
        raise APIError(400, f"token id {bad} is outside the vocabulary 0..{vocab - 1}", param="tokens")
    try:
        return {"prompt": await asyncio.to_thread(model.tokenizer.decode, body.tokens)}
    except (ValueError, KeyError, IndexError, TypeError, OverflowError) as e:  # ids its tokenizer lacks
        message = f"these tokens cannot be decoded by {model.id}'s tokenizer: {e}"
        raise APIError(400, message, param="tokens") from None


# /v1 -------------------------------------------------------------------------------------------


async def answer(
    s: Server,
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
    rails, metrics = s.rails, s.metrics
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
        await until_disconnected(request, generation.start(body, max_waiting=s.limits.max_waiting, **start))
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


@v1.get("/models")
async def list_models(request: Request, s: ServerDep) -> dict:
    who = request.state.principal
    cards = [m.card() for m in list(s.served.values()) if m.visible_to(who)]
    return {"object": "list", "data": [*cards, *s.embedders.cards()]}


@v1.get("/models/{model_id}")
async def get_model(model_id: str, request: Request, s: ServerDep) -> dict:
    return find(s, model_id, request).card()


@v1.post("/chat/completions")
async def chat_completions(body: ChatCompletionRequest, request: Request, s: ServerDep) -> Response:
    model = find(s, body.model, request)
    messages = body.engine_messages()
    tools = body.tools if body.tool_choice != "none" else None
    if s.log_prompts:
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
        s,
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


@v1.post("/completions")
async def completions(body: CompletionRequest, request: Request, s: ServerDep) -> Response:
    """One prompt or a list (texts or token ids); a text starts with BOS where the model's
    tokenizer says so, as the model was trained."""
    model = find(s, body.model, request)
    prompts, tokenizer = body.prompts(), model.tokenizer
    if s.log_prompts:
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
        s, request, generation, body, "\n\n".join(texts), [*texts, body.suffix or ""], logprobs=body.logprobs,
        prompt_logprobs=body.scores_prompt, batch=batch, text_bytes=size + len((body.suffix or "").encode()),
    )  # fmt: skip


@v1.post("/fim/completions")
async def fim_completions(body: FIMCompletionRequest, request: Request, s: ServerDep) -> Response:
    model = find(s, body.model, request)
    if s.log_prompts:
        errors.log.info("fim prompt for %s: %r / %r", body.model, body.prompt, body.suffix)
    generation = Generation.new(model, "cmpl", "chat")
    size = len(body.prompt.encode()) + len((body.suffix or "").encode())
    encode = lambda: _encode_fim(model, body.prompt, body.suffix or "")  # noqa: E731
    read = [body.prompt, body.suffix or ""]
    return await answer(s, request, generation, body, body.prompt, read, encode=encode, text_bytes=size)


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
