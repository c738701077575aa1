"""Reading checkpoints into the model: Mistral's format, Hugging Face's, and GGUF.

`load_config` reads headers only and imports no torch; `load_model` and `read_safetensors`
bring torch in when first used."""

from __future__ import annotations

from typing import Any

from autan.weights.config_files import KERNELS, load_config

__all__ = ["KERNELS", "load_config", "load_model", "read_safetensors"]


def __getattr__(name: str) -> Any:
    if name == "load_model":
        from autan.weights.loading import load_model

        return load_model
    if name == "read_safetensors":
        from autan.weights.safetensors_files import read_safetensors

        return read_safetensors
    raise AttributeError(f"module 'autan.weights' has no attribute '{name}'")
