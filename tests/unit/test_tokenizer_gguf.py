"""Tokenizers built from GGUF metadata, against transformers' reading of the same file.

Both kinds are covered: byte-level BPE (`gpt2`, the default model's own file) and SentencePiece
(`llama`, written from mistral-common's v1 `tokenizer.model` — Mistral 7B's tokenizer — and
also checked against sentencepiece itself).
"""

from pathlib import Path

import mistral_common
import pytest
import sentencepiece
from hypothesis import given, settings
from hypothesis import strategies as st

from autan import registry
from autan.tokenizer import StreamDecoder, load_tokenizer
from autan.tokenizer.template import ChatTemplate, ChatTemplateError
from checkpoints import MISTRAL_V1_TEMPLATE, save_gguf_sentencepiece

TRICKY = [
    "Hello world",
    " leading space",
    "  two leading spaces and trailing   ",
    "Ça déborde: àéîõü ÀÉÎÕÜ ß ø œ",
    "emoji 🙂👍🏽 👨‍👩‍👧 flags 🇫🇷🇪🇺",
    "CJK 中文字符 日本語のテキスト 한국어",
    "def f(x):\n\treturn x  *  2\n\n\n    # spaces\t\ttabs",
    "digits 1234567890 3.14159 1e-5 0x1F",
    "<|im_start|>user\nhi<|im_end|>",
    "mixed\r\nline\rendings\n",
    "",
]


@pytest.fixture(scope="module")
def gguf_path():
    return registry.pull("smollm2", quiet=True)


@pytest.fixture(scope="module")
def ours(gguf_path):
    return load_tokenizer(gguf_path)


def transformers_tokenizer(path: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)


@pytest.fixture(scope="module")
def theirs(gguf_path):
    return transformers_tokenizer(gguf_path)


V1_MODEL = Path(mistral_common.__file__).parent / "data" / "tokenizer.model.v1"


@pytest.fixture(scope="module")
def spm_gguf(tmp_path_factory):
    return save_gguf_sentencepiece(V1_MODEL, tmp_path_factory.mktemp("spm") / "spm.gguf", MISTRAL_V1_TEMPLATE)


@pytest.fixture(scope="module")
def spm_ours(spm_gguf):
    return load_tokenizer(spm_gguf)


@pytest.mark.parametrize("text", TRICKY)
def test_ids_match_transformers_and_round_trip(ours, theirs, text):
    ids = ours.encode(text)
    assert ids == theirs.encode(text, add_special_tokens=False)
    assert ours.tokenizer.decode(ids, skip_special_tokens=False) == text


@pytest.mark.parametrize("text", TRICKY)
def test_sentencepiece_kind_matches_sentencepiece_and_round_trips(spm_ours, text):
    reference = sentencepiece.SentencePieceProcessor(model_file=str(V1_MODEL))
    ids = spm_ours.encode(text)
    assert ids == reference.encode(text)
    assert spm_ours.tokenizer.decode(ids, skip_special_tokens=False) == text


def test_sentencepiece_kind_matches_transformers(spm_gguf, spm_ours):
    """transformers drops the space-prefix before text that already starts with a space (its
    Metaspace "first" scheme); sentencepiece and llama.cpp keep it, and so do we. Elsewhere, equal."""
    theirs = transformers_tokenizer(spm_gguf)
    for text in TRICKY:
        if not text.startswith(" "):
            assert spm_ours.encode(text) == theirs.encode(text, add_special_tokens=False), text
    assert spm_ours.bos_id == theirs.bos_token_id == 1
    assert spm_ours.eos_ids == {theirs.eos_token_id} == {2}


def test_sentencepiece_kind_chat_equals_mistral_common_v1(spm_ours):
    from mistral_common.protocol.instruct.request import ChatCompletionRequest
    from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

    messages = [{"role": "user", "content": "What is the capital of France?"}]
    reference = MistralTokenizer.v1().encode_chat_completion(ChatCompletionRequest(messages=messages)).tokens
    assert spm_ours.encode_chat(messages) == reference


def test_bos_eos_from_metadata(ours, theirs):
    assert ours.bos_id == theirs.bos_token_id == 1
    assert ours.eos_id == theirs.eos_token_id == 2
    assert ours.eos_ids == {2, 0}  # and <|endoftext|>: an end of generation, as llama.cpp reads the vocabulary


CONVERSATIONS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [
        {"role": "system", "content": "You answer in French."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Bonjour !"},
        {"role": "user", "content": "Capital of Italy?"},
    ],
]


@pytest.mark.parametrize("messages", CONVERSATIONS)
def test_chat_template_matches_transformers(ours, theirs, messages):
    text = theirs.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert ours.encode_chat(messages) == theirs.encode(text, add_special_tokens=False)


def test_prefix_continues_the_assistant_message(ours, theirs):
    messages = [*CONVERSATIONS[0], {"role": "assistant", "content": "The capital is", "prefix": True}]
    expected = theirs.apply_chat_template(
        [{k: v for k, v in m.items() if k != "prefix"} for m in messages], tokenize=False, continue_final_message=True
    )
    assert ours.encode_chat(messages) == ours.encode(expected)
    assert ours.tokenizer.decode(ours.encode_chat(messages), skip_special_tokens=False).endswith("The capital is")


def test_template_runs_in_the_sandbox():
    escape = "{{ messages.__class__.__mro__[1].__subclasses__() }}"
    with pytest.raises(ChatTemplateError, match="the chat template failed"):
        ChatTemplate(escape).render([{"role": "user", "content": "x"}])
    mutate = "{% set _ = messages.append({'role': 'user'}) %}{{ messages | length }}"
    with pytest.raises(ChatTemplateError, match="the chat template failed"):
        ChatTemplate(mutate).render([{"role": "user", "content": "x"}])
    with pytest.raises(ChatTemplateError, match="refused the conversation: no system"):
        ChatTemplate("{{ raise_exception('no system') }}").render([])


PIECES = st.sampled_from([*TRICKY, "é", "🙂", "中", " ", "\n", "ab", "  "])


@settings(max_examples=60, deadline=None)
@given(parts=st.lists(PIECES, min_size=1, max_size=8))
def test_stream_decode_never_splits_a_character(ours, spm_ours, parts):
    text = "".join(parts)
    for tokenizer in (ours, spm_ours):
        ids = tokenizer.encode(text)
        stream = StreamDecoder(tokenizer)
        deltas = [stream.push(i) for i in ids]
        deltas.append(stream.flush())
        assert "".join(deltas) == tokenizer.decode(ids)
        for delta in deltas:
            assert "\ufffd" not in delta
