"""Checkpoint directories of float tensors: Mistral's own format and Hugging Face's.

Mistral's: `params.json` + `consolidated.safetensors` (or `consolidated.00.pth`, read with
`torch.load(weights_only=True)` so no pickled code runs), RoPE rows interleaved.
Hugging Face's: `config.json` + `model.safetensors` or shards listed in
`model.safetensors.index.json`, RoPE rows already in halves.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from torch import Tensor

from autan.config import ModelConfig
from autan.errors import CheckpointError
from autan.weights.assemble import Entry
from autan.weights.names import interleaved_to_halves, is_rope_projection, mistral_to_hf

HF_INDEX = "model.safetensors.index.json"


def read_safetensors(path: Path) -> Iterator[tuple[str, Tensor]]:
    """(name, tensor) pairs of one .safetensors file, with file errors named."""
    if not path.is_file():
        raise CheckpointError(path, "file not found")
    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            for name in f.keys():  # noqa: SIM118 - safe_open has no __iter__
                yield name, f.get_tensor(name)
    except SafetensorError as e:
        raise CheckpointError(path, f"not a readable safetensors file (truncated or corrupt?): {e}") from None


def read_pth(path: Path) -> Iterator[tuple[str, Tensor]]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as e:
        raise CheckpointError(path, f"not a loadable tensors-only .pth file: {e}") from None
    if not isinstance(state, dict):
        raise CheckpointError(path, f"expected a dict of tensors, found {type(state).__name__}")
    yield from state.items()


def mistral_entries(directory: Path, config: ModelConfig) -> Iterator[Entry]:
    path = directory / "consolidated.safetensors"
    if path.exists():
        tensors = read_safetensors(path)
    else:
        pths = sorted(directory.glob("consolidated.*.pth"))
        if len(pths) > 1:
            raise CheckpointError(
                directory, f"{len(pths)} consolidated.*.pth shards: tensor-parallel shards are not supported"
            )
        if not pths:
            raise CheckpointError(directory, "no consolidated.safetensors or consolidated.00.pth beside params.json")
        path = pths[0]
        tensors = read_pth(path)
    for file_name, tensor in tensors:
        name = mistral_to_hf(file_name)
        if name is None:
            raise CheckpointError(path, "unexpected tensor: not a name of Mistral's format", file_name)
        if is_rope_projection(name):
            heads = config.n_heads if "q_proj" in name else config.n_kv_heads
            if tensor.ndim != 2 or tensor.shape[0] != heads * config.head_dim:
                want = [heads * config.head_dim, config.dim]
                raise CheckpointError(path, f"has shape {list(tensor.shape)}, expected {want}", file_name)
            tensor = interleaved_to_halves(tensor, heads)
        yield Entry(name, tensor, str(path), file_name)


def hf_entries(directory: Path) -> Iterator[Entry]:
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
    for shard in shards:
        path = directory / shard
        for file_name, tensor in read_safetensors(path):
            if weight_map and weight_map.get(file_name) != shard:
                raise CheckpointError(path, f"tensor is not listed for this shard in {HF_INDEX}", file_name)
            yield Entry(file_name, tensor, str(path), file_name)
