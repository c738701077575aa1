"""GGUF files (llama.cpp's format): metadata, tokenizer, and tensors that stay quantized.

The file is memory-mapped copy-on-write: quantized tensors are used in place as packed bytes,
so the weights take the file's size in memory, not fp32's. Only wq/wk are copied, to undo
llama.cpp's interleaved RoPE row order (`interleaved_to_halves`), which moves whole rows and
so works on packed blocks too.
"""

from __future__ import annotations

import functools
import mmap
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gguf import GGMLQuantizationType, GGUFReader, ReaderTensor

from autan.config import ModelConfig
from autan.errors import CheckpointError, UnsupportedModelError
from autan.model.quant import QUANT_TYPES
from autan.weights.assemble import Entry, Packed
from autan.weights.names import gguf_to_hf, interleaved_to_halves, is_rope_projection

DENSE_TYPES = {
    GGMLQuantizationType.F32: torch.float32,
    GGMLQuantizationType.F16: torch.float16,
    GGMLQuantizationType.BF16: torch.bfloat16,
}
SUPPORTED_TYPES = [*DENSE_TYPES, *QUANT_TYPES]


@dataclass
class GGUFFile:
    path: Path
    metadata: dict[str, Any]
    tensors: list[ReaderTensor]
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
    def open(cls, path: str | Path) -> GGUFFile:
        """Parse a file once: the model and its tokenizer both read it (parsing takes seconds)."""
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(path, "file not found")
        stat = path.stat()
        return cls._open(path.resolve(), stat.st_mtime_ns, stat.st_size)

    @classmethod
    @functools.lru_cache(maxsize=4)
    def _open(cls, path: Path, mtime_ns: int, size: int) -> GGUFFile:
        try:
            reader = GGUFReader(path, "c")
        except (ValueError, KeyError, IndexError, OSError, UnicodeDecodeError) as e:
            raise CheckpointError(path, f"not a readable GGUF file (truncated or corrupt?): {e}") from None
        metadata = {}
        for key, field in reader.fields.items():
            if key.startswith("GGUF."):
                continue
            metadata[key] = field.contents()
        gguf = cls(path, metadata, reader.tensors, reader.data)
        gguf._check_sizes(reader.data.size)
        return gguf

    def config(self) -> ModelConfig:
        return ModelConfig.from_gguf_metadata(self.path, self.metadata, {t.name for t in self.tensors})

    def entries(self, config: ModelConfig) -> Iterator[Entry]:
        for t in self.tensors:
            name = gguf_to_hf(t.name)
            if name is None:
                raise CheckpointError(self.path, "unexpected tensor: not a name of llama.cpp's llama layout", t.name)
            yield Entry(name, self._value(t, name, config), str(self.path), t.name)

    def _value(self, t: ReaderTensor, name: str, config: ModelConfig) -> torch.Tensor | Packed:
        if t.tensor_type not in SUPPORTED_TYPES:
            supported = ", ".join(q.name for q in SUPPORTED_TYPES)
            raise UnsupportedModelError(
                self.path, f"type {t.tensor_type.name} is not supported (supported: {supported})", t.name
            )
        shape = tuple(int(n) for n in reversed(t.shape.tolist()))  # GGUF lists dimensions innermost first
        with warnings.catch_warnings():  # a copy-on-write map is writable; torch's warning does not apply
            warnings.simplefilter("ignore", UserWarning)
            data = torch.from_numpy(np.asarray(t.data))
        if t.tensor_type == GGMLQuantizationType.BF16:
            data = data.view(torch.bfloat16)
        if is_rope_projection(name):
            heads = config.n_heads if "q_proj" in name else config.n_kv_heads
            if len(shape) != 2 or shape[0] != heads * config.head_dim:
                want = [heads * config.head_dim, config.dim]
                raise CheckpointError(self.path, f"has shape {list(shape)}, expected {want}", t.name)
            data = interleaved_to_halves(data, heads)
        if t.tensor_type in DENSE_TYPES:
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
