"""Decode attention read in place from runs of adjacent blocks, or gathered with others into one
padded call, equals attention over each sequence's keys gathered in position order, whatever
the block tables, windows and lengths."""

import itertools

import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from autan.config import ModelConfig
from autan.engine import paged
from autan.engine.blocks import BlockPool
from autan.engine.paged import Chunk, KVPool, PagedStep, _attend_runs, _runs, _slots

BLOCK, POOL_BLOCKS = 4, 48
CONFIG = ModelConfig(
    vocab_size=16,
    dim=48,
    n_layers=1,
    n_heads=6,
    n_kv_heads=2,
    hidden_dim=8,
    head_dim=8,
    max_seq_len=256,
    norm_eps=1e-5,
    rope_theta=1e4,
)


@st.composite
def tables(draw, n_tables=1):
    """Block tables over one pool: stretches of adjacent blocks, in any order, never shared."""
    free = list(range(POOL_BLOCKS))
    out = []
    for _ in range(n_tables):
        n_blocks = draw(st.integers(1, 10))
        table = []
        while len(table) < n_blocks:
            start = draw(st.sampled_from(free))
            for b in range(start, start + draw(st.integers(1, 4))):
                if b in free and len(table) < n_blocks:
                    free.remove(b)
                    table.append(b)
        out.append(table)
    return out


@settings(max_examples=200, deadline=None)
@given(tables=tables(), data=st.data(), group=st.sampled_from([1, 3]))
def test_runs_attend_like_gathered_keys(tables, data, group):
    (table,) = tables
    high = data.draw(st.integers(0, len(table) * BLOCK - 1), label="position")
    low = data.draw(st.integers(0, high), label="first visible")
    g = torch.Generator().manual_seed(len(table) * 1000 + high)
    keys, values = (torch.randn(POOL_BLOCKS * BLOCK, 2, 8, generator=g) for _ in range(2))
    q = torch.randn(1, 2, group, 8, generator=g)

    runs = _runs(table, low, high, BLOCK)
    slots = _slots(table, torch.arange(low, high + 1), BLOCK)
    assert torch.equal(torch.cat([torch.arange(s, e) for s, e in runs]), slots)
    assert all(a[1] != b[0] for a, b in itertools.pairwise(runs))  # adjacent blocks merged
    k, v = (x[slots].permute(1, 0, 2)[None] for x in (keys, values))
    expected = F.scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(_attend_runs(q, keys, values, runs), expected, atol=1e-5, rtol=1e-5)


@settings(max_examples=100, deadline=None)
@given(
    tables=st.integers(1, 4).flatmap(lambda n: tables(n)),
    data=st.data(),
    in_place_from=st.sampled_from([0, 20, 10_000]),
)
def test_decode_step_attends_like_gathered_keys(tables, data, in_place_from):
    """A step of several decoding sequences: some read in place, some in the padded group."""
    window = data.draw(st.sampled_from([None, 5, 13]), label="window")
    positions = [data.draw(st.integers(0, len(t) * BLOCK - 1), label="position") for t in tables]
    pool = KVPool(CONFIG, POOL_BLOCKS, BLOCK, torch.device("cpu"), torch.float32)
    g = torch.Generator().manual_seed(sum(positions))
    pool.keys.copy_(torch.randn(pool.keys.shape, generator=g))
    pool.values.copy_(torch.randn(pool.values.shape, generator=g))
    chunks = [Chunk([0], p, t) for p, t in zip(positions, tables, strict=True)]
    defaults = paged.IN_PLACE_FROM, paged.MERGE_FROM
    paged.IN_PLACE_FROM = paged.MERGE_FROM = in_place_from  # 0: everything in place, merged where in pieces
    try:
        step = PagedStep(pool, chunks, window, torch.device("cpu"))
    finally:
        paged.IN_PLACE_FROM, paged.MERGE_FROM = defaults
    if in_place_from == 0:  # everything in at most MAX_RUNS pieces is read in place
        pieces = [len(_runs(c.table, paged._first_visible(c, window), c.start, BLOCK)) for c in chunks]
        assert len(step.in_place) == sum(n <= paged.MAX_RUNS for n in pieces)
    n = len(chunks)
    q, k, v = torch.randn(n, 6, 8, generator=g), torch.randn(n, 2, 8, generator=g), torch.randn(n, 2, 8, generator=g)
    out = step.attend(0, q, k, v)
    for i, (p, table) in enumerate(zip(positions, tables, strict=True)):
        low = 0 if window is None else max(0, p - window + 1)
        slots = _slots(table, torch.arange(low, p + 1), BLOCK)
        ks, vs = (x[0, slots].permute(1, 0, 2) for x in (pool.keys, pool.values))  # new key/value already stored
        expected = F.scaled_dot_product_attention(q[i][:, None], ks, vs, enable_gqa=True)[:, 0]
        torch.testing.assert_close(out[i], expected, atol=1e-5, rtol=1e-5)


def test_interleaved_sequences_get_adjacent_blocks():
    """Two sequences that grow in turns still get long runs: each keeps room after its last block."""
    pool = BlockPool(64, BLOCK)
    a, b = [pool.allocate()], [pool.allocate()]
    for _ in range(7):
        a.append(pool.allocate(after=a[-1]))
        b.append(pool.allocate(after=b[-1]))
    for table in (a, b):
        assert len(_runs(table, 0, len(table) * BLOCK - 1, BLOCK)) <= 2, table


def test_adjacent_blocks_never_evict_a_cached_prefix_out_of_order():
    """A fresh block for a sequence is never taken from the middle of a cached prefix: cached
    blocks are still reused least recently freed first."""
    pool = BlockPool(40, BLOCK)
    assert sorted(pool.allocate() for _ in range(40)) == list(range(40))
    pool.release(30)  # an old, unnamed free block
    for b in range(10, 20):  # then a finished sequence's prefix, named, freed in order
        pool.name(b, bytes([b]))
        pool.release(b)
    taken = pool.allocate(after=5)  # block 6 is in use: the pool looks for room elsewhere
    assert taken == 30
    assert all(pool.names[b] == bytes([b]) for b in range(10, 20))
