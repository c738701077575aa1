"""Float matrices multiplied by PyTorch (BLAS on a CPU, cuBLAS on a GPU): a Hugging Face or
Mistral checkpoint's weights as stored, a GGUF file's F32/F16/BF16 matrices, and the file's
blocks unpacked once at load (`kernels="dense"`). The exact path: the reference's product."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from autan.kernels.base import Unpacked


class Dense(Unpacked):
    family = "dense"

    def __init__(self, weight: Tensor):
        """`weight` (out_features, in_features), kept in its own dtype and cast to the input's at
        each use; a Parameter stays the same Parameter (a tied head shares the embedding's)."""
        super().__init__(*weight.shape)
        self.weight = weight if isinstance(weight, nn.Parameter) else nn.Parameter(weight, requires_grad=False)

    def unpacked(self, dtype: torch.dtype) -> Tensor:
        weight = self.weight if self.weight.dtype == dtype else self.weight.to(dtype)
        return weight.t()

    @property
    def holds(self) -> str:
        return str(self.weight.dtype).removeprefix("torch.")
