"""The compiled CPU kernels (`csrc/`, built by the install as `autan._native`), if this install has
them and this process may use them; otherwise None, and the PyTorch kernels run.

`AUTAN_NATIVE=0` turns them off; `AUTAN_NATIVE_ISA` names the instruction-set tier they use
instead of the best this CPU has (`scalar`, `avx2`, `avx_vnni`, `avx512`, `avx512_vnni`: for
comparing tiers on one machine); `AUTAN_ACTIVATION_PARTS` how finely activations are quantized
(`activation_parts_asked`). Which kernels run is `describe()`: `autan inspect` and the server's
log print it.
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
    if getattr(_native, "ABI", None) != ABI:
        return None
    decode, prompt = activation_parts_asked()
    _native.set_activation_parts(decode, prompt)
    return _native


def activation_parts_asked() -> tuple[int, int]:
    """The int8 parts of the activations for decode steps and for prompts: `AUTAN_ACTIVATION_PARTS`
    "2" (the default: two parts, within ~1/65000 of each block's largest value, so answers are the
    exact path's), "1" (llama.cpp's one part: 1.6x faster prompts, 1.3x faster decode on a 7B, and
    near-ties flip as llama.cpp's do), or two numbers, decode steps' then prompts', as "2,1"."""
    asked = os.environ.get("AUTAN_ACTIVATION_PARTS", "2")
    values = asked.split(",")
    if len(values) > 2 or any(v.strip() not in ("1", "2") for v in values):
        raise ValueError(
            f"AUTAN_ACTIVATION_PARTS={asked!r}: expected 1 or 2 parts, or two of them (decode steps, prompts), "
            "as in '2,1'"
        )
    decode = int(values[0])
    return decode, int(values[-1]) if len(values) == 2 else decode


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
    decode, prompt = native.activation_parts(), native.activation_parts(prompt=True)
    parts = f"activations in {decode} int8 part(s) for decode, {prompt} for prompts"
    return f"native kernels ({native.isa()}; this CPU: {', '.join(found) or 'baseline x86-64'}{refused}; {parts})"
