"""Tensor parallel: one model split over the ranks of a torch.distributed group (gloo on CPUs,
NCCL on GPUs), as Megatron-LM and vLLM split it.

Each rank holds a shard: attention heads (q, k, v column-parallel; o row-parallel), feed-forward
columns (gate and up column-parallel; down row-parallel), Mixtral's experts (expert parallel:
each rank runs its own experts on the tokens routed to them; the router is on every rank), and
rows of the vocabulary (the embedding and the output head). A block's attention and its
feed-forward each end in one all-reduce; the embedding in one; the head's logits are gathered.
Norms are on every rank.

How a model splits, for `Shard.plan`:

- Heads. When the KV heads divide among the ranks, each rank takes whole groups: its KV heads and
  the query heads that read them. Otherwise (SmolLM2-135M: 9 query heads over 3 KV heads, on 2
  or 4 ranks) each rank takes a run of query heads and a copy of the KV head each reads, so its
  cache holds one KV head per query head.
- Feed-forward columns in units of 256 values (a K-quant super-block) where there are enough, so
  a quantized down map splits on block boundaries; else 32 (the other GGML blocks); else 1.
- Experts, and the vocabulary's rows, as evenly as they go.

`Piece`s say which part of a stored tensor a rank reads; the checkpoint readers read only that
part (`autan.weights`).
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

from autan.config import ModelConfig

_EXPERT = re.compile(r"(.*\.experts\.)(\d+)(\..*)")  # one expert's tensor, before they are stacked


def bounds(n: int, parts: int, unit: int = 1) -> list[int]:
    """Where `n` values split into `parts` runs as even as whole `unit`s allow: parts + 1 bounds."""
    units = n // unit
    return [unit * (r * units // parts) for r in range(parts)] + [n]


@dataclass(frozen=True)
class Piece:
    """The part of a stored tensor a rank holds: [start, stop) along `dim`, then, where `index`
    is given, those rows of it (offsets from `start`, repeats allowed) in that order."""

    dim: int
    start: int
    stop: int
    index: tuple[int, ...] | None = None

    def of(self, value: Tensor) -> Tensor:
        part = value.narrow(self.dim, self.start, self.stop - self.start)
        if self.index is not None:
            part = part.index_select(self.dim, torch.tensor(self.index))
        return part.contiguous()


@dataclass(frozen=True)
class Shard:
    """What rank `rank` of `world` holds of a model."""

    rank: int
    world: int
    q_heads: tuple[int, int]  # [first, last) query heads
    kv_heads: tuple[int, ...]  # the (global) KV head of each local KV head
    hidden: tuple[int, int]  # feed-forward columns
    experts: tuple[int, int]
    vocab: tuple[int, int]
    head_dim: int

    @classmethod
    def plan(cls, config: ModelConfig, rank: int, world: int) -> Shard:
        c = config
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} is outside the group of {world}")
        if world > c.n_heads:
            raise ValueError(f"{world} ranks: this model has {c.n_heads} attention heads, so at most {c.n_heads} ranks")
        ratio = c.n_heads // c.n_kv_heads
        if c.n_kv_heads % world == 0:
            groups = bounds(c.n_kv_heads, world)
            kv = tuple(range(groups[rank], groups[rank + 1]))
            q = (groups[rank] * ratio, groups[rank + 1] * ratio)
        else:
            runs = bounds(c.n_heads, world)
            q = (runs[rank], runs[rank + 1])
            kv = tuple(h // ratio for h in range(*q))
        unit = next((u for u in (256, 32, 1) if c.hidden_dim % u == 0 and c.hidden_dim // u >= world), None)
        if unit is None:
            raise ValueError(f"{world} ranks: the feed-forward's {c.hidden_dim} columns cannot split {world} ways")
        # Mixtral's experts are split whole among the ranks, not by columns
        hidden = bounds(c.hidden_dim, world, unit)
        held_hidden = (0, c.hidden_dim) if c.moe else (hidden[rank], hidden[rank + 1])
        n_experts = c.moe.num_experts if c.moe else 1
        if c.moe and n_experts < world:
            raise ValueError(f"{world} ranks: this model has {n_experts} experts, so at most {n_experts} ranks")
        experts = bounds(n_experts, world)
        vocab = bounds(c.vocab_size, world)
        pair = lambda b: (b[rank], b[rank + 1])  # noqa: E731
        return cls(rank, world, q, kv, held_hidden, pair(experts) if c.moe else (0, 1), pair(vocab), c.head_dim)

    def local_config(self, config: ModelConfig) -> ModelConfig:
        """The shapes of this rank's maps and cache (the router keeps every expert: `moe` as is)."""
        n_q = self.q_heads[1] - self.q_heads[0]
        return dataclasses.replace(config, n_heads=n_q, n_kv_heads=len(self.kv_heads),
                                   hidden_dim=self.hidden[1] - self.hidden[0],
                                   vocab_size=self.vocab[1] - self.vocab[0])  # fmt: skip

    @property
    def n_experts(self) -> int:
        return self.experts[1] - self.experts[0]

    def place(self, name: str) -> tuple[str | None, Piece | None]:
        """Where a stored tensor (by the model's name) goes on this rank: its name here (None: not
        here, another rank's expert) and the piece of it to read (None: all of it)."""
        hd = self.head_dim
        if (m := _EXPERT.match(name)) is not None:  # one expert of many, stored apart
            e = int(m[2])
            inside = self.experts[0] <= e < self.experts[1]
            return (f"{m[1]}{e - self.experts[0]}{m[3]}" if inside else None), None
        if name in ("model.embed_tokens.weight", "lm_head.weight"):
            return name, Piece(0, *self.vocab)
        if ".self_attn.q_proj." in name:
            return name, Piece(0, self.q_heads[0] * hd, self.q_heads[1] * hd)
        if ".self_attn.k_proj." in name or ".self_attn.v_proj." in name:
            low, high = min(self.kv_heads), max(self.kv_heads) + 1
            if self.kv_heads == tuple(range(low, high)):
                return name, Piece(0, low * hd, high * hd)
            rows = tuple((h - low) * hd + i for h in self.kv_heads for i in range(hd))
            return name, Piece(0, low * hd, high * hd, rows)
        if name.endswith(".self_attn.o_proj.weight"):
            return name, Piece(1, self.q_heads[0] * hd, self.q_heads[1] * hd)
        if name.endswith((".mlp.gate_proj.weight", ".mlp.up_proj.weight")):
            return name, Piece(0, *self.hidden)
        if name.endswith(".mlp.down_proj.weight"):
            return name, Piece(1, *self.hidden)
        if re.search(r"\.experts\.w[123]$", name):  # the experts, stacked in one tensor
            return name, Piece(0, *self.experts)
        return name, None


