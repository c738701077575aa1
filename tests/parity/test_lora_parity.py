"""LoRA adapters against transformers + peft: an adapter peft trained (here: made, with random
matrices) on a tiny random Llama or Mistral gives peft's logits in autan, and one autan wrote
gives autan's logits in peft; rank and alpha patterns and rsLoRA scale as peft scales them."""

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model

from autan.model import lora
from autan.weights import load_model
from checkpoints import hf_model

TOL = 2e-5


def peft_adapter(arch, tmp_path, seed, **options):
    base = hf_model(arch, seed=1, **({"sliding_window": 8} if arch == "mistral" else {}))
    base.save_pretrained(tmp_path / arch)
    model = get_peft_model(base, LoraConfig(**options))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # peft starts B at zero: make every adapter matrix count
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    model.save_pretrained(tmp_path / f"{arch}-adapter")
    return model.eval(), tmp_path / arch, tmp_path / f"{arch}-adapter"


@pytest.mark.parametrize("arch", ["llama", "mistral"])
@pytest.mark.parametrize(
    "options",
    [
        dict(r=4, lora_alpha=8, target_modules=list(lora.TARGETS)),
        dict(r=8, lora_alpha=32, target_modules=["q_proj", "v_proj"], use_rslora=True),
        dict(r=4, lora_alpha=4, target_modules=["q_proj", "down_proj", "up_proj"],
             rank_pattern={"down_proj": 2}, alpha_pattern={"layers.1.self_attn.q_proj": 16}),
    ],
    ids=["all-maps", "rslora", "patterns"],
)  # fmt: skip
def test_a_peft_adapter_gives_peft_logits(arch, options, tmp_path):
    reference, base_dir, adapter_dir = peft_adapter(arch, tmp_path, seed=3, **options)
    ours = load_model(base_dir, dtype=torch.float32)
    lora.attach(ours, lora.load_adapter(adapter_dir), slot=1)
    ids = torch.randint(0, ours.config.vocab_size, (24,), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = reference(ids[None]).logits[0].float()
        with reference.disable_adapter():
            base = reference(ids[None]).logits[0].float()
    got = ours.logits(ids)  # no adapter
    assert (got - base).abs().max() < TOL
    with torch.inference_mode():
        adapted = ours(ids, adapter=1).float()
    assert (adapted - want).abs().max() < TOL
    assert (want - base).abs().max() > 100 * TOL  # the adapter changes the logits


@pytest.mark.parametrize("arch", ["llama", "mistral"])
def test_an_adapter_autan_writes_loads_in_peft(arch, tmp_path):
    base = hf_model(arch, seed=1)
    base.save_pretrained(tmp_path / "base")
    ours = load_model(tmp_path / "base", dtype=torch.float32)
    config = lora.AdapterConfig(r=4, lora_alpha=12, target_modules=("k_proj", "o_proj", "gate_proj"))
    fresh = lora.new_adapter(ours, config, seed=0)
    g = torch.Generator().manual_seed(1)
    maps = {m: (a, torch.randn(b.shape, generator=g) * 0.2) for m, (a, b, _) in fresh.maps.items()}
    lora.save_adapter(tmp_path / "adapter", config, maps)
    lora.attach(ours, lora.load_adapter(tmp_path / "adapter"), slot=1)
    reference = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    ids = torch.randint(0, ours.config.vocab_size, (16,), generator=g)
    with torch.no_grad():
        want = reference(ids[None]).logits[0].float()
    with torch.inference_mode():
        got = ours(ids, adapter=1).float()
    assert (got - want).abs().max() < TOL
    assert len(maps) == 3 * ours.config.n_layers


def test_adapters_that_do_not_fit_are_refused_with_the_reason(tmp_path):
    _, base_dir, adapter_dir = peft_adapter("llama", tmp_path, seed=0, r=4, target_modules=["q_proj"])
    other = hf_model("llama", seed=1, hidden_size=96)
    other.save_pretrained(tmp_path / "wider")
    with pytest.raises(lora.AdapterError, match=r"q_proj is .* in this model, but the adapter's A is"):
        lora.attach(load_model(tmp_path / "wider"), lora.load_adapter(adapter_dir), slot=1)
    with pytest.raises(lora.AdapterError, match="has no adapter_config.json"):
        lora.load_adapter(base_dir)
    config = adapter_dir / "adapter_config.json"
    config.write_text(config.read_text().replace('"use_dora": false', '"use_dora": true'))
    with pytest.raises(lora.AdapterError, match="DoRA adapters are not supported"):
        lora.load_adapter(adapter_dir)


@pytest.mark.parametrize("arch", ["llama", "mistral", "qwen2"])
@pytest.mark.parametrize("recompute", [True, False], ids=["recomputed", "kept"])
def test_training_loss_and_gradients_are_peft_ones(arch, recompute, tmp_path, monkeypatch):
    """Several examples packed into one forward (Mistral's window of 8 cuts two of them), each
    block run again in the backward pass or kept, the loss's rows made a few at a time: the summed
    loss and every adapter matrix's gradient are what peft gets on each example alone."""
    from autan.finetune import train
    from autan.finetune.data import Example

    reference, base_dir, adapter_dir = peft_adapter(arch, tmp_path, seed=4, r=4, lora_alpha=8,
                                                    target_modules=list(lora.TARGETS))  # fmt: skip
    ours = load_model(base_dir, dtype=torch.float32, kernels="exact")
    lora.attach(ours, lora.load_adapter(adapter_dir), slot=train.SLOT, trainable=True)
    monkeypatch.setattr(train, "loss_rows", lambda config: 7)  # several chunks of rows
    g = torch.Generator().manual_seed(2)
    examples = []
    for n in (30, 5, 17, 2):
        ids = torch.randint(0, ours.config.vocab_size, (n,), generator=g).tolist()
        learn = (torch.rand(n, generator=g) < 0.7).tolist()
        examples.append(Example(tuple(ids), tuple(learn)))

    loss, count = train.batch_loss(ours, examples, recompute=recompute)
    loss.backward()
    want, want_count = torch.zeros(()), 0
    for e in examples:
        ids, learn = torch.tensor(e.ids), torch.tensor(e.learn[1:])
        logits = reference(ids[None, :-1]).logits[0].float()
        want = want + torch.nn.functional.cross_entropy(logits[learn], ids[1:][learn], reduction="sum")
        want_count += int(learn.sum())
    want.backward()

    assert count == want_count
    assert abs(loss.item() - want.item()) < 1e-4 * want.item()
    grads = dict(reference.named_parameters())
    checked = 0
    for module, linear in lora.module_table(ours).items():
        for ours_p, side in ((linear.lora.a[str(train.SLOT)], "A"), (linear.lora.b[str(train.SLOT)], "B")):
            theirs = grads[f"base_model.model.{module}.lora_{side}.default.weight"].grad
            assert torch.allclose(ours_p.grad, theirs, rtol=1e-4, atol=1e-5), (module, side)
            checked += 1
    assert checked == 2 * 7 * ours.config.n_layers
