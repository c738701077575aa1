"""The engine's core is token-only: `add_tokens` takes ids and emits ids, log-probabilities and
the finish reason, never text; the output processor turns them into text, and a stop string it
finds ends the request in the core. Checked against the text path over many random requests."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autan.engine.engine import Engine, EngineConfig
from autan.engine.request import Finished, Tokens
from autan.engine.sampling import SamplingParams
from conftest import CharTokenizer, random_prompts


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 10_000),
    length=st.integers(1, 40),
    max_tokens=st.integers(1, 24),
    stop=st.lists(st.text("abcdefgh", min_size=1, max_size=2), max_size=2),
    logprobs=st.sampled_from([None, 0, 3]),
)
def test_the_core_emits_tokens_and_the_text_path_is_their_decoding(models, seed, length, max_tokens, stop, logprobs):
    tokenizer = CharTokenizer()
    engine = Engine(models["llama"], tokenizer, EngineConfig(kv_cache_bytes=2**22))
    (prompt,) = random_prompts(seed, [length])
    params = SamplingParams(temperature=0.0, max_tokens=max_tokens, stop=tuple(stop), logprobs=logprobs)

    events = []
    engine.add_tokens(prompt, SamplingParams(temperature=0.0, max_tokens=max_tokens, logprobs=logprobs),
                      events.append)  # fmt: skip
    engine.run_until_idle()
    assert all(isinstance(e, Tokens | Finished) for e in events) and isinstance(events[-1], Finished)
    assert not any(hasattr(e, "text") for e in events)
    tokens = [t for e in events[:-1] for t in e.token_ids]
    finished = events[-1]
    assert finished.token_ids == tokens and len(tokens) == max_tokens and finished.finish_reason == "length"
    if logprobs is not None:
        assert [lp.token_id for e in events[:-1] for lp in e.logprobs] == tokens

    stream = engine.add_request(prompt, params)
    text = "".join(delta.text for delta in stream)
    done = stream.completion
    spelled = tokenizer.decode(tokens)
    cut = min((spelled.find(s) for s in stop if s in spelled), default=-1)
    if cut >= 0:  # the first stop string ends it, in the core too: no token after the one that completed it
        assert done.finish_reason == "stop" and text == spelled[:cut] == done.text
        assert done.token_ids == tokens[: len(done.token_ids)] and len(tokenizer.decode(done.token_ids)) >= cut
        assert cut + max(map(len, stop)) > len(tokenizer.decode(done.token_ids[:-1]))
    else:
        assert done.finish_reason == "length" and text == spelled == done.text and done.token_ids == tokens
    assert done.usage.completion_tokens == len(done.token_ids)


def test_a_consumer_that_says_stop_ends_the_request_in_the_core(models):
    engine = Engine(models["mistral"], CharTokenizer(), EngineConfig(kv_cache_bytes=2**22))
    seen = []

    def emit(event):
        seen.append(event)
        return isinstance(event, Tokens) and len(seen) == 3  # the third token "completes a stop string"

    engine.add_tokens([5, 6, 7], SamplingParams(temperature=0.0, max_tokens=50), emit)
    engine.run_until_idle()
    assert isinstance(seen[-1], Finished) and seen[-1].finish_reason == "stop"
    assert len(seen[-1].token_ids) == 3 and seen[-1].usage.completion_tokens == 3
    assert engine.stats().running == 0 and not engine.has_work and engine.stats().finished == {"stop": 1}


@pytest.mark.parametrize("bad", [[], [128], [-1]])
def test_ids_outside_the_vocabulary_are_refused_by_the_input_processor(models, bad):
    engine = Engine(models["llama"], CharTokenizer())
    with pytest.raises(ValueError, match="empty|outside the vocabulary 0..127"):
        engine.add_request(bad, SamplingParams())
