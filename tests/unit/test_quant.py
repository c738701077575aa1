"""autan's torch unpacking of GGML blocks against gguf.quants (llama.cpp's block math in numpy)."""

import gguf
import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType as Q

from autan.kernels import Exact
from autan.kernels.blocks import QUANT_TYPES, QuantizedWeight, dequantize, packed_row_bytes
from autan.model.layers import Embedding, Linear
from checkpoints import random_blocks

TYPES = list(QUANT_TYPES)


@pytest.mark.parametrize("qtype", TYPES, ids=lambda q: q.name)
@pytest.mark.parametrize("seed", range(5))
def test_dequantize_is_bit_identical_to_gguf(qtype, seed):
    rng = np.random.default_rng(seed)
    block = gguf.GGML_QUANT_SIZES[qtype][0]
    rows, cols = int(rng.integers(1, 9)), block * int(rng.integers(1, 5))
    blocks = random_blocks(qtype, rows, cols, rng)
    ours = dequantize(torch.from_numpy(blocks), qtype)
    theirs = torch.from_numpy(gguf.quants.dequantize(blocks, qtype))
    assert ours.shape == (rows, cols)
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("qtype", TYPES, ids=lambda q: q.name)
def test_arbitrary_bytes_decode_like_gguf(qtype):
    """Every bit pattern of the packed values and scales, not only tidy ones (NaN where gguf has NaN)."""
    rng = np.random.default_rng(7)
    type_size = gguf.GGML_QUANT_SIZES[qtype][1]
    blocks = rng.integers(0, 256, size=(64, type_size), dtype=np.uint8)
    ours = dequantize(torch.from_numpy(blocks), qtype)
    with np.errstate(invalid="ignore"):  # inf * 0 scales are part of "every bit pattern"
        theirs = torch.from_numpy(gguf.quants.dequantize(blocks, qtype)).reshape(ours.shape)
    assert torch.equal(ours.isnan(), theirs.isnan())
    assert torch.equal(ours.nan_to_num(), theirs.nan_to_num())


@pytest.mark.parametrize("qtype", TYPES, ids=lambda q: q.name)
def test_quantized_linear_and_embedding_match_dense(qtype):
    rng = np.random.default_rng(1)
    block = gguf.GGML_QUANT_SIZES[qtype][0]
    rows, cols = 24, block * 2
    blocks = torch.from_numpy(random_blocks(qtype, rows, cols, rng))
    dense = torch.from_numpy(gguf.quants.dequantize(blocks.numpy(), qtype))

    linear = Linear(Exact(QuantizedWeight(blocks, qtype, (rows, cols))))
    x = torch.randn(5, cols)
    torch.testing.assert_close(linear(x), x @ dense.T)

    embedding = Embedding(QuantizedWeight(blocks, qtype, (rows, cols)))
    ids = torch.tensor([3, 0, 23, 3])
    assert torch.equal(embedding(ids, torch.float32), dense[ids])


def test_row_length_must_be_whole_blocks():
    with pytest.raises(ValueError, match="not a whole number of Q4_K blocks of 256"):
        packed_row_bytes(Q.Q4_K, 100)
    with pytest.raises(ValueError, match="uint8"):
        QuantizedWeight(torch.zeros(4, 10, dtype=torch.uint8), Q.Q4_0, (4, 64))
