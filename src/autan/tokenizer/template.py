"""Chat templates (Jinja) from model files, rendered in Jinja's sandbox.

A template shipped inside a GGUF or a tokenizer_config.json is code from a file someone
downloaded: the immutable sandbox refuses attribute tricks (`__class__`, `__globals__`...) and
mutation of the values passed in, so rendering cannot reach Python.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from autan.errors import AutanError
from autan.tokenizer.base import Message, Tool


class ChatTemplateError(AutanError, ValueError):
    pass


def _raise(message: str) -> None:
    raise ChatTemplateError(f"the chat template refused the conversation: {message}")


class ChatTemplate:
    def __init__(self, source: str, bos_token: str = "", eos_token: str = ""):
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.filters["tojson"] = lambda value, indent=None, **_: json.dumps(value, indent=indent, ensure_ascii=False)
        env.globals["raise_exception"] = _raise
        env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
        try:
            self.template = env.from_string(source)
        except TemplateError as e:
            raise ChatTemplateError(f"the chat template does not parse: {e}") from None
        self.bos_token, self.eos_token = bos_token, eos_token
        self.source = source

    def render(self, messages: Sequence[Message], tools: Sequence[Tool] | None = None) -> str:
        """The prompt text; with a final assistant `prefix` message, that message is continued."""
        messages = [dict(m) for m in messages]
        continuing = bool(messages) and messages[-1].get("role") == "assistant" and messages[-1].get("prefix")
        variables: dict[str, Any] = {
            "messages": messages,
            "tools": list(tools) if tools else None,
            "add_generation_prompt": not continuing,
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
        }
        try:
            text = self.template.render(**variables)
        except TemplateError as e:
            raise ChatTemplateError(f"the chat template failed: {e}") from None
        if continuing:  # cut the end-of-turn markup after the message being continued
            content = messages[-1].get("content") or ""
            end = text.rfind(content) + len(content) if content else -1
            if content and end >= len(content):
                text = text[:end]
        return text
