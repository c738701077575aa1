"""The leaderboard keeps every result, shows each model's newest per task, and keeps models
that differ (quantization, adapter, file) apart."""

from autan.eval import leaderboard
from autan.eval.leaderboard import Row


def test_newest_result_per_model_and_task(tmp_path):
    db = tmp_path / "board.db"
    leaderboard.record([Row("smollm2", "piqa", "acc", 0.60, 100, 0.05, quantization="Q4_1", command="first")], db)
    leaderboard.record([Row("smollm2", "piqa", "acc", 0.65, 1838, 0.011, quantization="Q4_1", command="second"),
                        Row("smollm2", "piqa", "acc", 0.67, 1838, 0.011, quantization="bfloat16"),
                        Row("smollm2", "piqa", "acc", 0.70, 1838, 0.010, quantization="Q4_1", adapter="tuned"),
                        Row("smollm2", "safety/rails", "unsafe_answered", 0.02, 300, quantization="Q4_1",
                            tokens_per_second=400.0)], db)  # fmt: skip
    rows = leaderboard.newest(db)
    assert len(rows) == 4
    board = leaderboard.table(rows)
    assert board["columns"] == ["piqa/acc", "safety/rails/unsafe_answered"]
    by_model = {(m["quantization"], m["adapter"]): m for m in board["models"]}
    assert by_model[("Q4_1", "")]["scores"]["piqa/acc"]["value"] == 0.65  # the newer of the two
    assert by_model[("Q4_1", "")]["scores"]["piqa/acc"]["command"] == "second"
    assert by_model[("Q4_1", "")]["tokens_per_second"] == 400.0
    assert by_model[("Q4_1", "tuned")]["scores"]["piqa/acc"]["value"] == 0.70
    text = leaderboard.render(rows).splitlines()
    assert text[0].split() == ["model", "quantization", "piqa/acc", "safety/rails/unsafe_answered", "tok/s"]
    assert "65.0 ±1.1" in text[1 + [m["quantization"] for m in board["models"]].index("Q4_1")]
    assert any("smollm2 + tuned" in line and "70.0 ±1.0" in line for line in text)
    assert any("2.0%" in line for line in text)


def test_an_empty_leaderboard_says_how_to_fill_it(tmp_path):
    assert "run `autan eval TASK` first" in leaderboard.render(leaderboard.newest(tmp_path / "none.db"))


def test_a_command_is_kept_without_its_secrets(tmp_path):
    db = tmp_path / "board.db"
    command = "autan eval piqa --base-url https://me:hunter2@host/v1 --api-key sk-secret --model m --api-key=sk-2"
    leaderboard.record([Row("m", "piqa", "acc", 0.5, 10, command=command)], db)
    kept = leaderboard.newest(db)[0].command
    assert "hunter2" not in kept and "sk-secret" not in kept and "sk-2" not in kept
    assert kept == "autan eval piqa --base-url https://***@host/v1 --api-key *** --model m --api-key=***"
