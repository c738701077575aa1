"""GGML blocks as the file stores them, unpacked to the input's dtype at every use
(`autan.kernels.blocks`): the exact path, which computes what the reference computes from a
GGUF file, for `kernels="exact"`, fine-tuning, a GPU, and the matrices no packed kernel takes."""

from __future__ import annotations

import torch
from gguf import GGMLQuantizationType
from torch import Tensor

from autan.kernels.base import Unpacked
from autan.kernels.blocks import QuantizedWeight


class Exact(Unpacked):
    family = "exact"

    def __init__(self, blocks: QuantizedWeight):
        """A (rows, cols) matrix of GGML blocks; the module is kept, not copied (a tied head
        shares the embedding's)."""
        super().__init__(*blocks.shape)
        self.blocks = blocks

    @property
    def qtype(self) -> GGMLQuantizationType:
        return self.blocks.qtype

    def unpacked(self, dtype: torch.dtype) -> Tensor:
        return self.blocks.dequantize(dtype).t()
