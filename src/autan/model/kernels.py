"""Matrix products on packed weights: no unpacking per use.

Where the native kernels are built (`autan.native`, csrc/), every GGML matrix they take (Q4_0,
Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K) is repacked once at load into their four-row groups (kind
"ggml"), and `quantized` writes dense matrices as Q4_1 or Q8_0 blocks for them. What
follows is the fallback, PyTorch's own CPU kernels, for machines without the build.

GGML's 4-bit blocks map onto PyTorch's int4 group-wise layout exactly: a group of 32 values
with a scale and an offset, w = (q - 8) * scale + zero. Q4_0 is d * (q - 8), so scale = d and
zero = 0; Q4_1 is d * q + m, so scale = d and zero = m + 8d; Q4_K's sub-blocks are
d * sc * q - dmin * mn, so scale = d * sc and zero = 8 * scale - dmin * mn. Their scales are
held in bfloat16, and the int4 kernel multiplies bfloat16 activations: that rounding is the only
difference from unpacking (bounded in the tests). Other types (Q8_0, Q5_K, Q6_K) become int8
per output channel, which adds a requantization error of at most half a step per weight.

int8 products of more than one row run on the CPU's integer dot-product units (`torch._int_mm`,
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
from gguf import GGMLQuantizationType as Q
from gguf import quants as gguf_quants
from torch import Tensor, nn

from autan import native
from autan.model.quant import QK_K, QuantizedWeight, _f16, _k_scales, _nibbles, dequantize

GROUP = 32
INNER_K_TILES = 2  # the int4 layout wants K divisible by INNER_K_TILES * 16
INT4_ROWS = 16  # the int4 layout wants the output rows (N) divisible by this
INT8_MAX_K = (2**31 - 1) // (127 * 127)  # the longest int32 sum of int8 products that cannot overflow
FULL_WIDTH_FROM = 64  # rows from which a product unpacks its weights and runs in float32


class PackedLinear(nn.Module):
    """y = x W^T computed from int4 (group-wise, bfloat16 activations) or int8 (per-channel,
    activations in two int8 rows) weights, or ("ggml") from the GGUF file's own blocks on the
    native kernels (`autan.native`), which quantize activations per block of 32 to int8."""

    def __init__(
        self,
        kind: str,
        weight: Tensor,
        scales: Tensor,
        out_features: int,
        qtype: Q | None = None,
        kernel_type: int | None = None,
        in_features: int | None = None,
    ):
        super().__init__()
        self.kind, self.out_features, self.in_features, self.qtype = kind, out_features, in_features, qtype
        self.kernel_type = kernel_type  # "ggml": the native format its blocks were repacked into (csrc/qgemm.h)
        self.logits = False  # the output head: float32 results even for one row (see `product`)
        self.register_buffer("weight", weight)
        self.register_buffer("scales", scales)  # bfloat16; int4: (K / 32, N, 2), scale and offset; int8: (N,)

    def forward(self, x: Tensor) -> Tensor:
        flat = x if x.ndim == 2 else x.reshape(-1, x.shape[-1])
        if not len(flat):  # no rows: a prefill chunk whose logits nobody needs
            return x.new_zeros(*x.shape[:-1], self.out_features)
        wide = len(flat) >= FULL_WIDTH_FROM and x.dtype == torch.float32
        if wide and (self.kind == "ggml" or (self.kind == "int4" and self._unpackable)):
            y = self._full_width_product(flat)
        else:
            y = self.product(flat)
        return y.to(x.dtype) if x.ndim == 2 else y.to(x.dtype).reshape(*x.shape[:-1], self.out_features)

    def product(self, x: Tensor) -> Tensor:
        """x (M, K) -> (M, N) on the kernel, in the dtype the kernel gives (bfloat16 or float32)."""
        if self.kind == "ggml":
            return native.module().qmatmul(x.float().contiguous(), self.weight, self.kernel_type)
        if self.kind == "int4":
            return torch.ops.aten._weight_int4pack_mm_for_cpu(x.to(torch.bfloat16), self.weight, GROUP, self.scales)
        if (len(x) > 1 or self.logits) and x.shape[1] <= INT8_MAX_K and integer_units_exact():
            return int8_product(x.float(), self.weight, self.scales)
        # One row of a block (the bfloat16 kernel reads the weights faster), or no exact integer
        # units. Not for logits where avoidable: the bfloat16 result is 0.06 apart near 10, so
        # near-ties would be decided by rounding and log-probabilities reported coarsely.
        return torch.ops.aten._weight_int8pack_mm(x.to(torch.bfloat16), self.weight, self.scales)

    @property
    def _unpackable(self) -> bool:
        block = int4_block_n()
        return block is not None and self.out_features % block == 0

    def _full_width_product(self, x: Tensor) -> Tensor:
        """Many rows (a prompt): unpack the weights to float32 for this one product and let the
        BLAS kernel run at full width; unpacking costs less than the int4 kernel loses there.

        GGML blocks are unpacked natively a tile of rows at a time, so a large matrix (a 7B's
        14336 x 4096) never has a whole float32 copy: each tile is multiplied while it is in cache."""
        if self.kind != "ggml":
            return x @ self.unpacked(x.dtype)
        n, k = self.out_features, x.shape[1]
        rows = max(GROUP_ROWS, TILE_FLOATS // k // GROUP_ROWS * GROUP_ROWS)
        if rows >= n:
            return x @ native.module().dequantize(self.weight, self.kernel_type, k, 0, n // GROUP_ROWS).t()
        y = torch.empty(len(x), n, dtype=torch.float32)
        for a in range(0, n, rows):
            b = min(n, a + rows)
            tile = native.module().dequantize(self.weight, self.kernel_type, k, a // GROUP_ROWS, b // GROUP_ROWS)
            y[:, a:b] = x @ tile.t()
        return y

    def unpacked(self, dtype: torch.dtype) -> Tensor:
        """The weights as float: W^T, (K, N).

        GGML blocks are dequantized as the file defines them (the exact path's matrix).

        PyTorch's CPU int4 layout is (N / B, K, B / 2) bytes: the low nibble holds output n of a
        block of B outputs, the high nibble output n + B / 2 (B from `int4_block_n`). The nibbles
        are put in (K, N) order while still bytes, the cheapest time to move them."""
        if self.kind == "ggml":
            groups = len(self.weight)
            return native.module().dequantize(self.weight, self.kernel_type, self.in_features, 0, groups).to(dtype).t()
        n, k, block = self.out_features, self.weight.shape[1] * 2, int4_block_n()
        assert block is not None, "no known int4 layout on this CPU: _unpackable is False"
        blocks = self.weight.view(n // block, k, block // 2)
        q = torch.cat([blocks & 15, blocks >> 4], dim=-1).transpose(0, 1).reshape(k // GROUP, GROUP, n)
        scale, zero = self.scales.to(dtype).unbind(-1)  # (K / 32, N) each: w = (q - 8) * scale + zero
        return q.to(dtype).mul_(scale[:, None]).add_((zero - 8 * scale)[:, None]).view(k, n)  # in place

    def extra_repr(self) -> str:
        return f"{self.kind}, out_features={self.out_features}"


@functools.cache
def int4_block_n() -> int | None:
    """Output columns per block of PyTorch's CPU int4 layout, found by packing a known matrix.

    The layout depends on the CPU PyTorch runs on: blocks of 64 outputs with AVX-512, of 32
    with AVX2 only (both seen). None if the packing matches no layout of that family.
    """
    n, k = 128, 64
    q = torch.randint(0, 16, (n, k), generator=torch.Generator().manual_seed(0), dtype=torch.int32)
    packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, INNER_K_TILES)
    for block in (64, 32, 16):
        low, high = q.view(n // block, 2, block // 2, k).transpose(2, 3).unbind(1)  # (N / B, K, B / 2) each
        if torch.equal((low | high << 4).to(torch.uint8).reshape(packed.shape), packed):
            return block
    return None


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


def pack(weight: QuantizedWeight) -> PackedLinear | None:
    """The fastest exact-enough kernel for a GGUF matrix (rows, cols); None if none fits."""
    if len(weight.shape) != 2 or weight.packed.device.type != "cpu":
        return None
    if native.module() is not None and weight.qtype in NATIVE_TYPES and _native_shape(weight.shape):
        return _ggml(weight)
    if _int4_ready(weight):
        return _int4(weight)
    return _int8(weight)


QUANTIZE_KINDS = ("int8", "int4")
QUANTIZE_FORMATS = {"int8": Q.Q8_0, "int4": Q.Q4_1}  # the GGML blocks of each kind on the native kernels


def quantized(weight: Tensor, kind: str) -> PackedLinear:
    """A dense (rows, cols) matrix quantized onto a packed kernel: on the native kernels, as the
    GGML blocks gguf-py's quantizer writes (llama.cpp's rounding; `QUANTIZE_FORMATS`); else
    PyTorch's group-wise int4 where its shape allows, or int8 per output channel."""
    if native.module() is not None and _native_shape(tuple(weight.shape)):
        qtype = QUANTIZE_FORMATS[kind]
        blocks = torch.from_numpy(gguf_quants.quantize(weight.detach().float().numpy(), qtype))
        return _ggml(QuantizedWeight(blocks, qtype, tuple(weight.shape)))
    if kind == "int4" and _int4_shape(weight.shape):
        return _int4(weight)
    return _int8(weight)


