"""Function calls in each family's format: read out of answers (Hermes for Qwen2.5, Llama 3.x's
JSON, Mistral's templates with [TOOL_CALLS]), and forced by `tool_choice` through a grammar on a
tiny random model, which never calls a function by itself: under the grammar every answer is a
call to a tool offered, whose arguments validate against that tool's schema."""

import json

import pytest

from autan.engine.constraint import GrammarConstraint
from autan.engine.engine import Engine
from autan.engine.sampling import SamplingParams
from autan.errors import ChatFormatError
from autan.tokenizer import load_tokenizer, tool_calls
from checkpoints import tiny_with_template

HERMES_TEMPLATE = (  # the tool part of Qwen2.5's template, and ChatML
    "{% if tools %}<|im_start|>system\n# Tools\n<tools>{% for t in tools %}\n{{ t | tojson }}{% endfor %}\n</tools>\n"
    "For each function call, return a json object within <tool_call></tool_call> XML tags<|im_end|>\n{% endif %}"
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}"
    '{% for c in m.tool_calls or [] %}\n<tool_call>\n{"name": "{{ c.function.name }}", "arguments": '
    "{{ c.function.arguments | tojson }}}\n</tool_call>{% endfor %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
LLAMA3_TEMPLATE = (  # the tool part of Llama 3.1's template
    "{% for m in messages %}<|start_header_id|>{{ m.role }}<|end_header_id|>\n\n"
    '{% if tools and loop.last %}Respond with a JSON object {"name": function name, "parameters": '
    "dictionary of argument name and its value}.\n{% for t in tools %}{{ t | tojson }}\n{% endfor %}{% endif %}"
    "{{ m.content }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "additionalProperties": False, "required": ["unit", "tomorrow"],
        "properties": {"unit": {"enum": ["celsius", "fahrenheit"]}, "tomorrow": {"type": "boolean"}}}}},
    {"type": "function", "function": {"name": "get_time", "parameters": {
        "type": "object", "additionalProperties": False, "required": ["zone"],
        "properties": {"zone": {"enum": ["UTC", "CET"]}}}}},
]  # fmt: skip


def valid(arguments: dict, tool: str) -> bool:
    schema = next(t["function"]["parameters"] for t in TOOLS if t["function"]["name"] == tool)
    return set(arguments) == set(schema["required"]) and all(
        value in spec["enum"] if "enum" in spec else isinstance(value, bool)
        for key, value in arguments.items()
        for spec in [schema["properties"][key]]
    )


def test_hermes_calls_are_read_with_their_text_bare_and_cut_short():
    fmt = tool_calls.Hermes()
    text = 'Let me look.\n<tool_call>\n{"name": "a", "arguments": {"x": 1}}\n</tool_call>\n<tool_call>\n{"name": "b",'
    content, calls = fmt.parse(text)  # the last call, cut short by max_tokens, is dropped
    assert content == "Let me look." and [(c["function"]["name"], c["function"]["arguments"]) for c in calls] == [
        ("a", '{"x": 1}')
    ]
    assert fmt.parse('```json\n{\n  "name": "a",\n  "arguments": {"x": 2}\n}\n```')[1][0]["function"]["arguments"] == (
        '{"x": 2}'
    )
    assert fmt.parse('{"name": "a", "arguments": {}} and more') == ('{"name": "a", "arguments": {}} and more', [])
    with pytest.raises(ChatFormatError, match="not JSON"):
        fmt.parse("<tool_call>\n{nope}\n</tool_call>")
    # streaming: text passes, what may start a call waits, a call is a call
    assert [fmt.state(t) for t in ("Hello", "Sure <tool", "Sure <tool_call>", "```js", '```json\n{\n "na', "{x")] == [
        "text", "hold", "call", "hold", "hold", "text",
    ]  # fmt: skip


def test_llama3_calls_are_whole_json_answers():
    fmt = tool_calls.Llama3()
    content, calls = fmt.parse('<|python_tag|>{"name": "a", "parameters": {"x": 1}}; {"name": "b", "parameters": {}}')
    assert content == "" and [c["function"]["name"] for c in calls] == ["a", "b"]
    assert fmt.parse('The answer is {"name": "a", "parameters": {}}')[1] == []
    assert fmt.parse('{"name": "a", "arguments": {}}')[1] == []  # not this format's key
    assert [fmt.state(t) for t in ("{", ' {"na', '{"name": "a"', "Hi")] == ["hold", "hold", "call", "text"]


