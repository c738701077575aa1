"""Requests coming and going at random: nothing leaks, prefixes are shared, errors name their limits."""

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from autan.engine.engine import Engine, EngineConfig
from autan.engine.output import Completion, Delta
from autan.engine.sampling import SamplingParams
from autan.errors import ContextLengthError
from conftest import CharTokenizer, random_prompts

request_strategy = st.fixed_dictionaries(
    {
        "length": st.integers(1, 60),
        "shared_prefix": st.integers(0, 40),  # tokens taken from a common system prompt
        "max_tokens": st.integers(1, 30),
        "stop": st.lists(st.text("abcdef", min_size=1, max_size=3), max_size=2),
        "eos": st.booleans(),
        "abort_after": st.one_of(st.none(), st.integers(0, 25)),  # engine steps after arrival
        "arrive_at": st.integers(0, 30),
        "temperature": st.sampled_from([0.0, 0.8]),
    }
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    requests=st.lists(request_strategy, min_size=20, max_size=60),
    arch=st.sampled_from(["llama", "mistral"]),
    block_size=st.sampled_from([1, 4, 16]),
    budget_tokens=st.sampled_from([40, 90, 400]),
    max_batched_tokens=st.integers(1, 48),
    max_running=st.integers(1, 12),
)
def test_random_traffic_leaks_nothing(
    models, requests, arch, block_size, budget_tokens, max_batched_tokens, max_running
):
    model = models[arch]
    c = model.config
    kv_bytes = max(budget_tokens, 2 * block_size) * 2 * c.n_layers * c.n_kv_heads * c.head_dim * 4
    engine = Engine(
        model,
        CharTokenizer(eos_ids={5}),
        EngineConfig(
            block_size=block_size,
            max_batched_tokens=max_batched_tokens,
            max_running=max_running,
            kv_cache_bytes=kv_bytes,
        ),
    )
    system = random_prompts(7, [40])[0]
    started, streams, rejected = {}, {}, 0
    for step in range(100_000):
        for i, r in enumerate(requests):
            if r["arrive_at"] == step:
                prompt = (system[: r["shared_prefix"]] + random_prompts(i, [r["length"]])[0])[: engine.max_seq_len + 5]
                params = SamplingParams(
                    temperature=r["temperature"], max_tokens=r["max_tokens"], stop=tuple(r["stop"]), seed=i
                )
                try:
                    streams[i] = engine.add_request(prompt, params, request_id=f"r{i}")
                except ContextLengthError:
                    assert len(prompt) >= engine.max_seq_len
                    rejected += 1
                    continue
                started[i] = step
            if i in started and r["abort_after"] is not None and step - started[i] == r["abort_after"]:
                engine.abort(f"r{i}")
        if not engine.step() and step > 31 and not engine.has_work:
            break
    event(f"preempted: {engine.scheduler.preemptions > 0}")
    event(f"aborted: {any(s.events[-1].finish_reason == 'abort' for s in streams.values())}")
    event(f"prefix hits: {engine.scheduler.prompt_tokens_hit > 0}")
    assert engine.pool.n_used == 0
    assert engine.pool.n_free == engine.pool.n_blocks
    assert all(count == 0 for count in engine.pool.ref_counts)
    assert not engine.scheduler.running and not engine.scheduler.waiting
    for i, stream in streams.items():
        events = list(stream.events)
        done = events[-1]
        assert isinstance(done, Completion), events[-3:]
        assert all(isinstance(e, Delta) for e in events[:-1])
        assert done.text == "".join(e.text for e in events[:-1])
        assert done.token_ids == [t for e in events[:-1] for t in e.token_ids]
        r = requests[i]
        assert done.usage.completion_tokens == len(done.token_ids) <= r["max_tokens"]
        assert done.finish_reason in ("stop", "length", "model_length", "abort")
        if done.finish_reason != "abort":
            assert not any(s in done.text for s in r["stop"])
        if done.finish_reason == "length":
            assert len(done.token_ids) == r["max_tokens"]
    assert len(streams) + rejected == len(requests)


def test_prefix_reuse_computes_only_the_new_tokens(models):
    model = models["llama"]
    system = random_prompts(11, [64])[0]
    first, second = system + random_prompts(12, [9])[0], system + random_prompts(13, [5])[0]
    params = SamplingParams(temperature=0, max_tokens=6)

    engine = Engine(model, CharTokenizer(), EngineConfig(block_size=16))
    a = engine.add_request(first, params)
    engine.run_until_idle()
    before = engine.stats().computed_tokens
    b = engine.add_request(second, params)
    engine.run_until_idle()
    done = b.events[-1]
    assert done.usage.cached_tokens == 64  # four full blocks of the shared prefix
    # 5 new prompt tokens in one step, then 5 decode steps of one token (the 6th is never fed)
    assert engine.stats().computed_tokens - before == 5 + 5
    assert engine.stats().prefix_cache_hit_rate == pytest.approx(64 / (len(first) + len(second)))

    fresh = Engine(model, CharTokenizer(), EngineConfig(block_size=16, prefix_caching=False))
    c = fresh.add_request(second, params)
    fresh.run_until_idle()
    assert c.events[-1].token_ids == done.token_ids and c.events[-1].usage.cached_tokens == 0
    assert a.events[-1].usage.cached_tokens == 0


