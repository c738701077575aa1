"""Checkpoint directories of float tensors: Mistral's own format and Hugging Face's.

Mistral's: `params.json` + `consolidated.safetensors` (or `consolidated.00.pth`, read with
`torch.load(weights_only=True)` so no pickled code runs), RoPE rows interleaved.
Hugging Face's: `config.json` + `model.safetensors` or shards listed in
`model.safetensors.index.json`, RoPE rows already in halves.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from torch import Tensor

from autan.config import ModelConfig
from autan.errors import CheckpointError
from autan.model.parallel import Piece, Shard
from autan.weights.assemble import Entry
from autan.weights.names import interleaved_to_halves, is_rope_projection, mistral_to_hf

HF_INDEX = "model.safetensors.index.json"


def read_safetensors(path: Path) -> Iterator[tuple[str, Tensor]]:
    """(name, tensor) pairs of one .safetensors file, with file errors named."""
    for name, _, tensor, _ in _read_safetensors(path, lambda n: (n, None)):
        yield name, tensor


# where a stored tensor goes: its file name -> (the model's name for it, None to skip it; the piece to read)
Place = Callable[[str], tuple[str | None, Piece | None]]


def _read_safetensors(path: Path, place: Place) -> Iterator[tuple[str, str, Tensor, tuple[int, ...]]]:
    """(file name, model name, tensor, stored shape) of each tensor `place` keeps; of a piece, only
    that piece is read from the file."""
    if not path.is_file():
        raise CheckpointError(path, "file not found")
    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            for file_name in f.keys():  # noqa: SIM118 - safe_open has no __iter__
                name, piece = place(file_name)
                if name is None:
                    continue
                stored = f.get_slice(file_name)
                shape = tuple(stored.get_shape())
                yield file_name, name, (f.get_tensor(file_name) if piece is None else _piece(stored, piece)), shape
    except SafetensorError as e:
        raise CheckpointError(path, f"not a readable safetensors file (truncated or corrupt?): {e}") from None


def _piece(stored: Any, piece: Piece) -> Tensor:
    """A piece of a stored tensor, reading only [start, stop) along its dimension."""
    span = (*(slice(None) for _ in range(piece.dim)), slice(piece.start, piece.stop))
    return Piece(piece.dim, 0, piece.stop - piece.start, piece.index).of(stored[span])


def read_pth(path: Path) -> Iterator[tuple[str, Tensor]]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as e:
        raise CheckpointError(path, f"not a loadable tensors-only .pth file: {e}") from None
    if not isinstance(state, dict):
        raise CheckpointError(path, f"expected a dict of tensors, found {type(state).__name__}")
    yield from state.items()


def _read_pth(path: Path, place: Place) -> Iterator[tuple[str, str, Tensor, tuple[int, ...]]]:
    for file_name, tensor in read_pth(path):  # mapped: a piece's pages are the only ones read
        name, piece = place(file_name)
        if name is not None:
            yield file_name, name, tensor if piece is None else piece.of(tensor), tuple(tensor.shape)


def _placer(rename: Callable[[str], str | None], shard: Shard | None) -> Place:
    """Names as the model's (`rename`; None for a name it does not know, kept to be refused), then
    where `shard` puts them."""

    def place(file_name: str) -> tuple[str | None, Piece | None]:
        name = rename(file_name)
        if name is None:
            return f"?{file_name}", None
        return shard.place(name) if shard is not None else (name, None)

    return place


def mistral_entries(directory: Path, config: ModelConfig, shard: Shard | None = None) -> Iterator[Entry]:
    path = directory / "consolidated.safetensors"
    place = _placer(mistral_to_hf, shard)
    if path.exists():
        tensors = _read_safetensors(path, place)
    else:
        pths = sorted(directory.glob("consolidated.*.pth"))
        if len(pths) > 1:
            raise CheckpointError(
                directory, f"{len(pths)} consolidated.*.pth shards: tensor-parallel shards are not supported"
            )
        if not pths:
            raise CheckpointError(directory, "no consolidated.safetensors or consolidated.00.pth beside params.json")
        path = pths[0]
        tensors = _read_pth(path, place)
    for file_name, name, tensor, shape in tensors:
        if name.startswith("?"):
            raise CheckpointError(path, "unexpected tensor: not a name of Mistral's format", file_name)
        if is_rope_projection(name):
            heads = config.n_heads if "q_proj" in name else config.n_kv_heads
            if len(shape) != 2 or shape[0] != heads * config.head_dim:
                want = [heads * config.head_dim, config.dim]
                raise CheckpointError(path, f"has shape {list(shape)}, expected {want}", file_name)
            tensor = interleaved_to_halves(tensor, tensor.shape[0] // config.head_dim)  # whole heads: a piece too
        yield Entry(name, tensor, str(path), file_name, shape)


def hf_entries(directory: Path, shard: Shard | None = None) -> Iterator[Entry]:
    index = directory / HF_INDEX
    if index.exists():
        try:
            weight_map: dict[str, str] = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise CheckpointError(index, f"not a valid safetensors index (needs 'weight_map'): {e}") from None
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise CheckpointError(index, "'weight_map' must map tensor names to shard file names")
        shards = sorted(set(weight_map.values()))
        missing = [s for s in shards if not (directory / s).is_file()]
        if missing:
            raise CheckpointError(index, f"lists shard(s) that are not in the directory: {missing}")
    else:
        shards = ["model.safetensors"]
        weight_map = {}
    place = _placer(lambda n: n, shard)
    for shard_file in shards:
        path = directory / shard_file
        for file_name, name, tensor, shape in _read_safetensors(path, place):
            if weight_map and weight_map.get(file_name) != shard_file:
                raise CheckpointError(path, f"tensor is not listed for this shard in {HF_INDEX}", file_name)
            yield Entry(name, tensor, str(path), file_name, shape)