# the GGML types the native repack takes
NATIVE_TYPES = (Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q8_0, Q.Q4_K, Q.Q5_K, Q.Q6_K)


def _native_shape(shape: tuple[int, ...]) -> bool:
    return len(shape) == 2 and shape[0] % GROUP_ROWS == 0 and shape[1] % 32 == 0


def _ggml(weight: QuantizedWeight) -> PackedLinear:
    """The file's blocks, repacked once into the native kernels' four-row groups; K-quants are
    rewritten into a kernel format (csrc/qgemm.h)."""
    module = native.module()
    groups = module.repack([weight.packed], int(weight.qtype))
    kernel_type = module.kernel_type(int(weight.qtype))
    rows, cols = weight.shape
    return PackedLinear(
        "ggml", groups, torch.empty(0), rows, qtype=weight.qtype, kernel_type=kernel_type, in_features=cols
    )


GROUP_ROWS = 4  # rows the native kernels take together (csrc/qgemm.h)
TILE_FLOATS = 1 << 22  # a full-width product unpacks at most this many weights at a time (16 MiB)


def _int4(weight: QuantizedWeight | Tensor) -> PackedLinear:
    """PyTorch's int4 kernel for one matrix: GGUF 4-bit blocks are mapped exactly; dense
    matrices are quantized (`_quantize_int4`)."""
    q, scale, zero = _int4_parts(weight) if isinstance(weight, QuantizedWeight) else _quantize_int4(weight)
    packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q.to(torch.int32).contiguous(), INNER_K_TILES)
    scales_and_zeros = torch.stack([scale.t(), zero.t()], dim=-1).to(torch.bfloat16).contiguous()
    return PackedLinear("int4", packed, scales_and_zeros, weight.shape[0])


