"""The moderation encoder's products on oneDNN's prepacked kernel, against float64: each linear
map alone, over random shapes, and the layer-mean features the heads read, through the whole
encoder."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from autan.guard.encoder import FEATURES, Encoder, PrepackedLinear, prepack


@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(1, 300),
    batch=st.sampled_from([(), (1,), (3,)]),
    shape=st.sampled_from([(384, 384), (384, 1536), (1536, 384), (7, 5)]),
    bias=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_a_prepacked_linear_map_is_the_float64_product(rows, batch, shape, bias, seed):
    torch.manual_seed(seed)
    linear = torch.nn.Linear(*shape, bias=bias)
    x = torch.randn(*batch, rows, shape[0])
    want = torch.nn.functional.linear(
        x.double(), linear.weight.double(), None if linear.bias is None else linear.bias.double()
    )
    got = PrepackedLinear(linear)(x)
    assert got.shape == want.shape and got.dtype == torch.float32
    # float32 sums of `in` products, in any order: a few units of float32 rounding per product
    bound = 1e-6 * shape[0] * (x.abs().amax().item() + 1) + 1e-6
    assert (got.double() - want).abs().max().item() <= bound


def test_the_packed_encoders_features_are_the_float64_encoders():
    packed, plain = Encoder(), Encoder(packed=False)
    assert prepack(torch.nn.Sequential(torch.nn.Linear(2, 2))) == 1
    assert not any(type(m) is torch.nn.Linear for m in packed.model.modules())
    plain.model.double()
    texts = ["How do I kill a Python process?", "Tell me about the sea. " * 80, "ok"]
    windows = packed.windows(texts)
    got, want = packed.features(windows), plain.features(windows)
    assert got.shape == (len(windows.owner), FEATURES) and len(windows.owner) > len(texts)  # long text in windows
    assert (got.double() - want).abs().max().item() < 1e-4 * want.abs().max().item()
