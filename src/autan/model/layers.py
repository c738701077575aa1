"""The small layers every block is made of: linear maps over dense or packed weights (with the
LoRA adapters loaded into them, by slot: `autan.model.lora`), the token embedding, and RMSNorm."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from autan.kernels import Kernel
from autan.kernels.blocks import Weight, materialize, take


class Linear(nn.Module):
    """y = x W^T with W dense, GGML-quantized (unpacked at each use: `autan.kernels.blocks`) or
    packed at load for a kernel that multiplies it as it is (`autan.kernels`); plus, where
    adapters are loaded, each row's LoRA product (`autan.model.lora`)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight: Weight | Kernel = nn.Parameter(torch.empty(out_features, in_features))
        self.bias: Tensor | None = nn.Parameter(torch.empty(out_features)) if bias else None
        self.lora: nn.Module | None = None  # its adapters (`autan.model.lora.LinearLora`), once loaded

    def forward(self, x: Tensor) -> Tensor:
        bias = None if self.bias is None else self.bias.to(x.dtype)
        if isinstance(self.weight, Kernel):
            y = self.weight(x)
            y = y if bias is None else y + bias
        else:
            y = F.linear(x, materialize(self.weight, x.dtype), bias)
        return y if self.lora is None else self.lora(x, y)


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