# the collectives, over the default group ----------------------------------------------------------


def all_reduce(x: Tensor) -> Tensor:
    """The sum of every rank's `x` (their partial products), on every rank."""
    x = x.contiguous()
    dist.all_reduce(x)
    return x


def gather_vocab(logits: Tensor, shard: Shard, vocab_size: int) -> Tensor:
    """Every rank's logits for its rows of the vocabulary (N, its rows), as (N, vocab) on every rank."""
    widths = [b - a for a, b in itertools.pairwise(bounds(vocab_size, shard.world))]
    mine = logits.new_zeros(logits.shape[0], max(widths))
    mine[:, : logits.shape[1]] = logits  # all_gather takes equal shapes: pad, then trim
    parts = [torch.empty_like(mine) for _ in widths]
    dist.all_gather(parts, mine)
    return torch.cat([p[:, :w] for p, w in zip(parts, widths, strict=True)], dim=1)


def embed(lookup: Callable[[Tensor], Tensor], tokens: Tensor, shard: Shard) -> Tensor:
    """The embedding of `tokens` from vocabulary rows split over the ranks: each looks up those it
    holds (zeros for the rest), and the sum is everyone's."""
    first, stop = shard.vocab
    here = (tokens >= first) & (tokens < stop)
    x = lookup((tokens - first).clamp(0, stop - first - 1))
    x = x * here[:, None].to(x.dtype)
    return all_reduce(x)
