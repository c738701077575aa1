"""One decoder-only Transformer for Llama, Mistral, Mixtral and Qwen2.

Mistral is Llama with a sliding attention window; Mixtral swaps each feed-forward block for a
router and stacked experts; Qwen2 adds a bias to the q, k and v maps. Parameter names are
Hugging Face's, so its checkpoints load by name and the parity tests compare like with like.
`forward` runs one sequence: tokens (T,) in, logits (T, vocab) out. `run` takes any `Step`, so
the engine's paged cache runs the tokens of many sequences, packed into one (N,) tensor,
through the same layers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from autan.config import ModelConfig
from autan.kernels import NativeStep
from autan.kernels.blocks import materialize
from autan.model.cache import KVCache, Step, uncached_step
from autan.model.layers import Embedding, Linear, RMSNorm
from autan.model.lora import Rows, lora_rows
from autan.model.moe import MoeFeedForward
from autan.model.parallel import Shard, all_reduce, embed, gather_vocab
from autan.model.rope import apply_rope, inverse_frequencies, rope_cos_sin


class Attention(nn.Module):
    def __init__(self, config: ModelConfig, layer: int):
        super().__init__()
        self.layer = layer
        self.n_heads, self.n_kv_heads, self.head_dim = config.n_heads, config.n_kv_heads, config.head_dim
        bias = config.qkv_bias  # Qwen2
        self.q_proj = Linear(config.dim, config.n_heads * config.head_dim, bias)
        self.k_proj = Linear(config.dim, config.n_kv_heads * config.head_dim, bias)
        self.v_proj = Linear(config.dim, config.n_kv_heads * config.head_dim, bias)
        self.o_proj = Linear(config.n_heads * config.head_dim, config.dim)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, step: Step) -> Tensor:
        T, hd = x.shape[0], self.head_dim
        q = apply_rope(self.q_proj(x).view(T, self.n_heads, hd), cos, sin)
        k = apply_rope(self.k_proj(x).view(T, self.n_kv_heads, hd), cos, sin)
        v = self.v_proj(x).view(T, self.n_kv_heads, hd)
        out = step.attend(self.layer, q, k, v)  # (T, n_heads, hd)
        return self.o_proj(out.reshape(T, self.n_heads * self.head_dim))


class FeedForward(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.gate_proj = Linear(dim, hidden_dim)
        self.up_proj = Linear(dim, hidden_dim)
        self.down_proj = Linear(hidden_dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    """Attention then the feed-forward, each added to the residual. `config` gives the shapes of
    this rank's maps; sharded (`shard`), each of the two products is a partial sum, all-reduced."""

    def __init__(self, config: ModelConfig, layer: int, shard: Shard | None = None):
        super().__init__()
        self.self_attn = Attention(config, layer)
        self.input_layernorm = RMSNorm(config.dim, config.norm_eps)
        self.post_attention_layernorm = RMSNorm(config.dim, config.norm_eps)
        if config.moe:
            experts = shard.experts if shard else (0, config.moe.num_experts)
            self.block_sparse_moe = MoeFeedForward(config.dim, config.hidden_dim, config.moe, experts)
        else:
            self.mlp = FeedForward(config.dim, config.hidden_dim)
        self.sharded = shard is not None

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, step: Step) -> Tensor:
        ffn = self.block_sparse_moe if hasattr(self, "block_sparse_moe") else self.mlp
        attended = self.self_attn(self.input_layernorm(x), cos, sin, step)
        h = x + (all_reduce(attended) if self.sharded else attended)
        out = ffn(self.post_attention_layernorm(h))
        return h + (all_reduce(out) if self.sharded else out)


# Rows (tokens) up to which a step runs on the native step; from there the blocks' products
# unpack their weights to float32 tiles for BLAS, faster at prompt widths (measured: 244 against
# 285 tokens/s at 128 rows, 197 against 357 at 512, on the default model).
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
    def __init__(self, config: ModelConfig, shard: Shard | None = None):
        super().__init__()
        self.embed_tokens = Embedding(config.vocab_size, config.dim)
        self.layers = nn.ModuleList(Block(config, i, shard) for i in range(config.n_layers))
        self.norm = RMSNorm(config.dim, config.norm_eps)


class Transformer(nn.Module):
    """The model, whole, or with `shard` this rank's part of it (`autan.model.parallel`): `config`
    is the whole model's, `cache_config` the shapes of what this process holds (its heads)."""

    def __init__(self, config: ModelConfig, shard: Shard | None = None):
        super().__init__()
        self.config, self.shard = config, shard
        self.cache_config = local = shard.local_config(config) if shard else config
        self.model = Decoder(local, shard)
        if not config.tie_embeddings:
            self.lm_head = Linear(config.dim, local.vocab_size)
        self._inv_freq: Tensor | None = None
        self.head_kernel: nn.Module | None = None  # a packed kernel for a tied quantized head
        self._native: NativeStep | None = None
        self._native_found = False  # looked for since kernels last changed

    def kernels_changed(self) -> None:
        """Say that linear maps got (or lost) packed kernels: `run` looks again for the native step."""
        self._native_found = False

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
        native = adapters is None and self._native_step() is not None  # the native step knows no adapters
        if native and len(x) <= NATIVE_MAX_ROWS and x.dtype == torch.float32:
            x = self._native.run(x, cos, sin, step.native_plan())  # every block in one native call
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
        if self.config.tie_embeddings:
            if self.head_kernel is not None:
                return self.head_kernel(x)
            return F.linear(x, materialize(self.model.embed_tokens.weight, x.dtype))
        return self.lm_head(x)

    def _native_step(self) -> NativeStep | None:
        """The native step holding every block, or None where it cannot take them; looked for
        again after `kernels_changed`."""
        if not self._native_found:  # (a shard's blocks end in all-reduces, which the native step has not)
            self._native = None if self.shard else NativeStep.of(self.model.layers, self.config)
            self._native_found = True
        return self._native

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
