"""One set of random weights written in every format loads to the same logits."""

import dataclasses
import math

import pytest
import torch
from gguf import GGMLQuantizationType as Q

import autan
from autan.kernels.blocks import QuantizedWeight
from checkpoints import dequantized_hf_state, hf_model, save_gguf, save_hf, save_mistral

ARCHS = ["llama", "mistral", "mixtral", "qwen2"]


@pytest.fixture(scope="module", params=ARCHS)
def source(request, tmp_path_factory):
    """(arch, hf model, its saved directory, tokens) for one architecture."""
    arch = request.param
    hf = hf_model(arch, seed=1)
    directory = save_hf(hf, tmp_path_factory.mktemp(arch) / "hf")
    return arch, hf, directory, torch.randint(0, 128, (30,), generator=torch.Generator().manual_seed(2))


def test_every_float_format_gives_identical_logits(source, tmp_path):
    arch, hf, hf_dir, tokens = source
    expected = autan.load_model(hf_dir).logits(tokens)
    copies = {
        "hf sharded": save_hf(hf, tmp_path / "sharded", max_shard_size="20KB"),
        "gguf f32": save_gguf(hf_dir, tmp_path / "model.gguf"),
    }
    if arch != "qwen2":  # Mistral's format has no biases
        copies["mistral safetensors"] = save_mistral(hf_dir, tmp_path / "mistral")
        copies["mistral pth"] = save_mistral(hf_dir, tmp_path / "pth", pth=True)
    if arch == "mixtral":
        copies["gguf per-expert"] = save_gguf(hf_dir, tmp_path / "experts.gguf", stacked_experts=False)
    assert len(list(copies["hf sharded"].glob("model-*-of-*.safetensors"))) > 1
    for kind, path in copies.items():
        model = autan.load_model(path, kernels="exact")
        torch.testing.assert_close(model.logits(tokens), expected, rtol=0, atol=0, msg=kind)


def test_configs_agree_across_formats(source, tmp_path):
    arch, _, hf_dir, _ = source
    hf_config = autan.load_config(hf_dir)
    if arch != "qwen2":
        assert autan.load_config(save_mistral(hf_dir, tmp_path / "m")) == hf_config
    gguf_config = autan.load_config(save_gguf(hf_dir, tmp_path / "m.gguf"))
    # GGUF stores the epsilon as float32, the JSON formats as float64.
    assert gguf_config.norm_eps == pytest.approx(hf_config.norm_eps, rel=1e-6)
    assert dataclasses.replace(gguf_config, norm_eps=hf_config.norm_eps) == hf_config


# Quantized GGUF: the reference is transformers running gguf's own dequantization of the file.
QUANTIZED = [Q.F16, Q.BF16, Q.Q8_0, Q.Q5_0, Q.Q5_1, Q.Q4_0, Q.Q4_1]


@pytest.mark.parametrize("qtype", QUANTIZED, ids=lambda q: q.name)
def test_quantized_gguf_matches_dequantized_reference(source, qtype, tmp_path):
    arch, hf, hf_dir, tokens = source
    path = save_gguf(hf_dir, tmp_path / f"{qtype.name}.gguf", qtype=qtype)
    model = autan.load_model(path, kernels="exact")
    reference = hf_model(arch, seed=1)
    reference.load_state_dict(dequantized_hf_state(path, reference))
    with torch.no_grad():
        expected = reference(tokens[None]).logits[0]
    torch.testing.assert_close(model.logits(tokens), expected, atol=2e-5, rtol=1e-4)

    # And it stays close to the unquantized model, within what the format loses.
    with torch.no_grad():
        original = hf(tokens[None]).logits[0]
    error = (model.logits(tokens) - original).abs().max().item()
    bound = {Q.F16: 1e-3, Q.BF16: 1e-2, Q.Q8_0: 2e-2, Q.Q5_0: 0.15, Q.Q5_1: 0.15, Q.Q4_0: 0.3, Q.Q4_1: 0.3}[qtype]
    assert error < bound, f"{qtype.name}: max logit error {error:.4f} >= {bound}"


@pytest.mark.parametrize("qtype", [Q.Q4_K, Q.Q5_K, Q.Q6_K], ids=lambda q: q.name)
@pytest.mark.parametrize("arch", ["llama", "mixtral"])
def test_k_quant_gguf_matches_dequantized_reference(arch, qtype, tmp_path):
    # K-quant super-blocks are 256 wide, so every matrix needs 256-multiple columns.
    shape = dict(hidden_size=256, intermediate_size=512, num_attention_heads=4, num_key_value_heads=2)
    reference = hf_model(arch, seed=3, **shape)
    path = save_gguf(save_hf(reference, tmp_path / "hf"), tmp_path / "k.gguf", qtype=qtype, random_quant=True)
    model = autan.load_model(path, kernels="exact")
    kernel = model.model.layers[0].self_attn.q_proj.kernel
    assert kernel.family == "exact" and kernel.qtype == qtype
    reference.load_state_dict(dequantized_hf_state(path, reference))
    tokens = torch.randint(0, 128, (20,))
    with torch.no_grad():
        expected = reference(tokens[None]).logits[0]
    torch.testing.assert_close(model.logits(tokens), expected, atol=1e-4, rtol=1e-4)


def test_quantized_weights_stay_packed_in_memory(source, tmp_path):
    _, _, hf_dir, _ = source
    model = autan.load_model(save_gguf(hf_dir, tmp_path / "q.gguf", qtype=Q.Q4_0))
    packed = [m for m in model.modules() if isinstance(m, QuantizedWeight)]
    assert packed and all(m.packed.dtype == torch.uint8 for m in packed)
    fp32_bytes = sum(4 * math.prod(m.shape) for m in packed)  # from the logical shapes, not the packed data
    assert sum(m.packed.nbytes for m in packed) * 7 < fp32_bytes  # Q4_0: 18 bytes per 32 values
