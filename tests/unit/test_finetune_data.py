"""Training data as Mistral's and OpenAI's fine-tuning take it: the loss counts exactly the
assistant messages' tokens (through the token that ends each turn), in the model's own chat
format, across many random conversations; bad files are refused with the line and the reason."""

import json
import pathlib
import random

import mistral_common
import pytest

from autan import registry
from autan.finetune.data import DataError, encode, read_jsonl
from autan.tokenizer import load_tokenizer
from autan.tokenizer.mistral import MistralCommonTokenizer

WORDS = [
    "the",
    "cat",
    "sat",
    "on",
    "a",
    "mat",
    "and",
    "then",
    "it",
    "ran",
    "far",
    "away",
    ",",
    ".",
    "!",
    "?",
    "12",
    "365",
    "été",
    "naïve",
    "東京",
    "code",
    "x=1",
]


@pytest.fixture(scope="module", params=["smollm2", "mistral-v3", "tekken"])
def tokenizer(request):
    data = pathlib.Path(mistral_common.__file__).parent / "data"
    if request.param == "smollm2":
        return load_tokenizer(registry.pull("smollm2", quiet=True))
    name = "mistral_instruct_tokenizer_240323.model.v3" if request.param == "mistral-v3" else "tekken_240911.json"
    return MistralCommonTokenizer(data / name)


def spans(example):
    """The runs of learned tokens."""
    out, current = [], []
    for token, learned in zip(example.ids, example.learn, strict=True):
        if learned:
            current.append(token)
        elif current:
            out.append(current)
            current = []
    return out + ([current] if current else [])


def text(rng):
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 12)))


def test_only_the_assistant_messages_are_learned(tokenizer):
    rng = random.Random(0)
    for _ in range(60):
        messages = [{"role": "system", "content": text(rng)}] if rng.random() < 0.5 else []
        for _ in range(rng.randint(1, 3)):
            messages.append({"role": "user", "content": text(rng)})
            messages.append({"role": "assistant", "content": text(rng), "weight": rng.choice([0, 1, 1])})
        if not any(m.get("weight") for m in messages if m["role"] == "assistant"):
            messages[-1]["weight"] = 1
        example = encode(tokenizer, {"messages": messages})
        learned = [m["content"] for m in messages if m["role"] == "assistant" and m["weight"]]
        got = spans(example)
        assert len(got) == len(learned)
        for span, content in zip(got, learned, strict=True):
            assert span[-1] in tokenizer.eos_ids  # the turn's end is learned, so the model stops
            assert tokenizer.decode(span[:-1]).strip() == content.strip()
        if isinstance(tokenizer, MistralCommonTokenizer) or not messages[-1]["weight"]:
            continue  # mistral's system prompt moves to the last user message: checked below
        # the conversation up to the last answer is the prompt the model is given to write it
        rendered = tokenizer.encode_chat([{k: v for k, v in m.items() if k != "weight"} for m in messages[:-1]])
        assert list(example.ids[: len(rendered)]) == rendered


def test_the_sequence_is_the_conversation_as_the_model_reads_it(tokenizer):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"}, {"role": "user", "content": "and?"},
                {"role": "assistant", "content": "bye"}]  # fmt: skip
    example = encode(tokenizer, {"messages": messages})
    # everything before the last answer is the prompt the model is given to write that answer
    prompt = tokenizer.encode_chat(messages[:-1])
    assert list(example.ids[: len(prompt)]) == prompt
    assert tokenizer.decode(list(example.ids[len(prompt) : -1])).strip() == "bye"
    assert example.ids[-1] in tokenizer.eos_ids and example.learn[-1]


def test_mistral_tool_calls_are_learned():
    data = pathlib.Path(mistral_common.__file__).parent / "data"
    tokenizer = MistralCommonTokenizer(data / "mistral_instruct_tokenizer_240323.model.v3")
    call = {"id": "abcdefghi", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}
    row = {
        "tools": [{"type": "function", "function": {"name": "weather", "description": "w", "parameters": {}}}],
        "messages": [{"role": "user", "content": "weather in Paris?"}, {"role": "assistant", "tool_calls": [call]},
                     {"role": "tool", "tool_call_id": "abcdefghi", "content": "sunny"},
                     {"role": "assistant", "content": "It is sunny."}],
    }  # fmt: skip
    called, answered = spans(encode(tokenizer, row))
    assert '"weather"' in tokenizer.decode(called) and '"Paris"' in tokenizer.decode(called)
    assert called[-1] in tokenizer.eos_ids and tokenizer.decode(answered).strip() == "It is sunny."


def test_plain_text_is_learned_whole(tokenizer):
    example = encode(tokenizer, {"text": "The cat sat on the mat."})
    assert example.learn[0] is False and all(example.learn[1:])


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("not json", "2: not JSON"),
        ('{"prompt": "a"}', 'an example is an object with "messages"'),
        ('{"messages": []}', '"messages" must be a non-empty list'),
        ('{"messages": [{"role": "robot", "content": "a"}]}', "message 0 has role 'robot'"),
        ('{"messages": [{"role": "user", "content": "a"}]}', "has no assistant message to learn"),
        ('{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "weight": 2}]}',
         "message 1 has weight 2"),
        ('{"text": ""}', '"text" must be a non-empty string'),
    ],
)  # fmt: skip
def test_bad_lines_are_refused_with_the_line_and_reason(tmp_path, line, reason):
    good = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps(good) + "\n" + line + "\n")
    with pytest.raises(DataError, match=f"{path}:2: .*" if "2:" not in reason else None) as raised:
        read_jsonl(path)
    assert reason.removeprefix("2: ") in str(raised.value) and f"{path}:2" in str(raised.value)
