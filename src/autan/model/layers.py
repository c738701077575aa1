"""The small layers every block is made of: a linear map (one kernel, whatever its family, plus
the LoRA adapters loaded into it, by slot: `autan.model.lora`), the token embedding, and RMSNorm.
Each is given its weights when built (`autan.model.parts`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from autan.kernels import Kernel
from autan.kernels.blocks import Weight, take
from autan.model.parts import Parts


class Linear(nn.Module):
    """y = x W^T + b, W held by its kernel (`autan.kernels`), plus, where adapters are loaded,
    each row's LoRA product."""

    def __init__(self, kernel: Kernel, bias: Tensor | None = None):
        super().__init__()
        self.kernel = kernel
        self.bias = bias
        self.lora: nn.Module | None = None  # its adapters (`autan.model.lora.LinearLora`), once loaded

    @classmethod
    def of(cls, parts: Parts, name: str, out_features: int, in_features: int, bias: bool = False,
           role: str = "map") -> Linear:  # fmt: skip
        """The map `name` (e.g. `model.layers.0.self_attn.q_proj`) as `parts` gives it."""
        kernel = parts.map(f"{name}.weight", (out_features, in_features), role)
        return cls(kernel, parts.tensor(f"{name}.bias", (out_features,)) if bias else None)

    @property
    def in_features(self) -> int:
        return self.kernel.in_features

    @property
    def out_features(self) -> int:
        return self.kernel.out_features

    def forward(self, x: Tensor) -> Tensor:
        y = self.kernel(x, self.bias)
        return y if self.lora is None else self.lora(x, y)


class Embedding(nn.Module):
    def __init__(self, weight: Weight):
        super().__init__()
        self.weight = weight

    def forward(self, tokens: Tensor, dtype: torch.dtype) -> Tensor:
        return take(self.weight, tokens, dtype)


class RMSNorm(nn.Module):
    def __init__(self, weight: Tensor, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = weight

    def forward(self, x: Tensor) -> Tensor:
        # x * rsqrt(mean(x^2) + eps) in float32 whatever the compute dtype, as the reference does
        # (one fused kernel), then the weight in the compute dtype.
        return self.weight * F.rms_norm(x.float(), self.weight.shape, eps=self.eps).to(x.dtype)
