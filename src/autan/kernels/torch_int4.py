"""PyTorch's own int4 kernel (group-wise, bfloat16 activations), for machines without the native
build.

GGML's 4-bit blocks map onto PyTorch's int4 group-wise layout exactly: a group of 32 values
with a scale and an offset, w = (q - 8) * scale + zero. Q4_0 is d * (q - 8), so scale = d and
zero = 0; Q4_1 is d * q + m, so scale = d and zero = m + 8d; Q4_K's sub-blocks are
d * sc * q - dmin * mn, so scale = d * sc and zero = 8 * scale - dmin * mn. Their scales are
held in bfloat16, and the kernel multiplies bfloat16 activations: that rounding is the only
difference from unpacking (bounded in the tests). Dense matrices are quantized to the same
layout (`quantize`).
"""

from __future__ import annotations

import functools

import torch
from gguf import GGMLQuantizationType as Q
from torch import Tensor

from autan.kernels.base import Kernel
from autan.kernels.blocks import QK_K, QuantizedWeight, _f16, _k_scales, _nibbles

GROUP = 32
INNER_K_TILES = 2  # the int4 layout wants K divisible by INNER_K_TILES * 16
INT4_ROWS = 16  # the int4 layout wants the output rows (N) divisible by this
TYPES = (Q.Q4_0, Q.Q4_1, Q.Q4_K)  # the GGML types it maps exactly


class TorchInt4(Kernel):
    family = "int4"

    def __init__(self, weight: QuantizedWeight | Tensor):
        """GGUF 4-bit blocks (one of `TYPES`), mapped exactly, or a dense matrix, quantized."""
        rows, cols = weight.shape
        super().__init__(rows, cols)
        q, scale, zero = _parts(weight) if isinstance(weight, QuantizedWeight) else quantize(weight)
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q.to(torch.int32).contiguous(), INNER_K_TILES)
        self.register_buffer("weight", packed)
        # (K / 32, N, 2): each group's scale and offset
        self.register_buffer("scales", torch.stack([scale.t(), zero.t()], dim=-1).to(torch.bfloat16).contiguous())

    def product(self, x: Tensor) -> Tensor:
        return torch.ops.aten._weight_int4pack_mm_for_cpu(x.to(torch.bfloat16), self.weight, GROUP, self.scales)

    @property
    def unpacks(self) -> bool:
        block = int4_block_n()
        return block is not None and self.out_features % block == 0

    def unpacked(self, dtype: torch.dtype) -> Tensor:
        """PyTorch's CPU int4 layout is (N / B, K, B / 2) bytes: the low nibble holds output n of a
        block of B outputs, the high nibble output n + B / 2 (B from `int4_block_n`). The nibbles
        are put in (K, N) order while still bytes, the cheapest time to move them."""
        n, k, block = self.out_features, self.weight.shape[1] * 2, int4_block_n()
        assert block is not None, "no known int4 layout on this CPU: unpacks is False"
        blocks = self.weight.view(n // block, k, block // 2)
        q = torch.cat([blocks & 15, blocks >> 4], dim=-1).transpose(0, 1).reshape(k // GROUP, GROUP, n)
        scale, zero = self.scales.to(dtype).unbind(-1)  # (K / 32, N) each: w = (q - 8) * scale + zero
        return q.to(dtype).mul_(scale[:, None]).add_((zero - 8 * scale)[:, None]).view(k, n)  # in place


def fits(shape: tuple[int, ...]) -> bool:
    """Whether PyTorch's int4 layout takes a (rows, cols) matrix."""
    return len(shape) == 2 and shape[1] % (INNER_K_TILES * 16) == 0 and shape[0] % INT4_ROWS == 0


@functools.cache
def int4_block_n() -> int | None:
    """Output columns per block of PyTorch's CPU int4 layout, found by packing a known matrix.

    The layout depends on the CPU PyTorch runs on: blocks of 64 outputs with AVX-512, of 32
    with AVX2 only (both seen). None if the packing matches no layout of that family.
    """
    n, k = 128, 64
    q = torch.randint(0, 16, (n, k), generator=torch.Generator().manual_seed(0), dtype=torch.int32)
    packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, INNER_K_TILES)
    for block in (64, 32, 16):
        low, high = q.view(n // block, 2, block // 2, k).transpose(2, 3).unbind(1)  # (N / B, K, B / 2) each
        if torch.equal((low | high << 4).to(torch.uint8).reshape(packed.shape), packed):
            return block
    return None


def _parts(weight: QuantizedWeight) -> tuple[Tensor, Tensor, Tensor]:
    rows, cols = weight.shape
    qtype, data = weight.qtype, weight.packed
    if qtype == Q.Q4_0:
        b = data.reshape(-1, 18)
        d = _f16(b, 0)
        q, scale, zero = _nibbles(b[:, 2:], 16), d, torch.zeros_like(d)
    elif qtype == Q.Q4_1:
        b = data.reshape(-1, 20)
        d, m = _f16(b, 0), _f16(b, 2)
        q, scale, zero = _nibbles(b[:, 4:], 16), d, m + 8 * d
    else:  # Q4_K: super-blocks of 256 = 8 groups of 32, each with a 6-bit scale and min
        b = data.reshape(-1, 144)
        d, dmin = _f16(b, 0), _f16(b, 2)
        sc, mn = _k_scales(b[:, 4:16])  # (n, 8)
        q = _nibbles(b[:, 16:], 32)  # (n, 256), in group order
        scale = d * sc
        zero = 8 * scale - dmin * mn
        q, scale, zero = q.reshape(-1, GROUP), scale.reshape(-1, 1), zero.reshape(-1, 1)
        assert QK_K == 8 * GROUP
    return q.reshape(rows, cols), scale.reshape(rows, cols // GROUP), zero.reshape(rows, cols // GROUP)


def quantize(weight: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Group-wise asymmetric int4 of a dense (rows, cols) matrix: each group of 32 spans its own
    minimum to maximum in 15 steps, with the scale and offset rounded to bfloat16 first, so the
    values are rounded against the grid the kernel will use."""
    rows, cols = weight.shape
    groups = weight.float().reshape(rows, cols // GROUP, GROUP)
    low, high = groups.amin(-1), groups.amax(-1)
    scale = ((high - low) / 15).clamp(min=1e-8).to(torch.bfloat16).float()
    zero = (low + 8 * scale).to(torch.bfloat16).float()
    q = torch.round((groups - (zero - 8 * scale)[..., None]) / scale[..., None]).clamp(0, 15)
    return q.reshape(rows, cols).to(torch.uint8), scale, zero
