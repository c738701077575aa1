"""Scoring a prompt (`prompt_logprobs`, with `max_tokens=0`: what evaluation asks of the engine):
each token's log-probability given those before it, against the model's own uncached forward
pass, alone, batched, chunked, from the prefix cache and after preemption."""

import pytest
import torch

from autan.engine.engine import Engine, EngineConfig
from autan.engine.sampling import SamplingParams
from conftest import CharTokenizer, random_prompts


def reference(model, prompt):
    """[len(prompt)] the log-probability of each token given the ones before (the first: nan)."""
    logprobs = torch.log_softmax(model.logits(prompt).float(), -1)
    chosen = logprobs[:-1].gather(1, torch.tensor(prompt[1:])[:, None])[:, 0]
    return torch.cat([torch.tensor([float("nan")]), chosen]), logprobs


def check(model, prompt, done, start, top=0):
    assert done.finish_reason == "length" and done.token_ids == []
    assert done.prompt_logprobs[:start] == [None] * start
    expected, logprobs = reference(model, prompt)
    got = torch.tensor([lp.logprob for lp in done.prompt_logprobs[start:]])
    torch.testing.assert_close(got, expected[start:], atol=2e-5, rtol=0)
    assert [lp.token_id for lp in done.prompt_logprobs[start:]] == prompt[start:]
    if top:
        values = torch.tensor([[p for _, p in lp.top] for lp in done.prompt_logprobs[start:]])
        torch.testing.assert_close(values, logprobs[start - 1 : -1].topk(top).values, atol=2e-5, rtol=0)


@pytest.mark.parametrize("arch", ["llama", "mistral", "mixtral"])
@pytest.mark.parametrize(
    "config", [dict(block_size=4, max_batched_tokens=16), dict(block_size=16, max_batched_tokens=7)]
)
def test_prompt_scores_equal_the_full_forward_pass(models, arch, config):
    model = models[arch]
    prompts = random_prompts(10, (2, 41, 17, 29, 60))
    starts = [1, 1, 9, 28, 3]
    engine = Engine(model, CharTokenizer(), EngineConfig(**config))
    streams = [
        engine.add_request(p, SamplingParams(max_tokens=0, prompt_logprobs=s, logprobs=3))
        for p, s in zip(prompts, starts, strict=True)
    ]
    engine.run_until_idle()
    for prompt, start, stream in zip(prompts, starts, streams, strict=True):
        check(model, prompt, stream.events[-1], start, top=3)
    assert engine.pool.n_used == 0


def test_choices_share_their_context_from_the_prefix_cache(models):
    model = models["llama"]
    context = random_prompts(11, [37])[0]
    choices = random_prompts(12, (5, 9, 1, 14))
    engine = Engine(model, CharTokenizer(), EngineConfig(block_size=4, max_batched_tokens=16))
    first = engine.add_request(context + choices[0], SamplingParams(max_tokens=0, prompt_logprobs=len(context)))
    engine.run_until_idle()
    rest = [
        engine.add_request(context + c, SamplingParams(max_tokens=0, prompt_logprobs=len(context))) for c in choices[1:]
    ]
    engine.run_until_idle()
    for choice, stream in zip(choices, [first, *rest], strict=True):
        check(model, context + choice, stream.events[-1], len(context))
    cached = [s.events[-1].usage.cached_tokens for s in rest]
    # whole blocks of the context, and never the position whose logits score the first choice token
    assert cached == [(len(context) - 1) // 4 * 4] * 3
    # a request scored from an earlier position reuses less of the same cached prefix
    early = engine.add_request(context + choices[1], SamplingParams(max_tokens=0, prompt_logprobs=10))
    engine.run_until_idle()
    assert early.events[-1].usage.cached_tokens == 8
    check(model, context + choices[1], early.events[-1], 10)


def test_preempted_requests_score_the_same(models):
    model = models["llama"]  # no window: blocks are only freed by preemption
    prompts = random_prompts(13, (30, 25, 28, 22))
    params = SamplingParams(temperature=0, max_tokens=12, prompt_logprobs=1)
    c = model.config
    tight = 70 * 2 * c.n_layers * c.n_kv_heads * c.head_dim * 4
    engine = Engine(model, CharTokenizer(), EngineConfig(block_size=4, kv_cache_bytes=tight))
    streams = [engine.add_request(p, params) for p in prompts]
    engine.run_until_idle()
    assert engine.scheduler.preemptions > 0
    for prompt, stream in zip(prompts, streams, strict=True):
        done = stream.events[-1]
        expected, _ = reference(model, prompt)
        got = torch.tensor([lp.logprob for lp in done.prompt_logprobs[1:]])
        torch.testing.assert_close(got, expected[1:], atol=2e-5, rtol=0)
        assert len(done.token_ids) == 12


def test_bad_scoring_parameters_are_refused():
    with pytest.raises(ValueError, match="prompt_logprobs=0 must be at least 1"):
        SamplingParams(prompt_logprobs=0)
    with pytest.raises(ValueError, match="max_tokens=-1 must be at least 0"):
        SamplingParams(max_tokens=-1)
