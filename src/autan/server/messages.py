"""Anthropic's Messages API: `POST /v1/messages` (whole or streamed, with tools and a system
prompt) and `POST /v1/messages/count_tokens`, as the `anthropic` SDK and the tools built on it
call them (llama.cpp, Ollama, vLLM and LM Studio answer them too).

A request is turned into a chat request of autan's own (text, tool_use and tool_result blocks
into messages and tool calls; `tool_choice` auto/any/tool/none into OpenAI's), run on the same
engine with the same rails, and its answer turned back into content blocks. Errors come in
Anthropic's envelope: {"type": "error", "error": {"type": ..., "message": ...}}.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from autan.engine.output import Completion
from autan.http.errors import ANTHROPIC_TYPES, APIError
from autan.server import guarded
from autan.server.generation import ClientGone, Generation, tool_grammar, until_disconnected
from autan.server.metrics import Metrics
from autan.server.responses import observe, sse
from autan.server.schemas import ChatCompletionRequest, Text
from autan.server.state import ServerDep, find

STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}

router = APIRouter()  # under /v1, behind `v1_caller` (app.py)


class Block(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: Text | None = None
    id: str | None = None  # tool_use
    name: str | None = None
    input: dict[str, Any] | None = None
    tool_use_id: str | None = None  # tool_result
    content: Text | list[dict[str, Any]] | None = None
    is_error: bool = False


class Turn(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["user", "assistant"]
    content: Text | Annotated[list[Block], Field(max_length=10_000)]


class AnthropicTool(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: Annotated[str, Field(min_length=1, max_length=128)]
    description: str | None = None
    input_schema: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})


class CountRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: Annotated[str, Field(max_length=256)]
    messages: Annotated[list[Turn], Field(min_length=1)]
    system: Text | list[Block] | None = None
    tools: list[AnthropicTool] | None = None
    tool_choice: dict[str, Any] | None = None

    def chat(self, **sampling: Any) -> ChatCompletionRequest:
        """The same request as a chat completion (autan's and OpenAI's shape)."""
        messages: list[dict[str, Any]] = []
        if self.system:
            messages.append({"role": "system", "content": _text(self.system)})
        for turn in self.messages:
            messages += _messages(turn)
        tools = [{"type": "function", "function": {"name": t.name, "description": t.description or "",
                  "parameters": t.input_schema}} for t in self.tools or []]  # fmt: skip
        choice = self.tool_choice or {"type": "auto"}
        kind = choice.get("type")
        mapped: Any = {"auto": "auto", "any": "required", "none": "none"}.get(kind)
        if kind == "tool":
            mapped = {"type": "function", "function": {"name": choice.get("name")}}
        elif mapped is None:
            raise APIError(400, f"tool_choice type {kind!r} is not one of auto, any, tool, none", param="tool_choice")
        return guarded.chat_request({
            "model": self.model, "messages": messages, "tools": tools or None, "tool_choice": mapped if tools else None,
            "parallel_tool_calls": not choice.get("disable_parallel_tool_use", False), **sampling,
        })  # fmt: skip


class MessagesRequest(CountRequest):
    max_tokens: Annotated[int, Field(ge=1, le=2**31 - 1)]
    stop_sequences: list[str] | None = None
    temperature: Annotated[float, Field(ge=0, le=1)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    top_k: Annotated[int, Field(ge=0)] | None = None
    stream: bool = False

    def sampling(self) -> dict[str, Any]:
        fields = {"max_tokens": self.max_tokens, "stop": self.stop_sequences, "temperature": self.temperature,
                  "top_p": self.top_p, "stream": self.stream}  # fmt: skip
        return {k: v for k, v in fields.items() if v is not None}


def _arguments(text: str) -> Any:
    """A call's arguments as an object; text that is not a JSON object is kept under "input"."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return {"input": text}
    return value if isinstance(value, dict) else {"input": value}


def _text(content: str | list[Block] | list[dict] | None) -> str:
    if isinstance(content, str) or content is None:
        return content or ""
    parts = [b.text if isinstance(b, Block) else b.get("text") for b in content]
    return "\n".join(p for p in parts if p)


