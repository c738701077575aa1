"""Packing a loaded model's linear maps onto packed kernels, at load (`autan.kernels`).

Each map packs on its own: a Linear's weight becomes its `Kernel`; the native step
(`csrc/step.cpp`) multiplies a block's maps that read the same input (q, k, v; gate, up) in
one product whatever their formats, so nothing is fused here. Two model-level extras remain:
a tied output head gets a kernel of its own (the embedding keeps the file's blocks for lookups),
and each expert of a sparse block gets its three maps' kernels (`MoeFeedForward.expert_kernels`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from autan.kernels import Kernel, check_quantize, choose, quantize
from autan.kernels.blocks import QuantizedWeight
from autan.memory import give_memory_back
from autan.model.layers import Linear
from autan.model.moe import MoeFeedForward


def pack_model(model: nn.Module, release: Callable[[], None] | None = None) -> int:
    """Give every GGUF-quantized linear map of `model` (the output head included; not a MoE
    router, whose logits decide near-ties of routing) a packed kernel.

    Returns how many got one. `release`, if given, is called after each conversion (to let go
    of the file pages just read), so the file and its packed copy are never resident together.
    """

    def converted() -> None:
        if release is not None:
            release()
            give_memory_back()

    routers = {m.gate for m in model.modules() if isinstance(m, MoeFeedForward)}  # small: unpacked per use
    head = getattr(model, "lm_head", None)
    count = 0
    for module in list(model.modules()):
        if isinstance(module, Linear) and module not in routers and isinstance(module.weight, QuantizedWeight):
            kernel = choose(module.weight, "head" if module is head else "map")
            if kernel is not None:
                _set_weight(module, kernel)
                count += 1
            converted()
        elif isinstance(module, MoeFeedForward) and all(
            isinstance(w, QuantizedWeight) and w.packed.device.type == "cpu" for w in _expert_weights(module)
        ):
            module.expert_kernels = _expert_kernels(
                module, lambda w, e: choose(QuantizedWeight(w.packed[e], w.qtype, w.shape[1:]), "expert")
            )
            count += 3 * module.n_held
            converted()
    config = model.config
    embeddings = model.model.embed_tokens.weight
    if config.tie_embeddings and isinstance(embeddings, QuantizedWeight):
        model.head_kernel = choose(embeddings, "head")
        count += model.head_kernel is not None
    model.kernels_changed()
    give_memory_back()  # the conversion's temporaries, back to the system
    return count


def quantize_model(model: nn.Module, kind: str) -> int:
    """Quantize every dense linear map of a CPU model onto packed kernels, at load
    (`autan.kernels.quantize`: "int4" or "int8"). The output head is 8-bit in both (its
    rounding shows directly in every logit), and the MoE router stays dense. The dense matrices
    are dropped. Returns how many maps were packed."""
    check_quantize(kind)
    routers = {m.gate for m in model.modules() if isinstance(m, MoeFeedForward)}
    head = getattr(model, "lm_head", None)
    count = 0
    for module in list(model.modules()):
        if isinstance(module, Linear) and module not in routers and _is_dense(module.weight):
            _set_weight(module, quantize(module.weight, kind, "head" if module is head else "map"))
            count += 1
        elif isinstance(module, MoeFeedForward) and all(_is_dense(w) for w in _expert_weights(module)):
            module.expert_kernels = _expert_kernels(module, lambda w, e: quantize(w[e], kind, "expert"))
            for name in ("w1", "w2", "w3"):
                setattr(module.experts, name, nn.Parameter(torch.empty(0), requires_grad=False))
            count += 3 * module.n_held
    embeddings = model.model.embed_tokens.weight
    if model.config.tie_embeddings and model.head_kernel is None and _is_dense(embeddings):
        model.head_kernel = quantize(embeddings, kind, "head")  # the embedding itself stays dense, for lookups
        count += 1
    model.kernels_changed()
    give_memory_back()
    return count


def _set_weight(linear: Linear, kernel: Kernel) -> None:
    """The map's weight becomes its packed kernel; the unpacked matrix (or file blocks) is let go."""
    delattr(linear, "weight")
    linear.weight = kernel


def _is_dense(weight: object) -> bool:
    return (
        isinstance(weight, Tensor) and weight.ndim >= 2 and weight.device.type == "cpu" and weight.is_floating_point()
    )


def _expert_weights(moe: MoeFeedForward) -> tuple:
    return moe.experts.w1, moe.experts.w3, moe.experts.w2


def _expert_kernels(moe: MoeFeedForward, kernel: Callable[[object, int], Kernel | None]) -> nn.ModuleDict:
    """Per expert, the kernels of its gate (w1), up (w3) and down (w2) maps; `kernel(w, e)` packs
    expert e of the stacked w."""
    w1, w3, w2 = _expert_weights(moe)
    return nn.ModuleDict(
        {
            name: nn.ModuleList(kernel(w, e) for e in range(moe.n_held))
            for name, w in (("gate", w1), ("up", w3), ("down", w2))
        }
    )
