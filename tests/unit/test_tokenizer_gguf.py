"""The tokenizer built from the default model's GGUF, against transformers' reading of the same file."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autan import registry
from autan.tokenizer import StreamDecoder, load_tokenizer
from autan.tokenizer.template import ChatTemplate, ChatTemplateError

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


@pytest.fixture(scope="module")
def theirs(gguf_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)


@pytest.mark.parametrize("text", TRICKY)
def test_ids_match_transformers_and_round_trip(ours, theirs, text):
    ids = ours.encode(text)
    assert ids == theirs.encode(text, add_special_tokens=False)
    assert ours.tokenizer.decode(ids, skip_special_tokens=False) == text


def test_bos_eos_from_metadata(ours, theirs):
    assert ours.bos_id == theirs.bos_token_id == 1
    assert ours.eos_ids == {theirs.eos_token_id} == {2}


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
def test_stream_decode_never_splits_a_character(ours, parts):
    text = "".join(parts)
    ids = ours.encode(text)
    stream = StreamDecoder(ours)
    deltas = [stream.push(i) for i in ids]
    deltas.append(stream.flush())
    assert "".join(deltas) == ours.decode(ids)
    for delta in deltas:
        assert "\ufffd" not in delta