def test_a_conversation_reuses_its_earlier_turns(models):
    """The next turn's prompt starts with the last prompt and answer: only the new part is computed."""
    model = models["mistral"]
    engine = Engine(model, CharTokenizer(), EngineConfig(block_size=4))
    turn = [{"role": "user", "content": "hello there, how are you"}]
    first = engine.add_request(turn, SamplingParams(temperature=0, max_tokens=12))
    engine.run_until_idle()
    turn += [{"role": "assistant", "content": first.events[-1].text}, {"role": "user", "content": "fine"}]
    second = engine.add_request(turn, SamplingParams(temperature=0, max_tokens=4))
    engine.run_until_idle()
    # Every full block of the first exchange is reused (its last token was sampled, never fed).
    before = first.events[-1].usage
    assert second.events[-1].usage.cached_tokens == (before.prompt_tokens + before.completion_tokens - 1) // 4 * 4


def test_abort_frees_everything_at_once(models):
    model = models["llama"]
    engine = Engine(model, CharTokenizer(), EngineConfig(block_size=4))
    long = engine.add_request(random_prompts(20, [30])[0], SamplingParams(temperature=0, max_tokens=100))
    other = engine.add_request(random_prompts(21, [10])[0], SamplingParams(temperature=0, max_tokens=100))
    for _ in range(5):
        engine.step()
    assert engine.pool.n_used > 0
    engine.abort(long.id)
    engine.abort(other.id)
    engine.abort("no-such-request")  # ignored
    engine.step()
    assert engine.pool.n_used == 0 and not engine.has_work
    for stream in (long, other):
        assert stream.events[-1].finish_reason == "abort"


def test_bad_requests_name_the_value_and_the_limit(models):
    model = models["llama"]
    engine = Engine(model, CharTokenizer(), EngineConfig(block_size=4))
    with pytest.raises(ContextLengthError, match=r"prompt has 600 tokens, but the model's context is 512 tokens"):
        engine.add_request([1] * 600)
    small = Engine(model, CharTokenizer(), EngineConfig(block_size=4, kv_cache_bytes=100 * 2 * 2 * 2 * 16 * 4))
    with pytest.raises(ContextLengthError, match=r"prompt has 150 tokens, but what the KV cache holds is 100 tokens"):
        small.add_request([1] * 150)
    with pytest.raises(ValueError, match=r"token id 128 is outside the vocabulary 0..127"):
        engine.add_request([1, 128])
    with pytest.raises(ValueError, match="prompt is empty"):
        engine.add_request([])
    with pytest.raises(ValueError, match=r"max_running=0 must be at least 1"):
        EngineConfig(max_running=0)


def test_model_length_is_the_finish_reason_at_the_context(models):
    model = models["llama"]
    engine = Engine(model, CharTokenizer(), EngineConfig(block_size=16))
    stream = engine.add_request([3] * 500, SamplingParams(temperature=0))
    engine.run_until_idle()
    done = stream.events[-1]
    assert done.finish_reason == "model_length" and done.usage.total_tokens == 512


def test_a_failing_consumer_ends_only_its_own_request(models):
    """One request's callback raising mid-step must not shift anyone else's tokens."""
    model = models["llama"]
    prompts = random_prompts(40, (6, 9, 12))
    params = SamplingParams(temperature=0, max_tokens=3)
    alone = Engine(model, CharTokenizer(), EngineConfig(block_size=4))
    expected = [alone.add_request(p, params) for p in prompts]
    alone.run_until_idle()

    def broken(event):
        raise RuntimeError("the client went away")

    engine = Engine(model, CharTokenizer(), EngineConfig(block_size=4))
    engine.add_request(prompts[0], params, emit=broken)
    streams = [engine.add_request(p, params) for p in prompts[1:]]
    engine.run_until_idle()
    assert [s.events[-1].token_ids for s in streams] == [e.events[-1].token_ids for e in expected[1:]]
    assert engine.pool.n_used == 0


def test_request_ids_are_unique_while_running_and_reusable_after(models):
    engine = Engine(models["llama"], CharTokenizer(), EngineConfig(block_size=4))
    first = engine.add_request([1, 2, 3], SamplingParams(max_tokens=2), request_id="mine")
    with pytest.raises(ValueError, match="request id 'mine' is already in use"):
        engine.add_request([1, 2, 3], request_id="mine")
    assert len(list(first)) == 2
    again = engine.add_request([1, 2, 3], SamplingParams(max_tokens=2), request_id="mine")
    assert len(list(again)) == 2


def test_a_stream_aborted_before_it_is_read_ends_cleanly(models):
    engine = Engine(models["llama"], CharTokenizer(), EngineConfig(block_size=4))
    stream = engine.add_request([1, 2, 3], SamplingParams(max_tokens=50))
    stream.abort()
    assert list(stream) == [] and stream.completion.finish_reason == "abort"


def test_min_tokens_holds_off_the_end_of_sequence(models):
    eos = set(range(0, 128, 2))  # half the vocabulary ends the sequence
    engine = Engine(models["llama"], CharTokenizer(eos_ids=eos), EngineConfig(block_size=4))
    streams = [
        engine.add_request(p, SamplingParams(temperature=1.0, seed=i, min_tokens=8, max_tokens=40))
        for i, p in enumerate(random_prompts(50, [5] * 8))
    ]
    engine.run_until_idle()
    for stream in streams:
        ids = stream.events[-1].token_ids
        assert len(ids) >= 8 and not eos & set(ids[:7])
        assert stream.events[-1].finish_reason == "stop" or len(ids) == 40
