"""Function calls: a Mistral model's [TOOL_CALLS] answer comes back as OpenAI/Mistral `tool_calls`.

The tiny random models never choose to call a function, so the answers here are scripted token
ids, run through the same response builders the routes use, and read back by the SDKs' types.
"""

import asyncio
import json
from pathlib import Path

import mistral_common
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from autan.engine.output import Completion, Delta
from autan.engine.request import Usage
from autan.server.generation import Generation
from autan.server.metrics import Metrics
from autan.server.responses import events, full_response
from autan.tokenizer import StreamDecoder, load_tokenizer

DATA = Path(mistral_common.__file__).parent / "data"
CALL = [{"name": "get_weather", "arguments": {"city": "Paris"}}]


class Served:
    def __init__(self, tokenizer):
        self.id, self.tokenizer = "tiny", tokenizer


class ScriptedStream:
    def __init__(self, deltas, completion):
        self.deltas, self.done, self.completion = deltas, completion, None

    async def __aiter__(self):
        for d in self.deltas:
            yield d
        self.completion = self.done

    def abort(self):
        pass


@pytest.fixture(params=["mistral_instruct_tokenizer_240323.model.v3", "tekken_240911.json"])
def tokenizer(request):
    return load_tokenizer(DATA / request.param)


def scripted(tokenizer):
    ids = [*tokenizer.encode("Let me check."), tokenizer.tool_call_id, *tokenizer.encode(json.dumps(CALL))]
    ids.append(min(tokenizer.eos_ids))
    decoder = StreamDecoder(tokenizer)
    deltas = [Delta(decoder.push(i), [i]) for i in ids]
    text = "".join(d.text for d in deltas)
    return ids, deltas, Completion(ids, "stop", Usage(10, len(ids)), text=text)


def test_tool_calls_in_afull_response(tokenizer):
    _, _, done = scripted(tokenizer)
    generation = Generation(Served(tokenizer), "chat", "chatcmpl-1", tools=True, prompts=[[1] * 10])
    response = ChatCompletion.model_validate(full_response(generation, [done]))
    choice = response.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content == "Let me check."
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    assert len(call.id) == 9
    without = Generation(Served(tokenizer), "chat", "chatcmpl-2", tools=False, prompts=[[1] * 10])
    assert full_response(without, [done])["choices"][0]["message"]["tool_calls"] is None


def test_tool_calls_in_a_stream(tokenizer):
    _, deltas, done = scripted(tokenizer)
    stream = ScriptedStream(deltas, done)
    generation = Generation(Served(tokenizer), "chat", "chatcmpl-3", tools=True, prompts=[[1] * 10], streams=[stream])

    async def collect():
        sent = events(generation, Metrics(dict), include_usage=False, continuous_usage=False)
        return [event async for event in sent]

    sent = asyncio.run(collect())
    assert sent[-1] == "data: [DONE]\n\n"
    chunks = [ChatCompletionChunk.model_validate(json.loads(e.removeprefix("data: "))) for e in sent[:-1]]
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == "Let me check."  # the call's JSON never leaks into the content
    calls = [t for c in chunks for t in c.choices[0].delta.tool_calls or []]
    assert [t.function.name for t in calls if t.function.name] == ["get_weather"]  # then its arguments in pieces
    assert json.loads("".join(t.function.arguments for t in calls)) == {"city": "Paris"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
