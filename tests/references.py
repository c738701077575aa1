"""What the tests use and the product does not: the inverses of the loader's maps (to write a
checkpoint in Mistral's or GGUF's layout from Hugging Face's), and slow, plain references of
what the native kernels do (the repack of GGML blocks into four-row groups, the matrix a packed
kernel multiplies by)."""

from __future__ import annotations

import re

import torch
from gguf import GGMLQuantizationType as Q
from torch import Tensor

from autan.kernels import Kernel, NativeGgml, TorchInt8
from autan.kernels.native import GROUP_ROWS
from autan.weights.names import GGUF_EXPERT, GGUF_TO_HF, GGUF_TO_HF_LAYER, MISTRAL_TO_HF, MISTRAL_TO_HF_LAYER

_HF_LAYER = re.compile(r"^model\.layers\.(\d+)\.(.+)$")
_HF_EXPERT = re.compile(r"^block_sparse_moe\.experts\.(\d+)\.(w[123])\.weight$")


def _from_hf(name: str, top: dict[str, str], layer: dict[str, str], prefix: str, expert) -> str | None:
    """Hugging Face's `name` in another layout, by inverting the loader's tables; None if unknown."""
    top, layer = {v: k for k, v in top.items()}, {v: k for k, v in layer.items()}
    if name in top:
        return top[name]
    m = _HF_LAYER.match(name)
    if not m:
        return None
    e = _HF_EXPERT.match(m[2])
    rest = layer.get(m[2]) or (expert(e[1], e[2]) if e else None)
    return f"{prefix}.{m[1]}.{rest}" if rest else None


def hf_to_mistral(name: str) -> str | None:
    """`model.layers.3.self_attn.q_proj.weight` -> `layers.3.attention.wq.weight`."""
    return _from_hf(name, MISTRAL_TO_HF, MISTRAL_TO_HF_LAYER, "layers",
                    lambda e, w: f"feed_forward.experts.{e}.{w}.weight")  # fmt: skip


def hf_to_gguf(name: str) -> str | None:
    """`model.layers.3.self_attn.q_proj.weight` -> `blk.3.attn_q.weight`."""
    gguf_expert = {v: k for k, v in GGUF_EXPERT.items()}
    return _from_hf(name, GGUF_TO_HF, GGUF_TO_HF_LAYER, "blk", lambda e, w: f"{gguf_expert[w]}.{e}.weight")


def halves_to_interleaved(w: Tensor, n_heads: int) -> Tensor:
    """The inverse of `interleaved_to_halves`."""
    rows, cols = w.shape
    return w.reshape(n_heads, 2, rows // n_heads // 2, cols).transpose(1, 2).reshape(rows, cols)


# per GGML type: bytes of a block, and of its scales (d, or d and m) before the quantized values
BLOCK_PARTS = {Q.Q4_0: (18, 2), Q.Q4_1: (20, 4), Q.Q8_0: (34, 2)}


def repack(blocks: Tensor, qtype: Q) -> Tensor:
    """GGUF rows of blocks (N, B * size) -> four-row groups (N / 4, B * 4 * size), the native
    kernels' layout: per group and block position, the four rows' d (f16 x 4), then for Q4_1
    their m, then their quantized values, row after row (csrc/formats.h). `autan._native.repack`
    does this at load in one pass; this is its reference in the tests."""
    size, scales = BLOCK_PARTS[qtype]
    n = blocks.shape[0]
    grouped = blocks.reshape(n // GROUP_ROWS, GROUP_ROWS, -1, size).transpose(1, 2)  # (G, B, 4, size)
    parts = [grouped[..., i : i + 2] for i in range(0, scales, 2)] + [grouped[..., scales:]]
    return torch.cat([p.flatten(2) for p in parts], dim=-1).reshape(n // GROUP_ROWS, -1).contiguous()


def unrepack(groups: Tensor, qtype: Q) -> Tensor:
    """The inverse of `repack`: the GGUF rows of blocks (N, B * size)."""
    size, scales = BLOCK_PARTS[qtype]
    g = groups.shape[0]
    by_block = groups.reshape(g, -1, GROUP_ROWS * size)  # (G, B, 4 * size)
    cut = [GROUP_ROWS * 2] * (scales // 2) + [GROUP_ROWS * (size - scales)]
    parts = [p.reshape(g, p.shape[1], GROUP_ROWS, -1) for p in by_block.split(cut, dim=-1)]
    return torch.cat(parts, dim=-1).transpose(1, 2).reshape(g * GROUP_ROWS, -1).contiguous()


def dequantized(kernel: Kernel) -> Tensor:
    """The float32 matrix a kernel multiplies by (for tests and error bounds): its int8 values
    times their scales, its blocks unpacked, or read back by multiplying the identity."""
    if isinstance(kernel, TorchInt8):
        return kernel.weight.float() * kernel.scales.float()[:, None]
    if isinstance(kernel, NativeGgml) or kernel.exact:
        return kernel.unpacked(torch.float32).t()
    eye = torch.eye(kernel.in_features)
    return kernel.product(eye).float().t()
