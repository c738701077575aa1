"""The model core: one Transformer for Llama, Mistral and Mixtral, its cache and packed weights."""

from autan.model.cache import KVCache
from autan.model.transformer import Transformer

__all__ = ["KVCache", "Transformer"]
