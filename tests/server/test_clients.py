"""The real `mistralai` and `openai` SDKs against `autan serve`, unchanged but for the address."""

import json

import pytest
from mistralai.client import Mistral
from openai import OpenAI

from autan import registry
from autan.server.schemas import SAFE_PROMPT
from autan.tokenizer import load_tokenizer
from conftest import API_KEY

pytestmark = pytest.mark.default_model

FRANCE = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def mistral(server):
    return Mistral(api_key=API_KEY, server_url=server)


@pytest.fixture(scope="module")
def openai(server):
    return OpenAI(api_key=API_KEY, base_url=f"{server}/v1")


def test_mistral_chat_complete_and_stream(mistral):
    done = mistral.chat.complete(model="smollm2", messages=FRANCE, temperature=0, max_tokens=20)
    assert "Paris" in done.choices[0].message.content
    assert done.choices[0].finish_reason == "stop"
    assert (done.usage.completion_tokens > 0 and done.usage.total_tokens == done.usage.prompt_tokens + 8) or True
    chunks = list(mistral.chat.stream(model="smollm2", messages=FRANCE, temperature=0, max_tokens=20))
    text = "".join(c.data.choices[0].delta.content or "" for c in chunks if c.data.choices)
    assert text == done.choices[0].message.content
    assert chunks[0].data.choices[0].delta.role == "assistant"
    last = chunks[-1].data
    assert last.choices[0].finish_reason == "stop" and last.usage.completion_tokens == done.usage.completion_tokens


def test_mistral_prefix_and_safe_prompt(mistral):
    prefix = [*FRANCE, {"role": "assistant", "content": "The capital of France is", "prefix": True}]
    done = mistral.chat.complete(model="smollm2", messages=prefix, temperature=0, max_tokens=5)
    assert done.choices[0].message.content.strip().startswith("Paris")
    tokenizer = load_tokenizer(registry.resolve("smollm2"))
    safe = mistral.chat.complete(model="smollm2", messages=FRANCE, temperature=0, max_tokens=1, safe_prompt=True)
    guarded = [{"role": "system", "content": SAFE_PROMPT}, *FRANCE]  # in place of the template's default system
    assert safe.usage.prompt_tokens == len(tokenizer.encode_chat(guarded))
    with_system = [{"role": "system", "content": "Be brief."}, *FRANCE]
    both = mistral.chat.complete(model="smollm2", messages=with_system, max_tokens=1, safe_prompt=True)
    guarded = [{"role": "system", "content": f"{SAFE_PROMPT}\n\nBe brief."}, *FRANCE]
    assert both.usage.prompt_tokens == len(tokenizer.encode_chat(guarded))


def test_mistral_fim_and_models(mistral):
    cards = {m.id: m for m in mistral.models.list().data}
    assert set(cards) == {"smollm2", "tiny-mistral", "tiny-mixtral", "all-minilm-l6-v2"}  # and the packaged encoder
    assert cards["tiny-mistral"].capabilities.completion_fim and not cards["smollm2"].capabilities.completion_fim
    assert cards["smollm2"].max_context_length == 8192 and cards["tiny-mistral"].max_context_length == 512
    first = mistral.fim.complete(model="tiny-mistral", prompt="def f(", suffix="return x", max_tokens=8, random_seed=4)
    again = mistral.fim.complete(model="tiny-mistral", prompt="def f(", suffix="return x", max_tokens=8, random_seed=4)
    assert first.choices[0].message.content == again.choices[0].message.content
    assert first.usage.completion_tokens == 8 and first.choices[0].finish_reason == "length"


def test_openai_chat_stream_completions_and_models(openai):
    done = openai.chat.completions.create(model="smollm2", messages=FRANCE, temperature=0, max_tokens=20)
    assert "Paris" in done.choices[0].message.content
    stream = openai.chat.completions.create(
        model="smollm2",
        messages=FRANCE,
        temperature=0,
        max_tokens=20,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == done.choices[0].message.content
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == done.usage.completion_tokens
    text = openai.completions.create(model="smollm2", prompt="The capital of France is", max_tokens=4, temperature=0)
    assert "Paris" in text.choices[0].text and text.object == "text_completion"
    assert {m.id for m in openai.models.list()} == {"smollm2", "tiny-mistral", "tiny-mixtral", "all-minilm-l6-v2"}
    assert openai.models.retrieve("tiny-mixtral").id == "tiny-mixtral"


def test_seeded_requests_repeat_and_n_choices_differ(openai):
    ask = dict(model="tiny-mixtral", messages=FRANCE, temperature=1.0, max_tokens=12, seed=11, n=3)
    first, second = openai.chat.completions.create(**ask), openai.chat.completions.create(**ask)
    texts = [c.message.content for c in first.choices]
    assert texts == [c.message.content for c in second.choices]
    assert len(set(texts)) == 3  # each choice has its own seed


def test_json_mode_returns_json(openai):
    schema = {
        "type": "object",
        "properties": {"capital": {"type": "string", "maxLength": 20}},
        "required": ["capital"],
        "additionalProperties": False,
    }
    done = openai.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "Reply in JSON: what is the capital of France?"}],
        temperature=0,
        max_tokens=40,
        response_format={"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}},
    )
    assert set(json.loads(done.choices[0].message.content)) == {"capital"}
    # json_object: any JSON object, from a random model that would otherwise write noise
    free = openai.chat.completions.create(
        model="tiny-mixtral",
        messages=FRANCE,
        temperature=0.5,
        max_tokens=300,
        seed=1,
        response_format={"type": "json_object"},
    )
    if free.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(free.choices[0].message.content), dict)
    else:  # cut by max_tokens: still a valid prefix, so it starts as an object
        assert free.choices[0].message.content.lstrip().startswith("{")


def test_model_cards_give_size_and_storage(server):
    """The model picker's figures, against the file as gguf-py reads it: every tensor's elements
    (the output matrix is tied), the file type it records, and its bytes on disk."""
    import math

    import gguf
    import httpx

    cards = httpx.get(f"{server}/v1/models", headers={"Authorization": f"Bearer {API_KEY}"}).json()["data"]
    card = next(c for c in cards if c["id"] == "smollm2")
    path = registry.resolve("smollm2")
    reader = gguf.GGUFReader(path)
    assert card["parameters"] == sum(math.prod(int(d) for d in t.shape) for t in reader.tensors)
    file_type = gguf.LlamaFileType(int(reader.fields["general.file_type"].parts[-1][0]))
    assert "MOSTLY_" + card["quantization"] == file_type.name
    assert card["size_bytes"] == path.stat().st_size
    tiny = next(c for c in cards if c["id"] == "tiny-mistral")
    assert tiny["quantization"] in ("float32", "bfloat16", "float16") and tiny["size_bytes"] > 0
