"""Keys and values of many sequences in one pool of slots, and a forward step over a packed batch.

The pool is one tensor per layer of `n_blocks * block_size` slots; position p of a sequence lives
in slot `table[p // block_size] * block_size + p % block_size`, where `table` is that sequence's
block table. A step packs the new tokens of every scheduled sequence into one (N,) tensor, so
every matrix product runs once for the whole batch; only attention is per sequence. A sequence
that decodes one token sees all its keys, so it needs no mask: its keys are read where they lie,
one call per run of adjacent blocks (the block pool hands out adjacent blocks when it can),
merged by log-sum-exp. A sequence that prefills a chunk gathers its keys and is masked.

Worked example, block_size 4, a sequence with table [7, 2] that has 5 tokens cached and feeds
2 more (positions 5, 6): the new keys go to slots 2*4+1 = 9 and 10; its queries read the keys
of positions 0..6 from slots [28, 29, 30, 31, 8, 9, 10].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from autan.config import ModelConfig
from autan.model.cache import NativePlan, attention_mask


class KVPool:
    """The slots themselves. Left uninitialised (so memory is only taken as blocks are used), except
    one extra zeroed slot at the end that padding points to: a masked key must still be a number."""

    def __init__(self, config: ModelConfig, n_blocks: int, block_size: int, device: torch.device, dtype: torch.dtype):
        self.null_slot = n_blocks * block_size
        shape = (config.n_layers, self.null_slot + 1, config.n_kv_heads, config.head_dim)
        self.keys = torch.empty(shape, device=device, dtype=dtype)  # (L, slots, n_kv, hd)
        self.values = torch.empty(shape, device=device, dtype=dtype)
        self.keys[:, self.null_slot] = 0
        self.values[:, self.null_slot] = 0
        self.block_size = block_size

    @staticmethod
    def bytes_per_token(config: ModelConfig, dtype: torch.dtype) -> int:
        return 2 * config.n_layers * config.n_kv_heads * config.head_dim * dtype.itemsize


@dataclass
class Chunk:
    """The tokens one sequence feeds in this step."""

    tokens: Sequence[int]
    start: int  # position of the first of them
    table: Sequence[int | None]  # the sequence's block table (None: released, out of the window)


@dataclass
class _Group:
    rows: Tensor  # (G, T) index of each query in the packed batch (padding repeats a valid row)
    valid: Tensor  # (G, T) bool, False on padding
    key_slots: Tensor  # (G, S) pool slot of each visible key (padding points at the null slot)
    mask: Tensor  # (G, 1, T, S) bool
    bias: Tensor | None  # decoding (T = 1): the mask as 0 / -inf to add to the scores, made once per step


class PagedStep:
    """One forward step over the packed chunks of several sequences (the model's `Step`)."""

    def __init__(self, pool: KVPool, chunks: Sequence[Chunk], sliding_window: int | None, device: torch.device):
        self.pool, self.chunks, self.sliding_window = pool, chunks, sliding_window
        bs = pool.block_size
        spans = [torch.arange(c.start, c.start + len(c.tokens)) for c in chunks]
        self.tokens = torch.tensor([t for c in chunks for t in c.tokens], dtype=torch.long)
        self.positions = torch.cat(spans).to(device)
        self.slots = torch.cat([_slots(c.table, span, bs) for c, span in zip(chunks, spans, strict=True)]).to(device)
        offsets = [0]
        for c in chunks:
            offsets.append(offsets[-1] + len(c.tokens))
        self.last_rows = torch.tensor(offsets[1:]) - 1  # (B,) each chunk's last token in the batch
        # A decoding sequence sees every key it has (within its window), so it needs no mask. It
        # is read in place when that takes one call (its keys in one run, and it decodes alone or
        # has many keys) or a few calls on many keys (runs merged by log-sum-exp); the others are
        # gathered and attended together in one padded call (a copy costs less than a call each).
        decoding = [
            (i, c, _runs(c.table, _first_visible(c, sliding_window), c.start, bs))
            for i, c in enumerate(chunks)
            if len(c.tokens) == 1
        ]
        alone = len(decoding) == 1
        self.in_place = [(offsets[i], runs) for i, c, runs in decoding if _read_in_place(runs, alone, device)]
        placed = {row for row, _ in self.in_place}
        gathered = [i for i, _, _ in decoding if offsets[i] not in placed]
        prefilling = [[i] for i, c in enumerate(chunks) if len(c.tokens) > 1]
        self.groups = [
            _group([chunks[i] for i in g], [offsets[i] for i in g], sliding_window, pool, device)
            for g in ([gathered] if gathered else []) + prefilling
        ]

    def native_plan(self) -> NativePlan:
        """Row by row: the pool slots of the keys stored before this step that it sees (within
        its window), then this step's own keys up to its own (by row: -1 - row)."""
        bs, window = self.pool.block_size, self.sliding_window
        visible, counts, row = [], [], 0
        for c in self.chunks:
            low = _first_visible(c, window)
            stored = (
                _slots(c.table, torch.arange(low, c.start), bs) if low < c.start else torch.empty(0, dtype=torch.long)
            )
            for i in range(len(c.tokens)):
                position = c.start + i
                first = 0 if window is None else max(0, position - window + 1)
                own = torch.arange(max(first, c.start), position + 1) - c.start + row  # rows of this step
                seen = [stored[max(0, first - low) :], -1 - own]
                visible += seen
                counts.append(sum(len(v) for v in seen))
            row += len(c.tokens)
        offsets = torch.zeros(len(counts) + 1, dtype=torch.long)
        offsets[1:] = torch.tensor(counts).cumsum(0)
        keys, values = self.pool.keys, self.pool.values
        return NativePlan(keys, values, 1, self.slots.cpu(), torch.cat(visible), offsets)

    def attend(self, layer: int, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        keys, values = self.pool.keys[layer], self.pool.values[layer]  # (slots, n_kv, hd)
        keys.index_copy_(0, self.slots, k.to(keys.dtype))
        values.index_copy_(0, self.slots, v.to(values.dtype))
        out = torch.empty_like(q)  # (N, n_heads, hd)
        n_kv, hd = keys.shape[1], keys.shape[2]
        for row, runs in self.in_place:
            grouped = q[row].view(1, n_kv, -1, hd)  # query heads grouped under their key/value head
            out[row] = _attend_runs(grouped, keys, values, runs).reshape(-1, hd)  # (a view on CPU; not on CUDA)
        for g in self.groups:
            G, S = g.key_slots.shape
            slots = g.key_slots.flatten()
            gk = keys.index_select(0, slots).view(G, S, n_kv, hd).transpose(1, 2).to(q.dtype)  # (G, n_kv, S, hd)
            gv = values.index_select(0, slots).view(G, S, n_kv, hd).transpose(1, 2).to(q.dtype)
            if g.rows.shape[1] == 1:  # decoding: one query each, heads grouped as above, no repeat
                rows = g.rows[:, 0]
                o = F.scaled_dot_product_attention(q[rows].view(G, n_kv, -1, hd), gk, gv, attn_mask=g.bias.to(q.dtype))
                out[rows] = o.reshape(G, -1, hd)
                continue
            gq = q[g.rows].transpose(1, 2)  # (G, n_heads, T, hd)
            o = F.scaled_dot_product_attention(gq, gk, gv, attn_mask=g.mask, enable_gqa=True)
            out[g.rows[g.valid]] = o.transpose(1, 2)[g.valid]
        return out


MAX_RUNS = 4  # a sequence in more pieces than this is gathered
IN_PLACE_FROM = 256  # keys from which a decoding sequence in one piece, among others, is read in place
MERGE_FROM = 1024  # keys from which a sequence in a few pieces is read in place, piece by piece


def _read_in_place(runs: list[tuple[int, int]], alone: bool, device: torch.device) -> bool:
    if len(runs) == 1:
        return alone or _runs_length(runs) >= IN_PLACE_FROM
    # (the merge needs the CPU kernel's log-sum-exp)
    return device.type == "cpu" and len(runs) <= MAX_RUNS and _runs_length(runs) >= MERGE_FROM


def _first_visible(chunk: Chunk, window: int | None) -> int:
    return 0 if window is None else max(0, chunk.start - window + 1)


def _runs(table: Sequence[int | None], low: int, high: int, block_size: int) -> list[tuple[int, int]]:
    """Slot ranges [start, end) that hold positions low..high, adjacent blocks merged."""
    runs: list[tuple[int, int]] = []
    for b in range(low // block_size, high // block_size + 1):
        block = table[b]
        assert block is not None, f"positions {low}..{high} reach a released block of {list(table)}"
        start = block * block_size + (low % block_size if b == low // block_size else 0)
        end = block * block_size + (high % block_size + 1 if b == high // block_size else block_size)
        if runs and runs[-1][1] == start:
            runs[-1] = (runs[-1][0], end)
        else:
            runs.append((start, end))
    return runs


def _runs_length(runs: list[tuple[int, int]]) -> int:
    return sum(e - s for s, e in runs)


def _attend_runs(q: Tensor, keys: Tensor, values: Tensor, runs: list[tuple[int, int]]) -> Tensor:
    """Attention of q (1, n_kv, group, hd) over the keys in `runs` of the pool (slots, n_kv, hd).

    Each run is attended where it lies; the partial results are merged by their log-sum-exp,
    which is exactly softmax over all the keys together (on a CPU: the merge needs its kernel).
    """

    def heads_first(x: Tensor) -> Tensor:  # (S, n_kv, hd) -> (1, n_kv, S, hd), a view
        return x.to(q.dtype).permute(1, 0, 2)[None]

    if len(runs) == 1:
        ((s, e),) = runs
        return F.scaled_dot_product_attention(q, heads_first(keys[s:e]), heads_first(values[s:e]))
    outs, lses = [], []
    for s, e in runs:
        o, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            q, heads_first(keys[s:e]), heads_first(values[s:e])
        )
        outs.append(o)
        lses.append(lse)
    lse = torch.stack(lses)  # (R, 1, n_kv, group)
    weights = torch.exp(lse - lse.logsumexp(0, keepdim=True))[..., None]
    return (torch.stack(outs) * weights).sum(0)


def _slots(table: Sequence[int | None], positions: Tensor, block_size: int) -> Tensor:
    blocks = torch.tensor([-1 if b is None else b for b in table], dtype=torch.long)[positions // block_size]
    assert bool((blocks >= 0).all()), f"positions {positions.tolist()} reach a released block of {list(table)}"
    return blocks * block_size + positions % block_size


def _group(chunks: list[Chunk], offsets: list[int], window: int | None, pool: KVPool, device: torch.device) -> _Group:
    T = max(len(c.tokens) for c in chunks)
    spans = []  # the key positions each chunk's queries may see: its window back from the first query
    for c in chunks:
        low = 0 if window is None else max(0, c.start - window + 1)
        spans.append(torch.arange(low, c.start + len(c.tokens)))
    S = max(len(s) for s in spans)
    rows = torch.zeros(len(chunks), T, dtype=torch.long)
    valid = torch.zeros(len(chunks), T, dtype=torch.bool)
    key_slots = torch.full((len(chunks), S), pool.null_slot, dtype=torch.long)
    query_pos = torch.full((len(chunks), T), -1, dtype=torch.long)
    key_pos = torch.full((len(chunks), S), -1, dtype=torch.long)  # -1: padding, never seen
    for g, (c, offset, span) in enumerate(zip(chunks, offsets, spans, strict=True)):
        n = len(c.tokens)
        rows[g, :n] = torch.arange(offset, offset + n)
        rows[g, n:] = offset + n - 1
        valid[g, :n] = True
        query_pos[g, :n] = torch.arange(c.start, c.start + n)
        key_slots[g, : len(span)] = _slots(c.table, span, pool.block_size)
        key_pos[g, : len(span)] = span
    mask = torch.stack([attention_mask(q, k, window) for q, k in zip(query_pos, key_pos, strict=True)])
    mask[~valid] = False
    mask[..., 0] |= ~valid  # padded queries see one key, so no row is empty (their output is dropped)
    mask = mask[:, None].to(device)
    bias = None
    if T == 1:
        bias = torch.zeros(mask.shape, dtype=pool.keys.dtype, device=device).masked_fill_(~mask, float("-inf"))
    return _Group(rows.to(device), valid.to(device), key_slots.to(device), mask, bias)
