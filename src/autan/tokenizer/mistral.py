"""Mistral's own tokenizers (SentencePiece v1-v7 and Tekken), through mistral-common.

Chat encoding is mistral-common's: it places the system prompt, the tool definitions and the
control tokens exactly as Mistral's models were trained, and continues an assistant message
marked `prefix`.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from autan.errors import ChatFormatError, CheckpointError, UnsupportedModelError
from autan.tokenizer.base import Message, Tool

# Names Mistral gives tokenizer files beside a checkpoint, most specific first.
TOKENIZER_FILES = (
    "tekken.json",
    "tokenizer.model.v7",
    "tokenizer.model.v3",
    "tokenizer.model.v2",
    "tokenizer.model.v1",
    "tokenizer.model",
)


class MistralCommonTokenizer:
    def __init__(self, path: str | Path):
        from mistral_common.exceptions import TokenizerException
        from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

        try:
            self.mistral = MistralTokenizer.from_file(str(path))
        except (TokenizerException, OSError, ValueError, RuntimeError) as e:  # RuntimeError: sentencepiece
            raise CheckpointError(path, f"not a Mistral tokenizer file mistral-common can read: {e}") from None
        self.path = Path(path)
        self.raw = self.mistral.instruct_tokenizer.tokenizer
        self.bos_id = self.raw.bos_id
        self.add_bos = True  # Mistral's models read every text after BOS
        self.eos_ids = frozenset([self.raw.eos_id])
        self.vocab_size = self.raw.n_words

    def encode(self, text: str, add_bos: bool = False) -> list[int]:
        return self.raw.encode(text, bos=add_bos, eos=False)

    def encode_chat(self, messages: Sequence[Message], tools: Sequence[Tool] | None = None) -> list[int]:
        from mistral_common.exceptions import MistralCommonException
        from mistral_common.protocol.instruct.request import ChatCompletionRequest

        try:
            request = ChatCompletionRequest.model_validate(
                {"messages": list(messages), "tools": list(tools or []) or None}
            )
            return self.mistral.encode_chat_completion(request).tokens
        except MistralCommonException as e:  # roles out of order, a bad tool, ...: the caller's input
            raise ChatFormatError(f"{type(e).__name__}: {e}") from None

    def encode_fim(self, prompt: str, suffix: str) -> list[int]:
        """Fill-in-the-middle (v3 tokenizers and later): the code between `prompt` and `suffix`."""
        from mistral_common.exceptions import MistralCommonException
        from mistral_common.protocol.fim.request import FIMRequest

        try:
            return self.mistral.encode_fim(FIMRequest(prompt=prompt, suffix=suffix)).tokens
        except MistralCommonException as e:
            raise ChatFormatError(f"{type(e).__name__}: {e}") from None

    def decode(self, ids: Sequence[int]) -> str:
        return self.raw.decode([i for i in ids if not self.raw.is_special(i)])

    @property
    def tool_call_id(self) -> int | None:
        """The [TOOL_CALLS] control token, with which a model starts its function calls (v2 and later)."""
        from mistral_common.tokens.tokenizers.base import SpecialTokens

        try:
            return self.raw.get_special_token(SpecialTokens.tool_calls.value)
        except Exception:  # v1 has none; mistral-common raises its own error kinds
            return None

    def parse_tool_calls(self, ids: Sequence[int]) -> tuple[str, list[dict[str, Any]]]:
        """Split generated ids into the text before any call and the function calls, in OpenAI's shape.

        Parsing is mistral-common's, for every tokenizer version's call format. A call that does
        not parse raises ChatFormatError.
        """
        from mistral_common.experimental.tools import _decode_tool_calls, _split_content_and_tool_calls

        marker = self.tool_call_id
        ids = [i for i in ids if i not in self.eos_ids]
        if marker is None or marker not in ids:
            return self.decode(ids), []
        content, calls = _split_content_and_tool_calls(ids, marker)
        try:
            decoded = _decode_tool_calls(calls, self.raw)
        except ValueError as e:
            raise ChatFormatError(f"the model's function call does not parse: {e}") from None
        return self.decode(content), [
            {
                "id": call.id if call.id and call.id != "null" else uuid.uuid4().hex[:9],
                "type": "function",
                "function": {"name": call.function.name, "arguments": call.function.arguments},
            }
            for call in decoded
        ]

    def tool_grammar(self, tools: Sequence[Tool], choice: Any, parallel: bool) -> str | None:
        """A Lark grammar (llguidance's) that holds the answer to calls of the tools `choice` asks
        for, in this tokenizer version's format; None when the answer need not call one."""
        from autan.tokenizer import tool_calls

        chosen = tool_calls.chosen_tools(tools, choice)
        if chosen is None:
            return None
        self.guidance_tokenizer()  # tekken only: refused here for SentencePiece, with the reason
        if self.tool_call_id is None:
            raise ChatFormatError(f"{self.path.name} has no [TOOL_CALLS] token: this model cannot call functions")
        return tool_calls.MistralTemplate(self.tool_call_id, self._special("[ARGS]")).grammar(chosen, parallel)

    def _special(self, text: str) -> int | None:
        try:
            return self.raw.get_special_token(text)
        except Exception:  # absent from this version; mistral-common raises its own error kinds
            return None

    @functools.cache  # noqa: B019  (one per tokenizer, which lives as long as its model)
    def guidance_tokenizer(self) -> Any:
        """The vocabulary as llguidance needs it for constrained decoding (built once, ~1 s).

        Tekken only: llguidance cannot drive SentencePiece's own tokenizer (it always adds a space
        prefix). The same models converted to GGUF go through `HFTokenizer`, which can.
        """
        from mistral_common.tokens.tokenizers.tekken import is_tekkenizer

        if not is_tekkenizer(self.raw):
            raise UnsupportedModelError(
                self.path, "constrained (JSON) output needs a tekken tokenizer; this one is SentencePiece"
            )
        from mistral_common.guidance.tokenizer import from_mistral_tokenizer

        return from_mistral_tokenizer(self.mistral)


def find_tokenizer_file(directory: Path) -> Path | None:
    for name in TOKENIZER_FILES:
        if (directory / name).is_file():
            return directory / name
    found = sorted(directory.glob("tokenizer.model.v*")) + sorted(directory.glob("tekken*.json"))
    return found[0] if found else None
