"""Training data: Mistral's fine-tuning JSONL and OpenAI's, made into token ids and a loss mask.

Each line is one example, in either shape:
- a conversation: `{"messages": [...], "tools": [...]?}` with system, user, assistant (content
  and/or `tool_calls`) and tool messages, as Mistral's and OpenAI's fine-tuning take it. An
  assistant message with `"weight": 0` is context only, not learned (both APIs have it);
- plain text: `{"text": "..."}` (Mistral's pretraining shape): every token is learned.

The conversation is rendered in the model's own chat format. Only the assistant messages' tokens
count in the loss: each one's tokens, through the end-of-turn token that closes it (so the model
learns to stop), are told apart from the rest by rendering the conversation up to that message
and through it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autan.errors import AutanError
from autan.tokenizer import Tokenizer

ROLES = ("system", "user", "assistant", "tool")


class DataError(AutanError):
    """A training file that cannot be used, with the file, line and reason."""


@dataclass(frozen=True)
class Example:
    ids: tuple[int, ...]
    learn: tuple[bool, ...]  # per token: whether predicting it (from the tokens before) counts in the loss

    @property
    def learned(self) -> int:
        return sum(self.learn)


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The examples of a JSONL file, each checked for its shape; an error names the line."""
    path = Path(path).expanduser()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text: {e}") from None
    out = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except ValueError as e:
            raise DataError(f"{where}: not JSON: {e}") from None
        check_example(row, where)
        out.append(row)
    if not out:
        raise DataError(f"{path} has no examples")
    return out


def check_example(row: Any, where: str) -> None:
    if not isinstance(row, dict) or not ("messages" in row or "text" in row):
        raise DataError(f'{where}: an example is an object with "messages" (a conversation) or "text"')
    if "text" in row:
        if not isinstance(row["text"], str) or not row["text"]:
            raise DataError(f'{where}: "text" must be a non-empty string')
        return
    messages = row["messages"]
    if not isinstance(messages, list) or not messages:
        raise DataError(f'{where}: "messages" must be a non-empty list')
    for k, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            got = m.get("role") if isinstance(m, dict) else type(m).__name__
            raise DataError(f"{where}: message {k} has role {got!r}; a role is one of {', '.join(ROLES)}")
        if m.get("weight", 1) not in (0, 1):
            raise DataError(f"{where}: message {k} has weight {m['weight']!r}; a weight is 0 or 1")
        content = m.get("content")
        if content is not None and not isinstance(content, str):
            raise DataError(f"{where}: message {k}'s content must be a string")
    if not any(m["role"] == "assistant" and m.get("weight", 1) for m in messages):
        raise DataError(f"{where}: the conversation has no assistant message to learn")
    if "tools" in row and not isinstance(row["tools"], list):
        raise DataError(f'{where}: "tools" must be a list')


def _clean(message: dict[str, Any]) -> dict[str, Any]:
    """A message as the chat format takes it: without the training-only `weight`."""
    return {k: v for k, v in message.items() if k != "weight"}


def encode(tokenizer: Tokenizer, row: dict[str, Any], where: str = "") -> Example:
    """An example's ids and loss mask."""
    if "text" in row:
        ids = tokenizer.encode(row["text"], add_bos=tokenizer.add_bos)
        return Example(tuple(ids), (False, *([True] * (len(ids) - 1))))
    messages = [_clean(m) for m in row["messages"]]
    tools = row.get("tools")
    full = _render(tokenizer, messages, tools, where)
    learn = [False] * len(full)
    for i, m in enumerate(row["messages"]):
        if m["role"] != "assistant" or not m.get("weight", 1):
            continue
        # where message i lies: what differs from the same conversation with message i blanked,
        # then on through the end-of-turn token that closes it
        emptied = [*messages[:i], _emptied(messages[i]), *messages[i + 1 :]]
        other = _render(tokenizer, emptied, tools, where)
        start = _common_prefix(full, other)
        end = len(full) - _common_prefix(full[::-1], other[::-1])
        close = next((k for k in range(max(end, start), len(full)) if full[k] in tokenizer.eos_ids), None)
        if start >= len(full) or close is None:
            raise DataError(f"{where}: message {i}'s tokens end in no end-of-turn token in this model's chat format")
        learn[start : close + 1] = [True] * (close + 1 - start)
    last = max(k for k, x in enumerate(learn) if x) if any(learn) else len(full) - 1
    return Example(tuple(full[: last + 1]), tuple(learn[: last + 1]))  # the stand-in turn after is dropped


def _emptied(message: dict[str, Any]) -> dict[str, Any]:
    """An assistant message with nothing of its own: a one-letter text that is not its own first
    letter, its calls' names and arguments blank (a chat format may refuse an empty message)."""
    out = dict(message)
    if message.get("content"):
        out["content"] = "y" if message["content"].startswith("x") else "x"
    if message.get("tool_calls"):
        out["tool_calls"] = [
            {**c, "function": {**c.get("function", {}), "name": "_", "arguments": "{}"}} for c in message["tool_calls"]
        ]
    return out


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _render(tokenizer: Tokenizer, messages: list[dict], tools: Sequence[dict] | None, where: str) -> list[int]:
    """The conversation in the model's chat format, closed as the format closes any turn.

    A conversation ending with an assistant's message is rendered with a stand-in user turn
    after it, which the format then closes (the stand-in is cut off later). Mistral's formats
    put the system prompt in the last user message, which the stand-in would become: there the
    last message is rendered as a prefix to continue, then closed with the end-of-sequence token.
    """
    from autan.tokenizer import MistralCommonTokenizer

    last = messages[-1]
    try:
        if last["role"] != "assistant":
            return tokenizer.encode_chat(messages, tools)
        if isinstance(tokenizer, MistralCommonTokenizer) and last.get("content") and not last.get("tool_calls"):
            return [*tokenizer.encode_chat([*messages[:-1], {**last, "prefix": True}], tools), tokenizer.raw.eos_id]
        return tokenizer.encode_chat([*messages, {"role": "user", "content": "."}], tools)
    except AutanError as e:
        raise DataError(f"{where}: the chat format refuses the conversation: {e}") from None
