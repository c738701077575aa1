"""Mixtral's sparse feed-forward: a router sends each token to k of E SwiGLU experts.

Routing follows the reference: top-k of the router logits, softmax over the k chosen (the same
as Hugging Face's softmax, top-k, renormalise). Experts are stacked tensors, w1/w3 (E, F, D) and
w2 (E, D, F), dense or GGML-quantized. Only chosen experts' weights are ever touched:

* few tokens (decode): gather the chosen experts' weights per token and combine with einsum;
* many tokens (prefill): sort the (token, expert) pairs by expert and run each used expert once
  on its group of tokens, so each expert's weights are read once, not once per token.

With packed kernels (`autan.kernels`), every batch takes the second way: each used
expert runs its own packed products on its tokens, and the others are never read (the native
decode step does the same inside its one call).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from autan.config import MoeConfig
from autan.kernels.blocks import Weight, take
from autan.model.layers import Linear


class Experts(nn.Module):
    def __init__(self, n_experts: int, dim: int, hidden_dim: int):
        super().__init__()
        self.w1: Weight = nn.Parameter(torch.empty(n_experts, hidden_dim, dim))  # gate
        self.w2: Weight = nn.Parameter(torch.empty(n_experts, dim, hidden_dim))  # down
        self.w3: Weight = nn.Parameter(torch.empty(n_experts, hidden_dim, dim))  # up


class MoeFeedForward(nn.Module):
    """`experts` [first, last) are the experts held here (expert parallel: the others are other
    ranks'; the router scores them all, and tokens routed elsewhere get nothing from this rank)."""

    def __init__(self, dim: int, hidden_dim: int, moe: MoeConfig, experts: tuple[int, int] | None = None):
        super().__init__()
        self.top_k = moe.num_experts_per_tok
        self.n_experts = moe.num_experts
        self.held = experts or (0, moe.num_experts)
        self.gate = Linear(dim, moe.num_experts)
        self.experts = Experts(self.held[1] - self.held[0], dim, hidden_dim)
        self.expert_kernels: nn.ModuleDict | None = None  # "gate", "up", "down": a packed kernel per expert

    @property
    def n_held(self) -> int:
        return self.held[1] - self.held[0]

    def forward(self, x: Tensor) -> Tensor:
        # Softmax over all experts in float32, keep the top k, renormalise: equal to a softmax over the
        # chosen logits, and rounded exactly as transformers rounds it.
        probs = F.softmax(self.gate(x), dim=-1, dtype=torch.float32)  # (T, E)
        weights, chosen = torch.topk(probs, self.top_k, dim=-1)  # (T, k)
        weights = weights / weights.sum(dim=-1, keepdim=True)
        whole = self.held == (0, self.n_experts)
        if whole and self.expert_kernels is None and x.shape[0] * self.top_k <= self.n_experts:
            return self._gathered(x, chosen, weights)
        return self._grouped(x, chosen, weights)

    def _gathered(self, x: Tensor, chosen: Tensor, weights: Tensor) -> Tensor:
        # Letters: t token, k chosen slot, f hidden (ffn) dim, d model dim.
        w1 = take(self.experts.w1, chosen, x.dtype)  # (T, k, F, D)
        w3 = take(self.experts.w3, chosen, x.dtype)
        w2 = take(self.experts.w2, chosen, x.dtype)  # (T, k, D, F)
        h = F.silu(torch.einsum("td,tkfd->tkf", x, w1)) * torch.einsum("td,tkfd->tkf", x, w3)
        y = torch.einsum("tkf,tkdf->tkd", h, w2)  # (T, k, D), weighted in float32 as the reference does
        return (y * weights[..., None]).sum(dim=1).to(x.dtype)

    def _grouped(self, x: Tensor, chosen: Tensor, weights: Tensor) -> Tensor:
        flat = chosen.flatten()  # (T*k,) expert of each (token, slot) pair
        order = torch.argsort(flat, stable=True)
        tokens = order // self.top_k  # token of each pair, grouped by expert
        counts = torch.bincount(flat, minlength=self.n_experts).tolist()
        out = torch.zeros_like(x)
        start = 0
        first, last = self.held
        for expert, count in enumerate(counts):
            if count == 0:
                continue
            if not first <= expert < last:  # another rank's
                start += count
                continue
            rows = tokens[start : start + count]
            ye = self._expert(expert - first, x[rows])  # (n, D)
            out.index_add_(0, rows, (ye * weights.flatten()[order[start : start + count], None]).to(x.dtype))
            start += count
        return out

    def _expert(self, expert: int, x: Tensor) -> Tensor:
        """One (held) expert's SwiGLU on its tokens x (n, D)."""
        if self.expert_kernels is not None:
            gate, up, down = (self.expert_kernels[name][expert] for name in ("gate", "up", "down"))
            return down(F.silu(gate(x)) * up(x))
        index = torch.tensor(expert, device=x.device)
        w1, w3, w2 = (take(w, index, x.dtype) for w in (self.experts.w1, self.experts.w3, self.experts.w2))
        return F.linear(F.silu(F.linear(x, w1)) * F.linear(x, w3), w2)
