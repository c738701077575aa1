"""Logits of autan's model against Hugging Face transformers on the same random weights (fp32)."""

import pytest
import torch

import autan
from checkpoints import hf_model, save_hf

ATOL, RTOL = 2e-5, 1e-4


def reference_logits(hf, tokens: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return hf(tokens[None]).logits[0].float()


def load_pair(arch: str, tmp_path, **overrides):
    hf = hf_model(arch, **overrides)
    model = autan.load_model(save_hf(hf, tmp_path / arch))
    return hf, model


@pytest.mark.parametrize("arch", ["llama", "mistral", "mixtral", "qwen2"])
def test_full_forward_matches_transformers(arch, tmp_path):
    hf, model = load_pair(arch, tmp_path)
    tokens = torch.randint(0, 128, (40,))
    torch.testing.assert_close(model.logits(tokens), reference_logits(hf, tokens), atol=ATOL, rtol=RTOL)


def test_qwen2_biases_are_applied(tmp_path):
    """Qwen2's q/k/v biases (random here) change the logits: a model that dropped them would
    differ from transformers by far more than the tolerance. Token by token on the cache too."""
    hf, model = load_pair("qwen2", tmp_path)
    assert model.config.qkv_bias and model.config.tie_embeddings and model.config.sliding_window is None
    tokens = torch.randint(0, 128, (24,))
    expected = reference_logits(hf, tokens)
    without = hf_model("qwen2")
    with torch.no_grad():
        for name, p in without.named_parameters():
            if name.endswith(".bias"):
                p.zero_()
    assert not torch.allclose(reference_logits(without, tokens), expected, atol=1e-2)
    cache = model.new_cache()
    with torch.inference_mode():
        steps = [model(tokens[i : i + 1], cache) for i in range(len(tokens))]
    torch.testing.assert_close(torch.cat(steps), expected, atol=ATOL, rtol=RTOL)


def test_sliding_window_is_exact_past_three_windows(tmp_path):
    """Mistral with window 8 on 60 tokens: whole, in uneven chunks, and token by token."""
    hf, model = load_pair("mistral", tmp_path)
    assert model.config.sliding_window == 8
    tokens = torch.randint(0, 128, (60,))
    expected = reference_logits(hf, tokens)
    # The window matters here: a model that attends to everything would differ.
    full_attention = hf_model("mistral", sliding_window=None)
    assert not torch.allclose(reference_logits(full_attention, tokens)[-1], expected[-1], atol=1e-3)

    torch.testing.assert_close(model.logits(tokens), expected, atol=ATOL, rtol=RTOL)

    for chunks in ([5, 11, 1, 20, 23], [30, 30], [3] * 20, [60]):
        cache = model.new_cache()
        pieces, start = [], 0
        with torch.inference_mode():
            for n in chunks:
                pieces.append(model(tokens[start : start + n], cache))
                start += n
        torch.testing.assert_close(torch.cat(pieces), expected, atol=ATOL, rtol=RTOL, msg=f"chunks {chunks}")
        assert cache.keys.shape[2] == 8  # the buffer holds one window, whatever the length

    cache = model.new_cache()
    with torch.inference_mode():
        steps = [model(tokens[i : i + 1], cache, last_only=True) for i in range(len(tokens))]
    torch.testing.assert_close(torch.cat(steps), expected, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("experts", [4, 8])
def test_mixtral_top2_prefill_and_decode(experts, tmp_path):
    hf, model = load_pair("mixtral", tmp_path, num_local_experts=experts, num_experts_per_tok=2)
    tokens = torch.randint(0, 128, (33,))
    expected = reference_logits(hf, tokens)
    torch.testing.assert_close(model.logits(tokens), expected, atol=ATOL, rtol=RTOL)  # grouped by expert
    cache = model.new_cache()
    with torch.inference_mode():
        prefill = model(tokens[:20], cache)
        decode = [model(tokens[i : i + 1], cache) for i in range(20, 33)]  # gathered per token
    torch.testing.assert_close(torch.cat([prefill, *decode]), expected, atol=ATOL, rtol=RTOL)


def test_llama_tied_embeddings_and_theta(tmp_path):
    hf, model = load_pair(
        "llama",
        tmp_path,
        tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
    )
    assert model.config.tie_embeddings and model.config.rope_theta == 500000.0
    assert model.lm_head.kernel.weight is model.model.embed_tokens.weight  # the head is the embedding matrix
    tokens = torch.randint(0, 128, (24,))
    torch.testing.assert_close(model.logits(tokens), reference_logits(hf, tokens), atol=ATOL, rtol=RTOL)


def test_bfloat16_stays_close(tmp_path):
    hf, _ = load_pair("mistral", tmp_path)
    model = autan.load_model(tmp_path / "mistral", dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16
    tokens = torch.randint(0, 128, (30,))
    logits = model.logits(tokens)
    assert logits.dtype == torch.float32
    torch.testing.assert_close(logits, reference_logits(hf, tokens), atol=0.1, rtol=0.05)


@pytest.mark.parametrize(
    "arch, overrides",
    [("llama", {}), ("llama", {"tie_word_embeddings": True}), ("mistral", {}), ("mixtral", {}), ("qwen2", {})],
)
def test_parameter_count_is_transformers_count(arch, overrides, tmp_path):
    """What `GET /v1/models` reports as a model's size, from its config alone."""
    hf = hf_model(arch, **overrides)
    config = autan.load_config(save_hf(hf, tmp_path / arch))
    assert config.parameters == hf.num_parameters()
