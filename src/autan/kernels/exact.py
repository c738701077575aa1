"""GGML blocks as the file stores them, unpacked to the input's dtype at every use
(`autan.kernels.blocks`): the exact path, which computes what the reference computes from a
GGUF file, for `kernels="exact"`, fine-tuning, a GPU, and the matrices no packed kernel takes."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from gguf import GGMLQuantizationType
from torch import Tensor

from autan.kernels.base import Kernel
from autan.kernels.blocks import QuantizedWeight


class Exact(Kernel):
    family = "exact"
    exact = True

    def __init__(self, blocks: QuantizedWeight):
        """A (rows, cols) matrix of GGML blocks; the module is kept, not copied (a tied head
        shares the embedding's)."""
        super().__init__(*blocks.shape)
        self.blocks = blocks

    @property
    def qtype(self) -> GGMLQuantizationType:
        return self.blocks.qtype

    def forward(self, x: Tensor, bias: Tensor | None = None) -> Tensor:
        return F.linear(x, self.blocks.dequantize(x.dtype), None if bias is None else bias.to(x.dtype))

    def product(self, x: Tensor) -> Tensor:
        return self(x)

    @property
    def unpacks(self) -> bool:
        return True

    def unpacked(self, dtype: torch.dtype) -> Tensor:
        return self.blocks.dequantize(dtype).t()
