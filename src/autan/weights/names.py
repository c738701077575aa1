"""How each checkpoint format names its tensors, and the one layout fix-up between them.

The model uses Hugging Face's names. Mistral's format and GGUF map onto them here, through
explicit tables; each map has an inverse so the tests can write every format from one set of
weights. Mixtral experts arrive one tensor per expert and are stacked by `stack_experts`.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import torch
from torch import Tensor

MISTRAL_TO_HF = {
    "tok_embeddings.weight": "model.embed_tokens.weight",
    "norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
MISTRAL_TO_HF_LAYER = {
    "attention_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "attention.wq.weight": "self_attn.q_proj.weight",
    "attention.wk.weight": "self_attn.k_proj.weight",
    "attention.wv.weight": "self_attn.v_proj.weight",
    "attention.wo.weight": "self_attn.o_proj.weight",
    "feed_forward.w1.weight": "mlp.gate_proj.weight",
    "feed_forward.w2.weight": "mlp.down_proj.weight",
    "feed_forward.w3.weight": "mlp.up_proj.weight",
    "feed_forward.gate.weight": "block_sparse_moe.gate.weight",
}

GGUF_TO_HF = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
GGUF_TO_HF_LAYER = {
    "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "attn_q.bias": "self_attn.q_proj.bias",  # Qwen2
    "attn_k.bias": "self_attn.k_proj.bias",
    "attn_v.bias": "self_attn.v_proj.bias",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_gate_inp.weight": "block_sparse_moe.gate.weight",
    # llama.cpp stores all experts of a layer as one (E, rows, cols) tensor.
    "ffn_gate_exps.weight": "block_sparse_moe.experts.w1",
    "ffn_down_exps.weight": "block_sparse_moe.experts.w2",
    "ffn_up_exps.weight": "block_sparse_moe.experts.w3",
}
# Older GGUF Mixtral files keep one tensor per expert: blk.N.ffn_gate.E.weight.
GGUF_EXPERT = {"ffn_gate": "w1", "ffn_down": "w2", "ffn_up": "w3"}

_LAYER = re.compile(r"^(layers|blk|model\.layers)\.(\d+)\.(.+)$")
_MISTRAL_EXPERT = re.compile(r"^feed_forward\.experts\.(\d+)\.(w[123])\.weight$")
_HF_EXPERT = re.compile(r"^block_sparse_moe\.experts\.(\d+)\.(w[123])\.weight$")
_GGUF_EXPERT = re.compile(r"^(ffn_gate|ffn_down|ffn_up)\.(\d+)\.weight$")


def _rename(
    name: str, top: dict[str, str], layer: dict[str, str], prefix: str, expert: Callable[[str], str | None]
) -> str | None:
    if name in top:
        return top[name]
    m = _LAYER.match(name)
    if not m:
        return None
    rest = layer.get(m[3]) or expert(m[3])
    return f"{prefix}.{m[2]}.{rest}" if rest else None


def mistral_to_hf(name: str) -> str | None:
    """`layers.3.attention.wq.weight` -> `model.layers.3.self_attn.q_proj.weight`; None if unknown."""

    def expert(rest: str) -> str | None:
        m = _MISTRAL_EXPERT.match(rest)
        return f"block_sparse_moe.experts.{m[1]}.{m[2]}.weight" if m else None

    return _rename(name, MISTRAL_TO_HF, MISTRAL_TO_HF_LAYER, "model.layers", expert)


def gguf_to_hf(name: str) -> str | None:
    """`blk.3.attn_q.weight` -> `model.layers.3.self_attn.q_proj.weight`; None if unknown."""

    def expert(rest: str) -> str | None:
        m = _GGUF_EXPERT.match(rest)
        return f"block_sparse_moe.experts.{m[2]}.{GGUF_EXPERT[m[1]]}.weight" if m else None

    return _rename(name, GGUF_TO_HF, GGUF_TO_HF_LAYER, "model.layers", expert)


def is_rope_projection(hf_name: str) -> bool:
    return hf_name.endswith(("self_attn.q_proj.weight", "self_attn.k_proj.weight"))


def interleaved_to_halves(w: Tensor, n_heads: int) -> Tensor:
    """Reorder the rows of wq or wk from interleaved RoPE pairs to Hugging Face's halves.

    Within each head, output rows (x0, x1), (x2, x3), ... rotate together in Mistral's and
    GGUF's layout; Hugging Face rotates x_i with x_{i + head_dim/2}. Rows of any width move,
    so packed quantized rows (whole blocks per row) are reordered the same way.
    """
    rows, cols = w.shape
    return w.reshape(n_heads, rows // n_heads // 2, 2, cols).transpose(1, 2).reshape(rows, cols)


def expert_slot(hf_name: str) -> tuple[str, int] | None:
    """Where a per-expert tensor goes: `...experts.5.w2.weight` -> (`...experts.w2`, 5)."""
    m = _LAYER.match(hf_name)
    e = _HF_EXPERT.match(m[3]) if m else None
    if not e:
        return None
    return f"model.layers.{m[2]}.block_sparse_moe.experts.{e[2]}", int(e[1])


def stack(parts: dict[int, Tensor], n_experts: int) -> Tensor:
    """Experts 0..n-1 of one matrix stacked on a new first dimension."""
    return torch.stack([parts[e] for e in range(n_experts)])
