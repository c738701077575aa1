"""GGUF files (llama.cpp's format): metadata, tokenizer, and tensors that stay quantized.

The file is memory-mapped copy-on-write: quantized tensors are used in place as packed bytes,
so the weights take the file's size in memory, not fp32's. Only wq/wk are copied, to undo
llama.cpp's interleaved RoPE row order (`interleaved_to_halves`), which moves whole rows and
so works on packed blocks too.
"""

from __future__ import annotations

import functools
import math
import mmap
import struct
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from autan.config import ModelConfig, check_layout
from autan.errors import CheckpointError, UnsupportedModelError
from autan.kernels.blocks import QUANT_TYPES, dequantize
from autan.model.parallel import Piece, Shard
from autan.weights.assemble import Entry, Packed
from autan.weights.gguf_reader import parse
from autan.weights.names import gguf_to_hf, interleaved_to_halves, is_rope_projection

DENSE_TYPES = {
    GGMLQuantizationType.F32: torch.float32,
    GGMLQuantizationType.F16: torch.float16,
    GGMLQuantizationType.BF16: torch.bfloat16,
}
SUPPORTED_TYPES = [*DENSE_TYPES, *QUANT_TYPES]


@dataclass
class TensorInfo:
    name: str
    tensor_type: GGMLQuantizationType
    shape: tuple[int, ...]  # as GGUF lists it: innermost dimension first
    data_offset: int  # from the start of the file
    n_bytes: int
    data: np.ndarray | None = None  # the bytes in the file's memory map


