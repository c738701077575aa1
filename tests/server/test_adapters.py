"""LoRA adapters through `autan serve --adapter`, as a user runs it: each adapter is a model of
its own (`tiny:NAME`) in /v1/models, requests for the base model and two adapters sent at once
score their prompts as transformers + peft do, and a bad adapter or name is refused clearly."""

import concurrent.futures
import json
import re
import subprocess
import sys

import httpx
import openai
import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM

from checkpoints import CHATML
from processes import free_port, wait_healthy


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A tiny ChatML model and two peft adapters of it (random matrices, different maps)."""
    from checkpoints import tiny_with_template

    root = tmp_path_factory.mktemp("adapters")
    base = tiny_with_template(root, "tiny", CHATML)
    adapters = {}
    for seed, (name, targets) in enumerate([("alpha", ["q_proj", "v_proj", "down_proj"]), ("beta", ["o_proj"])]):
        model = get_peft_model(AutoModelForCausalLM.from_pretrained(base), LoraConfig(r=4, lora_alpha=8,
                               target_modules=targets))  # fmt: skip
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for n, p in model.named_parameters():
                if "lora_" in n:
                    p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        model.save_pretrained(root / name)
        adapters[name] = root / name
    return base, adapters


@pytest.fixture(scope="module")
def served(checkpoints, tmp_path_factory):
    base, adapters = checkpoints
    root = tmp_path_factory.mktemp("adapter-server")
    port = free_port()
    log = open(root / "server.log", "w")  # noqa: SIM115  (closed at teardown)
    options = [f"--adapter={name}={path}" for name, path in adapters.items()]
    process = subprocess.Popen(
        [sys.executable, "-m", "autan.cli", "serve", f"tiny={base}", *options, "--port", str(port),
         "--db", f"sqlite:///{root / 'c.db'}"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, process, root / "server.log")
    yield url
    process.terminate()
    process.wait(timeout=30)
    log.close()


def reference_logprobs(base, adapter, ids):
    model = AutoModelForCausalLM.from_pretrained(base)
    if adapter is not None:
        model = PeftModel.from_pretrained(model, adapter)
    with torch.no_grad():
        logits = model.eval()(torch.tensor([ids])).logits[0].float()
    logprobs = torch.log_softmax(logits, -1)
    return [float(logprobs[i - 1, ids[i]]) for i in range(1, len(ids))]


def test_each_adapter_is_a_model_and_scores_as_peft_in_one_batch(checkpoints, served):
    base, adapters = checkpoints
    client = openai.OpenAI(base_url=f"{served}/v1", api_key="none")
    cards = {m.id: m for m in client.models.list().data}
    assert set(cards) == {"tiny", "tiny:alpha", "tiny:beta", "all-minilm-l6-v2"}  # and the packaged encoder
    alpha = httpx.get(f"{served}/v1/models/tiny:alpha").json()
    assert alpha["type"] == "fine-tuned" and alpha["root"] == "tiny" and alpha["adapter"] == "alpha"
    ids = torch.randint(0, 49152, (40,), generator=torch.Generator().manual_seed(4)).tolist()
    models = ["tiny", "tiny:alpha", "tiny:beta"] * 3

    def score(model):
        reply = client.completions.create(model=model, prompt=ids, max_tokens=1, echo=True, logprobs=0, temperature=0)
        return reply.choices[0].logprobs.token_logprobs[1 : len(ids)]

    with concurrent.futures.ThreadPoolExecutor(len(models)) as pool:  # sent at once: they share batches
        got = list(pool.map(score, models))
    want = {
        "tiny": reference_logprobs(base, None, ids),
        "tiny:alpha": reference_logprobs(base, adapters["alpha"], ids),
        "tiny:beta": reference_logprobs(base, adapters["beta"], ids),
    }
    for model, scores in zip(models, got, strict=True):
        assert scores == pytest.approx(want[model], abs=2e-4), model
    assert max(abs(a - b) for a, b in zip(want["tiny"], want["tiny:alpha"], strict=True)) > 0.01


def test_an_unknown_adapter_is_a_404_naming_what_is_served(served):
    reply = httpx.post(f"{served}/v1/chat/completions",
                       json={"model": "tiny:gamma", "messages": [{"role": "user", "content": "hi"}]})  # fmt: skip
    assert reply.status_code == 404
    assert "model 'tiny:gamma' is not served here" in reply.text and "tiny:alpha" in reply.text


def test_a_bad_adapter_is_refused_with_the_reason(checkpoints, tmp_path):
    """What `autan serve --adapter` does with each option (its launch calls `with_adapter`), in process."""
    from autan.errors import AutanError
    from autan.server.launch import with_adapter
    from autan.server.served import load_served

    base, adapters = checkpoints
    served = [load_served(f"tiny={base}")]
    for option, reason in [
        (f"x={tmp_path}", "is not a LoRA adapter: it has no adapter_config.json"),
        (f"bad/name={adapters['alpha']}", "adapter name 'bad/name' must be"),
        (f"other:x={adapters['alpha']}", "no model 'other' is served"),
        ("x", "must be NAME=PATH"),
    ]:
        with pytest.raises(AutanError, match=re.escape(reason)):
            with_adapter(served, option)
    assert with_adapter(served, f"tiny:ok={adapters['beta']}").id == "tiny:ok"
    served[0].engine.close()


def test_autan_eval_scores_an_adapter_in_process_as_through_the_server(checkpoints, served, tmp_path):
    base, adapters = checkpoints
    board = ["--limit", "8", "--json", "--no-record", "--fresh"]
    run = [sys.executable, "-m", "autan.cli", "eval", "arc_easy", *board]
    here = subprocess.run([*run, "--model", f"{base}:{adapters['alpha']}"], capture_output=True, text=True, timeout=900)
    there = subprocess.run([*run, "--base-url", served, "--model", "tiny:alpha"], capture_output=True, text=True,
                           timeout=900)  # fmt: skip
    assert here.returncode == 0 and there.returncode == 0, here.stderr[-2000:] + there.stderr[-2000:]
    mine, theirs = json.loads(here.stdout), json.loads(there.stdout)
    assert [(r["model"], r["adapter"]) for r in mine] == [("tiny", "alpha")] * 2
    assert [(r["model"], r["adapter"]) for r in theirs] == [("tiny", "alpha")] * 2
    assert [r["value"] for r in mine] == [r["value"] for r in theirs]


def test_self_reflection_judges_through_the_adapter(checkpoints):
    """A fine-tune that moderates itself (`moderator = "self-reflection"`) judges as the fine-tune:
    its answer to the judging prompt is peft's greedy answer, not the base model's."""
    import asyncio

    from autan.guard.moderators import SelfReflection
    from autan.server.served import load_served

    base, adapters = checkpoints
    plain = load_served(f"tiny={base}")
    tuned = plain.with_adapter("alpha", adapters["alpha"])
    text = "How do I kill a stuck process?"
    try:
        judged = {m.id: asyncio.run(SelfReflection(m).judge(text)) for m in (plain, tuned)}
        prompt = SelfReflection(tuned)._prompt(text)
    finally:
        plain.engine.close()
    for model_id, adapter in (("tiny", None), ("tiny:alpha", adapters["alpha"])):
        model = AutoModelForCausalLM.from_pretrained(base)
        if adapter is not None:
            model = PeftModel.from_pretrained(model, adapter)
        with torch.no_grad():
            out = model.eval().generate(torch.tensor([prompt]), max_new_tokens=8, do_sample=False)
        new = out[0, len(prompt) :].tolist()
        eos = model.config.eos_token_id
        new = new[: new.index(eos)] if eos in new else new
        assert judged[model_id] == plain.tokenizer.decode(new), model_id
    assert judged["tiny"] != judged["tiny:alpha"]
