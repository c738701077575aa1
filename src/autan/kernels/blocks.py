"""GGML's block-quantized weights, kept packed in memory and dequantized where they are used.

A quantized matrix of shape (rows, cols) is stored as uint8 (rows, cols // block * type_size):
each row is a run of blocks, so rows can be gathered (embedding lookup, expert selection,
RoPE row permutation) without unpacking. The unpacking below is a torch port of the block
layouts in ggml-quants.c, written to give bit-identical float32 results to `gguf.quants`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from gguf import GGMLQuantizationType as Q
from torch import Tensor, nn

QK_K = 256  # elements in one K-quant super-block


def _f16(blocks: Tensor, start: int) -> Tensor:
    """The float16 stored at bytes [start, start+2) of each block, as a (n, 1) float32 column."""
    return blocks[:, start : start + 2].contiguous().view(torch.float16).float()


def _nibbles(qs: Tensor, group: int) -> Tensor:
    """Split bytes into 4-bit values: within each run of `group` bytes, low nibbles then high."""
    n = qs.shape[0]
    qs = qs.reshape(n, -1, 1, group) >> _shifts(qs, (0, 4)).reshape(1, 1, 2, 1)
    return (qs & 0x0F).reshape(n, -1)


def _shifts(like: Tensor, values: tuple[int, ...]) -> Tensor:
    return torch.tensor(values, dtype=torch.uint8, device=like.device)


def _dequant_q8_0(b: Tensor) -> Tensor:
    return b[:, 2:].contiguous().view(torch.int8).float() * _f16(b, 0)


def _dequant_q4_0(b: Tensor) -> Tensor:
    return _f16(b, 0) * (_nibbles(b[:, 2:], 16).to(torch.int8) - 8).float()


def _dequant_q4_1(b: Tensor) -> Tensor:
    return _f16(b, 0) * _nibbles(b[:, 4:], 16).float() + _f16(b, 2)


def _high_bits(qh: Tensor) -> Tensor:
    """Q5_0/Q5_1 keep each value's fifth bit in a little-endian uint32: bit j for value j."""
    n = qh.shape[0]
    return ((qh.reshape(n, 4, 1) >> _shifts(qh, tuple(range(8))).reshape(1, 1, 8)) & 1).reshape(n, 32)


def _dequant_q5_0(b: Tensor) -> Tensor:
    q = _nibbles(b[:, 6:], 16) | (_high_bits(b[:, 2:6]) << 4)
    return _f16(b, 0) * (q.to(torch.int8) - 16).float()


def _dequant_q5_1(b: Tensor) -> Tensor:
    q = _nibbles(b[:, 8:], 16) | (_high_bits(b[:, 4:8]) << 4)
    return _f16(b, 0) * q.float() + _f16(b, 2)


def _k_scales(scales: Tensor) -> tuple[Tensor, Tensor]:
    """Q4_K/Q5_K pack eight 6-bit scales and eight 6-bit mins into 12 bytes.

    Bytes 0-3 hold scales 0-3 in their low 6 bits, bytes 4-7 mins 0-3; scales and mins 4-7 keep
    their low 4 bits in bytes 8-11 (scale low, min high) and their top 2 bits in the top 2 bits
    of bytes 0-3 (scales) and 4-7 (mins).
    """
    n = scales.shape[0]
    d, m, md = scales.reshape(n, 3, 4).unbind(1)
    sc = torch.cat([d & 0x3F, (md & 0x0F) | ((d >> 2) & 0x30)], dim=-1)
    mn = torch.cat([m & 0x3F, (md >> 4) | ((m >> 2) & 0x30)], dim=-1)
    return sc.float(), mn.float()


def _dequant_q4_k(b: Tensor) -> Tensor:
    n = b.shape[0]
    sc, mn = _k_scales(b[:, 4:16])
    scale = (_f16(b, 0) * sc).reshape(n, 8, 1)
    minimum = (_f16(b, 2) * mn).reshape(n, 8, 1)
    q = _nibbles(b[:, 16:], 32).reshape(n, 8, 32).float()
    return (scale * q - minimum).reshape(n, QK_K)