@dataclass
class GGUFFile:
    path: Path
    metadata: dict[str, Any]
    tensors: list[TensorInfo]
    data: Any = None  # the file's memory map

    def release_pages(self) -> None:
        """Let the OS drop the file's pages from this process (they come back when read again).

        After the packed kernels have copied what they need, the mapped blocks are only read
        for embedding rows, so most of the file need not stay resident.
        """
        mapping = getattr(self.data, "_mmap", None)
        if mapping is not None and hasattr(mmap, "MADV_DONTNEED"):
            mapping.madvise(mmap.MADV_DONTNEED)

    @classmethod
    def open(cls, path: str | Path, mmap: bool = True) -> GGUFFile:
        """Parse a file once: the model and its tokenizer both read it (parsing takes seconds)."""
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(path, "file not found")
        stat = path.stat()
        return cls._open(path.resolve(), stat.st_mtime_ns, stat.st_size, mmap)

    @classmethod
    @functools.lru_cache(maxsize=4)
    def _open(cls, path: Path, mtime_ns: int, size: int, mmap: bool = True) -> GGUFFile:
        try:
            # Mapped copy-on-write, tensors come out writable and pages are read as they are used;
            # read whole, nothing depends on the file (or its disk) afterwards.
            data = np.memmap(path, dtype=np.uint8, mode="c") if mmap else np.fromfile(path, dtype=np.uint8)
            metadata, tensors = _parse(data)
        except (ValueError, KeyError, IndexError, OSError, UnicodeDecodeError, struct.error) as e:
            raise CheckpointError(path, f"not a readable GGUF file (truncated or corrupt?): {e}") from None
        gguf = cls(path, metadata, tensors, data)
        gguf._check_sizes(data.size)
        for t in tensors:
            t.data = data[t.data_offset : t.data_offset + t.n_bytes]
        return gguf

    def config(self) -> ModelConfig:
        """The model's shape from the metadata, checked against the tensors the file holds."""
        config = ModelConfig.from_gguf_metadata(self.path, self.metadata, {t.name for t in self.tensors})
        shapes = {gguf_to_hf(t.name) or t.name: tuple(reversed(t.shape)) for t in self.tensors}
        check_layout(config, shapes, str(self.path))
        return config

    def entries(self, config: ModelConfig, shard: Shard | None = None) -> Iterator[Entry]:
        """Every tensor, or with `shard` the pieces of them that rank holds (only those are read)."""
        for t in self.tensors:
            name = gguf_to_hf(t.name)
            if name is None:
                raise CheckpointError(self.path, "unexpected tensor: not a name of llama.cpp's llama layout", t.name)
            local, piece = shard.place(name) if shard is not None else (name, None)
            if local is not None:
                stored = tuple(reversed(t.shape))
                yield Entry(local, self._value(t, name, config, piece), str(self.path), t.name, stored)

    def _value(self, t: TensorInfo, name: str, config: ModelConfig, piece: Piece | None) -> torch.Tensor | Packed:
        if t.tensor_type not in SUPPORTED_TYPES:
            supported = ", ".join(q.name for q in SUPPORTED_TYPES)
            raise UnsupportedModelError(
                self.path, f"type {t.tensor_type.name} is not supported (supported: {supported})", t.name
            )
        shape = tuple(reversed(t.shape))  # GGUF lists dimensions innermost first
        with warnings.catch_warnings():  # a copy-on-write map is writable; torch's warning does not apply
            warnings.simplefilter("ignore", UserWarning)
            data = torch.from_numpy(np.asarray(t.data))
        dense = t.tensor_type in DENSE_TYPES
        if dense:
            data = data.view(DENSE_TYPES[t.tensor_type]).reshape(shape)
        else:
            block, type_size = GGML_QUANT_SIZES[t.tensor_type]
            data = data.reshape(*shape[:-1], shape[-1] // block * type_size)
        rope = is_rope_projection(name) and self.metadata.get("general.architecture") == "llama"
        if rope:
            heads = config.n_heads if "q_proj" in name else config.n_kv_heads
            if len(shape) != 2 or shape[0] != heads * config.head_dim:
                want = [heads * config.head_dim, config.dim]
                raise CheckpointError(self.path, f"has shape {list(shape)}, expected {want}", t.name)
        if piece is not None:
            data, shape, dense = _piece(data, t.tensor_type, shape, piece, dense)
        # llama.cpp's converter interleaves the rotary rows of Llama-family q/k maps (its RoPE
        # pairs neighbours); Qwen2 files keep Hugging Face's halves, as its RoPE pairs halves.
        # Whole heads move, so a shard's piece (whole heads) is turned the same way.
        if rope:
            data = interleaved_to_halves(data, shape[0] // config.head_dim)
        if dense:
            return data.reshape(shape)
        return Packed(data, t.tensor_type, shape)

    def _check_sizes(self, file_size: int) -> None:
        for t in self.tensors:
            end = t.data_offset + t.n_bytes
            if end > file_size:
                raise CheckpointError(
                    self.path,
                    f"data ends at byte {end} but the file has {file_size} bytes (truncated?)",
                    t.name,
                )


def _parse(data: np.ndarray) -> tuple[dict[str, Any], list[TensorInfo]]:
    metadata, raw = parse(data)
    infos = []
    for t in raw:
        qtype = GGMLQuantizationType(t.type)
        block, type_size = GGML_QUANT_SIZES[qtype]
        infos.append(TensorInfo(t.name, qtype, t.shape, t.data_offset, math.prod(t.shape) // block * type_size))
    return metadata, infos


def _piece(
    data: torch.Tensor, qtype: GGMLQuantizationType, shape: tuple[int, ...], piece: Piece, dense: bool
) -> tuple[torch.Tensor, tuple[int, ...], bool]:
    """A rank's piece of a tensor as stored (dense values, or GGML blocks by row), its logical
    shape, and whether it is dense. Rows are whole in the blocks; columns split on block
    boundaries, and a piece that does not (a head of 64 columns in 256-wide K-quant blocks) is
    unpacked to float32."""
    new_shape = list(shape)
    new_shape[piece.dim] = piece.stop - piece.start if piece.index is None else len(piece.index)
    last = len(shape) - 1
    if dense or piece.dim < last:
        return piece.of(data), tuple(new_shape), dense
    block, type_size = GGML_QUANT_SIZES[qtype]
    if piece.start % block == 0 and piece.stop % block == 0 and piece.index is None:
        part = Piece(piece.dim, piece.start // block * type_size, piece.stop // block * type_size)
        return part.of(data), tuple(new_shape), False
    return piece.of(dequantize(data, qtype)), tuple(new_shape), True
