"""PyTorch's packed kernels (int4 group-wise, int8 per channel) against the exact unpacking of the
same GGUF data. They are the fallback where the native kernels (tests/model/test_native.py) are not
built or cannot take a type, so here the native kernels are turned off.

The int4 mapping of Q4_0/Q4_1/Q4_K is exact up to bfloat16 rounding of the scales and offsets;
int8 requantization of the other types adds at most half a step per weight. Both multiply
bfloat16 activations. The bounds below are those roundings, with a small margin.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType as Q
from hypothesis import given, settings
from hypothesis import strategies as st

import autan
from autan import registry
from autan.kernels import TorchInt4, TorchInt8, choose
from autan.kernels.blocks import QuantizedWeight, packed_row_bytes
from checkpoints import random_blocks
from references import dequantized

BF16 = 2**-8  # relative precision of bfloat16


@pytest.fixture(autouse=True)
def pytorch_kernels(monkeypatch):
    from autan import native

    monkeypatch.setattr(native, "module", lambda: None)
    monkeypatch.setenv("AUTAN_NATIVE", "0")  # and in the processes a test starts


def random_weight(qtype: Q, rows: int, cols: int, seed: int) -> QuantizedWeight:
    blocks = random_blocks(qtype, rows, cols, np.random.default_rng(seed))
    packed = torch.from_numpy(blocks.reshape(rows, packed_row_bytes(qtype, cols)).copy())
    return QuantizedWeight(packed, qtype, (rows, cols))


@pytest.mark.parametrize("qtype", [Q.Q4_0, Q.Q4_1, Q.Q4_K, Q.Q8_0, Q.Q5_K, Q.Q6_K], ids=lambda q: q.name)
@pytest.mark.parametrize("seed", range(3))
def test_packed_weights_equal_the_unpacked_ones_within_rounding(qtype, seed):
    weight = random_weight(qtype, 64, 512, seed)
    kernel = choose(weight)
    assert kernel.family == ("int4" if qtype in (Q.Q4_0, Q.Q4_1, Q.Q4_K) else "int8")
    exact = weight.dequantize(torch.float32)
    row_max = exact.abs().amax(dim=1, keepdim=True)
    # int4: bf16 scale and offset, each off by half a bf16 step of values up to the row's magnitude
    # int8: half an int8 step (row max / 254) plus the bf16 scale's rounding
    bound = 4 * BF16 if kernel.family == "int4" else 1 / 254 + 2 * BF16
    error = ((dequantized(kernel) - exact).abs() / row_max).max().item()
    assert error <= bound, f"{qtype.name}: {error:.5f} > {bound:.5f}"
    x = torch.randn(5, 512, generator=torch.Generator().manual_seed(seed))
    y, reference = kernel(x), x @ exact.t()
    assert y.dtype == torch.float32 and y.shape == (5, 64)
    assert ((y - reference).abs().max() / reference.abs().max()).item() < 3e-2


def test_the_default_model_on_packed_kernels_stays_close_to_the_exact_path():
    path = registry.pull("smollm2", quiet=True)
    packed, exact = autan.load_model(path), autan.load_model(path, kernels="exact")
    layer = packed.model.layers[0]
    assert layer.mlp.down_proj.kernel.family == "int4" and packed.lm_head.kernel.family == "int8"
    prompt = torch.tensor([1, 9690, 198, 2683, 314, 253, 5356, 282, 4649, 47, 2, 198, 1, 520, 9531, 198])
    p, q = torch.log_softmax(exact.logits(prompt), -1), torch.log_softmax(packed.logits(prompt), -1)
    kl = (p.exp() * (p - q)).sum(-1)  # KL(exact || packed) per position, in nats
    assert kl.max().item() < 0.05, kl
    assert (p.argmax(-1) == q.argmax(-1)).float().mean().item() >= 0.9


@pytest.mark.parametrize("qtype", [Q.Q4_0, Q.Q8_0], ids=lambda q: q.name)
def test_mixtral_experts_on_packed_kernels_match_the_unpacked_experts(qtype, tmp_path):
    """Each expert gets its own kernels; a MoE block on them stays within bf16/int8 rounding of
    the same block unpacking its chosen experts, for a prompt and for one token."""
    from checkpoints import hf_model, save_gguf

    hf_model("mixtral", seed=5).save_pretrained(tmp_path / "hf")
    path = save_gguf(tmp_path / "hf", tmp_path / "m.gguf", qtype)
    moe = autan.load_model(path).model.layers[0].block_sparse_moe
    unpacked = autan.load_model(path, kernels="exact").model.layers[0].block_sparse_moe
    assert len(moe.experts.down) == moe.n_experts and not moe.exact and unpacked.exact
    assert {k.family for k in (*moe.experts.gate, *moe.experts.up, *moe.experts.down)} <= {"native", "int4", "int8"}
    g = torch.Generator().manual_seed(0)
    for tokens in (24, 1):
        x = torch.randn(tokens, 64, generator=g)
        reference, y = unpacked(x), moe(x)
        assert ((y - reference).abs().max() / reference.abs().max()).item() < 2e-2


def _int4_grid_error(weight: torch.Tensor) -> torch.Tensor:
    """Half an int4 step of each weight's group of 32, plus bf16 rounding of the scale and offset."""
    groups = weight.reshape(weight.shape[0], -1, 32)
    span = groups.amax(-1, keepdim=True) - groups.amin(-1, keepdim=True)
    return (span / 30 + 4 * BF16 * groups.abs().amax(-1, keepdim=True)).expand_as(groups).reshape(weight.shape)


