"""Packed kernels (int4 group-wise, int8 per channel) against the exact unpacking of the same GGUF data.

The int4 mapping of Q4_0/Q4_1/Q4_K is exact up to bfloat16 rounding of the scales and offsets;
int8 requantization of the other types adds at most half a step per weight. Both multiply
bfloat16 activations. The bounds below are those roundings, with a small margin.
"""

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType as Q

import autan
from autan import registry
from autan.model.kernels import dequantized, pack
from autan.model.quant import QuantizedWeight, packed_row_bytes
from checkpoints import random_blocks

BF16 = 2**-8  # relative precision of bfloat16


def random_weight(qtype: Q, rows: int, cols: int, seed: int) -> QuantizedWeight:
    blocks = random_blocks(qtype, rows, cols, np.random.default_rng(seed))
    packed = torch.from_numpy(blocks.reshape(rows, packed_row_bytes(qtype, cols)).copy())
    return QuantizedWeight(packed, qtype, (rows, cols))


@pytest.mark.parametrize("qtype", [Q.Q4_0, Q.Q4_1, Q.Q4_K, Q.Q8_0, Q.Q5_K, Q.Q6_K], ids=lambda q: q.name)
@pytest.mark.parametrize("seed", range(3))
def test_packed_weights_equal_the_unpacked_ones_within_rounding(qtype, seed):
    weight = random_weight(qtype, 64, 512, seed)
    kernel = pack(weight)
    assert kernel is not None and kernel.kind == ("int4" if qtype in (Q.Q4_0, Q.Q4_1, Q.Q4_K) else "int8")
    exact = weight.dequantize(torch.float32)
    row_max = exact.abs().amax(dim=1, keepdim=True)
    # int4: bf16 scale and offset, each off by half a bf16 step of values up to the row's magnitude
    # int8: half an int8 step (row max / 254) plus the bf16 scale's rounding
    bound = 4 * BF16 if kernel.kind == "int4" else 1 / 254 + 2 * BF16
    error = ((dequantized(kernel) - exact).abs() / row_max).max().item()
    assert error <= bound, f"{qtype.name}: {error:.5f} > {bound:.5f}"
    x = torch.randn(5, 512, generator=torch.Generator().manual_seed(seed))
    y, reference = kernel(x), x @ exact.t()
    assert y.dtype == torch.float32 and y.shape == (5, 64)
    assert ((y - reference).abs().max() / reference.abs().max()).item() < 3e-2


def test_fused_kernels_compute_what_separate_ones_do():
    from autan.model.kernels import _int4

    weights = [random_weight(Q.Q4_1, rows, 256, seed) for seed, rows in enumerate((64, 32, 32))]
    x = torch.randn(3, 256)
    fused = _int4(*weights)(x).split([64, 32, 32], dim=-1)
    for part, weight in zip(fused, weights, strict=True):
        torch.testing.assert_close(part, _int4(weight)(x), rtol=0, atol=0)


def test_the_default_model_on_packed_kernels_stays_close_to_the_exact_path():
    path = registry.pull("smollm2", quiet=True)
    packed, exact = autan.load_model(path), autan.load_model(path, kernels="exact")
    layer = packed.model.layers[0]
    assert layer.mlp.gate_up_kernel.splits == [1536, 1536] and layer.self_attn.qkv_kernel.splits == [576, 192, 192]
    assert layer.mlp.down_proj.kernel.kind == "int4" and packed.head_kernel.kind == "int8"
    prompt = torch.tensor([1, 9690, 198, 2683, 314, 253, 5356, 282, 4649, 47, 2, 198, 1, 520, 9531, 198])
    p, q = torch.log_softmax(exact.logits(prompt), -1), torch.log_softmax(packed.logits(prompt), -1)
    kl = (p.exp() * (p - q)).sum(-1)  # KL(exact || packed) per position, in nats
    assert kl.max().item() < 0.05, kl
    assert (p.argmax(-1) == q.argmax(-1)).float().mean().item() >= 0.9
