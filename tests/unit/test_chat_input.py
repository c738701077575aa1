"""`autan chat`'s input reading and its context fitting, driven without a terminal."""

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autan.chat import MIN_ANSWER_TOKENS, Conversation, _read_message, chat
from autan.errors import AutanError


def reader(lines):
    it = iter(lines)

    def read(prompt):
        try:
            return next(it)
        except StopIteration:
            raise EOFError from None

    return read


@pytest.mark.parametrize(
    "lines, message",
    [
        (["hello"], "hello"),
        (['"""', "line one", "", "  indented", '"""'], "line one\n\n  indented"),
        (['"""first', "second", 'third"""'], "first\nsecond\nthird"),
        (['"""all on one line"""'], "all on one line"),
        (["one \\", "two \\", "three"], "one \ntwo \nthree"),
        (['"""', "/not a command", '"""'], "/not a command"),
    ],
)
def test_multi_line_input(lines, message):
    assert _read_message(reader(lines)) == message


class CharTokenizer:
    """One token per character of the rendered conversation: lengths are easy to reason about."""

    bos_id, eos_ids, vocab_size = None, frozenset(), 256

    def encode_chat(self, messages, tools=None):
        return [0] * sum(len(m["content"]) + 1 for m in messages)


@settings(max_examples=200)
@given(
    sizes=st.lists(st.integers(1, 200), min_size=1, max_size=12),
    system=st.integers(0, 50),
    context=st.integers(100, 1000),
)
def test_fit_drops_oldest_exchanges_and_never_the_new_message(sizes, system, context):
    turns = [{"role": ("user", "assistant")[i % 2], "content": "x" * n} for i, n in enumerate(sizes)]
    if len(turns) % 2 == 0:  # the conversation always ends with the user's new message
        turns.pop()
    conversation = Conversation("s" * system if system else None, list(turns))
    try:
        ids, dropped = conversation.fit(CharTokenizer(), context)
    except AutanError as e:
        assert conversation.turns == turns[-1:]
        assert "context is" in str(e)
        return
    assert conversation.turns == turns[dropped:]
    assert conversation.turns[-1] is turns[-1]
    assert dropped % 2 == 0  # whole exchanges, so roles still alternate
    assert len(ids) < context
    if dropped:  # it dropped only as much as it had to
        assert len(ids) + MIN_ANSWER_TOKENS <= context or len(conversation.turns) == 1
        before = Conversation(conversation.system, turns[dropped - 2 :])
        assert len(CharTokenizer().encode_chat(before.messages())) + MIN_ANSWER_TOKENS > context


def test_commands_edit_the_conversation_and_nothing_is_sent_for_them():
    info = io.StringIO()
    lines = ["/system Be brief.", "/system", "/history", "/reset", "/nope", "/system clear", "/system", "/exit"]
    lines.append("never read")
    chat(FakeEngine(), None, read=reader(lines), out=io.StringIO(), info=info)
    assert info.getvalue().splitlines() == [
        "system prompt set",
        "system prompt: Be brief.",
        "[system] Be brief.",
        "conversation cleared (the system prompt stays: /system to see it)",
        "unknown command /nope: /help lists the commands",
        "system prompt removed",
        "no system prompt",
    ]


class FakeEngine:
    """Ctrl-C arrives while the prompt is still being read, before any answer text."""

    tokenizer, max_seq_len = CharTokenizer(), 1000
    aborted = False

    def add_request(self, prompt, params):
        return self

    def __iter__(self):
        raise KeyboardInterrupt
        yield

    def abort(self):
        self.aborted = True

    def run_until_idle(self):
        pass


def test_ctrl_c_before_the_first_word_keeps_no_half_exchange():
    info = io.StringIO()
    engine = FakeEngine()
    chat(engine, None, read=reader(["a question", "/history"]), out=io.StringIO(), info=info)
    assert info.getvalue().splitlines() == ["", "[stopped]", "(empty)", ""]
    assert engine.aborted
