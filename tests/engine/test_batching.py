"""A request computes the same alone as batched with others: logits against the model's own
uncached forward pass, for every architecture, chunk sizes and sliding windows past the window."""

import pytest
import torch

from autan.engine.engine import Engine, EngineConfig
from autan.engine.sampling import SamplingParams
from conftest import CharTokenizer, random_prompts

LENGTHS = (3, 41, 17, 1, 29)  # several longer than mistral's window of 8 and than one chunk


def run(model, prompts, params, **config):
    engine = Engine(model, CharTokenizer(), EngineConfig(**config))
    streams = [engine.add_request(p, params) for p in prompts]
    engine.run_until_idle()
    return [s.events[-1] for s in streams], engine


@pytest.mark.parametrize("arch", ["llama", "mistral", "mixtral"])
@pytest.mark.parametrize(
    "config", [dict(block_size=4, max_batched_tokens=16), dict(block_size=16, max_batched_tokens=7)]
)
def test_batched_logits_equal_the_full_forward_pass(models, arch, config):
    model = models[arch]
    prompts = random_prompts(0, LENGTHS)
    params = SamplingParams(temperature=0, max_tokens=20, logprobs=5)
    completions, engine = run(model, prompts, params, **config)
    for prompt, done in zip(prompts, completions, strict=True):
        assert done.finish_reason == "length" and len(done.token_ids) == 20
        reference = torch.log_softmax(model.logits(prompt + done.token_ids[:-1]).float(), -1)[len(prompt) - 1 :]
        assert done.token_ids == reference.argmax(-1).tolist()  # greedy: the reference's choice at every step
        chosen = torch.tensor([lp.logprob for lp in done.logprobs])
        torch.testing.assert_close(chosen, reference.max(-1).values, atol=2e-5, rtol=0)
        top = torch.tensor([[p for _, p in lp.top] for lp in done.logprobs])
        torch.testing.assert_close(top, reference.topk(5).values, atol=2e-5, rtol=0)
    assert engine.pool.n_used == 0


@pytest.mark.parametrize("arch", ["llama", "mistral"])
def test_alone_or_batched_the_tokens_are_the_same_and_seeds_hold(models, arch):
    model = models[arch]
    prompts = random_prompts(1, LENGTHS)
    params = [SamplingParams(temperature=1.0, top_p=0.9, seed=i, max_tokens=15) for i in range(len(prompts))]
    alone = []
    for prompt, p in zip(prompts, params, strict=True):
        engine = Engine(model, CharTokenizer(), EngineConfig(block_size=4))
        stream = engine.add_request(prompt, p)
        engine.run_until_idle()
        alone.append(stream.events[-1].token_ids)
    engine = Engine(model, CharTokenizer(), EngineConfig(block_size=4, max_batched_tokens=9))
    streams = [engine.add_request(prompt, p) for prompt, p in zip(prompts, params, strict=True)]
    engine.run_until_idle()
    assert [s.events[-1].token_ids for s in streams] == alone


def test_sliding_window_releases_blocks_while_running(models):
    model = models["mistral"]  # window 8
    engine = Engine(model, CharTokenizer(), EngineConfig(block_size=4, max_batched_tokens=8))
    stream = engine.add_request(random_prompts(2, [50])[0], SamplingParams(temperature=0, max_tokens=150, logprobs=0))
    used = []
    while engine.has_work:
        engine.step()
        used.append(engine.pool.n_used)
    done = stream.events[-1]
    # the window (8) plus a chunk (8) spans at most 5 blocks of 4; memory stays flat for 200 tokens
    assert max(used) <= 5
    reference = torch.log_softmax(model.logits(random_prompts(2, [50])[0] + done.token_ids[:-1]).float(), -1)
    assert done.token_ids == reference[49:].argmax(-1).tolist()


def test_preemption_recomputes_and_changes_nothing(models):
    model = models["llama"]
    prompts = random_prompts(3, (30, 25, 28, 22))
    params = SamplingParams(temperature=0, max_tokens=40)
    roomy, _ = run(model, prompts, params, block_size=4)
    tight, engine = run(model, prompts, params, block_size=4, kv_cache_bytes=_bytes(model, tokens=80))
    assert engine.scheduler.preemptions > 0
    assert [c.token_ids for c in tight] == [c.token_ids for c in roomy]
    assert engine.pool.n_used == 0


def _bytes(model, tokens: int) -> int:
    c = model.config
    return tokens * 2 * c.n_layers * c.n_kv_heads * c.head_dim * 4


@pytest.mark.default_model
def test_a_prompt_longer_than_one_step_on_the_quantized_default_model():
    """Prefill chunks before the last need no logits: the output head gets no rows, which the
    native kernel once divided among its threads (a floating point exception that killed the
    server on any prompt over 256 tokens)."""
    import autan
    from autan import registry
    from autan.tokenizer import load_tokenizer

    path = registry.pull("smollm2", quiet=True)
    model = autan.load_model(path)  # packed: the native kernels where they are built
    prompt = torch.randint(100, 40_000, (300,), generator=torch.Generator().manual_seed(0)).tolist()
    engine = Engine(model, load_tokenizer(path), EngineConfig(max_batched_tokens=64))
    stream = engine.add_request(prompt, SamplingParams(temperature=0, max_tokens=4, ignore_eos=True))
    engine.run_until_idle()
    done = stream.events[-1]
    reference = model.logits(prompt + done.token_ids[:-1])[len(prompt) - 1 :]
    assert done.token_ids == reference.argmax(-1).tolist()
