"""Mixtral's sparse feed-forward: a router sends each token to k of E SwiGLU experts.

Routing follows the reference: top-k of the router logits, softmax over the k chosen (the same
as Hugging Face's softmax, top-k, renormalise). Each expert's three maps have their own kernels
(`autan.kernels`). Only chosen experts' weights are ever touched:

* exact kernels, few tokens (decode): gather the chosen experts' matrices per token and combine
  with einsum, as the reference does;
* otherwise (prefill, or packed kernels): sort the (token, expert) pairs by expert and run each
  used expert once on its group of tokens, so each expert's weights are read once, not once per
  token (the native decode step does the same inside its one call).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from autan.config import MoeConfig
from autan.model.layers import Linear
from autan.model.parts import Parts


class Experts(nn.Module):
    """The held experts' maps, a kernel each: gate (w1), up (w3) and down (w2)."""

    def __init__(self, parts: Parts, name: str, n_experts: int, dim: int, hidden_dim: int):
        super().__init__()

        def maps(stacked: str, shape: tuple[int, int]) -> nn.ModuleList:
            return nn.ModuleList(parts.expert(f"{name}.{stacked}", (n_experts, *shape), e) for e in range(n_experts))

        self.gate, self.up = maps("w1", (hidden_dim, dim)), maps("w3", (hidden_dim, dim))
        self.down = maps("w2", (dim, hidden_dim))


class MoeFeedForward(nn.Module):
    """`experts` [first, last) are the experts held here (expert parallel: the others are other
    ranks'; the router scores them all, and tokens routed elsewhere get nothing from this rank)."""

    def __init__(self, parts: Parts, name: str, dim: int, hidden_dim: int, moe: MoeConfig,
                 experts: tuple[int, int] | None = None):  # fmt: skip
        super().__init__()
        self.top_k = moe.num_experts_per_tok
        self.n_experts = moe.num_experts
        self.held = experts or (0, moe.num_experts)
        self.gate = Linear.of(parts, f"{name}.gate", moe.num_experts, dim, role="router")
        self.experts = Experts(parts, f"{name}.experts", self.held[1] - self.held[0], dim, hidden_dim)
        maps = (*self.experts.gate, *self.experts.up, *self.experts.down)
        self.exact = all(kernel.exact for kernel in maps)  # else: packed kernels, each expert on its tokens

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
        if whole and self.exact and x.shape[0] * self.top_k <= self.n_experts:
            return self._gathered(x, chosen, weights)
        return self._grouped(x, chosen, weights)

    def _gathered(self, x: Tensor, chosen: Tensor, weights: Tensor) -> Tensor:
        # Letters: t token, k chosen slot, f hidden (ffn) dim, d model dim.
        w1, w3, w2 = (self._matrices(kernels, chosen, x.dtype) for kernels in (self.experts.gate,
                      self.experts.up, self.experts.down))  # fmt: skip
        h = F.silu(torch.einsum("td,tkfd->tkf", x, w1)) * torch.einsum("td,tkfd->tkf", x, w3)
        y = torch.einsum("tkf,tkdf->tkd", h, w2)  # (T, k, D), weighted in float32 as the reference does
        return (y * weights[..., None]).sum(dim=1).to(x.dtype)

    @staticmethod
    def _matrices(kernels: nn.ModuleList, chosen: Tensor, dtype: torch.dtype) -> Tensor:
        """The chosen experts' matrices, (T, k, out, in)."""
        picked = [kernels[e].unpacked(dtype).t() for e in chosen.flatten().tolist()]
        return torch.stack(picked).view(*chosen.shape, *picked[0].shape)

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
            e = expert - first
            gate, up, down = self.experts.gate[e], self.experts.up[e], self.experts.down[e]
            xe = x[rows]
            ye = down(F.silu(gate(xe)) * up(xe))  # (n, D)
            out.index_add_(0, rows, (ye * weights.flatten()[order[start : start + count], None]).to(x.dtype))
            start += count
        return out
