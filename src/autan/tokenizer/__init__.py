"""Tokenizers behind one protocol: Mistral's (mistral-common), Hugging Face's, and GGUF-embedded."""

from __future__ import annotations

from pathlib import Path

from autan.errors import CheckpointError
from autan.tokenizer.base import Message, StreamDecoder, Tokenizer, Tool
from autan.tokenizer.hf import HFTokenizer
from autan.tokenizer.mistral import MistralCommonTokenizer, find_tokenizer_file

__all__ = ["HFTokenizer", "Message", "MistralCommonTokenizer", "StreamDecoder", "Tokenizer", "Tool", "load_tokenizer"]


def load_tokenizer(path: str | Path) -> Tokenizer:
    """The tokenizer of a checkpoint: embedded in a .gguf, or a file in a checkpoint directory.

    A path to a tokenizer file itself (tokenizer.model.v3, tekken.json, tokenizer.json) works too.
    """
    from autan.weights.gguf_reader import is_gguf

    path = Path(path)
    if is_gguf(path):  # by its magic: an Ollama blob has no suffix
        from autan.weights.gguf_file import GGUFFile

        return HFTokenizer.from_gguf_metadata(path, GGUFFile.open(path).metadata)
    if path.is_file():
        if path.name == "tokenizer.json":
            return HFTokenizer.from_directory(path.parent)
        return MistralCommonTokenizer(path)
    if path.is_dir():
        mistral = find_tokenizer_file(path)
        if mistral is not None:
            return MistralCommonTokenizer(mistral)
        if (path / "tokenizer.json").is_file():
            return HFTokenizer.from_directory(path)
    raise CheckpointError(path, "no tokenizer found: expected tokenizer.model.v*, tekken.json or tokenizer.json")
