"""`/v1/embeddings` against sentence-transformers: the packaged all-MiniLM-L6-v2, a BERT from a
sentence-transformers directory and the same BERT as llama.cpp's converter writes it to GGUF, read
through the openai SDK (floats and its default base64), the mistralai SDK, LangChain's OpenAI and
Mistral embeddings and LiteLLM; bad input is refused with the reason."""

import base64
import os

import httpx
import numpy as np
import openai
import pytest
from sentence_transformers import SentenceTransformer

from autan.embeddings import load_embedder
from autan.guard.encoder import pull
from autan.server.app import create_app
from autan.server.embeddings import Embedders
from checkpoints import save_gguf_bert, tiny_bert
from conftest import Live

TEXTS = ["The cat sat on the mat.", "A quick brown fox jumps over the lazy dog!", "Ünïcödé, punctuation; and CAPS.",
         "embeddings " * 25]  # fmt: skip


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    root = tmp_path_factory.mktemp("bert")
    directory = tiny_bert(root / "tiny-bert")
    return directory, save_gguf_bert(directory, root / "tiny-bert.gguf")


@pytest.fixture(scope="module")
def url(bert):
    directory, gguf = bert
    embedders = Embedders([load_embedder(f"tiny-bert={directory}"), load_embedder(f"tiny-bert-gguf={gguf}")])
    live = Live(create_app([], embedders=embedders))
    yield live.url
    live.close()


def reference(path, texts, normalize=False):
    vectors = SentenceTransformer(str(path), device="cpu").encode(texts, convert_to_numpy=True)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True) if normalize else vectors


def test_the_openai_sdk_gets_sentence_transformers_vectors(url, bert):
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="EMPTY")
    expected = reference(pull(), TEXTS)
    for form in ({"encoding_format": "float"}, {}):  # unless told, the SDK asks for base64 and decodes it
        got = client.embeddings.create(model="all-minilm-l6-v2", input=TEXTS, **form)
        assert [d.index for d in got.data] == [0, 1, 2, 3] and got.model == "all-minilm-l6-v2"
        np.testing.assert_allclose(np.array([d.embedding for d in got.data]), expected, atol=1e-5)
    raw = client.embeddings.create(model="all-minilm-l6-v2", input=TEXTS[:1], encoding_format="base64")
    decoded = np.frombuffer(base64.b64decode(raw.data[0].embedding), dtype="<f4")  # little-endian float32
    np.testing.assert_allclose(decoded, expected[0], atol=1e-5)
    assert got.usage.prompt_tokens == sum(len(load_embedder("all-minilm-l6-v2").tokens(t)) + 2 for t in TEXTS)
    one = client.embeddings.create(model="all-minilm-l6-v2", input=TEXTS[0])
    np.testing.assert_allclose(one.data[0].embedding, expected[0], atol=1e-5)
    directory, _ = bert
    tiny = client.embeddings.create(model="tiny-bert", input=TEXTS)
    np.testing.assert_allclose(np.array([d.embedding for d in tiny.data]), reference(directory, TEXTS), atol=1e-5)


def test_a_gguf_bert_embeds_as_its_source_does(url, bert):
    directory, _ = bert
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="EMPTY")
    got = client.embeddings.create(model="tiny-bert-gguf", input=TEXTS)
    # llama.cpp normalises; its F16 matrices round the weights
    np.testing.assert_allclose(np.array([d.embedding for d in got.data]), reference(directory, TEXTS, True), atol=2e-3)
    ids = load_embedder(str(directory)).tokens(TEXTS[2])
    by_ids = client.embeddings.create(model="tiny-bert-gguf", input=[ids])  # its own vocabulary's ids
    np.testing.assert_allclose(by_ids.data[0].embedding, got.data[2].embedding, atol=1e-6)


def test_the_mistralai_sdk_langchain_and_litellm(url):
    from langchain_mistralai import MistralAIEmbeddings
    from langchain_openai import OpenAIEmbeddings
    from mistralai.client import Mistral

    expected = reference(pull(), TEXTS[:2])
    mistral = Mistral(api_key="x", server_url=url).embeddings.create(model="all-minilm-l6-v2", inputs=TEXTS[:2])
    np.testing.assert_allclose(np.array([d.embedding for d in mistral.data]), expected, atol=1e-5)
    langchain = OpenAIEmbeddings(
        model="all-minilm-l6-v2", base_url=f"{url}/v1", api_key="EMPTY", check_embedding_ctx_length=False
    )  # (its tiktoken counting fetches a vocabulary)
    np.testing.assert_allclose(langchain.embed_documents(TEXTS[:2]), expected, atol=1e-5)
    np.testing.assert_allclose(langchain.embed_query(TEXTS[0]), expected[0], atol=1e-5)
    langchain_mistral = MistralAIEmbeddings(model="all-minilm-l6-v2", endpoint=f"{url}/v1", api_key="EMPTY")
    np.testing.assert_allclose(langchain_mistral.embed_documents(TEXTS[:2]), expected, atol=1e-5)
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # its price list from the package, not the network
    import litellm

    for provider in ("openai", "mistral"):
        got = litellm.embedding(model=f"{provider}/all-minilm-l6-v2", api_base=f"{url}/v1", api_key="EMPTY",
                                input=TEXTS[:2])  # fmt: skip
        np.testing.assert_allclose(np.array([d["embedding"] for d in got.data]), expected, atol=1e-5)


def test_bad_requests_say_why(url):
    post = lambda body: httpx.post(f"{url}/v1/embeddings", json=body)  # noqa: E731
    refused = post({"model": "smollm2", "input": "x"})
    assert refused.status_code == 404
    assert "embedding models: tiny-bert, tiny-bert-gguf, all-minilm-l6-v2" in refused.text
    refused = post({"model": "all-minilm-l6-v2", "input": "word " * 300})
    assert refused.status_code == 400 and "input 0 has 300 tokens; all-minilm-l6-v2 reads at most 254" in refused.text
    refused = post({"model": "all-minilm-l6-v2", "input": [[1, 2, 99999]]})
    assert refused.status_code == 400 and "token id 99999, outside all-minilm-l6-v2's 0..30521" in refused.text
    refused = post({"model": "all-minilm-l6-v2", "input": "x", "dimensions": 256})
    assert refused.status_code == 400 and "gives 384 dimensions, not 256" in refused.text
    refused = post({"model": "all-minilm-l6-v2", "input": []})
    assert refused.status_code == 422
    refused = post({"model": "all-minilm-l6-v2"})
    assert refused.status_code == 422 and "give the texts to embed as input" in refused.text
    cards = {m["id"]: m for m in httpx.get(f"{url}/v1/models").json()["data"]}
    assert cards["all-minilm-l6-v2"]["capabilities"]["embeddings"] is True
