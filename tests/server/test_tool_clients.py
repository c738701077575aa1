"""Function calling through the clients people build with, on Qwen2.5-Coder-0.5B-Instruct (Hermes
`<tool_call>` format, from its GGUF's template): the openai SDK (whole, streamed, tool_choice),
LangChain's OpenAI and Mistral providers (bind_tools, structured output by function calling),
LiteLLM, instructor's TOOLS mode and the mistralai SDK; a model whose template has no tools says so.
Mistral's own tokenizers are held to `tool_choice` by a grammar too (a tiny random Mixtral, tekken)."""

import json
import os

import httpx
import openai
import pytest
from pydantic import BaseModel

from autan.server.app import create_app
from autan.server.served import load_served
from checkpoints import tiny_mistral_format
from conftest import Live

QWEN = "qwen2.5-coder-0.5b"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    mixtral = tiny_mistral_format(tmp_path_factory.mktemp("tools"), "mixtral", "tekken_240911.json", 131072)
    app = create_app([load_served(QWEN), load_served("smollm2"), load_served(f"tiny-mixtral={mixtral}")])
    live = Live(app)
    yield live.url
    live.close()


@pytest.fixture
def client(url):
    return openai.OpenAI(base_url=f"{url}/v1", api_key="EMPTY")


def weather_call(calls):
    assert len(calls) == 1 and calls[0].function.name == "get_weather", calls
    return json.loads(calls[0].function.arguments)


def test_the_openai_sdk_gets_calls_whole_and_streamed(client):
    answer = client.chat.completions.create(model=QWEN, messages=ASK, tools=[WEATHER], temperature=0, max_tokens=64)
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    assert weather_call(choice.message.tool_calls) == {"city": "Paris"}
    # streamed: the call's id and name first, then its arguments in pieces; no text before it
    calls, text, finish = {}, "", None
    stream = client.chat.completions.create(model=QWEN, messages=ASK, tools=[WEATHER], temperature=0, max_tokens=64,
                                            stream=True)  # fmt: skip
    for chunk in stream:
        delta = chunk.choices[0].delta
        text += delta.content or ""
        finish = chunk.choices[0].finish_reason or finish
        for d in delta.tool_calls or []:
            entry = calls.setdefault(d.index, {"id": d.id, "name": d.function.name, "arguments": ""})
            entry["arguments"] += d.function.arguments or ""
    assert text == "" and finish == "tool_calls" and len(calls) == 1
    assert calls[0]["id"].startswith("call_") and calls[0]["name"] == "get_weather"
    assert json.loads(calls[0]["arguments"]) == {"city": "Paris"}
    # the call and its result go back in, and the model answers in words
    first = choice.message.tool_calls[0]
    turn = [
        *ASK,
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": first.id, "content": json.dumps({"temperature_c": 18, "sky": "cloudy"})},
    ]
    reply = client.chat.completions.create(model=QWEN, messages=turn, tools=[WEATHER], temperature=0, max_tokens=48)
    assert reply.choices[0].finish_reason in ("stop", "length") and "18" in reply.choices[0].message.content


def test_tool_choice_is_enforced(client):
    hello = [{"role": "user", "content": "Say hello."}]
    time = {"type": "function", "function": {"name": "get_time", "parameters": {
        "type": "object", "properties": {"zone": {"enum": ["UTC", "CET"]}}, "required": ["zone"]}}}  # fmt: skip
    forced = client.chat.completions.create(model=QWEN, messages=hello, tools=[WEATHER, time], tool_choice="required",
                                            temperature=0, max_tokens=128)  # fmt: skip
    assert forced.choices[0].finish_reason == "tool_calls"
    assert {c.function.name for c in forced.choices[0].message.tool_calls} <= {"get_weather", "get_time"}
    named = client.chat.completions.create(model=QWEN, messages=ASK, tools=[WEATHER, time], temperature=0,
                                           tool_choice={"type": "function", "function": {"name": "get_time"}},
                                           parallel_tool_calls=False, max_tokens=64)  # fmt: skip
    calls = named.choices[0].message.tool_calls
    assert len(calls) == 1 and calls[0].function.name == "get_time"
    assert json.loads(calls[0].function.arguments)["zone"] in ("UTC", "CET")
    plain = client.chat.completions.create(model=QWEN, messages=ASK, tools=[WEATHER], tool_choice="none",
                                           temperature=0, max_tokens=16)  # fmt: skip
    assert plain.choices[0].message.tool_calls is None and plain.choices[0].message.content
    with pytest.raises(openai.BadRequestError, match="'get_date', which is not among the tools: get_weather"):
        client.chat.completions.create(model=QWEN, messages=ASK, tools=[WEATHER], max_tokens=8,
                                       tool_choice={"type": "function", "function": {"name": "get_date"}})  # fmt: skip


def test_a_model_without_tools_in_its_template_says_so(client, url):
    with pytest.raises(openai.BadRequestError, match="model 'smollm2' cannot call functions: its chat template"):
        client.chat.completions.create(model="smollm2", messages=ASK, tools=[WEATHER], max_tokens=8)
    fine = client.chat.completions.create(model="smollm2", messages=ASK, tools=[WEATHER], tool_choice="none",
                                          max_tokens=4)  # fmt: skip
    assert fine.choices[0].message.content is not None
    cards = {m["id"]: m["capabilities"] for m in httpx.get(f"{url}/v1/models").json()["data"]}
    assert cards[QWEN]["function_calling"] is True and cards["smollm2"]["function_calling"] is False


