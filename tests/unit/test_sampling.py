"""Sampling: seeds reproduce, top-k/top-p never leave their set, penalties and stop strings behave."""

import itertools

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from autan.engine.output import StopMatcher
from autan.engine.sampling import Sampler, SamplingParams, allowed_probabilities


@settings(max_examples=200, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    vocab=st.integers(2, 60),
    top_k=st.integers(0, 70),
    top_p=st.floats(0.01, 1.0),
    temperature=st.floats(0.05, 2.0),
)
@example(seed=2, vocab=3, top_k=0, top_p=0.9999999999999999, temperature=0.125)  # float32 mass 1.0 after one
def test_top_k_and_top_p_never_pick_outside_the_allowed_set(seed, vocab, top_k, top_p, temperature):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(vocab, generator=g) * 4
    params = SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
    # The allowed set, computed independently: rank by probability, cut at k, then at mass p.
    probs = torch.softmax(logits / temperature, -1)
    ranked = sorted(range(vocab), key=lambda i: (-probs[i].item(), i))
    if top_k:
        ranked = ranked[:top_k]

    def nucleus(slack: float) -> list[int]:
        """The most likely tokens until their mass reaches top_p + slack."""
        allowed, mass = [], 0.0
        for i in ranked:
            if top_p < 1 and mass >= top_p + slack and allowed:
                break
            allowed.append(i)
            mass += probs[i].item()
        return allowed

    # the float32 sum may fall short of top_p or pass it by rounding: the set lies between these two
    fewest, most = nucleus(-1e-6), nucleus(1e-6)
    nonzero = set(torch.nonzero(allowed_probabilities(logits, params)).flatten().tolist())
    needed = {i for i in fewest if probs[i] > 0}  # a low temperature can underflow a probability to 0
    assert nonzero <= set(most) and len(needed - nonzero) <= 1  # float ties at the boundary
    sampler = Sampler(params, vocab)
    for _ in range(20):
        assert sampler(logits) in nonzero


def test_same_seed_same_tokens_other_seed_other_tokens():
    logits = torch.randn(50, 1000)

    def run(seed):
        sampler = Sampler(SamplingParams(temperature=1.0, seed=seed), 1000)
        return [sampler(row) for row in logits]

    assert run(42) == run(42)
    assert run(42) != run(43)


def test_greedy_and_penalties():
    logits = torch.tensor([1.0, 3.0, 2.9, 0.0])
    assert Sampler(SamplingParams(temperature=0), 4)(logits) == 1
    penalised = Sampler(SamplingParams(temperature=0, frequency_penalty=0.5), 4)
    assert [penalised(logits) for _ in range(3)] == [1, 2, 1]  # 3.0 - 0.5 < 2.9, then 2.9 - 0.5 < 2.5
    present = Sampler(SamplingParams(temperature=0, presence_penalty=1.5), 4)
    assert [present(logits) for _ in range(3)] == [1, 2, 1]  # 1.5 > 1.4: once each, counts do not matter
    assert [present(logits) for _ in range(2)] == [1, 1]
    assert torch.equal(logits, torch.tensor([1.0, 3.0, 2.9, 0.0]))  # penalties apply to a copy


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("temperature", -0.1, "temperature=-0.1 must be between 0 and 2"),
        ("top_p", 0.0, r"top_p=0.0 must be in \(0, 1\]"),
        ("top_k", -1, "top_k=-1 must be 0"),
        ("max_tokens", -1, "max_tokens=-1 must be at least 0"),  # 0: only the prompt is read (scoring)
        ("presence_penalty", 2.5, "presence_penalty=2.5 must be between -2 and 2"),
        ("stop", ("",), "stop strings must not be empty"),
    ],
)
def test_bad_parameters_name_the_value_and_limit(field, value, message):
    with pytest.raises(ValueError, match=message):
        SamplingParams(**{field: value})


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(alphabet="ab\n#", max_size=40),
    stops=st.lists(st.text(alphabet="ab\n#", min_size=1, max_size=4), min_size=1, max_size=3),
    cuts=st.lists(st.integers(0, 40), max_size=10),
)
def test_stop_strings_are_caught_across_pieces_and_never_emitted(text, stops, cuts):
    bounds = sorted({0, len(text), *(c for c in cuts if c <= len(text))})
    pieces = [text[a:b] for a, b in itertools.pairwise(bounds)]
    matcher = StopMatcher(tuple(stops))
    out, stopped = "", False
    for piece in pieces:
        emitted, stopped = matcher.push(piece)
        out += emitted
        if stopped:
            break
    if not stopped:
        out += matcher.flush()
    # Reference: after each piece, the text so far ends before the earliest stop string it contains.
    expected, seen, reference_stopped = text, "", False
    for piece in pieces:
        seen += piece
        hits = [i for i in (seen.find(s) for s in stops) if i >= 0]
        if hits:
            expected, reference_stopped = seen[: min(hits)], True
            break
    assert stopped == reference_stopped
    assert out == expected


def test_draws_follow_the_allowed_distribution():
    """20,000 draws: each token's frequency within 4 standard errors of its probability."""
    logits = torch.tensor([2.0, 1.0, 0.5, -1.0, -30.0, 0.0])
    params = SamplingParams(temperature=0.8, top_k=4, seed=3)
    probs = allowed_probabilities(logits, params)
    sampler = Sampler(params, 6)
    counts = torch.bincount(torch.tensor([sampler(logits) for _ in range(20_000)]), minlength=6).double()
    frequency = counts / counts.sum()
    standard_error = (probs * (1 - probs) / 20_000).sqrt()
    assert ((frequency - probs).abs() <= 4 * standard_error + 1e-12).all(), (frequency, probs)
    assert counts[3] == counts[4] == 0  # outside the top 4: never drawn
