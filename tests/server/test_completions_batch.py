"""`/v1/completions` as lm-evaluation-harness and batch clients use it: a list of prompts (texts or
token ids) with `n` choices each, `/tokenizer_info` and `/tokenize` without a model as vLLM answers
them, and a BOS before a text exactly where the model's tokenizer puts one. The harness's own
`local-completions` model, batch size 4 with its default tokenized requests, scores as `autan eval`
does on the engine."""

from pathlib import Path

import httpx
import openai
import pytest

from autan.engine.engine import Engine
from autan.eval.scoring import EngineScorer
from autan.eval.tasks import TASKS, Doc
from autan.server.app import create_app
from autan.server.served import load_served
from autan.tokenizer import load_tokenizer
from autan.weights import load_model

HAND_MADE = [
    Doc((("Question: What do bees make?\nAnswer:", " honey"), ("Question: What do bees make?\nAnswer:", " milk")), 0,
        (5, 4)),
    Doc((("The capital of France is ", "Paris."), ("The capital of France is ", "a cheese.")), 0, (6, 9)),
    Doc((("", "An answer with no context"), ("", "Another one")), 0, (1, 1)),  # the harness's prefix token
]  # fmt: skip


@pytest.fixture(scope="module")
def default_model():
    return load_served("smollm2")


@pytest.fixture
def url(default_model, live):
    return live(create_app([default_model])).url


def test_a_list_of_prompts_answers_each_with_n_choices_in_order(url):
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="EMPTY")
    texts = ["The capital of France is", "1, 2, 3,", "Water boils at"]
    alone = [client.completions.create(model="smollm2", prompt=t, max_tokens=5, temperature=0) for t in texts]
    together = client.completions.create(model="smollm2", prompt=texts, max_tokens=5, temperature=0, n=2)
    assert [c.index for c in together.choices] == list(range(6))
    assert [c.text for c in together.choices] == [a.choices[0].text for a in alone for _ in range(2)]
    assert together.usage.prompt_tokens == sum(a.usage.prompt_tokens for a in alone)  # each prompt counted once
    assert together.usage.completion_tokens == 2 * sum(a.usage.completion_tokens for a in alone)
    # token ids, one list or several
    ids = [httpx.post(f"{url}/tokenize", json={"prompt": t}).json()["tokens"] for t in texts]
    as_ids = client.completions.create(model="smollm2", prompt=ids, max_tokens=5, temperature=0)
    assert [c.text for c in as_ids.choices] == [a.choices[0].text for a in alone]
    one = client.completions.create(model="smollm2", prompt=ids[0], max_tokens=5, temperature=0)
    assert one.choices[0].text == alone[0].choices[0].text
    # streamed: every choice's pieces, by index, add up to its whole answer
    pieces = {}
    for chunk in client.completions.create(model="smollm2", prompt=texts, max_tokens=5, temperature=0, stream=True):
        for c in chunk.choices:
            pieces[c.index] = pieces.get(c.index, "") + c.text
    assert [pieces[i] for i in range(3)] == [a.choices[0].text for a in alone]
    # echo with logprobs scores each prompt on its own
    scored = client.completions.create(model="smollm2", prompt=texts, max_tokens=1, temperature=0, echo=True,
                                       logprobs=1)  # fmt: skip
    for choice, text, prompt in zip(scored.choices, texts, ids, strict=True):
        assert choice.text.startswith(text) and len(choice.logprobs.token_logprobs) == len(prompt) + 1


def test_bad_batches_are_refused_by_name(url):
    post = lambda body: httpx.post(f"{url}/v1/completions", json={"model": "smollm2", **body})  # noqa: E731
    refused = post({"prompt": [[1, 2], []]})
    assert refused.status_code == 422 and "a prompt of token ids is empty" in refused.text
    refused = post({"prompt": ["a", "b"], "suffix": "c"})
    assert refused.status_code == 422 and "suffix fills in the middle of one prompt, not 2" in refused.text
    refused = post({"prompt": ["a"] * 1025})
    assert refused.status_code == 422 and "prompt" in refused.json()["param"]
    refused = post({"prompt": [[49152]]})
    assert refused.status_code == 400 and "49152" in refused.text


