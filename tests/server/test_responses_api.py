"""OpenAI's Responses API through the openai SDK: a response equals the chat completion of the same
conversation, `previous_response_id` continues a kept one (its owner's alone; `store: false` keeps
nothing), the stream's typed events add up to the response, instructions, structured output, and
function calls out and their outputs back in (Qwen2.5-Coder)."""

import json

import openai
import pytest

from autan.server.app import create_app
from autan.server.served import load_served
from autan.store.db import Store
from conftest import Live

QWEN = "qwen2.5-coder-0.5b"
CITY = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Get the current weather in a city",
    "parameters": CITY,
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    store = Store(f"sqlite:///{tmp_path_factory.mktemp('responses') / 'r.db'}")
    keys = {}
    for name in ("alice", "bob"):
        user = store.accounts.create_user(name, "a long passphrase 123")
        keys[name] = store.accounts.create_key(name, user["id"])[1]
    live = Live(create_app([load_served("smollm2"), load_served(QWEN)], store=store))
    yield live.url, keys
    live.close()


@pytest.fixture
def alice(server):
    url, keys = server
    return openai.OpenAI(base_url=f"{url}/v1", api_key=keys["alice"])


def test_a_response_is_the_chat_completion_of_its_conversation(alice):
    first = alice.responses.create(model="smollm2", input="What is the capital of France?", temperature=0,
                                   max_output_tokens=24)  # fmt: skip
    turns = [{"role": "user", "content": "What is the capital of France?"}]
    same = alice.chat.completions.create(model="smollm2", messages=turns, temperature=0, max_tokens=24)
    assert first.status == "completed" and first.output_text == same.choices[0].message.content
    assert (first.usage.input_tokens, first.usage.output_tokens) == (
        same.usage.prompt_tokens,
        same.usage.completion_tokens,
    )
    # continued: the kept conversation, then the new turn
    second = alice.responses.create(model="smollm2", input="And of Germany?", previous_response_id=first.id,
                                    temperature=0, max_output_tokens=24)  # fmt: skip
    turns += [{"role": "assistant", "content": first.output_text}, {"role": "user", "content": "And of Germany?"}]
    same = alice.chat.completions.create(model="smollm2", messages=turns, temperature=0, max_tokens=24)
    assert second.output_text == same.choices[0].message.content and second.previous_response_id == first.id
    assert second.usage.input_tokens == same.usage.prompt_tokens
    assert alice.responses.retrieve(first.id).output_text == first.output_text
    # instructions are the system prompt of this response alone
    told = alice.responses.create(model="smollm2", input="Hi", instructions="Answer in French.", temperature=0,
                                  max_output_tokens=12)  # fmt: skip
    same = alice.chat.completions.create(model="smollm2", temperature=0, max_tokens=12, messages=[
        {"role": "system", "content": "Answer in French."}, {"role": "user", "content": "Hi"}])  # fmt: skip
    assert told.output_text == same.choices[0].message.content and told.instructions == "Answer in French."
    assert told.status == ("incomplete" if same.choices[0].finish_reason == "length" else "completed")


def test_kept_responses_are_their_owners_alone(server, alice):
    url, keys = server
    bob = openai.OpenAI(base_url=f"{url}/v1", api_key=keys["bob"])
    mine = alice.responses.create(model="smollm2", input="A secret: 4417.", max_output_tokens=4)
    with pytest.raises(openai.NotFoundError):
        bob.responses.retrieve(mine.id)
    with pytest.raises(openai.NotFoundError):
        bob.responses.create(model="smollm2", input="What was the secret?", previous_response_id=mine.id)
    with pytest.raises(openai.NotFoundError):
        bob.responses.delete(mine.id)
    assert [i.content[0].text for i in alice.responses.input_items.list(mine.id).data] == ["A secret: 4417."]
    alice.responses.delete(mine.id)
    with pytest.raises(openai.NotFoundError):
        alice.responses.retrieve(mine.id)
    unkept = alice.responses.create(model="smollm2", input="Hello", max_output_tokens=4, store=False)
    with pytest.raises(openai.NotFoundError):
        alice.responses.retrieve(unkept.id)


def test_the_stream_adds_up_to_the_response(alice):
    kinds, text, final = [], "", None
    stream = alice.responses.create(model="smollm2", input="Name three colors.", temperature=0, max_output_tokens=24,
                                    stream=True)  # fmt: skip
    for event in stream:
        kinds.append(event.type)
        if event.type == "response.output_text.delta":
            text += event.delta
        if event.type in ("response.completed", "response.incomplete"):
            final = event.response
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]  # fmt: skip
    assert kinds[-4:-1] == ["response.output_text.done", "response.content_part.done", "response.output_item.done"]
    assert text == final.output_text and len(text) > 0 and kinds.count("response.output_text.delta") > 1
    assert alice.responses.retrieve(final.id).output_text == text


def test_structured_output_and_function_calls(alice):
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
              "required": ["city", "country"], "additionalProperties": False}  # fmt: skip
    shaped = alice.responses.create(model=QWEN, input="Paris is the capital of France. Give the city and country.",
                                    text={"format": {"type": "json_schema", "name": "place", "schema": schema}},
                                    temperature=0, max_output_tokens=48)  # fmt: skip
    assert json.loads(shaped.output_text) == {"city": "Paris", "country": "France"}
    called = alice.responses.create(model=QWEN, input="What is the weather in Paris?", tools=[WEATHER], temperature=0,
                                    max_output_tokens=64)  # fmt: skip
    call = next(item for item in called.output if item.type == "function_call")
    assert (call.name, json.loads(call.arguments)) == ("get_weather", {"city": "Paris"})
    result = {"type": "function_call_output", "call_id": call.call_id, "output": json.dumps({"temperature_c": 18})}
    answered = alice.responses.create(model=QWEN, previous_response_id=called.id, input=[result], tools=[WEATHER],
                                      tool_choice="none", temperature=0, max_output_tokens=48)  # fmt: skip
    assert "18" in answered.output_text
    forced = alice.responses.create(model=QWEN, input="Hello!", tools=[WEATHER], tool_choice="required",
                                    temperature=0, max_output_tokens=64)  # fmt: skip
    assert forced.output and {item.type for item in forced.output} == {"function_call"}
    with pytest.raises(openai.BadRequestError, match="only function tools run here"):
        alice.responses.create(model=QWEN, input="x", tools=[{"type": "web_search"}])
