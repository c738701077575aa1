"""Adapters in the engine: requests for two adapters and the base model share one batch and
each gets the tokens it gets alone; the prefix cache keeps each adapter's blocks apart."""

import pytest
import torch

import autan
from autan.engine.engine import Engine, EngineConfig
from autan.engine.sampling import SamplingParams
from autan.model import lora
from checkpoints import hf_model
from conftest import CharTokenizer, random_prompts


def random_adapter(model, seed, targets, r=4):
    config = lora.AdapterConfig(r=r, lora_alpha=2 * r, target_modules=targets)
    fresh = lora.new_adapter(model, config, seed)
    g = torch.Generator().manual_seed(seed)
    maps = {m: (a, torch.randn(b.shape, generator=g) * 0.3, s) for m, (a, b, s) in fresh.maps.items()}
    return lora.Adapter(f"a{seed}", config, maps)


@pytest.fixture(scope="module", params=["llama", "mistral", "mixtral"])
def adapted(request, tmp_path_factory):
    """An engine (fresh model: the adapters stay out of other tests' models) with adapters a1, a2."""
    path = tmp_path_factory.mktemp(request.param)
    extra = {"sliding_window": 8} if request.param == "mistral" else {}
    hf_model(request.param, seed=1, **extra).save_pretrained(path)
    model = autan.load_model(path)
    adapters = [random_adapter(model, 1, lora.TARGETS), random_adapter(model, 2, ("q_proj", "v_proj"), r=2)]
    return model, adapters


def engine_with(model, adapters, **options):
    engine = Engine(model, CharTokenizer(), EngineConfig(max_batched_tokens=64, **options))
    for a in adapters:
        engine.add_adapter(a.name, a)
    return engine


def run(engine, jobs):
    streams = [engine.add_request(p, SamplingParams(temperature=0, max_tokens=12), adapter=a) for p, a in jobs]
    while engine.has_work:
        engine.step()
    return [tuple(list(s.events)[-1].token_ids) for s in streams]


def test_two_adapters_and_the_base_in_one_batch_match_each_alone(adapted):
    model, adapters = adapted
    prompts = random_prompts(7, [5, 17, 9, 30, 3, 12])
    which = [None, "a1", "a2", "a1", None, "a2"]
    together = run(engine_with(model, adapters), list(zip(prompts, which, strict=True)))
    alone = [run(engine_with(model, adapters), [(p, a)])[0] for p, a in zip(prompts, which, strict=True)]
    assert together == alone
    # the adapters change what is generated (else this test could not fail)
    base = [run(engine_with(model, adapters), [(p, None)])[0] for p in prompts]
    assert sum(t != b for t, b, a in zip(together, base, which, strict=True) if a) >= 3


def test_the_prefix_cache_keys_blocks_by_adapter(adapted):
    model, adapters = adapted
    engine = engine_with(model, adapters, block_size=4)
    prompt = random_prompts(3, [21])[0]
    cached = []
    for adapter in (None, "a1", "a1", "a2", None):
        stream = engine.add_request(prompt, SamplingParams(temperature=0, max_tokens=2), adapter=adapter)
        while engine.has_work:
            engine.step()
        cached.append(list(stream.events)[-1].usage.cached_tokens)
    assert cached == [0, 0, 20, 0, 20]  # reused only by a request for the same adapter


def test_an_unknown_adapter_is_refused_with_the_loaded_ones(adapted):
    model, adapters = adapted
    engine = engine_with(model, adapters)
    with pytest.raises(ValueError, match=r"adapter 'a3' is not loaded \(loaded: a1, a2\)"):
        engine.add_request([1, 2, 3], SamplingParams(max_tokens=1), adapter="a3")
