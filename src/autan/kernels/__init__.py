"""The kernels a linear map multiplies with, one family a module, each behind `Kernel`'s small
interface (`base.py`: the product for any number of rows, the float matrix where it has one,
what it holds):

- `native.py`: GGML blocks as stored, repacked for the native kernels (`csrc/`), and the native
  decode step that runs every block of a model in one call;
- `torch_int4.py`, `torch_int8.py`: PyTorch's own CPU kernels, where the native ones are not built;
- `blocks.py`: the GGML block formats, unpacked per use (the exact path, and the reference).

`choose` picks a GGUF matrix's kernel, `quantize` a dense matrix's, each once, by the weight,
the device and the map's role ("map", "expert" or "head": the output head's logits stay float32
and, quantized, it is 8-bit, since its rounding shows in every logit).
"""

from __future__ import annotations

from torch import Tensor

from autan.kernels import native, torch_int4
from autan.kernels.base import FULL_WIDTH_FROM, Kernel
from autan.kernels.blocks import QuantizedWeight
from autan.kernels.native import NativeGgml, NativeStep
from autan.kernels.torch_int4 import TorchInt4
from autan.kernels.torch_int8 import TorchInt8

__all__ = ["FULL_WIDTH_FROM", "Kernel", "NativeGgml", "NativeStep", "TorchInt4", "TorchInt8", "choose", "quantize"]
QUANTIZE_KINDS = ("int8", "int4")
ROLES = ("map", "expert", "head")


def choose(weight: QuantizedWeight, role: str = "map") -> Kernel | None:
    """The fastest exact-enough kernel for a GGUF matrix (rows, cols) on a CPU: the native
    kernels where built, else PyTorch's int4 for 4-bit blocks of a shape it takes, else int8;
    None for a weight no kernel takes (not 2-D, or not on a CPU)."""
    if len(weight.shape) != 2 or weight.packed.device.type != "cpu":
        return None
    if weight.qtype in native.TYPES and native.fits(weight.shape):
        kernel: Kernel = NativeGgml(weight)
    elif weight.qtype in torch_int4.TYPES and torch_int4.fits(weight.shape):
        kernel = TorchInt4(weight)
    else:
        kernel = TorchInt8(weight)
    return _in_role(kernel, role)


def quantize(weight: Tensor, kind: str, role: str = "map") -> Kernel:
    """A dense (rows, cols) matrix quantized onto a kernel: on the native kernels, as the GGML
    blocks gguf-py's quantizer writes; else PyTorch's group-wise int4 where its shape allows, or
    int8 per output channel. A head is 8-bit whatever `kind` asks."""
    check_quantize(kind)
    kind = "int8" if role == "head" else kind
    if native.fits(tuple(weight.shape)):
        kernel: Kernel = native.quantized(weight, kind)
    elif kind == "int4" and torch_int4.fits(tuple(weight.shape)):
        kernel = TorchInt4(weight)
    else:
        kernel = TorchInt8(weight)
    return _in_role(kernel, role)


def check_quantize(kind: str) -> None:
    if kind not in QUANTIZE_KINDS:
        raise ValueError(f"quantize='{kind}' must be one of {', '.join(QUANTIZE_KINDS)}")


def _in_role(kernel: Kernel, role: str) -> Kernel:
    if role not in ROLES:
        raise ValueError(f"role {role!r} must be one of {', '.join(ROLES)}")
    kernel.logits = role == "head"
    return kernel