@pytest.mark.parametrize("kind", ["int8", "int4"])
@pytest.mark.parametrize("arch", ["llama", "mixtral"])
def test_quantize_at_load_rounds_to_its_grid_and_computes_with_it(arch, kind, tmp_path):
    """Every dense map is packed; each packed matrix is the original within half a step of its
    grid; and the model computes what the same model with those matrices computes (bf16 bound)."""
    from checkpoints import hf_model

    hf_model(arch, seed=7).save_pretrained(tmp_path / "hf")
    dense = autan.load_model(tmp_path / "hf", dtype=torch.float32)
    quantized = autan.load_model(tmp_path / "hf", dtype=torch.float32, quantize=kind)
    reference = autan.load_model(tmp_path / "hf", dtype=torch.float32)  # will hold the packed matrices

    def check(kernel, original, target):
        assert kernel.family == (kind if kind == "int8" or kernel is not quantized.lm_head.kernel else "int8")
        matrix = dequantized(kernel)
        error = (matrix - original).abs()
        if kernel.family == "int8":
            bound = original.abs().amax(1, keepdim=True) / 254 * (1 + 2 * BF16) + 1e-7
        else:
            bound = _int4_grid_error(original)
        assert bool((error <= bound).all()), (error - bound).max()
        with torch.no_grad():
            target.copy_(matrix)  # in place: an expert's matrix is a view of the stacked experts

    def maps(block):
        yield from (getattr(block.self_attn, n) for n in ("q_proj", "k_proj", "v_proj", "o_proj"))
        if hasattr(block, "mlp"):
            yield from (getattr(block.mlp, n) for n in ("gate_proj", "up_proj", "down_proj"))

    for d, q, r in zip(dense.model.layers, quantized.model.layers, reference.model.layers, strict=True):
        for dm, qm, rm in zip(maps(d), maps(q), maps(r), strict=True):
            check(qm.kernel, dm.kernel.weight, rm.kernel.weight)
        if arch == "mixtral":
            qe, de, re_ = (m.block_sparse_moe.experts for m in (q, d, r))
            assert q.block_sparse_moe.gate.kernel.family == "dense"  # the router stays dense
            for e in range(len(qe.down)):
                for name in ("gate", "up", "down"):
                    check(getattr(qe, name)[e], getattr(de, name)[e].weight, getattr(re_, name)[e].weight)
    check(quantized.lm_head.kernel, dense.lm_head.kernel.weight, reference.lm_head.kernel.weight)
    assert quantized.lm_head.kernel.family == "int8"

    tokens = torch.randint(0, 128, (20,), generator=torch.Generator().manual_seed(1))
    a, b = quantized.logits(tokens), reference.logits(tokens)
    assert ((a - b).abs().max() / b.abs().max()).item() < 2e-2


