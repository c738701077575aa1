"""The CLI on the real default model, as a user runs it."""

import json
import subprocess
import sys

import pytest

from autan import registry

pytestmark = pytest.mark.default_model


@pytest.fixture(scope="module", autouse=True)
def pulled():
    registry.pull("smollm2", quiet=True)


def autan(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "autan.cli", *args], capture_output=True, text=True, timeout=300)


def test_run_answers_the_capital_of_france():
    result = autan("run", "What is the capital of France?", "--temperature", "0", "--max-tokens", "40")
    assert result.returncode == 0, result.stderr
    assert "Paris" in result.stdout
    assert "tok/s" in result.stderr


def test_json_output_parses_and_is_reproducible_with_a_seed():
    args = ("run", "smollm2", "Name a color.", "--json", "--seed", "7", "--max-tokens", "8", "--temperature", "1")
    first, second = autan(*args), autan(*args)
    doc = json.loads(first.stdout)
    assert doc == {**json.loads(second.stdout), "tokens_per_second": doc["tokens_per_second"]}
    assert doc["finish_reason"] in ("stop", "length")
    assert doc["usage"]["completion_tokens"] == len(doc["token_ids"]) <= 8
    assert doc["usage"]["total_tokens"] == doc["usage"]["prompt_tokens"] + doc["usage"]["completion_tokens"]


def test_bad_flag_values_are_reported_plainly():
    result = autan("run", "hi", "--top-p", "2")
    assert result.returncode == 1
    assert result.stderr.strip() == "autan: error: top_p=2.0 must be in (0, 1]"
    missing = autan("run", "no-such-model", "hi")
    assert (
        missing.returncode == 1 and "'no-such-model' is neither a file or directory nor a known model" in missing.stderr
    )
