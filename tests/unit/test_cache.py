"""The rolling KV cache: which keys each query sees, and how much memory it holds."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from autan import ContextLengthError, ModelConfig
from autan.model.cache import KVCache


def config(window: int | None, max_seq_len: int = 4096) -> ModelConfig:
    return ModelConfig(
        dim=8,
        n_layers=2,
        n_heads=2,
        n_kv_heads=1,
        head_dim=4,
        hidden_dim=8,
        vocab_size=10,
        norm_eps=1e-5,
        rope_theta=1e4,
        max_seq_len=max_seq_len,
        sliding_window=window,
    )


@settings(max_examples=200, deadline=None)
@given(
    window=st.one_of(st.none(), st.integers(1, 12)),
    chunks=st.lists(st.integers(1, 20), min_size=1, max_size=8),
)
def test_each_query_sees_exactly_its_window(window, chunks):
    """Query i sees keys j with i - W < j <= i (all j <= i without a window), each exactly once."""
    cache = KVCache(config(window))
    for n in chunks:
        step = cache.begin(n)
        # the flag that lets SDPA use its own causal mask holds exactly when the mask is the lower triangle
        triangle = len(step.key_positions) == n and bool((step.mask == torch.ones(n, n).tril().bool()).all())
        assert step.causal == triangle
        for row, i in enumerate(step.positions.tolist()):
            seen = sorted(step.key_positions[step.mask[row]].tolist())
            low = 0 if window is None else max(0, i - window + 1)
            assert seen == list(range(low, i + 1)), (window, chunks, i)
        # Fill this layer's slots as a model would, so the next step's buffer is consistent.
        for layer in range(2):
            k = torch.zeros(n, 1, 4)
            step.attend(layer, torch.zeros(n, 2, 4), k, k)
    if window is not None:
        assert cache.keys.shape[2] <= window


def test_memory_stops_growing_at_the_window():
    cache = KVCache(config(window=16))
    sizes = []
    for _ in range(12):
        step = cache.begin(8)
        for layer in range(2):
            step.attend(layer, torch.randn(8, 2, 4), torch.randn(8, 1, 4), torch.randn(8, 1, 4))
        sizes.append(cache.nbytes)
    assert cache.length == 96 and len(set(sizes[1:])) == 1  # 16 slots from 16 tokens on


def test_stored_keys_are_the_last_window_of_positions():
    cache = KVCache(config(window=4))
    for start in range(0, 11, 1):
        step = cache.begin(1)
        for layer in range(2):
            k = torch.full((1, 1, 4), float(start))
            step.attend(layer, torch.zeros(1, 2, 4), k, k)
    # positions 7..10 in slots p % 4, each slot's key holds its own position
    assert sorted(cache.slot_positions.tolist()) == [7, 8, 9, 10]
    assert torch.equal(cache.keys[1, 0, :, 0], cache.slot_positions.float())


def test_context_limit_names_the_numbers():
    cache = KVCache(config(window=None, max_seq_len=16))
    cache.begin(10)
    with pytest.raises(
        ContextLengthError,
        match=r"sequence of 17 tokens \(10 cached \+ 7 new\) exceeds the context limit of 16",
    ):
        cache.begin(7)
    assert KVCache(config(window=None), max_seq_len=32).max_seq_len == 32
    assert KVCache(config(window=8)).max_seq_len is None  # a rolling buffer serves any length
