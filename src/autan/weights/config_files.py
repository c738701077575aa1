"""A checkpoint's shape, from its header alone, and the ways it can load: no weights read, no
torch imported."""

from __future__ import annotations

from pathlib import Path

from autan.config import ModelConfig
from autan.errors import CheckpointError
from autan.weights.gguf_reader import read_header

# What a GGUF file's blocks become at load (`load_model`'s `kernels`): packed kernels, the blocks
# unpacked at each use, or unpacked once.
KERNELS = ("packed", "exact", "dense")


def load_config(path: str | Path) -> ModelConfig:
    """The `ModelConfig` of a checkpoint directory or `.gguf` file, without reading weights."""
    path = Path(path)
    if path.is_file():
        metadata, tensors = read_header(path)
        return ModelConfig.from_gguf_metadata(path, metadata, {t.name for t in tensors})
    kind = directory_kind(path)
    if kind == "params.json":
        return ModelConfig.from_params_json(path / kind)
    return ModelConfig.from_hf_config(path / kind)


def directory_kind(path: Path) -> str:
    if not path.exists():
        raise CheckpointError(path, "no such file or directory")
    if not path.is_dir():
        raise CheckpointError(path, "expected a .gguf file or a checkpoint directory")
    for name in ("params.json", "config.json"):
        if (path / name).is_file():
            return name
    raise CheckpointError(path, "neither params.json (Mistral's format) nor config.json (Hugging Face's) is here")
