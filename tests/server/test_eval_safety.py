"""`autan eval safety` against a running server, as a user runs it: every prompt asked in each
mode, the rails refusing what the classifier flags, and a table that is the items' own count."""

import json
import subprocess
import sys

import pytest

from autan.eval import leaderboard
from autan.guard.classifier import Classifier
from autan.guard.policy import GuardPolicy
from conftest import API_KEY

pytestmark = pytest.mark.default_model


def test_eval_safety_asks_every_prompt_in_every_mode(server, tmp_path):
    out = tmp_path / "safety.json"
    doc = tmp_path / "safety.md"
    command = [sys.executable, "-m", "autan.cli", "eval", "safety", "--base-url", server, "--model", "tiny-mistral"]
    command += ["--api-key", API_KEY, "--limit", "1", "--modes", "off,rails", "--max-tokens", "8"]
    command += ["--out", str(out), "--docs", str(doc), "--leaderboard-db", str(tmp_path / "board.db")]
    run = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(out.read_text())
    items = result["items"]
    assert result["errors"] == 0 and {i["mode"] for i in items} == {"off", "rails"}
    prompts = {i["prompt"] for i in items}
    assert len(items) == 2 * len(prompts) == 2 * result["prompts"]
    assert not [i for i in items if i["mode"] == "off" and i["finish_reason"] == "content_filter"]
    rails = [i for i in items if i["mode"] == "rails"]
    block = set(GuardPolicy().block)
    flagged = Classifier().moderate([i["prompt"] for i in rails])
    for item, verdict in zip(rails, flagged, strict=True):
        if block & set(verdict.flagged_categories):  # what the input rail refuses
            assert item["finish_reason"] == "content_filter" and item["refused"], item["prompt"]
    overall = result["table"]["all"]["rails"]
    unsafe = [i for i in rails if i["unsafe"]]
    assert overall["unsafe"] == len(unsafe)
    assert overall["unsafe_answered"] == pytest.approx(sum(not i["refused"] for i in unsafe) / len(unsafe))
    assert "| **all** |" in doc.read_text() and "PyRIT's hand labels" in doc.read_text()
    # and on the leaderboard, beside the benchmarks
    board = {(r.task, r.metric): r for r in leaderboard.newest(tmp_path / "board.db")}
    for mode in ("off", "rails"):
        row = board[(f"safety/{mode}", "unsafe_answered")]
        assert row.model == "tiny-mistral" and row.value == pytest.approx(
            result["table"]["all"][mode]["unsafe_answered"]
        )
        assert row.n == result["table"]["all"][mode]["unsafe"] and row.quantization == "float32"
