"""The input processor: what a request asks becomes the token ids the engine's core runs. Chat
messages (with their tools) through the tokenizer's chat format, or token ids, checked against
the vocabulary."""

from __future__ import annotations

from collections.abc import Sequence

from autan.tokenizer import Message, Tokenizer, Tool


def prompt_ids(tokenizer: Tokenizer, prompt: Sequence[int] | Sequence[Message], tools: Sequence[Tool] | None,
               vocab_size: int) -> list[int]:  # fmt: skip
    """The prompt's token ids: chat messages encoded with the tokenizer's chat format, or ids as given."""
    if not prompt:
        raise ValueError("the prompt is empty: give token ids or at least one message")
    if all(isinstance(p, dict) for p in prompt):
        return tokenizer.encode_chat(list(prompt), tools=tools)  # type: ignore[arg-type]
    ids = [int(t) for t in prompt]  # type: ignore[arg-type]
    bad = next((t for t in ids if not 0 <= t < vocab_size), None)
    if bad is not None:
        raise ValueError(f"token id {bad} is outside the vocabulary 0..{vocab_size - 1}")
    return ids