def test_quantize_names_the_bad_value():
    with pytest.raises(ValueError, match="quantize='int3' must be one of int8, int4"):
        autan.load_model("anything", quantize="int3")


@pytest.mark.parametrize("rows, cols", [(64, 64), (960, 576), (192, 576), (576, 1536)])
def test_full_width_products_unpack_the_int4_layout_exactly(rows, cols):
    """From FULL_WIDTH_FROM rows a product unpacks the kernel's own int4 layout to float32: the
    unpacked matrix is the one the kernel multiplies by, and the product is the float product."""
    from autan.kernels import FULL_WIDTH_FROM

    kernel = TorchInt4(torch.randn(rows, cols) * 0.02)
    matrix = kernel.unpacked(torch.float32).t()
    torch.testing.assert_close(matrix.to(torch.bfloat16).float(), dequantized(kernel), rtol=0, atol=0)
    x = torch.randn(FULL_WIDTH_FROM + 3, cols)
    torch.testing.assert_close(kernel(x), x @ matrix.t(), rtol=1e-5, atol=1e-5)
    one_row = torch.cat([kernel(x[i : i + 1]) for i in range(len(x))])  # the bf16 int4 kernel
    assert ((one_row - kernel(x)).abs().max() / kernel(x).abs().max()).item() < 3e-2


def test_a_long_prompt_on_packed_kernels_stays_close_to_the_exact_path():
    """The default model on a 200-token prompt, which takes the full-width products."""
    path = registry.pull("smollm2", quiet=True)
    packed, exact = autan.load_model(path), autan.load_model(path, kernels="exact")
    prompt = torch.randint(0, 49152, (200,), generator=torch.Generator().manual_seed(3))
    p, q = torch.log_softmax(exact.logits(prompt), -1), torch.log_softmax(packed.logits(prompt), -1)
    kl = (p.exp() * (p - q)).sum(-1)
    assert kl.max().item() < 0.05, kl.max()


def _integer_units() -> bool:
    from autan.kernels.torch_int8 import integer_units_exact

    return integer_units_exact()


needs_integer_units = pytest.mark.skipif(
    not _integer_units(), reason="this CPU has no exact int8 products (no VNNI): the integer path is never taken"
)


@needs_integer_units
@settings(max_examples=60, deadline=None)
@given(
    rows=st.integers(1, 40),
    cols=st.sampled_from([8, 64, 576, 1536]),
    out=st.integers(1, 300),
    magnitude=st.sampled_from([1e-30, 1e-6, 1.0, 1e4, 1e30]),
    seed=st.integers(0, 2**16),
)
def test_int8_products_on_integer_units_stay_within_their_activation_bound(rows, cols, out, magnitude, seed):
    """Each activation row goes in as s * (q1 + q2 / 254): off by at most s / 508 per value
    (s = the row's largest magnitude / 127), checked value by value through an identity matrix; so
    each output is off by at most that times the row's sum of |w|, plus float32 rounding."""
    from autan.kernels.torch_int8 import int8_product

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, cols, generator=g) * magnitude
    x[0, 0] = 0.0 if rows > 1 else x[0, 0]  # zeros, and rows of very different sizes
    s = x.abs().amax(1, keepdim=True).double() / 127
    rebuilt = int8_product(x, torch.eye(cols, dtype=torch.int8), torch.ones(cols, dtype=torch.bfloat16))
    float32_rounding = 1e-6 * x.abs().double()  # a few ulps of each value, from the float ops
    assert bool(((rebuilt.double() - x.double()).abs() <= s / 508 + float32_rounding).all())
    weight = torch.randint(-127, 128, (out, cols), dtype=torch.int8, generator=g)
    scales = torch.rand(out, generator=g).to(torch.bfloat16)
    w = weight.double() * scales.double()[:, None]
    reference = x.double() @ w.t()
    bound = s / 508 * w.abs().sum(1) + 1e-5 * (x.double().abs() @ w.abs().t())
    error = (int8_product(x, weight, scales).double() - reference).abs()
    assert bool((error <= bound).all()), (error - bound).max()


