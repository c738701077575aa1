"""Sentence embeddings from BERT-family encoders, as sentence-transformers computes them: the
encoder's token states pooled (mean over the real tokens, the [CLS] state, or the last token's, as
the model's files say) and, where the model says so, scaled to unit length.

An encoder comes from a sentence-transformers or Hugging Face directory (safetensors, run by
transformers), from a GGUF file of architecture `bert` (as llama.cpp's converter writes it: its
tensors are renamed back with gguf-py's own name map, its WordPiece vocabulary rebuilt), or by
name: `all-minilm-l6-v2`, the encoder the guard ships (autan.guard.encoder).
"""

from __future__ import annotations

import functools
import json
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from autan.errors import AutanError, CheckpointError, UnsupportedModelError

PACKAGED = "all-minilm-l6-v2"
POOLING = {0: "none", 1: "mean", 2: "cls", 3: "last"}  # GGUF's bert.pooling_type


class EmbeddingInputError(AutanError, ValueError):
    """An input the encoder cannot take (too long, or ids outside its vocabulary)."""


@dataclass
class Embedder:
    id: str
    model: torch.nn.Module  # a transformers encoder (BertModel and kin)
    tokenizer: object  # tokenizers.Tokenizer, encoding without [CLS]/[SEP]
    cls_id: int
    sep_id: int
    pad_id: int
    pooling: str  # "mean", "cls" or "last"
    normalize: bool
    max_tokens: int  # what it was trained on, [CLS] and [SEP] included
    path: Path

    def __post_init__(self) -> None:
        self.lock = threading.Lock()  # one batch at a time: the server's requests share the model
        self.vocab_size = int(self.model.config.vocab_size)

    @property
    def dimensions(self) -> int:
        return int(self.model.config.hidden_size)

    def tokens(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def check(self, inputs: list[list[int]]) -> None:
        """Refuse an input longer than the encoder reads, or with ids it does not have."""
        for i, ids in enumerate(inputs):
            if len(ids) + 2 > self.max_tokens:
                raise EmbeddingInputError(
                    f"input {i} has {len(ids)} tokens; {self.id} reads at most {self.max_tokens - 2} (and [CLS], [SEP])"
                )
            if bad := [t for t in ids if not 0 <= t < self.vocab_size]:
                limit = self.vocab_size - 1
                raise EmbeddingInputError(f"input {i} has token id {bad[0]}, outside {self.id}'s 0..{limit}")

    @torch.inference_mode()
    def embed(self, inputs: list[list[int]], batch: int = 32) -> np.ndarray:
        """[inputs, dimensions] float32: one vector per input (token ids without [CLS]/[SEP])."""
        self.check(inputs)
        out = []
        for at in range(0, len(inputs), batch):
            rows = [[self.cls_id, *ids, self.sep_id] for ids in inputs[at : at + batch]]
            width = max(len(r) for r in rows)
            ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for k, r in enumerate(rows):
                ids[k, : len(r)], mask[k, : len(r)] = torch.tensor(r), 1
            with self.lock:
                states = self.model(input_ids=ids, attention_mask=mask).last_hidden_state  # (B, T, D)
            out.append(self._pool(states.float(), mask))
        return torch.cat(out).numpy() if out else np.zeros((0, self.dimensions), np.float32)

    def _pool(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.pooling == "cls":
            pooled = states[:, 0]
        elif self.pooling == "last":
            pooled = states[torch.arange(len(states)), mask.sum(1) - 1]
        else:
            weights = mask.unsqueeze(-1).to(states.dtype)
            pooled = (states * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1) if self.normalize else pooled


def load_embedder(spec: str) -> Embedder:
    """An encoder from `name`, `path`, or `id=name-or-path`."""
    from autan.weights.gguf_reader import is_gguf

    model_id, _, target = spec.rpartition("=")
    if target == PACKAGED:
        from autan.guard.encoder import pull

        path = pull()
    else:
        path = Path(target).expanduser()
        if not path.exists():
            raise CheckpointError(path, f"no such encoder: give a directory, a .gguf file, or {PACKAGED}")
    model_id = model_id or (target if target == PACKAGED else path.stem if path.is_file() else path.name)
    if path.is_file() and is_gguf(path):
        return _from_gguf(model_id, path)
    if path.is_dir() and (path / "config.json").is_file():
        return _from_directory(model_id, path)
    raise CheckpointError(path, "not an encoder: expected a directory with config.json, or a GGUF file")


def _from_directory(model_id: str, path: Path) -> Embedder:
    from tokenizers import Tokenizer
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(path)
    if config.model_type not in ("bert", "roberta", "xlm-roberta", "distilbert", "mpnet", "electra"):
        raise UnsupportedModelError(path, f"model_type {config.model_type!r} is not a BERT-family encoder")
    if not (path / "tokenizer.json").is_file():
        raise CheckpointError(path, "has no tokenizer.json")
    model = AutoModel.from_pretrained(path, dtype=torch.float32, use_safetensors=True).eval()
    tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    pooling, normalize = _sentence_transformers_head(path)
    limit = json.loads((path / "sentence_bert_config.json").read_text()).get("max_seq_length") if (
        path / "sentence_bert_config.json").is_file() else None  # fmt: skip
    config_file = path / "tokenizer_config.json"
    special = json.loads(config_file.read_text()) if config_file.is_file() else {}
    cls, sep, pad = (_special_id(tokenizer, special, k, d) for k, d in
                     (("cls_token", "[CLS]"), ("sep_token", "[SEP]"), ("pad_token", "[PAD]")))  # fmt: skip
    return Embedder(model_id, model, tokenizer, cls, sep, pad, pooling, normalize,
                    int(limit or config.max_position_embeddings), path)  # fmt: skip


def _special_id(tokenizer: object, config: dict, key: str, default: str) -> int:
    token = config.get(key) or default
    token = token.get("content") if isinstance(token, dict) else token
    found = tokenizer.token_to_id(token)  # type: ignore[attr-defined]
    if found is None:
        raise CheckpointError(Path("tokenizer.json"), f"has no {key} {token!r}")
    return int(found)


def _sentence_transformers_head(path: Path) -> tuple[str, bool]:
    """Pooling and normalising as sentence-transformers' modules.json lists them (mean and no
    normalising where a plain Hugging Face directory says nothing)."""
    pooling, normalize = "mean", False
    modules = json.loads((path / "modules.json").read_text()) if (path / "modules.json").is_file() else []
    for module in modules:
        kind = module.get("type", "")
        if kind.endswith("Normalize"):
            normalize = True
        if kind.endswith("Pooling") and (path / module.get("path", "") / "config.json").is_file():
            config = json.loads((path / module["path"] / "config.json").read_text())
            if config.get("pooling_mode_cls_token"):
                pooling = "cls"
            elif config.get("pooling_mode_lasttoken"):
                pooling = "last"
    return pooling, normalize


def _from_gguf(model_id: str, path: Path) -> Embedder:
    from autan.weights.gguf_file import GGUFFile

    gguf_file = GGUFFile.open(path)
    meta = gguf_file.metadata
    if meta.get("general.architecture") != "bert":
        raise UnsupportedModelError(path, f"architecture {meta.get('general.architecture')!r} is not an encoder (bert)")
    tokens = list(meta["tokenizer.ggml.tokens"])
    model = _bert_from_gguf(path, meta, len(tokens))
    tokenizer = _wordpiece(tokens)
    pooling = POOLING.get(int(meta.get("bert.pooling_type", 1)), "mean")
    if pooling == "none":
        raise UnsupportedModelError(path, "bert.pooling_type is none: it gives token states, not a sentence embedding")
    ids = {t: i for i, t in enumerate(tokens)}
    cls = int(meta.get("tokenizer.ggml.bos_token_id", ids.get("[CLS]", 101)))  # llama.cpp's name for [CLS]
    sep_key = next(
        (k for k in ("tokenizer.ggml.seperator_token_id", "tokenizer.ggml.separator_token_id") if k in meta), ""
    )
    sep = int(meta.get(sep_key, ids.get("[SEP]", 102)))  # llama.cpp's converter spells it "seperator"
    pad = int(meta.get("tokenizer.ggml.padding_token_id", ids.get("[PAD]", 0)))
    # llama.cpp's embedding example normalises (euclidean) by default; sentence-transformers models do too
    return Embedder(model_id, model, tokenizer, cls, sep, pad, pooling, True, int(meta["bert.context_length"]), path)


def _bert_from_gguf(path: Path, meta: dict, vocab_size: int) -> torch.nn.Module:
    """transformers' BertModel with the GGUF's weights, by gguf-py's name map (the one llama.cpp's
    converter used to name them)."""
    from gguf import MODEL_ARCH, GGUFReader, get_tensor_name_map
    from gguf.quants import dequantize
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=int(meta["bert.embedding_length"]),
        num_hidden_layers=int(meta["bert.block_count"]),
        num_attention_heads=int(meta["bert.attention.head_count"]),
        intermediate_size=int(meta["bert.feed_forward_length"]),
        max_position_embeddings=int(meta["bert.context_length"]),
        layer_norm_eps=float(meta.get("bert.attention.layer_norm_epsilon", 1e-12)),
        type_vocab_size=2,
    )
    model = BertModel(config, add_pooling_layer=False).eval()
    names = get_tensor_name_map(MODEL_ARCH.BERT, config.num_hidden_layers)
    stored = {t.name: t for t in GGUFReader(path).tensors}
    state = {}
    for hf_name, param in model.state_dict().items():
        gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None or gguf_name not in stored:
            if hf_name.endswith("position_ids") or hf_name.endswith("token_type_ids"):
                continue
            raise CheckpointError(path, f"has no tensor for {hf_name} (expected {gguf_name})")
        tensor = stored[gguf_name]
        values = dequantize(np.asarray(tensor.data), tensor.tensor_type).reshape(param.shape)
        state[hf_name] = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))
    if "embeddings.token_type_embeddings.weight" not in state:  # one type only: the same for every token
        state["embeddings.token_type_embeddings.weight"] = torch.zeros_like(
            model.state_dict()["embeddings.token_type_embeddings.weight"]
        )
    model.load_state_dict(state, strict=False)
    return model


def _wordpiece(tokens: list[str]) -> object:
    """The WordPiece tokenizer behind a GGUF vocabulary: llama.cpp's converter writes word starts
    with a leading U+2581 and continuations bare (WordPiece's "##" dropped); both are undone."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    vocab = {}
    for i, token in enumerate(tokens):
        if token.startswith("[") and token.endswith("]"):
            word = token
        elif token.startswith("\u2581"):
            word = token[1:]
        else:
            word = "##" + token
        vocab.setdefault(word, i)
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=None, clean_text=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    return tokenizer


@functools.cache
def packaged() -> Embedder:
    return load_embedder(PACKAGED)
