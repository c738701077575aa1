"""One contract, every architecture: shapes, dtypes, and cached equal to uncached for any chunking."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import autan
from checkpoints import ARCHS, hf_model, save_hf


@pytest.fixture(scope="module", params=ARCHS)
def model(request, tmp_path_factory):
    return autan.load_model(save_hf(hf_model(request.param, seed=5), tmp_path_factory.mktemp(request.param)))


def test_shapes_and_dtypes(model):
    logits = model.logits(list(range(17)))
    assert logits.shape == (17, model.config.vocab_size) and logits.dtype == torch.float32
    with torch.inference_mode():
        last = model(torch.arange(17), last_only=True)
    torch.testing.assert_close(last, logits[-1:], rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match=r"one sequence of shape \(T,\), got shape \(2, 3\)"):
        model(torch.zeros(2, 3, dtype=torch.long))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chunks=st.lists(st.integers(1, 13), min_size=1, max_size=6), seed=st.integers(0, 1000))
def test_any_chunking_equals_one_pass(model, chunks, seed):
    tokens = torch.randint(0, model.config.vocab_size, (sum(chunks),), generator=torch.Generator().manual_seed(seed))
    expected = model.logits(tokens)
    cache = model.new_cache()
    with torch.inference_mode():
        pieces = [model(part, cache) for part in tokens.split(chunks)]
    torch.testing.assert_close(torch.cat(pieces), expected, atol=2e-5, rtol=1e-4)
    assert cache.length == len(tokens)
