"""autan: run Mistral-family models on your own hardware, offline."""

from autan.config import ModelConfig, MoeConfig
from autan.errors import AutanError, CheckpointError, ContextLengthError, UnsupportedModelError
from autan.model import KVCache, Transformer
from autan.weights import load_config, load_model

__all__ = [
    "AutanError",
    "CheckpointError",
    "ContextLengthError",
    "KVCache",
    "ModelConfig",
    "MoeConfig",
    "Transformer",
    "UnsupportedModelError",
    "load_config",
    "load_model",
]
__version__ = "0.1.0"
