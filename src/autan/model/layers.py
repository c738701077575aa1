"""The small layers every block is made of: linear maps over dense or packed weights (with the
LoRA adapters loaded into them, by slot: `autan.model.lora` reads and attaches those), the
token embedding, and RMSNorm."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from autan.model.kernels import PackedLinear
from autan.model.quant import Weight, materialize, take


class Linear(nn.Module):
    """y = x W^T with W dense, GGML-quantized (unpacked at each use: `autan.model.quant`) or
    packed at load for a kernel that multiplies it as it is (`autan.model.kernels`); plus, where
    adapters are loaded, each row's LoRA product (`autan.model.lora`)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight: Weight | PackedLinear = nn.Parameter(torch.empty(out_features, in_features))
        self.bias: Tensor | None = nn.Parameter(torch.empty(out_features)) if bias else None
        self.lora: LinearLora | None = None

    def forward(self, x: Tensor) -> Tensor:
        bias = None if self.bias is None else self.bias.to(x.dtype)
        if isinstance(self.weight, PackedLinear):
            y = self.weight(x)
            y = y if bias is None else y + bias
        else:
            y = F.linear(x, materialize(self.weight, x.dtype), bias)
        return y if self.lora is None else self.lora(x, y)


class Rows:
    """Which slot each token row of the current forward pass uses, shared by every adapted map:
    `value` is None (all the base model), one slot for every row, or a (N,) tensor of slots;
    `groups` are the rows of each slot, found once a pass rather than once a map."""

    def __init__(self) -> None:
        self.value: int | Tensor | None = None
        self.groups: list[tuple[str, Tensor]] = []

    def set(self, value: int | Tensor | None) -> None:
        self.value = value
        self.groups = []
        if isinstance(value, Tensor):
            slots, inverse = value.unique(return_inverse=True)
            order = inverse.argsort(stable=True)
            counts = torch.bincount(inverse, minlength=len(slots)).tolist()
            self.groups = [(str(s), i) for s, i in zip(slots.tolist(), order.split(counts), strict=True) if s != 0]


class LinearLora(nn.Module):
    """The adapters of one linear map, by slot."""

    def __init__(self, rows: Rows, dropout: float = 0.0):
        super().__init__()
        self.rows = rows
        self.a = nn.ParameterDict()  # slot -> (r, in)
        self.b = nn.ParameterDict()  # slot -> (out, r)
        self.scales: dict[str, float] = {}
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()

    def add(self, slot: int, a: Tensor, b: Tensor, scale: float, trainable: bool = False) -> None:
        self.a[str(slot)] = nn.Parameter(a, requires_grad=trainable)
        self.b[str(slot)] = nn.Parameter(b, requires_grad=trainable)
        self.scales[str(slot)] = scale

    def remove(self, slot: int) -> None:
        for table in (self.a, self.b):
            if str(slot) in table:
                del table[str(slot)]
        self.scales.pop(str(slot), None)

    def delta(self, x: Tensor, slot: str) -> Tensor:
        a, b = self.a[slot].to(x.dtype), self.b[slot].to(x.dtype)
        return (self.dropout(x) @ a.t() @ b.t()) * self.scales[slot]

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        rows = self.rows.value
        if rows is None:
            return y
        if isinstance(rows, int):
            return y + self.delta(x, str(rows)) if str(rows) in self.a else y
        for slot, index in self.rows.groups:
            if slot in self.a:
                y = y.index_add(0, index, self.delta(x[index], slot))
        return y


class Embedding(nn.Module):
    def __init__(self, vocab_size: int, dim: int):
        super().__init__()
        self.weight: Weight = nn.Parameter(torch.empty(vocab_size, dim))

    def forward(self, tokens: Tensor, dtype: torch.dtype) -> Tensor:
        return take(self.weight, tokens, dtype)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.empty(dim))

    def forward(self, x: Tensor) -> Tensor:
        # x * rsqrt(mean(x^2) + eps) in float32 whatever the compute dtype, as the reference does
        # (one fused kernel), then the weight in the compute dtype.
        return self.weight * F.rms_norm(x.float(), self.weight.shape, eps=self.eps).to(x.dtype)
