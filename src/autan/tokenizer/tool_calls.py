"""Function calls in the formats chat templates teach, read out of a model's answer, and the
grammars that make an answer one (OpenAI's `tool_choice`).

Each format is told apart by its template's own markup:

- Hermes (Qwen2.5, many fine-tunes): `<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>`,
  one block per call;
- Llama 3.1-3.3: a JSON object `{"name": ..., "parameters": {...}}` as the whole answer (after
  `<|python_tag|>` where the model writes it), several joined by `;`;
- Mistral's templates for Hugging Face and GGUF files: the `[TOOL_CALLS]` control token, then a JSON
  list of `{"name", "arguments"}` (v3) or `name[ARGS]{...}` per call (v11 and later).

Mistral's own tokenizers (mistral-common) parse their calls themselves (`MistralCommonTokenizer`).
Calls come out in OpenAI's shape: `{"id", "type": "function", "function": {"name", "arguments"}}`
with the arguments as a JSON string.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from autan.errors import ChatFormatError

State = Literal["text", "hold", "call"]  # what a streaming answer is, so far


def call(name: str, arguments: Any) -> dict[str, Any]:
    """One call in OpenAI's shape."""
    text = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
    return {"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function", "function": {"name": name, "arguments": text}}


def function_schema(tool: Any) -> tuple[str, dict[str, Any]]:
    """(name, JSON schema of its arguments) of an OpenAI/Mistral function tool."""
    function = tool.get("function") if isinstance(tool, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
        raise ChatFormatError('a tool must be {"type": "function", "function": {"name": ..., "parameters": ...}}')
    parameters = function.get("parameters") or {"type": "object"}
    if not isinstance(parameters, dict):
        raise ChatFormatError(f"the parameters of tool {function['name']!r} must be a JSON schema object")
    return function["name"], parameters


def chosen_tools(tools: Sequence[dict[str, Any]], choice: Any) -> list[dict[str, Any]] | None:
    """The tools an answer must call one of, by `tool_choice`: None when it need not call any
    ("auto", "none" or unset); all of them for "required" (OpenAI) or "any" (Mistral); one for
    a named function. Raises ChatFormatError for a choice that names no tool offered."""
    if choice in (None, "auto", "none"):
        return None
    names = [function_schema(t)[0] for t in tools]  # every tool well formed, or a ChatFormatError
    if choice in ("required", "any"):
        return list(tools)
    if isinstance(choice, dict):
        function = choice.get("function")
        name = function.get("name") if isinstance(function, dict) else choice.get("name")
        found = [t for t, n in zip(tools, names, strict=True) if n == name]
        if not found:
            offered = ", ".join(names)
            raise ChatFormatError(f"tool_choice names the function {name!r}, which is not among the tools: {offered}")
        return found
    raise ChatFormatError(f"tool_choice {choice!r} is not one of none, auto, required, any, or a named function")


def _json_objects(text: str) -> list[tuple[Any, int, int]]:
    """Every JSON value that starts at a `{` or `[` in `text`, as (value, start, end), left to right."""
    decoder, found, at = json.JSONDecoder(), [], 0
    while (start := _next_open(text, at)) != -1:
        try:
            value, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            at = start + 1
            continue
        found.append((value, start, end))
        at = end
    return found


def _next_open(text: str, at: int) -> int:
    starts = [i for i in (text.find("{", at), text.find("[", at)) if i != -1]
    return min(starts, default=-1)


BARE_STARTS = ('{"name"', '```json{"name"', '```{"name"')


def _bare_call(text: str) -> dict[str, Any] | None:
    """A whole answer that is one call's JSON, bare or in a ```json fence, as small models write it."""
    body = text.strip()
    if body.startswith("```"):
        body = body.removeprefix("```json").removeprefix("```").removesuffix("```").strip()
    try:
        value = json.loads(body)
    except json.JSONDecodeError:
        return None
    return call(value["name"], value["arguments"]) if _named(value, "arguments") else None


def _named(value: Any, arguments_key: str) -> bool:
    return isinstance(value, dict) and isinstance(value.get("name"), str) and arguments_key in value


@dataclass(frozen=True)
class Hermes:
    open: str = "<tool_call>"
    close: str = "</tool_call>"
    open_id: int | None = None  # where the vocabulary has them as added tokens: the grammar names those
    close_id: int | None = None

    def state(self, text: str) -> State:
        if self.open in text:
            return "call"
        head = re.sub(r"\s", "", text[:64])  # a small model may write its call bare, or fenced
        if any(head.startswith(start) for start in BARE_STARTS):
            return "call"
        if any(start.startswith(head) for start in BARE_STARTS):
            return "hold"
        tail = text[-len(self.open) :]
        return "hold" if any(self.open.startswith(tail[i:]) for i in range(len(tail))) else "text"

    def parse(self, text: str) -> tuple[str, list[dict[str, Any]]]:
        if self.open not in text:
            bare = _bare_call(text)
            return ("", [bare]) if bare is not None else (text, [])
        content, _, rest = text.partition(self.open)
        blocks, calls = rest.split(self.open), []
        for k, block in enumerate(blocks):
            body, closed, _ = block.partition(self.close)
            try:
                value = json.loads(body.strip())
            except json.JSONDecodeError as e:
                if calls and not closed and k == len(blocks) - 1:
                    break  # a last call cut short by max_tokens: the whole ones stand
                raise ChatFormatError(f"a <tool_call> block is not JSON: {e}") from None
            if not _named(value, "arguments"):
                raise ChatFormatError('a <tool_call> block has no "name" and "arguments"')
            calls.append(call(value["name"], value["arguments"]))
        return content.rstrip(), calls

    def grammar(self, tools: Sequence[dict[str, Any]], parallel: bool) -> str:
        schema = json.dumps(_call_schema(tools, "arguments"))
        more = ' ("\\n" call)*' if parallel else ""
        open_, close = _literal(self.open, self.open_id), _literal(self.close, self.close_id)
        return f'start: call{more}\ncall: {open_} "\\n" %json {schema} "\\n" {close}\n'


@dataclass(frozen=True)
class Llama3:
    tag: str = "<|python_tag|>"

    def state(self, text: str) -> State:
        head = text.lstrip().removeprefix(self.tag).lstrip()
        if head.startswith('{"name"'):
            return "call"
        return "hold" if '{"name"'.startswith(head) or self.tag.startswith(text.lstrip()) else "text"

    def parse(self, text: str) -> tuple[str, list[dict[str, Any]]]:
        body = text.strip().removeprefix(self.tag).strip()
        if not body.startswith("{"):
            return text, []
        values = _json_objects(body)
        if not values or values[0][1] != 0 or not _named(values[0][0], "parameters"):
            return text, []
        calls, end = [], 0
        for value, start, stop in values:
            if body[end:start].strip(" ;\n") or not _named(value, "parameters"):
                break  # past the calls
            calls.append(call(value["name"], value["parameters"]))
            end = stop
        return "", calls

    def grammar(self, tools: Sequence[dict[str, Any]], parallel: bool) -> str:
        more = ' ("; " call)*' if parallel else ""
        return f"start: call{more}\ncall: %json {json.dumps(_call_schema(tools, 'parameters'))}\n"


@dataclass(frozen=True)
class MistralTemplate:
    """`[TOOL_CALLS]` and, from v11, `[ARGS]` are control tokens: they are found by id in the
    answer's tokens, and written as tokens in the grammar."""

    marker_id: int
    args_id: int | None = None  # [ARGS]: one `name[ARGS]{...}` per call; without it a JSON list

    def parse_ids(self, ids: Sequence[int], decode: Any) -> tuple[str, list[dict[str, Any]]]:
        if self.marker_id not in ids:
            return decode(ids), []
        first = list(ids).index(self.marker_id)
        content, calls, rest = decode(ids[:first]), [], list(ids[first:])
        for part in _split(rest, self.marker_id)[1:]:
            if self.args_id is not None and self.args_id in part:
                at = part.index(self.args_id)
                name, arguments = decode(part[:at]).strip(), decode(part[at + 1 :]).strip()
                try:
                    calls.append(call(name, json.loads(arguments)))
                except json.JSONDecodeError as e:
                    raise ChatFormatError(f"the arguments of {name!r} are not JSON: {e}") from None
                continue
            try:
                value = json.loads(decode(part).strip())
            except json.JSONDecodeError as e:
                raise ChatFormatError(f"the function calls after [TOOL_CALLS] are not JSON: {e}") from None
            for item in value if isinstance(value, list) else [value]:
                if not _named(item, "arguments"):
                    raise ChatFormatError('a function call has no "name" and "arguments"')
                calls.append(call(item["name"], item["arguments"]))
        return content, calls

    def grammar(self, tools: Sequence[dict[str, Any]], parallel: bool) -> str:
        marker = f"<[{self.marker_id}]>"
        if self.args_id is not None:
            options = " | ".join(
                f"{json.dumps(name)} <[{self.args_id}]> %json {json.dumps(compact(schema))}"
                for name, schema in map(function_schema, tools)
            )
            return f"start: call{' call*' if parallel else ''}\ncall: {marker} ({options})\n"
        items = _call_schema(tools, "arguments")
        items.pop("x-guidance")
        array = {"type": "array", "items": items, "minItems": 1, **({} if parallel else {"maxItems": 1})}
        return f"start: {marker} %json {json.dumps(compact(array))}\n"


def _literal(text: str, token_id: int | None) -> str:
    """A grammar's literal: an added token by its id (llguidance reads those as special tokens,
    never as the bytes they spell), other text quoted."""
    return f"<[{token_id}]>" if token_id is not None else json.dumps(text)


def _split(ids: list[int], marker: int) -> list[list[int]]:
    parts: list[list[int]] = [[]]
    for i in ids:
        if i == marker:
            parts.append([])
        else:
            parts[-1].append(i)
    return parts


def _call_schema(tools: Sequence[dict[str, Any]], arguments_key: str) -> dict[str, Any]:
    """A JSON schema matching one call to any of `tools`: its name, then its arguments."""
    options = [
        {
            "type": "object",
            "properties": {"name": {"const": name}, arguments_key: schema},
            "required": ["name", arguments_key],
            "additionalProperties": False,
        }
        for name, schema in map(function_schema, tools)
    ]
    return compact(options[0] if len(options) == 1 else {"anyOf": options})


def compact(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with llguidance's option for JSON written as `json.dumps` writes it: a call's
    JSON cannot wander into whitespace (a small model, or a random one, will)."""
    separators = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
    return {**schema, "x-guidance": separators}


ToolFormat = Hermes | Llama3 | MistralTemplate


def detect(template: str | None, token_id: Any) -> ToolFormat | None:
    """The call format a chat template teaches, from its markup; None if it offers no tools.
    `token_id(text)` is the id of an added (or control) token, or None."""
    if not template or "tools" not in template:
        return None
    if "<tool_call>" in template:
        return Hermes(open_id=token_id("<tool_call>"), close_id=token_id("</tool_call>"))
    if "[TOOL_CALLS]" in template and (marker := token_id("[TOOL_CALLS]")) is not None:
        return MistralTemplate(marker, token_id("[ARGS]") if "[ARGS]" in template else None)
    if "<|start_header_id|>" in template and re.search(r"parameters", template):
        return Llama3()
    return None
