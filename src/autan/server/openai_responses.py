"""OpenAI's Responses API (what its Agents SDK and Codex call): `POST /v1/responses`, whole or
streamed with its typed events; `GET` and `DELETE /v1/responses/{id}` and its input items.

A request becomes a chat request of autan's own: `instructions` the system prompt, `input` (text,
or message, function_call and function_call_output items) the turns, function tools and
`tool_choice` as in chat completions, `text.format` as `response_format`. A response is kept in
the store for its account (unless `store: false`), with the conversation it ends, so that
`previous_response_id` continues it; nobody else can read or continue it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from autan.engine.output import Completion
from autan.http.errors import APIError
from autan.server import guarded
from autan.server.generation import ClientGone, Generation, failure, tool_grammar, until_disconnected
from autan.server.metrics import Metrics
from autan.server.responses import observe, sse
from autan.server.state import ServerDep, find
from autan.store.tables import StoredResponse
from autan.text import clean

MAX_ITEMS = 10_000
MAX_KEPT = 1000  # responses kept per account: a longer history forgets its oldest

router = APIRouter()  # under /v1, behind `v1_caller` (app.py)


class ResponsesRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: Annotated[str, Field(max_length=256)]
    input: Annotated[str, Field(max_length=10_000_000)] | Annotated[list[dict[str, Any]], Field(max_length=MAX_ITEMS)]
    instructions: Annotated[str, Field(max_length=1_000_000)] | None = None
    previous_response_id: Annotated[str, Field(max_length=64)] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool = True
    text: dict[str, Any] | None = None
    max_output_tokens: Annotated[int, Field(ge=1, le=2**31 - 1)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    stream: bool = False
    store: bool = True
    metadata: dict[str, str] | None = None

    def items(self) -> list[dict[str, Any]]:
        return [{"role": "user", "content": self.input}] if isinstance(self.input, str) else list(self.input)


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return clean(content)
    if not isinstance(content, list):
        raise APIError(400, "a message's content must be text or a list of input_text parts", param="input")
    parts = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text"):
            parts.append(clean(str(part.get("text", ""))))
        else:
            raise APIError(400, f"a content part of type {kind!r}: this server's models read text only", param="input")
    return "".join(parts)


def as_messages(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Input items as chat messages: function calls join the assistant turn before them."""
    out: list[dict[str, Any]] = []
    for item in items:
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise APIError(400, f"an input message's role {role!r} is not user, assistant, system or developer")
            out.append(
                {"role": "system" if role == "developer" else role, "content": _content_text(item.get("content"))}
            )
        elif kind == "function_call":
            function = {"name": str(item.get("name")), "arguments": str(item.get("arguments", "{}"))}
            call = {"id": str(item.get("call_id")), "type": "function", "function": function}
            if out and out[-1]["role"] == "assistant":
                out[-1].setdefault("tool_calls", []).append(call)
            else:
                out.append({"role": "assistant", "content": "", "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output", "")
            text = output if isinstance(output, str) else json.dumps(output, ensure_ascii=False)
            out.append({"role": "tool", "tool_call_id": str(item.get("call_id")), "content": clean(text)})
        else:
            raise APIError(400, f"an input item of type {kind!r} is not offered here", param="input")
    return out


def _tools(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    if not tools:
        return None
    out = []
    for tool in tools:
        if tool.get("type") != "function":
            raise APIError(400, f"a tool of type {tool.get('type')!r}: only function tools run here", param="tools")
        function = {"name": tool.get("name"), "description": tool.get("description") or "",
                    "parameters": tool.get("parameters") or {"type": "object"}}  # fmt: skip
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "function", "function": {"name": choice.get("name")}}
    return choice


def _response_format(text: dict[str, Any] | None) -> dict[str, Any] | None:
    form = (text or {}).get("format") or {"type": "text"}
    if not isinstance(form, dict) or form.get("type") not in ("text", "json_object", "json_schema"):
        raise APIError(400, "text.format must be an object of type text, json_object or json_schema", param="text")
    if form.get("type") == "json_schema":
        named = {"name": form.get("name", "response"), "schema": form.get("schema"), "strict": form.get("strict")}
        return {"type": "json_schema", "json_schema": named}
    return {"type": form.get("type", "text")}


def _as_item(i: int, item: dict[str, Any]) -> dict[str, Any]:
    """An input item as the API lists it: a message's text as an input_text part."""
    if item.get("type", "message") != "message":
        return {"id": f"item_{i}", **item}
    content = item.get("content")
    if isinstance(content, str):
        content = [{"type": "input_text", "text": content}]
    return {"id": f"item_{i}", "type": "message", "role": item.get("role"), "status": "completed", "content": content}


class Kept:
    """Responses in the store, each its owner's alone."""

    def __init__(self, store: Any):
        self.store = store

    def find(self, user_id: str | None, response_id: str) -> StoredResponse:
        if self.store is None:
            raise APIError(
                400, "this server keeps no responses (it runs without a database)", param="previous_response_id"
            )
        with self.store.session() as db:
            found = db.get(StoredResponse, response_id)
            if found is None or found.user_id != user_id:
                raise APIError(404, f"no response '{response_id[:64]}'", param="previous_response_id")
            db.expunge(found)
            return found

    def keep(self, user_id: str | None, body: dict, items: list[dict], conversation: list[dict]) -> None:
        """Kept, and past MAX_KEPT of the account's, its oldest forgotten."""
        if self.store is None:
            return
        with self.store.session() as db:
            db.add(StoredResponse(id=body["id"], user_id=user_id, body=body, input_items=items,
                                  conversation=conversation))  # fmt: skip
            mine = sa.select(StoredResponse.id).where(StoredResponse.user_id == user_id)
            old = db.scalars(mine.order_by(StoredResponse.created_at.desc()).offset(MAX_KEPT)).all()
            if old:
                db.execute(sa.delete(StoredResponse).where(StoredResponse.id.in_(old)))

    def delete(self, user_id: str | None, response_id: str) -> None:
        with self.store.session() as db:
            found = db.get(StoredResponse, response_id)
            if found is None or found.user_id != user_id:
                raise APIError(404, f"no response '{response_id[:64]}'")
            db.delete(found)


@router.post("/responses")
async def create(body: ResponsesRequest, request: Request, s: ServerDep) -> Response:
    model = find(s, body.model, request)
    kept = Kept(s.store)
    who = request.state.principal.user_id
    earlier = kept.find(who, body.previous_response_id).conversation if body.previous_response_id else []
    items = body.items()
    turns = [*earlier, *as_messages(items)]
    system = [{"role": "system", "content": clean(body.instructions)}] if body.instructions else []
    fields = {"max_tokens": body.max_output_tokens, "temperature": body.temperature, "top_p": body.top_p}
    tools = _tools(body.tools)
    chat = guarded.chat_request({
        "model": body.model, "messages": [*system, *turns], "tools": tools,
        "tool_choice": _tool_choice(body.tool_choice),
        "parallel_tool_calls": body.parallel_tool_calls, "response_format": _response_format(body.text),
        **{k: v for k, v in fields.items() if v is not None},
    })  # fmt: skip
    offered = chat.tools if chat.tool_choice != "none" else None
    grammar = tool_grammar(model, offered, chat.tool_choice, chat.parallel_tool_calls)
    schema: Any = False
    if chat.response_format is not None and chat.response_format.type != "text":
        schema = chat.response_format.schema_or_none()
    if grammar is not None and schema is not False:
        raise APIError(
            400, "tool_choice asks for a function call, text.format for JSON: choose one", param="tool_choice"
        )
    generation = Generation.new(model, "resp", "chat")
    generation.tools = bool(offered)
    shape = Shape(body, generation)

    def keep(done_body: dict, answer: list[dict]) -> None:
        if body.store:
            kept.keep(who, done_body, items, [*turns, *answer])

    streaming = False
    try:
        constraint = {"grammar": grammar} if grammar is not None else {"schema": schema}
        run = await guarded.start(request, s.rails, generation, chat, offered, s.limits.max_waiting, **constraint)
        if run.refused is not None:
            return shape.answer(shape.refused(run.policy.refusal, run.refused.body()))
        if body.stream and not run.checks_output:
            streaming = True  # the stream owns the generation from here, and closes it
            return sse(shape.events(s.metrics, keep))
        done = (await until_disconnected(request, generation.drain()))[0]
        observe(s.metrics, generation, [done])
        result, answer = shape.response(done)
        if (verdict := await guarded.output_verdict(s.rails, run, done)) is not None:
            result = shape.refused(run.policy.refusal, verdict.body(), done)
            answer = [{"role": "assistant", "content": run.policy.refusal}]  # what was said, to go on from
        keep(result, answer)
        return shape.answer(result)
    except ClientGone:
        return Response(status_code=499)
    finally:
        if not streaming:
            generation.close()


@router.get("/responses/{response_id}")
async def retrieve(response_id: str, request: Request, s: ServerDep) -> dict:
    return Kept(s.store).find(request.state.principal.user_id, response_id).body


@router.get("/responses/{response_id}/input_items")
async def input_items(response_id: str, request: Request, s: ServerDep) -> dict:
    found = Kept(s.store).find(request.state.principal.user_id, response_id)
    data = [_as_item(i, item) for i, item in enumerate(found.input_items)]
    return {"object": "list", "data": data, "first_id": None, "last_id": None, "has_more": False}


@router.delete("/responses/{response_id}")
async def delete(response_id: str, request: Request, s: ServerDep) -> dict:
    if s.store is None:
        raise APIError(404, f"no response '{response_id[:64]}'")
    Kept(s.store).delete(request.state.principal.user_id, response_id)
    return {"id": response_id, "object": "response", "deleted": True}


class Shape:
    """A request's response object, whole or as the events of a stream."""

    def __init__(self, body: ResponsesRequest, generation: Generation):
        self.body, self.generation = body, generation
        self.id = "resp_" + uuid.uuid4().hex
        self.created = int(time.time())

    def base(self, status: str, output: list[dict], usage: dict | None) -> dict:
        b = self.body
        incomplete = {"reason": "max_output_tokens"} if status == "incomplete" else None
        return {
            "id": self.id, "object": "response", "created_at": self.created, "status": status, "error": None,
            "incomplete_details": incomplete, "instructions": b.instructions, "max_output_tokens": b.max_output_tokens,
            "model": self.generation.served.id, "output": output, "parallel_tool_calls": b.parallel_tool_calls,
            "previous_response_id": b.previous_response_id, "temperature": b.temperature, "top_p": b.top_p,
            "tool_choice": b.tool_choice or "auto", "tools": b.tools or [],
            "text": b.text or {"format": {"type": "text"}},
            "store": b.store, "metadata": b.metadata or {}, "usage": usage,
        }  # fmt: skip

    def usage(self, done: Completion | None) -> dict:
        prompt = len(self.generation.prompt)
        generated = done.usage.completion_tokens if done is not None else 0
        cached = done.usage.cached_tokens if done is not None else 0
        return {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": cached},
                "output_tokens": generated, "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": prompt + generated}  # fmt: skip

    def items(self, text: str, calls: list[dict]) -> tuple[list[dict], list[dict]]:
        """(output items, the assistant's turn as chat messages, to continue from)."""
        output: list[dict] = []
        if text or not calls:
            content = [{"type": "output_text", "text": text, "annotations": []}]
            output.append({"type": "message", "id": "msg_" + uuid.uuid4().hex, "status": "completed",
                           "role": "assistant", "content": content})  # fmt: skip
        for c in calls:
            function = c["function"]
            output.append({"type": "function_call", "id": "fc_" + uuid.uuid4().hex, "call_id": c["id"],
                           "name": function["name"], "arguments": function["arguments"],
                           "status": "completed"})  # fmt: skip
        turn: dict[str, Any] = {"role": "assistant", "content": text}
        if calls:
            turn["tool_calls"] = calls
        return output, [turn]

    def response(self, done: Completion) -> tuple[dict, list[dict]]:
        parsed = self.generation.tool_calls(done)
        text, calls = (parsed[0], parsed[1]) if parsed is not None else (done.text, [])
        output, turn = self.items(text, calls)
        status = "incomplete" if done.finish_reason == "length" and not calls else "completed"
        return self.base(status, output, self.usage(done)), turn

    def refused(self, text: str, why: dict, done: Completion | None = None) -> dict:
        output, _ = self.items(text, [])
        return {**self.base("completed", output, self.usage(done)), "moderation": why}

    def answer(self, result: dict) -> Response:
        return sse(self.replayed(result)) if self.body.stream else JSONResponse(result)

    async def replayed(self, result: dict) -> AsyncIterator[str]:
        events = Events()
        yield events("response.created", response={**result, "status": "in_progress", "output": [], "usage": None})
        for index, item in enumerate(result["output"]):
            for e in events.item(index, item):
                yield e
        yield events(f"response.{result['status']}", response=result)

    async def events(self, metrics: Metrics, keep: Callable[[dict, list[dict]], None]) -> AsyncIterator[str]:
        """Text as it comes, then the function calls; the generation is closed on every way out."""
        events, generation = Events(), self.generation
        calls = watches[0] if (watches := generation.call_watches()) else None
        started = self.base("in_progress", [], None)
        message_id, text = "msg_" + uuid.uuid4().hex, ""
        try:
            yield events("response.created", response=started)
            yield events("response.in_progress", response=started)
            done: Completion | None = None
            async for _, event in generation.merged():
                if isinstance(event, BaseException):
                    error = failure(event)
                    yield events("error", code=error.code, message=error.message, param=error.param)
                    return
                if isinstance(event, list):
                    done = event[0]
                    break
                piece = calls.feed(event.text, event.token_ids) if calls is not None else event.text
                if piece:
                    if not text:
                        for e in events.message_opened(message_id):
                            yield e
                    text += piece
                    yield events("response.output_text.delta", item_id=message_id, output_index=0, content_index=0,
                                 delta=piece)  # fmt: skip
            assert done is not None
            observe(metrics, generation, [done])
            result, turn = self.response(done)
            output = result["output"]
            if output and output[0]["type"] == "message":
                output[0]["id"] = message_id
                final = output[0]["content"][0]["text"]
                if not text and final:
                    for e in events.message_opened(message_id):
                        yield e
                if final.startswith(text) and final != text:  # what was held back, and only that
                    yield events("response.output_text.delta", item_id=message_id, output_index=0, content_index=0,
                                 delta=final[len(text) :])  # fmt: skip
                elif not final.startswith(text):  # the call's parser trimmed what was sent: the sent text stands
                    output[0]["content"][0]["text"] = text
                for e in events.message_closed(0, output[0]):
                    yield e
            for index, item in enumerate(output):
                if item["type"] == "function_call":
                    for e in events.item(index, item):
                        yield e
            keep(result, turn)
            yield events(f"response.{result['status']}", response=result)
        finally:
            generation.close()


class Events:
    """Server-sent events of a stream, each with its type and sequence number."""

    def __init__(self) -> None:
        self.sequence = 0

    def __call__(self, kind: str, **data: Any) -> str:
        body = {"type": kind, "sequence_number": self.sequence, **data}
        self.sequence += 1
        return f"event: {kind}\ndata: {json.dumps(body, ensure_ascii=False)}\n\n"

    def message_opened(self, item_id: str) -> list[str]:
        item = {"type": "message", "id": item_id, "status": "in_progress", "role": "assistant", "content": []}
        part = {"type": "output_text", "text": "", "annotations": []}
        return [
            self("response.output_item.added", output_index=0, item=item),
            self("response.content_part.added", item_id=item_id, output_index=0, content_index=0, part=part),
        ]

    def message_closed(self, index: int, item: dict) -> list[str]:
        part = item["content"][0]
        return [
            self(
                "response.output_text.done", item_id=item["id"], output_index=index, content_index=0, text=part["text"]
            ),
            self("response.content_part.done", item_id=item["id"], output_index=index, content_index=0, part=part),
            self("response.output_item.done", output_index=index, item=item),
        ]

    def item(self, index: int, item: dict) -> list[str]:
        """A whole output item's events."""
        if item["type"] == "message":
            return [*self.message_opened_at(index, item), *self.message_closed(index, item)]
        opened = {**item, "arguments": "", "status": "in_progress"}
        pieces = [item["arguments"][at : at + 24] for at in range(0, len(item["arguments"]), 24)]
        return [
            self("response.output_item.added", output_index=index, item=opened),
            *(self("response.function_call_arguments.delta", item_id=item["id"], output_index=index, delta=p)
              for p in pieces),
            self("response.function_call_arguments.done", item_id=item["id"], output_index=index,
                 arguments=item["arguments"]),
            self("response.output_item.done", output_index=index, item=item),
        ]  # fmt: skip

    def message_opened_at(self, index: int, item: dict) -> list[str]:
        opened = {**item, "status": "in_progress", "content": []}
        part = {"type": "output_text", "text": "", "annotations": []}
        return [
            self("response.output_item.added", output_index=index, item=opened),
            self("response.content_part.added", item_id=item["id"], output_index=index, content_index=0, part=part),
            self("response.output_text.delta", item_id=item["id"], output_index=index, content_index=0,
                 delta=item["content"][0]["text"]),
        ]  # fmt: skip
