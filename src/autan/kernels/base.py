"""What every kernel family offers: the product `x @ W.T` (plus a bias) for any number of rows,
and what it holds in memory. A family says how it multiplies (`product`) and, where it can, the
float matrix it multiplies by (`unpacked`), which a product of many rows uses instead
(`full_width`). The exact families (`dense.py`, `exact.py`) multiply the float matrix itself, as
the reference does, and say so (`exact`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

FULL_WIDTH_FROM = 64  # rows from which a product unpacks its weights and runs in float32


class Kernel(nn.Module):
    """y = x W^T for a (out_features, in_features) map held in the family's own format."""

    family = ""  # how `autan inspect` names it
    qtype = None  # the GGML type of the blocks it holds as the file stored them, if it does
    exact = False  # whether it multiplies the float matrix itself, as the reference computes

    def __init__(self, out_features: int, in_features: int):
        super().__init__()
        self.out_features, self.in_features = out_features, in_features
        self.logits = False  # the output head: float32 results even for one row (see the int8 family)

    def forward(self, x: Tensor, bias: Tensor | None = None) -> Tensor:
        flat = x if x.ndim == 2 else x.reshape(-1, x.shape[-1])
        if not len(flat):  # no rows: a prefill chunk whose logits nobody needs
            return x.new_zeros(*x.shape[:-1], self.out_features)
        wide = self.full_width_from
        if wide is not None and len(flat) >= wide and x.dtype == torch.float32 and self.unpacks:
            y = self.full_width(flat)
        else:
            y = self.product(flat)
        y = y.to(x.dtype) if x.ndim == 2 else y.to(x.dtype).reshape(*x.shape[:-1], self.out_features)
        return y if bias is None else y + bias.to(x.dtype)

    def product(self, x: Tensor) -> Tensor:
        """x (M, K) -> (M, N), in the dtype the kernel gives (bfloat16 or float32)."""
        raise NotImplementedError

    @property
    def full_width_from(self) -> int | None:
        """Rows from which a float32 product unpacks the weights (`full_width`); None: never."""
        return FULL_WIDTH_FROM

    @property
    def unpacks(self) -> bool:
        """Whether `unpacked` can give the float matrix (on this CPU)."""
        return False

    def unpacked(self, dtype: torch.dtype) -> Tensor:
        """The weights as float: W^T, (K, N)."""
        raise NotImplementedError(f"the {self.family} kernel keeps no float form of its weights")

    def full_width(self, x: Tensor) -> Tensor:
        """Many rows (a prompt): the weights unpacked to float32 for this one product, so the BLAS
        kernel runs at full width; unpacking costs less than the packed kernel loses there."""
        return x @ self.unpacked(x.dtype)

    @property
    def holds(self) -> str:
        """The format of what it holds, as `autan inspect` names it: the file's GGML type (in the
        kernel's layout), a float dtype, or the family's own."""
        return self.qtype.name if self.qtype is not None else self.family

    @property
    def nbytes(self) -> int:
        """What the kernel holds in memory."""
        return sum(t.numel() * t.element_size() for t in (*self.buffers(), *self.parameters()))

    def extra_repr(self) -> str:
        return f"{self.family}, out_features={self.out_features}, in_features={self.in_features}"


class Unpacked(Kernel):
    """An exact family: it multiplies the float matrix it unpacks (`unpacked`) with PyTorch's own
    product, as the reference does, whatever the number of rows."""

    exact = True

    def forward(self, x: Tensor, bias: Tensor | None = None) -> Tensor:
        return F.linear(x, self.unpacked(x.dtype).t(), None if bias is None else bias.to(x.dtype))

    def product(self, x: Tensor) -> Tensor:
        return self(x)

    @property
    def unpacks(self) -> bool:
        return True