def test_mistral_tokenizers_are_held_to_tool_choice_by_a_grammar(url):
    from mistralai.client import Mistral

    client = Mistral(api_key="x", server_url=url)
    units = {"type": "function", "function": {"name": "set_units", "parameters": {  # bounded: a random model
        "type": "object", "properties": {"unit": {"enum": ["celsius", "fahrenheit"]}}, "required": ["unit"],
        "additionalProperties": False}}}  # fmt: skip
    # a tiny random model never calls by itself: under tool_choice "any" every answer is a call
    for seed in range(3):
        answer = client.chat.complete(model="tiny-mixtral", messages=ASK, tools=[units], tool_choice="any",
                                      parallel_tool_calls=False, max_tokens=200, random_seed=seed,
                                      temperature=1.0)  # fmt: skip
        choice = answer.choices[0]
        assert choice.finish_reason == "tool_calls", choice.message.content
        arguments = choice.message.tool_calls[0].function.arguments
        assert choice.message.tool_calls[0].function.name == "set_units"
        assert (json.loads(arguments) if isinstance(arguments, str) else arguments)["unit"] in ("celsius", "fahrenheit")


def test_langchain_openai_and_mistral_bind_tools_and_structured_output(url):
    from langchain_mistralai import ChatMistralAI
    from langchain_openai import ChatOpenAI

    class Weather(BaseModel):
        """Get the current weather in a city"""

        city: str

    common = {"model": QWEN, "api_key": "EMPTY", "temperature": 0, "max_tokens": 64}
    for chat in (ChatOpenAI(base_url=f"{url}/v1", **common), ChatMistralAI(endpoint=f"{url}/v1", **common)):
        message = chat.bind_tools([Weather]).invoke("What is the weather in Paris?")
        assert [(c["name"], c["args"]) for c in message.tool_calls] == [("Weather", {"city": "Paris"})], type(chat)
    structured = ChatOpenAI(model=QWEN, base_url=f"{url}/v1", api_key="EMPTY", temperature=0, max_tokens=64)
    found = structured.with_structured_output(Weather, method="function_calling").invoke("Weather in Rome, please.")
    assert found == Weather(city="Rome")


def test_litellm_and_instructor(url):
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # its price list from the package, not the network
    import instructor
    import litellm

    answer = litellm.completion(model=f"openai/{QWEN}", api_base=f"{url}/v1", api_key="EMPTY", messages=ASK,
                                tools=[WEATHER], temperature=0, max_tokens=64)  # fmt: skip
    assert weather_call(answer.choices[0].message.tool_calls) == {"city": "Paris"}

    class City(BaseModel):
        name: str
        country: str

    client = instructor.from_openai(openai.OpenAI(base_url=f"{url}/v1", api_key="EMPTY"), mode=instructor.Mode.TOOLS)
    told = [{"role": "user", "content": "Paris is the capital of France."}]
    city = client.chat.completions.create(model=QWEN, response_model=City, temperature=0, max_tokens=64, messages=told)
    assert city.model_dump() == {"name": "Paris", "country": "France"}


def test_fim_from_qwens_own_tokens_through_the_mistralai_sdk(url):
    from mistralai.client import Mistral

    client = Mistral(api_key="x", server_url=url)
    answer = client.fim.complete(model=QWEN, prompt="def add(a, b):\n    return ", suffix="\n\nprint(add(1, 2))\n",
                                 temperature=0, max_tokens=16)  # fmt: skip
    assert answer.choices[0].message.content.startswith("a + b")
    chunks = client.fim.stream(
        model=QWEN, prompt="def add(a, b):\n    return ", suffix="\n", temperature=0, max_tokens=4
    )
    streamed = "".join(chunk.data.choices[0].delta.content or "" for chunk in chunks)
    assert streamed.startswith("a + b")
    with pytest.raises(Exception, match="does not support fill-in-the-middle"):
        client.fim.complete(model="smollm2", prompt="def f():", suffix="", max_tokens=4)


def test_usage_is_the_same_in_every_shape(url):
    """Whole or streamed, through the openai SDK and LiteLLM's openai/ and mistral/ providers."""
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # its price list from the package, not the network
    import litellm

    client = openai.OpenAI(base_url=f"{url}/v1", api_key="EMPTY")
    whole = client.chat.completions.create(model=QWEN, messages=ASK, temperature=0, max_tokens=8).usage
    counts = (whole.prompt_tokens, whole.completion_tokens)
    chunks = list(client.chat.completions.create(model=QWEN, messages=ASK, temperature=0, max_tokens=8, stream=True,
                                                 stream_options={"include_usage": True}))  # fmt: skip
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == counts
    for provider in ("openai", "mistral"):
        streamed = litellm.completion(model=f"{provider}/{QWEN}", api_base=f"{url}/v1", api_key="EMPTY", messages=ASK,
                                      temperature=0, max_tokens=8, stream=True)  # fmt: skip
        usage = litellm.stream_chunk_builder(list(streamed)).usage
        assert (usage.prompt_tokens, usage.completion_tokens) == counts, provider
