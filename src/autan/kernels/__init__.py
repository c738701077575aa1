"""The kernels a linear map multiplies with, one family a module, each behind `Kernel`'s small
interface (`base.py`: the product for any number of rows, the float matrix where it has one,
what it holds):

- `dense.py`: float matrices, multiplied by PyTorch (the exact path of float checkpoints);
- `exact.py`: GGML blocks unpacked at every use (the exact path of GGUF files);
- `native.py`: GGML blocks repacked for the native kernels (`csrc/`), and the native decode step
  that runs every block of a model in one call;
- `torch_int4.py`, `torch_int8.py`: PyTorch's own CPU kernels, where the native ones are not built;
- `blocks.py`: the GGML block formats themselves (not a kernel: what the others read).

`choose` picks a weight's kernel once, where the loader places it (`autan.weights`), by the
weight, its device and the map's role.
"""

from __future__ import annotations

from torch import Tensor

from autan.kernels import native, torch_int4
from autan.kernels.base import FULL_WIDTH_FROM, Kernel
from autan.kernels.blocks import QuantizedWeight
from autan.kernels.dense import Dense
from autan.kernels.exact import Exact
from autan.kernels.native import NativeGgml, NativeStep
from autan.kernels.torch_int4 import TorchInt4
from autan.kernels.torch_int8 import TorchInt8

__all__ = [
    "FULL_WIDTH_FROM",
    "Dense",
    "Exact",
    "Kernel",
    "NativeGgml",
    "NativeStep",
    "TorchInt4",
    "TorchInt8",
    "choose",
]
QUANTIZE_KINDS = ("int8", "int4")
# What a map is for: a block's map, an expert's, the output head (its logits stay float32 and,
# quantized, it is 8-bit, since its rounding shows in every logit), or a MoE router (whose
# logits decide near-ties of routing: always exact).
ROLES = ("map", "expert", "head", "router")


def choose(
    weight: Tensor | QuantizedWeight, role: str = "map", packed: bool = True, quantize: str | None = None
) -> Kernel:
    """The kernel for a (rows, cols) weight as the loader read it.

    GGML blocks (`QuantizedWeight`), with `packed`, on a CPU: the native kernels where built,
    else PyTorch's int4 for 4-bit blocks of a shape it takes, else its int8; otherwise they are
    unpacked at each use (`Exact`). A float matrix stays float (`Dense`) unless `quantize`
    ("int8" or "int4") asks for a packed kernel on a CPU. A router is always exact."""
    if role not in ROLES:
        raise ValueError(f"role {role!r} must be one of {', '.join(ROLES)}")
    if quantize is not None:
        check_quantize(quantize)
    blocks = isinstance(weight, QuantizedWeight)
    on_cpu = (weight.packed if blocks else weight).device.type == "cpu"
    shape = tuple(weight.shape)
    if blocks and packed and on_cpu and role != "router":
        if weight.qtype in native.TYPES and native.fits(shape):
            kernel: Kernel = NativeGgml(weight)
        elif weight.qtype in torch_int4.TYPES and torch_int4.fits(shape):
            kernel = TorchInt4(weight)
        else:
            kernel = TorchInt8(weight)
    elif not blocks and quantize is not None and on_cpu and role != "router":
        kind = "int8" if role == "head" else quantize
        if native.fits(shape):
            kernel = native.quantized(weight, kind)
        elif kind == "int4" and torch_int4.fits(shape):
            kernel = TorchInt4(weight)
        else:
            kernel = TorchInt8(weight)
    else:
        kernel = Exact(weight) if blocks else Dense(weight)
    kernel.logits = role == "head"
    return kernel


def check_quantize(kind: str) -> None:
    if kind not in QUANTIZE_KINDS:
        raise ValueError(f"quantize='{kind}' must be one of {', '.join(QUANTIZE_KINDS)}")
