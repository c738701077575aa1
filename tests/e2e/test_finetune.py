"""`autan finetune` as a user runs it, on a tiny random model: the loss falls, the adapter is in
PEFT's format and gives peft the logits autan computes, a run stopped part-way and resumed ends
with the same adapter as one run straight through, and bad options are refused."""

import json
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from autan.model import lora
from autan.weights import load_model
from checkpoints import CHATML


def autan(*args):
    return subprocess.run([sys.executable, "-m", "autan.cli", *args], capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from checkpoints import tiny_with_template

    root = tmp_path_factory.mktemp("finetune")
    model = tiny_with_template(root, "tiny", CHATML)
    rows = [{"messages": [{"role": "user", "content": f"Number {i}?"}, {"role": "assistant", "content": f"It is {i}."}]}
            for i in range(12)]  # fmt: skip
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:4]))
    return model, root


def options(root, out, *extra):
    return ["--data", str(root / "train.jsonl"), "--val", str(root / "val.jsonl"), "--out", str(out), "--rank", "4",
            "--lr", "1e-2", "--batch-size", "4", "--epochs", "4", "--dropout", "0", "--seed", "3", *extra]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tiny, tmp_path_factory):
    """One run of 12 steps, validated every 4, checkpointed every 5 (and at the end)."""
    model, root = tiny
    out = tmp_path_factory.mktemp("trained") / "a"
    done = autan("finetune", str(model), *options(root, out, "--eval-every", "4", "--save-every", "5"))
    assert done.returncode == 0, done.stderr[-3000:]
    return out, done.stderr


def test_training_lowers_the_loss_and_writes_a_peft_adapter(tiny, trained):
    model, _ = tiny
    out, stderr = trained
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    losses = [e["loss"] for e in log if "loss" in e]
    val = [e["val_loss"] for e in log if "val_loss" in e]
    assert len(losses) == 12 and len(val) == 3  # 12 examples / 4 per step * 4 epochs; evaluated at 4, 8, 12
    assert losses[-1] < losses[0] - 0.5 and val[-1] < val[0] - 0.5  # nats per token
    assert "validation loss" in stderr and "tokens/s" in stderr and "ETA" in stderr
    assert (out / "loss.svg").read_text().startswith("<svg")
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 4 and set(config["target_modules"]) == set(lora.TARGETS)
    tensors = load_file(out / "adapter_model.safetensors")
    assert all(k.startswith("base_model.model.model.layers.") for k in tensors)
    # transformers + peft read it and compute what autan computes
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model), out).eval()
    ours = load_model(model)
    lora.attach(ours, lora.load_adapter(out), 1)
    ids = torch.tensor([1, 9690, 198, 4521, 216, 34, 46, 7, 2, 9690])
    with torch.no_grad():
        want = reference(ids[None]).logits[0]
    with torch.inference_mode():
        assert (ours(ids, adapter=1) - want).abs().max() < 2e-5


def test_a_resumed_run_ends_where_a_straight_run_does(tiny, trained, tmp_path):
    model, root = tiny
    straight, _ = trained
    # as if stopped after step 5: only that checkpoint is left, then the run goes on from it
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(straight / "checkpoint-5", resumed / "checkpoint-5")
    again = autan("finetune", str(model), *options(root, resumed, "--eval-every", "4", "--resume"))
    assert again.returncode == 0, again.stderr[-3000:]
    a = load_file(straight / "adapter_model.safetensors")
    b = load_file(resumed / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    log = [json.loads(line) for line in (resumed / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log if "loss" in e] == list(range(1, 13))  # each step once, across the two runs
    assert not (resumed / "checkpoint-4").exists() and (resumed / "checkpoint-12").is_dir()


def test_bad_options_and_data_are_refused(tiny, tmp_path):
    model, root = tiny
    wrong = autan("finetune", str(model), *options(root, tmp_path / "x", "--targets", "q_proj,w9"))
    assert wrong.returncode == 1 and "target modules w9: choose among q_proj" in wrong.stderr
    rank = autan("finetune", str(model), *options(root, tmp_path / "x", "--rank", "0"))
    assert rank.returncode == 1 and "rank 0 must be at least 1" in rank.stderr
    (tmp_path / "bad.jsonl").write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    data = autan("finetune", str(model), "--data", str(tmp_path / "bad.jsonl"), "--out", str(tmp_path / "y"))
    assert data.returncode == 1 and "bad.jsonl:1: the conversation has no assistant message" in data.stderr
    assert "Traceback" not in wrong.stderr + rank.stderr + data.stderr
