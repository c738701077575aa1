"""Put named tensors from any checkpoint format into a `Transformer`, checking every one.

Each format's reader yields `Entry`s already renamed to the model's (Hugging Face) names; this
module stacks per-expert tensors, checks names and shapes against the model the config
describes, and assigns the weights without ever materialising a random-initialised model
(the skeleton is built on the meta device).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from gguf import GGMLQuantizationType
from torch import Tensor, nn

from autan.config import ModelConfig
from autan.errors import CheckpointError
from autan.kernels.blocks import QuantizedWeight
from autan.model.parallel import Shard
from autan.model.transformer import Transformer
from autan.weights.names import expert_slot, stack

# Tensors some checkpoints carry that the model recomputes.
IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


@dataclass
class Packed:
    """GGML blocks read from a file: uint8 (..., rows, row_bytes) of logical `shape`."""

    data: Tensor
    qtype: GGMLQuantizationType
    shape: tuple[int, ...]


@dataclass
class Entry:
    name: str  # the model's name for it
    value: Tensor | Packed
    path: str  # file it came from
    file_name: str  # its name in that file, for error messages
    stored: tuple[int, ...] | None = None  # its shape in the file, where only a piece was read (a shard)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.value.shape if isinstance(self.value, Packed) else tuple(self.value.shape)

    @property
    def stored_shape(self) -> tuple[int, ...]:
        return self.stored or self.shape


def assemble(
    config: ModelConfig,
    entries: Iterable[Entry],
    *,
    source: str,
    device: torch.device,
    dtype: torch.dtype,
    keep_stored_dtype: bool,
    shard: Shard | None = None,
) -> Transformer:
    """A model holding `entries` (with `shard`, this rank's part, which the entries are). With
    `keep_stored_dtype`, matrices keep the file's float type."""
    with torch.device("meta"):
        model = Transformer(config, shard)
    expected = {name: tuple(p.shape) for name, p in model.named_parameters()}
    placed: set[str] = set()
    for entry in _stack_experts(config, entries, expected):
        if entry.name not in expected:
            if (entry.name == "lm_head.weight" and config.tie_embeddings) or entry.name.endswith(IGNORED_SUFFIXES):
                continue
            raise CheckpointError(entry.path, "unexpected tensor: not part of this model", entry.file_name)
        _check_shape(entry, expected[entry.name])
        _assign(model, entry, device, dtype, keep_stored_dtype)
        placed.add(entry.name)
    missing = sorted(set(expected) - placed)
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise CheckpointError(source, f"missing {len(missing)} tensor(s) the config needs: {shown}")
    return model.eval().requires_grad_(False)


def _check_shape(entry: Entry, want: tuple[int, ...]) -> None:
    if not isinstance(entry.value, Packed | Tensor):
        raise CheckpointError(entry.path, f"is a {type(entry.value).__name__}, expected a tensor", entry.file_name)
    if isinstance(entry.value, Packed) and len(want) < 2:
        qtype = entry.value.qtype.name
        raise CheckpointError(
            entry.path, f"is {qtype}-quantized, but a vector of {want} must be F32/F16/BF16", entry.file_name
        )
    if entry.shape != want:
        raise CheckpointError(
            entry.path,
            f"has shape {list(entry.shape)}, expected {list(want)} from the model config",
            entry.file_name,
        )


def _stack_experts(
    config: ModelConfig, entries: Iterable[Entry], expected: dict[str, tuple[int, ...]]
) -> Iterable[Entry]:
    """Pass entries through, merging one-tensor-per-expert files into stacked (E, ...) tensors."""
    parts: dict[str, dict[int, Entry]] = defaultdict(dict)
    for entry in entries:
        slot = expert_slot(entry.name)
        if slot is None:
            yield entry
            continue
        stacked, expert = slot
        n_experts = expected[stacked][0] if stacked in expected else 0  # those held here, for a shard
        if stacked not in expected or expert >= n_experts:
            raise CheckpointError(
                entry.path, f"unexpected expert tensor (model has {n_experts} experts)", entry.file_name
            )
        _check_shape(entry, expected[stacked][1:])
        parts[stacked][expert] = entry
    for stacked, by_expert in parts.items():
        n_experts = expected[stacked][0]
        absent = sorted(set(range(n_experts)) - set(by_expert))
        if absent:
            first = next(iter(by_expert.values()))
            raise CheckpointError(first.path, f"experts {absent} of '{stacked}' are missing")
        first = by_expert[0]
        if isinstance(first.value, Packed):
            if len({e.value.qtype for e in by_expert.values()}) != 1:
                raise CheckpointError(first.path, f"experts of '{stacked}' use different quantization types")
            data = stack({i: e.value.data for i, e in by_expert.items()}, n_experts)
            value: Tensor | Packed = Packed(data, first.value.qtype, (n_experts, *first.value.shape))
        else:
            value = stack({i: e.value for i, e in by_expert.items()}, n_experts)
        yield Entry(stacked, value, first.path, f"{first.file_name} (experts stacked)")


def _assign(model: nn.Module, entry: Entry, device: torch.device, dtype: torch.dtype, keep_stored_dtype: bool) -> None:
    owner_name, _, leaf = entry.name.rpartition(".")
    owner = model.get_submodule(owner_name)
    value = entry.value
    if isinstance(value, Packed):
        new: nn.Module | nn.Parameter = QuantizedWeight(value.data.to(device), value.qtype, value.shape)
    else:
        keep = keep_stored_dtype and value.ndim > 1 and value.dtype.is_floating_point
        new = nn.Parameter(value.to(device=device, dtype=value.dtype if keep else dtype), requires_grad=False)
    delattr(owner, leaf)
    setattr(owner, leaf, new)