def _messages(turn: Turn) -> list[dict[str, Any]]:
    """One Anthropic turn as chat messages: tool results become tool messages, tool uses calls."""
    if isinstance(turn.content, str):
        return [{"role": turn.role, "content": turn.content}]
    out: list[dict[str, Any]] = []
    texts, calls = [], []
    for block in turn.content:
        if block.type == "text":
            texts.append(block.text or "")
        elif block.type == "tool_use" and turn.role == "assistant":
            arguments = json.dumps(block.input or {}, ensure_ascii=False)
            function = {"name": block.name, "arguments": arguments}
            calls.append({"id": block.id, "type": "function", "function": function})
        elif block.type == "tool_result" and turn.role == "user":
            parts = block.content
            if isinstance(parts, list):  # text blocks; anything else in a tool's result is refused by name
                if bad := next((b for b in parts if not isinstance(b, dict) or b.get("type") != "text"), None):
                    kind = bad.get("type") if isinstance(bad, dict) else type(bad).__name__
                    raise APIError(400, f"a tool_result holds a {kind!r} block: text only", param="messages")
                parts = "\n".join(str(b.get("text", "")) for b in parts)
            result = _text(parts)
            out.append({"role": "tool", "tool_call_id": block.tool_use_id, "content": result})
        elif block.type in ("image", "document"):
            article = "an" if block.type[0] in "aeiou" else "a"
            raise APIError(400, f"{article} {block.type} block: this server's models read text only", param="messages")
        else:
            raise APIError(400, f"a {block.type!r} block cannot be in a {turn.role} turn", param="messages")
    if texts or calls:
        message: dict[str, Any] = {"role": turn.role, "content": "\n".join(texts)}
        if calls:
            message["tool_calls"] = calls
        out.append(message)
    return out


@router.post("/messages/count_tokens")
async def count_tokens(body: CountRequest, request: Request, s: ServerDep) -> dict:
    model = find(s, body.model, request)
    chat = body.chat()
    tools = chat.tools if chat.tool_choice != "none" else None
    generation = Generation.new(model, "msg", "chat")
    ids = await generation_prompt(generation, chat, tools)
    return {"input_tokens": len(ids)}


@router.post("/messages")
async def messages(body: MessagesRequest, request: Request, s: ServerDep) -> Response:
    model = find(s, body.model, request)
    chat = body.chat(**body.sampling())
    tools = chat.tools if chat.tool_choice != "none" else None
    grammar = tool_grammar(model, tools, chat.tool_choice, chat.parallel_tool_calls)
    generation = Generation.new(model, "msg", "chat")
    generation.tools = bool(tools)
    streaming = False
    try:
        run = await guarded.start(request, s.rails, generation, chat, tools, s.limits.max_waiting, grammar=grammar)
        if run.refused is not None:
            return _answer(body, _refused(generation, run.policy.refusal, run.refused.body()))
        if body.stream and not run.checks_output:
            streaming = True  # the stream owns the generation from here, and closes it
            return sse(events(generation, s.metrics, body.stop_sequences or []))
        done = (await until_disconnected(request, generation.drain()))[0]
        observe(s.metrics, generation, [done])
        message = _message(generation, done, body.stop_sequences or [])
        if (verdict := await guarded.output_verdict(s.rails, run, done)) is not None:
            message = _refused(generation, run.policy.refusal, verdict.body(), done.usage.completion_tokens)
        return _answer(body, message)
    except ClientGone:
        return Response(status_code=499)
    finally:
        if not streaming:
            generation.close()


async def generation_prompt(generation: Generation, chat: ChatCompletionRequest, tools: Any) -> list[int]:
    from autan.server.generation import _run

    served = generation.served
    if getattr(served.tokenizer, "template", True) is None:
        raise APIError(400, f"model '{served.id}' has no chat template: it takes no messages")
    messages = chat.engine_messages()
    return await _run(lambda: served.tokenizer.encode_chat(messages, tools=tools))


def _answer(body: MessagesRequest, message: dict) -> Response:
    if not body.stream:
        return JSONResponse(message)
    return sse(_replayed(message))


def _event(kind: str, **data: Any) -> str:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **data}, ensure_ascii=False)}\n\n"


def _stop(generation: Generation, done: Completion, stops: list[str], calls: bool) -> tuple[str, str | None]:
    """Anthropic's stop reason, and the stop sequence that ended the answer (found in what the
    last tokens spell past the text returned, which ends before it)."""
    if calls:
        return "tool_use", None
    tokenizer = generation.served.tokenizer
    if done.finish_reason == "stop" and stops and done.token_ids and done.token_ids[-1] not in tokenizer.eos_ids:
        spelled = tokenizer.decode(done.token_ids)
        tail = spelled[spelled.rfind(done.text[-20:]) + len(done.text[-20:]) :] if done.text else spelled
        found = min((s for s in stops if s in tail), key=tail.find, default=None)
        if found is not None:
            return "stop_sequence", found
    return STOP_REASONS.get(done.finish_reason, "end_turn"), None


def _message(generation: Generation, done: Completion, stops: list[str]) -> dict:
    parsed = generation.tool_calls(done)
    text, calls = (parsed[0], parsed[1]) if parsed is not None else (done.text, [])
    content: list[dict] = [{"type": "text", "text": text}] if text or not calls else []
    content += [{"type": "tool_use", "id": c["id"].replace("call_", "toolu_"), "name": c["function"]["name"],
                 "input": _arguments(c["function"]["arguments"])} for c in calls]  # fmt: skip
    reason, sequence = _stop(generation, done, stops, bool(calls))
    return {"id": generation.id.replace("msg-", "msg_"), "type": "message", "role": "assistant",
            "model": generation.served.id, "content": content, "stop_reason": reason, "stop_sequence": sequence,
            "usage": _usage(generation, done)}  # fmt: skip


