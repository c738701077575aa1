"""autan: run Mistral-family models on your own hardware, offline.

The names below are imported when first used, so `autan --help` and `autan list` start without
loading torch."""

from __future__ import annotations

import importlib
from typing import Any

from autan.errors import AutanError, CheckpointError, ContextLengthError, UnsupportedModelError

__version__ = "0.1.0"
_LAZY = {
    "ModelConfig": "autan.config",
    "MoeConfig": "autan.config",
    "KVCache": "autan.model",
    "Transformer": "autan.model",
    "load_config": "autan.weights",
    "load_model": "autan.weights",
}
__all__ = ["AutanError", "CheckpointError", "ContextLengthError", "UnsupportedModelError", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'autan' has no attribute '{name}'")
