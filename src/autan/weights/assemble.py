"""Build a `Transformer` from named tensors of any checkpoint format, checking every one.

Each format's reader yields `Entry`s already renamed to the model's (Hugging Face) names; this
module stacks per-expert tensors, checks names and shapes against what the model the config
describes asks for (surveyed on the meta device), then builds the model with each weight in its
final form: every map gets its kernel as it is read (`autan.kernels.choose`), once.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from gguf import GGMLQuantizationType
from torch import Tensor, nn

from autan.config import ModelConfig
from autan.errors import CheckpointError
from autan.kernels import Kernel, choose
from autan.kernels.blocks import QuantizedWeight, Weight
from autan.memory import give_memory_back
from autan.model.parallel import Shard
from autan.model.parts import Fresh
from autan.model.transformer import Transformer
from autan.weights.names import expert_slot, stack

# Tensors some checkpoints carry that the model recomputes.
IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)
EMBEDDING = "model.embed_tokens.weight"  # read by the embedding and, tied, by the output head


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
    entries: list[Entry],
    *,
    source: str,
    device: torch.device,
    dtype: torch.dtype,
    keep_stored_dtype: bool,
    shard: Shard | None = None,
    kernels: str = "exact",
    quantize: str | None = None,
    release: Callable[[], None] | None = None,
) -> Transformer:
    """A model built from `entries` (with `shard`, this rank's part, which the entries are), each
    map with its kernel as it is read (`autan.kernels.choose`). The entries are checked against
    what the config's model asks for first, all of them; the list is emptied as it is read, so
    each float matrix is let go once its kernel holds it. With `keep_stored_dtype`, matrices keep
    the file's float type. `kernels` says what GGML blocks become: "packed" kernels, "exact"
    (unpacked at each use) or "dense" (unpacked once, here). `quantize` puts float matrices on
    int8 or int4 kernels. `release`, if given, is called after each packed map (to let go of the
    file pages just read), so a file and its packed copy are never resident together."""
    table = _checked(config, entries, source, shard)
    entries.clear()
    parts = _Reading(table, device, dtype, keep_stored_dtype, kernels, quantize, release)
    model = Transformer(config, shard, parts)
    give_memory_back()  # the conversions' temporaries, back to the system
    return model.eval().requires_grad_(False)


def survey(config: ModelConfig, shard: Shard | None = None) -> dict[str, tuple[int, ...]]:
    """The name and shape of every tensor the model `config` describes asks for (for `shard`,
    this rank's part), by Hugging Face's names."""
    asked = Fresh()
    with torch.device("meta"):
        Transformer(config, shard, asked)
    return asked.asked


def _checked(config: ModelConfig, entries: list[Entry], source: str, shard: Shard | None) -> dict[str, Entry]:
    """The entries by name, per-expert ones stacked, each checked against what the model asks."""
    expected = survey(config, shard)
    table: dict[str, Entry] = {}
    for entry in _stack_experts(config, entries, expected):
        if entry.name not in expected:
            if (entry.name == "lm_head.weight" and config.tie_embeddings) or entry.name.endswith(IGNORED_SUFFIXES):
                continue
            raise CheckpointError(entry.path, "unexpected tensor: not part of this model", entry.file_name)
        _check_shape(entry, expected[entry.name])
        table[entry.name] = entry
    missing = sorted(set(expected) - set(table))
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise CheckpointError(source, f"missing {len(missing)} tensor(s) the config needs: {shown}")
    return table


class _Reading:
    """The model's parts read from a checkpoint's entries (`autan.model.parts.Parts`)."""

    def __init__(self, table: dict[str, Entry], device: torch.device, dtype: torch.dtype, keep_stored_dtype: bool,
                 kernels: str, quantize: str | None, release: Callable[[], None] | None) -> None:  # fmt: skip
        self.table, self.device, self.dtype, self.keep = table, device, dtype, keep_stored_dtype
        self.kernels, self.quantize, self.release = kernels, quantize, release
        self.embedding: Weight | None = None  # read once: the tied head shares it

    def map(self, name: str, shape: tuple[int, int], role: str) -> Kernel:
        weight = self.tensor(name, shape) if name == EMBEDDING else self._weight(self.table.pop(name).value)
        return self._kernel(weight, role)

    def expert(self, name: str, shape: tuple[int, int, int], index: int) -> Kernel:
        value = self.table[name].value
        one = Packed(value.data[index], value.qtype, value.shape[1:]) if isinstance(value, Packed) else value[index]
        if index == shape[0] - 1:
            del self.table[name]
        return self._kernel(self._weight(one), "expert")

    def tensor(self, name: str, shape: tuple[int, ...]) -> Weight:
        if name == EMBEDDING:
            if self.embedding is None:
                self.embedding = self._weight(self.table.pop(name).value)
            return self.embedding
        return self._weight(self.table.pop(name).value)

    def _kernel(self, weight: Weight, role: str) -> Kernel:
        kernel = choose(weight, role, packed=self.kernels == "packed", quantize=self.quantize)
        if not kernel.exact and self.release is not None:
            self.release()
            give_memory_back()
        return kernel

    def _weight(self, value: Tensor | Packed) -> Weight:
        if isinstance(value, Packed):
            blocks = QuantizedWeight(value.data.to(self.device), value.qtype, value.shape)
            if self.kernels != "dense":
                return blocks
            value = blocks.dequantize(self.dtype)
        keep = self.keep and value.ndim > 1 and value.dtype.is_floating_point
        return nn.Parameter(
            value.to(device=self.device, dtype=value.dtype if keep else self.dtype), requires_grad=False
        )


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
