"""One decoder-only Transformer for Llama, Mistral, Mixtral and Qwen2.

Mistral is Llama with a sliding attention window; Mixtral swaps each feed-forward block for a
router and stacked experts; Qwen2 adds a bias to the q, k and v maps. Parameter names are
Hugging Face's, so its checkpoints load by name and the parity tests compare like with like.
`forward` runs one sequence: tokens (T,) in, logits (T, vocab) out. `run` takes any `Step`, so
the engine's paged cache runs the tokens of many sequences, packed into one (N,) tensor,
through the same layers. Every part is given its weights as it is built (`autan.model.parts`):
each map its kernel, chosen by the loader; nothing is swapped in afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from autan.config import ModelConfig
from autan.kernels import NativeStep
from autan.model.cache import KVCache, Step, uncached_step
from autan.model.layers import Embedding, Linear, RMSNorm
from autan.model.lora import Rows, lora_rows
from autan.model.moe import MoeFeedForward
from autan.model.parallel import Shard, all_reduce, embed, gather_vocab
from autan.model.parts import Fresh, Parts
from autan.model.rope import apply_rope, inverse_frequencies, rope_cos_sin


class Attention(nn.Module):
    def __init__(self, parts: Parts, name: str, config: ModelConfig, layer: int):
        super().__init__()
        self.layer = layer
        self.n_heads, self.n_kv_heads, self.head_dim = config.n_heads, config.n_kv_heads, config.head_dim
        q, kv, bias = config.n_heads * config.head_dim, config.n_kv_heads * config.head_dim, config.qkv_bias  # Qwen2
        self.q_proj = Linear.of(parts, f"{name}.q_proj", q, config.dim, bias)
        self.k_proj = Linear.of(parts, f"{name}.k_proj", kv, config.dim, bias)
        self.v_proj = Linear.of(parts, f"{name}.v_proj", kv, config.dim, bias)
        self.o_proj = Linear.of(parts, f"{name}.o_proj", config.dim, q)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, step: Step) -> Tensor:
        T, hd = x.shape[0], self.head_dim
        q = apply_rope(self.q_proj(x).view(T, self.n_heads, hd), cos, sin)
        k = apply_rope(self.k_proj(x).view(T, self.n_kv_heads, hd), cos, sin)
        v = self.v_proj(x).view(T, self.n_kv_heads, hd)
        out = step.attend(self.layer, q, k, v)  # (T, n_heads, hd)
        return self.o_proj(out.reshape(T, self.n_heads * self.head_dim))


class FeedForward(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, parts: Parts, name: str, dim: int, hidden_dim: int):
        super().__init__()
        self.gate_proj = Linear.of(parts, f"{name}.gate_proj", hidden_dim, dim)
        self.up_proj = Linear.of(parts, f"{name}.up_proj", hidden_dim, dim)
        self.down_proj = Linear.of(parts, f"{name}.down_proj", dim, hidden_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    """Attention then the feed-forward, each added to the residual. `config` gives the shapes of
    this rank's maps; sharded (`shard`), each of the two products is a partial sum, all-reduced."""

    def __init__(self, parts: Parts, config: ModelConfig, layer: int, shard: Shard | None = None):
        super().__init__()
        name, dim = f"model.layers.{layer}", config.dim
        self.self_attn = Attention(parts, f"{name}.self_attn", config, layer)
        self.input_layernorm = RMSNorm(parts.tensor(f"{name}.input_layernorm.weight", (dim,)), config.norm_eps)
        self.post_attention_layernorm = RMSNorm(parts.tensor(f"{name}.post_attention_layernorm.weight", (dim,)),
                                                config.norm_eps)  # fmt: skip
        if config.moe:
            experts = shard.experts if shard else (0, config.moe.num_experts)
            self.block_sparse_moe = MoeFeedForward(parts, f"{name}.block_sparse_moe", dim, config.hidden_dim,
                                                   config.moe, experts)  # fmt: skip
        else:
            self.mlp = FeedForward(parts, f"{name}.mlp", dim, config.hidden_dim)
        self.sharded = shard is not None

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, step: Step) -> Tensor:
        ffn = self.block_sparse_moe if hasattr(self, "block_sparse_moe") else self.mlp
        attended = self.self_attn(self.input_layernorm(x), cos, sin, step)
        h = x + (all_reduce(attended) if self.sharded else attended)
        out = ffn(self.post_attention_layernorm(h))
        return h + (all_reduce(out) if self.sharded else out)


# Rows (tokens) up to which a step runs on the native step; from there the blocks' modules run:
# their products stay on the native int8 kernels, and attention is PyTorch's, which the native
# step's row-by-row attention cannot match on long prompts (default model, avx512_vnni, measured
# by hand on 2026-12-08 with the cap set high and low: 1529 against 1565 tokens/s at 128 rows,
# 1224 against 1508 at 512, 195 against 626 at 4096).
NATIVE_MAX_ROWS = 96


def _adapted(
    block: Block, held: Rows, slots: int | Tensor | None, x: Tensor, cos: Tensor, sin: Tensor, step: Step
) -> Tensor:
    """`block` on `x` with each row's LoRA slot in force: set for this block alone, so that when
    it runs again in the backward pass (`checkpoint`) it sees the same adapters."""
    held.set(slots)
    try:
        return block(x, cos, sin, step)
    finally:
        held.set(None)


class Decoder(nn.Module):
    def __init__(self, parts: Parts, config: ModelConfig, shard: Shard | None = None):
        super().__init__()
        self.embed_tokens = Embedding(parts.tensor("model.embed_tokens.weight", (config.vocab_size, config.dim)))
        self.layers = nn.ModuleList(Block(parts, config, i, shard) for i in range(config.n_layers))
        self.norm = RMSNorm(parts.tensor("model.norm.weight", (config.dim,)), config.norm_eps)