def test_mistral_template_calls_are_found_by_their_control_tokens():
    vocabulary = {5: "[TOOL_CALLS]", 6: "[ARGS]", 10: "Sure. ", 11: "get_weather", 12: '{"unit": "celsius"}',
                  13: '[{"name": "get_time", "arguments": {"zone": "UTC"}}]'}  # fmt: skip

    def decode(ids):
        return "".join(vocabulary[i] for i in ids if i not in (5, 6))

    content, calls = tool_calls.MistralTemplate(5, 6).parse_ids([10, 5, 11, 6, 12, 5, 11, 6, 12], decode)
    assert content == "Sure. " and [json.loads(c["function"]["arguments"]) for c in calls] == [{"unit": "celsius"}] * 2
    content, calls = tool_calls.MistralTemplate(5).parse_ids([5, 13], decode)
    assert content == "" and calls[0]["function"]["name"] == "get_time"


def test_tool_choice_names_what_must_be_called():
    assert tool_calls.chosen_tools(TOOLS, "auto") is None and tool_calls.chosen_tools(TOOLS, None) is None
    assert tool_calls.chosen_tools(TOOLS, "required") == TOOLS == tool_calls.chosen_tools(TOOLS, "any")
    named = {"type": "function", "function": {"name": "get_time"}}
    assert tool_calls.chosen_tools(TOOLS, named) == [TOOLS[1]]
    with pytest.raises(ChatFormatError, match="'get_date', which is not among the tools: get_weather, get_time"):
        tool_calls.chosen_tools(TOOLS, {"type": "function", "function": {"name": "get_date"}})
    with pytest.raises(ChatFormatError, match="'sometimes' is not one of"):
        tool_calls.chosen_tools(TOOLS, "sometimes")
    for bad in ([{"type": "function", "function": {}}], [{"type": "function"}], ["get_weather"]):
        with pytest.raises(ChatFormatError, match='a tool must be {"type": "function", "function": {"name"'):
            tool_calls.chosen_tools(bad, "required")
    with pytest.raises(ChatFormatError, match="names the function None, which is not among"):
        tool_calls.chosen_tools(TOOLS, {"type": "function", "function": "get_time"})


@pytest.fixture(scope="module", params=[("hermes", HERMES_TEMPLATE), ("llama3", LLAMA3_TEMPLATE)])
def engine(request, tmp_path_factory):
    name, template = request.param
    path = tiny_with_template(tmp_path_factory.mktemp(name), name, template)
    from autan.weights import load_model

    tokenizer = load_tokenizer(path)
    return name, Engine(load_model(path), tokenizer)


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "get_time"}}])
@pytest.mark.parametrize("parallel", [False, True])
def test_a_forced_answer_is_a_valid_call_of_a_tool_offered(engine, seed, choice, parallel):
    name, engine = engine
    tokenizer = engine.tokenizer
    assert type(tokenizer.tool_format).__name__.lower() == name
    grammar = tokenizer.tool_grammar(TOOLS, choice, parallel)
    prompt = tokenizer.encode_chat([{"role": "user", "content": "What's the weather?"}], tools=TOOLS)
    constraint = GrammarConstraint(tokenizer.guidance_tokenizer(), lark=grammar)
    stream = engine.add_request(prompt, SamplingParams(temperature=1.0, seed=seed, max_tokens=400),
                                constraint=constraint)  # fmt: skip
    ids = [t for delta in stream for t in delta.token_ids]
    assert stream.completion.finish_reason == "stop", tokenizer.decode(ids)
    content, calls = tokenizer.parse_tool_calls(ids)
    assert content == "" and calls and (len(calls) == 1 or parallel)
    for c in calls:
        function = c["function"]["name"]
        assert function in ("get_weather", "get_time") if choice == "required" else function == "get_time"
        assert valid(json.loads(c["function"]["arguments"]), function)