def test_int8_kernels_give_one_row_and_many_rows_the_same_products():
    """One row takes the bfloat16 kernel, several the integer one (where the CPU has exact
    integer units): within 1e-4 of the float product, and within bfloat16 rounding of it."""
    kernel = TorchInt8(torch.randn(200, 576))
    x = torch.randn(7, 576)
    many = kernel(x)
    one = torch.cat([kernel(x[i : i + 1]) for i in range(len(x))])
    exact = x @ dequantized(kernel).t()
    assert ((many - exact).abs().max() / exact.abs().max()).item() < (1e-4 if _integer_units() else 2e-2)
    assert ((one - exact).abs().max() / exact.abs().max()).item() < 2e-2


@needs_integer_units
def test_the_output_head_gives_float32_logits_for_one_row():
    """The head's one-row product skips the bfloat16 kernel, which would round every logit to
    bfloat16 (0.06 apart near 10) and let rounding decide near-ties."""
    path = registry.pull("smollm2", quiet=True)
    head = autan.load_model(path).lm_head.kernel
    assert head.logits
    x = torch.randn(1, 576, generator=torch.Generator().manual_seed(2))
    exact = x.double() @ dequantized(head).double().t()
    error = (head(x).double() - exact).abs().max() / exact.abs().max()
    assert head(x).dtype == torch.float32 and error.item() < 1e-4
    assert not autan.load_model(path).model.layers[0].self_attn.o_proj.kernel.logits


@pytest.mark.parametrize("side", ["below", "above"])
def test_int8_sums_either_side_of_the_int32_limit_stay_exact(side):
    """127 * 127 in every term: up to INT8_MAX_K terms fit an int32 (the integer path); more
    would wrap, and take the bfloat16 kernel instead. (K in whole groups of 64, as real
    matrices have: PyTorch's bfloat16 int8 kernel crashes on some odd K.)"""
    from autan.kernels.torch_int8 import INT8_MAX_K

    k = INT8_MAX_K // 64 * 64 + (64 if side == "above" else 0)
    kernel = TorchInt8(torch.full((2, k), 127.0))  # every weight 127, its row's scale 1
    x = torch.full((3, k), 127.0)
    x[1] = -127.0
    expected = torch.tensor([1.0, -1.0, 1.0])[:, None] * (k * 127.0 * 127.0)
    exact_path = side == "below" and _integer_units()  # else the bfloat16 kernel, which rounds its output
    torch.testing.assert_close(kernel(x), expected.expand(3, 2), rtol=1e-5 if exact_path else 4e-3, atol=0)


def test_int8_products_stay_right_with_onednn_held_to_avx2():
    """oneDNN held to AVX2 (no VNNI) sums byte products in saturating 16-bit pairs on some CPUs
    (errors of ~1e5 on random rows, seen on AVX-512 machines) and exactly on others (seen on an
    AVX2-only machine): whichever it does, the check sends products to a path that is right."""
    script = (
        "import torch\n"
        "from autan.kernels import TorchInt8\n"
        "from autan.kernels.torch_int8 import integer_units_exact\n"
        "kernel = TorchInt8(torch.randn(64, 576))\n"
        "x = torch.randn(9, 576) * 5\n"
        "exact = x @ (kernel.weight.float() * kernel.scales.float()[:, None]).t()  # the matrix it holds\n"
        "error = ((kernel(x) - exact).abs().max() / exact.abs().max()).item()\n"
        "print(integer_units_exact(), error)\n"
    )
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"}
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    integer_path, error = run.stdout.split()
    assert float(error) < 2e-2, f"integer path taken: {integer_path}, relative error {error}"


def test_int4_kernels_need_rows_in_sixteens():
    """PyTorch's int4 layout packs 16 output rows at a time: 8 rows get int8 instead."""
    assert choose(random_weight(Q.Q4_0, 8, 64, 0)).family == "int8"
    assert choose(random_weight(Q.Q4_0, 16, 64, 0)).family == "int4"