def _int4_ready(weight: object) -> bool:
    return (
        isinstance(weight, QuantizedWeight)
        and len(weight.shape) == 2
        and weight.packed.device.type == "cpu"
        and weight.qtype in (Q.Q4_0, Q.Q4_1, Q.Q4_K)
        and _int4_shape(weight.shape)
    )


def _int4_parts(weight: QuantizedWeight) -> tuple[Tensor, Tensor, Tensor]:
    rows, cols = weight.shape
    qtype, data = weight.qtype, weight.packed
    if qtype == Q.Q4_0:
        b = data.reshape(-1, 18)
        d = _f16(b, 0)
        q, scale, zero = _nibbles(b[:, 2:], 16), d, torch.zeros_like(d)
    elif qtype == Q.Q4_1:
        b = data.reshape(-1, 20)
        d, m = _f16(b, 0), _f16(b, 2)
        q, scale, zero = _nibbles(b[:, 4:], 16), d, m + 8 * d
    else:  # Q4_K: super-blocks of 256 = 8 groups of 32, each with a 6-bit scale and min
        b = data.reshape(-1, 144)
        d, dmin = _f16(b, 0), _f16(b, 2)
        sc, mn = _k_scales(b[:, 4:16])  # (n, 8)
        q = _nibbles(b[:, 16:], 32)  # (n, 256), in group order
        scale = d * sc
        zero = 8 * scale - dmin * mn
        q, scale, zero = q.reshape(-1, GROUP), scale.reshape(-1, 1), zero.reshape(-1, 1)
        assert QK_K == 8 * GROUP
    return q.reshape(rows, cols), scale.reshape(rows, cols // GROUP), zero.reshape(rows, cols // GROUP)


def _quantize_int4(weight: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Group-wise asymmetric int4 of a dense (rows, cols) matrix: each group of 32 spans its own
    minimum to maximum in 15 steps, with the scale and offset rounded to bfloat16 first, so the
    values are rounded against the grid the kernel will use."""
    rows, cols = weight.shape
    groups = weight.float().reshape(rows, cols // GROUP, GROUP)
    low, high = groups.amin(-1), groups.amax(-1)
    scale = ((high - low) / 15).clamp(min=1e-8).to(torch.bfloat16).float()
    zero = (low + 8 * scale).to(torch.bfloat16).float()
    q = torch.round((groups - (zero - 8 * scale)[..., None]) / scale[..., None]).clamp(0, 15)
    return q.reshape(rows, cols).to(torch.uint8), scale, zero


def _int8(weight: QuantizedWeight | Tensor) -> PackedLinear:
    """Symmetric int8 per output channel, of GGUF blocks (unpacked a slice at a time) or a dense matrix."""
    rows = weight.shape[0]
    q = torch.empty(weight.shape, dtype=torch.int8)
    scale = torch.empty(rows)
    for start in range(0, rows, 4096):  # a slice at a time: the float32 copy stays small
        if isinstance(weight, QuantizedWeight):
            dense = dequantize(weight.packed[start : start + 4096], weight.qtype)
        else:
            dense = weight[start : start + 4096].float()
        # symmetric, per output channel; rounded against the bfloat16 scale the kernels will use
        s = (dense.abs().amax(dim=1).clamp(min=1e-12) / 127).to(torch.bfloat16).float()
        q[start : start + 4096] = torch.round(dense / s[:, None]).clamp(-127, 127).to(torch.int8)
        scale[start : start + 4096] = s
    return PackedLinear("int8", q, scale.to(torch.bfloat16), rows)


def check_quantize(kind: str) -> None:
    if kind not in QUANTIZE_KINDS:
        raise ValueError(f"quantize='{kind}' must be one of {', '.join(QUANTIZE_KINDS)}")


def _int4_shape(shape: tuple[int, ...]) -> bool:
    """Whether PyTorch's int4 layout takes a (rows, cols) matrix."""
    return shape[1] % (INNER_K_TILES * 16) == 0 and shape[0] % INT4_ROWS == 0