class Transformer(nn.Module):
    """The model, whole, or with `shard` this rank's part of it (`autan.model.parallel`): `config`
    is the whole model's, `cache_config` the shapes of what this process holds (its heads).
    `parts` gives every weight as the model is built (by default, uninitialised float ones)."""

    def __init__(self, config: ModelConfig, shard: Shard | None = None, parts: Parts | None = None):
        super().__init__()
        parts = parts or Fresh()
        self.config, self.shard = config, shard
        self.cache_config = local = shard.local_config(config) if shard else config
        self.model = Decoder(parts, local, shard)
        # A tied head multiplies by the embedding matrix: the same tensor for an exact kernel, a
        # packed copy otherwise (the embedding keeps its form for lookups).
        head = "model.embed_tokens" if config.tie_embeddings else "lm_head"
        self.lm_head = Linear.of(parts, head, local.vocab_size, config.dim, role="head")
        self._inv_freq: Tensor | None = None
        # Every block on the native decode step, where all their maps are on the native kernels
        # (not a shard's: its blocks end in all-reduces, which the native step has not).
        self.native = None if shard else NativeStep.of(self.model.layers, config)

    @property
    def device(self) -> torch.device:
        return self.model.norm.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.norm.weight.dtype

    def new_cache(self, max_seq_len: int | None = None) -> KVCache:
        """An empty cache for one sequence (a rolling window when the model has one)."""
        return KVCache(self.cache_config, max_seq_len=max_seq_len, device=self.device, dtype=self.dtype)

    def forward(
        self, tokens: Tensor, cache: KVCache | None = None, last_only: bool = False, adapter: int | None = None
    ) -> Tensor:
        """Logits (T, vocab) for tokens (T,) that continue the sequence held in `cache`.

        Without a cache the tokens are a whole sequence from position 0. With `last_only`,
        only the last position's logits are computed: (1, vocab). `adapter` is the slot of a
        loaded LoRA adapter to apply (`autan.model.lora`).
        """
        if tokens.ndim != 1:
            raise ValueError(f"tokens must be one sequence of shape (T,), got shape {tuple(tokens.shape)}")
        step = (
            cache.begin(len(tokens))
            if cache is not None
            else uncached_step(len(tokens), self.config.sliding_window, self.device)
        )
        return self.run(tokens, step, slice(-1, None) if last_only else slice(None), adapter or None)

    def run(self, tokens: Tensor, step: Step, rows: slice | Tensor, adapters: int | Tensor | None = None) -> Tensor:
        """Logits of the `rows` of tokens (N,), placed and attended as `step` says; `adapters`
        gives the LoRA slot of every token (one for all, or (N,)), None for the base model."""
        logits = self.head(self.features(tokens, step, rows, adapters))
        return logits if self.shard is None else gather_vocab(logits, self.shard, self.config.vocab_size)

    def features(
        self,
        tokens: Tensor,
        step: Step,
        rows: slice | Tensor,
        adapters: int | Tensor | None = None,
        recompute: bool = False,
    ) -> Tensor:
        """The last block's output at `rows`, normed: what `head` turns into logits. With
        `recompute` (training), each block keeps only its input for the backward pass and runs
        again there, so the activations held are every block's input and one block's inside."""
        self._check_ids(tokens)
        tokens = tokens.to(self.device)
        cos, sin = rope_cos_sin(step.positions, self._frequencies(), self.dtype)
        if self.shard is None:
            x = self.model.embed_tokens(tokens, self.dtype)  # (N, dim)
        else:
            x = embed(lambda t: self.model.embed_tokens(t, self.dtype), tokens, self.shard)
        native = adapters is None and self.native is not None  # the native step knows no adapters
        if native and len(x) <= NATIVE_MAX_ROWS and x.dtype == torch.float32:
            x = self.native.run(x, cos, sin, step.native_plan())  # every block in one native call
        else:
            held = lora_rows(self)
            slots = adapters.to(self.device) if isinstance(adapters, Tensor) else adapters
            if recompute and torch.is_grad_enabled():
                for layer in self.model.layers:
                    x = checkpoint(_adapted, layer, held, slots, x, cos, sin, step, use_reentrant=False)
            else:
                held.set(slots)
                try:
                    for layer in self.model.layers:
                        x = layer(x, cos, sin, step)
                finally:
                    held.set(None)
        return self.model.norm(x[rows])

    def head(self, x: Tensor) -> Tensor:
        """Logits (this rank's part of the vocabulary) of `features`."""
        return self.lm_head(x)

    @torch.inference_mode()
    def logits(self, token_ids: Sequence[int] | Tensor) -> Tensor:
        """Float32 logits (len(token_ids), vocab) of one whole sequence."""
        return self(torch.as_tensor(token_ids, dtype=torch.long)).float()

    def _check_ids(self, tokens: Tensor) -> None:
        if tokens.numel() == 0:
            raise ValueError("token_ids is empty: give at least one token")
        low, high = int(tokens.min()), int(tokens.max())
        if low < 0 or high >= self.config.vocab_size:
            bad = low if low < 0 else high
            raise ValueError(f"token id {bad} is outside the vocabulary 0..{self.config.vocab_size - 1}")

    def _frequencies(self) -> Tensor:
        if self._inv_freq is None or self._inv_freq.device != self.device:
            self._inv_freq = inverse_frequencies(self.config.head_dim, self.config.rope_theta, self.device)
        return self._inv_freq
