"""Where a model's constructor takes its weights: `Parts` gives each map its kernel and every
other tensor its value, by Hugging Face's names, as the model is built. The loader's parts read a
checkpoint (`autan.weights`); `Fresh` gives empty float ones, to be filled or only surveyed."""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

from autan.kernels import Dense, Kernel
from autan.kernels.blocks import Weight


class Parts(Protocol):
    def map(self, name: str, shape: tuple[int, int], role: str) -> Kernel:
        """The kernel of the (out, in) matrix `name` for its role ("map", "head", "router")."""
        ...

    def expert(self, name: str, shape: tuple[int, int, int], index: int) -> Kernel:
        """The kernel of expert `index` of the stacked (experts, out, in) matrices `name`."""
        ...

    def tensor(self, name: str, shape: tuple[int, ...]) -> Weight:
        """Any other weight (a norm, a bias, the token embedding), as it is held."""
        ...


class Fresh:
    """Uninitialised float weights (on the current default device: `meta` to only survey the
    names and shapes a model asks for, which `asked` records)."""

    def __init__(self, dtype: torch.dtype = torch.float32):
        self.dtype = dtype
        self.asked: dict[str, tuple[int, ...]] = {}

    def map(self, name: str, shape: tuple[int, int], role: str) -> Kernel:
        return Dense(self.tensor(name, shape))

    def expert(self, name: str, shape: tuple[int, int, int], index: int) -> Kernel:
        self.asked[name] = shape
        return Dense(torch.empty(shape[1:], dtype=self.dtype))

    def tensor(self, name: str, shape: tuple[int, ...]) -> Weight:
        self.asked[name] = shape
        return nn.Parameter(torch.empty(shape, dtype=self.dtype))
