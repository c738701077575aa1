"""`autan eval` as a user runs it: a task scored in process, resumed where it stopped, recorded
on the leaderboard, and bad names refused with the known ones."""

import json
import subprocess
import sys

from autan.eval import leaderboard, run


def autan(*args, timeout=900):
    return subprocess.run([sys.executable, "-m", "autan.cli", *args], capture_output=True, text=True, timeout=timeout)


def test_a_task_is_scored_resumed_and_recorded(chatml_path, tmp_path):
    board = tmp_path / "board.db"
    options = ["--model", str(chatml_path), "--limit", "12", "--leaderboard-db", str(board), "--json"]
    first = autan("eval", "arc_easy", *options, "--fresh")
    assert first.returncode == 0, first.stderr[-3000:]
    rows = json.loads(first.stdout)
    assert [r["metric"] for r in rows] == ["acc", "acc_norm"] and all(r["n"] == 12 for r in rows)
    assert "arc_easy: 12/12 docs" in first.stderr
    # the run's file holds every document's scores; cut it short (and leave a torn line) and rerun
    runs = (run.registry.home() / "eval" / "runs").glob("arc_easy-*.jsonl")
    resume = max(runs, key=lambda p: p.stat().st_mtime)
    lines = resume.read_text().splitlines()
    assert len(lines) == 12
    resume.write_text("\n".join(lines[:5]) + '\n{"index": 9, "sco')
    again = autan("eval", "arc_easy", *options)
    assert again.returncode == 0, again.stderr[-3000:]
    assert [(r["metric"], r["value"], r["n"]) for r in json.loads(again.stdout)] == [
        (r["metric"], r["value"], r["n"]) for r in rows
    ]
    after = resume.read_text().splitlines()
    assert after[:5] == lines[:5] and len(after) == 5 + 1 + 7  # only the 7 missing were scored again
    assert sorted(json.loads(line)["index"] for line in after if line.endswith("}")) == sorted(
        json.loads(line)["index"] for line in lines
    )
    shown = autan("eval", "--leaderboard", "--leaderboard-db", str(board))
    assert shown.returncode == 0 and "arc_easy/acc" in shown.stdout and chatml_path.name in shown.stdout
    assert len(leaderboard.newest(board)) == 2  # the rerun's rows are the newest, not extra ones


def test_unknown_tasks_and_bad_options_are_refused(chatml_path):
    wrong = autan("eval", "helaswag", "--model", str(chatml_path))
    assert wrong.returncode == 1 and "unknown task 'helaswag'" in wrong.stderr and "hellaswag" in wrong.stderr
    bad = autan("eval", "piqa", "--model", str(chatml_path), "--limit", "0")
    assert bad.returncode == 2 and "--limit 0 must be at least 1" in bad.stderr
