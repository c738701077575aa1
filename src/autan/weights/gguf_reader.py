"""GGUF's header, read without torch: metadata and the tensor directory.

Enough for `autan list`, a model's recommended sampling and the checks made before loading, so
none of them pays for importing torch. `gguf_file` builds the tensors on top of it.
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGMLQuantizationType, LlamaFileType

from autan.errors import CheckpointError

# GGUF value types: struct format of each scalar (8 is a string, 9 an array)
SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
STRING, ARRAY = 8, 9
MAX_DIMS = 4  # GGML_MAX_DIMS


@dataclass
class RawTensor:
    name: str
    type: int  # a GGMLQuantizationType value
    shape: tuple[int, ...]  # as GGUF lists it: innermost dimension first
    data_offset: int  # from the start of the file


def is_gguf(path: str | Path) -> bool:
    """Whether `path` is a GGUF file, by its magic: Ollama keeps them as blobs without a suffix."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return path.is_file() and f.read(4) == b"GGUF"
    except OSError:
        return False


def read_header(path: str | Path) -> tuple[dict[str, Any], list[RawTensor]]:
    """The metadata and tensor directory of a GGUF file, reading only the pages they are on."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "file not found")
    try:
        return parse(np.memmap(path, dtype=np.uint8, mode="r"))
    except (ValueError, KeyError, IndexError, OSError, UnicodeDecodeError, struct.error) as e:
        raise CheckpointError(path, f"not a readable GGUF file (truncated or corrupt?): {e}") from None


def parse(data: np.ndarray) -> tuple[dict[str, Any], list[RawTensor]]:
    """Metadata and tensor directory of a GGUF file (version 2 or 3), read from its bytes.

    Layout: magic "GGUF", version u32, tensor count u64, metadata count u64; then each metadata
    entry (key string, value type u32, value); then each tensor (name, n_dims u32, dims u64...,
    type u32, offset u64); tensor data starts at the next multiple of `general.alignment` (32).
    Strings are u64 length + UTF-8. Arrays are item type u32, count u64, items. Numeric arrays
    are read in one go, which is what keeps a 49k-token vocabulary quick and small.
    """
    buffer = memoryview(data)
    if bytes(buffer[:4]) != b"GGUF":
        raise ValueError(f"starts with {bytes(buffer[:4])!r}, not b'GGUF'")
    version, n_tensors, n_entries = struct.unpack_from("<IQQ", buffer, 4)
    if version not in (2, 3):
        raise ValueError(f"GGUF version {version} (supported: 2, 3)")
    at = 24

    def string() -> str:
        nonlocal at
        (length,) = struct.unpack_from("<Q", buffer, at)
        if at + 8 + length > len(buffer):
            raise ValueError(f"a string of {length} bytes at byte {at} runs past the end of the file")
        text = bytes(buffer[at + 8 : at + 8 + length]).decode("utf-8")
        at += 8 + length
        return text

    def value(kind: int) -> Any:
        nonlocal at
        if kind == STRING:
            return string()
        if kind == ARRAY:
            item, count = struct.unpack_from("<IQ", buffer, at)
            at += 12
            if item in (STRING, ARRAY):
                return [value(item) for _ in range(count)]
            fmt = SCALARS[item]
            size = struct.calcsize(fmt)
            items = np.frombuffer(buffer, dtype=np.dtype(fmt.replace("?", "b1")), count=count, offset=at).tolist()
            at += size * count
            return items
        (scalar,) = struct.unpack_from(SCALARS[kind], buffer, at)
        at += struct.calcsize(SCALARS[kind])
        return scalar

    metadata = {}
    for _ in range(n_entries):
        key = string()
        (kind,) = struct.unpack_from("<I", buffer, at)
        at += 4
        metadata[key] = value(kind)
    infos = []
    for _ in range(n_tensors):
        name = string()
        (n_dims,) = struct.unpack_from("<I", buffer, at)
        if not 1 <= n_dims <= MAX_DIMS:
            raise ValueError(f"tensor '{name}' has {n_dims} dimensions (GGUF allows 1 to {MAX_DIMS})")
        shape = struct.unpack_from(f"<{n_dims}Q", buffer, at + 4)
        kind, offset = struct.unpack_from("<IQ", buffer, at + 4 + 8 * n_dims)
        at += 4 + 8 * n_dims + 12
        infos.append(RawTensor(name, kind, tuple(shape), offset))
    alignment = metadata.get("general.alignment", 32)
    if not isinstance(alignment, int) or isinstance(alignment, bool) or alignment < 1 or alignment & (alignment - 1):
        raise ValueError(f"general.alignment is {alignment!r}, not a power of two")
    start = -(-at // alignment) * alignment
    for info in infos:
        if info.data_offset % alignment:  # llama.cpp refuses these too: the data would be read shifted
            raise ValueError(
                f"tensor '{info.name}' starts at offset {info.data_offset}, not a multiple of the alignment {alignment}"
            )
        info.data_offset += start
    return metadata, infos


def stored_quantization(path: Path, dtype: Any) -> str:
    """How a checkpoint's weights are stored: a GGUF's file type as llama.cpp names it (Q4_K_M),
    else the dtype its matrices load in (bfloat16)."""
    if not is_gguf(path):
        return str(dtype).removeprefix("torch.")
    metadata, tensors = read_header(path)
    try:
        return LlamaFileType(metadata["general.file_type"]).name.removeprefix("MOSTLY_").removeprefix("ALL_")
    except (KeyError, ValueError):  # no file type, or a newer one: the type most of the matrices have
        counts = Counter(t.type for t in tensors if len(t.shape) == 2)
        return GGMLQuantizationType(counts.most_common(1)[0][0]).name if counts else "unknown"
