"""The native kernels (`csrc/`, `autan.native`): GGML blocks multiplied as they are, and the fused
decode step that runs every block of a model in one call.

Every GGML matrix they take (`TYPES`) is repacked once at load into their four-row groups;
K-quants are rewritten into a kernel format (csrc/formats.h, csrc/repack.h). Dense matrices are
written as Q4_1 or Q8_0 blocks by gguf-py's quantizer (llama.cpp's rounding) for them.
Activations are quantized per block of 32 to int8 inside the product, so prompts as well as
decode steps run on the CPU's integer units.
"""

from __future__ import annotations

from typing import Any

import torch
from gguf import GGMLQuantizationType as Q
from gguf import quants as gguf_quants
from torch import Tensor

from autan import native
from autan.kernels.base import Kernel
from autan.kernels.blocks import QuantizedWeight

TYPES = (Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q8_0, Q.Q4_K, Q.Q5_K, Q.Q6_K)  # the GGML types the repack takes
QUANTIZE_FORMATS = {"int8": Q.Q8_0, "int4": Q.Q4_1}  # the blocks a dense matrix is written as, by kind
GROUP_ROWS = 4  # rows the native kernels take together (csrc/formats.h)


class NativeGgml(Kernel):
    family = "native"

    def __init__(self, weight: QuantizedWeight):
        rows, cols = weight.shape
        super().__init__(rows, cols)
        module = native.module()
        self.qtype = weight.qtype
        self.kernel_type = module.kernel_type(int(weight.qtype))  # the format its blocks were repacked into
        self.register_buffer("weight", module.repack([weight.packed], int(weight.qtype)))

    def product(self, x: Tensor) -> Tensor:
        return native.module().qmatmul(x.float().contiguous(), self.weight, self.kernel_type)

    @property
    def unpacks(self) -> bool:
        return True

    def unpacked(self, dtype: torch.dtype) -> Tensor:
        """The blocks dequantized as the file defines them (the exact path's matrix)."""
        groups = len(self.weight)
        return native.module().dequantize(self.weight, self.kernel_type, self.in_features, 0, groups).to(dtype).t()

    @property
    def full_width_from(self) -> int | None:
        """Never, on an instruction set with vector integer products: their int8 GEMM outruns
        unpacking to float32 for BLAS at every width (bench/kernels.py); the portable tier's does not."""
        return None if native.module().isa() != "scalar" else super().full_width_from


def fits(shape: tuple[int, ...]) -> bool:
    """Whether the native kernels take a (rows, cols) matrix (on this install)."""
    return native.module() is not None and len(shape) == 2 and shape[0] % GROUP_ROWS == 0 and shape[1] % 32 == 0


def quantized(weight: Tensor, kind: str) -> NativeGgml:
    """A dense matrix written as the GGML blocks of `kind` (`QUANTIZE_FORMATS`), on the native kernels."""
    qtype = QUANTIZE_FORMATS[kind]
    blocks = torch.from_numpy(gguf_quants.quantize(weight.detach().float().numpy(), qtype))
    return NativeGgml(QuantizedWeight(blocks, qtype, tuple(weight.shape)))


class NativeStep:
    """Every block of a model held by the native decode step (`csrc/step.cpp`), which runs them
    all in one call for the few rows of a decode step. `of` makes one when every map of every
    block (experts included) is on the native kernels."""

    def __init__(self, layers: Any):
        self.layers = layers  # autan._native.Layers

    @classmethod
    def of(cls, blocks: Any, config: Any) -> NativeStep | None:
        """The step for `blocks` (the model's, in order) of a model shaped `config`, or None."""
        if native.module() is None:
            return None
        c = config
        norms, maps, routers, experts, biases = [], [], [], [], []
        for block in blocks:
            attn = block.self_attn
            attention = (_segments(attn.q_proj, attn.k_proj, attn.v_proj), _segments(attn.o_proj))
            if hasattr(block, "mlp"):
                mlp = block.mlp
                ffn = (_segments(mlp.gate_proj, mlp.up_proj), _segments(mlp.down_proj))
                router, per_expert = torch.empty(0), []
            else:
                moe = block.block_sparse_moe
                ffn, per_expert = ([], []), _expert_segments(moe)
                router = moe.gate.kernel.unpacked(torch.float32).t().contiguous()  # exact: the reference's logits
            if None in attention or None in ffn or per_expert is None:
                return None
            norms += [
                block.input_layernorm.weight.float().contiguous(),
                block.post_attention_layernorm.weight.float().contiguous(),
            ]
            maps += [*attention, *ffn]
            qkv = (attn.q_proj, attn.k_proj, attn.v_proj)
            biases.append(torch.cat([m.bias.float() for m in qkv]).contiguous() if c.qkv_bias else torch.empty(0))
            routers.append(router)
            experts.append(per_expert)
        top_k = c.moe.num_experts_per_tok if c.moe else 1
        shape = (c.dim, c.n_heads, c.n_kv_heads, c.head_dim, c.hidden_dim, c.norm_eps)
        return cls(native.module().Layers(norms, maps, biases, routers, experts, top_k, *shape))

    def run(self, x: Tensor, cos: Tensor, sin: Tensor, plan: Any) -> Tensor:
        """Every block on x (N, dim), attending as `plan` (a `NativePlan`) says."""
        n = len(x)
        return self.layers.forward(
            x.contiguous(),
            cos.reshape(n, -1).contiguous(),
            sin.reshape(n, -1).contiguous(),
            plan.keys,
            plan.values,
            plan.slot_dim,
            plan.write_slots,
            plan.visible,
            plan.offsets,
        )


def _segments(*linears: Any) -> list[tuple[Tensor, int]] | None:
    """Maps that read the same input, as one product's rows for the native step (csrc/step.h:
    each map in its own format, as q/k (Q4_K) beside v (Q6_K) in a Q4_K_M file); None if any
    map is not on the native kernels."""
    return _kernel_segments([linear.kernel for linear in linears])


def _expert_segments(moe: Any) -> list[list[tuple[Tensor, int]]] | None:
    """Each expert's gate_up and down for the native step, expert after expert; None unless all
    are on the native kernels."""
    experts = moe.experts
    out = []
    for gate, up, down in zip(experts.gate, experts.up, experts.down, strict=True):
        out += [_kernel_segments([gate, up]), _kernel_segments([down])]
    return None if None in out else out


def _kernel_segments(kernels: list[object]) -> list[tuple[Tensor, int]] | None:
    if not all(isinstance(k, NativeGgml) for k in kernels):
        return None
    return [(k.weight, k.kernel_type) for k in kernels]
