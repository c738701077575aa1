"""Rotary position embeddings in the "rotate halves" layout of Hugging Face transformers.

Mistral's and Meta's checkpoints (and GGUF files) rotate interleaved pairs instead; the loaders
permute the rows of wq and wk once (`autan.weights.names.interleaved_to_halves`), so the model
needs only this one layout.
"""

from __future__ import annotations

import torch
from torch import Tensor


def inverse_frequencies(head_dim: int, theta: float, device: torch.device | None = None) -> Tensor:
    exponents = torch.arange(0, head_dim, 2, dtype=torch.int64, device=device).float() / head_dim
    return 1.0 / (theta**exponents)  # (head_dim/2,)


def rope_cos_sin(positions: Tensor, inv_freq: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """cos and sin of each position's angles, (T, 1, head_dim), for `apply_rope`.

    The sin's first half is negated: rotating halves is then one roll, x * cos + roll(x) * sin,
    which is Hugging Face's x * cos + cat(-x2, x1) * sin with the same products and sums.
    """
    freqs = positions.float()[:, None] * inv_freq[None, :]  # (T, head_dim/2)
    angles = torch.cat([freqs, freqs], dim=-1)[:, None, :]  # (T, 1, head_dim)
    sin = angles.sin()
    sin[..., : freqs.shape[-1]].neg_()
    return angles.cos().to(dtype), sin.to(dtype)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate x (T, heads, head_dim) by the angles of its positions (from `rope_cos_sin`)."""
    return x * cos + x.roll(x.shape[-1] // 2, dims=-1) * sin
