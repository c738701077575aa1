"""Name maps and the RoPE row permutation."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from autan.model.rope import apply_rope, inverse_frequencies, rope_cos_sin
from autan.weights.names import expert_slot, gguf_to_hf, interleaved_to_halves, mistral_to_hf
from checkpoints import hf_model, hf_tensors, save_hf
from references import halves_to_interleaved, hf_to_gguf, hf_to_mistral


def test_name_maps_round_trip_every_tensor_of_every_architecture(tmp_path):
    for arch in ("llama", "mistral", "mixtral"):
        for name in hf_tensors(save_hf(hf_model(arch), tmp_path / arch)):
            assert mistral_to_hf(hf_to_mistral(name)) == name
            assert gguf_to_hf(hf_to_gguf(name)) == name


def test_names_follow_the_published_tables():
    assert mistral_to_hf("layers.7.attention.wk.weight") == "model.layers.7.self_attn.k_proj.weight"
    assert mistral_to_hf("layers.0.feed_forward.w2.weight") == "model.layers.0.mlp.down_proj.weight"
    assert mistral_to_hf("layers.1.feed_forward.experts.6.w3.weight") == (
        "model.layers.1.block_sparse_moe.experts.6.w3.weight"
    )
    assert mistral_to_hf("tok_embeddings.weight") == "model.embed_tokens.weight"
    assert gguf_to_hf("blk.2.ffn_gate_exps.weight") == "model.layers.2.block_sparse_moe.experts.w1"
    assert gguf_to_hf("blk.2.ffn_up.5.weight") == "model.layers.2.block_sparse_moe.experts.5.w3.weight"
    assert gguf_to_hf("output_norm.weight") == "model.norm.weight"
    assert mistral_to_hf("layers.0.attention.wq.bias") is None
    assert gguf_to_hf("blk.0.attn_qkv.weight") is None
    assert expert_slot("model.layers.3.block_sparse_moe.experts.11.w2.weight") == (
        "model.layers.3.block_sparse_moe.experts.w2",
        11,
    )


def interleaved_rope(x: torch.Tensor, positions: torch.Tensor, theta: float) -> torch.Tensor:
    """Meta/Mistral's rotary embedding: pairs (x0, x1), (x2, x3)... as complex numbers."""
    head_dim = x.shape[-1]
    angles = positions.float()[:, None] * inverse_frequencies(head_dim, theta)[None, :]
    rotation = torch.polar(torch.ones_like(angles), angles)[:, None, :]  # (T, 1, hd/2)
    pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(pairs * rotation).flatten(-2)


@settings(max_examples=30, deadline=None)
@given(heads=st.integers(1, 4), half=st.integers(1, 8), cols=st.integers(1, 12), seed=st.integers(0, 2**16))
def test_permutation_turns_interleaved_rope_into_halves_rope(heads, half, cols, seed):
    """Rotating W x in interleaved pairs equals rotating (P W) x in halves, up to the same P on rows."""
    g = torch.Generator().manual_seed(seed)
    head_dim = 2 * half
    w = torch.randn(heads * head_dim, cols, generator=g, dtype=torch.float64)
    x = torch.randn(5, cols, generator=g, dtype=torch.float64)
    positions = torch.arange(3, 8)
    assert torch.equal(halves_to_interleaved(interleaved_to_halves(w, heads), heads), w)

    reference = interleaved_rope((x @ w.T).view(5, heads, head_dim), positions, 1e4)
    cos, sin = rope_cos_sin(positions, inverse_frequencies(head_dim, 1e4), torch.float64)
    ours = apply_rope((x @ interleaved_to_halves(w, heads).T).view(5, heads, head_dim), cos, sin)
    # Same numbers, rows in the other order: map ours back to the interleaved order to compare.
    back = halves_to_interleaved(ours.reshape(5, -1).T, heads).T.reshape(5, heads, head_dim)
    torch.testing.assert_close(back, reference.to(back.dtype), rtol=1e-5, atol=1e-5)