def _dequant_q5_k(b: Tensor) -> Tensor:
    n = b.shape[0]
    sc, mn = _k_scales(b[:, 4:16])
    scale = (_f16(b, 0) * sc).reshape(n, 8, 1)
    minimum = (_f16(b, 2) * mn).reshape(n, 8, 1)
    low = _nibbles(b[:, 48:], 32).reshape(n, 8, 32)
    high = (b[:, 16:48].reshape(n, 1, 1, 32) >> _shifts(b, tuple(range(8))).reshape(1, 1, 8, 1)) & 1
    q = (low | (high.reshape(n, 8, 32) << 4)).float()
    return (scale * q - minimum).reshape(n, QK_K)


def _dequant_q6_k(b: Tensor) -> Tensor:
    n = b.shape[0]
    scale = (b[:, 192:208].contiguous().view(torch.int8).float() * _f16(b, 208)).reshape(n, 16, 1)
    low = _nibbles(b[:, :128], 64).reshape(n, 8, 32)
    high = (b[:, 128:192].reshape(n, 2, 1, 32) >> _shifts(b, (0, 2, 4, 6)).reshape(1, 1, 4, 1)) & 3
    q = (low | (high.reshape(n, 8, 32) << 4)).to(torch.int8) - 32
    return (scale * q.reshape(n, 16, 16).float()).reshape(n, QK_K)


# qtype -> (elements per block, bytes per block, block dequantizer (n, bytes) -> (n, elements))
QUANT_TYPES: dict[Q, tuple[int, int, Callable[[Tensor], Tensor]]] = {
    Q.Q8_0: (32, 34, _dequant_q8_0),
    Q.Q4_0: (32, 18, _dequant_q4_0),
    Q.Q4_1: (32, 20, _dequant_q4_1),
    Q.Q5_0: (32, 22, _dequant_q5_0),
    Q.Q5_1: (32, 24, _dequant_q5_1),
    Q.Q4_K: (QK_K, 144, _dequant_q4_k),
    Q.Q5_K: (QK_K, 176, _dequant_q5_k),
    Q.Q6_K: (QK_K, 210, _dequant_q6_k),
}


def packed_row_bytes(qtype: Q, cols: int) -> int:
    block, type_size, _ = QUANT_TYPES[qtype]
    if cols % block:
        raise ValueError(f"a row of {cols} values is not a whole number of {qtype.name} blocks of {block}")
    return cols // block * type_size


def dequantize(packed: Tensor, qtype: Q, dtype: torch.dtype = torch.float32) -> Tensor:
    """Unpack (..., rows, row_bytes) uint8 into (..., rows, cols) of `dtype`."""
    block, type_size, unpack = QUANT_TYPES[qtype]
    *lead, row_bytes = packed.shape
    values = unpack(packed.reshape(-1, type_size))  # (n_blocks, block) float32
    return values.reshape(*lead, row_bytes // type_size * block).to(dtype)


class QuantizedWeight(nn.Module):
    """A weight of logical shape (..., rows, cols) held as GGML blocks; unpacked on use."""

    def __init__(self, packed: Tensor, qtype: Q, shape: tuple[int, ...]):
        super().__init__()
        expected = (*shape[:-1], packed_row_bytes(qtype, shape[-1]))
        if tuple(packed.shape) != expected or packed.dtype != torch.uint8:
            raise ValueError(f"{qtype.name} data {tuple(packed.shape)} {packed.dtype} != uint8 {expected}")
        self.qtype = qtype
        self.shape = tuple(shape)
        self.register_buffer("packed", packed)

    def dequantize(self, dtype: torch.dtype) -> Tensor:
        return dequantize(self.packed, self.qtype, dtype)

    def take(self, index: Tensor, dtype: torch.dtype) -> Tensor:
        """Rows (or experts) `index` along the first dimension, unpacked: only those are touched."""
        return dequantize(self.packed[index], self.qtype, dtype)

    def extra_repr(self) -> str:
        return f"{self.qtype.name}, shape={self.shape}"


Weight = Tensor | QuantizedWeight


def take(weight: Weight, index: Tensor, dtype: torch.dtype) -> Tensor:
    """`weight[index]` as a dense tensor of `dtype`, unpacking only the rows taken."""
    if isinstance(weight, QuantizedWeight):
        return weight.take(index, dtype)
    return weight[index].to(dtype)
