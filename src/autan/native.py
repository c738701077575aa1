"""The compiled CPU kernels (`csrc/`, built by the install as `autan._native`), if this install has
them and this process may use them; otherwise None, and the PyTorch kernels run.

`AUTAN_NATIVE=0` turns them off; `AUTAN_NATIVE_ISA` names the instruction-set tier they use
instead of the best this CPU has (`scalar`, `avx2`, `avx_vnni`, `avx512`, `avx512_vnni`: for
comparing tiers on one machine). Which kernels run is `describe()`: `autan inspect` and the
server's log print it.
"""

from __future__ import annotations

import functools
import os
from types import ModuleType

ABI = 8  # what csrc/bindings.cpp says it is; a stale build (older sources) is not used


@functools.cache
def module() -> ModuleType | None:
    if os.environ.get("AUTAN_NATIVE", "1") == "0":
        return None
    try:
        import torch  # noqa: F401  (the extension links against the torch already loaded)

        from autan import _native
    except ImportError:
        return None
    return _native if getattr(_native, "ABI", None) == ABI else None


def describe() -> str:
    native = module()
    if native is None:
        why = (
            "turned off (AUTAN_NATIVE=0)"
            if os.environ.get("AUTAN_NATIVE") == "0"
            else "not built, or built from older sources"
        )
        return f"PyTorch kernels (native kernels {why})"
    found = [name for name, on in sorted(native.features().items()) if on]
    forced = os.environ.get("AUTAN_NATIVE_ISA")
    refused = ""
    if forced and forced != native.isa():
        known = forced in native.isas()
        refused = f"; AUTAN_NATIVE_ISA={forced!r} " + (
            "is a tier this CPU cannot run" if known else f"is no tier (tiers: {', '.join(native.isas())})"
        )
    return f"native kernels ({native.isa()}; this CPU: {', '.join(found) or 'baseline x86-64'}{refused})"
