"""Anthropic's Messages API through the `anthropic` SDK: whole and streamed answers equal the chat
completion of the same conversation, a system prompt, stop sequences, tools (tool_use out,
tool_result back in) on Qwen2.5-Coder, count_tokens, its error envelope, and its x-api-key
header on a server with a key."""

import json

import anthropic
import openai
import pytest

from autan.http.auth import Policy
from autan.server.app import create_app
from autan.server.served import load_served
from conftest import Live

QWEN = "qwen2.5-coder-0.5b"
GREEDY = {"extra_body": {"temperature": 0}}  # (this SDK leaves temperature out of its signature)
ASK = [{"role": "user", "content": "What is the capital of France?"}]
CITY = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
WEATHER = {"name": "get_weather", "description": "Get the current weather in a city", "input_schema": CITY}


@pytest.fixture(scope="module")
def url():
    live = Live(create_app([load_served("smollm2"), load_served(QWEN)]))
    yield live.url
    live.close()


@pytest.fixture
def client(url):
    return anthropic.Anthropic(base_url=url, api_key="EMPTY")


def test_a_message_is_the_chat_completion_of_the_same_conversation(client, url):
    chat = openai.OpenAI(base_url=f"{url}/v1", api_key="EMPTY")
    for system in (None, "You are a geography teacher."):
        extra = {"system": system} if system else {}
        message = client.messages.create(model="smollm2", max_tokens=24, messages=ASK, **extra, **GREEDY)
        turns = [{"role": "system", "content": system}, *ASK] if system else ASK
        same = chat.chat.completions.create(model="smollm2", max_tokens=24, messages=turns, temperature=0)
        assert [b.type for b in message.content] == ["text"] and message.content[0].text == same.choices[
            0
        ].message.content
        assert message.stop_reason == {"stop": "end_turn", "length": "max_tokens"}[same.choices[0].finish_reason]
        assert (message.usage.input_tokens + message.usage.cache_read_input_tokens, message.usage.output_tokens) == (
            same.usage.prompt_tokens, same.usage.completion_tokens,
        )  # fmt: skip
        with client.messages.stream(model="smollm2", max_tokens=24, messages=ASK, **extra, **GREEDY) as stream:
            pieces = list(stream.text_stream)
            final = stream.get_final_message()
        assert len(pieces) > 1 and "".join(pieces) == final.content[0].text == message.content[0].text
        assert final.stop_reason == message.stop_reason and final.usage.output_tokens == message.usage.output_tokens
    stopped = client.messages.create(model="smollm2", max_tokens=24, messages=ASK, stop_sequences=["Paris"], **GREEDY)
    assert (stopped.stop_reason, stopped.stop_sequence) == ("stop_sequence", "Paris")
    assert stopped.content[0].text == "The capital of France is "
    counted = client.messages.count_tokens(model="smollm2", messages=ASK, system="You are a geography teacher.")
    assert counted.input_tokens == message.usage.input_tokens + message.usage.cache_read_input_tokens


def test_tools_go_out_as_tool_use_and_come_back_as_tool_result(client):
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    message = client.messages.create(model=QWEN, max_tokens=64, tools=[WEATHER], messages=ask, **GREEDY)
    assert message.stop_reason == "tool_use"
    use = next(b for b in message.content if b.type == "tool_use")
    assert (use.name, use.input) == ("get_weather", {"city": "Paris"}) and use.id.startswith("toolu_")
    with client.messages.stream(model=QWEN, max_tokens=64, tools=[WEATHER], messages=ask, **GREEDY) as stream:
        final = stream.get_final_message()
    streamed = next(b for b in final.content if b.type == "tool_use")
    assert (final.stop_reason, streamed.name, streamed.input) == ("tool_use", "get_weather", {"city": "Paris"})
    result = {
        "type": "tool_result",
        "tool_use_id": use.id,
        "content": json.dumps({"temperature_c": 18, "sky": "cloudy"}),
    }
    turns = [*ask, {"role": "assistant", "content": message.content}, {"role": "user", "content": [result]}]
    reply = client.messages.create(model=QWEN, max_tokens=48, tools=[WEATHER], messages=turns, **GREEDY)
    assert reply.stop_reason in ("end_turn", "max_tokens") and "18" in reply.content[0].text
    forced = client.messages.create(model=QWEN, max_tokens=64, tools=[WEATHER], tool_choice={"type": "any"},
                                    messages=[{"role": "user", "content": "Hello!"}], **GREEDY)  # fmt: skip
    assert forced.stop_reason == "tool_use" and forced.content[-1].name == "get_weather"
    tokens = client.messages.count_tokens(model=QWEN, messages=ask, tools=[WEATHER]).input_tokens
    assert tokens > client.messages.count_tokens(model=QWEN, messages=ask).input_tokens  # the tools are in the prompt


def test_errors_come_in_anthropics_envelope(client):
    with pytest.raises(anthropic.NotFoundError) as missing:
        client.messages.create(model="claude-nope", max_tokens=5, messages=ASK)
    assert missing.value.body["error"]["type"] == "not_found_error" and "claude-nope" in str(missing.value)
    with pytest.raises(anthropic.BadRequestError) as bad:
        client.messages.create(model="smollm2", max_tokens=0, messages=ASK)
    assert bad.value.body["type"] == "error" and "max_tokens" in bad.value.body["error"]["message"]
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
    with pytest.raises(anthropic.BadRequestError, match="an image block: this server's models read text only"):
        client.messages.create(model="smollm2", max_tokens=5, messages=[{"role": "user", "content": [image]}])
    with pytest.raises(anthropic.BadRequestError, match="model 'smollm2' cannot call functions"):
        client.messages.create(model="smollm2", max_tokens=5, messages=ASK, tools=[WEATHER])


def test_its_x_api_key_header_is_a_key():
    live = Live(create_app([load_served("smollm2")], policy=Policy(api_keys=["sk-right"])))
    try:
        good = anthropic.Anthropic(base_url=live.url, api_key="sk-right")
        assert good.messages.create(model="smollm2", max_tokens=3, messages=ASK).type == "message"
        with pytest.raises(anthropic.AuthenticationError) as refused:
            anthropic.Anthropic(base_url=live.url, api_key="sk-wrong").messages.create(
                model="smollm2", max_tokens=3, messages=ASK
            )
        assert refused.value.body["error"]["type"] == "authentication_error"
    finally:
        live.close()