def _usage(generation: Generation, done: Completion | None) -> dict:
    cached = done.usage.cached_tokens if done is not None else 0
    generated = done.usage.completion_tokens if done is not None else 0
    return {"input_tokens": len(generation.prompt) - cached, "output_tokens": generated,
            "cache_read_input_tokens": cached, "cache_creation_input_tokens": 0}  # fmt: skip


def _refused(generation: Generation, text: str, why: dict, output_tokens: int = 0) -> dict:
    """An answer a rail held back: the policy's refusal, stop reason `refusal` (Anthropic's)."""
    return {"id": generation.id.replace("msg-", "msg_"), "type": "message", "role": "assistant",
            "model": generation.served.id, "content": [{"type": "text", "text": text}], "stop_reason": "refusal",
            "stop_sequence": None, "moderation": why,
            "usage": {"input_tokens": len(generation.prompt), "output_tokens": output_tokens}}  # fmt: skip


async def _replayed(message: dict) -> AsyncIterator[str]:
    """A whole message as the events of a stream."""
    start = {**message, "content": [], "stop_reason": None, "stop_sequence": None,
             "usage": {**message["usage"], "output_tokens": 0}}  # fmt: skip
    yield _event("message_start", message=start)
    for i, block in enumerate(message["content"]):
        if block["type"] == "text":
            yield _event("content_block_start", index=i, content_block={"type": "text", "text": ""})
            yield _event("content_block_delta", index=i, delta={"type": "text_delta", "text": block["text"]})
        else:
            for event in _tool_use_events(i, block):
                yield event
        yield _event("content_block_stop", index=i)
    delta = {"stop_reason": message["stop_reason"], "stop_sequence": message["stop_sequence"]}
    yield _event("message_delta", delta=delta, usage={"output_tokens": message["usage"]["output_tokens"]})
    yield _event("message_stop")


def _tool_use_events(index: int, block: dict) -> list[str]:
    start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
    arguments = json.dumps(block["input"], ensure_ascii=False)
    pieces = [arguments[at : at + 24] for at in range(0, len(arguments), 24)]
    return [_event("content_block_start", index=index, content_block=start),
            *(_event("content_block_delta", index=index, delta={"type": "input_json_delta", "partial_json": p})
              for p in pieces)]  # fmt: skip


async def events(generation: Generation, metrics: Metrics, stops: list[str]) -> AsyncIterator[str]:
    """The answer's text as it comes (one text block), then its tool_use blocks, as Anthropic
    streams them; the generation is closed on every way out."""
    calls = watches[0] if (watches := generation.call_watches()) else None
    base = {"id": generation.id.replace("msg-", "msg_"), "type": "message", "role": "assistant",
            "model": generation.served.id, "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": _usage(generation, None)}  # fmt: skip
    open_text, index = False, 0
    try:
        yield _event("message_start", message=base)
        done: Completion | None = None
        async for _, event in generation.merged():
            if isinstance(event, BaseException):
                from autan.server.generation import failure

                error = failure(event)
                yield _event(
                    "error", error={"type": ANTHROPIC_TYPES.get(error.status, "api_error"), "message": error.message}
                )
                return
            if isinstance(event, list):
                done = event[0]
                break
            text = calls.feed(event.text, event.token_ids) if calls is not None else event.text
            if text:
                if not open_text:
                    yield _event("content_block_start", index=0, content_block={"type": "text", "text": ""})
                    open_text = True
                yield _event("content_block_delta", index=0, delta={"type": "text_delta", "text": text})
        assert done is not None
        parsed = calls.parsed(done) if calls is not None and calls.held else None
        if parsed is None and calls is not None and (rest := calls.unsent(done.text)):
            if not open_text:
                yield _event("content_block_start", index=0, content_block={"type": "text", "text": ""})
                open_text = True
            yield _event("content_block_delta", index=0, delta={"type": "text_delta", "text": rest})
        if open_text:
            yield _event("content_block_stop", index=0)
            index = 1
        for k, c in enumerate(parsed[1] if parsed else []):
            block = {"id": c["id"].replace("call_", "toolu_"), "name": c["function"]["name"],
                     "input": _arguments(c["function"]["arguments"])}  # fmt: skip
            for e in _tool_use_events(index + k, block):
                yield e
            yield _event("content_block_stop", index=index + k)
        reason, sequence = _stop(generation, done, stops, bool(parsed and parsed[1]))
        yield _event("message_delta", delta={"stop_reason": reason, "stop_sequence": sequence},
                     usage={"output_tokens": done.usage.completion_tokens})  # fmt: skip
        yield _event("message_stop")
        observe(metrics, generation, [done])
    finally:
        generation.close()
