"""Scoring through the API: `/v1/completions` with `echo`, `logprobs` and `max_tokens: 0` gives
each prompt token's log-probability (read with the real openai SDK), `/tokenize` splits text as
the model does, and `autan eval --base-url` scores equal the in-process ones and transformers'."""

import httpx
import openai
import pytest
import torch
import transformers

from autan.engine.engine import Engine
from autan.engine.sampling import SamplingParams
from autan.eval.scoring import EngineScorer, HTTPScorer
from autan.eval.tasks import TASKS, Doc
from autan.server.app import create_app
from autan.server.served import load_served
from autan.tokenizer import load_tokenizer
from autan.weights import load_model

HAND_MADE = [
    Doc((("Question: What do bees make?\nAnswer:", " honey"), ("Question: What do bees make?\nAnswer:", " milk")), 0,
        (5, 4)),
    # the context's trailing space moves to the continuation
    Doc((("The capital of France is ", "Paris."), ("The capital of France is ", "a cheese.")), 0, (6, 9)),
    Doc((("He filled the cup with", " tea"), ("He filled the box with", " tea")), 0, (3, 3)),  # contexts differ
]  # fmt: skip


@pytest.fixture(scope="module")
def reference(chatml_path):
    """The harness's log-likelihood, computed by transformers on the same checkpoint."""
    model = transformers.AutoModelForCausalLM.from_pretrained(chatml_path, dtype=torch.float32).eval()
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_file=str(chatml_path / "tokenizer.json"))

    def ids(text):
        return tokenizer(text, add_special_tokens=False).input_ids

    def loglikelihood(context, continuation, prefix=()):
        n = len(context) - len(context.rstrip())  # lm_eval's _encode_pair
        if n:
            context, continuation = context[:-n], context[-n:] + continuation
        whole, ctx = ids(context + continuation), ids(context)
        cont = whole[len(ctx) :]
        tokens = [*prefix, *ctx, *cont]
        with torch.no_grad():
            logprobs = torch.log_softmax(model(torch.tensor([tokens])).logits[0].double(), -1)
        start = len(tokens) - len(cont)
        return sum(logprobs[start - 1 + j, t].item() for j, t in enumerate(cont))

    return loglikelihood


@pytest.fixture(scope="module")
def docs():
    return HAND_MADE + TASKS["hellaswag"].docs()[:5] + TASKS["winogrande"].docs()[:3]


@pytest.fixture
def served_url(chatml_path, live):
    return live(create_app([load_served(f"tiny={chatml_path}")])).url


def results(scorer, docs):
    return dict(scorer.run(enumerate(docs)))


def test_in_process_and_served_scores_equal_transformers(chatml_path, served_url, reference, docs):
    engine = Engine(load_model(chatml_path), load_tokenizer(chatml_path))
    local = results(EngineScorer(engine, in_flight=3), docs)
    remote_scorer = HTTPScorer(served_url, "tiny", concurrency=3)
    assert remote_scorer.tokenized  # autan serve has /tokenize
    remote = results(remote_scorer, docs)
    for i, doc in enumerate(docs):
        expected = [reference(c, x) for c, x in doc.requests]
        assert local[i] == pytest.approx(expected, abs=2e-3), i
        assert remote[i] == pytest.approx(local[i], abs=1e-4), i
    assert engine.stats().prefix_cache_hit_rate > 0  # the choices after the first found their context cached


def test_without_tokenize_the_continuation_is_told_by_text_offsets(served_url, reference, chatml_path):
    scorer = HTTPScorer(served_url, "tiny")
    scorer.tokenized = False  # as against a server with no /tokenize: text goes as is, with the BOS
    # (if any) that transformers' tokenizer for these files puts first
    hf = transformers.AutoTokenizer.from_pretrained(chatml_path)
    prefix = hf("hello").input_ids[: -len(hf("hello", add_special_tokens=False).input_ids)]
    clean = [HAND_MADE[0], HAND_MADE[2]]  # whole words after the context: the same tokens either way
    got = results(scorer, clean)
    for i, doc in enumerate(clean):
        assert got[i] == pytest.approx([reference(c, x, prefix=prefix) for c, x in doc.requests], abs=2e-3)


