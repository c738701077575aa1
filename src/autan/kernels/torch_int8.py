"""PyTorch's int8 kernels (per output channel), for machines without the native build and for the
GGML types the int4 kernel does not map (Q8_0, Q5_K, Q6_K: a requantization error of at most half
a step per weight).

Products of more than one row run on the CPU's integer dot-product units (`torch._int_mm`,
through oneDNN), which multiply int8 by int8: each activation row is written as two int8 rows,
s * (q1 + q2 / 254), the second holding what the first rounded away. That keeps activations
within 1 / 64516 of the row's largest value (finer than bfloat16), and all rows share one pass
over the weights. At 16 rows this is 2.5x faster than the bfloat16 kernel on the output head.
A single row of a block takes the bfloat16 kernel, faster there; the output head does not,
since that kernel would round its logits to bfloat16. So a block's row gets slightly different
results alone and among others, as the int4 path's rows do in prompts of 64 rows or more.

The integer path needs VNNI (AVX512-VNNI, AVX-VNNI or AMX): without it, oneDNN adds byte
products in 16-bit pairs that saturate. A check on extreme values decides once per process,
and CPUs that fail it keep the bfloat16 kernel for every int8 product.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from autan.kernels.base import Kernel
from autan.kernels.blocks import QuantizedWeight, dequantize

INT8_MAX_K = (2**31 - 1) // (127 * 127)  # the longest int32 sum of int8 products that cannot overflow


class TorchInt8(Kernel):
    family = "int8"

    def __init__(self, weight: QuantizedWeight | Tensor):
        """Symmetric int8 per output channel, of GGUF blocks (unpacked a slice at a time) or a
        dense matrix; rounded against the bfloat16 scale the kernels will use."""
        rows, cols = weight.shape
        super().__init__(rows, cols)
        q = torch.empty(weight.shape, dtype=torch.int8)
        scale = torch.empty(rows)
        for start in range(0, rows, 4096):  # a slice at a time: the float32 copy stays small
            if isinstance(weight, QuantizedWeight):
                dense = dequantize(weight.packed[start : start + 4096], weight.qtype)
            else:
                dense = weight[start : start + 4096].float()
            s = (dense.abs().amax(dim=1).clamp(min=1e-12) / 127).to(torch.bfloat16).float()
            q[start : start + 4096] = torch.round(dense / s[:, None]).clamp(-127, 127).to(torch.int8)
            scale[start : start + 4096] = s
        self.register_buffer("weight", q)
        self.register_buffer("scales", scale.to(torch.bfloat16))  # (N,)

    def product(self, x: Tensor) -> Tensor:
        if (len(x) > 1 or self.logits) and x.shape[1] <= INT8_MAX_K and integer_units_exact():
            return int8_product(x.float(), self.weight, self.scales)
        # One row of a block (the bfloat16 kernel reads the weights faster), or no exact integer
        # units. Not for logits where avoidable: the bfloat16 result is 0.06 apart near 10, so
        # near-ties would be decided by rounding and log-probabilities reported coarsely.
        return torch.ops.aten._weight_int8pack_mm(x.to(torch.bfloat16), self.weight, self.scales)


def int8_product(x: Tensor, weight: Tensor, scales: Tensor) -> Tensor:
    """x (M, K) float32 times the int8 matrix (N, K) with per-row `scales`: (M, N) float32.

    Each row of x becomes s * (q1 + q2 / 254) with q1, q2 int8 (s = the row's largest magnitude
    / 127; q2 rounds what q1 left, which is at most s / 2), and one integer product takes all 2M
    rows. The int32 sums are exact (K at most INT8_MAX_K, on VNNI: `integer_units_exact`); the
    activations are off by at most s / 508. A row holding inf or NaN comes out all NaN.
    """
    s = x.abs().amax(dim=-1, keepdim=True).div_(127).clamp_(min=torch.finfo(torch.float32).tiny)
    t = x / s
    q1 = t.round()
    q2 = t.sub_(q1).mul_(254).round_()
    y = torch._int_mm(torch.cat([q1, q2]).to(torch.int8), weight.t())
    rows = len(x)
    return y[rows:].float().div_(254).add_(y[:rows]).mul_(s).mul_(scales)


@functools.cache
def integer_units_exact() -> bool:
    """Whether `torch._int_mm` sums int8 products exactly on this CPU (checked once).

    With VNNI, oneDNN multiplies and adds into 32 bits. Without it, it widens bytes pairwise
    into 16-bit sums that saturate: 127 * 127 rows of 256 then come out wrong by millions.
    """
    x = torch.full((2, 256), 127, dtype=torch.int8)
    x[1] = -127
    w = torch.full((16, 256), 127, dtype=torch.int8)
    w[1::2] = -127
    try:
        return torch.equal(torch._int_mm(x, w.t()).long(), x.long() @ w.long().t())
    except RuntimeError:  # no integer product on this build
        return False
