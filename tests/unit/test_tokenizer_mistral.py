"""Mistral tokenizers: chat encodings equal mistral-common's own typed API, for v1, v3, v7 and Tekken."""

from pathlib import Path

import mistral_common
import pytest
from mistral_common.protocol.instruct.messages import (
    AssistantMessage,
    SystemMessage,
    ToolMessage,
    UserMessage,
)
from mistral_common.protocol.instruct.request import ChatCompletionRequest
from mistral_common.protocol.instruct.tool_calls import Function, FunctionCall, Tool, ToolCall
from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

from autan import CheckpointError
from autan.errors import ChatFormatError
from autan.tokenizer import StreamDecoder, load_tokenizer

DATA = Path(mistral_common.__file__).parent / "data"
FILES = {
    "v1": "tokenizer.model.v1",
    "v3": "mistral_instruct_tokenizer_240323.model.v3",
    "v7": "mistral_instruct_tokenizer_241114.model.v7",
    "tekken": "tekken_240718.json",
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
CALL = {"id": "abc123XYZ", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}

# (our plain-dict conversation, the same built from mistral-common's classes, tools or None)
CASES = {
    "system and turns": (
        [
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "Capital of France?"},
        ],
        [
            SystemMessage(content="Answer briefly."),
            UserMessage(content="Hi"),
            AssistantMessage(content="Hello!"),
            UserMessage(content="Capital of France?"),
        ],
        None,
    ),
    "prefix": (
        [{"role": "user", "content": "Write a haiku"}, {"role": "assistant", "content": "Autumn", "prefix": True}],
        [UserMessage(content="Write a haiku"), AssistantMessage(content="Autumn", prefix=True)],
        None,
    ),
    "tools": (
        [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [CALL]},
            {"role": "tool", "content": '{"temp": 12}', "tool_call_id": "abc123XYZ", "name": "get_weather"},
        ],
        [
            UserMessage(content="Weather in Paris?"),
            AssistantMessage(
                content=None,
                tool_calls=[
                    ToolCall(id="abc123XYZ", function=FunctionCall(name="get_weather", arguments='{"city": "Paris"}'))
                ],
            ),
            ToolMessage(content='{"temp": 12}', tool_call_id="abc123XYZ", name="get_weather"),
        ],
        [Tool(function=Function(**WEATHER["function"]))],
    ),
}


@pytest.mark.parametrize("version", FILES)
@pytest.mark.parametrize("case", CASES)
def test_chat_encoding_equals_mistral_common(version, case):
    messages, typed, typed_tools = CASES[case]
    reference = MistralTokenizer.from_file(str(DATA / FILES[version]))
    ours = load_tokenizer(DATA / FILES[version])
    tools = [WEATHER] if typed_tools else None
    try:
        expected = reference.encode_chat_completion(ChatCompletionRequest(messages=typed, tools=typed_tools)).tokens
    except Exception as refused:  # whatever mistral-common refuses (v1 has no tool tokens), we refuse too
        with pytest.raises(ChatFormatError, match=type(refused).__name__):
            ours.encode_chat(messages, tools=tools)
        return
    assert ours.encode_chat(messages, tools=tools) == expected


@pytest.mark.parametrize("version", FILES)
def test_round_trip_and_streaming(version):
    tokenizer = load_tokenizer(DATA / FILES[version])
    text = "Ça marche: 🙂 中文 and  spaces\n\tdone"
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids) == text
    stream = StreamDecoder(tokenizer)
    assert "".join([*(stream.push(i) for i in ids), stream.flush()]) == text
    assert tokenizer.encode("x", add_bos=True)[0] == tokenizer.bos_id


def test_fill_in_the_middle_v3_and_refusal_on_v1():
    v3 = load_tokenizer(DATA / FILES["v3"])
    ids = v3.encode_fim("def add(a, b):\n    return ", "\n\nprint(add(1, 2))")
    reference = MistralTokenizer.from_file(str(DATA / FILES["v3"]))
    control = reference.instruct_tokenizer.tokenizer
    assert control.get_special_token("[SUFFIX]") in ids and control.get_special_token("[PREFIX]") in ids
    v1 = load_tokenizer(DATA / FILES["v1"])
    with pytest.raises(Exception, match="(?i)fim|not supported|implement"):
        v1.encode_fim("a", "b")


def test_checkpoint_directory_picks_the_tokenizer_file(tmp_path):
    (tmp_path / "tokenizer.model.v3").write_bytes((DATA / FILES["v3"]).read_bytes())
    assert load_tokenizer(tmp_path).vocab_size == 32768
    (tmp_path / "tokenizer.model.v3").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="not a Mistral tokenizer file mistral-common can read"):
        load_tokenizer(tmp_path)
