"""Handing freed memory back to the system. glibc keeps what is freed for reuse, and work that
makes many large short-lived tensors of changing sizes (packing a model at load, training) leaves
it scattered and resident: trimmed, the process holds what it uses (training's figures with and
without: docs/benchmarks.md, "Fine-tuning memory by sequence length")."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
from typing import Any


def give_memory_back() -> None:
    """Freed pages back to the system, where the C library is glibc (elsewhere the memory is reused)."""
    libc = _libc()
    if libc is not None:
        with contextlib.suppress(AttributeError):  # not glibc: no malloc_trim
            libc.malloc_trim(0)


@functools.cache
def _libc() -> Any:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None