def test_tokenizer_info_and_tokenize_say_what_the_files_say(url, default_model):
    info = httpx.get(f"{url}/tokenizer_info").json()
    # SmolLM2's GGUF: tokenizer.ggml.add_bos_token = false; its BOS and EOS are ChatML's markers
    assert info["add_bos_token"] is False and (info["bos_token"], info["eos_token"]) == ("<|im_start|>", "<|im_end|>")
    assert info["chat_template"] == default_model.tokenizer.template.source and info["model_max_length"] == 8192
    plain = httpx.post(f"{url}/tokenize", json={"prompt": "Hello world"}).json()["tokens"]
    special = httpx.post(f"{url}/tokenize", json={"prompt": "Hello world", "add_special_tokens": True}).json()
    assert special["tokens"] == plain == default_model.tokenizer.encode("Hello world")  # no BOS, as the file says
    assert httpx.post(f"{url}/tokenize", json={"prompt": "<|im_end|>", "add_special_tokens": False}).json() == {
        "tokens": [2], "count": 1, "max_model_len": 8192,
    }  # fmt: skip
    assert httpx.post(f"{url}/detokenize", json={"tokens": plain}).json() == {"prompt": "Hello world"}
    missing = httpx.get(f"{url}/tokenizer_info", params={"model": "nope"})
    assert missing.status_code == 404 and "model 'nope' is not served here; available: smollm2" in missing.text


def test_bos_before_a_text_prompt_follows_the_tokenizer(tmp_path, live):
    """A SentencePiece GGUF that says nothing starts a text with BOS (llama.cpp's default), one
    that says add_bos_token = false does not; Mistral's tokenizers always do."""
    import mistral_common

    from checkpoints import save_gguf_sentencepiece, tiny_mistral_format

    v1 = Path(mistral_common.__file__).parent / "data" / "tokenizer.model.v1"

    for add_bos, expected in ((None, True), (False, False), (True, True)):
        gguf = save_gguf_sentencepiece(v1, tmp_path / f"spm-{add_bos}.gguf", add_bos=add_bos)
        tokenizer = load_tokenizer(gguf)
        assert tokenizer.add_bos is expected
    mistral = tiny_mistral_format(tmp_path, "mistral", "mistral_instruct_tokenizer_240323.model.v3", 32768)
    served = load_served(f"tiny={mistral}")
    base = live(create_app([served])).url
    ids = httpx.post(f"{base}/tokenize", json={"prompt": "hello"}).json()["tokens"]
    assert ids == served.tokenizer.encode("hello", add_bos=True) and ids[0] == served.tokenizer.bos_id == 1
    assert (
        httpx.post(f"{base}/tokenize", json={"prompt": "hello", "add_special_tokens": False}).json()["tokens"]
        == (ids[1:])
    )
    answer = httpx.post(f"{base}/v1/completions", json={"model": "tiny", "prompt": "hello", "max_tokens": 1})
    assert answer.json()["usage"]["prompt_tokens"] == len(ids)
    assert httpx.get(f"{base}/tokenizer_info").json()["add_bos_token"] is True


@pytest.fixture(scope="module")
def harness_docs():
    return HAND_MADE + TASKS["arc_easy"].docs()[:4] + TASKS["hellaswag"].docs()[:1]


def test_lm_evaluation_harness_local_completions_scores_as_autan_eval(live, harness_docs):
    """On the exact kernels both ways: the packed ones round a step's activations in a way that
    depends on what else runs in it (README), which moves a long answer's sum by ~1e-4 of itself."""
    from lm_eval.api.instance import Instance
    from lm_eval.models.openai_completions import LocalCompletionsAPI

    served = load_served("smollm2", kernels="exact")
    url = live(create_app([served])).url
    harness = LocalCompletionsAPI(base_url=f"{url}/v1/completions", model="smollm2", batch_size=4, max_length=2048)
    assert harness.tokenizer_backend == "remote" and harness.tokenized_requests  # found /tokenizer_info
    pairs = [pair for doc in harness_docs for pair in doc.requests]
    requests = [Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(pairs)]
    theirs = [logprob for logprob, _ in harness.loglikelihood(requests, disable_tqdm=True)]
    engine = Engine(load_model(served.path, kernels="exact"), load_tokenizer(served.path))
    ours = dict(EngineScorer(engine, in_flight=4).run(enumerate(harness_docs)))
    flat = [score for i in range(len(harness_docs)) for score in ours[i]]
    assert theirs == pytest.approx(flat, abs=1e-3)
