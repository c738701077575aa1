"""The key/value cache of one sequence: a rolling buffer when the model has a sliding window.

As in Mistral's reference (mistral-inference `cache.py`), the cache works out once per step
which keys each query may see, and hands every layer the same `AttentionStep`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from autan.config import ModelConfig
from autan.errors import ContextLengthError


class Step(Protocol):
    """Where one forward step's tokens sit and how each layer attends: the model asks nothing else."""

    positions: Tensor  # (N,) absolute position of each new token in its sequence

    def attend(self, layer: int, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """Store the new keys/values of `layer`, then attend.

        q (N, n_heads, hd), k and v (N, n_kv, hd) -> (N, n_heads, hd).
        """
        ...

    def native_plan(self) -> NativePlan:
        """The same step as the native decode step reads it (`csrc/step.cpp`)."""
        ...


@dataclass
class NativePlan:
    """Which keys each new token sees, and where its own key goes, as lists the native step reads.

    `visible[offsets[i]:offsets[i + 1]]` are row i's keys: entries >= 0 are slots of the storage
    (along `slot_dim` of `keys`/`values`), entries < 0 are -1 - t, the key of this step's token t.
    Row i's key is stored at `write_slots[i]` once the layer has attended (-1: not kept).
    """

    keys: Tensor  # (L, ., ., hd)
    values: Tensor
    slot_dim: int
    write_slots: Tensor  # (N,) int64
    visible: Tensor  # (total,) int64
    offsets: Tensor  # (N + 1,) int64

    @staticmethod
    def from_mask(mask: Tensor, n_stored: int) -> tuple[Tensor, Tensor]:
        """(visible, offsets) from a mask (T, n_stored + T) over stored keys then the step's own."""
        rows, cols = mask.nonzero(as_tuple=True)
        visible = torch.where(cols < n_stored, cols, n_stored - 1 - cols)
        offsets = torch.zeros(mask.shape[0] + 1, dtype=torch.long)
        offsets[1:] = torch.bincount(rows, minlength=mask.shape[0]).cumsum(0)
        return visible.contiguous(), offsets


@dataclass
class AttentionStep:
    """What one forward step needs to attend: positions of the new tokens and the mask.

    `mask[i, j]` says whether new token i sees key j, where keys are the cached ones (in slot
    order, `n_cached` of them) followed by the new tokens themselves.
    """

    positions: Tensor  # (T,) absolute positions of the new tokens
    key_positions: Tensor  # (n_cached + T,) position of each key
    mask: Tensor  # (T, n_cached + T) bool
    cache: KVCache | None
    n_cached: int
    causal: bool = False  # the mask is plain causal: SDPA's own, whose fused kernel skips the masked half

    def attend(self, layer: int, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        if self.cache is not None and len(self.positions) == 1:
            return self.cache.decode(layer, q, k, v, self.positions)
        k, v = k.transpose(0, 1), v.transpose(0, 1)  # (n_kv, T, hd)
        if self.cache is not None:
            k, v = self.cache.exchange(layer, k, v, self.positions, self.n_cached)  # (n_kv, n_cached + T, hd)
        # with a batch dimension, so that SDPA takes its fused CPU kernel (3-D inputs do not)
        q, k, v = q.transpose(0, 1)[None], k[None], v[None]
        if self.causal:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=self.mask[None, None], enable_gqa=True)
        return out[0].transpose(0, 1)  # (T, n_heads, hd)

    def native_plan(self) -> NativePlan:
        visible, offsets = NativePlan.from_mask(self.mask.cpu(), self.n_cached)
        n = len(self.positions)
        if self.cache is None:  # nothing is kept: an empty storage, every key is the step's own
            empty = torch.empty((1, 1, 0, 1))
            return NativePlan(empty, empty, 2, torch.full((n,), -1, dtype=torch.long), visible, offsets)
        keep = min(n, self.cache.capacity)  # as `exchange` keeps them: the last `capacity`
        write = torch.full((n,), -1, dtype=torch.long)
        write[n - keep :] = self.positions[n - keep :].cpu() % self.cache.capacity
        return NativePlan(self.cache.keys, self.cache.values, 2, write, visible, offsets)


def attention_mask(query_pos: Tensor, key_pos: Tensor, sliding_window: int | None) -> Tensor:
    """Query i sees key j when j <= i and, with a window W, i - W < j (Mistral's reference)."""
    q, k = query_pos[:, None], key_pos[None, :]
    mask = (k <= q) & (k >= 0)
    if sliding_window is not None:
        mask &= k > q - sliding_window
    return mask  # (T, S)


def uncached_step(n_tokens: int, sliding_window: int | None, device: torch.device) -> AttentionStep:
    """A whole sequence in one forward, with nothing kept."""
    positions = torch.arange(n_tokens, device=device)
    mask = attention_mask(positions, positions, sliding_window)
    return AttentionStep(positions, positions, mask, None, 0, _plain_causal(0, n_tokens, sliding_window))


def packed_step(lengths: list[int], sliding_window: int | None, device: torch.device) -> PackedStep:
    """Several whole sequences packed into one forward (for training): each from position 0,
    each seeing only its own tokens."""
    positions = torch.cat([torch.arange(n) for n in lengths]).to(device)
    return PackedStep(positions, lengths, sliding_window)


@dataclass
class PackedStep:
    """Whole sequences packed into one forward, nothing cached, with no (N, N) mask: each sequence
    attends alone through SDPA's fused causal kernel, which keeps no scores for the backward pass;
    where a window cuts a sequence, its queries go `sliding_window` at a time, each chunk with the
    keys it can see. So what attention holds grows with the tokens, not with their square."""

    positions: Tensor  # (N,)
    lengths: list[int]
    sliding_window: int | None

    def attend(self, layer: int, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        out, start = [], 0
        for n in self.lengths:
            out.append(
                _causal_alone(q[start : start + n], k[start : start + n], v[start : start + n], self.sliding_window)
            )
            start += n
        return torch.cat(out)

    def native_plan(self) -> NativePlan:
        sequence = torch.repeat_interleave(torch.arange(len(self.lengths)), torch.tensor(self.lengths))
        positions = self.positions.cpu()
        mask = attention_mask(positions, positions, self.sliding_window) & (sequence[:, None] == sequence[None, :])
        return AttentionStep(positions, positions, mask, None, 0).native_plan()


def _causal_alone(q: Tensor, k: Tensor, v: Tensor, window: int | None) -> Tensor:
    """One sequence from position 0 attending to itself: q (T, n_heads, hd), k and v (T, n_kv, hd)."""
    q, k, v = q.transpose(0, 1)[None], k.transpose(0, 1)[None], v.transpose(0, 1)[None]  # (1, heads, T, hd)
    T = q.shape[2]
    if window is None or window >= T:
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    else:
        parts = []
        for start in range(0, T, window):
            end, first = min(start + window, T), max(0, start - window + 1)
            positions = torch.arange(first, end, device=q.device)
            mask = attention_mask(positions[start - first :], positions, window)
            parts.append(F.scaled_dot_product_attention(
                q[:, :, start:end], k[:, :, first:end], v[:, :, first:end], attn_mask=mask[None, None], enable_gqa=True
            ))  # fmt: skip
        out = torch.cat(parts, dim=2)
    return out[0].transpose(0, 1)


def _plain_causal(n_cached: int, n_tokens: int, sliding_window: int | None) -> bool:
    """Whether a step's mask is exactly the lower triangle: no cached keys, and no window cut."""
    return n_cached == 0 and (sliding_window is None or n_tokens <= sliding_window)


class KVCache:
    """Keys and values of every layer for one sequence.

    With a sliding window W the buffer holds only the last W tokens: position p lives in slot
    p % W and overwrites position p - W, which no later query can see. Worked example, W = 4,
    after 6 tokens: slots hold positions [4, 5, 2, 3]. Decoding position 6 attends to slots
    holding 3, 4, 5 (6 - 4 < j) and to itself, then writes slot 2, leaving [4, 5, 6, 3].
    A chunk of T new tokens first attends to the cached keys plus itself (the mask comes from
    the positions stored per slot, so slot order does not matter), then keeps its last W keys.

    Without a window the buffer grows by doubling up to `max_seq_len`.
    """

    def __init__(
        self,
        config: ModelConfig,
        *,
        max_seq_len: int | None = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ):
        self.sliding_window = config.sliding_window
        if max_seq_len is None:  # a rolling window can serve any length; otherwise the model's
            max_seq_len = None if config.sliding_window else config.max_seq_len
        self.max_seq_len = max_seq_len
        limits = [n for n in (config.sliding_window, max_seq_len) if n is not None]
        self.capacity = min(limits)  # slots in the buffer once it is fully grown
        self.length = 0  # tokens seen so far
        self._shape = (config.n_layers, config.n_kv_heads, 0, config.head_dim)
        self._device, self._dtype = torch.device(device), dtype
        self.keys = torch.empty(self._shape, device=self._device, dtype=dtype)  # (L, n_kv, slots, hd)
        self.values = torch.empty_like(self.keys)
        self.slot_positions = torch.empty(0, dtype=torch.long, device=self._device)  # (slots,)

    @property
    def nbytes(self) -> int:
        return self.keys.nbytes + self.values.nbytes + self.slot_positions.nbytes

    def begin(self, n_tokens: int) -> AttentionStep:
        """Plan a step that appends `n_tokens` to the sequence."""
        end = self.length + n_tokens
        if self.max_seq_len is not None and end > self.max_seq_len:
            raise ContextLengthError(
                f"sequence of {end} tokens ({self.length} cached + {n_tokens} new) exceeds the "
                f"context limit of {self.max_seq_len} tokens"
            )
        positions = torch.arange(self.length, end, device=self._device)
        n_cached = min(self.length, self.capacity)
        key_pos = torch.cat([self.slot_positions[:n_cached], positions])
        mask = attention_mask(positions, key_pos, self.sliding_window)
        self._grow(min(end, self.capacity))
        kept = positions[-self.capacity :]
        self.slot_positions[kept % self.capacity] = kept
        self.length = end
        causal = _plain_causal(n_cached, n_tokens, self.sliding_window)
        return AttentionStep(positions, key_pos, mask, self, n_cached, causal)

    def exchange(self, layer: int, k: Tensor, v: Tensor, positions: Tensor, n_cached: int) -> tuple[Tensor, Tensor]:
        """Return cached + new keys/values for `layer`, then store the new ones."""
        keys = torch.cat([self.keys[layer, :, :n_cached], k], dim=1)  # (n_kv, n_cached + T, hd)
        values = torch.cat([self.values[layer, :, :n_cached], v], dim=1)
        keep = min(k.shape[1], self.capacity)
        slots = positions[-keep:] % self.capacity
        self.keys[layer].index_copy_(1, slots, k[:, -keep:].to(self._dtype))
        self.values[layer].index_copy_(1, slots, v[:, -keep:].to(self._dtype))
        return keys, values

    def decode(self, layer: int, q: Tensor, k: Tensor, v: Tensor, position: Tensor) -> Tensor:
        """Attend one new token: store its key/value, then read every filled slot in place.

        One token needs no mask: after it is stored, each filled slot holds a position it may
        see (a rolling buffer keeps exactly the last W). Query heads that share a key/value head
        are grouped as that head's queries, so nothing is copied or repeated.
        """
        slot = position % self.capacity
        self.keys[layer].index_copy_(1, slot, k.transpose(0, 1).to(self._dtype))
        self.values[layer].index_copy_(1, slot, v.transpose(0, 1).to(self._dtype))
        n_kv, filled = self.keys.shape[1], min(self.length, self.capacity)
        grouped = q.reshape(1, n_kv, -1, q.shape[-1])  # (1, n_kv, n_heads // n_kv, hd): 4-D runs fused
        keys, values = self.keys[None, layer, :, :filled], self.values[None, layer, :, :filled]
        if keys.dtype != q.dtype:
            keys, values = keys.to(q.dtype), values.to(q.dtype)
        out = F.scaled_dot_product_attention(grouped, keys, values)
        return out.reshape(1, -1, q.shape[-1])  # (1, n_heads, hd)

    def _grow(self, slots: int) -> None:
        have = self.keys.shape[2]
        if slots <= have:
            return
        new = min(self.capacity, max(slots, 2 * have, 64))
        shape = (*self._shape[:2], new, self._shape[3])
        keys = torch.empty(shape, device=self._device, dtype=self._dtype)
        values = torch.empty_like(keys)
        keys[:, :, :have] = self.keys
        values[:, :, :have] = self.values
        positions = torch.full((new,), -1, dtype=torch.long, device=self._device)
        positions[:have] = self.slot_positions
        self.keys, self.values, self.slot_positions = keys, values, positions
