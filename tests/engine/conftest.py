"""Tiny random models and a character tokenizer for engine tests: fast enough for thousands of requests."""

from __future__ import annotations

import pytest
import torch

import autan
from checkpoints import hf_model


class CharTokenizer:
    """Token i is ASCII character i; no end-of-sequence unless asked, so lengths are under the test's control."""

    bos_id = None
    vocab_size = 128

    def __init__(self, eos_ids=frozenset()):
        self.eos_ids = frozenset(eos_ids)

    def encode(self, text, add_bos=False):
        return [ord(c) % 128 for c in text]

    def encode_chat(self, messages, tools=None):
        return self.encode("".join(f"<{m['role']}>{m['content']}" for m in messages) + "<assistant>")

    def decode(self, ids):
        return "".join(chr(i) for i in ids)  # ASCII: decode(encode(s)) == s


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    """llama, mistral (window 8) and mixtral, loaded by autan from Hugging Face checkpoints."""
    out = {}
    for arch, extra in (("llama", {}), ("mistral", {"sliding_window": 8}), ("mixtral", {})):
        path = tmp_path_factory.mktemp(arch)
        hf_model(arch, seed=1, **extra).save_pretrained(path)
        out[arch] = autan.load_model(path)
    return out


def random_prompts(seed: int, lengths) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 128, (n,), generator=g).tolist() for n in lengths]
