"""The one protocol every tokenizer follows, and streaming decode built on it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

Message = dict[str, Any]  # {"role": ..., "content": ..., optional "tool_calls", "prefix", ...}
Tool = dict[str, Any]  # OpenAI/Mistral function tool: {"type": "function", "function": {...}}


class Tokenizer(Protocol):
    bos_id: int | None
    add_bos: bool  # whether a text prompt starts with BOS, as the model's tokenizer files say
    eos_ids: frozenset[int]  # any of these ends a generation
    vocab_size: int

    def encode(self, text: str, add_bos: bool = False) -> list[int]: ...

    def encode_chat(self, messages: Sequence[Message], tools: Sequence[Tool] | None = None) -> list[int]:
        """The prompt of a conversation, in the format the model was trained on, ready to generate.

        A conversation ending with an assistant message marked `"prefix": True` continues that
        message instead of starting a new one.
        """
        ...

    def decode(self, ids: Sequence[int]) -> str:
        """Text of `ids`, without special (control) tokens."""
        ...


REPLACEMENT = "\ufffd"


class StreamDecoder:
    """Turn a growing list of token ids into text deltas that are always whole characters.

    A token can end in the middle of a UTF-8 character (byte-level BPE, SentencePiece byte
    fallback), and some tokenizers only know whether a piece starts with a space from its left
    neighbour. So each step decodes a short window that starts before the new tokens (the same
    scheme as vLLM's incremental detokenizer) and emits only what the window adds, holding back
    while the text ends in an incomplete character.
    """

    def __init__(self, tokenizer: Tokenizer, prompt_tail: Sequence[int] = ()):
        self.tokenizer = tokenizer
        self.ids: list[int] = list(prompt_tail)  # context for the first pieces; never emitted
        self.prefix_offset = 0
        self.read_offset = len(self.ids)

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        return self._delta(final=False)

    def flush(self) -> str:
        """Whatever is still held back at the end of the generation."""
        return self._delta(final=True)

    def _delta(self, final: bool) -> str:
        decode = self.tokenizer.decode
        before = decode(self.ids[self.prefix_offset : self.read_offset])
        text = decode(self.ids[self.prefix_offset :])
        if len(text) <= len(before) or (text.endswith(REPLACEMENT) and not final):
            return ""
        self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)
        return text[len(before) :]