def test_echo_with_logprobs_scores_the_prompt_through_the_openai_sdk(served_url, chatml_path):
    client = openai.OpenAI(base_url=f"{served_url}/v1", api_key="none")
    tokenizer = load_tokenizer(chatml_path)
    ids = tokenizer.encode("The quick brown fox jumps over the lazy dog")
    reply = client.completions.create(model="tiny", prompt=ids, max_tokens=0, echo=True, logprobs=2)
    choice = reply.choices[0]
    lp = choice.logprobs
    assert choice.text == tokenizer.decode(ids) == "".join(lp.tokens)
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    model = load_model(chatml_path)
    expected = torch.log_softmax(model.logits(ids).double(), -1)
    for k in range(1, len(ids)):
        assert lp.token_logprobs[k] == pytest.approx(expected[k - 1, ids[k]].item(), abs=1e-4)
        top = expected[k - 1].topk(2)
        assert sorted(lp.top_logprobs[k].values(), reverse=True) == pytest.approx(top.values.tolist(), abs=1e-4)
    assert lp.text_offset == [sum(len(t) for t in lp.tokens[:k]) for k in range(len(ids))]
    assert reply.usage.completion_tokens == 0
    # generated tokens follow the echoed ones in the same lists, their offsets running on
    more = client.completions.create(model="tiny", prompt=ids, max_tokens=3, echo=True, logprobs=0, temperature=0)
    mlp = more.choices[0].logprobs
    assert len(mlp.tokens) == len(ids) + 3 and mlp.token_logprobs[: len(ids)] == pytest.approx(lp.token_logprobs)
    assert more.choices[0].text == "".join(mlp.tokens)
    # without echo, the generated tokens alone, read after the prompt (no leading space lost)
    plain = client.completions.create(model="tiny", prompt=ids, max_tokens=4, logprobs=1, temperature=0)
    assert plain.choices[0].text == "".join(plain.choices[0].logprobs.tokens)
    assert plain.choices[0].logprobs.text_offset[0] == 0
    with pytest.raises(openai.UnprocessableEntityError, match="echo cannot be combined with suffix"):
        client.completions.create(model="tiny", prompt="a", suffix="b", echo=True, max_tokens=1)


def test_tokenize_detokenize_and_their_errors(served_url, chatml_path):
    tokenizer = load_tokenizer(chatml_path)
    plain = {"model": "tiny", "prompt": "hello world", "add_special_tokens": False}
    reply = httpx.post(f"{served_url}/tokenize", json=plain)
    assert reply.json()["tokens"] == tokenizer.encode("hello world")
    special = httpx.post(f"{served_url}/tokenize", json={"model": "tiny", "content": "hello world"}).json()["tokens"]
    assert special == transformers.AutoTokenizer.from_pretrained(chatml_path)("hello world").input_ids  # as HF adds
    back = httpx.post(f"{served_url}/detokenize", json={"model": "tiny", "tokens": reply.json()["tokens"]})
    assert back.json()["prompt"] == "hello world"
    bad = httpx.post(f"{served_url}/detokenize", json={"model": "tiny", "tokens": [10**9]})
    assert bad.status_code == 400 and "outside the vocabulary" in bad.json()["message"]
    missing = httpx.post(f"{served_url}/tokenize", json={"model": "nope", "prompt": "x"})
    assert missing.status_code == 404 and "not served here" in missing.json()["message"]
    scored_stream = {"model": "tiny", "prompt": "x", "echo": True, "logprobs": 1, "stream": True}
    streamed = httpx.post(f"{served_url}/v1/completions", json=scored_stream)
    assert streamed.status_code == 422 and "answered whole" in streamed.text


def test_generative_answers_are_the_same_in_process_and_served(chatml_path, served_url):
    import dataclasses

    from autan.eval.tasks import task

    docs = [dataclasses.replace(d, max_tokens=12) for d in task("gsm8k").docs()[:4]]
    engine = Engine(load_model(chatml_path), load_tokenizer(chatml_path))
    local = dict(EngineScorer(engine, in_flight=2).generate(enumerate(docs)))
    remote = dict(HTTPScorer(served_url, "tiny", concurrency=2).generate(enumerate(docs)))
    assert local == remote and len(local) == 4
    # each is the greedy continuation of the prompt's end (cut to fit), up to the first stop sequence
    ids = engine.tokenizer.encode(docs[0].prompt)[-(engine.max_seq_len - 1 - 12) :]
    alone = engine.add_request(ids, SamplingParams(temperature=0, max_tokens=12))
    engine.run_until_idle()
    text = alone.events[-1].text
    for stop in docs[0].until:
        text = text.split(stop)[0]
    assert local[0] == text
