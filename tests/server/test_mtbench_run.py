"""`autan eval mt_bench` as a user runs it: a model answers both turns in process, a judge behind
a real HTTP server grades each answer, the means land on the leaderboard, a rerun resumes, and a
second judge grades the same answers without asking the model again."""

import hashlib
import json
import os
import subprocess
import sys

import pytest
from fastapi import FastAPI

from autan.eval import leaderboard


def autan(*args, home=None, timeout=1800):
    env = {**os.environ, "AUTAN_HOME": str(home)} if home else None
    return subprocess.run([sys.executable, "-m", "autan.cli", *args], capture_output=True, text=True, timeout=timeout,
                          env=env)  # fmt: skip


def own_home(tmp_path):
    """An $AUTAN_HOME of the test's own, so no run or judgment outlives it; fetched wheels are shared."""
    from autan import registry

    home = tmp_path / "home"
    home.mkdir()
    (registry.home() / "packages").mkdir(parents=True, exist_ok=True)
    (home / "packages").symlink_to(registry.home() / "packages")
    return home


class Judge:
    """A judge that rates each answer by a hash of what it was shown, and sometimes gives no rating."""

    def __init__(self):
        self.seen: list[dict] = []
        self.given: list[float | None] = []
        self.app = FastAPI()

        @self.app.post("/v1/chat/completions")
        async def chat(body: dict) -> dict:
            self.seen.append(body)
            digest = int(hashlib.sha256(body["messages"][-1]["content"].encode()).hexdigest(), 16)
            value = None if digest % 5 == 0 else 1 + digest % 10
            self.given.append(value)
            text = "Explanation." + (f" Rating: [[{value}]]" if value is not None else " No verdict.")
            return {"choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}  # fmt: skip


@pytest.fixture(scope="module")
def long_chatml(tmp_path_factory):
    """The tiny ChatML model with room for two turns of 1,024 tokens."""
    from checkpoints import CHATML, tiny_with_template

    return tiny_with_template(tmp_path_factory.mktemp("mtbench"), "tiny-long", CHATML, max_position_embeddings=4096)


def means(values):
    rated = [v for v in values if v is not None]
    return sum(rated) / len(rated), len(rated)


def test_answers_are_judged_recorded_and_resumed(long_chatml, live, tmp_path):
    ja, jb, home = "judge-a", "judge-b", own_home(tmp_path)
    judge = Judge()
    server = live(judge.app)
    board = tmp_path / "board.db"
    options = ["--model", str(long_chatml), "--limit", "2", "--judge-base-url", server.url, "--leaderboard-db",
               str(board), "--json"]  # fmt: skip
    first = autan("eval", "mt_bench", *options, "--judge-model", ja, "--fresh", home=home)
    assert first.returncode == 0, first.stderr[-3000:]
    assert len(judge.seen) == 4  # 2 questions, 2 turns
    assert all(b["model"] == ja and b["temperature"] == 0 and b["max_tokens"] == 2048 for b in judge.seen)
    # each second-turn judgment shows the judge both of the model's answers, as the log has them
    runs = (home / "eval" / "runs").glob("mt_bench-answers-*.jsonl")
    answers_file = max(runs, key=lambda p: p.stat().st_mtime)
    answers = {e["key"]: e["value"] for e in map(json.loads, answers_file.read_text().splitlines())}
    assert len(answers) == 4
    ids = sorted({k.split("/")[1] for k in answers})
    second_turns = [b["messages"][-1]["content"] for b in judge.seen if "### User:" in b["messages"][-1]["content"]]
    assert len(second_turns) == 2
    for i in ids:
        shown = [t for t in second_turns if f"### Assistant A:\n{answers['1/' + i]}\n\n### User:" in t]
        assert len(shown) == 1 and f"### Assistant A:\n{answers['2/' + i]}\n\n<|The End" in shown[0]

    rows = {r["metric"]: r for r in json.loads(first.stdout)}
    turn = {1: [], 2: []}
    for body, value in zip(judge.seen, judge.given, strict=True):
        turn[2 if "### User:" in body["messages"][-1]["content"] else 1].append(value)
    for metric, values in (("turn_1", turn[1]), ("turn_2", turn[2]), ("score", turn[1] + turn[2])):
        if all(v is None for v in values):
            assert metric not in rows
            continue
        mean, n = means(values)
        assert rows[metric]["task"] == f"mt_bench[{ja}]"
        assert rows[metric]["value"] == pytest.approx(mean) and rows[metric]["n"] == n
    if any(v is None for v in judge.given):
        assert "the judge gave no rating 1-10 for" in first.stderr

    again = autan("eval", "mt_bench", *options, "--judge-model", ja, home=home)
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(judge.seen) == 4  # resumed: nothing asked again
    assert [(r["metric"], r["value"]) for r in json.loads(again.stdout)] == [
        (r["metric"], r["value"]) for r in json.loads(first.stdout)
    ]

    other = autan("eval", "mt_bench", *options, "--judge-model", jb, home=home)
    assert other.returncode == 0, other.stderr[-3000:]
    assert len(judge.seen) == 8 and all(b["model"] == jb for b in judge.seen[4:])
    assert len(answers_file.read_text().splitlines()) == 4  # the same answers, judged again
    shown = autan("eval", "--leaderboard", "--leaderboard-db", str(board), home=home)
    assert f"mt_bench[{ja}]/score" in shown.stdout and f"mt_bench[{jb}]/score" in shown.stdout
    tasks = {r.task for r in leaderboard.newest(board)}
    assert tasks == {f"mt_bench[{ja}]", f"mt_bench[{jb}]"}


def test_mt_bench_needs_one_judge(chatml_path):
    none = autan("eval", "mt_bench", "--model", str(chatml_path))
    assert none.returncode == 2 and "mt_bench needs one judge" in none.stderr
    url = autan("eval", "mt_bench", "--model", str(chatml_path), "--judge-base-url", "http://127.0.0.1:9")
    assert url.returncode == 2 and "--judge-base-url needs --judge-model" in url.stderr
