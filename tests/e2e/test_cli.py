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


def test_json_output_parses_and_greedy_answers_repeat():
    """Greedy answers repeat across processes, the file mapped or read into memory. (Seeded
    sampling repeats within a process, tests/engine; across processes about one run in 15
    computes its first step slightly differently, which a sampled token can feel: see
    docs/performance.md.)"""
    args = ("run", "smollm2", "Name a color.", "--json", "--max-tokens", "8", "--temperature", "0")
    first, second = autan(*args), autan(*args, "--no-mmap")
    doc = json.loads(first.stdout)
    assert doc == {**json.loads(second.stdout), "tokens_per_second": doc["tokens_per_second"]}
    assert doc["finish_reason"] in ("stop", "length")
    assert doc["usage"]["completion_tokens"] == len(doc["token_ids"]) <= 8
    assert doc["usage"]["total_tokens"] == doc["usage"]["prompt_tokens"] + doc["usage"]["completion_tokens"]
    sampled = json.loads(autan(*args[:-1], "1", "--seed", "7").stdout)
    assert sampled["usage"]["completion_tokens"] == len(sampled["token_ids"]) <= 8


def test_bad_flag_values_are_reported_by_the_flag_typed():
    for args, message in [
        (("--top-p", "2"), "argument --top-p: '2' must be in (0, 1]"),
        (("--max-tokens", "-1"), "argument --max-tokens: '-1' must be 0 or more"),
        (("--temperature", "hot"), "argument --temperature: 'hot' is not a number"),
        (("--seed", "-3"), "argument --seed: '-3' must be in [0, 9223372036854775807]"),
    ]:
        result = autan("run", "hi", *args)
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)
    missing = autan("run", "no-such-model", "hi")
    assert (
        missing.returncode == 1 and "'no-such-model' is neither a file or directory nor a known model" in missing.stderr
    )
    empty = autan("run", "   ")
    assert empty.returncode == 1 and "the prompt is empty" in empty.stderr


def test_quantize_a_float_checkpoint_at_load_and_set_threads(tmp_path):
    """A float Mistral-format checkpoint, quantized to int4 as it loads, answers (greedy, the same
    twice) on one thread; bad values of both flags are refused by name. (The quantized numbers
    themselves are checked in tests/model/test_kernels.py.)"""
    from checkpoints import tiny_mistral_format

    path = str(tiny_mistral_format(tmp_path, "mistral", "mistral_instruct_tokenizer_240323.model.v3", 32768))
    args = ("run", path, "Hello", "--json", "--temperature", "0", "--max-tokens", "6", "--threads", "1")
    quantized, again = autan(*args, "--quantize", "int4"), autan(*args, "--quantize", "int4")
    assert quantized.returncode == 0, quantized.stderr
    doc = json.loads(quantized.stdout)
    assert doc["token_ids"] == json.loads(again.stdout)["token_ids"] and len(doc["token_ids"]) == 6
    bad = autan("run", path, "hi", "--quantize", "int3")
    assert bad.returncode == 2 and "invalid choice: 'int3'" in bad.stderr
    threads = autan("run", path, "hi", "--threads", "-2")
    assert threads.returncode == 2 and "argument --threads: '-2' must be a whole number of at least 1" in threads.stderr
