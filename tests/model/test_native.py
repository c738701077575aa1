"""The compiled kernels (`csrc/`) against float64 references, on every instruction set this
machine runs, and the model on them against the exact path.

A product's reference is float64 arithmetic on the same numbers the kernel meets: the file's
blocks dequantized, and the activations quantized per block of 32 to int8 as the kernel does
(that rounding is the kernels' design, measured against the exact path at the model level
below). What is left between kernel and reference is float32 accumulation.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType as Q
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import autan
from autan import native
from autan.kernels.blocks import QK_K, _f16, _k_scales, dequantize
from autan.kernels.native import TYPES as NATIVE_TYPES
from autan.kernels.native import NativeGgml
from checkpoints import hf_model, random_blocks, save_gguf, save_hf
from references import BLOCK_PARTS, dequantized, repack, unrepack

N = native.module()
# Only a run that turned them off goes without them; a missing build fails (scripts/setup.sh builds it).
pytestmark = pytest.mark.skipif(os.environ.get("AUTAN_NATIVE") == "0", reason="AUTAN_NATIVE=0 turns them off")


def _instruction_sets() -> list[str]:
    if N is None:
        return []
    best = N.isa()
    usable = [isa for isa in N.isas() if N.set_isa(isa)]
    N.set_isa(best)
    return usable


TIERS = list(N.isas()) if N is not None else []  # every tier the kernels have, worst to best
ISAS = _instruction_sets()  # those this CPU runs


@pytest.fixture(params=TIERS)
def isa(request):
    """Each instruction-set tier in turn (the choice holds across hypothesis's cases); a tier this
    CPU lacks is skipped as not run (tests/conftest.py's summary names both lists)."""
    if request.param not in ISAS:
        pytest.skip(f"not run: this CPU lacks the {request.param} tier")
    best = N.isa()
    assert N.set_isa(request.param)
    yield request.param
    N.set_isa(best)


def test_this_machine_runs_its_best_kernels():
    """The install built the kernels, and the CPU's features pick them: an AVX2 machine must not
    fall back to scalar code."""
    assert N is not None, native.describe()
    assert "scalar" in ISAS
    if N.features()["avx2"]:
        assert "avx2" in ISAS
    if not os.environ.get("AUTAN_NATIVE_ISA"):
        assert N.isa() == ISAS[-1]
    assert native.describe().startswith(f"native kernels ({N.isa()}")


def quantized_reference(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x (M, K) float32 -> int8 values and per-block scales, as the kernels define them:
    d = max |x| / 127 per block of 32, q = x * (127 / max |x|) rounded to nearest (ties to even),
    each operation rounded to float32 (numpy's IEEE arithmetic: torch's division by a tensor
    is not always correctly rounded, which moves ties)."""
    blocks = x.numpy().reshape(len(x), -1, 32)
    amax = np.abs(blocks).max(-1, keepdims=True)
    with np.errstate(divide="ignore"):
        inverse = np.where(amax > 0, np.float32(127) / amax, np.float32(0)).astype(np.float32)
    q = np.rint(blocks * inverse).astype(np.int8)
    return torch.from_numpy(q.reshape(x.shape)), torch.from_numpy(amax / np.float32(127)).squeeze(-1)


def activation_parts(x: torch.Tensor, parts: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The int8 parts the kernels make of x: one, or a second that quantizes the first's
    rounding error (x - d1 q1, in float32) on the scale d2 = d1 / 256 (csrc/quantize.h):
    q2 = clamp(round((rest * (127 / max|x|)) * 256), -127, 127)."""
    first = quantized_reference(x)
    if parts == 1:
        return [first]
    q, d = first
    blocks = x.numpy().reshape(len(x), -1, 32)
    product = q.numpy().reshape(blocks.shape).astype(np.float32) * d.numpy()[..., None]
    rest = blocks - product  # float32: rounded, then subtracted
    amax = np.abs(blocks).max(-1, keepdims=True)
    with np.errstate(divide="ignore"):
        inverse = np.where(amax > 0, np.float32(127) / amax, np.float32(0)).astype(np.float32)
    q2 = np.clip(np.rint((rest * inverse) * np.float32(256)), -127, 127).astype(np.int8)
    return [first, (torch.from_numpy(q2.reshape(x.shape)), d / 256)]


def dequantized_parts(x: torch.Tensor, parts: int, magnitude: bool = False) -> torch.Tensor:
    total = torch.zeros(x.shape, dtype=torch.float64)
    for q, d in activation_parts(x, parts):
        values = q.double().abs() if magnitude else q.double()
        total += (values.reshape(len(x), -1, 32) * d.double()[..., None]).reshape(x.shape)
    return total


def reference_product(x: torch.Tensor, blocks: torch.Tensor, qtype: Q, parts: int) -> torch.Tensor:
    return dequantized_parts(x, parts) @ dequantize(blocks, qtype).double().t()


@pytest.fixture(params=[2, 1], ids=["two parts", "one part"])
def parts(request):
    """Activations in two int8 parts or one (llama.cpp's), for products of every width."""
    before = N.activation_parts(), N.activation_parts(prompt=True)
    assert N.set_activation_parts(request.param)
    yield request.param
    N.set_activation_parts(*before)


def random_matrix(qtype: Q, rows: int, cols: int, seed: int) -> torch.Tensor:
    return torch.from_numpy(random_blocks(qtype, rows, cols, np.random.default_rng(seed)).copy())


K_QUANTS = (Q.Q4_K, Q.Q5_K, Q.Q6_K)


def columns(qtype: Q, blocks: int) -> int:
    """A row of `blocks` blocks of 32, or of super-blocks of 256 for the K-quants (fewer)."""
    return QK_K * (1 + blocks // 4) if qtype in K_QUANTS else 32 * blocks


def q4_k_rounding(weights: torch.Tensor) -> torch.Tensor:
    """How far each Q4_K value may move when its block's scale d * sc and offset dmin * m are
    rounded to float16 (a relative 2^-11 each, or 2^-25 absolute where float16 is subnormal),
    as repacking into Q4_1 groups does."""
    b = weights.reshape(-1, 144)
    sc, mn = _k_scales(b[:, 4:16])
    scale, offset = _f16(b, 0) * sc, _f16(b, 2) * mn  # (blocks, 8)
    per_block = (15 * (scale * 2**-11 + 2**-25) + offset * 2**-11 + 2**-25).double()
    return per_block.repeat_interleave(32, dim=1).reshape(weights.shape[0], -1)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.integers(1, 80),  # past a kernel's chunk of 64 activation rows, in one part or two
    blocks=st.integers(1, 12),
    groups=st.integers(1, 40),  # past a kernel's tile of 16 groups
    qtype=st.sampled_from(NATIVE_TYPES),
    scale=st.sampled_from([1e-3, 1.0, 300.0]),
    seed=st.integers(0, 2**16),
)
def test_products_equal_a_float64_reference(isa, parts, rows, blocks, groups, qtype, scale, seed):
    """Against the values the kernel holds (for Q4_K, its scales rounded: bounded below)."""
    k, n = columns(qtype, blocks), 4 * groups
    packed, kernel_type = N.repack([random_matrix(qtype, n, k, seed)], int(qtype)), N.kernel_type(int(qtype))
    held = N.dequantize(packed, kernel_type, k, 0, groups).double()
    x = torch.randn(rows, k, generator=torch.Generator().manual_seed(seed)) * scale
    x[:, : min(k, 32)] *= torch.rand(rows, 1, generator=torch.Generator().manual_seed(seed + 1)) < 0.2  # zero blocks
    y = N.qmatmul(x, packed, kernel_type)
    reference = dequantized_parts(x, parts) @ held.t()
    # float32 accumulation: a few ulps of the sum of the terms' magnitudes
    bound = dequantized_parts(x, parts, magnitude=True) @ held.abs().t() * 1e-5
    assert y.dtype == torch.float32 and y.shape == (rows, n)
    assert ((y.double() - reference).abs() <= bound + 1e-30).all(), ((y.double() - reference).abs() / bound).max()


def test_two_parts_are_within_a_32512th_of_each_blocks_largest_value_and_most_within_half_that():
    """|e| <= d2 / 2 = max|x| / (127 * 512), but for the values whose second part is clamped at
    +-127 (|x - d1 q1| within 0.4% of d1 / 2): there |e| <= d2."""
    x = torch.randn(64, 32 * 16, generator=torch.Generator().manual_seed(2)) * torch.logspace(-3, 3, 64)[:, None]
    error = (dequantized_parts(x, 2) - x.double()).abs().reshape(64, -1, 32)
    largest = x.double().abs().reshape(64, -1, 32).amax(-1, keepdim=True)
    assert (error <= largest / (127 * 256) * 1.001).all()
    assert ((error <= largest / (127 * 512) * 1.001).double().mean() > 0.98).item()
    one_part = (dequantized_parts(x, 1) - x.double()).abs().reshape(64, -1, 32)
    assert one_part.max() / largest.max() > 100 * (error.max() / largest.max())  # it is the finer one


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.integers(1, 9),
    blocks=st.integers(1, 8),
    scale=st.sampled_from([1e-20, 1e-3, 1.0, 1e30]),
    seed=st.integers(0, 2**16),
)
def test_activations_are_quantized_as_defined(isa, rows, blocks, scale, seed):
    x = torch.randn(rows, 32 * blocks, generator=torch.Generator().manual_seed(seed)) * scale
    x[0, :32] = 0  # an all-zero block: scale 0, values 0
    q, d, s = N.quantize_activations(x)
    q_ref, d_ref = quantized_reference(x)
    assert torch.equal(q, q_ref) and torch.equal(d, d_ref)
    torch.testing.assert_close(s, (d.double() * q.reshape(rows, -1, 32).double().sum(-1)).float(), rtol=1e-6, atol=0)


@settings(max_examples=30, deadline=None)
@given(
    groups=st.integers(1, 8),
    blocks=st.integers(1, 6),
    qtype=st.sampled_from(list(BLOCK_PARTS)),
    seed=st.integers(0, 999),
)
def test_repacking_is_a_permutation_of_the_file_bytes(groups, blocks, qtype, seed):
    """For the types whose blocks the kernels keep as they are (the K-quants are rewritten)."""
    weights = random_matrix(qtype, 4 * groups, 32 * blocks, seed)
    packed = repack(weights, qtype)
    assert packed.shape[0] == groups and packed.numel() == weights.numel()
    assert torch.equal(unrepack(packed, qtype), weights)
    assert torch.equal(torch.sort(packed.flatten()).values, torch.sort(weights.flatten()).values)
    split = 4 * (groups // 2)  # the native repack, of one matrix or of two stacked (a fused map)
    assert torch.equal(N.repack([weights], int(qtype)), packed)
    assert torch.equal(N.repack([weights[:split], weights[split:]], int(qtype)), packed)


@settings(max_examples=30, deadline=None)
@given(
    groups=st.integers(1, 40), blocks=st.integers(1, 6), qtype=st.sampled_from(NATIVE_TYPES), seed=st.integers(0, 999)
)
def test_unpacking_gives_the_values_the_file_defines(groups, blocks, qtype, seed):
    """Prompts multiply float32 tiles unpacked natively: the file's values, as gguf-py defines them
    (Q4_K's within the rounding of its scales to float16)."""
    k = columns(qtype, blocks)
    weights = random_matrix(qtype, 4 * groups, k, seed)
    packed, exact = N.repack([weights], int(qtype)), dequantize(weights, qtype).float()
    kernel_type = N.kernel_type(int(qtype))
    unpacked = N.dequantize(packed, kernel_type, k, 0, groups)
    if qtype == Q.Q4_K:
        assert ((unpacked.double() - exact.double()).abs() <= q4_k_rounding(weights)).all()
        assert (unpacked != exact).any()  # the rounding is there: the bound is what is tested
    else:
        assert torch.equal(unpacked, exact)
    tail = groups // 2
    assert torch.equal(N.dequantize(packed, kernel_type, k, tail, groups), unpacked[4 * tail :])


def test_bad_inputs_are_refused_with_the_shapes_named():
    weights = repack(random_matrix(Q.Q4_0, 8, 64, 0), Q.Q4_0)
    with pytest.raises(RuntimeError, match="K=48 is not a whole number of blocks"):
        N.qmatmul(torch.randn(2, 48), weights, int(Q.Q4_0))
    with pytest.raises(RuntimeError, match="weight groups have 144 bytes; K=96 needs 216"):
        N.qmatmul(torch.randn(2, 96), weights, int(Q.Q4_0))
    with pytest.raises(RuntimeError, match="quantization type 12 has no native kernel"):
        N.qmatmul(torch.randn(2, 64), weights, int(Q.Q4_K))  # a file type, not a kernel format
    with pytest.raises(RuntimeError, match="quantization type 10 has no native kernel"):
        N.repack([torch.zeros(4, 84, dtype=torch.uint8)], int(Q.Q2_K))  # one Q2_K super-block a row


# ---- the model on the native kernels -------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Llama and Mistral (sliding window 8) checkpoints whose blocks the native kernels take, and
    one in K-quants mixed as llama.cpp's Q4_K_M mixes them (q and k Q4_K beside v Q6_K: no
    fused product of one type), with Q5_K for the rest of the mix."""
    root = tmp_path_factory.mktemp("native")
    paths = {}
    k_mix = {"attn_v": Q.Q6_K, "ffn_down": Q.Q5_K}
    for arch, qtype, shape, mix in (
        ("llama", Q.Q4_0, {}, None),
        ("mistral", Q.Q4_1, {}, None),
        ("llama-q8", Q.Q8_0, {}, None),
        ("llama-k", Q.Q4_K, {"hidden_size": 256, "intermediate_size": 256}, k_mix),
        ("mixtral", Q.Q8_0, {}, None),  # 4 experts, 2 per token
        ("qwen2", Q.Q4_0, {}, None),  # q/k/v biases, tied embeddings
    ):
        hf = hf_model(arch.split("-")[0], seed=len(paths), **({"intermediate_size": 128} | shape))
        hf_dir = save_hf(hf, root / f"{arch}-hf")
        paths[arch] = save_gguf(hf_dir, root / f"{arch}.gguf", qtype=qtype, random_quant=mix is not None, qtypes=mix)
    return paths


def _load_both(path):
    fast, exact = autan.load_model(path), autan.load_model(path, kernels="exact")
    assert fast.native is not None  # every block on the native step
    return fast, exact


# The tiny random models' logits are nearly flat (std ~0.2), so KL is small for any error: the
# native path sits near 3e-6 and a window left unapplied near 5e-3; the bound is between.
KL_BUDGET = 2e-4


def _kl(reference: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    p, q = torch.log_softmax(reference.double(), -1), torch.log_softmax(other.double(), -1)
    return (p.exp() * (p - q)).sum(-1)


@pytest.mark.parametrize("arch", ["llama", "mistral", "llama-q8", "llama-k", "mixtral", "qwen2"])
def test_decoding_token_by_token_on_native_kernels_stays_close_to_the_exact_path(tiny, arch, isa):
    """Past the sliding window (8) too: the rolling cache's slots are reused while rows read them."""
    fast, exact = _load_both(tiny[arch])
    tokens = torch.randint(0, 128, (24,), generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        reference = exact.logits(tokens)
        cache = fast.new_cache()
        stepped = torch.cat([fast(tokens[i : i + 1], cache, last_only=True) for i in range(len(tokens))])
        chunked_cache = fast.new_cache()
        chunked = torch.cat([fast(tokens[i : i + 5], chunked_cache) for i in range(0, len(tokens), 5)])
    for out in (stepped, chunked):
        kl = _kl(reference, out)
        assert kl.max() < KL_BUDGET, kl
        # and logit by logit (flat logits forgive in KL what this does not: Mixtral's weights
        # left unrenormalised after top-k move them by 2%)
        torch.testing.assert_close(out, reference, rtol=0, atol=1e-3 * reference.abs().max().item())
    torch.testing.assert_close(stepped, chunked, rtol=0, atol=1e-3 * reference.abs().max().item())


@pytest.mark.parametrize("arch", ["mistral", "mixtral"])
def test_the_paged_engine_on_native_kernels_matches_one_sequence_at_a_time(tiny, arch):
    """Several sequences in one step, one sharing another's prefix blocks: each row sees only its
    own keys, as the sequence alone on the exact path does."""
    from autan.engine.paged import Chunk, KVPool, PagedStep

    fast, exact = _load_both(tiny[arch])
    c = fast.config
    pool = KVPool(c, 16, 4, torch.device("cpu"), torch.float32)
    generator = torch.Generator().manual_seed(5)
    prompts = [torch.randint(0, 128, (n,), generator=generator).tolist() for n in (11, 6)]
    shared = [*prompts[0][:8], 7, 9, 11]  # the third sequence reuses the first's first two blocks
    tables = [[0, 1, 2, 3, 4], [5, 6, 7], [0, 1, 8, 9, 10]]
    with torch.inference_mode():
        first = PagedStep(
            pool, [Chunk(prompts[0], 0, tables[0]), Chunk(prompts[1], 0, tables[1])], c.sliding_window, pool.keys.device
        )
        fast.run(first.tokens, first, slice(None))
        later = PagedStep(
            pool,
            [Chunk([3], 11, tables[0]), Chunk([4, 5], 6, tables[1]), Chunk(shared[8:], 8, tables[2])],
            c.sliding_window,
            pool.keys.device,
        )
        logits = fast.run(later.tokens, later, slice(None))
        expected = [
            exact.logits(torch.tensor(s))[-k:]
            for s, k in ((prompts[0] + [3], 1), (prompts[1] + [4, 5], 2), (shared, 3))
        ]
    kl = _kl(torch.cat(expected), logits)
    assert kl.max() < KL_BUDGET, kl


def test_greedy_tokens_on_native_kernels_are_the_exact_paths_within_the_budget(tiny, isa):
    """Where the argmax differs, the exact path's own top two were nearly tied."""
    fast, exact = _load_both(tiny["llama"])
    prompt = torch.randint(0, 128, (6,), generator=torch.Generator().manual_seed(9))
    with torch.inference_mode():
        tokens = prompt.tolist()
        cache = fast.new_cache()
        logits = fast(torch.tensor(tokens), cache, last_only=True)
        for _ in range(24):
            tokens.append(int(logits[-1].argmax()))
            logits = fast(torch.tensor(tokens[-1:]), cache, last_only=True)
        reference = exact.logits(torch.tensor(tokens))[len(prompt) - 1 : -1]
    chosen = torch.tensor(tokens[len(prompt) :])
    best = reference.topk(2, -1)
    margin = best.values[:, 0] - best.values[:, 1]
    differs = reference.argmax(-1) != chosen
    assert (margin[differs] < 0.05 * reference.abs().max()).all(), margin[differs]


def test_a_prompt_past_the_native_step_runs_the_integer_products_within_the_budget(tiny, isa, monkeypatch):
    """Past NATIVE_MAX_ROWS a step runs the blocks' modules, whose products stay on the int8
    kernels (a prompt's activations in `activation_parts(prompt=True)` parts) at every width on a
    vector tier, and unpack to float32 for BLAS only on the portable one."""
    from autan.model import transformer

    fast, exact = _load_both(tiny["mistral"])
    monkeypatch.setattr(transformer, "NATIVE_MAX_ROWS", 7)
    kernel = fast.model.layers[0].self_attn.q_proj.kernel
    assert kernel.full_width_from == (64 if isa == "scalar" else None)
    tokens = torch.randint(0, 128, (30,), generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        reference = exact.logits(tokens)
        cache = fast.new_cache()
        prompt = fast(tokens[:20], cache)
        rest = torch.cat([fast(tokens[i : i + 1], cache) for i in range(20, 30)])  # then native steps
    assert _kl(reference[:20], prompt).max() < KL_BUDGET
    assert _kl(reference[20:], rest).max() < KL_BUDGET


def test_prompts_and_decode_steps_quantize_their_activations_in_their_own_parts():
    """Fewer than 8 rows are a decode step: its parts are `activation_parts()`; more rows take
    `activation_parts(prompt=True)` (both two by default: bench/accuracy.py measures one)."""
    before = N.activation_parts(), N.activation_parts(prompt=True)
    x = torch.randn(8, 64, generator=torch.Generator().manual_seed(1))
    blocks = random_matrix(Q.Q8_0, 4, 64, seed=3)
    packed, kernel_type = N.repack([blocks], int(Q.Q8_0)), N.kernel_type(int(Q.Q8_0))
    try:
        for decode, prompt in ((2, 1), (1, 2)):
            assert N.set_activation_parts(decode, prompt)
            for rows, parts in ((7, decode), (8, prompt)):
                y = N.qmatmul(x[:rows], packed, kernel_type).double()
                expected = reference_product(x[:rows], blocks, Q.Q8_0, parts)
                other = reference_product(x[:rows], blocks, Q.Q8_0, 3 - parts)
                assert (y - expected).abs().max() < (y - other).abs().max()
        assert not N.set_activation_parts(3, 1) and N.activation_parts() == 1  # refused: nothing changed
    finally:
        N.set_activation_parts(*before)


@pytest.mark.parametrize("kind, qtype", [("int8", Q.Q8_0), ("int4", Q.Q4_1)])
@pytest.mark.parametrize("arch", ["llama", "mixtral"])
def test_quantize_at_load_writes_llama_cpp_blocks_for_the_native_step(arch, kind, qtype, tmp_path):
    """`quantize=` on a float checkpoint: every map (experts too) becomes the blocks gguf-py's
    quantizer writes for it (the head 8-bit), and the model runs them on the native step as the
    exact path runs the same blocks' values."""
    import gguf

    hf = hf_model(arch, seed=7)
    hf.save_pretrained(tmp_path / "hf")
    quantized = autan.load_model(tmp_path / "hf", dtype=torch.float32, quantize=kind)
    reference = autan.load_model(tmp_path / "hf", dtype=torch.float32)  # given the blocks' values below
    assert quantized.native is not None

    def check(kernel, target, qtype=qtype):
        assert isinstance(kernel, NativeGgml) and kernel.qtype == qtype
        values = target.detach().float().numpy()
        expected = torch.from_numpy(gguf.quants.dequantize(gguf.quants.quantize(values, qtype), qtype))
        assert torch.equal(dequantized(kernel), expected)
        with torch.no_grad():
            target.copy_(expected)  # in place: an expert's matrix is a view of the stacked experts

    for q, r in zip(quantized.model.layers, reference.model.layers, strict=True):
        names = ("q_proj", "k_proj", "v_proj", "o_proj")
        pairs = [(getattr(q.self_attn, n), getattr(r.self_attn, n)) for n in names]
        if arch == "mixtral":
            kernels, experts = q.block_sparse_moe.experts, r.block_sparse_moe.experts
            for e in range(len(kernels.down)):
                for name in ("gate", "up", "down"):
                    check(getattr(kernels, name)[e], getattr(experts, name)[e].weight)
        else:
            pairs += [(getattr(q.mlp, n), getattr(r.mlp, n)) for n in ("gate_proj", "up_proj", "down_proj")]
        for qm, rm in pairs:
            check(qm.kernel, rm.kernel.weight)
    check(quantized.lm_head.kernel, reference.lm_head.kernel.weight, Q.Q8_0)
    tokens = torch.randint(0, 128, (20,), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        cache = quantized.new_cache()
        stepped = torch.cat([quantized(tokens[i : i + 1], cache) for i in range(len(tokens))])
        expected = reference.logits(tokens)
    torch.testing.assert_close(stepped, expected, rtol=0, atol=1e-3 * expected.abs().max().item())


def test_a_router_that_gives_nan_still_picks_its_experts(tiny, tmp_path):
    """NaN logits (a corrupt router, an overflowed activation) must not leave a row without its
    top k: the step carries the NaN through instead of reading outside the experts."""
    hf_dir = tiny["mixtral"].parent / "mixtral-hf"
    fast = autan.load_model(save_gguf(hf_dir, tmp_path / "f32-router.gguf", Q.Q8_0, qtypes={"ffn_gate_inp": Q.F32}))
    router = fast.model.layers[0].block_sparse_moe.gate.kernel
    assert fast.native is not None and router.family == "dense" and router.weight.dtype == torch.float32
    with torch.no_grad():
        router.weight.fill_(float("nan"))  # in place: the native step reads this very tensor
    with torch.inference_mode():
        logits = fast(torch.tensor([1, 2, 3]), fast.new_cache())
    assert logits.shape == (3, 128) and torch.isnan(logits).all()


@pytest.mark.parametrize(
    "asked, parts", [(None, (2, 2)), ("2", (2, 2)), ("1", (1, 1)), ("1,2", (1, 2)), (" 2 , 1 ", (2, 1))]
)
def test_activation_parts_are_asked_for_by_the_environment(monkeypatch, asked, parts):
    if asked is None:
        monkeypatch.delenv("AUTAN_ACTIVATION_PARTS", raising=False)
    else:
        monkeypatch.setenv("AUTAN_ACTIVATION_PARTS", asked)
    assert native.activation_parts_asked() == parts


@pytest.mark.parametrize("asked", ["3", "2,1,1", "two", "", "0,2"])
def test_activation_parts_refuse_anything_else_by_name(monkeypatch, asked):
    monkeypatch.setenv("AUTAN_ACTIVATION_PARTS", asked)
    with pytest.raises(ValueError, match=f"AUTAN_ACTIVATION_PARTS={asked!r}: expected 1 or 2 parts"):
        native.activation_parts_asked()
